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
        let p = softplus(j - 1.0, self.smoothing);
        if p <= 0.0 {
            return 0.0;
        }
        1.0 / (self.tau_ref + self.tau_rc * (1.0 / p).ln_1p())
    }
}

/// `γ log(1 + e^{x/γ})`, computed without overflow.
fn softplus(x: f64, gamma: f64) -> f64 {
    let s = x / gamma;
    gamma * (s.max(0.0) + (-s.abs()).exp().ln_1p())
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
                let q = softplus(z - 1.0, p.smoothing);
                if q <= 0.0 {
                    return 0.0;
                }
                let r = p.soft_rate(z);
                let dr_dq = r * r * p.tau_rc / (q * (q + 1.0));
                p.amplitude * dr_dq * sigmoid((z - 1.0) / p.smoothing)
            }
        }
    }

    /// `a ← f(a)` in place.
    pub fn apply_inplace<T: Real>(&self, mut a: ArrayViewMut2<T>) {
        match self.kind {
            ActivationKind::Relu => a.mapv_inplace(|v| v.max(T::zero())),
            ActivationKind::Linear => {}
            ActivationKind::Tanh => a.mapv_inplace(|v| v.tanh()),
            ActivationKind::Sigmoid => a.mapv_inplace(|v| T::one() / (T::one() + (-v).exp())),
            _ => a.mapv_inplace(|v| T::of(self.value(v.f64()))),
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
        let zip = Zip::from(delta).and(&z);
        match self.kind {
            ActivationKind::Relu => zip.for_each(|d, &z| {
                if z <= T::zero() {
                    *d = T::zero()
                }
            }),
            ActivationKind::Linear => {}
            ActivationKind::Tanh => zip.for_each(|d, &z| {
                let t = z.tanh();
                *d *= T::one() - t * t
            }),
            ActivationKind::Sigmoid => zip.for_each(|d, &z| {
                let s = T::one() / (T::one() + (-z).exp());
                *d *= s * (T::one() - s)
            }),
            _ => zip.for_each(|d, &z| *d *= T::of(self.derivative(z.f64()))),
        }
    }
}
