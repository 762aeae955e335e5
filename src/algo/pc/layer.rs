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
//! | [`PcLayer::on_feedback`] | a down-message `ε[l+1]·W[l+1]` (hidden only) | one Euler step `x += γ g (−ε + f'(x) ⊙ e)` (`g` ≤ 1: the local step control, `euler_step`), then `ε`, `f(x)` |
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
//! # Row blocks
//!
//! Samples never interact inside a layer, so every rule that touches
//! per-sample state is written once on a block of rows (`Rows`) against the
//! layer's shared parameters (`Params`). `PcLayer`'s methods call them on
//! all rows; the lockstep driver cuts the batch into one block per thread
//! and relaxes each block on its own core. The kernels (`nn::kernels`) give
//! a row the same bits whatever block it is in, and the one per-sample
//! decision a rule makes (does an up-message change this row's prediction?)
//! is taken row by row, so both drivers compute identical numbers.
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

use super::StepControl;
use crate::nn::kernels::{
    Accum, column_sums, matmul, rank_update, sparse_matmul, sparse_rank_update, transpose_into,
};
use crate::nn::simd::multiversion;
use crate::nn::sparse::{SPARSE_DENSITY, SparseRows, density};
use crate::nn::{Activation, ActivationKind, LossKind, Real};
use anyhow::{Result, ensure};
use ndarray::{
    Array1, Array2, ArrayView1, ArrayView2, ArrayViewMut1, ArrayViewMut2, Axis, ShapeBuilder, Zip,
    s,
};

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
    /// `W[l]`, kept column-major so `W[l]ᵀ` (the prediction's right operand)
    /// has contiguous rows.
    w: Array2<T>,
    /// `W[l]` row-major, for the down-message `ε·W[l]` (layers `l ≥ 3`; layer
    /// 2 sends nothing down to the clamped input). Refreshed whenever `W[l]`
    /// changes.
    w_rows: Option<Array2<T>>,
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
    /// The input is mostly zeros (a clamped MNIST batch): the prediction and
    /// the update use its non-zeros only, one `SparseRows` per row block
    /// (`sparse_cuts`).
    sparse_input: bool,
    sparse: Vec<SparseRows<T>>,
    sparse_cuts: Vec<usize>,
    /// Density of the whole batch for the next `prepare`, when this layer
    /// holds only some of its rows (a shard): every shard then takes the
    /// path the whole batch takes.
    batch_density: Option<f64>,
    /// Scratch: which rows the last up-message changed.
    changed: Vec<bool>,
    /// `w_rows` matches `w` (not after `swap_params` until `split`).
    mirror_fresh: bool,
    /// How the hidden value nodes size their Euler steps.
    control: StepControl,
    /// Per sample (row): the descent direction `d = f'(x) ⊙ e − ε` of the
    /// last Euler step (0 before the first), `(rows, n[l])`.
    dir: Array2<T>,
    /// Per sample: the factor `g ≤ 1` of its step `γ g` (1 at the start of a
    /// batch; only ever lowered within a relaxation), `(rows, 1)`.
    gain: Array2<T>,
}

/// A layer's parameters and settings, shared by all its row blocks.
pub(crate) struct Params<'a, T: Real> {
    role: Role,
    w: ArrayView2<'a, T>,
    w_rows: Option<ArrayView2<'a, T>>,
    b: ArrayView1<'a, T>,
    feedback: Option<ArrayView2<'a, T>>,
    beta: T,
    sparse_input: bool,
    control: StepControl,
}

/// One block of rows of a layer's per-sample state.
pub(crate) struct Rows<'a, T: Real> {
    x: ArrayViewMut2<'a, T>,
    u: ArrayViewMut2<'a, T>,
    eps: ArrayViewMut2<'a, T>,
    fx: ArrayViewMut2<'a, T>,
    input: ArrayViewMut2<'a, T>,
    target: ArrayView2<'a, T>,
    changed: &'a mut [bool],
    sparse: &'a mut SparseRows<T>,
    dir: ArrayViewMut2<'a, T>,
    gain: ArrayViewMut2<'a, T>,
    /// This block's copy of the layer's `u_stale`.
    pub(crate) stale: bool,
    /// Index of the block's first row in the batch.
    first: usize,
}

