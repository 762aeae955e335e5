//! One predictive-coding layer `l ≥ 2` and its local rules — the only place
//! the PC equations of DESIGN.md §2 are written. Every driver (the lockstep
//! reference in `lockstep.rs`, the actor runtimes) calls these methods; none
//! re-implements them.
//!
//! # Ownership of an edge
//!
//! `PcLayer` number `l` owns its value nodes `x[l]`, its prediction `u[l]`,
//! its error nodes `ε[l]`, **and the synapses `W[l]`, `b[l]` (and the
//! feedback matrix `B[l]`) of the edge `l−1 → l`**, i.e. the *receiver* of
//! the prediction owns the weights. Then
//!
//! * the **up-message** from layer `l−1` is its activity `f(x[l−1])`
//!   (`(rows, n[l−1])`), and layer `l` turns it into `u[l]` itself;
//! * the **down-message** from layer `l` is `ε[l]·W[l]` (or `ε[l]·B[l]` with
//!   feedback alignment), `(rows, n[l−1])`, already in the units of layer
//!   `l−1`;
//! * the weight update `ΔW[l] = s · ε[l]ᵀ f(x[l−1])`, `Δb[l] = s · Σ_rows ε[l]`
//!   uses only the layer's own errors and the last up-message it received, so
//!   it is local.
//!
//! # The rules API (stable; new rules are added, none renamed)
//!
//! All matrices are batched, rows = samples. Incoming message payloads are
//! taken by reference and copied into the layer's own buffers; outgoing
//! payloads are written into caller-provided buffers (`*_into`) or returned as
//! owned arrays to be moved into a message. No rule blocks, awaits, or looks
//! at another layer.
//!
//! | rule | when | effect |
//! |---|---|---|
//! | [`PcLayer::set_target`] / [`PcLayer::free_output`] | output layer, before a batch | clamp / nudge / free the output value nodes |
//! | [`PcLayer::init_feedforward`] | first up-message of a batch | `u ← W f(x[l−1]) + b`, `x ← u` (all hidden `ε = 0`) |
//! | [`PcLayer::init_at_rest`] | first up-message, relaxation from rest | `u` as above, `x ← 0` |
//! | [`PcLayer::on_activity`] | a new up-message `f(x[l−1])` | recompute `u[l]`, `ε[l]` |
//! | [`PcLayer::on_feedback`] | a down-message `ε[l+1]·W[l+1]` (hidden only) | one Euler step `x += γ(−ε + f'(x) ⊙ e)`, then `ε`, `f(x)` |
//! | [`PcLayer::activity_up`] / [`PcLayer::activity_up_into`] | to send up | `f(x[l])` |
//! | [`PcLayer::error_down`] / [`PcLayer::error_down_into`] | to send down | `ε[l]·W[l]` (`·B[l]`) with the *current* weights |
//! | [`PcLayer::weight_update_into`] | the layer's update time | `ΔW = s εᵀ f(x[l−1])`, `Δb = s Σ ε` |
//! | [`PcLayer::apply_update`] | after computing it | `W += ΔW`, `b += Δb` |
//! | [`PcLayer::add_weight_update_to`] | plain SGD, parameters kept by the driver | `w += s εᵀ f(x[l−1])` in one fused product |
//! | [`PcLayer::energy`] | monitoring | this layer's share of the energy |
//!
//! For Z-IL's exactness, a layer that updates at step `t` must compute the
//! down-message of step `t` **before** applying its update (like BP, the error
//! sent down uses the pre-update weights).
//!
//! # The output layer
//!
//! The output layer's prediction is `u[L] = W[L] f(x[L−1]) + b[L]` (`mse`)
//! or its softmax (`softmax_ce`). Its value nodes are not integrated: they
//! always sit at the optimum of the energy with a nudging term, so
//! `x[L] = u[L] + β (y − u[L])` and `ε[L] = β (y − u[L])`, recomputed whenever
//! `u[L]` changes. β = 1 clamps `x[L] = y`; β = 0 is the free output
//! (`x[L] = u[L]`, `ε[L] = 0`). This is what lets IL approach BP as β → 0:
//! the hidden dynamics are gradient descent on
//! `E = Σ_hidden ½|ε[l]|² + β · loss(y, u[L])`.

