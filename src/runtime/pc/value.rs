//! A value-node actor (`nodes` granularity): the value nodes `x[l]` of a
//! hidden layer (slice) as `algo::pc::ValueNodes`. Step `t` of a sample
//! needs `ε[l]` of step `t` from its error nodes (0 after the feedforward
//! start) and the summed `ε[l+1] W[l+1]` of step `t` from the error nodes
//! above; it takes the Euler step, sends the step Δ to its error nodes and
//! `f(x[l])` up. Samples in flight (`pipeline`) each have their own value
//! nodes; they hold no weights. Clocked: step `t` runs at the local time
//! `s·S + t0 + (t + ½)·P` with the newest messages; Z-IL's event trigger takes
//! the step the moment the error wave arrives.

use super::assembly::{Inbox, Spare, add_part, complete, latest, take};
use super::{PcMsg, PcSettings, broadcast, tag, untag};
use crate::algo::pc::ValueNodes;
use crate::nn::{Activation, Real};
use crate::runtime::actor::{ActorId, Ctx, Envelope, Link};
use ndarray::Array2;
use std::collections::{BTreeMap, HashSet};

struct Sample<T: Real> {
    nodes: ValueNodes<T>,
    tick: u32,
    /// Steps reported to the error nodes: the `Step` messages are numbered
    /// 1, 2, … in the order taken (clocks with jitter may fire out of order).
    reported: u32,
}

pub struct ValueActor<T: Real> {
    pub(super) name: String,
    pub(super) l: usize,
    pub(super) settings: PcSettings,
    act: Activation,
    /// Where `f(x[l])` goes (the error nodes above).
    pub(super) up: Vec<Link>,
    /// To this layer's error nodes (the step Δ).
    pub(super) step_link: Option<Link>,
    /// Senders of the down-messages (the error nodes above).
    pub(super) above: Vec<ActorId>,
    pub(super) above_names: String,
    pub(super) error_name: String,
    samples: BTreeMap<u64, Sample<T>>,
    /// `ε[l]` by `(sample, step)`, from the error nodes.
    errors: BTreeMap<(u64, u32), Array2<T>>,
    downs: Inbox<T>,
    finished: HashSet<u64>,
    /// Value nodes of finished samples, reused.
    spare_nodes: Vec<ValueNodes<T>>,
    /// Arrays of consumed messages, reused for the messages sent.
    spare: Spare<T>,
}

impl<T: Real> ValueActor<T> {
    pub(super) fn new(name: String, l: usize, settings: PcSettings, act: Activation) -> Self {
        Self {
            name,
            l,
            settings,
            act,
            up: Vec::new(),
            step_link: None,
            above: Vec::new(),
            above_names: String::new(),
            error_name: String::new(),
            samples: BTreeMap::new(),
            errors: BTreeMap::new(),
            downs: Inbox::new(),
            finished: HashSet::new(),
            spare_nodes: Vec::new(),
            spare: Spare::new(),
        }
    }

    fn last(&self) -> u32 {
        self.settings.last_tick(self.l)
    }

    /// The feedforward start of sample `s`: `x = u`, `f(x)` up.
    fn init(&mut self, s: u64, x0: Array2<T>, ctx: &mut Ctx<PcMsg<T>>) {
        let mut nodes = self
            .spare_nodes
            .pop()
            .unwrap_or_else(|| ValueNodes::new(self.act));
        nodes.set_step_control(self.settings.rule.cfg.step_control);
        nodes.init(x0.view());
        self.spare.give(x0);
        let up = self.spare.copy_of(nodes.activity_up());
        broadcast(ctx, &self.up, s, 0, up, PcMsg::Up);
        self.samples.insert(
            s,
            Sample {
                nodes,
                tick: 0,
                reported: 0,
            },
        );
        if self.settings.clocked() {
            let p = self.settings.period;
            let base = s as f64 * self.settings.sample_period() + self.settings.t0();
            for t in 0..self.last() {
                ctx.timer_at(base + (t as f64 + 0.5) * p, tag(s, t, true));
            }
        }
        if self.last() == 0 {
            self.retire(s);
        }
    }

    /// Step `t` of sample `s` with the feedback `e` (none: no step, only the
    /// prediction goes up again, as a layer actor's phase B does).
    fn step(&mut self, s: u64, t: u32, e: Option<Array2<T>>, ctx: &mut Ctx<PcMsg<T>>) {
        let gamma = T::of(self.settings.rule.cfg.gamma);
        let upper_last = self.settings.last_tick(self.l + 1);
        let last = self.last();
        let step_link = self.step_link;
        let (up, spare) = (&self.up, &mut self.spare);
        let sample = self.samples.get_mut(&s).expect("a sample in flight");
        if let Some(e) = e {
            sample.nodes.euler(e.view(), gamma);
            spare.give(e);
            if let Some(link) = step_link {
                sample.reported += 1;
                let d = spare.copy_of(sample.nodes.step());
                ctx.send(link, s, sample.reported, PcMsg::Step(d));
            }
        }
        if t < upper_last {
            let fx = spare.copy_of(sample.nodes.activity_up());
            broadcast(ctx, up, s, t + 1, fx, PcMsg::Up);
        }
        sample.tick = t + 1;
        // Under the wave trigger the sample ends with the wave, not the clock.
        if sample.tick >= last && !self.settings.wave() {
            self.retire(s);
        }
    }

