//! Matrix multiply for the hot loops: a safe wrapper over the `gemm` crate
//! (fast AVX2/FMA kernels), used instead of
//! ndarray's built-in `general_mat_mul` wherever a rule multiplies matrices.

use super::Real;
use ndarray::{ArrayView2, ArrayViewMut2};
use std::sync::atomic::{AtomicUsize, Ordering};

static THREADS: AtomicUsize = AtomicUsize::new(1);

/// Threads the learning rules may split a batch over (1 = single-threaded).
pub fn set_threads(n: usize) {
    THREADS.store(n.max(1), Ordering::Relaxed);
}

pub fn threads() -> usize {
    THREADS.load(Ordering::Relaxed)
}

/// `c ← alpha · a · b + beta · c`, the BLAS `gemm` contract (`beta = 0`
/// ignores the old contents of `c`, even NaN).
pub fn gemm<T: Real>(
    alpha: T,
    a: &ArrayView2<T>,
    b: &ArrayView2<T>,
    beta: T,
    c: &mut ArrayViewMut2<T>,
) {
    let (m, k) = a.dim();
    let (k2, n) = b.dim();
    assert!(
        k == k2 && c.dim() == (m, n),
        "gemm shapes {:?} x {:?} -> {:?}",
        a.dim(),
        b.dim(),
        c.dim()
    );
    if m == 0 || n == 0 {
        return;
    }
    // Always single-threaded inside: callers split work by rows or output
    // units, which keeps every result independent of the thread count.
    let parallelism = gemm::Parallelism::None;
    let (a_rs, a_cs) = (a.strides()[0], a.strides()[1]);
    let (b_rs, b_cs) = (b.strides()[0], b.strides()[1]);
    let (c_rs, c_cs) = (c.strides()[0], c.strides()[1]);
    // SAFETY: the pointers and strides come from live ndarray views whose
    // shapes were checked above; `c` is borrowed mutably, so it cannot alias
    // `a` or `b`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            c_cs,
            c_rs,
            beta != T::zero(),
            a.as_ptr(),
            a_cs,
            a_rs,
            b.as_ptr(),
            b_cs,
            b_rs,
            beta,
            alpha,
            false,
            false,
            false,
            parallelism,
        )
    }
}
