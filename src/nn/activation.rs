//! Elementwise activations `f` and their derivatives `f'`, including the LIF
//! firing-rate curves used for shadow training of spiking networks (DESIGN.md §4).

use super::Real;
use ndarray::{ArrayView2, ArrayViewMut2, Zip};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActivationKind {
    Relu,
    Sigmoid,
    Tanh,
    Linear,
    /// Steady-state LIF rate `r(j)` (not differentiable at `j = 1`).
    Lif,
    /// Soft-LIF: `j - 1` smoothed by a softplus of width `smoothing`.
    SoftLif,
}

impl ActivationKind {
    pub const ALLOWED: &'static str = "relu, sigmoid, tanh, linear, lif, soft_lif";
}

/// Constants of the LIF rate curve. Defaults are the seed thesis' values.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LifParams {
    /// Membrane time constant τ_RC in seconds.
    pub tau_rc: f64,
    /// Refractory period t_ref in seconds.
    pub tau_ref: f64,
    /// Factor on the rate so the curve resembles ReLU on [0, 10].
    pub amplitude: f64,
    /// Soft-LIF smoothing γ_s (only used by `soft_lif`).
    pub smoothing: f64,
}

impl Default for LifParams {
    fn default() -> Self {
        Self {
            tau_rc: 0.02,
            tau_ref: 0.004,
            amplitude: 0.05,
            smoothing: 0.02,
        }
    }
}

impl LifParams {
    /// Steady-state firing rate in Hz for a constant input current `j`.
    pub fn rate(&self, j: f64) -> f64 {
        if j > 1.0 {
            1.0 / (self.tau_ref - self.tau_rc * (-1.0 / j).ln_1p())
        } else {
            0.0
        }
    }

    /// Soft-LIF rate in Hz: `1 / (t_ref + τ_RC log(1 + 1/ρ(j - 1)))`.
    pub fn soft_rate(&self, j: f64) -> f64 {
        soft_lif_terms(j, self.smoothing, self.tau_ref, self.tau_rc).0
    }
}

/// Below `s = (j − 1)/γ_s` = this, `ρ = γ_s log(1 + e^s)` is `γ_s e^s` to
/// within `e^s`, and `log(1 + 1/ρ) = −log γ_s − s` to within `ρ`: the
/// soft-LIF terms are computed in that closed form, which neither
/// underflows (f32 would reach ρ = 0 at s ≈ −100) nor loses precision.
const SOFT_LIF_TAIL: f64 = -20.0;

/// Soft-LIF rate `r` and `dr/dj` (no amplitude), stable for any `j`
/// (generic so the f32 training path stays in f32).
#[inline]
fn soft_lif_terms<F: num_traits::Float>(j: F, gamma: F, tau_ref: F, tau_rc: F) -> (F, F) {
    let one = F::one();
    let s = (j - one) / gamma;
    let tail = F::from(SOFT_LIF_TAIL).expect("a small constant");
    if !s.is_finite() {
        return if s > F::zero() {
            (one / tau_ref, F::zero())
        } else {
            (F::zero(), F::zero())
        };
    }
    let (log_term, sig_over_q_q1) = if s < tail {
        // ρ ≈ γ e^s, σ(s)/ρ ≈ 1/γ, ρ + 1 ≈ 1.
        (-(gamma.ln() + s), one / gamma)
    } else {
        let e = (-s.abs()).exp();
        let q = gamma * (s.max(F::zero()) + e.ln_1p());
        let sig = if s >= F::zero() {
            one / (one + e)
        } else {
            e / (one + e)
        };
        ((one / q).ln_1p(), sig / (q * (q + one)))
    };
    let r = one / (tau_ref + tau_rc * log_term);
    (r, r * r * tau_rc * sig_over_q_q1)
}

crate::nn::simd::multiversion! {
    fn relu_derivative<T: Real>(z: ArrayView2<T>, delta: ArrayViewMut2<T>) {
        let zero = T::zero();
        Zip::from(delta)
            .and(&z)
            .for_each(|d, &z| *d = if z <= zero { zero } else { *d });
    }
}

fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// An activation together with its constants.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Activation {
    pub kind: ActivationKind,
    pub lif: LifParams,
}

impl Activation {
    pub fn new(kind: ActivationKind) -> Self {
        Self {
            kind,
            lif: LifParams::default(),
        }
    }

