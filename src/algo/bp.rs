//! Synchronous backprop, the reference every other rule is measured against:
//! `δ[L] = ŷ − y`, `δ[l] = f'(z[l]) ⊙ (δ[l+1] W[l+1])`,
//! `ΔW[l] = −(α/B) δ[l]ᵀ a[l−1]`, `Δb[l] = −(α/B) Σ δ[l]` (updates are
//! averaged over the batch of size B).

use super::{Momentum, Trainer};
use crate::nn::mlp::affine_into;
use crate::nn::{Mlp, Real, Updates};
use ndarray::linalg::general_mat_mul;
use ndarray::{Array2, ArrayView2, s};

/// Backprop with its preallocated buffers: training does not allocate.
pub struct Backprop<T: Real> {
    pub learning_rate: T,
    optimizer: Momentum<T>,
    /// Pre-activations `z[l]` for l = 2..L (rows = capacity).
    z: Vec<Array2<T>>,
    /// `f(z[l])` for hidden layers, `ŷ` for the output.
    a: Vec<Array2<T>>,
    delta: Vec<Array2<T>>,
    updates: Option<Updates<T>>,
    kept: bool,
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
            optimizer: Momentum::new(momentum),
            z: buf(),
            a: buf(),
            delta: buf(),
            updates: None,
            kept: false,
        }
    }

    fn ensure_capacity(&mut self, rows: usize) {
        if self.z[0].nrows() < rows {
            for buf in self.z.iter_mut().chain(&mut self.a).chain(&mut self.delta) {
                *buf = Array2::zeros((rows, buf.ncols()));
            }
        }
    }

    /// Forward pass into the buffers; returns the summed loss.
    fn forward(&mut self, mlp: &Mlp<T>, x: ArrayView2<T>, y: ArrayView2<T>) -> f64 {
        let n = x.nrows();
        let last = mlp.w.len() - 1;
        for i in 0..=last {
            let (prev, rest) = self.a.split_at_mut(i);
            let input = if i == 0 {
                x.view()
            } else {
                prev[i - 1].slice(s![..n, ..])
            };
            let mut z = self.z[i].slice_mut(s![..n, ..]);
            affine_into(input, mlp.w[i].view(), mlp.b[i].view(), z.view_mut());
            let mut a = rest[0].slice_mut(s![..n, ..]);
            a.assign(&z);
            if i < last {
                mlp.hidden.apply_inplace(a);
            } else {
                mlp.output.output_inplace(a);
            }
        }
        mlp.output.loss(self.a[last].slice(s![..n, ..]), y).f64()
    }

    /// `δ[l]` for every layer, using the current (not yet updated) weights.
    fn backward(&mut self, mlp: &Mlp<T>, y: ArrayView2<T>) {
        let n = y.nrows();
        let last = mlp.w.len() - 1;
        mlp.output.delta_into(
            self.a[last].slice(s![..n, ..]),
            y,
            self.delta[last].slice_mut(s![..n, ..]),
        );
        for i in (1..=last).rev() {
            let (lower, upper) = self.delta.split_at_mut(i);
            let mut d = lower[i - 1].slice_mut(s![..n, ..]);
            general_mat_mul(
                T::one(),
                &upper[0].slice(s![..n, ..]),
                &mlp.w[i],
                T::zero(),
                &mut d,
            );
            mlp.hidden
                .mul_derivative(self.z[i - 1].slice(s![..n, ..]), d);
        }
    }

    /// The BP update for `(x, y)` on `mlp`, without applying it.
    pub fn compute_updates(
        &mut self,
        mlp: &Mlp<T>,
        x: ArrayView2<T>,
        y: ArrayView2<T>,
        out: &mut Updates<T>,
    ) -> f64 {
        self.ensure_capacity(x.nrows());
        let loss = self.forward(mlp, x, y);
        self.backward(mlp, y);
        let scale = -self.learning_rate / T::of(x.nrows() as f64);
        for i in 0..mlp.w.len() {
            let input = if i == 0 {
                x.view()
            } else {
                self.a[i - 1].slice(s![..x.nrows(), ..])
            };
            out.set_layer(i, scale, self.delta[i].slice(s![..x.nrows(), ..]), input);
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
            self.optimizer.apply(mlp, &updates);
            self.updates = Some(updates);
            self.kept = keep_updates;
            return loss;
        }
        // Fast path: plain SGD fused into the weight matrices, no update buffer.
        self.kept = false;
        self.ensure_capacity(x.nrows());
        let loss = self.forward(mlp, x, y);
        self.backward(mlp, y);
        let n = x.nrows();
        let scale = -self.learning_rate / T::of(n as f64);
        for i in 0..mlp.w.len() {
            let delta = self.delta[i].slice(s![..n, ..]);
            let input = if i == 0 {
                x.view()
            } else {
                self.a[i - 1].slice(s![..n, ..])
            };
            general_mat_mul(scale, &delta.t(), &input, T::one(), &mut mlp.w[i]);
            for row in delta.rows() {
                mlp.b[i].scaled_add(scale, &row);
            }
        }
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