use crate::nn::{Activation, ActivationKind, LossKind, Real};
use anyhow::{Result, ensure};
use ndarray::linalg::general_mat_mul;
use ndarray::{Array1, Array2, ArrayView1, ArrayView2, ArrayViewMut1, ArrayViewMut2, Axis, Zip};

/// What a layer is: a hidden layer with its activation, or the output layer
/// with its loss.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Role {
    Hidden(Activation),
    Output(LossKind),
}

/// State and synapses of layer `l ≥ 2` (see the module docs for the rules).
#[derive(Clone, Debug)]
pub struct PcLayer<T: Real> {
    index: usize,
    role: Role,
    w: Array2<T>,
    /// `W[l]ᵀ` kept contiguous so the prediction's matrix product reads its
    /// right operand row by row (packing a transposed view is several times
    /// slower); refreshed whenever `W[l]` changes.
    wt: Array2<T>,
    b: Array1<T>,
    feedback: Option<Array2<T>>,
    /// `u` no longer matches `input` (the weights changed since).
    u_stale: bool,
    /// Value nodes `x[l]` (pre-activations), `(rows, n[l])`.
    x: Array2<T>,
    /// Prediction `u[l]` from the last up-message.
    u: Array2<T>,
    /// Error nodes `ε[l] = x[l] − u[l]`.
    eps: Array2<T>,
    /// `f(x[l])`, the up-message (hidden layers only).
    fx: Array2<T>,
    /// The last up-message received, `f(x[l−1])`, kept for ΔW.
    input: Array2<T>,
    /// Output layer: target `y` and nudging β (0 = free).
    target: Array2<T>,
    beta: T,
}

impl<T: Real> PcLayer<T> {
    /// Layer `index` (DESIGN numbering, ≥ 2) with synapses `w: (n[l], n[l−1])`,
    /// `b: (n[l],)` and optionally a fixed feedback matrix `B[l]` of `w`'s shape.
    pub fn new(
        index: usize,
        role: Role,
        w: Array2<T>,
        b: Array1<T>,
        feedback: Option<Array2<T>>,
    ) -> Result<Self> {
        ensure!(
            index >= 2,
            "PC layer index must be ≥ 2 (layer 1 is the input), got {index}"
        );
        ensure!(
            b.len() == w.nrows(),
            "layer {index}: b has {} entries but W has {} rows",
            b.len(),
            w.nrows()
        );
        if let Some(fb) = &feedback {
            ensure!(
                fb.dim() == w.dim(),
                "layer {index}: feedback matrix has shape {:?}, W has {:?}",
                fb.dim(),
                w.dim()
            );
        }
        let (n, n_in) = w.dim();
        let wt = w.t().as_standard_layout().into_owned();
        Ok(Self {
            index,
            role,
            w,
            wt,
            b,
            feedback,
            u_stale: true,
            x: Array2::zeros((0, n)),
            u: Array2::zeros((0, n)),
            eps: Array2::zeros((0, n)),
            fx: Array2::zeros((0, n)),
            input: Array2::zeros((0, n_in)),
            target: Array2::zeros((0, n)),
            beta: T::zero(),
        })
    }

