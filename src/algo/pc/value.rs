//! The value nodes `x[l]` of a hidden layer (or of a group of it) kept apart
//! from the layer's error nodes, as the actor runtime's finest granularity
//! (`runtime.granularity = "nodes"`) needs: the error nodes (a `PcLayer`)
//! own `W[l]`, compute `u[l]` and `ε[l] = x[l] − u[l]`; the value nodes here
//! receive `ε[l]` from them and `ε[l+1]·W[l+1]` from above, take the Euler
//! step and send `f(x[l])` up and the step itself back to their error nodes
//! (`PcLayer::on_value_step`). The step is `PcLayer::on_feedback`'s, computed
//! by the same function, so a network of split layers follows the whole-layer
//! one bit for bit.

use super::StepControl;
use super::layer::{Control, euler_step};
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
    /// The per-sample step control (`euler_step`): last direction, factor.
    control: StepControl,
    dir: Array2<T>,
    gain: Array2<T>,
}

impl<T: Real> ValueNodes<T> {
    pub fn new(act: Activation) -> Self {
        Self {
            act,
            x: Array2::zeros((0, 0)),
            eps: Array2::zeros((0, 0)),
            fx: Array2::zeros((0, 0)),
            step: Array2::zeros((0, 0)),
            control: StepControl::default(),
            dir: Array2::zeros((0, 0)),
            gain: Array2::zeros((0, 1)),
        }
    }

    /// How the Euler steps are sized (default: the local curvature limit).
    pub fn set_step_control(&mut self, control: StepControl) {
        self.control = control;
    }

    /// Rule: a sample starts from the feedforward pass, `x ← u` (sent by the
    /// error nodes), so `ε = 0`; computes `f(x)`.
    pub fn init(&mut self, x0: ArrayView2<T>) {
        if self.x.dim() != x0.dim() {
            for buf in [
                &mut self.x,
                &mut self.eps,
                &mut self.fx,
                &mut self.step,
                &mut self.dir,
            ] {
                *buf = Array2::zeros(x0.raw_dim());
            }
            self.gain = Array2::ones((x0.nrows(), 1));
        }
        self.dir.fill(T::zero());
        self.gain.fill(T::one());
        self.x.assign(&x0);
        self.eps.fill(T::zero());
        self.act.apply_into(self.x.view(), self.fx.view_mut());
    }

    /// Rule: the error nodes reported `ε[l]`.
    pub fn set_error(&mut self, eps: ArrayView2<T>) {
        self.eps.assign(&eps);
    }

    /// Rule: one Euler step with the feedback `e = ε[l+1]·W[l+1]`,
    /// `Δ = γ g (f'(x) ⊙ e − ε)` (`g`: the local step control, as in
    /// `PcLayer::on_feedback`), `x += Δ`, then `f(x)`; `step()` is Δ.
    pub fn euler(&mut self, above: ArrayView2<T>, gamma: T) {
        euler_step(
            &self.act,
            gamma,
            above,
            self.x.view_mut(),
            self.eps.view_mut(),
            self.fx.view_mut(),
            Control {
                limit: self.control == StepControl::LocalCurvature,
                dir: self.dir.view_mut(),
                gain: self.gain.view_mut(),
            },
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
