//! A population of leaky integrate-and-fire neurons simulated with a fixed
//! step `dt` (DESIGN.md §4), normalised: `τ_RC dv/dt = j − v`, threshold 1,
//! reset 0, refractory period `t_ref`.
//!
//! The update follows the reference practice (Nengo's LIF):
//! * the membrane is integrated exactly over the step for a constant current,
//!   `v += (j − v)(1 − e^{−Δt/τ_RC})`;
//! * a neuron whose refractory period ends inside the step integrates only
//!   for the remaining fraction `Δt` of the step;
//! * the spike time inside the step is interpolated from the overshoot
//!   (`v` crossed 1 at `τ' = −τ_RC log(1 − (v − 1)/(j − 1))` before the end of
//!   the step) and the refractory period counts from that spike time.
//!
//! With these three rules the simulated rate under a constant current equals
//! the closed form `r(j)` up to rounding, even at `dt = 1 ms`. One limitation,
//! as in Nengo: a neuron spikes at most once per step, so `dt` should not
//! exceed `t_ref` (the refractory remainder is clamped at zero otherwise).
//!
//! State is kept in flat `f32` vectors; `step` does not allocate (the spike
//! list's capacity is reserved once).

use crate::nn::activation::LifParams;

/// LIF neurons with their membrane voltages and refractory timers.
#[derive(Clone, Debug)]
pub struct LifPopulation {
    /// Membrane voltage `v` (threshold 1, reset 0).
    pub v: Vec<f32>,
    /// Refractory time still to serve, measured from the start of the next step.
    pub refractory: Vec<f32>,
    tau_rc: f32,
    tau_ref: f32,
    dt: f32,
    /// `1 − e^{−dt/τ_RC}`, the full-step integration factor.
    full_step: f32,
}

impl LifPopulation {
    /// `n` neurons at rest (`v = 0`, not refractory).
    pub fn new(n: usize, params: &LifParams, dt: f64) -> Self {
        Self {
            v: vec![0.0; n],
            refractory: vec![0.0; n],
            tau_rc: params.tau_rc as f32,
            tau_ref: params.tau_ref as f32,
            dt: dt as f32,
            full_step: (-(-dt / params.tau_rc).exp_m1()) as f32,
        }
    }

    pub fn len(&self) -> usize {
        self.v.len()
    }

    pub fn is_empty(&self) -> bool {
        self.v.is_empty()
    }

    /// Back to rest: `v = 0`, no refractory period.
    pub fn reset(&mut self) {
        self.v.fill(0.0);
        self.refractory.fill(0.0);
    }

    /// Advances every neuron by one step under the input currents `j` (held
    /// constant over the step) and appends the indices of the neurons that
    /// spiked to `spikes` (which is not cleared).
    pub fn step(&mut self, j: &[f32], spikes: &mut Vec<u32>) {
        assert_eq!(j.len(), self.v.len(), "one current per neuron");
        let (dt, tau_rc, tau_ref, full) = (self.dt, self.tau_rc, self.tau_ref, self.full_step);
        for (i, ((v, r), &j)) in self
            .v
            .iter_mut()
            .zip(self.refractory.iter_mut())
            .zip(j)
            .enumerate()
        {
            // Fraction of the step this neuron integrates.
            let k = if *r <= 0.0 {
                full
            } else if *r >= dt {
                *r -= dt;
                continue;
            } else {
                let active = dt - *r;
                *r = 0.0;
                -(-active / tau_rc).exp_m1()
            };
            let dv = (j - *v) * k;
            *v += dv;
            if *v > 1.0 {
                // v reached 1 at τ' before the end of the step.
                let since_spike = -tau_rc * (-(*v - 1.0) / (j - 1.0)).ln_1p();
                let since_spike = if since_spike.is_finite() {
                    since_spike.clamp(0.0, dt)
                } else {
                    0.0
                };
                *v = 0.0;
                *r = (tau_ref - since_spike).max(0.0);
                spikes.push(i as u32);
            } else if *v < 0.0 {
                *v = 0.0;
            }
        }
    }
}