impl<T: Real> Params<'_, T> {
    pub(crate) fn role(&self) -> Role {
        self.role
    }

    /// `u ← b + input · Wᵀ` (the sparse kernel for a sparse input, which
    /// `init` indexed), then the output non-linearity.
    fn predict(&self, r: &mut Rows<'_, T>) {
        if self.sparse_input {
            sparse_matmul(r.sparse, 0, self.w.t(), self.b, r.u.view_mut());
        } else {
            matmul(r.input.view(), self.w.t(), Some(self.b), r.u.view_mut());
        }
        r.stale = false;
        if let Role::Output(loss) = self.role {
            loss.output_inplace(r.u.view_mut());
        }
    }

    /// First up-message of a batch: `input ← below`, `u`, then `x ← u`
    /// (feedforward) or `x ← 0` (at rest), `f(x)` and `ε`.
    pub(crate) fn init(&self, r: &mut Rows<'_, T>, below: ArrayView2<T>, at_rest: bool) {
        r.input.assign(&below);
        if self.sparse_input {
            r.sparse.fill(r.input.view());
        }
        self.predict(r);
        if at_rest {
            r.x.fill(T::zero());
        } else {
            r.x.assign(&r.u);
        }
        if let Role::Hidden(act) = self.role {
            act.apply_into(r.x.view(), r.fx.view_mut());
        }
        // A new relaxation: no last step, full step size.
        r.dir.fill(T::zero());
        r.gain.fill(T::one());
        r.changed.fill(true);
        self.refresh_error(r);
    }

    /// A new up-message: rows whose input changed (all of them if the
    /// weights did) get a new prediction and error; the others keep theirs,
    /// including an error that Euler steps moved (recomputing it as `x − u`
    /// would round differently, see `on_feedback`).
    pub(crate) fn activity(&self, r: &mut Rows<'_, T>, below: ArrayView2<T>) {
        let mut any = false;
        for (i, changed) in r.changed.iter_mut().enumerate() {
            *changed = r.stale || r.input.row(i) != below.row(i);
            if *changed {
                r.input.row_mut(i).assign(&below.row(i));
                any = true;
            }
        }
        if !any {
            return;
        }
        if self.sparse_input {
            r.sparse.fill(r.input.view());
        }
        self.predict(r);
        self.refresh_error(r);
    }

    /// Hidden layers: one Euler step from the down-message (see
    /// `PcLayer::on_feedback`).
    pub(crate) fn feedback(&self, r: &mut Rows<'_, T>, above: ArrayView2<T>, gamma: T) {
        if let Role::Hidden(act) = self.role {
            euler_step(
                &act,
                gamma,
                above,
                r.x.view_mut(),
                r.eps.view_mut(),
                r.fx.view_mut(),
                Control {
                    limit: self.control == StepControl::LocalCurvature,
                    dir: r.dir.view_mut(),
                    gain: r.gain.view_mut(),
                },
                None,
            );
        }
    }

    /// Monitoring: the energy share of row `i` of a block, `½|ε|²` (hidden)
    /// or `β · loss(y, u)` (output; 0 when free), in f64.
    pub(crate) fn row_energy(&self, r: &Rows<'_, T>, i: usize) -> f64 {
        match self.role {
            Role::Hidden(_) => half_sum_sq(r.eps.row(i)),
            Role::Output(loss) => {
                if self.beta == T::zero() {
                    return 0.0;
                }
                let (u, y) = (
                    r.u.slice(s![i..i + 1, ..]),
                    r.target.slice(s![i..i + 1, ..]),
                );
                self.beta.f64() * loss.loss(u, y).f64()
            }
        }
    }

    /// `out ← ε · W` (or `ε · B`) for a block of rows.
    pub(crate) fn error_down(&self, eps: ArrayView2<T>, mut out: ArrayViewMut2<T>) {
        if eps.iter().all(|&e| e == T::zero()) {
            out.fill(T::zero());
            return;
        }
        let m = match (self.feedback, self.w_rows) {
            (Some(f), _) => f,
            (None, Some(w)) => w,
            // Layer 2 has no row-major copy; the kernel copies W (rare).
            (None, None) => self.w,
        };
        matmul(eps, m, None, out);
    }

    /// `ε` of the rows marked in `changed` from `x`, `u` (and the target).
    fn refresh_error(&self, r: &mut Rows<'_, T>) {
        for i in 0..r.changed.len() {
            if !r.changed[i] {
                continue;
            }
            let (mut e, mut x, u) = (r.eps.row_mut(i), r.x.row_mut(i), r.u.row(i));
            match self.role {
                Role::Hidden(_) => Zip::from(&mut e)
                    .and(&x)
                    .and(&u)
                    .for_each(|e, &x, &u| *e = x - u),
                Role::Output(_) => {
                    let beta = self.beta;
                    if beta == T::zero() {
                        e.fill(T::zero());
                        x.assign(&u);
                        continue;
                    }
                    let y = r.target.row(i);
                    // ε = β(y − u) computed directly rather than as x − u, so a
                    // full clamp gives exactly y − u (BP's −δ[L]) bit for bit.
                    Zip::from(&mut e).and(&y).and(&u).for_each(|e, &y, &u| {
                        *e = if beta == T::one() {
                            y - u
                        } else {
                            beta * (y - u)
                        }
                    });
                    if beta == T::one() {
                        x.assign(&y);
                    } else {
                        Zip::from(&mut x)
                            .and(&u)
                            .and(&e)
                            .for_each(|x, &u, &e| *x = u + e);
                    }
                }
            }
        }
    }
}

impl<'a, T: Real> Rows<'a, T> {
    pub(crate) fn first(&self) -> usize {
        self.first
    }
    pub(crate) fn len(&self) -> usize {
        self.x.nrows()
    }
    pub(crate) fn eps(&self) -> ArrayView2<'_, T> {
        self.eps.view()
    }
    /// Row `i`'s step factor `g` and the largest node of its last Euler
    /// step `γ g |d|` (monitoring; 0 on the output layer).
    pub(crate) fn last_step(&self, i: usize, gamma: T) -> (T, T) {
        let g = self.gain[[i, 0]];
        let big = max_abs(self.dir.row(i));
        (g, gamma * g * big)
    }
    /// The up-message this block sends: `f(x)` (hidden) or `x` (output).
    pub(crate) fn activity_up(&self, role: Role) -> ArrayView2<'_, T> {
        match role {
            Role::Hidden(_) => self.fx.view(),
            Role::Output(_) => self.x.view(),
        }
    }
}

