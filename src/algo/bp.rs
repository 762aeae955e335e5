//! Synchronous backprop, the reference every other rule is measured against:
//! `δ[L] = ŷ − y`, `δ[l] = f'(z[l]) ⊙ (δ[l+1] W[l+1])`,
//! `ΔW[l] = −(α/B) δ[l]ᵀ a[l−1]`, `Δb[l] = −(α/B) Σ δ[l]` (updates are
//! averaged over the batch of size B).
//!
//! A step runs in two phases so it can use several cores without changing a
//! single bit of the result: (A) forward and backward passes, split by batch
//! rows (rows are independent); (B) the weight updates, split by output unit
//! (each unit's update is its own reduction over the whole batch).
//! A sparse input (MNIST) feeds the first layer through `nn::sparse`.
//!
//! The backward product `δ[l] W[l]` reads `W` (column-major in the `Mlp`)
//! as `(δ[l] W[l])ᵀ = W[l]ᵀ δ[l]ᵀ`, so no row-major copy of `W` has to be
//! made each step: a serial transpose of every `W` that, on two cores, also
//! pulled the half of `W` the other core had just updated across caches.
//! Each row block transposes only its own small `δ` and result. The
//! multiply-adds run in the same order either way (the kernel sums `k` in
//! order with FMA, and FMA is symmetric in its factors), so the bits are
//! those of the direct product.

use super::balance::RowBalance;
use super::optim::{NetworkState, Optimizer};
use super::{Trainer, for_each_part, parts_for, split_units};
use crate::nn::kernels::{
    Accum, column_sums, matmul, rank_update, sparse_matmul, sparse_rank_update, transpose_into,
};
use crate::nn::sparse::{SPARSE_DENSITY, SparseRows, density};
use crate::nn::team::row_blocks_mut;
use crate::nn::{Mlp, Real, Updates};
use ndarray::{Array2, ArrayView2, ArrayViewMut2, s};
use std::sync::atomic::{AtomicU64, Ordering};

/// Backprop with its preallocated buffers.
pub struct Backprop<T: Real> {
    pub learning_rate: T,
    /// SGD (momentum) or Adam/AdamW, with its per-weight state.
    optimizer: Optimizer,
    state: NetworkState<T>,
    /// Pre-activations `z[l]` for l = 2..L (rows = capacity).
    z: Vec<Array2<T>>,
    /// `f(z[l])` for hidden layers, `ŷ` for the output.
    a: Vec<Array2<T>>,
    delta: Vec<Array2<T>>,
    /// Per row block: `δ[l]ᵀ` and `(δ[l] W[l])ᵀ` of the backward pass.
    scratch: Vec<BackwardScratch<T>>,
    /// The sparse input of each row block of phase A, and the blocks.
    sparse: Vec<SparseRows<T>>,
    cuts: Vec<usize>,
    /// Where the next batch is cut between the threads: by each row
    /// block's measured speed, as lockstep PC cuts its blocks (no number
    /// depends on the cut).
    balance: RowBalance,
    updates: Option<Updates<T>>,
    kept: bool,
}

/// Cuts the first `n` rows of every buffer into the row ranges `cuts`,
/// returning one list of per-layer views for each range.
fn split_rows<'a, T: Real>(
    bufs: &'a mut [Array2<T>],
    cuts: &[usize],
) -> Vec<Vec<ArrayViewMut2<'a, T>>> {
    let parts = cuts.len() - 1;
    let mut out: Vec<Vec<ArrayViewMut2<'a, T>>> =
        (0..parts).map(|_| Vec::with_capacity(bufs.len())).collect();
    for buf in bufs.iter_mut() {
        for (p, block) in row_blocks_mut(buf.view_mut(), cuts).into_iter().enumerate() {
            out[p].push(block);
        }
    }
    out
}

/// A row block's buffers for the transposed backward product.
struct BackwardScratch<T> {
    delta_t: Vec<T>,
    product_t: Vec<T>,
}

