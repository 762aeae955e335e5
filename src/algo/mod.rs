//! Learning rules. Each algorithm is a `Trainer`: given the parameters and a
//! batch it computes (and applies) one update. Rules that exchange messages
//! (PC/IL/Z-IL) are written as per-layer rules so the lockstep driver here and
//! the actor runtimes deliver the same math.

pub mod balance;
pub mod bp;
pub mod optim;
pub mod pc;

use crate::nn::{Mlp, Real, Updates};
use ndarray::ArrayView2;

/// One learning algorithm driving an `Mlp`.
pub trait Trainer<T: Real> {
    /// One training step on the batch `(x, y)`; returns the batch's summed loss
    /// measured before the update. With `keep_updates` the applied update is
    /// kept for `last_updates` (equivalence metrics, export).
    fn train_batch(
        &mut self,
        mlp: &mut Mlp<T>,
        x: ArrayView2<T>,
        y: ArrayView2<T>,
        keep_updates: bool,
    ) -> f64;

    /// How many consecutive batches `train_chain` takes at once (1: one at
    /// a time). A trainer says more when a chain costs less than its
    /// batches one by one and computes the same bits.
    fn chain_len(&self) -> usize {
        1
    }

    /// Trains on consecutive batches, each after the update of the one
    /// before, exactly as many `train_batch` calls would (without kept
    /// updates); returns each batch's summed loss, measured before its
    /// update. After an error (`take_error`) the remaining losses are NaN.
    fn train_chain(
        &mut self,
        mlp: &mut Mlp<T>,
        batches: &[(ArrayView2<T>, ArrayView2<T>)],
    ) -> Vec<f64> {
        let mut losses = Vec::with_capacity(batches.len());
        for &(x, y) in batches {
            losses.push(self.train_batch(mlp, x, y, false));
        }
        losses
    }

    /// Sets α (the driver decays it between epochs).
    fn set_learning_rate(&mut self, learning_rate: f64);

    /// The update applied by the last `train_batch` called with `keep_updates`.
    fn last_updates(&self) -> Option<&Updates<T>>;

    /// An error that ended the last `train_batch` (e.g. a stalled actor
    /// network); the driver stops the run with it.
    fn take_error(&mut self) -> Option<anyhow::Error> {
        None
    }

    /// What the relaxation's energy monitor counted since the last call
    /// (and resets), if the trainer relaxes and watches (lockstep IL).
    fn take_relaxation_stats(&mut self) -> Option<pc::RelaxStats> {
        None
    }

    /// Message and timing statistics of an actor runtime, if the trainer has one.
    fn runtime_stats(&self) -> Option<serde_json::Value> {
        None
    }

    /// Extra `metrics.csv` columns this trainer reports at every evaluation
    /// point (before `wall_seconds`).
    fn metric_columns(&self) -> Vec<String> {
        Vec::new()
    }

    /// The values of `metric_columns` since the last call.
    fn take_metrics(&mut self) -> Vec<f64> {
        Vec::new()
    }

    /// A `summary.json` field (name, value) of this trainer's own.
    fn summary_fields(&self) -> Option<(&'static str, serde_json::Value)> {
        None
    }

    /// The network's prediction `ŷ` for evaluation.
    fn predict(&mut self, mlp: &Mlp<T>, x: ArrayView2<T>) -> ndarray::Array2<T> {
        mlp.predict(x)
    }
}

/// Plain minibatch SGD with optional heavy-ball momentum, applied to the
/// updates a rule produced (which already include the learning rate).
#[derive(Clone, Debug)]
pub struct Momentum<T: Real> {
    pub momentum: T,
    velocity: Option<Updates<T>>,
}

impl<T: Real> Momentum<T> {
    pub fn new(momentum: f64) -> Self {
        Self {
            momentum: T::of(momentum),
            velocity: None,
        }
    }

    pub fn is_plain(&self) -> bool {
        self.momentum == T::zero()
    }

    /// `v ← μ v + ΔW; W ← W + v` (with μ = 0 this is `W ← W + ΔW`).
    pub fn apply(&mut self, mlp: &mut Mlp<T>, updates: &Updates<T>) {
        if self.is_plain() {
            mlp.apply(updates);
            return;
        }
        let v = self
            .velocity
            .get_or_insert_with(|| Updates::zeros_like(mlp));
        for (v, d) in v.dw.iter_mut().zip(&updates.dw) {
            v.zip_mut_with(d, |v, &d| *v = self.momentum * *v + d);
        }
        for (v, d) in v.db.iter_mut().zip(&updates.db) {
            v.zip_mut_with(d, |v, &d| *v = self.momentum * *v + d);
        }
        mlp.apply(v);
    }
}

/// Splits `0..n` into `parts` near-equal contiguous ranges.
pub fn bounds(n: usize, parts: usize) -> Vec<usize> {
    (0..=parts).map(|p| p * n / parts).collect()
}

/// Row blocks a batch of `rows` samples is cut into: one per thread, at
/// least 8 rows each. The kernels give every row (and every output unit)
/// the same bits however the batch is cut, so this only sets the speed.
pub fn parts_for(rows: usize) -> usize {
    crate::nn::linalg::threads().min(rows.div_ceil(8)).max(1)
}

/// A share of one layer's output units for the update phase:
/// `(layer, rows lo..hi of W[l], the same entries of b[l], lo, hi)`.
pub type UnitSlice<'a, T> = (
    usize,
    ndarray::ArrayViewMut2<'a, T>,
    ndarray::ArrayViewMut1<'a, T>,
    usize,
    usize,
);

/// Cuts the output units of every layer `i` with `take(i)` into `parts`
/// contiguous shares, one list of slices per part: the update phase gives
/// each thread a share of every layer (each unit's update is its own
/// reduction over the batch, so the split never changes a result).
pub fn split_units<'a, T: Real>(
    w: &'a mut [ndarray::Array2<T>],
    b: &'a mut [ndarray::Array1<T>],
    parts: usize,
    take: impl Fn(usize) -> bool,
) -> Vec<Vec<UnitSlice<'a, T>>> {
    use ndarray::Axis;
    let mut jobs: Vec<Vec<UnitSlice<'a, T>>> = (0..parts).map(|_| Vec::new()).collect();
    for (i, (w, b)) in w.iter_mut().zip(b.iter_mut()).enumerate() {
        if !take(i) {
            continue;
        }
        let cuts = bounds(w.nrows(), parts);
        let mut w_rest = w.view_mut();
        let mut b_rest = b.view_mut();
        for p in 0..parts {
            let len = cuts[p + 1] - cuts[p];
            let (w_head, w_tail) = w_rest.split_at(Axis(0), len);
            let (b_head, b_tail) = b_rest.split_at(Axis(0), len);
            if len > 0 {
                jobs[p].push((i, w_head, b_head, cuts[p], cuts[p + 1]));
            }
            w_rest = w_tail;
            b_rest = b_tail;
        }
    }
    jobs
}

pub use crate::nn::team::for_each_part;