/// Cuts the first `cuts[last]` rows of `a` into the blocks `cuts`.
pub(crate) fn split_mut<'a, T>(a: &'a mut Array2<T>, cuts: &[usize]) -> Vec<ArrayViewMut2<'a, T>> {
    crate::nn::team::row_blocks_mut(a.view_mut(), cuts)
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
        let mut cm = Array2::zeros((n, n_in).f());
        cm.assign(&w);
        let mut layer = Self {
            index,
            role,
            w: cm,
            w_rows: (index >= 3).then(|| Array2::zeros((n, n_in))),
            b,
            feedback: feedback.map(|f| f.as_standard_layout().into_owned()),
            u_stale: true,
            x: Array2::zeros((0, n)),
            u: Array2::zeros((0, n)),
            eps: Array2::zeros((0, n)),
            fx: Array2::zeros((0, n)),
            input: Array2::zeros((0, n_in)),
            target: Array2::zeros((0, n)),
            beta: T::zero(),
            sparse_input: false,
            sparse: Vec::new(),
            sparse_cuts: vec![0, 0],
            batch_density: None,
            changed: Vec::new(),
            mirror_fresh: false,
            control: StepControl::default(),
            dir: Array2::zeros((0, n)),
            gain: Array2::zeros((0, 1)),
        };
        layer.refresh_mirror();
        Ok(layer)
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

    /// How the hidden value nodes size their Euler steps (default: the
    /// local curvature limit, see `euler_step`).
    pub fn set_step_control(&mut self, control: StepControl) {
        self.control = control;
    }
    pub fn step_control(&self) -> StepControl {
        self.control
    }
    /// Each sample's step factor `g` (the step is `γ g`; 1 unless the local
    /// step control lowered it in this relaxation), `(rows, 1)`.
    pub fn step_gains(&self) -> ArrayView2<'_, T> {
        self.gain.view()
    }

    /// Overwrites `W[l]`, `b[l]` (e.g. from an `Mlp`) without reallocating.
    /// Shapes must match the layer's.
    pub fn load_params(&mut self, w: ArrayView2<T>, b: ArrayView1<T>) {
        debug_assert_eq!(w.dim(), self.w.dim());
        crate::nn::kernels::copy_into(w, self.w.view_mut());
        self.b.assign(&b);
        self.weights_changed();
    }

    /// Exchanges `W[l]`, `b[l]` with the given arrays (no copy): a driver
    /// that keeps the parameters elsewhere lends them to the layer for a
    /// batch and takes them back after. `w` should be column-major (as
    /// `Mlp::kaiming` makes it); another layout works, slower.
    pub fn swap_params(&mut self, w: &mut Array2<T>, b: &mut Array1<T>) {
        assert_eq!(w.dim(), self.w.dim(), "layer {}: W shape", self.index);
        assert_eq!(b.len(), self.b.len(), "layer {}: b shape", self.index);
        std::mem::swap(&mut self.w, w);
        std::mem::swap(&mut self.b, b);
        // The row-major copy is rebuilt when the next rule needs it.
        self.mirror_fresh = false;
        self.u_stale = true;
    }

    /// Lets a caller change the block of inputs `inputs` (columns) of
    /// `W[l]`, and `b[l]`, in place: an optimizer's step (its state per
    /// weight kept by the caller) on all of `W` or on a shard's own block
    /// of a pooled update, or another shard's block copied in. Only that block of the row-major
    /// copy is refreshed, so the blocks of one update cost one refresh.
    pub fn update_inputs_with(
        &mut self,
        inputs: std::ops::Range<usize>,
        f: impl FnOnce(ArrayViewMut2<T>, ArrayViewMut1<T>),
    ) {
        f(self.w.slice_mut(s![.., inputs.clone()]), self.b.view_mut());
        if self.mirror_fresh
            && let Some(m) = &mut self.w_rows
        {
            let block = self.w.slice(s![.., inputs.clone()]);
            transpose_into(block.t(), m.slice_mut(s![.., inputs]));
        }
        self.u_stale = true;
    }

    fn weights_changed(&mut self) {
        self.refresh_mirror();
        self.u_stale = true;
    }

    fn refresh_mirror(&mut self) {
        if let Some(m) = &mut self.w_rows {
            transpose_into(self.w.t(), m.view_mut());
        }
        self.mirror_fresh = true;
    }

    /// A stale row-major copy of `W[l]` and `W[l]`, cut into `parts` shares
    /// of units `(W rows, copy rows)` for a caller that refreshes the copy on
    /// several threads (`transpose_into(w.t(), copy)` per share). The copy
    /// counts as fresh from here on: the caller must run every share.
    pub(crate) fn stale_mirror_shares(
        &mut self,
        parts: usize,
    ) -> Vec<(ArrayView2<'_, T>, ArrayViewMut2<'_, T>)> {
        let Some(m) = self.w_rows.as_mut().filter(|_| !self.mirror_fresh) else {
            return Vec::new();
        };
        self.mirror_fresh = true;
        let cuts = crate::algo::bounds(self.w.nrows(), parts.max(1));
        let copies = crate::nn::team::row_blocks_mut(m.view_mut(), &cuts);
        cuts.windows(2)
            .map(|c| self.w.slice(s![c[0]..c[1], ..]))
            .zip(copies)
            .collect()
    }

    /// The row-major copy of `W[l]` if it is current (else `ε·W` reads `W`
    /// through a slower path).
    fn mirror(&self) -> Option<ArrayView2<'_, T>> {
        self.w_rows
            .as_ref()
            .filter(|_| self.mirror_fresh)
            .map(|w| w.view())
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
            self.dir = Array2::zeros((rows, n));
            self.gain = Array2::ones((rows, 1));
            self.changed = vec![true; rows];
            self.u_stale = true;
        }
    }

    /// The shared parameters and the state cut into the row blocks `cuts`
    /// (which must cover `0..rows()`); `u_stale` is cleared when the blocks
    /// report, through `finish_blocks`, that they predicted.
    pub(crate) fn split(&mut self, cuts: &[usize]) -> (Params<'_, T>, Vec<Rows<'_, T>>) {
        if !self.mirror_fresh {
            self.refresh_mirror();
        }
        let parts = cuts.len() - 1;
        if self.sparse.len() < parts {
            self.sparse.resize_with(parts, SparseRows::new);
        }
        if self.sparse_cuts != cuts {
            // The sparse input was indexed for other blocks (another thread
            // count): index it again for these.
            if self.sparse_input {
                for (sp, c) in self.sparse.iter_mut().zip(cuts.windows(2)) {
                    sp.fill(self.input.slice(s![c[0]..c[1], ..]));
                }
            }
            self.sparse_cuts.clear();
            self.sparse_cuts.extend_from_slice(cuts);
        }
        let params = Params {
            role: self.role,
            w: self.w.view(),
            w_rows: self.w_rows.as_ref().map(|w| w.view()),
            b: self.b.view(),
            feedback: self.feedback.as_ref().map(|f| f.view()),
            beta: self.beta,
            sparse_input: self.sparse_input,
            control: self.control,
        };
        let stale = self.u_stale;
        let target_rows = self.target.nrows() == self.x.nrows();
        let mut targets = Vec::with_capacity(parts);
        for c in cuts.windows(2) {
            targets.push(if target_rows {
                self.target.slice(s![c[0]..c[1], ..])
            } else {
                self.target.slice(s![0..0, ..])
            });
        }
        let mut changed = Vec::with_capacity(parts);
        let mut rest: &mut [bool] = &mut self.changed;
        for c in cuts.windows(2) {
            let (head, tail) = rest.split_at_mut(c[1] - c[0]);
            changed.push(head);
            rest = tail;
        }
        let rows = split_mut(&mut self.x, cuts)
            .into_iter()
            .zip(split_mut(&mut self.u, cuts))
            .zip(split_mut(&mut self.eps, cuts))
            .zip(split_mut(&mut self.fx, cuts))
            .zip(split_mut(&mut self.input, cuts))
            .zip(targets)
            .zip(changed)
            .zip(self.sparse.iter_mut())
            .zip(split_mut(&mut self.dir, cuts))
            .zip(split_mut(&mut self.gain, cuts))
            .zip(cuts.iter().copied())
            .map(
                |(
                    (((((((((x, u), eps), fx), input), target), changed), sparse), dir), gain),
                    first,
                )| Rows {
                    x,
                    u,
                    eps,
                    fx,
                    input,
                    target,
                    changed,
                    sparse,
                    dir,
                    gain,
                    stale,
                    first,
                },
            )
            .collect();
        (params, rows)
    }

    /// Prepares a batch whose first up-message is `below` (the whole batch):
    /// buffers, and whether the input takes the sparse path — layer 2 only,
    /// whose input is the clamped data (hidden activities stay dense), so
    /// every driver decides alike.
    pub(crate) fn prepare(&mut self, below: ArrayView2<T>) {
        self.ensure_rows(below.nrows());
        let d = self.batch_density.take().unwrap_or_else(|| density(below));
        self.sparse_input = self.index == 2 && d < SPARSE_DENSITY;
    }

    /// The density of the whole batch whose rows the next `prepare` gets
    /// (a shard's rows alone could fall on the other side of the sparse
    /// threshold, and the sparse and dense kernels round differently).
    pub fn set_batch_density(&mut self, d: f64) {
        self.batch_density = Some(d);
    }

    /// Whether this batch's input takes the sparse path.
    pub fn sparse_input(&self) -> bool {
        self.sparse_input
    }

    /// This layer's rows of a pooled weight update: its errors and its input.
    pub fn update_rows(&self) -> UpdateRows<'_, T> {
        let input = if self.sparse_input {
            UpdateInput::Sparse(
                self.sparse_cuts
                    .windows(2)
                    .zip(&self.sparse)
                    .map(|(c, sp)| (sp, c[0]..c[1]))
                    .collect(),
            )
        } else {
            UpdateInput::Dense(self.input.view())
        };
        UpdateRows {
            eps: self.eps.view(),
            input,
        }
    }

    /// `prepare` for a layer above 2, before its input exists.
    pub(crate) fn prepare_rows(&mut self, rows: usize) {
        debug_assert!(self.index > 2);
        self.ensure_rows(rows);
        self.sparse_input = false;
    }

    /// After the row blocks ran: whether they left the prediction current.
    pub(crate) fn set_stale(&mut self, stale: bool) {
        self.u_stale = stale;
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

    /// The row blocks a rule splits this layer's batch into: one per
    /// thread (`algo::parts_for`), as the lockstep driver cuts it, so an
    /// actor's rules use every core too. Rows are independent, so the cut
    /// never changes a bit.
    fn row_cuts(&self) -> Vec<usize> {
        let rows = self.rows();
        crate::algo::bounds(rows, crate::algo::parts_for(rows))
    }

    /// Runs `f` on every row block (with its row range), on the worker team.
    fn whole(
        &mut self,
        f: impl Fn(&Params<'_, T>, &mut Rows<'_, T>, std::ops::Range<usize>) + Sync,
    ) {
        let cuts = self.row_cuts();
        let (params, blocks) = self.split(&cuts);
        let stale = std::sync::atomic::AtomicBool::new(false);
        let parts: Vec<_> = blocks.into_iter().zip(cuts.windows(2)).collect();
        crate::algo::for_each_part(parts, |(mut r, c)| {
            f(&params, &mut r, c[0]..c[1]);
            if r.stale {
                stale.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        });
        self.u_stale = stale.into_inner();
    }

    /// Rule: first up-message of a batch; start from the feedforward pass
    /// (`x ← u`, so hidden errors are 0; the output applies its clamp).
    pub fn init_feedforward(&mut self, below: ArrayView2<T>) {
        self.prepare(below);
        self.whole(|p, r, rows| p.init(r, below.slice(s![rows, ..]), false));
    }

    /// Rule: first up-message of a batch; value nodes start at rest (`x ← 0`).
    pub fn init_at_rest(&mut self, below: ArrayView2<T>) {
        self.prepare(below);
        self.whole(|p, r, rows| p.init(r, below.slice(s![rows, ..]), true));
    }

    /// Rule: a new up-message `f(x[l−1])` arrived; recompute `u[l]` and `ε[l]`
    /// of every sample (row) whose input changed, or of all when the weights
    /// changed. A row whose input is unchanged keeps its prediction and its
    /// error (no needless recomputation of `ε` as the difference `x − u`,
    /// see `on_feedback`).
    pub fn on_activity(&mut self, below: ArrayView2<T>) {
        if self.input.dim() != below.dim() {
            self.prepare(below);
            self.whole(|p, r, rows| {
                r.stale = true;
                p.activity(r, below.slice(s![rows, ..]))
            });
            return;
        }
        self.whole(|p, r, rows| p.activity(r, below.slice(s![rows, ..])));
    }

    /// Rule (hidden layers): a down-message `e = ε[l+1]·W[l+1]` arrived; one
    /// Euler step of the value nodes, `x += γ g (−ε[l] + f'(x[l]) ⊙ e)` with
    /// each sample's step factor `g` (see `euler_step`), and
    /// `f(x[l])`. The prediction `u[l]` has not changed, so `ε[l] = x[l] − u[l]`
    /// moves by the same step and is updated by it rather than recomputed as
    /// a difference: mathematically the same, but it avoids the cancellation
    /// of `x − u` when `|ε| ≪ |u|` (in Z-IL the errors then equal BP's deltas
    /// exactly, which keeps f32 runs on BP's trajectory).
    /// On the output layer this does nothing (its value nodes follow the nudge).
    pub fn on_feedback(&mut self, above: ArrayView2<T>, gamma: T) {
        self.whole(|p, r, rows| p.feedback(r, above.slice(s![rows, ..]), gamma));
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

    fn params(&self) -> Params<'_, T> {
        Params {
            role: self.role,
            w: self.w.view(),
            w_rows: self.mirror(),
            b: self.b.view(),
            feedback: self.feedback.as_ref().map(|f| f.view()),
            beta: self.beta,
            sparse_input: self.sparse_input,
            control: self.control,
        }
    }

    /// `out ← ε[l]·W[l]` (or `ε[l]·B[l]`), shape `(rows, n[l−1])`, with the
    /// current (not yet updated) weights.
    /// All-zero errors (a hidden layer right after the feedforward
    /// initialisation) give a zero message without the matrix product.
    pub fn error_down_into(&self, out: ArrayViewMut2<T>) {
        let params = self.params();
        let cuts = self.row_cuts();
        let parts: Vec<_> = crate::nn::team::row_blocks_mut(out, &cuts)
            .into_iter()
            .zip(cuts.windows(2))
            .collect();
        crate::algo::for_each_part(parts, |(out, c)| {
            params.error_down(self.eps.slice(s![c[0]..c[1], ..]), out)
        });
    }

    /// Owned down-message, to be moved into a message.
    pub fn error_down(&self) -> Array2<T> {
        let mut out = Array2::zeros((self.rows(), self.fan_in()));
        self.error_down_into(out.view_mut());
        out
    }

    /// `w ← [w +] s · ε[l]ᵀ f(x[l−1])`, `b ← [b +] s · Σ_rows ε[l]` for the
    /// output units `units` (the rows of `w`, `b`): the one place the PC
    /// weight update is computed (sparse input: its non-zeros only).
    pub(crate) fn update_units(
        &self,
        scale: T,
        units: std::ops::Range<usize>,
        mode: Accum,
        w: ArrayViewMut2<T>,
        b: ArrayViewMut1<T>,
    ) {
        pooled_update_units(
            &[self.update_rows()],
            self.sparse_input,
            scale,
            (units, 0..self.fan_in()),
            mode,
            w,
            b,
        );
    }

    /// `w += s · ε[l]ᵀ f(x[l−1])`, `b += s · Σ_rows ε[l]` accumulated straight
    /// into the given parameters (no ΔW buffer): the plain-SGD fast path of a
    /// driver that keeps the parameters elsewhere (an `Mlp`). It rounds like
    /// `weight_update_into` followed by `W += ΔW`, and like `Backprop`'s
    /// update, so Z-IL and BP stay on the same f32 trajectory. The layer's
    /// own `W[l]` is not touched.
    pub fn add_weight_update_to(&self, scale: T, w: ArrayViewMut2<T>, b: ArrayViewMut1<T>) {
        self.update_units(scale, 0..self.width(), Accum::Add, w, b);
    }

    /// `dw ← s · ε[l]ᵀ f(x[l−1])`, `db ← s · Σ_rows ε[l]` (the driver picks
    /// `s = α / (β · rows)`).
    /// Split by output unit over the worker team (each unit's update is its
    /// own reduction over the batch, so the split never changes a bit).
    pub fn weight_update_into(&self, scale: T, dw: ArrayViewMut2<T>, db: ArrayViewMut1<T>) {
        self.pooled_update_into(&[self.update_rows()], scale, 0..self.fan_in(), dw, db);
    }

    /// `weight_update_into` over the rows of several copies of this layer
    /// (the shards of one batch, in row order, this layer's own among them):
    /// the same reduction over the same rows in the same order as one layer
    /// holding the whole batch, so the same bits. The shards took the
    /// sparse path of the whole batch (`set_batch_density`); `parts` must
    /// carry sparse rows exactly when this layer's input is sparse.
    /// Only the columns `inputs` of `ΔW` are computed (`dw` is that block:
    /// each shard updates its own block of inputs); `db` is whole.
    pub fn pooled_update_into(
        &self,
        parts: &[UpdateRows<'_, T>],
        scale: T,
        inputs: std::ops::Range<usize>,
        dw: ArrayViewMut2<T>,
        db: ArrayViewMut1<T>,
    ) {
        assert_eq!(
            dw.dim(),
            (self.width(), inputs.len()),
            "layer {}: update block of inputs {inputs:?}",
            self.index
        );
        let threads = crate::nn::linalg::threads();
        let cuts = crate::algo::bounds(self.width(), threads.min(self.width()).max(1));
        let mut jobs = Vec::with_capacity(cuts.len() - 1);
        let (mut w_rest, mut b_rest) = (dw, db);
        for c in cuts.windows(2) {
            let (w, w_tail) = w_rest.split_at(Axis(0), c[1] - c[0]);
            let (b, b_tail) = b_rest.split_at(Axis(0), c[1] - c[0]);
            jobs.push((c[0]..c[1], w, b));
            (w_rest, b_rest) = (w_tail, b_tail);
        }
        crate::algo::for_each_part(jobs, |(units, w, b)| {
            let inputs = inputs.clone();
            pooled_update_units(
                parts,
                self.sparse_input,
                scale,
                (units, inputs),
                Accum::Set,
                w,
                b,
            )
        });
    }

    /// `W[l] += dw`, `b[l] += db`.
    pub fn apply_update(&mut self, dw: ArrayView2<T>, db: ArrayView1<T>) {
        self.w += &dw;
        self.b += &db;
        self.weights_changed();
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

    /// A zero update buffer for a block of `inputs` columns of `W[l]`, in
    /// `W`'s memory order (column-major: `W += ΔW` is then one contiguous
    /// pass, and a block of inputs a contiguous part of `W`).
    pub fn zeros_like_inputs(&self, inputs: usize) -> Array2<T> {
        crate::nn::mlp::zeros_in_order_of(&self.w, (self.w.nrows(), inputs))
    }
}

/// The rows one copy of a layer contributes to a weight update: its errors
/// and its input.
#[derive(Clone)]
pub struct UpdateRows<'a, T: Real> {
    pub eps: ArrayView2<'a, T>,
    pub input: UpdateInput<'a, T>,
}

/// The input `f(x[l−1])` of an update's rows: dense, or — when the layer
/// takes the sparse path — its sparse row blocks with their row ranges (the
/// update reads only the non-zeros).
#[derive(Clone)]
pub enum UpdateInput<'a, T: Real> {
    Dense(ArrayView2<'a, T>),
    Sparse(Vec<(&'a SparseRows<T>, std::ops::Range<usize>)>),
}

/// `w ← [w +] s · Σ_parts ε[l]ᵀ f(x[l−1])`, `b ← [b +] s · Σ_rows ε[l]` for the
/// output units `units` (the rows of `w`, `b`) and the inputs `inputs` (the
/// columns of `w`), the rows of the parts taken in order: the one place the
/// PC weight update is computed (sparse input: its non-zeros only). The
/// kernels accumulate segment after segment, row after row, so cutting the
/// rows into parts, or `W` into blocks, never changes a bit.
fn pooled_update_units<T: Real>(
    parts: &[UpdateRows<'_, T>],
    sparse: bool,
    scale: T,
    (units, inputs): (std::ops::Range<usize>, std::ops::Range<usize>),
    mode: Accum,
    w: ArrayViewMut2<T>,
    b: ArrayViewMut1<T>,
) {
    let eps: Vec<_> = parts
        .iter()
        .map(|p| p.eps.slice(s![.., units.clone()]))
        .collect();
    let mixed = || panic!("an update's parts must all take the layer's path (sparse: {sparse})");
    if sparse {
        let mut segs = Vec::with_capacity(parts.len());
        for (p, e) in parts.iter().zip(&eps) {
            let UpdateInput::Sparse(blocks) = &p.input else {
                mixed()
            };
            segs.extend(
                blocks
                    .iter()
                    .map(|(sp, r)| (*sp, e.slice(s![r.clone(), ..]))),
            );
        }
        sparse_rank_update(scale, &segs, inputs.start, mode, w.reversed_axes());
    } else {
        let segs: Vec<_> = parts
            .iter()
            .zip(&eps)
            .map(|(p, e)| match p.input {
                UpdateInput::Dense(x) => (e.view(), x.slice_move(s![.., inputs.clone()])),
                UpdateInput::Sparse(_) => mixed(),
            })
            .collect();
        rank_update(scale, &segs, mode, w);
    }
    column_sums(scale, &eps, mode, b);
}

/// The per-sample step control of `euler_step`: the last descent direction
/// and step factor of every row, and whether the factor may be lowered.
pub struct Control<'a, T: Real> {
    /// Lower a row's factor when its last step overshot (`StepControl::
    /// LocalCurvature`); otherwise every step is `γ` (`Fixed`).
    pub limit: bool,
    /// `d` of each row's last step, overwritten with this step's.
    pub dir: ArrayViewMut2<'a, T>,
    /// Each row's factor `g` (the step is `γ g d`), `(rows, 1)`.
    pub gain: ArrayViewMut2<'a, T>,
}

/// The hidden layer's Euler step fused into one pass over its nodes, row by
/// row (a row is a sample): `d = f'(x) ⊙ e − ε`, `Δ = γ g d`, `x += Δ`,
/// `ε += Δ`, `f(x)`. The activation is matched once, outside the loop, and
/// ReLU's derivative is a select rather than a branch (a mispredicted branch
/// per node cost as much as the matrix products). Each `f`/`f'` repeats
/// `Activation`'s arithmetic exactly, so Z-IL's errors are BP's deltas bit
/// for bit. γ is an argument so a per-layer step size is a caller's choice.
///
/// # The local step control
///
/// Explicit Euler is gradient descent on the energy and is stable only while
/// `γ κ < 2` for the curvature κ the value nodes feel — `1 + ‖W[l+1]‖²`-ish,
/// set by the weights *above*, which this layer does not own. So the layer
/// measures κ itself, per sample, from what it has: its own last step
/// `Δ = h d_prev` (`h = γ g`) and how its descent direction changed since,
/// `d_prev − d` (the change of `ε` and of the message `e` its step caused).
/// Along the last step, `h κ = ρ = ⟨d_prev − d, d_prev⟩ / |d_prev|²`. `ρ > 1`
/// means the last step went past the minimum along its own direction (`ρ >
/// 2`: the energy rose along it); then `g ← g / ρ`, so the next step is the
/// one that would have landed on that minimum, and `g` never grows back
/// within the relaxation. A row whose steps do not overshoot keeps `g = 1`
/// and computes exactly the bits of the plain step (`γ · 1 = γ`). Only the
/// row's own nodes and its own down-message enter, so the rule is local, and
/// it is the same on every driver (an actor that owns a group of a layer's
/// units measures ρ over its group: the same rule on a smaller slice, so a
/// `groups` run leaves lockstep's numbers once a step is limited). The
/// first step of a relaxation has no `d_prev` and is always `γ`: Z-IL (one
/// step per layer before its update) is never limited. Nor does the rule
/// prevent that first overshoot: a sample's energy can rise once, at the
/// step that reveals the curvature (the energy monitor counts it).
///
/// With `step_out`, the step Δ is written there too (a value-node actor
/// sends it to its error nodes, `runtime.granularity = "nodes"`).
#[allow(clippy::too_many_arguments)]
pub fn euler_step<T: Real>(
    act: &Activation,
    gamma: T,
    above: ArrayView2<T>,
    x: ArrayViewMut2<T>,
    eps: ArrayViewMut2<T>,
    fx: ArrayViewMut2<T>,
    ctl: Control<'_, T>,
    step_out: Option<ArrayViewMut2<T>>,
) {
    let one = T::one();
    let sigmoid = move |v: T| one / (one + (-v).exp());
    match act.kind {
        ActivationKind::Relu => euler_relu(gamma, above, x, eps, fx, ctl, step_out),
        ActivationKind::Linear => fused(gamma, above, x, eps, fx, ctl, step_out, |_, d| d, |v| v),
        ActivationKind::Tanh => fused(
            gamma,
            above,
            x,
            eps,
            fx,
            ctl,
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
            ctl,
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
            ctl,
            step_out,
            |x, d| d * T::of(act.derivative(x.f64())),
            |v| T::of(act.value(v.f64())),
        ),
    }
}

multiversion! {
    fn euler_relu<T: Real>(
        gamma: T,
        above: ArrayView2<T>,
        x: ArrayViewMut2<T>,
        eps: ArrayViewMut2<T>,
        fx: ArrayViewMut2<T>,
        ctl: Control<'_, T>,
        step_out: Option<ArrayViewMut2<T>>,
    ) {
        let zero = T::zero();
        fused(
            gamma,
            above,
            x,
            eps,
            fx,
            ctl,
            step_out,
            // `move`: a captured reference would be reloaded on every
            // element (it may alias the rows) and keep the loop scalar.
            move |x, d| if x <= zero { zero } else { d },
            move |v| v.max(zero),
        )
    }
}

/// Partial sums per lane (a fixed number of them, summed in a fixed order):
/// the compiler vectorises these reductions, which it may not do for one
/// running sum, and the result still does not depend on the thread count.
const LANES: usize = 16;

/// `(|p|², ⟨p, d⟩)` with `d = f'(x) ⊙ a − e`, over one row.
#[inline(always)]
fn overshoot_dots<T: Real>(x: &[T], e: &[T], a: &[T], p: &[T], df: &impl Fn(T, T) -> T) -> (T, T) {
    let mut s0 = [T::zero(); LANES];
    let mut s1 = [T::zero(); LANES];
    let n = x.len().min(e.len()).min(a.len()).min(p.len());
    let full = n / LANES * LANES;
    for (((xc, ec), ac), pc) in x[..full]
        .chunks_exact(LANES)
        .zip(e[..full].chunks_exact(LANES))
        .zip(a[..full].chunks_exact(LANES))
        .zip(p[..full].chunks_exact(LANES))
    {
        for j in 0..LANES {
            let d = df(xc[j], ac[j]) - ec[j];
            s0[j] += pc[j] * pc[j];
            s1[j] += pc[j] * d;
        }
    }
    for i in full..n {
        let d = df(x[i], a[i]) - e[i];
        s0[i - full] += p[i] * p[i];
        s1[i - full] += p[i] * d;
    }
    let sum = |v: [T; LANES]| v.iter().fold(T::zero(), |acc, &t| acc + t);
    (sum(s0), sum(s1))
}

/// One row of the Euler step on slices (see `fused`).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn step_row<T: Real>(
    h: T,
    x: &mut [T],
    e: &mut [T],
    fx: &mut [T],
    a: &[T],
    p: &mut [T],
    out: Option<&mut [T]>,
    df: &impl Fn(T, T) -> T,
    f: &impl Fn(T) -> T,
) {
    let n = x.len();
    let (e, fx, a, p) = (&mut e[..n], &mut fx[..n], &a[..n], &mut p[..n]);
    let mut node = |i: usize| {
        let d = df(x[i], a[i]) - e[i];
        let step = h * d;
        x[i] += step;
        e[i] += step;
        fx[i] = f(x[i]);
        p[i] = d;
        step
    };
    // Two loops rather than a test per node, so each one vectorises.
    match out {
        None => (0..n).for_each(|i| {
            node(i);
        }),
        Some(o) => o[..n]
            .iter_mut()
            .enumerate()
            .for_each(|(i, o)| *o = node(i)),
    }
}

multiversion! {
    /// `½ Σ v²` in f64, lane by lane.
    fn half_sum_sq<T: Real>(v: ArrayView1<'_, T>) -> f64 {
        let Some(xs) = v.to_slice() else {
            return 0.5 * v.iter().map(|t| t.f64() * t.f64()).sum::<f64>();
        };
        let mut acc = [0.0f64; LANES];
        let full = xs.len() / LANES * LANES;
        for c in xs[..full].chunks_exact(LANES) {
            for j in 0..LANES {
                let t = c[j].f64();
                acc[j] += t * t;
            }
        }
        for (j, t) in xs[full..].iter().enumerate() {
            acc[j] += t.f64() * t.f64();
        }
        0.5 * acc.iter().sum::<f64>()
    }
}

multiversion! {
    /// `max |v|`, lane by lane.
    fn max_abs<T: Real>(v: ArrayView1<'_, T>) -> T {
        let Some(xs) = v.to_slice() else {
            return v.iter().fold(T::zero(), |m, d| m.max(d.abs()));
        };
        let mut acc = [T::zero(); LANES];
        let full = xs.len() / LANES * LANES;
        for c in xs[..full].chunks_exact(LANES) {
            for j in 0..LANES {
                let a = c[j].abs();
                acc[j] = if a > acc[j] { a } else { acc[j] };
            }
        }
        for (j, t) in xs[full..].iter().enumerate() {
            let a = t.abs();
            acc[j] = if a > acc[j] { a } else { acc[j] };
        }
        acc.iter()
            .fold(T::zero(), |m, &d| if d > m { d } else { m })
    }
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn fused<T: Real>(
    gamma: T,
    above: ArrayView2<T>,
    mut x: ArrayViewMut2<T>,
    mut eps: ArrayViewMut2<T>,
    mut fx: ArrayViewMut2<T>,
    ctl: Control<'_, T>,
    mut step_out: Option<ArrayViewMut2<T>>,
    df: impl Fn(T, T) -> T,
    f: impl Fn(T) -> T,
) {
    let Control {
        limit,
        mut dir,
        mut gain,
    } = ctl;
    for r in 0..x.nrows() {
        let g = &mut gain[[r, 0]];
        if limit {
            let (s0, s1) = match (
                x.row(r).to_slice(),
                eps.row(r).to_slice(),
                above.row(r).to_slice(),
                dir.row(r).to_slice(),
            ) {
                (Some(xs), Some(es), Some(as_), Some(ps)) => overshoot_dots(xs, es, as_, ps, &df),
                _ => {
                    let (mut s0, mut s1) = (T::zero(), T::zero());
                    Zip::from(x.row(r))
                        .and(eps.row(r))
                        .and(above.row(r))
                        .and(dir.row(r))
                        .for_each(|&x, &e, &a, &p| {
                            let d = df(x, a) - e;
                            s0 += p * p;
                            s1 += p * d;
                        });
                    (s0, s1)
                }
            };
            if s0 > T::zero() {
                let rho = (s0 - s1) / s0;
                if rho > T::one() {
                    *g = *g / rho;
                }
            }
        }
        let h = gamma * *g;
        // Contiguous rows (always, for the layers' own buffers) take a plain
        // indexed loop: it inlines into the caller's SIMD variant, where
        // ndarray's `Zip::for_each` stays an outlined, baseline-ISA call.
        let mut out_row = step_out.as_mut().map(|o| o.row_mut(r));
        let out_ok = out_row.as_ref().is_none_or(|o| o.as_slice().is_some());
        if let (true, Some(xs), Some(es), Some(fs), Some(as_), Some(ps)) = (
            out_ok,
            x.row_mut(r).into_slice(),
            eps.row_mut(r).into_slice(),
            fx.row_mut(r).into_slice(),
            above.row(r).to_slice(),
            dir.row_mut(r).into_slice(),
        ) {
            let os = out_row.as_mut().and_then(|o| o.as_slice_mut());
            step_row(h, xs, es, fs, as_, ps, os, &df, &f);
            continue;
        }
        let zip = Zip::from(x.row_mut(r))
            .and(eps.row_mut(r))
            .and(fx.row_mut(r))
            .and(above.row(r))
            .and(dir.row_mut(r));
        match out_row {
            None => zip.for_each(|x, e, fx, &a, p| {
                let d = df(*x, a) - *e;
                let step = h * d;
                *x += step;
                *e += step;
                *fx = f(*x);
                *p = d;
            }),
            Some(out) => zip.and(out).for_each(|x, e, fx, &a, p, o| {
                let d = df(*x, a) - *e;
                let step = h * d;
                *x += step;
                *e += step;
                *fx = f(*x);
                *p = d;
                *o = step;
            }),
        }
    }
}
