//! How many threads the learning rules may split a batch over. The split
//! never changes a result (see `nn::kernels`), only the wall time.

use std::sync::atomic::{AtomicUsize, Ordering};

static THREADS: AtomicUsize = AtomicUsize::new(1);

/// Threads the learning rules may split a batch over (1 = single-threaded).
pub fn set_threads(n: usize) {
    THREADS.store(n.max(1), Ordering::Relaxed);
}

pub fn threads() -> usize {
    THREADS.load(Ordering::Relaxed)
}