    /// `l` in DESIGN.md's numbering.
    pub fn index(&self) -> usize {
        self.index
    }
    pub fn role(&self) -> Role {
        self.role
    }
    pub fn is_output(&self) -> bool {
        matches!(self.role, Role::Output(_))
    }
    /// `n[l]`.
    pub fn width(&self) -> usize {
        self.w.nrows()
    }
    /// `n[l−1]`.
    pub fn fan_in(&self) -> usize {
        self.w.ncols()
    }
    /// Rows (samples) of the current batch.
    pub fn rows(&self) -> usize {
        self.x.nrows()
    }
    pub fn weights(&self) -> ArrayView2<'_, T> {
        self.w.view()
    }
    pub fn bias(&self) -> ArrayView1<'_, T> {
        self.b.view()
    }
    pub fn feedback_matrix(&self) -> Option<ArrayView2<'_, T>> {
        self.feedback.as_ref().map(|f| f.view())
    }
    pub fn x(&self) -> ArrayView2<'_, T> {
        self.x.view()
    }
    pub fn u(&self) -> ArrayView2<'_, T> {
        self.u.view()
    }
    pub fn eps(&self) -> ArrayView2<'_, T> {
        self.eps.view()
    }
    /// The last up-message received, `f(x[l−1])`.
    pub fn input(&self) -> ArrayView2<'_, T> {
        self.input.view()
    }
    /// Output nudging β (0 when free; always 0 on hidden layers).
    pub fn beta(&self) -> T {
        self.beta
    }

    /// Overwrites `W[l]`, `b[l]` (e.g. from an `Mlp`) without reallocating.
    /// Shapes must match the layer's.
    pub fn load_params(&mut self, w: ArrayView2<T>, b: ArrayView1<T>) {
        debug_assert_eq!(w.dim(), self.w.dim());
        self.w.assign(&w);
        self.wt.assign(&w.t());
        self.b.assign(&b);
        self.u_stale = true;
    }

    /// Buffers follow the batch size; they reallocate only when it changes
    /// (so not inside an inference loop).
    fn ensure_rows(&mut self, rows: usize) {
        if self.x.nrows() != rows {
            let (n, n_in) = self.w.dim();
            for buf in [&mut self.x, &mut self.u, &mut self.eps, &mut self.fx] {
                *buf = Array2::zeros((rows, n));
            }
            self.input = Array2::zeros((rows, n_in));
            self.u_stale = true;
        }
    }

    /// Rule (output layer, before a batch): clamp the output towards the
    /// target, `x[L] = u[L] + β (y − u[L])` (β = 1 clamps `x[L] = y`).
    /// On a hidden layer this does nothing.
    pub fn set_target(&mut self, y: ArrayView2<T>, beta: T) {
        if !self.is_output() {
            return;
        }
        if self.target.dim() != y.dim() {
            self.target = Array2::zeros(y.raw_dim());
        }
        self.target.assign(&y);
        self.beta = beta;
    }

    /// Rule (output layer, before a batch): leave the output free
    /// (`x[L] = u[L]`, `ε[L] = 0`), as when predicting.
    pub fn free_output(&mut self) {
        self.beta = T::zero();
    }

    /// Rule: first up-message of a batch; start from the feedforward pass
    /// (`x ← u`, so hidden errors are 0; the output applies its clamp).
    pub fn init_feedforward(&mut self, below: ArrayView2<T>) {
        self.ensure_rows(below.nrows());
        self.input.assign(&below);
        self.predict();
        self.x.assign(&self.u);
        self.refresh();
    }

    /// Rule: first up-message of a batch; value nodes start at rest (`x ← 0`).
    pub fn init_at_rest(&mut self, below: ArrayView2<T>) {
        self.ensure_rows(below.nrows());
        self.input.assign(&below);
        self.predict();
        self.x.fill(T::zero());
        self.refresh();
    }

    /// Rule: a new up-message `f(x[l−1])` arrived; recompute `u[l]` and `ε[l]`.
    /// A message equal to the last one with unchanged weights leaves `u[l]`
    /// and `ε[l]` as they are (no matrix product, and no needless
    /// recomputation of `ε` as the difference `x − u`, see `on_feedback`).
    pub fn on_activity(&mut self, below: ArrayView2<T>) {
        if self.u_stale || self.input.dim() != below.dim() || self.input != below {
            self.ensure_rows(below.nrows());
            self.input.assign(&below);
            self.predict();
            self.refresh_error();
        }
    }

    /// Rule (hidden layers): a down-message `e = ε[l+1]·W[l+1]` arrived; one
    /// Euler step of the value nodes, `x += γ(−ε[l] + f'(x[l]) ⊙ e)`, and
    /// `f(x[l])`. The prediction `u[l]` has not changed, so `ε[l] = x[l] − u[l]`
    /// moves by the same step and is updated by it rather than recomputed as
    /// a difference: mathematically the same, but it avoids the cancellation
    /// of `x − u` when `|ε| ≪ |u|` (in Z-IL the errors then equal BP's deltas
    /// exactly, which keeps f32 runs on BP's trajectory).
    /// On the output layer this does nothing (its value nodes follow the nudge).
    pub fn on_feedback(&mut self, above: ArrayView2<T>, gamma: T) {
        let Role::Hidden(act) = self.role else {
            return;
        };
        euler_step(
            &act,
            gamma,
            above,
            self.x.view_mut(),
            self.eps.view_mut(),
            self.fx.view_mut(),
            None,
        );
    }

    /// Rule (error nodes of a hidden layer whose value nodes are another
    /// actor, `runtime.granularity = "nodes"`): the value nodes took the
    /// Euler step `step` (`ValueNodes::euler`); `x += step`, `ε += step` —
    /// the same additions `on_feedback` makes, so the split layer follows the
    /// whole one bit for bit. `f(x)` is the value nodes' to send.
    pub fn on_value_step(&mut self, step: ArrayView2<T>) {
        if self.is_output() {
            return;
        }
        self.x += &step;
        self.eps += &step;
    }

    /// Outgoing up-message `f(x[l])` (hidden layers; on the output layer,
    /// `x[L]`).
    pub fn activity_up(&self) -> ArrayView2<'_, T> {
        match self.role {
            Role::Hidden(_) => self.fx.view(),
            Role::Output(_) => self.x.view(),
        }
    }

    /// `out ← f(x[l])`.
    pub fn activity_up_into(&self, mut out: ArrayViewMut2<T>) {
        out.assign(&self.activity_up());
    }

    /// `out ← ε[l]·W[l]` (or `ε[l]·B[l]`), shape `(rows, n[l−1])`, with the
    /// current (not yet updated) weights.
    /// All-zero errors (a hidden layer right after the feedforward
    /// initialisation) give a zero message without the matrix product.
    pub fn error_down_into(&self, mut out: ArrayViewMut2<T>) {
        if self.eps.iter().all(|&e| e == T::zero()) {
            out.fill(T::zero());
            return;
        }
        let m = self.feedback.as_ref().unwrap_or(&self.w);
        general_mat_mul(T::one(), &self.eps, m, T::zero(), &mut out);
    }

    /// Owned down-message, to be moved into a message.
    pub fn error_down(&self) -> Array2<T> {
        let mut out = Array2::zeros((self.rows(), self.fan_in()));
        self.error_down_into(out.view_mut());
        out
    }

    /// `w += s · ε[l]ᵀ f(x[l−1])`, `b += s · Σ_rows ε[l]` accumulated straight
    /// into the given parameters (one fused product, no ΔW buffer): the
    /// plain-SGD fast path of a driver that keeps the parameters elsewhere
    /// (an `Mlp`). Its rounding matches `Backprop`'s fused SGD path, so Z-IL
    /// and BP stay on the same f32 trajectory. The layer's own `W[l]` is not
    /// touched.
    pub fn add_weight_update_to(&self, scale: T, mut w: ArrayViewMut2<T>, mut b: ArrayViewMut1<T>) {
        general_mat_mul(scale, &self.eps.t(), &self.input, T::one(), &mut w);
        for row in self.eps.axis_iter(Axis(0)) {
            b.scaled_add(scale, &row);
        }
    }

    /// `dw ← s · ε[l]ᵀ f(x[l−1])`, `db ← s · Σ_rows ε[l]` (the driver picks
    /// `s = α / (β · rows)`).
    pub fn weight_update_into(&self, scale: T, mut dw: ArrayViewMut2<T>, mut db: ArrayViewMut1<T>) {
        general_mat_mul(scale, &self.eps.t(), &self.input, T::zero(), &mut dw);
        db.fill(T::zero());
        for row in self.eps.axis_iter(Axis(0)) {
            db.scaled_add(scale, &row);
        }
    }

    /// `W[l] += dw`, `b[l] += db`.
    pub fn apply_update(&mut self, dw: ArrayView2<T>, db: ArrayView1<T>) {
        self.w += &dw;
        self.wt += &dw.t();
        self.b += &db;
        self.u_stale = true;
    }

    /// This layer's share of the energy, summed over the batch:
    /// `½|ε[l]|²` for a hidden layer, `β · loss(y, u[L])` for the output
    /// (equal to `½|ε[L]|²` for `mse` with β = 1; 0 when free).
    pub fn energy(&self) -> f64 {
        match self.role {
            Role::Hidden(_) => 0.5 * self.eps.iter().map(|e| e.f64() * e.f64()).sum::<f64>(),
            Role::Output(loss) => {
                if self.beta == T::zero() {
                    0.0
                } else {
                    self.beta.f64() * loss.loss(self.u.view(), self.target.view()).f64()
                }
            }
        }
    }

    fn predict(&mut self) {
        self.u.assign(
            &self
                .b
                .broadcast(self.u.raw_dim())
                .expect("b matches the width"),
        );
        general_mat_mul(T::one(), &self.input, &self.wt, T::one(), &mut self.u);
        self.u_stale = false;
        if let Role::Output(loss) = self.role {
            loss.output_inplace(self.u.view_mut());
        }
    }

    /// After `x` changed: `f(x)` and `ε`.
    fn refresh(&mut self) {
        if let Role::Hidden(act) = self.role {
            act.apply_into(self.x.view(), self.fx.view_mut());
        }
        self.refresh_error();
    }

    fn refresh_error(&mut self) {
        match self.role {
            Role::Hidden(_) => Zip::from(&mut self.eps)
                .and(&self.x)
                .and(&self.u)
                .for_each(|e, &x, &u| *e = x - u),
            Role::Output(_) => {
                let beta = self.beta;
                if beta == T::zero() {
                    self.eps.fill(T::zero());
                    self.x.assign(&self.u);
                    return;
                }
                // ε = β(y − u) computed directly rather than as x − u, so a
                // full clamp gives exactly y − u (BP's −δ[L]) bit for bit.
                Zip::from(&mut self.eps)
                    .and(&self.target)
                    .and(&self.u)
                    .for_each(|e, &y, &u| {
                        *e = if beta == T::one() {
                            y - u
                        } else {
                            beta * (y - u)
                        }
                    });
                if beta == T::one() {
                    self.x.assign(&self.target);
                } else {
                    Zip::from(&mut self.x)
                        .and(&self.u)
                        .and(&self.eps)
                        .for_each(|x, &u, &e| *x = u + e);
                }
            }
        }
    }
}

