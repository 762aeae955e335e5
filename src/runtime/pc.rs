//! Predictive-coding actors: the PC rules driven by local messages.
//!
//! Granularity `layer`: actor 0 is the input (layer 1), actor `l − 1` is layer
//! `l`. **W ownership:** the receiving side of an edge owns its synapses —
//! layer `l` owns `W[l]`, `b[l]` (which map layer `l − 1` to `l`). Messages:
//! `Up(f(x[l]))` travels up; `Down(ε[l] W[l])` travels down (computed with
//! the owner's current, not yet updated, `W[l]`); `Done` tells the input that
//! layer 2 finished a sample (the credit that lets the input clamp the next
//! batch). Every quantity a rule uses is the actor's own state or a message
//! payload: `ΔW[l] = (α / βB) ε[l]ᵀ f(x[l−1])` uses the actor's ε and the
//! `f(x[l−1])` it received.
//!
//! Schedules: `event` — an actor computes inference step `t` when the
//! messages of step `t` have arrived (a dataflow that equals the lockstep
//! reference under any delays); `clocked` — step `t` of sample `s` happens at
//! the actor's local time `s·S + t0 + t·P` (phase A: predict, error, send
//! down) and `+ P/2` (phase B: relax, send up), with whatever messages have
//! arrived by then. Z-IL's update of `W[l]` happens at step `t = L − l`
//! (trigger `clock`), or, with trigger `event` under a clocked schedule, the
//! moment the error wave (the first nonzero message from above) arrives.
//! Feedforward (step 0 predictions) is event-driven in both schedules.

use super::actor::{Actor, Ctx, Envelope, Port, Topology};
use super::config::{Schedule, Trigger};
use super::pc_rules as rules;
use crate::nn::{Activation, LossKind, Real};
use ndarray::{Array1, Array2};
use std::any::Any;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

/// The payloads of the PC network.
#[derive(Clone, Debug)]
pub enum PcMsg<T: Real> {
    /// `f(x)` of the sender's value nodes (the input sends `x[1]` itself).
    Up(Array2<T>),
    /// `ε W` of the sender: its errors through its own weights.
    Down(Array2<T>),
    /// Layer 2 finished a sample (to the input).
    Done,
}

/// Static knowledge every actor has about the algorithm (no runtime state).
#[derive(Clone, Copy, Debug)]
pub struct PcSettings {
    /// Z-IL (true) or IL.
    pub zil: bool,
    /// Inference steps T of IL.
    pub steps: u32,
    pub gamma: f64,
    pub beta: f64,
    pub learning_rate: f64,
    pub schedule: Schedule,
    pub trigger: Trigger,
    /// Local-clock period of one inference step.
    pub period: f64,
    /// Batches in flight.
    pub pipeline: usize,
    /// Number of layers L.
    pub depth: usize,
}