    fn retire(&mut self, s: u64) {
        if let Some(sample) = self.samples.remove(&s) {
            self.spare_nodes.push(sample.nodes);
        }
        self.finished.insert(s);
        self.downs.retain(|k, _| k.0 != s);
        self.errors.retain(|k, _| k.0 != s);
    }

    /// Event schedule: every step whose messages have arrived.
    fn advance(&mut self, ctx: &mut Ctx<PcMsg<T>>) {
        let na = self.above.len();
        let flying: Vec<u64> = self.samples.keys().copied().collect();
        for s in flying {
            while let Some(t) = self.samples.get(&s).map(|x| x.tick) {
                if !complete(&self.downs, (s, t), na)
                    || (t > 0 && !self.errors.contains_key(&(s, t)))
                {
                    break;
                }
                if t > 0 {
                    let eps = self.errors.remove(&(s, t)).expect("checked");
                    let sample = self.samples.get_mut(&s).expect("in flight");
                    sample.nodes.set_error(eps.view());
                    self.spare.give(eps);
                }
                let e = take(&mut self.downs, (s, t));
                self.step(s, t, Some(e), ctx);
            }
        }
    }

    pub(super) fn handle(&mut self, env: Envelope<PcMsg<T>>, ctx: &mut Ctx<PcMsg<T>>) {
        let s = env.sample;
        if self.finished.contains(&s) {
            return;
        }
        let na = self.above.len();
        let clocked = self.settings.clocked();
        let key = (s, env.tick);
        // Event schedule: a message of a step already taken is a duplicate.
        // Clocked actors take whatever arrives, late or not.
        let old = !clocked && self.samples.get(&s).is_some_and(|x| env.tick < x.tick);
        match env.payload {
            PcMsg::Init(x0) => {
                if self.samples.contains_key(&s) {
                    return; // duplicate
                }
                self.init(s, x0, ctx);
            }
            PcMsg::Error(eps) => {
                if old {
                    return;
                }
                self.errors.insert(key, eps);
            }
            PcMsg::Down(part) => {
                if old || (!clocked && complete(&self.downs, key, na)) {
                    return;
                }
                let done = add_part(
                    &mut self.downs,
                    key,
                    na,
                    self.above.iter().position(|&a| a == env.from),
                    part,
                    None,
                );
                if clocked {
                    if done && self.settings.wave() && self.samples.contains_key(&s) {
                        let buf = &self.downs[&key].buf;
                        if buf.iter().any(|v| *v != T::zero()) {
                            // The error wave: step now, and this sample is done here.
                            let e = take(&mut self.downs, key);
                            self.use_latest_error(s);
                            let t = self.samples[&s].tick;
                            self.step(s, t, Some(e), ctx);
                            self.retire(s);
                        }
                    }
                    return;
                }
            }
            PcMsg::Up(_) | PcMsg::Step(_) | PcMsg::Done | PcMsg::Share(..) | PcMsg::Columns(_) => {
                return;
            }
        }
        if !clocked {
            self.advance(ctx);
        }
    }

    /// Clocked: the newest `ε` of sample `s` received so far.
    fn use_latest_error(&mut self, s: u64) {
        let newest = self
            .errors
            .range((s, 0)..=(s, u32::MAX))
            .next_back()
            .map(|(k, _)| *k);
        if let Some(k) = newest {
            let eps = self.errors.remove(&k).expect("found");
            self.errors.retain(|q, _| q.0 != s || q.1 > k.1);
            if let Some(sample) = self.samples.get_mut(&s) {
                sample.nodes.set_error(eps.view());
            }
        }
    }

    pub(super) fn timer(&mut self, tag: u64, ctx: &mut Ctx<PcMsg<T>>) {
        let (s, t, _) = untag(tag);
        if !self.samples.contains_key(&s) {
            return;
        }
        self.use_latest_error(s);
        let e = latest(&mut self.downs, s, self.above.len());
        self.step(s, t, e, ctx);
    }

    pub(super) fn is_done(&self) -> bool {
        let pending = |s: u64| !self.finished.contains(&s);
        self.samples.is_empty()
            && !self.downs.keys().any(|k| pending(k.0))
            && !self.errors.keys().any(|k| pending(k.0))
    }

    pub(super) fn waiting_for(&self) -> String {
        match self.samples.iter().next() {
            Some((s, x)) => format!(
                "sample {s}: the error (down) of step {} from {} and ε of its error nodes {}",
                x.tick, self.above_names, self.error_name
            ),
            None => format!(
                "the feedforward start of a new sample from its error nodes {}",
                self.error_name
            ),
        }
    }
}
