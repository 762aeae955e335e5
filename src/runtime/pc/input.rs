//! The input actor: holds the batches the harness presented, clamps each
//! (sends `x[1]` up to the layer-2 actors) — at once while fewer than
//! `pipeline` batches are in flight (event schedule) or on its local clock
//! (clocked) — and counts the `Done` credits of the layer-2 actors.

use super::{PcMsg, PcSettings, broadcast};
use crate::nn::Real;
use crate::runtime::actor::{ActorId, Ctx, Envelope, Link};
use ndarray::Array2;
use std::collections::{BTreeMap, HashSet, VecDeque};

pub struct InputActor<T: Real> {
    pub(super) name: String,
    pub(super) settings: PcSettings,
    /// To the layer-2 actors (error nodes).
    pub(super) up: Vec<Link>,
    /// Batches waiting to be clamped.
    pub(super) inputs: VecDeque<(u64, Array2<T>)>,
    /// Samples in flight, with the credits still missing.
    in_flight: BTreeMap<u64, usize>,
    /// `(sample, layer-2 actor)` credits received (duplicates are ignored).
    credited: HashSet<(u64, ActorId)>,
}

impl<T: Real> InputActor<T> {
    pub(super) fn new(name: String, settings: PcSettings) -> Self {
        Self {
            name,
            settings,
            up: Vec::new(),
            inputs: VecDeque::new(),
            in_flight: BTreeMap::new(),
            credited: HashSet::new(),
        }
    }

    pub(super) fn start(&mut self, ctx: &mut Ctx<PcMsg<T>>) {
        if self.settings.clocked() {
            let sp = self.settings.sample_period();
            for (s, _) in &self.inputs {
                ctx.timer_at(*s as f64 * sp, *s);
            }
        } else {
            self.present(ctx);
        }
    }

    fn clamp(&mut self, s: u64, x: Array2<T>, ctx: &mut Ctx<PcMsg<T>>) {
        self.in_flight.insert(s, self.up.len());
        broadcast(ctx, &self.up, s, 0, x, PcMsg::Up);
    }

    fn present(&mut self, ctx: &mut Ctx<PcMsg<T>>) {
        while self.in_flight.len() < self.settings.pipeline.max(1) {
            let Some((s, x)) = self.inputs.pop_front() else {
                return;
            };
            self.clamp(s, x, ctx);
        }
    }

    pub(super) fn handle(&mut self, env: Envelope<PcMsg<T>>, ctx: &mut Ctx<PcMsg<T>>) {
        let s = env.sample;
        if !matches!(env.payload, PcMsg::Done)
            || !self.in_flight.contains_key(&s)
            || !self.credited.insert((s, env.from))
        {
            return;
        }
        let left = self.in_flight.get_mut(&s).expect("in flight");
        *left -= 1;
        if *left == 0 {
            self.in_flight.remove(&s);
            self.credited.retain(|k| k.0 != s);
            ctx.progress(1);
            if !self.settings.clocked() {
                self.present(ctx);
            }
        }
    }

    pub(super) fn timer(&mut self, tag: u64, ctx: &mut Ctx<PcMsg<T>>) {
        if let Some(pos) = self.inputs.iter().position(|(s, _)| *s == tag) {
            let (s, x) = self.inputs.remove(pos).expect("found");
            self.clamp(s, x, ctx);
        }
    }

    pub(super) fn is_done(&self) -> bool {
        self.inputs.is_empty() && self.in_flight.is_empty()
    }

    pub(super) fn waiting_for(&self) -> String {
        match self.in_flight.iter().next() {
            Some((s, left)) => format!(
                "`Done` of sample {s} from {left} layer-2 actor(s) (down); {} batch(es) not yet clamped",
                self.inputs.len()
            ),
            None => match self.inputs.front() {
                Some((s, _)) if self.settings.clocked() => format!(
                    "its clock to clamp sample {s} at local time {} ({} batch(es) queued)",
                    crate::runtime::watchdog::readable(*s as f64 * self.settings.sample_period()),
                    self.inputs.len()
                ),
                Some(_) => format!("room to clamp {} queued batch(es)", self.inputs.len()),
                None => "nothing: all its batches are finished".into(),
            },
        }
    }
}
