//! The synchronous reference driver: the layer rules of `layer.rs` called in a
//! fixed lockstep order, with no messages (DESIGN.md §3). One inference step
//! `t` is, for all layers at once (Jacobi, not Gauss–Seidel):
//!
//! 1. every layer `l ≥ 3` computes its down-message `ε[l]·W[l]` from the
//!    current errors and the current (pre-update) weights;
//! 2. the layers scheduled at `t` compute and apply their weight update;
//! 3. every hidden layer takes its Euler step from the down-message;
//! 4. bottom-up, every layer `l ≥ 3` receives the new `f(x[l−1])` and
//!    recomputes `u[l]`, `ε[l]`.
//!
//! Layer 2 never receives a new up-message inside a batch (the input is
//! clamped), so its prediction `W[2] x[1] + b[2]` — the largest matrix
//! product — is computed once per batch.
//!
//! The batch is cut into one block of rows per thread; samples relax
//! independently, so each block runs all of its inference steps on its own
//! core and only the weight update (a sum over all samples, split by output
//! unit) joins them. The kernels make every number independent of the cut
//! (see `layer.rs`), so results are bit-identical for any thread count —
//! and the cut follows the threads' measured speed (`RowBalance`), so a
//! core the host slows for a while gets fewer rows.
//!
//! The trainers `Il` and `Zil` (the `Trainer` implementations) live here too.

use super::layer::{Params, PcLayer, Role, Rows, split_mut};
use super::{PcConfig, StepControl};
use crate::algo::balance::RowBalance;
use crate::algo::optim::{NetworkState, Optimizer};
use crate::algo::{Trainer, for_each_part, parts_for, split_units};
use crate::nn::kernels::{Accum, transpose_into};
use crate::nn::{Mlp, Real, Updates};
use anyhow::Result;
use ndarray::{Array1, Array2, ArrayView2, ArrayViewMut2};

/// The layers `2..=L` of a PC network, driven in lockstep.
#[derive(Clone, Debug)]
pub struct PcNet<T: Real> {
    /// `layers[i]` is layer `i + 2`.
    pub layers: Vec<PcLayer<T>>,
    /// `down[i]`: the down-message for `layers[i]` from `layers[i + 1]`.
    down: Vec<Array2<T>>,
    /// Energy monitor: each sample's energy after the last step, and
    /// whether it has risen in this relaxation.
    energy: Vec<f64>,
    rose: Vec<bool>,
    /// How the batch is cut into row blocks, one per thread: by the
    /// threads' measured speed (`RowBalance`); `cuts` is this batch's cut.
    balance: RowBalance,
    cuts: Vec<usize>,
}

/// What the energy monitor saw in the relaxations of one or more batches
/// (`PcNet::relax_watched`). A sample's relaxation counts as unstable when
/// its energy `E = Σ_hidden ½|ε|² + β loss` rose, at some step, by more than
/// rounding (`RISE_TOLERANCE` relative, `RISE_FLOOR` absolute, in units of
/// the precision's epsilon): gradient descent with a stable step never
/// raises it.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RelaxStats {
    /// Sample relaxations watched.
    pub samples: usize,
    /// Of those, relaxations whose energy rose.
    pub unstable: usize,
    /// Of those, relaxations in which some layer lowered the sample's step
    /// (the local step control acted).
    pub limited: usize,
    /// Largest change of one value node in one step, `γ g |d|`.
    pub max_step: f64,
    /// Largest energy rise of one step, relative to the energy before it.
    pub max_rise: f64,
}

impl RelaxStats {
    pub fn add(&mut self, o: &RelaxStats) {
        self.samples += o.samples;
        self.unstable += o.unstable;
        self.limited += o.limited;
        self.max_step = self.max_step.max(o.max_step);
        self.max_rise = self.max_rise.max(o.max_rise);
    }
}

/// A rise of the energy smaller than this many epsilons of the precision,
/// relative to the energy, is rounding.
pub const RISE_TOLERANCE: f64 = 1000.0;
/// … or smaller than this many epsilons in absolute terms (a sample whose
/// energy is ~0 moves by rounding only).
pub const RISE_FLOOR: f64 = 100.0;