impl PcSettings {
    /// The step at which layer `l` (1-based, ≥ 2) updates its weights.
    pub fn last_tick(&self, l: usize) -> u32 {
        if self.zil {
            (self.depth - l) as u32
        } else {
            self.steps
        }
    }
    /// Feedforward budget before step 0 (clocked schedule).
    pub fn t0(&self) -> f64 {
        self.depth as f64 * self.period
    }
    /// Local time between two samples (clocked schedule).
    pub fn sample_period(&self) -> f64 {
        self.t0() + (self.last_tick(2) as f64 + 2.0) * self.period
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Input,
    Hidden,
    Output,
}

struct SampleState<T: Real> {
    tick: u32,
    fx: BTreeMap<u32, Array2<T>>,
    e: BTreeMap<u32, Array2<T>>,
    x: Array2<T>,
    u: Array2<T>,
    eps: Array2<T>,
    started: bool,
    have_eps: bool,
}

/// One layer of the PC network as an actor.
pub struct LayerActor<T: Real> {
    /// 1-based layer index.
    pub l: usize,
    pub role: Role,
    name: String,
    pub settings: PcSettings,
    /// `W[l]` (out, in) and `b[l]`, owned by this actor (empty for the input).
    pub w: Array2<T>,
    pub b: Array1<T>,
    pub act: Activation,
    pub output: LossKind,
    samples: BTreeMap<u64, SampleState<T>>,
    /// Input: batches waiting to be clamped.
    pub inputs: VecDeque<(u64, Array2<T>)>,
    /// Output: targets by sample id.
    pub targets: HashMap<u64, Array2<T>>,
    in_flight: usize,
    /// Output: loss of the feedforward prediction by sample id.
    pub losses: Vec<(u64, f64)>,
    /// Last applied update (learning rate included).
    pub dw: Array2<T>,
    pub db: Array1<T>,
    pub updated: u64,
    /// Test hook: panic when handling this sample.
    pub panic_on_sample: Option<u64>,
    finished: HashSet<u64>,
}

impl<T: Real> LayerActor<T> {
    pub fn new(l: usize, depth: usize, settings: PcSettings, act: Activation, output: LossKind) -> Self {
        let role = if l == 1 {
            Role::Input
        } else if l == depth {
            Role::Output
        } else {
            Role::Hidden
        };
        Self {
            l,
            role,
            name: if l == 1 { "input".into() } else { format!("layer{l}") },
            settings,
            w: Array2::zeros((0, 0)),
            b: Array1::zeros(0),
            act,
            output,
            samples: BTreeMap::new(),
            inputs: VecDeque::new(),
            targets: HashMap::new(),
            in_flight: 0,
            losses: Vec::new(),
            dw: Array2::zeros((0, 0)),
            db: Array1::zeros(0),
            updated: 0,
            panic_on_sample: None,
            finished: HashSet::new(),
        }
    }

    fn me(&self) -> usize {
        self.l - 1
    }
    fn below(&self) -> usize {
        self.l - 2
    }
    fn above(&self) -> usize {
        self.l
    }
    fn lower_is_input(&self) -> bool {
        self.l == 2
    }

    fn present(&mut self, ctx: &mut Ctx<PcMsg<T>>) {
        if self.settings.schedule == Schedule::Clocked {
            return;
        }
        while self.in_flight < self.settings.pipeline {
            let Some((s, x)) = self.inputs.pop_front() else { break };
            self.in_flight += 1;
            ctx.send(self.me() + 1, Port::Forward, s, 0, PcMsg::Up(x));
        }
    }

    fn state(&mut self, s: u64) -> &mut SampleState<T> {
        self.samples.entry(s).or_insert_with(|| SampleState {
            tick: 0,
            fx: BTreeMap::new(),
            e: BTreeMap::new(),
            x: Array2::zeros((0, 0)),
            u: Array2::zeros((0, 0)),
            eps: Array2::zeros((0, 0)),
            started: false,
            have_eps: false,
        })
    }

    /// Step 0 on the first prediction from below: feedforward `x = u`, or the
    /// clamped target at the output. Returns the prediction's loss (output).
    fn start_sample(&mut self, s: u64, ctx: &mut Ctx<PcMsg<T>>) {
        let beta = self.settings.beta;
        let (w, b, act, out) = (&self.w, &self.b, self.act, self.output);
        let role = self.role;
        let target = if role == Role::Output {
            self.targets.remove(&s)
        } else {
            None
        };
        let st = self.samples.get_mut(&s).expect("state exists");
        let fx = st.fx.get(&0).expect("step-0 prediction present");
        st.u = rules::predict(fx.view(), w.view(), b.view(), role == Role::Output, out);
        let mut loss = None;
        st.x = match (role, target) {
            (Role::Output, Some(y)) => {
                loss = Some(out.loss(st.u.view(), y.view()).f64());
                rules::clamp_output(st.u.view(), y.view(), beta)
            }
            (Role::Output, None) => st.u.clone(),
            _ => st.u.clone(),
        };
        st.started = true;
        if let Some(loss) = loss {
            self.losses.push((s, loss));
        }
        if role == Role::Hidden {
            let fxl = rules::activity(st.x.view(), act);
            ctx.send(self.above(), Port::Forward, s, 0, PcMsg::Up(fxl));
        }
    }

