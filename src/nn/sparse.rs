//! Sparse input rows (compressed sparse rows). Clamped inputs such as MNIST
//! images are mostly zeros (≈ 81 % of MNIST pixels), so the layer they feed
//! is computed from the non-zero pixels only: a prediction adds the weight
//! columns of active inputs, an update changes only those columns. The
//! weight matrix is column-major (see `Mlp::kaiming`), so a column is one
//! contiguous slice.

use super::Real;
use ndarray::{ArrayView1, ArrayView2, ArrayViewMut1, ArrayViewMut2};

/// Inputs whose fraction of non-zeros is below this use the sparse kernels.
pub const SPARSE_DENSITY: f64 = 0.4;

/// The non-zero entries of a batch, row by row. Buffers are reused: after
/// the first batch, refilling does not allocate.
#[derive(Clone, Debug, Default)]
pub struct SparseRows<T> {
    row_start: Vec<usize>,
    index: Vec<usize>,
    value: Vec<T>,
    cols: usize,
}

impl<T: Real> SparseRows<T> {
    pub fn new() -> Self {
        Self {
            row_start: vec![0],
            index: Vec::new(),
            value: Vec::new(),
            cols: 0,
        }
    }

    /// Refills from a dense batch and returns its density (non-zeros / size).
    pub fn fill(&mut self, x: ArrayView2<T>) -> f64 {
        self.row_start.clear();
        self.index.clear();
        self.value.clear();
        self.row_start.push(0);
        self.cols = x.ncols();
        for row in x.rows() {
            for (k, &v) in row.iter().enumerate() {
                if v != T::zero() {
                    self.index.push(k);
                    self.value.push(v);
                }
            }
            self.row_start.push(self.index.len());
        }
        self.index.len() as f64 / (x.len().max(1)) as f64
    }

    pub fn nrows(&self) -> usize {
        self.row_start.len() - 1
    }

    /// `(column, value)` pairs of row `r`.
    pub fn row(&self, r: usize) -> impl Iterator<Item = (usize, T)> + '_ {
        let span = self.row_start[r]..self.row_start[r + 1];
        self.index[span.clone()]
            .iter()
            .copied()
            .zip(self.value[span].iter().copied())
    }
}

/// `y += a · x` on contiguous slices (vectorised, fused multiply-add).
#[inline]
pub fn axpy<T: Real>(a: T, x: &[T], y: &mut [T]) {
    for (y, &x) in y.iter_mut().zip(x) {
        *y = a.mul_add(x, *y);
    }
}

fn axpy_view<T: Real>(a: T, x: ArrayView1<T>, mut y: ArrayViewMut1<T>) {
    match (x.as_slice(), y.as_slice_mut()) {
        (Some(x), Some(y)) => axpy(a, x, y),
        _ => y.zip_mut_with(&x, |y, &x| *y = a.mul_add(x, *y)),
    }
}

/// `out[r, :] ← b + Σ_k x[rows.start + r, k] · W[:, k]` for the rows of `out`,
/// which are rows `first..first + out.nrows()` of the sparse batch.
pub fn affine_into<T: Real>(
    rows: &SparseRows<T>,
    first: usize,
    w: ArrayView2<T>,
    b: ArrayView1<T>,
    mut out: ArrayViewMut2<T>,
) {
    for (r, mut out_row) in out.rows_mut().into_iter().enumerate() {
        out_row.assign(&b);
        for (k, v) in rows.row(first + r) {
            axpy_view(v, w.column(k), out_row.view_mut());
        }
    }
}

/// `W ← W + scale · deltaᵀ · x` touching only the columns of non-zero inputs.
/// `w` and `delta` may be a slice of the output units (rows of `w`, columns
/// of `delta`), so threads can split the update by output unit.
pub fn outer_update<T: Real>(
    mut w: ArrayViewMut2<T>,
    scale: T,
    delta: ArrayView2<T>,
    rows: &SparseRows<T>,
) {
    for (r, d) in delta.rows().into_iter().enumerate() {
        for (k, v) in rows.row(r) {
            axpy_view(scale * v, d, w.column_mut(k));
        }
    }
}