/// The hidden layer's Euler step fused into one pass over its nodes:
/// `Δ = γ(f'(x) ⊙ e − ε)`, `x += Δ`, `ε += Δ`, `f(x)`. The activation is matched
/// once, outside the loop, and ReLU's derivative is a select rather than a
/// branch (a mispredicted branch per node cost as much as the matrix
/// products). Each `f`/`f'` repeats `Activation`'s arithmetic exactly, so
/// Z-IL's errors are BP's deltas bit for bit.
/// With `step_out`, the step Δ is written there too (a value-node actor
/// sends it to its error nodes).
pub(crate) fn euler_step<T: Real>(
    act: &Activation,
    gamma: T,
    above: ArrayView2<T>,
    x: ArrayViewMut2<T>,
    eps: ArrayViewMut2<T>,
    fx: ArrayViewMut2<T>,
    step_out: Option<ArrayViewMut2<T>>,
) {
    let one = T::one();
    let zero = T::zero();
    let sigmoid = move |v: T| one / (one + (-v).exp());
    match act.kind {
        ActivationKind::Relu => fused(
            gamma,
            above,
            x,
            eps,
            fx,
            step_out,
            |x, d| if x <= zero { zero } else { d },
            |v| v.max(zero),
        ),
        ActivationKind::Linear => fused(gamma, above, x, eps, fx, step_out, |_, d| d, |v| v),
        ActivationKind::Tanh => fused(
            gamma,
            above,
            x,
            eps,
            fx,
            step_out,
            |x, d| {
                let t = x.tanh();
                d * (one - t * t)
            },
            |v| v.tanh(),
        ),
        ActivationKind::Sigmoid => fused(
            gamma,
            above,
            x,
            eps,
            fx,
            step_out,
            |x, d| {
                let s = sigmoid(x);
                d * (s * (one - s))
            },
            sigmoid,
        ),
        ActivationKind::Lif | ActivationKind::SoftLif => fused(
            gamma,
            above,
            x,
            eps,
            fx,
            step_out,
            |x, d| d * T::of(act.derivative(x.f64())),
            |v| T::of(act.value(v.f64())),
        ),
    }
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn fused<T: Real>(
    gamma: T,
    above: ArrayView2<T>,
    x: ArrayViewMut2<T>,
    eps: ArrayViewMut2<T>,
    fx: ArrayViewMut2<T>,
    step_out: Option<ArrayViewMut2<T>>,
    df: impl Fn(T, T) -> T,
    f: impl Fn(T) -> T,
) {
    let zip = Zip::from(x).and(eps).and(fx).and(&above);
    match step_out {
        None => zip.for_each(|x, e, fx, &a| {
            let step = gamma * (df(*x, a) - *e);
            *x += step;
            *e += step;
            *fx = f(*x);
        }),
        Some(out) => zip.and(out).for_each(|x, e, fx, &a, o| {
            let step = gamma * (df(*x, a) - *e);
            *x += step;
            *e += step;
            *fx = f(*x);
            *o = step;
        }),
    }
}