impl<T: Real> BackwardScratch<T> {
    fn new() -> Self {
        Self {
            delta_t: Vec::new(),
            product_t: Vec::new(),
        }
    }

    fn fit(&mut self, widest: usize, rows: usize) {
        if self.delta_t.len() < widest * rows {
            self.delta_t = vec![T::zero(); widest * rows];
            self.product_t = vec![T::zero(); widest * rows];
        }
    }
}

struct RowShard<'a, T: Real> {
    first: usize,
    z: Vec<ArrayViewMut2<'a, T>>,
    a: Vec<ArrayViewMut2<'a, T>>,
    delta: Vec<ArrayViewMut2<'a, T>>,
    sparse: Option<&'a mut SparseRows<T>>,
    scratch: &'a mut BackwardScratch<T>,
}

/// `out ← delta · W` for `W` column-major `(n_out, n_in)`, computed as
/// `(Wᵀ deltaᵀ)ᵀ` through the row block's scratch.
fn backward_product<T: Real>(
    delta: ArrayView2<T>,
    w: ArrayView2<T>,
    scratch: &mut BackwardScratch<T>,
    out: ArrayViewMut2<T>,
) {
    let (rows, n_out) = delta.dim();
    let n_in = w.ncols();
    let mut delta_t =
        ArrayViewMut2::from_shape((n_out, rows), &mut scratch.delta_t[..n_out * rows])
            .expect("scratch fits (sized by fit)");
    transpose_into(delta, delta_t.view_mut());
    let mut product_t =
        ArrayViewMut2::from_shape((n_in, rows), &mut scratch.product_t[..n_in * rows])
            .expect("scratch fits (sized by fit)");
    matmul(w.t(), delta_t.view(), None, product_t.view_mut());
    transpose_into(product_t.view(), out);
}

/// Phase A for one block of rows: forward pass, output error, backward pass.
fn forward_backward<T: Real>(
    mlp: &Mlp<T>,
    x: ArrayView2<T>,
    y: ArrayView2<T>,
    shard: &mut RowShard<'_, T>,
) {
    let rows = shard.z[0].nrows();
    let r = shard.first..shard.first + rows;
    let last = mlp.w.len() - 1;
    for i in 0..=last {
        let (below, here) = shard.a.split_at_mut(i);
        let z = &mut shard.z[i];
        let (w, b) = (mlp.w[i].t(), mlp.b[i].view());
        match (i, shard.sparse.as_deref_mut()) {
            (0, Some(sp)) => {
                sp.fill(x.slice(s![r.clone(), ..]));
                sparse_matmul(sp, 0, w, b, z.view_mut())
            }
            (0, None) => matmul(x.slice(s![r.clone(), ..]), w, Some(b), z.view_mut()),
            _ => matmul(below[i - 1].view(), w, Some(b), z.view_mut()),
        }
        here[0].assign(z);
        if i < last {
            mlp.hidden.apply_inplace(here[0].view_mut());
        } else {
            mlp.output.output_inplace(here[0].view_mut());
        }
    }
    mlp.output.delta_into(
        shard.a[last].view(),
        y.slice(s![r, ..]),
        shard.delta[last].view_mut(),
    );
    for i in (1..=last).rev() {
        let (lower, upper) = shard.delta.split_at_mut(i);
        backward_product(
            upper[0].view(),
            mlp.w[i].view(),
            shard.scratch,
            lower[i - 1].view_mut(),
        );
        mlp.hidden
            .mul_derivative(shard.z[i - 1].view(), lower[i - 1].view_mut());
    }
}

