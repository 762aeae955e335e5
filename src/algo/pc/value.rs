//! The value nodes `x[l]` of a hidden layer (or of a group of it) kept apart
//! from the layer's error nodes, as the actor runtime's finest granularity
//! (`runtime.granularity = "nodes"`) needs: the error nodes (a `PcLayer`)
//! own `W[l]`, compute `u[l]` and `ε[l] = x[l] − u[l]`; the value nodes here
//! receive `ε[l]` from them and `ε[l+1]·W[l+1]` from above, take the Euler
//! step and send `f(x[l])` up and the step itself back to their error nodes
//! (`PcLayer::on_value_step`). The step is `PcLayer::on_feedback`'s, computed
//! by the same function, so a network of split layers follows the whole-layer
//! one bit for bit.

use super::layer::euler_step;
use crate::nn::{Activation, Real};
use ndarray::{Array2, ArrayView2};

/// Value nodes of one hidden layer slice, with the last error their error
/// nodes reported.
#[derive(Clone, Debug)]
pub struct ValueNodes<T: Real> {
    act: Activation,
    x: Array2<T>,
    /// `ε[l]` as last received from the error nodes.
    eps: Array2<T>,
    fx: Array2<T>,
    /// The last Euler step Δ.
    step: Array2<T>,
}

impl<T: Real> ValueNodes<T> {
    pub fn new(act: Activation) -> Self {
        Self {
            act,
            x: Array2::zeros((0, 0)),
            eps: Array2::zeros((0, 0)),
            fx: Array2::zeros((0, 0)),
            step: Array2::zeros((0, 0)),
        }
    }

    /// Rule: a sample starts from the feedforward pass, `x ← u` (sent by the
    /// error nodes), so `ε = 0`; computes `f(x)`.
    pub fn init(&mut self, x0: ArrayView2<T>) {
        if self.x.dim() != x0.dim() {
            for buf in [&mut self.x, &mut self.eps, &mut self.fx, &mut self.step] {
                *buf = Array2::zeros(x0.raw_dim());
            }
        }
        self.x.assign(&x0);
        self.eps.fill(T::zero());
        self.act.apply_into(self.x.view(), self.fx.view_mut());
    }

    /// Rule: the error nodes reported `ε[l]`.
    pub fn set_error(&mut self, eps: ArrayView2<T>) {
        self.eps.assign(&eps);
    }

    /// Rule: one Euler step with the feedback `e = ε[l+1]·W[l+1]`,
    /// `Δ = γ(f'(x) ⊙ e − ε)`, `x += Δ`, then `f(x)`; `step()` is Δ.
    pub fn euler(&mut self, above: ArrayView2<T>, gamma: T) {
        euler_step(
            &self.act,
            gamma,
            above,
            self.x.view_mut(),
            self.eps.view_mut(),
            self.fx.view_mut(),
            Some(self.step.view_mut()),
        );
    }

    /// The last Euler step Δ (for the error nodes).
    pub fn step(&self) -> ArrayView2<'_, T> {
        self.step.view()
    }

    /// The up-message `f(x[l])`.
    pub fn activity_up(&self) -> ArrayView2<'_, T> {
        self.fx.view()
    }

    pub fn x(&self) -> ArrayView2<'_, T> {
        self.x.view()
    }
}
