//! How many threads the learning rules may split a batch over. The split
//! never changes a result (see `nn::kernels`), only the wall time.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

static THREADS: AtomicUsize = AtomicUsize::new(1);

thread_local! {
    /// A limit for the rules run on this thread (0: none), set by a driver
    /// whose own threads already run work side by side.
    static HERE: Cell<usize> = const { Cell::new(0) };
}

/// Threads the learning rules may split a batch over (1 = single-threaded).
pub fn set_threads(n: usize) {
    THREADS.store(n.max(1), Ordering::Relaxed);
}

/// Tests that set the global thread count hold this while they depend on
/// it: the test harness runs tests side by side in one process.
#[cfg(test)]
pub(crate) fn threads_for_test(n: usize) -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    set_threads(n);
    guard
}

pub fn threads() -> usize {
    let all = THREADS.load(Ordering::Relaxed);
    match HERE.with(Cell::get) {
        0 => all,
        here => here.min(all),
    }
}

/// Limits the rules run on the calling thread to `n` threads (0 lifts it).
pub fn limit_threads_here(n: usize) {
    HERE.with(|c| c.set(n));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_limit_holds_on_its_own_thread_only() {
        limit_threads_here(1);
        assert_eq!(threads(), 1);
        // Another thread sees the global count (whatever a parallel test set).
        let elsewhere = std::thread::spawn(|| HERE.with(Cell::get)).join().unwrap();
        assert_eq!(elsewhere, 0);
        limit_threads_here(0);
        assert_eq!(threads(), THREADS.load(Ordering::Relaxed));
    }
}