impl<T: Real> Backprop<T> {
    pub fn new(mlp: &Mlp<T>, learning_rate: f64, momentum: f64, batch_capacity: usize) -> Self {
        let buf = || -> Vec<Array2<T>> {
            mlp.sizes[1..]
                .iter()
                .map(|&n| Array2::zeros((batch_capacity, n)))
                .collect()
        };
        Self {
            learning_rate: T::of(learning_rate),
            optimizer: Optimizer::sgd(momentum),
            state: NetworkState::new(Optimizer::sgd(momentum), mlp),
            z: buf(),
            a: buf(),
            delta: buf(),
            scratch: Vec::new(),
            sparse: Vec::new(),
            cuts: Vec::new(),
            balance: RowBalance::default(),
            updates: None,
            kept: false,
        }
    }

    /// Replaces the optimizer (SGD with the momentum given to `new` by
    /// default); its state starts empty.
    pub fn with_optimizer(mut self, mlp: &Mlp<T>, optimizer: Optimizer) -> Self {
        self.optimizer = optimizer;
        self.state = NetworkState::new(optimizer, mlp);
        self
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

    fn ensure_capacity(&mut self, rows: usize) {
        if self.z[0].nrows() < rows {
            for buf in self.z.iter_mut().chain(&mut self.a).chain(&mut self.delta) {
                *buf = Array2::zeros((rows, buf.ncols()));
            }
        }
    }

    /// Phase A over the whole batch (split over threads); returns the summed
    /// loss and whether the input took the sparse path.
    fn forward_backward(
        &mut self,
        mlp: &Mlp<T>,
        x: ArrayView2<T>,
        y: ArrayView2<T>,
    ) -> (f64, bool) {
        let n = x.nrows();
        self.ensure_capacity(n);
        let use_sparse = density(x) < SPARSE_DENSITY;
        let parts = parts_for(n);
        // The cut is chosen once a batch, from the blocks' times in the last.
        self.balance.rebalance();
        let cuts = self.balance.cuts(n, parts);
        self.cuts.clone_from(&cuts);
        if self.sparse.len() < parts {
            self.sparse.resize_with(parts, SparseRows::new);
        }
        if self.scratch.len() < parts {
            self.scratch.resize_with(parts, BackwardScratch::new);
        }
        let widest = mlp.sizes[1..].iter().copied().max().unwrap_or(0);
        for (p, scratch) in self.scratch.iter_mut().take(parts).enumerate() {
            scratch.fit(widest, cuts[p + 1] - cuts[p]);
        }
        let z = split_rows(&mut self.z, &cuts);
        let a = split_rows(&mut self.a, &cuts);
        let delta = split_rows(&mut self.delta, &cuts);
        let shards: Vec<RowShard<'_, T>> = z
            .into_iter()
            .zip(a)
            .zip(delta)
            .zip(self.sparse.iter_mut())
            .zip(self.scratch.iter_mut())
            .enumerate()
            .map(|(p, ((((z, a), delta), sp), scratch))| RowShard {
                first: cuts[p],
                z,
                a,
                delta,
                sparse: use_sparse.then_some(sp),
                scratch,
            })
            .collect();
        let busy: Vec<AtomicU64> = (0..parts).map(|_| AtomicU64::new(0)).collect();
        for_each_part(
            shards.into_iter().enumerate().collect(),
            |(j, mut shard)| {
                let began = std::time::Instant::now();
                forward_backward(mlp, x, y, &mut shard);
                let nanos = began.elapsed().as_nanos().min(u64::MAX as u128) as u64;
                busy[j].store(nanos, Ordering::Relaxed);
            },
        );
        for (j, (c, b)) in cuts.windows(2).zip(busy).enumerate() {
            self.balance
                .record(j, c[1] - c[0], b.into_inner() as f64 * 1e-9);
        }
        let last = mlp.w.len() - 1;
        let loss = mlp.output.loss(self.a[last].slice(s![..n, ..]), y).f64();
        (loss, use_sparse)
    }

    /// Phase B, plain SGD fused into the parameters: `W[l] += scale δ[l]ᵀ a[l−1]`,
    /// split by output unit.
    fn apply_sgd(&mut self, mlp: &mut Mlp<T>, x: ArrayView2<T>, use_sparse: bool) {
        let n = x.nrows();
        let scale = -self.learning_rate / T::of(n as f64);
        let row_cuts = &self.cuts;
        let parts = crate::nn::linalg::threads().max(1);
        let jobs = split_units(&mut mlp.w, &mut mlp.b, parts, |_| true);
        let (a, delta, sp) = (&self.a, &self.delta, &self.sparse);
        for_each_part(jobs, |jobs| {
            for (i, mut w, b, lo, hi) in jobs {
                let d = delta[i].slice(s![..n, lo..hi]);
                if i == 0 && use_sparse {
                    let segs: Vec<_> = row_cuts
                        .windows(2)
                        .zip(sp.iter())
                        .map(|(c, sp)| (sp, d.slice(s![c[0]..c[1], ..])))
                        .collect();
                    sparse_rank_update(scale, &segs, 0, Accum::Add, w.view_mut().reversed_axes());
                } else {
                    let input = if i == 0 {
                        x.view()
                    } else {
                        a[i - 1].slice(s![..n, ..])
                    };
                    rank_update(scale, &[(d, input)], Accum::Add, w);
                }
                column_sums(scale, &[d], Accum::Add, b);
            }
        });
    }

    /// The BP update for `(x, y)` on `mlp`, without applying it.
    pub fn compute_updates(
        &mut self,
        mlp: &Mlp<T>,
        x: ArrayView2<T>,
        y: ArrayView2<T>,
        out: &mut Updates<T>,
    ) -> f64 {
        let (loss, _) = self.forward_backward(mlp, x, y);
        let n = x.nrows();
        let scale = -self.update_lr() / T::of(n as f64);
        for i in 0..mlp.w.len() {
            let input = if i == 0 {
                x.view()
            } else {
                self.a[i - 1].slice(s![..n, ..])
            };
            out.set_layer(i, scale, self.delta[i].slice(s![..n, ..]), input);
        }
        loss
    }
}

impl<T: Real> Trainer<T> for Backprop<T> {
    fn train_batch(
        &mut self,
        mlp: &mut Mlp<T>,
        x: ArrayView2<T>,
        y: ArrayView2<T>,
        keep_updates: bool,
    ) -> f64 {
        if keep_updates || !self.optimizer.is_plain() {
            let mut updates = self
                .updates
                .take()
                .unwrap_or_else(|| Updates::zeros_like(mlp));
            let loss = self.compute_updates(mlp, x, y, &mut updates);
            self.state.step(mlp, &updates, self.learning_rate.f64());
            self.updates = Some(updates);
            self.kept = keep_updates;
            return loss;
        }
        self.kept = false;
        let (loss, use_sparse) = self.forward_backward(mlp, x, y);
        self.apply_sgd(mlp, x, use_sparse);
        loss
    }

    fn set_learning_rate(&mut self, learning_rate: f64) {
        self.learning_rate = T::of(learning_rate);
    }

    fn last_updates(&self) -> Option<&Updates<T>> {
        if self.kept {
            self.updates.as_ref()
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_cut_of_the_batch_gives_the_same_bits() {
        // The row blocks follow the threads' measured speed; that is only
        // allowed because no number depends on where the batch is cut
        // (sparse input, momentum).
        let (mlp, batches) = crate::algo::balance::uneven_cut_fixture(32);
        crate::algo::balance::assert_any_cut_gives_the_same_bits(&mlp, |shares| {
            let mut bp = Backprop::new(&mlp, 0.1, 0.9, 32);
            let mut trained = mlp.clone();
            let mut losses = Vec::new();
            let mut cuts = Vec::new();
            for (x, y) in &batches {
                bp.balance.set_shares(shares);
                losses.push(bp.train_batch(&mut trained, x.view(), y.view(), false));
                cuts.push(bp.cuts.clone());
            }
            (trained, losses, cuts)
        });
    }
}