    /// Phase A of step `t`: prediction from the latest (event: step-`t`)
    /// input, error, message down, and the weight update at the last step.
    /// Returns true when the sample is finished at this actor.
    fn phase_a(&mut self, s: u64, t: u32, ctx: &mut Ctx<PcMsg<T>>) -> bool {
        let last = self.settings.last_tick(self.l);
        let lower_last = if self.lower_is_input() {
            0
        } else {
            self.settings.last_tick(self.l - 1)
        };
        let lower_is_input = self.lower_is_input();
        let out = self.output;
        let is_out = self.role == Role::Output;
        let st = self.samples.get_mut(&s).expect("state exists");
        let fx = if lower_is_input {
            st.fx.get(&0)
        } else {
            st.fx.values().next_back()
        }
        .expect("a prediction from below");
        if t > 0 && !lower_is_input {
            rules::predict_into(fx.view(), self.w.view(), self.b.view(), is_out, out, &mut st.u);
        }
        st.eps = rules::error(st.x.view(), st.u.view());
        if !lower_is_input && t < lower_last {
            let down = rules::feedback(st.eps.view(), self.w.view());
            ctx.send(self.l - 2, Port::Backward, s, t, PcMsg::Down(down));
        }
        st.have_eps = true;
        let trigger_here = !(self.settings.zil
            && self.settings.schedule == Schedule::Clocked
            && self.settings.trigger == Trigger::Event
            && self.role == Role::Hidden);
        if t == last && trigger_here {
            self.finish(s, ctx);
            return true;
        }
        false
    }

    /// Weight update with the sample's current ε and `f(x[l−1])`; the sample is done here.
    fn finish(&mut self, s: u64, ctx: &mut Ctx<PcMsg<T>>) {
        let st = self.samples.remove(&s).expect("state exists");
        let fx = if self.lower_is_input() {
            st.fx.get(&0)
        } else {
            st.fx.values().next_back()
        }
        .expect("a prediction from below");
        let scale = T::of(self.settings.learning_rate / (self.settings.beta * st.x.nrows() as f64));
        rules::weight_update(st.eps.view(), fx.view(), scale, &mut self.dw, &mut self.db);
        self.w += &self.dw;
        self.b += &self.db;
        self.updated += 1;
        if self.lower_is_input() {
            ctx.send(self.below(), Port::Backward, s, u32::MAX, PcMsg::Done);
        }
        self.finished.insert(s);
        ctx.progress(0);
    }

    /// Phase B of step `t` (hidden): relax with the latest error from above,
    /// send the new prediction up.
    fn phase_b(&mut self, s: u64, t: u32, e: Option<Array2<T>>, ctx: &mut Ctx<PcMsg<T>>) {
        let upper_last = self.settings.last_tick(self.l + 1);
        let gamma = T::of(self.settings.gamma);
        let act = self.act;
        let st = self.samples.get_mut(&s).expect("state exists");
        rules::relax(&mut st.x, st.eps.view(), e.as_ref().map(|e| e.view()), gamma, act);
        st.tick = t + 1;
        st.have_eps = false;
        if t < upper_last {
            let fxl = rules::activity(st.x.view(), act);
            ctx.send(self.above(), Port::Forward, s, t + 1, PcMsg::Up(fxl));
        }
    }

