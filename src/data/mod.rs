//! Data sets: the IDX reader for MNIST (raw or gzip), fetching a verified
//! copy of MNIST, and the seeded synthetic classification set used by the
//! quick start and the tests. Plain `f32`/`u8` arrays, no model types; the
//! conversion to a run's precision is generic over any float.

pub mod idx;
pub mod mnist;
pub mod synthetic;

use ndarray::{Array2, ArrayView2, ArrayViewMut2, Axis};
use std::path::PathBuf;

/// Errors while loading data; every message names the file and what to do.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{path}: cannot read: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path}: not an IDX file of the expected kind: magic number {found:#010x}, expected {expected:#010x} ({what})"
    )]
    BadMagic {
        path: PathBuf,
        found: u32,
        expected: u32,
        what: &'static str,
    },
    #[error(
        "{path}: truncated or corrupt: header promises {expected} bytes of data, file has {found}; delete it and fetch MNIST again with `pcsim data mnist`"
    )]
    Truncated {
        path: PathBuf,
        expected: usize,
        found: usize,
    },
    #[error("{path}: corrupt: {reason}; delete it and fetch MNIST again with `pcsim data mnist`")]
    Corrupt { path: PathBuf, reason: String },
    #[error(
        "MNIST not found: {missing} is missing (looked for it, raw or .gz, in {dir}).\n  Get it with:  pcsim data mnist --dir {dir}\n  or point the scenario at another copy:  --set data.path=DIR"
    )]
    MnistMissing { dir: PathBuf, missing: String },
    #[error(
        "{what} would need {bytes} bytes of memory, which cannot be allocated; use a smaller data set"
    )]
    TooLarge { what: String, bytes: u128 },
    #[error("{0}")]
    Other(String),
}

/// A labelled classification set: `x` rows are samples, `labels` class ids.
#[derive(Clone, Debug)]
pub struct Dataset {
    pub x: Array2<f32>,
    pub labels: Vec<u8>,
    pub n_classes: usize,
}

impl Dataset {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    pub fn n_features(&self) -> usize {
        self.x.ncols()
    }

    /// The first `n` samples (all when `n` is `None` or larger than the set).
    pub fn truncate(mut self, n: Option<usize>) -> Self {
        if let Some(n) = n.filter(|&n| n < self.len()) {
            self.x = self.x.slice_axis(Axis(0), (0..n).into()).to_owned();
            self.labels.truncate(n);
        }
        self
    }

    /// Inputs converted to the run's precision and one-hot targets.
    pub fn to_real<T: num_traits::Float>(&self) -> (Array2<T>, Array2<T>) {
        // Exact: f32 → f32 or f64.
        let x = self
            .x
            .mapv(|v| <T as num_traits::NumCast>::from(v).unwrap_or_else(T::nan));
        let mut y = Array2::zeros((self.len(), self.n_classes));
        for (row, &label) in self.labels.iter().enumerate() {
            y[(row, label as usize)] = T::one();
        }
        (x, y)
    }
}

/// Copies the rows `indices` of `src` into the first rows of `dst`
/// (minibatch assembly without allocation).
pub fn gather_rows<T: Copy + Send + Sync>(
    src: ArrayView2<T>,
    indices: &[usize],
    dst: ArrayViewMut2<T>,
) {
    // A batch of MNIST rows is ≈ 200 KB read from scattered places in a
    // dataset far larger than the caches: two threads have twice the loads
    // in flight (an epoch's gathers took 27 ms of a 0.3 s BP epoch).
    let threads = crate::nn::linalg::threads();
    if threads > 1 && dst.len() >= PARALLEL_GATHER && indices.len() >= 2 * threads {
        let cuts = crate::algo::bounds(indices.len(), threads);
        let blocks = crate::nn::team::row_blocks_mut(dst, &cuts);
        let parts: Vec<_> = cuts
            .windows(2)
            .map(|c| &indices[c[0]..c[1]])
            .zip(blocks)
            .collect();
        crate::nn::team::for_each_part(parts, |(indices, dst)| copy_rows(src, indices, dst));
        return;
    }
    copy_rows(src, indices, dst);
}

/// Elements of a batch from which `gather_rows` splits the copy over threads.
const PARALLEL_GATHER: usize = 1 << 14;

fn copy_rows<T: Copy>(src: ArrayView2<T>, indices: &[usize], mut dst: ArrayViewMut2<T>) {
    for (k, &i) in indices.iter().enumerate() {
        let (mut to, from) = (dst.row_mut(k), src.row(i));
        // Contiguous rows (the usual case) copy as one memcpy each.
        match (to.as_slice_mut(), from.as_slice()) {
            (Some(to), Some(from)) => to.copy_from_slice(from),
            _ => to.assign(&from),
        }
    }
}

/// A train/test pair.
#[derive(Clone, Debug)]
pub struct Split {
    pub train: Dataset,
    pub test: Dataset,
}

#[cfg(test)]
mod tests {
    use super::gather_rows;
    use ndarray::Array2;

    /// The split copy (threads > 1, batches from `PARALLEL_GATHER` elements)
    /// fills exactly the rows the serial copy fills, and leaves the rest of
    /// a larger batch buffer alone.
    #[test]
    fn gather_rows_is_the_same_on_any_thread_count() {
        let src = Array2::from_shape_fn((500, 784), |(r, c)| (r * 784 + c) as f32);
        let indices: Vec<usize> = (0..61).map(|k| (k * 37 + 11) % 500).collect();
        let _threads = crate::nn::linalg::threads_for_test(1);
        let gathered = |threads: usize| {
            crate::nn::linalg::set_threads(threads);
            let mut dst = Array2::from_elem((64, 784), -1.0f32);
            gather_rows(src.view(), &indices, dst.view_mut());
            crate::nn::linalg::set_threads(1);
            dst
        };
        let one = gathered(1);
        for (k, &i) in indices.iter().enumerate() {
            assert_eq!(one.row(k), src.row(i));
        }
        assert!(one.slice(ndarray::s![61.., ..]).iter().all(|&v| v == -1.0));
        for threads in [2, 3] {
            assert_eq!(gathered(threads), one, "{threads} threads");
        }
    }
}
