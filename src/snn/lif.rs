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
//! list's capacity is reserved once). It runs in two passes: a vectorised one
//! for the common cases (integrating without a spike, fully refractory),
//! which flags the rest (a spike, a refractory period ending inside the
//! step), and a scalar pass over the flagged neurons. Both evaluate exactly
//! the expressions of the one-neuron rule (`step_one`), so the split changes
//! no bit of the result.

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
    /// Scratch: neurons the vector pass left to the scalar pass (1) or
    /// finished (0), padded to a multiple of 8.
    special: Vec<u8>,
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
            special: vec![0; n.next_multiple_of(8)],
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
        let n = self.v.len();
        if self.special.len() != n.next_multiple_of(8) {
            self.special.resize(n.next_multiple_of(8), 0);
        }
        let any = common_cases(
            &mut self.v,
            &mut self.refractory,
            j,
            &mut self.special[..n],
            self.dt,
            self.full_step,
        );
        if !any {
            return;
        }
        let consts = (self.dt, self.tau_rc, self.tau_ref, self.full_step);
        // Flags are rare: skip them eight at a time.
        for (c, flags) in self.special.chunks_exact(8).enumerate() {
            let mut word = u64::from_le_bytes(flags.try_into().expect("8 flags"));
            while word != 0 {
                let i = c * 8 + (word.trailing_zeros() / 8) as usize;
                word &= word - 1;
                if step_one(consts, &mut self.v[i], &mut self.refractory[i], j[i]) {
                    spikes.push(i as u32);
                }
            }
        }
    }
}

/// The rule for one neuron (`consts` = dt, τ_RC, t_ref, full-step factor);
/// returns whether it spiked.
#[inline]
fn step_one(consts: (f32, f32, f32, f32), v: &mut f32, r: &mut f32, j: f32) -> bool {
    let (dt, tau_rc, tau_ref, full) = consts;
    {
        // Fraction of the step this neuron integrates.
        let k = if *r <= 0.0 {
            full
        } else if *r >= dt {
            *r -= dt;
            return false;
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
            true
        } else {
            if *v < 0.0 {
                *v = 0.0;
            }
            false
        }
    }
}

crate::nn::simd::multiversion! {
    /// The vector pass of `step`: integrates the neurons that are not
    /// refractory and do not spike, counts down fully refractory ones, and
    /// flags (leaving untouched) every other neuron; returns whether any was
    /// flagged.
    fn common_cases(
        v: &mut [f32],
        refractory: &mut [f32],
        j: &[f32],
        special: &mut [u8],
        dt: f32,
        full: f32,
    ) -> bool {
        let mut any = false;
        for (((v, r), &j), s) in v
            .iter_mut()
            .zip(refractory.iter_mut())
            .zip(j)
            .zip(special.iter_mut())
        {
            let (v0, r0) = (*v, *r);
            let free = r0 <= 0.0;
            let held = r0 >= dt;
            let vn = v0 + (j - v0) * full;
            let flag = (free && vn > 1.0) || (!free && !held);
            let vn = if vn < 0.0 { 0.0 } else { vn };
            *v = if free && !flag { vn } else { v0 };
            *r = if held { r0 - dt } else { r0 };
            *s = u8::from(flag);
            any |= flag;
        }
        any
    }
}