    /// Event schedule: run every step whose messages have arrived.
    fn advance(&mut self, s: u64, ctx: &mut Ctx<PcMsg<T>>) {
        loop {
            let lower_is_input = self.lower_is_input();
            let Some(st) = self.samples.get_mut(&s) else { return };
            let t = st.tick;
            if !st.have_eps {
                let key = if lower_is_input { 0 } else { t };
                if !st.fx.contains_key(&key) {
                    return;
                }
                if !lower_is_input {
                    // Only the newest prediction is kept.
                    let keep = st.fx.split_off(&t);
                    st.fx = keep;
                }
                if !st.started {
                    self.start_sample(s, ctx);
                }
                if self.phase_a(s, t, ctx) {
                    return;
                }
            }
            let st = self.samples.get_mut(&s).expect("present");
            if self.role == Role::Output {
                st.tick = t + 1;
                st.have_eps = false;
                continue;
            }
            let Some(e) = st.e.remove(&t) else { return };
            self.phase_b(s, t, Some(e), ctx);
        }
    }

    fn tag(s: u64, t: u32, phase_b: bool) -> u64 {
        (s << 24) | ((t as u64) << 1) | phase_b as u64
    }

    /// Clocked schedule: on the feedforward prediction, schedule the steps.
    fn schedule_steps(&mut self, s: u64, ctx: &mut Ctx<PcMsg<T>>) {
        let p = self.settings.period;
        let base = s as f64 * self.settings.sample_period() + self.settings.t0();
        let last = self.settings.last_tick(self.l);
        for t in 0..=last {
            ctx.timer_at(base + t as f64 * p, Self::tag(s, t, false));
            if self.role == Role::Hidden && t < last {
                ctx.timer_at(base + (t as f64 + 0.5) * p, Self::tag(s, t, true));
            }
        }
    }

    /// Z-IL, event trigger, clocked schedule: the error wave arrived.
    fn wave(&mut self, s: u64, e: Array2<T>, ctx: &mut Ctx<PcMsg<T>>) {
        let last = self.settings.last_tick(self.l);
        let lower_last = if self.lower_is_input() {
            0
        } else {
            self.settings.last_tick(self.l - 1)
        };
        {
            let st = self.samples.get_mut(&s).expect("state exists");
            st.eps = rules::error(st.x.view(), st.u.view());
        }
        let t = self.samples[&s].tick;
        self.phase_b(s, t, Some(e), ctx);
        let lower_is_input = self.lower_is_input();
        let below = self.l - 2;
        let st = self.samples.get_mut(&s).expect("state exists");
        st.eps = rules::error(st.x.view(), st.u.view());
        if !lower_is_input && last < lower_last {
            let down = rules::feedback(st.eps.view(), self.w.view());
            ctx.send(below, Port::Backward, s, last, PcMsg::Down(down));
        }
        self.finish(s, ctx);
    }
}

impl<T: Real> Actor for LayerActor<T> {
    type Msg = PcMsg<T>;

    fn name(&self) -> String {
        self.name.clone()
    }

    fn start(&mut self, ctx: &mut Ctx<PcMsg<T>>) {
        if self.role != Role::Input {
            return;
        }
        if self.settings.schedule == Schedule::Clocked {
            let sp = self.settings.sample_period();
            for (s, _) in &self.inputs {
                ctx.timer_at(*s as f64 * sp, *s);
            }
        } else {
            self.present(ctx);
        }
    }

