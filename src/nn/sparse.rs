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
    active_cols: Vec<usize>,
    cols: usize,
}

/// Outputs accumulated in registers at a time by the kernels below.
const CHUNK: usize = 64;

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
            active_cols: Vec::new(),
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
        let (index, value) = (&mut self.index[..], &mut self.value[..]);
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
            self.row_start.push(len);
        }
        // Counting sort into columns.
        self.col_start.clear();
        self.col_start.resize(cols + 1, 0);
        for &k in &self.index[..len] {
            self.col_start[k + 1] += 1;
        }
        self.active_cols.clear();
        for k in 0..cols {
            if self.col_start[k + 1] > 0 {
                self.active_cols.push(k);
            }
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

/// `acc[..len] += Σ_e a_e · src_e[..len]`, with `acc` held in registers.
#[inline(always)]
fn accumulate<'s, T: Real>(
    acc: &mut [T; CHUNK],
    len: usize,
    terms: impl Iterator<Item = (T, &'s [T])>,
) {
    if len == CHUNK {
        for (a, src) in terms {
            let src: &[T; CHUNK] = src[..CHUNK].try_into().expect("chunk");
            for j in 0..CHUNK {
                acc[j] = a.mul_add(src[j], acc[j]);
            }
        }
    } else {
        for (a, src) in terms {
            for j in 0..len {
                acc[j] = a.mul_add(src[j], acc[j]);
            }
        }
    }
}

/// `out[r, :] ← b + Σ_k x[first + r, k] · W[:, k]` for the rows of `out`,
/// which are rows `first..first + out.nrows()` of the sparse batch.
pub fn affine_into<T: Real>(
    rows: &SparseRows<T>,
    first: usize,
    w: ArrayView2<T>,
    b: ArrayView1<T>,
    mut out: ArrayViewMut2<T>,
) {
    let n_out = w.nrows();
    let columns = w
        .t()
        .is_standard_layout()
        .then(|| w.to_slice_memory_order())
        .flatten();
    let (Some(wd), Some(bd)) = (columns, b.as_slice()) else {
        for (r, mut out_row) in out.rows_mut().into_iter().enumerate() {
            out_row.assign(&b);
            for (k, v) in rows.row(first + r) {
                axpy_view(v, w.column(k), out_row.view_mut());
            }
        }
        return;
    };
    // Chunks of outputs outermost: one chunk's block of W (64 × inputs)
    // stays in the core's L2 cache while every row of the batch uses it.
    for c0 in (0..n_out).step_by(CHUNK) {
        let len = CHUNK.min(n_out - c0);
        for (r, mut out_row) in out.rows_mut().into_iter().enumerate() {
            let mut acc = [T::zero(); CHUNK];
            acc[..len].copy_from_slice(&bd[c0..c0 + len]);
            let terms = rows
                .row(first + r)
                .map(|(k, v)| (v, &wd[k * n_out + c0..k * n_out + c0 + len]));
            accumulate(&mut acc, len, terms);
            for (o, a) in out_row
                .slice_mut(ndarray::s![c0..c0 + len])
                .iter_mut()
                .zip(&acc)
            {
                *o = *a;
            }
        }
    }
}

/// `W ← W + scale · deltaᵀ · x` touching only the columns of non-zero inputs.
/// `w` and `delta` may be a slice of the output units (rows of `w`, columns
/// of `delta`), so threads can split the update by output unit. Each column
/// of `W` is read and written once per batch, its change summed in registers.
pub fn outer_update<T: Real>(
    mut w: ArrayViewMut2<T>,
    scale: T,
    delta: ArrayView2<T>,
    sp: &SparseRows<T>,
) {
    let n_out = w.nrows();
    if delta.ncols() > 1 && delta.strides()[1] != 1 {
        for (r, d) in delta.rows().into_iter().enumerate() {
            for (k, v) in sp.row(r) {
                axpy_view(scale * v, d, w.column_mut(k));
            }
        }
        return;
    };
    for &k in &sp.active_cols {
        let mut col = w.column_mut(k);
        let Some(col) = col.as_slice_mut() else {
            for e in sp.col_start[k]..sp.col_start[k + 1] {
                let r = sp.col_row[e];
                axpy_view(scale * sp.col_value[e], delta.row(r), w.column_mut(k));
            }
            continue;
        };
        let entries = sp.col_start[k]..sp.col_start[k + 1];
        for c0 in (0..n_out).step_by(CHUNK) {
            let len = CHUNK.min(n_out - c0);
            let mut acc = [T::zero(); CHUNK];
            let terms = entries
                .clone()
                .map(|e| {
                    (
                        scale * sp.col_value[e],
                        delta
                            .row(sp.col_row[e])
                            .to_slice()
                            .expect("contiguous rows"),
                    )
                })
                .map(|(a, row)| (a, &row[c0..c0 + len]));
            accumulate(&mut acc, len, terms);
            for (o, a) in col[c0..c0 + len].iter_mut().zip(&acc) {
                *o += *a;
            }
        }
    }
}
