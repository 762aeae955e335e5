//! Sparse input rows (compressed sparse rows). Clamped inputs such as MNIST
//! images are mostly zeros (≈ 81 % of MNIST pixels), so the layer they feed
//! is computed from the non-zero pixels only: a prediction adds the weight
//! columns of active inputs, an update changes only those columns (the
//! kernels are `nn::kernels::{sparse_matmul, sparse_rank_update}`). The
//! weight matrix is column-major (see `Mlp::kaiming`), so a column is one
//! contiguous slice.

use super::Real;
use ndarray::ArrayView2;

/// Inputs whose fraction of non-zeros is below this use the sparse kernels.
pub const SPARSE_DENSITY: f64 = 0.4;

crate::nn::simd::multiversion! {
    fn count_nonzero<T: Real>(v: &[T]) -> usize {
        v.iter().map(|&x| usize::from(x != T::zero())).sum()
    }
}

/// Fraction of non-zero entries of a batch.
pub fn density<T: Real>(x: ArrayView2<T>) -> f64 {
    let nz = match x.as_slice() {
        Some(v) => count_nonzero(v),
        None => x.iter().filter(|&&x| x != T::zero()).count(),
    };
    nz as f64 / x.len().max(1) as f64
}

crate::nn::simd::multiversion! {
    /// Branch-free compaction of the non-zeros of `x`, row by row: every
    /// entry is written, the cursor only advances past non-zeros (zeros are
    /// not predictable for a branch). Returns the count; `row_start` gets
    /// each row's end.
    fn compact_rows<T: Real>(
        x: ArrayView2<T>,
        index: &mut [usize],
        value: &mut [T],
        row_start: &mut Vec<usize>,
    ) -> usize {
        let mut len = 0;
        for row in x.rows() {
            let mut put = |k: usize, v: T| {
                // In bounds: at most x.len() entries are ever kept.
                index[len] = k;
                value[len] = v;
                len += usize::from(v != T::zero());
            };
            match row.as_slice() {
                Some(values) => {
                    // Images have long runs of zeros (borders): skip them
                    // eight at a time.
                    for (c, chunk) in values.chunks(8).enumerate() {
                        if chunk.iter().any(|&v| v != T::zero()) {
                            chunk
                                .iter()
                                .enumerate()
                                .for_each(|(j, &v)| put(c * 8 + j, v));
                        }
                    }
                }
                None => row.iter().enumerate().for_each(|(k, &v)| put(k, v)),
            }
            row_start.push(len);
        }
        len
    }
}

/// The non-zero entries of a batch, by row (CSR) and by column (CSC).
/// Buffers are reused: after the first batch, refilling does not allocate.
#[derive(Clone, Debug)]
pub struct SparseRows<T> {
    row_start: Vec<usize>,
    index: Vec<usize>,
    value: Vec<T>,
    /// The same entries grouped by column: `(row, value)` pairs.
    col_start: Vec<usize>,
    col_row: Vec<usize>,
    col_value: Vec<T>,
    col_next: Vec<usize>,
    cols: usize,
}

impl<T: Real> Default for SparseRows<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Real> SparseRows<T> {
    pub fn new() -> Self {
        Self {
            row_start: vec![0],
            index: Vec::new(),
            value: Vec::new(),
            col_start: Vec::new(),
            col_row: Vec::new(),
            col_value: Vec::new(),
            col_next: Vec::new(),
            cols: 0,
        }
    }

    /// Refills from a dense batch and returns its density (non-zeros / size).
    pub fn fill(&mut self, x: ArrayView2<T>) -> f64 {
        let (n, cols) = x.dim();
        self.cols = cols;
        // Branch-free compaction: every entry is written, the cursor only
        // advances past non-zeros (zeros are not predictable for a branch).
        self.index.resize(x.len(), 0);
        self.value.resize(x.len(), T::zero());
        self.row_start.clear();
        self.row_start.push(0);
        let len = compact_rows(x, &mut self.index, &mut self.value, &mut self.row_start);
        // Counting sort into columns.
        self.col_start.clear();
        self.col_start.resize(cols + 1, 0);
        for &k in &self.index[..len] {
            self.col_start[k + 1] += 1;
        }
        for k in 0..cols {
            self.col_start[k + 1] += self.col_start[k];
        }
        self.col_row.resize(len, 0);
        self.col_value.resize(len, T::zero());
        self.col_next.clear();
        self.col_next.extend_from_slice(&self.col_start[..cols]);
        for r in 0..n {
            for e in self.row_start[r]..self.row_start[r + 1] {
                let k = self.index[e];
                let at = self.col_next[k];
                self.col_row[at] = r;
                self.col_value[at] = self.value[e];
                self.col_next[k] = at + 1;
            }
        }
        len as f64 / (x.len().max(1)) as f64
    }
}

impl<T: Copy> SparseRows<T> {
    /// A copy holding only the entries (the buffers here are sized for a
    /// dense batch and keep scratch space): what another shard needs to
    /// pool its update without indexing the batch again.
    pub fn compact_copy(&self) -> Self {
        let len = self.row_start.last().copied().unwrap_or(0);
        Self {
            row_start: self.row_start.clone(),
            index: self.index[..len].to_vec(),
            value: self.value[..len].to_vec(),
            col_start: self.col_start.clone(),
            col_row: self.col_row[..len].to_vec(),
            col_value: self.col_value[..len].to_vec(),
            col_next: Vec::new(),
            cols: self.cols,
        }
    }

    pub fn nrows(&self) -> usize {
        self.row_start.len() - 1
    }

    /// Columns (inputs) of the batch.
    pub fn ncols(&self) -> usize {
        self.cols
    }

    /// `(column, value)` pairs of row `r`.
    pub fn row(&self, r: usize) -> impl Iterator<Item = (usize, T)> + '_ {
        let (index, value) = self.row_slices(r);
        index.iter().copied().zip(value.iter().copied())
    }

    /// Columns and values of the non-zeros of row `r`.
    pub fn row_slices(&self, r: usize) -> (&[usize], &[T]) {
        let span = self.row_start[r]..self.row_start[r + 1];
        (&self.index[span.clone()], &self.value[span])
    }

    /// Rows (in increasing order) and values of the non-zeros of column `k`.
    pub fn col_slices(&self, k: usize) -> (&[usize], &[T]) {
        let span = self.col_start[k]..self.col_start[k + 1];
        (&self.col_row[span.clone()], &self.col_value[span])
    }
}
