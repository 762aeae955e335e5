//! The clocked schedule of layer actors (and error nodes): step `t` of
//! sample `s` runs on the actor's local clock at `s·S + t0 + t·P` (phase A)
//! and `+ P/2` (phase B) with the newest messages that have arrived; Z-IL's
//! event trigger updates `W[l]` the moment the error wave (the first nonzero
//! feedback, or the first nonzero step of the value nodes) arrives.

use super::assembly::{add_part, latest};
use super::layer::LayerActor;
use super::{PcMsg, tag, untag};
use crate::nn::Real;
use crate::runtime::actor::{Ctx, Envelope};
use ndarray::Array2;

impl<T: Real> LayerActor<T> {
    /// On the feedforward input: schedule the steps of sample `s`.
    pub(super) fn schedule_steps(&mut self, s: u64, ctx: &mut Ctx<PcMsg<T>>) {
        let p = self.settings.period;
        let base = s as f64 * self.settings.sample_period() + self.settings.t0();
        let last = self.settings.last_tick(self.l);
        for t in 0..=last {
            ctx.timer_at(base + t as f64 * p, tag(s, t, false));
            if self.has_phase_b() && t < last {
                ctx.timer_at(base + (t as f64 + 0.5) * p, tag(s, t, true));
            }
        }
    }

    /// Applies the value nodes' steps of the active sample received so far,
    /// in the order they were taken (they are increments: none may be
    /// skipped, so a step still in flight holds back the later ones).
    fn apply_steps(&mut self, s: u64) {
        while let Some(d) = self.steps.remove(&(s, self.applied + 1)) {
            self.layer.on_value_step(d.view());
            self.applied += 1;
        }
    }

    /// Z-IL, event trigger: the error wave arrived (feedback `e` in layer
    /// mode, or — error nodes — the value nodes' first nonzero step).
    fn wave(&mut self, s: u64, e: Option<Array2<T>>, ctx: &mut Ctx<PcMsg<T>>) {
        let t = self.tick;
        let last = self.settings.last_tick(self.l);
        if let Some(e) = e {
            self.phase_b(s, t, Some(e.view()), ctx);
            self.spare.give(e);
        } else {
            self.apply_steps(s);
        }
        if self.l > 2 && last < self.settings.last_tick(self.l - 1) {
            let down = self.error_down();
            self.send_down(ctx, s, last, down);
        }
        self.finish(s, ctx);
    }

    pub(super) fn clocked_message(&mut self, env: Envelope<PcMsg<T>>, ctx: &mut Ctx<PcMsg<T>>) {
        let s = env.sample;
        let (nb, na) = (self.below.len(), self.above.len());
        let wave = self.settings.wave() && !self.is_output();
        match env.payload {
            PcMsg::Up(part) => {
                let cols = self.cols_of(env.from);
                let slot = self.below_slot(env.from);
                let complete = add_part(&mut self.ups, (s, env.tick), nb, slot, part, cols);
                if complete && env.tick == 0 && !self.is_active(s) {
                    self.start_sample(s, ctx);
                }
            }
            PcMsg::Down(part) => {
                if !self.is_active(s) {
                    return;
                }
                let slot = self.above_slot(env.from);
                let complete = add_part(&mut self.downs, (s, env.tick), na, slot, part, None);
                if complete && wave {
                    let buf = &self.downs[&(s, env.tick)].buf;
                    if buf.iter().any(|v| *v != T::zero()) {
                        let e = self.downs.remove(&(s, env.tick)).expect("complete").buf;
                        self.downs.retain(|k, _| k.0 != s);
                        self.wave(s, Some(e), ctx);
                    }
                }
            }
            PcMsg::Step(d) => {
                if !self.is_active(s) || env.tick <= self.applied {
                    return; // late or duplicated
                }
                let nonzero = d.iter().any(|v| *v != T::zero());
                self.steps.insert((s, env.tick), d);
                if wave && nonzero {
                    self.wave(s, None, ctx);
                }
            }
            PcMsg::Init(_)
            | PcMsg::Error(_)
            | PcMsg::Done
            | PcMsg::Share(..)
            | PcMsg::Columns(_) => {}
        }
    }

    pub(super) fn timer(&mut self, tag: u64, ctx: &mut Ctx<PcMsg<T>>) {
        let (s, t, phase_b) = untag(tag);
        if !self.is_active(s) {
            return; // finished already (event trigger) or never started
        }
        let (nb, na) = (self.below.len(), self.above.len());
        if phase_b {
            if self.have_eps {
                let e = latest(&mut self.downs, s, na);
                self.phase_b(s, t, e.as_ref().map(|e| e.view()), ctx);
                if let Some(e) = e {
                    self.spare.give(e);
                }
            }
            return;
        }
        if t > 0 {
            if self.split() {
                self.apply_steps(s);
            }
            if self.l > 2
                && let Some(fx) = latest(&mut self.ups, s, nb)
            {
                self.layer.on_activity(fx.view());
                self.spare.give(fx);
            }
        }
        self.tick = t;
        self.phase_a(s, t, ctx);
    }
}
