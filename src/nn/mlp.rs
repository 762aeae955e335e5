//! The multilayer perceptron's parameters `W[l]`, `b[l]`, Kaiming-He
//! initialisation, the affine map `u = a · Wᵀ + b`, batched inference, and
//! `Updates`, the per-layer parameter changes every learning rule produces.

use super::kernels::{Accum, column_sums, matmul, rank_update};
use super::{Activation, LossKind, Real};
use ndarray::{Array1, Array2, ArrayView1, ArrayView2, ArrayViewMut2, ShapeBuilder, s};
use rand::Rng;
use rand_distr::{Distribution, Normal};

#[derive(Clone, Debug)]
pub struct Mlp<T: Real> {
    /// Layer sizes `n[1..=L]`, input first.
    pub sizes: Vec<usize>,
    /// `w[i]` is `W[i + 2]`, shape `(sizes[i + 1], sizes[i])`.
    pub w: Vec<Array2<T>>,
    /// `b[i]` is `b[i + 2]`, shape `(sizes[i + 1],)`.
    pub b: Vec<Array1<T>>,
    /// Activation of the hidden layers.
    pub hidden: Activation,
    /// Output layer and loss.
    pub output: LossKind,
}

/// `out ← a · wᵀ + b` without allocating (fast when `w` is column-major,
/// as `kaiming` makes it, so `wᵀ` has contiguous rows).
pub fn affine_into<T: Real>(
    a: ArrayView2<T>,
    w: ArrayView2<T>,
    b: ArrayView1<T>,
    out: ArrayViewMut2<T>,
) {
    matmul(a, w.t(), Some(b), out);
}

/// A zero matrix with `like`'s shape and memory order.
pub fn zeros_like<T: Real>(like: &Array2<T>) -> Array2<T> {
    zeros_in_order_of(like, like.dim())
}

/// A zero matrix of `shape` in `like`'s memory order.
pub fn zeros_in_order_of<T: Real, S: ndarray::Data<Elem = T>>(
    like: &ndarray::ArrayBase<S, ndarray::Ix2>,
    shape: (usize, usize),
) -> Array2<T> {
    Array2::zeros(shape.set_f(column_major(like)))
}

/// Whether `a` is laid out column by column (the order `zeros_like` keeps).
pub fn column_major<S: ndarray::RawData>(a: &ndarray::ArrayBase<S, ndarray::Ix2>) -> bool {
    a.ncols() > 1 && a.strides()[1] != 1
}

impl<T: Real> Mlp<T> {
    /// Kaiming-He normal weights (`std = sqrt(2 / fan_in)`), zero biases.
    pub fn kaiming(
        sizes: &[usize],
        hidden: Activation,
        output: LossKind,
        rng: &mut impl Rng,
    ) -> Self {
        let mut w = Vec::new();
        let mut b = Vec::new();
        for pair in sizes.windows(2) {
            let (fan_in, fan_out) = (pair[0], pair[1]);
            let normal = Normal::new(0.0, (2.0 / fan_in as f64).sqrt()).expect("finite std");
            // Column-major, so the column W[:, k] that one input unit feeds is
            // contiguous: sparse inputs then read and update whole columns.
            let mut wl = Array2::zeros((fan_out, fan_in).f());
            // Filled in row-major order, so the values do not depend on the layout.
            for o in 0..fan_out {
                for i in 0..fan_in {
                    wl[(o, i)] = T::of(normal.sample(rng));
                }
            }
            w.push(wl);
            b.push(Array1::zeros(fan_out));
        }
        Self {
            sizes: sizes.to_vec(),
            w,
            b,
            hidden,
            output,
        }
    }

    /// Number of layers `L`, input included.
    pub fn depth(&self) -> usize {
        self.sizes.len()
    }

    /// `ŷ` for every row of `x` (allocates; for evaluation, not training).
    pub fn predict(&self, x: ArrayView2<T>) -> Array2<T> {
        let mut a = x.to_owned();
        for (i, (w, b)) in self.w.iter().zip(&self.b).enumerate() {
            let mut z = Array2::zeros((a.nrows(), w.nrows()));
            affine_into(a.view(), w.view(), b.view(), z.view_mut());
            if i + 1 < self.w.len() {
                self.hidden.apply_inplace(z.view_mut());
            } else {
                self.output.output_inplace(z.view_mut());
            }
            a = z;
        }
        a
    }