    pub fn with_lif(kind: ActivationKind, lif: LifParams) -> Self {
        Self { kind, lif }
    }

    /// `f(z)` for one value (f64 reference path, also used by tests).
    pub fn value(&self, z: f64) -> f64 {
        match self.kind {
            ActivationKind::Relu => z.max(0.0),
            ActivationKind::Sigmoid => sigmoid(z),
            ActivationKind::Tanh => z.tanh(),
            ActivationKind::Linear => z,
            ActivationKind::Lif => self.lif.amplitude * self.lif.rate(z),
            ActivationKind::SoftLif => self.lif.amplitude * self.lif.soft_rate(z),
        }
    }

    /// `f'(z)` for one value.
    pub fn derivative(&self, z: f64) -> f64 {
        let p = &self.lif;
        match self.kind {
            ActivationKind::Relu => {
                if z > 0.0 {
                    1.0
                } else {
                    0.0
                }
            }
            ActivationKind::Sigmoid => {
                let s = sigmoid(z);
                s * (1.0 - s)
            }
            ActivationKind::Tanh => 1.0 - z.tanh().powi(2),
            ActivationKind::Linear => 1.0,
            ActivationKind::Lif => {
                if z > 1.0 {
                    let r = p.rate(z);
                    p.amplitude * r * r * p.tau_rc / (z * (z - 1.0))
                } else {
                    0.0
                }
            }
            ActivationKind::SoftLif => {
                // dr/dj = r² τ_RC / (ρ (ρ + 1)) · σ((j − 1)/γ_s)
                p.amplitude * soft_lif_terms(z, p.smoothing, p.tau_ref, p.tau_rc).1
            }
        }
    }

    /// `(γ_s, t_ref, τ_RC, amplitude)` in the run's precision.
    fn soft_lif_consts<T: Real>(&self) -> (T, T, T, T) {
        let p = &self.lif;
        (
            T::of(p.smoothing),
            T::of(p.tau_ref),
            T::of(p.tau_rc),
            T::of(p.amplitude),
        )
    }

    /// `a ← f(a)` in place.
    pub fn apply_inplace<T: Real>(&self, mut a: ArrayViewMut2<T>) {
        match self.kind {
            ActivationKind::Relu => a.mapv_inplace(|v| v.max(T::zero())),
            ActivationKind::Linear => {}
            ActivationKind::Tanh => a.mapv_inplace(|v| v.tanh()),
            ActivationKind::Sigmoid => a.mapv_inplace(|v| T::one() / (T::one() + (-v).exp())),
            ActivationKind::SoftLif => {
                let (g, tr, tc, amp) = self.soft_lif_consts::<T>();
                a.mapv_inplace(|v| amp * soft_lif_terms(v, g, tr, tc).0)
            }
            ActivationKind::Lif => a.mapv_inplace(|v| T::of(self.value(v.f64()))),
        }
    }

    /// `out ← f(z)`.
    pub fn apply_into<T: Real>(&self, z: ArrayView2<T>, mut out: ArrayViewMut2<T>) {
        out.assign(&z);
        self.apply_inplace(out);
    }

    /// `delta ← f'(z) ⊙ delta`, the step every backward pass and every PC
    /// value-node update needs.
    pub fn mul_derivative<T: Real>(&self, z: ArrayView2<T>, delta: ArrayViewMut2<T>) {
        if self.kind == ActivationKind::Relu {
            // A select, not a branch: the sign of z is unpredictable.
            return relu_derivative(z, delta);
        }
        let zip = Zip::from(delta).and(&z);
        match self.kind {
            ActivationKind::Relu => {}
            ActivationKind::Linear => {}
            ActivationKind::Tanh => zip.for_each(|d, &z| {
                let t = z.tanh();
                *d *= T::one() - t * t
            }),
            ActivationKind::Sigmoid => zip.for_each(|d, &z| {
                let s = T::one() / (T::one() + (-z).exp());
                *d *= s * (T::one() - s)
            }),
            ActivationKind::SoftLif => {
                let (g, tr, tc, amp) = self.soft_lif_consts::<T>();
                zip.for_each(|d, &z| *d *= amp * soft_lif_terms(z, g, tr, tc).1)
            }
            ActivationKind::Lif => zip.for_each(|d, &z| *d *= T::of(self.derivative(z.f64()))),
        }
    }
}