    fn handle(&mut self, env: Envelope<PcMsg<T>>, ctx: &mut Ctx<PcMsg<T>>) {
        if self.panic_on_sample == Some(env.sample) {
            panic!("{}: injected panic on sample {}", self.name, env.sample);
        }
        let s = env.sample;
        match (self.role, env.payload) {
            (Role::Input, PcMsg::Done) => {
                self.in_flight = self.in_flight.saturating_sub(1);
                ctx.progress(1);
                self.present(ctx);
            }
            (Role::Input, _) => {}
            (_, PcMsg::Done) => {}
            (_, PcMsg::Up(fx)) => {
                // A duplicate of a finished sample's message is ignored.
                if !self.samples.contains_key(&s) && self.is_finished(s) {
                    return;
                }
                let clocked = self.settings.schedule == Schedule::Clocked;
                let st = self.state(s);
                if st.fx.contains_key(&env.tick) && !clocked {
                    return; // duplicate
                }
                st.fx.insert(env.tick, fx);
                if clocked {
                    if env.tick == 0 && !self.samples[&s].started {
                        self.start_sample(s, ctx);
                        self.schedule_steps(s, ctx);
                    }
                } else {
                    self.advance(s, ctx);
                }
            }
            (_, PcMsg::Down(e)) => {
                if !self.samples.contains_key(&s) {
                    return; // finished or unknown sample: a late or duplicate error
                }
                let clocked = self.settings.schedule == Schedule::Clocked;
                if clocked {
                    if self.settings.zil
                        && self.settings.trigger == Trigger::Event
                        && self.role == Role::Hidden
                        && self.samples[&s].started
                        && e.iter().any(|v| *v != T::zero())
                    {
                        self.wave(s, e, ctx);
                        return;
                    }
                    let st = self.state(s);
                    st.e.clear();
                    st.e.insert(env.tick, e);
                } else {
                    let st = self.state(s);
                    st.e.entry(env.tick).or_insert(e);
                    self.advance(s, ctx);
                }
            }
        }
    }

    fn timer(&mut self, tag: u64, ctx: &mut Ctx<PcMsg<T>>) {
        if self.role == Role::Input {
            if let Some(pos) = self.inputs.iter().position(|(s, _)| *s == tag) {
                let (s, x) = self.inputs.remove(pos).expect("found");
                self.in_flight += 1;
                ctx.send(self.me() + 1, Port::Forward, s, 0, PcMsg::Up(x));
            }
            return;
        }
        let s = tag >> 24;
        let t = ((tag >> 1) & 0x7f_ffff) as u32;
        let phase_b = tag & 1 == 1;
        if !self.samples.contains_key(&s) {
            return; // finished already (event trigger)
        }
        if phase_b {
            let e = self.samples.get_mut(&s).and_then(|st| st.e.values().next_back().cloned());
            if self.samples[&s].have_eps {
                self.phase_b(s, t, e, ctx);
            }
        } else {
            self.samples.get_mut(&s).expect("present").tick = t;
            self.phase_a(s, t, ctx);
        }
    }

    fn is_done(&self) -> bool {
        match self.role {
            Role::Input => self.inputs.is_empty() && self.in_flight == 0,
            _ => self.samples.is_empty() && (self.role != Role::Output || self.targets.is_empty()),
        }
    }

    fn waiting_for(&self) -> String {
        match self.role {
            Role::Input => format!(
                "the `Done` of {} sample(s) in flight from layer2 (down), {} batch(es) not yet clamped",
                self.in_flight,
                self.inputs.len()
            ),
            _ => {
                if let Some((s, st)) = self.samples.iter().next() {
                    let from_below = if self.l == 2 { "input".into() } else { format!("layer{}", self.l - 1) };
                    if !st.have_eps {
                        format!("sample {s}: the prediction (up) of step {} from {from_below}", st.tick)
                    } else {
                        format!("sample {s}: the error (down) of step {} from layer{}", st.tick, self.l + 1)
                    }
                } else {
                    let from_below = if self.l == 2 { "input".into() } else { format!("layer{}", self.l - 1) };
                    format!("the first prediction (up) of a new sample from {from_below}")
                }
            }
        }
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

impl<T: Real> LayerActor<T> {
    fn is_finished(&self, s: u64) -> bool {
        self.finished.contains(&s)
    }
}

/// The actors and edges of a layer-granularity PC network of `depth` layers.
pub fn layer_network<T: Real>(
    depth: usize,
    settings: PcSettings,
    act: Activation,
    output: LossKind,
) -> (Vec<LayerActor<T>>, Topology) {
    let actors = (1..=depth)
        .map(|l| LayerActor::new(l, depth, settings, act, output))
        .collect();
    let mut topo = Topology::new();
    for i in 0..depth - 1 {
        topo.add(i, i + 1, Port::Forward);
        topo.add(i + 1, i, Port::Backward);
    }
    (actors, topo)
}