/// One thread's rows of every layer, and of the down-message buffers.
struct Block<'a, T: Real> {
    rows: Vec<Rows<'a, T>>,
    down: Vec<ArrayViewMut2<'a, T>>,
    energy: &'a mut [f64],
    rose: &'a mut [bool],
}

impl<T: Real> Block<'_, T> {
    /// Row `r`'s energy: the sum of every layer's share.
    fn row_energy(&self, params: &[Params<'_, T>], r: usize) -> f64 {
        params
            .iter()
            .zip(&self.rows)
            .map(|(p, rows)| p.row_energy(rows, r))
            .sum()
    }

    /// Step 1 for the layers `i` with `active(i)`: `down[i] ← ε[i+1]·W[i+2]`.
    fn send_down(&mut self, params: &[Params<'_, T>], active: impl Fn(usize) -> bool) {
        for i in 0..self.down.len() {
            if active(i) {
                params[i + 1].error_down(self.rows[i + 1].eps(), self.down[i].view_mut());
            }
        }
    }

    /// Steps 3 and 4 for the layers with `active(i)`: Euler steps from the
    /// down-messages, then the new up-messages bottom-up.
    fn relax_only(&mut self, params: &[Params<'_, T>], gamma: T, active: impl Fn(usize) -> bool) {
        let n = self.rows.len();
        for (i, (rows, down)) in self.rows.iter_mut().zip(&self.down).enumerate() {
            if active(i) {
                params[i].feedback(rows, down.view(), gamma);
            }
        }
        for i in 1..n {
            if active(i) {
                let (lower, upper) = self.rows.split_at_mut(i);
                params[i].activity(
                    &mut upper[0],
                    lower[i - 1].activity_up(params[i - 1].role()),
                );
            }
        }
    }
}

impl<T: Real> PcNet<T> {
    /// A network with `mlp`'s shape, activation, output and parameters;
    /// `feedback[i]`, when given, is `B[i + 2]`.
    pub fn new(mlp: &Mlp<T>, feedback: Option<&[Array2<T>]>) -> Result<Self> {
        let last = mlp.w.len() - 1;
        let layers = (0..=last)
            .map(|i| {
                let role = if i == last {
                    Role::Output(mlp.output)
                } else {
                    Role::Hidden(mlp.hidden)
                };
                let fb = feedback.map(|f| f[i].clone());
                PcLayer::new(i + 2, role, mlp.w[i].clone(), mlp.b[i].clone(), fb)
            })
            .collect::<Result<Vec<_>>>()?;
        let down = mlp.sizes[1..last + 1]
            .iter()
            .map(|&n| Array2::zeros((0, n)))
            .collect();
        Ok(Self {
            layers,
            down,
            energy: Vec::new(),
            rose: Vec::new(),
            balance: RowBalance::default(),
            cuts: Vec::new(),
        })
    }

    /// Copies `mlp`'s parameters into the layers (no allocation).
    pub fn load_params(&mut self, mlp: &Mlp<T>) {
        for (layer, (w, b)) in self.layers.iter_mut().zip(mlp.w.iter().zip(&mlp.b)) {
            layer.load_params(w.view(), b.view());
        }
    }

    /// Exchanges the layers' parameters with `mlp`'s (no copy): call once to
    /// lend `mlp`'s weights to the layers for a batch, once more to give
    /// them back. In between, `mlp` holds the layers' old arrays.
    pub fn swap_params(&mut self, mlp: &mut Mlp<T>) {
        for (layer, (w, b)) in self
            .layers
            .iter_mut()
            .zip(mlp.w.iter_mut().zip(mlp.b.iter_mut()))
        {
            layer.swap_params(w, b);
        }
    }

    pub fn output(&self) -> &PcLayer<T> {
        self.layers.last().expect("a network has an output layer")
    }

    /// Runs `f` on every block of rows of the current batch, one block per
    /// thread.
    /// Refreshes the layers' stale row-major copies of `W` (after the
    /// weights were lent in) on all threads, each thread a share of the
    /// units: done serially, this transpose was 7 % of the calling thread's
    /// time in a 2-thread IL step, with the other thread idle.
    fn refresh_mirrors(&mut self) {
        let threads = crate::nn::linalg::threads();
        if threads == 1 {
            return; // `split` refreshes them in place.
        }
        let mut parts: Vec<Vec<_>> = (0..threads).map(|_| Vec::new()).collect();
        for layer in self.layers.iter_mut() {
            for (p, share) in layer.stale_mirror_shares(threads).into_iter().enumerate() {
                parts[p].push(share);
            }
        }
        if parts[0].is_empty() {
            return;
        }
        for_each_part(parts, |shares| {
            for (w, copy) in shares {
                transpose_into(w.t(), copy);
            }
        });
    }

    fn blocks(&mut self, f: impl Fn(&[Params<'_, T>], &mut Block<'_, T>) + Sync) {
        let rows = self.layers[0].rows();
        let parts = parts_for(rows);
        if self.cuts.len() != parts + 1 || self.cuts.last() != Some(&rows) {
            self.cuts = self.balance.cuts(rows, parts);
        }
        let cuts = std::mem::take(&mut self.cuts);
        self.refresh_mirrors();
        let mut params = Vec::with_capacity(self.layers.len());
        let mut per_layer = Vec::with_capacity(self.layers.len());
        for layer in self.layers.iter_mut() {
            let (p, r) = layer.split(&cuts);
            params.push(p);
            per_layer.push(r.into_iter());
        }
        let mut downs: Vec<_> = self
            .down
            .iter_mut()
            .map(|d| split_mut(d, &cuts).into_iter())
            .collect();
        if self.energy.len() != rows {
            self.energy = vec![0.0; rows];
            self.rose = vec![false; rows];
        }
        let (mut energy, mut rose): (&mut [f64], &mut [bool]) = (&mut self.energy, &mut self.rose);
        let blocks: Vec<(usize, Block<'_, T>)> = cuts
            .windows(2)
            .map(|c| {
                let (e, e_rest) = std::mem::take(&mut energy).split_at_mut(c[1] - c[0]);
                let (f, f_rest) = std::mem::take(&mut rose).split_at_mut(c[1] - c[0]);
                (energy, rose) = (e_rest, f_rest);
                (e, f)
            })
            .map(|(energy, rose)| Block {
                energy,
                rose,
                rows: per_layer
                    .iter_mut()
                    .map(|r| r.next().expect("a block per cut"))
                    .collect(),
                down: downs
                    .iter_mut()
                    .map(|d| d.next().expect("a block per cut"))
                    .collect(),
            })
            .enumerate()
            .collect();
        let stale: Vec<std::sync::atomic::AtomicBool> = (0..params.len())
            .map(|_| std::sync::atomic::AtomicBool::new(false))
            .collect();
        let busy: Vec<std::sync::atomic::AtomicU64> = (0..blocks.len())
            .map(|_| std::sync::atomic::AtomicU64::new(0))
            .collect();
        for_each_part(blocks, |(j, mut block)| {
            let began = std::time::Instant::now();
            f(&params, &mut block);
            for (s, r) in stale.iter().zip(&block.rows) {
                if r.stale {
                    s.store(true, std::sync::atomic::Ordering::Relaxed);
                }
            }
            let nanos = began.elapsed().as_nanos().min(u64::MAX as u128) as u64;
            busy[j].store(nanos, std::sync::atomic::Ordering::Relaxed);
        });
        drop(params);
        for (layer, s) in self.layers.iter_mut().zip(stale) {
            layer.set_stale(s.into_inner());
        }
        for (j, (c, b)) in cuts.windows(2).zip(busy).enumerate() {
            self.balance
                .record(j, c[1] - c[0], b.into_inner() as f64 * 1e-9);
        }
        self.cuts = cuts;
    }

    /// Starts a batch: the output is clamped/nudged towards `target = (y, β)`
    /// or left free (`None`); the value nodes start at the feedforward pass
    /// (`at_rest = false`) or at 0.
    pub fn start(&mut self, x: ArrayView2<T>, target: Option<(ArrayView2<T>, T)>, at_rest: bool) {
        let out = self
            .layers
            .last_mut()
            .expect("a network has an output layer");
        match target {
            Some((y, beta)) => out.set_target(y, beta),
            None => out.free_output(),
        }
        self.layers[0].prepare(x);
        let rows = x.nrows();
        for layer in &mut self.layers[1..] {
            layer.prepare_rows(rows);
        }
        for d in &mut self.down {
            if d.nrows() != rows {
                *d = Array2::zeros((rows, d.ncols()));
            }
        }
        // The cut is chosen once a batch, from the blocks' times in the last.
        self.balance.rebalance();
        self.cuts = self.balance.cuts(rows, parts_for(rows));
        self.blocks(|params, block| {
            for i in 0..block.rows.len() {
                let (lower, upper) = block.rows.split_at_mut(i);
                if i == 0 {
                    let first = upper[0].first();
                    let x_rows = x.slice(ndarray::s![first..first + upper[0].len(), ..]);
                    params[0].init(&mut upper[0], x_rows, at_rest);
                } else {
                    params[i].init(
                        &mut upper[0],
                        lower[i - 1].activity_up(params[i - 1].role()),
                        at_rest,
                    );
                }
            }
        });
    }

    /// One inference step (see the module docs). Layers `i` with
    /// `update_now(i)` compute `ΔW = scale · εᵀ f(x_prev)` into
    /// `updates.dw[i]`/`db[i]` and apply it to their own weights.
    pub fn step(
        &mut self,
        gamma: T,
        mut update_now: impl FnMut(usize) -> bool,
        scale: T,
        updates: &mut Updates<T>,
    ) {
        let n = self.layers.len();
        self.send_down();
        for i in 0..n {
            if update_now(i) {
                let layer = &mut self.layers[i];
                layer.weight_update_into(scale, updates.dw[i].view_mut(), updates.db[i].view_mut());
                layer.apply_update(updates.dw[i].view(), updates.db[i].view());
            }
        }
        self.relax_only(gamma);
    }

    /// One inference step with no weight update.
    pub fn relax(&mut self, gamma: T) {
        self.relax_steps(gamma, 1);
    }

    /// `steps` inference steps with no weight update, each block of rows on
    /// its own thread from start to end (equal to calling `relax` `steps`
    /// times).
    pub fn relax_steps(&mut self, gamma: T, steps: usize) {
        self.blocks(|params, block| {
            for _ in 0..steps {
                block.send_down(params, |_| true);
                block.relax_only(params, gamma, |_| true);
            }
        });
    }

    /// `relax_steps` with the energy monitor: every sample's energy is
    /// computed at the start and after every step (one pass over the errors,
    /// no matrix product), and the block's counts are returned.
    pub fn relax_watched(&mut self, gamma: T, steps: usize) -> RelaxStats {
        let total = std::sync::Mutex::new(RelaxStats::default());
        let eps = <T as num_traits::Float>::epsilon().f64();
        let (rel, floor) = (RISE_TOLERANCE * eps, RISE_FLOOR * eps);
        self.blocks(|params, block| {
            let mut st = RelaxStats {
                samples: block.energy.len(),
                ..RelaxStats::default()
            };
            for r in 0..block.energy.len() {
                block.energy[r] = block.row_energy(params, r);
                block.rose[r] = false;
            }
            for _ in 0..steps {
                block.send_down(params, |_| true);
                block.relax_only(params, gamma, |_| true);
                for r in 0..block.energy.len() {
                    let (before, after) = (block.energy[r], block.row_energy(params, r));
                    let rise = after - before;
                    if rise > rel * before.abs() + floor || after.is_nan() {
                        block.rose[r] = true;
                        st.max_rise = st.max_rise.max(rise / before.abs().max(floor));
                    }
                    block.energy[r] = after;
                    for (p, rows) in params.iter().zip(&block.rows) {
                        if matches!(p.role(), Role::Hidden(_)) {
                            st.max_step = st.max_step.max(rows.last_step(r, gamma).1.f64());
                        }
                    }
                }
            }
            for r in 0..block.energy.len() {
                st.unstable += usize::from(block.rose[r]);
                let limited = params.iter().zip(&block.rows).any(|(p, rows)| {
                    matches!(p.role(), Role::Hidden(_)) && rows.last_step(r, gamma).0 < T::one()
                });
                st.limited += usize::from(limited);
            }
            total.lock().expect("no panic holds it").add(&st);
        });
        total.into_inner().expect("no panic holds it")
    }

    /// Every layer sizes its hidden Euler steps by `control`.
    pub fn set_step_control(&mut self, control: StepControl) {
        for layer in &mut self.layers {
            layer.set_step_control(control);
        }
    }

    /// Step 1: every layer `l ≥ 3` writes its down-message `ε[l]·W[l]`.
    pub fn send_down(&mut self) {
        self.blocks(|params, block| block.send_down(params, |_| true));
    }

    /// Steps 3 and 4 (after `send_down`): Euler steps from the down-messages,
    /// then the new up-messages bottom-up.
    pub fn relax_only(&mut self, gamma: T) {
        self.blocks(|params, block| block.relax_only(params, gamma, |_| true));
    }

    /// Z-IL's relaxation with the exact schedule `t[i] = L − (i + 2)` (γ = 1),
    /// computing only what reaches an update: a layer's rule stops after its
    /// update step, and the update itself is left to `updates_into`, which
    /// then reads each layer's error and input exactly as they were at its
    /// update step. (Weights do not change during the sweep; with this
    /// schedule no changed weight could reach a later update anyway.)
    pub fn zil_sweep(&mut self) {
        let n = self.layers.len();
        // Layer i (index i + 2) updates at step n − 1 − i and is live before.
        let live = move |i: usize, t: usize| t + 1 + i < n;
        self.blocks(|params, block| {
            for t in 0..n.saturating_sub(1) {
                block.send_down(params, |i| live(i, t));
                block.relax_only(params, T::one(), |i| live(i, t));
            }
        });
    }

    /// Every layer computes its update `scale · εᵀ f(x_prev)` from the current
    /// state (IL's update after relaxing), without applying it.
    pub fn collect_updates(&self, scale: T, updates: &mut Updates<T>) {
        self.updates_into(scale, Accum::Set, &mut updates.dw, &mut updates.db);
    }

    /// `w[i] ← [w[i] +] scale · ε[i]ᵀ f(x_prev)`, `b[i]` likewise, for every
    /// layer from its current state, split over threads by output unit.
    pub fn updates_into(&self, scale: T, mode: Accum, w: &mut [Array2<T>], b: &mut [Array1<T>]) {
        let parts = crate::nn::linalg::threads().max(1);
        let jobs = split_units(w, b, parts, |_| true);
        let layers = &self.layers;
        for_each_part(jobs, |jobs| {
            for (i, w, b, lo, hi) in jobs {
                layers[i].update_units(scale, lo..hi, mode, w, b);
            }
        });
    }

    /// Energy `E = Σ_hidden ½|ε|² + β · loss(y, u[L])`, summed over the batch.
    pub fn energy(&self) -> f64 {
        self.layers.iter().map(|l| l.energy()).sum()
    }
}

/// Shared machinery of the IL and Z-IL trainers.
struct Common<T: Real> {
    cfg: PcConfig,
    net: PcNet<T>,
    /// A second network for predicting with relaxation, so evaluation batches
    /// do not reallocate the training buffers.
    eval: Option<PcNet<T>>,
    feedback: Option<Vec<Array2<T>>>,
    learning_rate: T,
    /// SGD (momentum) or Adam/AdamW, with its per-weight state.
    optimizer: Optimizer,
    state: NetworkState<T>,
    updates: Updates<T>,
    kept: bool,
}

impl<T: Real> Common<T> {
    fn new(mlp: &Mlp<T>, cfg: PcConfig, learning_rate: f64, momentum: f64) -> Result<Self> {
        cfg.validate()?;
        let feedback = cfg
            .feedback_seed
            .map(|seed| super::random_feedback(mlp, seed));
        let mut net = PcNet::new(mlp, feedback.as_deref())?;
        net.set_step_control(cfg.step_control);
        Ok(Self {
            cfg,
            net,
            eval: None,
            feedback,
            learning_rate: T::of(learning_rate),
            optimizer: Optimizer::sgd(momentum),
            state: NetworkState::new(Optimizer::sgd(momentum), mlp),
            updates: Updates::zeros_like(mlp),
            kept: false,
        })
    }

    fn set_optimizer(&mut self, mlp: &Mlp<T>, optimizer: Optimizer) {
        self.optimizer = optimizer;
        self.state = NetworkState::new(optimizer, mlp);
    }

    /// The factor α the update is computed with: α for SGD, 1 for Adam,
    /// which applies α itself (`Optimizer::update_scale`).
    fn update_lr(&self) -> T {
        if self.optimizer.is_sgd() {
            self.learning_rate
        } else {
            T::one()
        }
    }

    /// Lends `mlp`'s parameters to the layers (`give_back` returns them)
    /// and starts the batch from the feedforward pass with the target
    /// clamped/nudged; returns the feedforward loss.
    fn start(&mut self, mlp: &mut Mlp<T>, x: ArrayView2<T>, y: ArrayView2<T>, beta: T) -> f64 {
        self.net.swap_params(mlp);
        self.net.start(x, Some((y, beta)), false);
        mlp.output.loss(self.net.output().u(), y).f64()
    }

    /// Returns the parameters to `mlp` and applies the batch's update from
    /// the layers' current state: added straight into the parameters (plain
    /// SGD, as `Backprop` does) or through the ΔW buffers and the optimizer.
    fn give_back_and_update(&mut self, mlp: &mut Mlp<T>, scale: T, keep_updates: bool) {
        self.net.swap_params(mlp);
        if self.fused(keep_updates) {
            self.net
                .updates_into(scale, Accum::Add, &mut mlp.w, &mut mlp.b);
            self.kept = false;
        } else {
            self.net.collect_updates(scale, &mut self.updates);
            self.finish(mlp, keep_updates);
        }
    }

    /// Plain SGD with no update to keep: add the updates straight into the
    /// parameters (as `Backprop` does), skipping the ΔW buffers.
    fn fused(&self, keep_updates: bool) -> bool {
        !keep_updates && self.optimizer.is_plain()
    }

    fn finish(&mut self, mlp: &mut Mlp<T>, keep_updates: bool) {
        self.state
            .step(mlp, &self.updates, self.learning_rate.f64());
        self.kept = keep_updates;
    }

    fn predict(&mut self, mlp: &Mlp<T>, x: ArrayView2<T>) -> Result<Array2<T>> {
        if self.cfg.predict_steps == 0 {
            return Ok(mlp.predict(x));
        }
        let eval = match &mut self.eval {
            Some(e) => e,
            None => {
                let mut net = PcNet::new(mlp, self.feedback.as_deref())?;
                net.set_step_control(self.cfg.step_control);
                self.eval.insert(net)
            }
        };
        eval.load_params(mlp);
        eval.start(x, None, true);
        eval.relax_steps(T::of(self.cfg.gamma), self.cfg.predict_steps);
        Ok(eval.output().u().to_owned())
    }
}

/// Inference learning: clamp the input, clamp (β = 1) or nudge (β < 1) the
/// output, relax the hidden value nodes for `steps` Euler steps of size γ
/// from the feedforward pass, then `ΔW[l] = α/(β B) · ε[l]ᵀ f(x[l−1])`,
/// `Δb[l] = α/(β B) · Σ ε[l]` for all layers at once.
pub struct Il<T: Real> {
    c: Common<T>,
    /// The energy monitor's counts since they were last taken.
    stats: RelaxStats,
}

impl<T: Real> Il<T> {
    pub fn new(mlp: &Mlp<T>, cfg: PcConfig, learning_rate: f64, momentum: f64) -> Result<Self> {
        Ok(Self {
            c: Common::new(mlp, cfg, learning_rate, momentum)?,
            stats: RelaxStats::default(),
        })
    }

    /// Replaces the optimizer (SGD with the momentum given to `new` by
    /// default); its state starts empty.
    pub fn with_optimizer(mut self, mlp: &Mlp<T>, optimizer: Optimizer) -> Self {
        self.c.set_optimizer(mlp, optimizer);
        self
    }

    /// The lockstep network (state after the last training batch).
    pub fn net(&self) -> &PcNet<T> {
        &self.c.net
    }
}

impl<T: Real> Trainer<T> for Il<T> {
    fn train_batch(
        &mut self,
        mlp: &mut Mlp<T>,
        x: ArrayView2<T>,
        y: ArrayView2<T>,
        keep_updates: bool,
    ) -> f64 {
        let c = &mut self.c;
        let beta = T::of(c.cfg.beta);
        let loss = c.start(mlp, x, y, beta);
        let watched = c.net.relax_watched(T::of(c.cfg.gamma), c.cfg.steps);
        self.stats.add(&watched);
        let scale = super::update_scale(c.update_lr(), beta, x.nrows());
        c.give_back_and_update(mlp, scale, keep_updates);
        loss
    }

    fn set_learning_rate(&mut self, learning_rate: f64) {
        self.c.learning_rate = T::of(learning_rate);
    }

    fn last_updates(&self) -> Option<&Updates<T>> {
        self.c.kept.then_some(&self.c.updates)
    }

    fn take_relaxation_stats(&mut self) -> Option<RelaxStats> {
        Some(std::mem::take(&mut self.stats))
    }

    fn predict(&mut self, mlp: &Mlp<T>, x: ArrayView2<T>) -> Array2<T> {
        // PcNet::new only fails on shapes an Mlp cannot have.
        self.c.predict(mlp, x).unwrap_or_else(|_| mlp.predict(x))
    }
}

/// Z-IL: IL from the feedforward pass with the target clamped at `t = 0`,
/// γ = 1, and `W[l]` updated exactly once, at inference step `t = L − l`
/// (the schedule is a parameter only so tests can show that a wrong one
/// breaks the equivalence with BP).
pub struct Zil<T: Real> {
    c: Common<T>,
    /// `schedule[i]`: the step at which layer `i + 2` updates.
    schedule: Vec<usize>,
    /// The schedule is Z-IL's `t = L − l`: the fast sweep applies.
    exact: bool,
}

impl<T: Real> Zil<T> {
    /// Z-IL with the exact schedule `t = L − l`. Uses `cfg.feedback_seed`
    /// and `cfg.predict_steps`; γ, the number of steps and β are fixed by
    /// the algorithm (1, L − 1, 1).
    pub fn new(mlp: &Mlp<T>, cfg: PcConfig, learning_rate: f64, momentum: f64) -> Result<Self> {
        let depth = mlp.depth();
        let schedule = (2..=depth)
            .map(|l| super::zil_update_step(depth, l))
            .collect();
        Self::with_schedule(mlp, cfg, learning_rate, momentum, schedule)
    }

    /// Z-IL with layer `l = i + 2` updated at step `schedule[i]`.
    pub fn with_schedule(
        mlp: &Mlp<T>,
        cfg: PcConfig,
        learning_rate: f64,
        momentum: f64,
        schedule: Vec<usize>,
    ) -> Result<Self> {
        anyhow::ensure!(
            schedule.len() == mlp.w.len(),
            "Z-IL schedule has {} entries for {} weight layers",
            schedule.len(),
            mlp.w.len()
        );
        let cfg = super::zil_config(cfg, schedule.iter().max().map_or(1, |&t| t + 1));
        let depth = mlp.depth();
        let exact = schedule
            .iter()
            .enumerate()
            .all(|(i, &t)| t + i + 2 == depth);
        Ok(Self {
            c: Common::new(mlp, cfg, learning_rate, momentum)?,
            schedule,
            exact,
        })
    }

    pub fn schedule(&self) -> &[usize] {
        &self.schedule
    }

    /// Replaces the optimizer (SGD with the momentum given to `new` by
    /// default); its state starts empty.
    pub fn with_optimizer(mut self, mlp: &Mlp<T>, optimizer: Optimizer) -> Self {
        self.c.set_optimizer(mlp, optimizer);
        self
    }
}

impl<T: Real> Trainer<T> for Zil<T> {
    fn train_batch(
        &mut self,
        mlp: &mut Mlp<T>,
        x: ArrayView2<T>,
        y: ArrayView2<T>,
        keep_updates: bool,
    ) -> f64 {
        let c = &mut self.c;
        let scale = super::update_scale(c.update_lr(), T::one(), x.nrows());
        if self.exact {
            let loss = c.start(mlp, x, y, T::one());
            c.net.zil_sweep();
            c.give_back_and_update(mlp, scale, keep_updates);
            return loss;
        }
        // Any other schedule: the reference order, step by step, on copies
        // of the parameters (a layer's update changes its own copy at once;
        // with Adam that copy moves by the raw direction at α = 1, since
        // the optimizer step comes only at the end — this path exists to
        // show that a wrong schedule breaks the equivalence, not to train).
        c.net.load_params(mlp);
        c.net.start(x, Some((y, T::one())), false);
        let loss = mlp.output.loss(c.net.output().u(), y).f64();
        let last = c.cfg.steps - 1;
        for t in 0..=last {
            // Down-messages first: they use the pre-update weights.
            if t < last {
                c.net.send_down();
            }
            for i in (0..c.net.layers.len()).filter(|&i| self.schedule[i] == t) {
                let layer = &mut c.net.layers[i];
                layer.weight_update_into(
                    scale,
                    c.updates.dw[i].view_mut(),
                    c.updates.db[i].view_mut(),
                );
                layer.apply_update(c.updates.dw[i].view(), c.updates.db[i].view());
            }
            // Nothing after the last update can change an update: skip the
            // relaxation that would follow it.
            if t < last {
                c.net.relax_only(T::one());
            }
        }
        c.finish(mlp, keep_updates);
        loss
    }

    fn set_learning_rate(&mut self, learning_rate: f64) {
        self.c.learning_rate = T::of(learning_rate);
    }

    fn last_updates(&self) -> Option<&Updates<T>> {
        self.c.kept.then_some(&self.c.updates)
    }

    fn predict(&mut self, mlp: &Mlp<T>, x: ArrayView2<T>) -> Array2<T> {
        self.c.predict(mlp, x).unwrap_or_else(|_| mlp.predict(x))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_cut_of_the_batch_gives_the_same_bits() {
        // The row blocks follow the threads' measured speed; that is only
        // allowed because no number depends on where the batch is cut
        // (sparse input, momentum, the energy monitor).
        let (mlp, batches) = crate::algo::balance::uneven_cut_fixture(32);
        crate::algo::balance::assert_any_cut_gives_the_same_bits(&mlp, |shares| {
            let cfg = PcConfig {
                steps: 5,
                ..PcConfig::default()
            };
            let mut il = Il::new(&mlp, cfg, 0.05, 0.9).unwrap();
            let mut trained = mlp.clone();
            let mut losses = Vec::new();
            let mut cuts = Vec::new();
            for (x, y) in &batches {
                il.c.net.balance.set_shares(shares);
                losses.push(il.train_batch(&mut trained, x.view(), y.view(), false));
                cuts.push(il.c.net.cuts.clone());
            }
            (trained, losses, cuts)
        });
    }
}
