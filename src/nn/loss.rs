//! Output layers and their losses: squared error on a linear output, and
//! softmax cross-entropy (stable: logits shifted by their row maximum).

use super::Real;
use ndarray::{ArrayView2, ArrayViewMut2, Axis, Zip};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LossKind {
    /// `½|ŷ - y|²` on a linear output.
    Mse,
    /// Softmax output with cross-entropy `-Σ y log ŷ`.
    SoftmaxCe,
}

impl LossKind {
    pub const ALLOWED: &'static str = "mse, softmax_ce";

    /// Turns the output pre-activation `z[L]` into the prediction `ŷ` in place.
    pub fn output_inplace<T: Real>(&self, mut z: ArrayViewMut2<T>) {
        if *self == LossKind::SoftmaxCe {
            for mut row in z.rows_mut() {
                let max = row.fold(T::neg_infinity(), |m, &v| m.max(v));
                let mut sum = T::zero();
                row.mapv_inplace(|v| {
                    let e = (v - max).exp();
                    sum += e;
                    e
                });
                let inv = T::one() / sum;
                row.mapv_inplace(|v| v * inv);
            }
        }
    }

    /// Summed (not averaged) loss over the batch, given the prediction `ŷ`.
    pub fn loss<T: Real>(&self, yhat: ArrayView2<T>, y: ArrayView2<T>) -> T {
        let mut total = T::zero();
        match self {
            LossKind::Mse => Zip::from(&yhat).and(&y).for_each(|&p, &t| {
                let d = p - t;
                total += d * d;
            }),
            LossKind::SoftmaxCe => {
                // Floor on ŷ keeps a confident wrong answer finite.
                let floor = T::of(1e-30);
                Zip::from(&yhat).and(&y).for_each(|&p, &t| {
                    if t != T::zero() {
                        total -= t * p.max(floor).ln();
                    }
                })
            }
        }
        match self {
            LossKind::Mse => total * T::of(0.5),
            LossKind::SoftmaxCe => total,
        }
    }

    /// `out ← ∂loss/∂z[L] = ŷ - y` (the same form for both losses).
    pub fn delta_into<T: Real>(
        &self,
        yhat: ArrayView2<T>,
        y: ArrayView2<T>,
        out: ArrayViewMut2<T>,
    ) {
        Zip::from(out)
            .and(&yhat)
            .and(&y)
            .for_each(|d, &p, &t| *d = p - t);
    }
}

/// Number of rows whose arg-max matches the one-hot target's.
pub fn count_correct<T: Real>(yhat: ArrayView2<T>, y: ArrayView2<T>) -> usize {
    yhat.axis_iter(Axis(0))
        .zip(y.axis_iter(Axis(0)))
        .filter(|(p, t)| argmax(p.iter().copied()) == argmax(t.iter().copied()))
        .count()
}

pub fn argmax<T: Real>(values: impl Iterator<Item = T>) -> usize {
    let mut best = (0, T::neg_infinity());
    for (i, v) in values.enumerate() {
        if v > best.1 {
            best = (i, v);
        }
    }
    best.0
}