    /// Summed loss and number of correct arg-max predictions over a data set,
    /// in chunks so memory stays bounded.
    pub fn evaluate(&self, x: ArrayView2<T>, y: ArrayView2<T>) -> (f64, usize) {
        const CHUNK: usize = 2000;
        let mut loss = 0.0;
        let mut correct = 0;
        let mut start = 0;
        while start < x.nrows() {
            let end = (start + CHUNK).min(x.nrows());
            let yhat = self.predict(x.slice(s![start..end, ..]));
            let yc = y.slice(s![start..end, ..]);
            loss += self.output.loss(yhat.view(), yc).f64();
            correct += super::loss::count_correct(yhat.view(), yc);
            start = end;
        }
        (loss, correct)
    }

    /// Total number of parameters.
    pub fn n_params(&self) -> usize {
        self.w.iter().map(|w| w.len()).sum::<usize>()
            + self.b.iter().map(|b| b.len()).sum::<usize>()
    }

    /// `W += ΔW`, `b += Δb`.
    pub fn apply(&mut self, u: &Updates<T>) {
        for (w, dw) in self.w.iter_mut().zip(&u.dw) {
            *w += dw;
        }
        for (b, db) in self.b.iter_mut().zip(&u.db) {
            *b += db;
        }
    }

    /// True when every parameter is finite.
    pub fn is_finite(&self) -> bool {
        self.w.iter().all(|w| w.iter().all(|v| v.is_finite()))
            && self.b.iter().all(|b| b.iter().all(|v| v.is_finite()))
    }
}

/// Parameter changes `ΔW[l]`, `Δb[l]` with the learning rate included, so
/// `W ← W + ΔW` is the update a rule applies.
#[derive(Clone, Debug, PartialEq)]
pub struct Updates<T: Real> {
    pub dw: Vec<Array2<T>>,
    pub db: Vec<Array1<T>>,
}

impl<T: Real> Updates<T> {
    pub fn zeros_like(mlp: &Mlp<T>) -> Self {
        Self {
            dw: mlp.w.iter().map(zeros_like).collect(),
            db: mlp.b.iter().map(|b| Array1::zeros(b.raw_dim())).collect(),
        }
    }

    /// `dw ← scale · deltaᵀ · a_prev`, `db ← scale · Σ_rows delta` for layer `i`.
    pub fn set_layer(&mut self, i: usize, scale: T, delta: ArrayView2<T>, a_prev: ArrayView2<T>) {
        rank_update(
            scale,
            &[(delta.view(), a_prev)],
            Accum::Set,
            self.dw[i].view_mut(),
        );
        column_sums(scale, &[delta], Accum::Set, self.db[i].view_mut());
    }

    /// Per layer `‖ΔW_self − ΔW_ref‖ / ‖ΔW_ref‖` (weights and biases together).
    pub fn rel_diff(&self, reference: &Updates<T>) -> Vec<f64> {
        (0..self.dw.len())
            .map(|i| {
                let (mut num, mut den) = (0.0, 0.0);
                for (a, r) in self.layer_values(i).zip(reference.layer_values(i)) {
                    num += (a - r) * (a - r);
                    den += r * r;
                }
                if den == 0.0 {
                    if num == 0.0 { 0.0 } else { f64::INFINITY }
                } else {
                    (num / den).sqrt()
                }
            })
            .collect()
    }

    /// Per layer cosine similarity between `self` and `reference`.
    pub fn cosine(&self, reference: &Updates<T>) -> Vec<f64> {
        (0..self.dw.len())
            .map(|i| {
                let (mut dot, mut na, mut nr) = (0.0, 0.0, 0.0);
                for (a, r) in self.layer_values(i).zip(reference.layer_values(i)) {
                    dot += a * r;
                    na += a * a;
                    nr += r * r;
                }
                if na == 0.0 && nr == 0.0 {
                    1.0
                } else {
                    dot / (na.sqrt() * nr.sqrt()).max(f64::MIN_POSITIVE)
                }
            })
            .collect()
    }

    fn layer_values(&self, i: usize) -> impl Iterator<Item = f64> + '_ {
        self.dw[i].iter().chain(self.db[i].iter()).map(|v| v.f64())
    }
}
