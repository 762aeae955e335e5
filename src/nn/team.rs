//! The worker team that runs the parts of one batch: `threads() − 1`
//! persistent workers plus the calling thread.
//!
//! A batch's fork-joins are short (0.1–2 ms for MNIST shapes), so the
//! hand-off itself must cost microseconds. A general pool did not manage
//! that on a 2-core machine: its idle threads yield to the scheduler in a
//! loop (a third thread competing for two cores, with system time near half
//! the CPU time) and wake through the kernel. Here a dispatch is a few
//! atomics: workers spin on a generation counter for a while after each job
//! (the next fork-join of a batch follows within microseconds) and only then
//! sleep on a condition variable. Parts are claimed from a shared counter,
//! and every part is a fixed share of the work, so which thread runs a part
//! never changes a result.

use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};

/// How long an idle worker spins before it sleeps (≈ 50–100 µs).
const SPIN_ROUNDS: u32 = 1 << 14;

/// One dispatch: the job, how many parts it has and how many threads may
/// take part (the caller counts as one).
struct Dispatch<'a> {
    job: &'a (dyn Fn(usize) + Sync),
    parts: usize,
    helpers: usize,
}

struct Shared {
    /// Bumped for every dispatch; workers wait for it to change.
    generation: AtomicU64,
    /// The current dispatch, null between dispatches.
    dispatch: AtomicPtr<Dispatch<'static>>,
    /// The next part to claim.
    next: AtomicUsize,
    /// Parts not yet finished.
    remaining: AtomicUsize,
    /// Workers between reading `dispatch` and leaving it: the caller returns
    /// (ending the dispatch's lifetime) only once this is 0.
    active: AtomicUsize,
    /// A part's job panicked on a worker; the caller re-raises it.
    panicked: AtomicBool,
    sleepers: AtomicUsize,
    lock: Mutex<()>,
    wake: Condvar,
}

struct Team {
    shared: Arc<Shared>,
    /// Workers started so far (never shrinks; a dispatch uses the first ones).
    workers: Mutex<usize>,
    /// One dispatcher at a time; others run their parts themselves.
    busy: Mutex<()>,
}

thread_local! {
    /// Set on team workers and on a dispatching caller, so a nested
    /// `run_parts` runs in place instead of waiting on itself.
    static INSIDE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn team() -> &'static Team {
    static TEAM: OnceLock<Team> = OnceLock::new();
    TEAM.get_or_init(|| Team {
        shared: Arc::new(Shared {
            generation: AtomicU64::new(0),
            dispatch: AtomicPtr::new(std::ptr::null_mut()),
            next: AtomicUsize::new(0),
            remaining: AtomicUsize::new(0),
            active: AtomicUsize::new(0),
            panicked: AtomicBool::new(false),
            sleepers: AtomicUsize::new(0),
            lock: Mutex::new(()),
            wake: Condvar::new(),
        }),
        workers: Mutex::new(0),
        busy: Mutex::new(()),
    })
}

/// Spins, then yields, until `done()`.
fn wait_until(done: impl Fn() -> bool) {
    let mut rounds = 0u32;
    while !done() {
        if rounds < SPIN_ROUNDS {
            std::hint::spin_loop();
            rounds += 1;
        } else {
            std::thread::yield_now();
        }
    }
}

/// Runs `job(0) … job(parts − 1)`, each exactly once, on up to `threads`
/// threads (this one included), and returns when all are done. Falls back
/// to running them here, in order, when one thread is asked for, when
/// called from inside a part, or while another thread is dispatching.
pub fn run_parts(parts: usize, threads: usize, job: &(dyn Fn(usize) + Sync)) {
    if !dispatch(parts, threads.min(parts), job) {
        (0..parts).for_each(job);
    }
}

/// Runs `job(0) … job(parts − 1)` at the same time, each on its own thread
/// (this one included), for parts that wait for each other; false, having
/// run nothing, when that many threads are not to be had (fewer than
/// `parts` allowed, called from inside a part, or the team busy).
pub fn run_side_by_side(parts: usize, job: &(dyn Fn(usize) + Sync)) -> bool {
    parts <= crate::nn::linalg::threads() && dispatch(parts, parts, job)
}

/// One dispatch on `threads` threads; false (nothing run) when it cannot
/// have a helper.
fn dispatch(parts: usize, threads: usize, job: &(dyn Fn(usize) + Sync)) -> bool {
    let helpers = threads.saturating_sub(1);
    if helpers == 0 || INSIDE.with(|c| c.get()) {
        return false;
    }
    let team = team();
    let Ok(_busy) = team.busy.try_lock() else {
        return false;
    };
    if !team.ensure_workers(helpers) {
        return false;
    }
    INSIDE.with(|c| c.set(true));
    let shared = &team.shared;
    let dispatch = Dispatch {
        job,
        parts,
        helpers,
    };
    // The pointer's lifetime: it is unpublished (null) and every worker has
    // left it (`active == 0`) before this function returns.
    let ptr = &dispatch as *const Dispatch<'_> as *mut Dispatch<'static>;
    shared.next.store(0, Ordering::SeqCst);
    shared.remaining.store(parts, Ordering::SeqCst);
    shared.dispatch.store(ptr, Ordering::SeqCst);
    shared.generation.fetch_add(1, Ordering::SeqCst);
    if shared.sleepers.load(Ordering::SeqCst) > 0 {
        let _guard = shared.lock.lock().unwrap_or_else(|e| e.into_inner());
        shared.wake.notify_all();
    }
    let own = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        shared.claim_and_run(&dispatch);
    }));
    if own.is_err() {
        // The part that panicked here never counted itself done.
        shared.remaining.fetch_sub(1, Ordering::AcqRel);
    }
    wait_until(|| shared.remaining.load(Ordering::Acquire) == 0);
    shared
        .dispatch
        .store(std::ptr::null_mut(), Ordering::SeqCst);
    wait_until(|| shared.active.load(Ordering::SeqCst) == 0);
    INSIDE.with(|c| c.set(false));
    if let Err(payload) = own {
        std::panic::resume_unwind(payload);
    }
    if shared.panicked.swap(false, Ordering::AcqRel) {
        panic!("a worker thread panicked while running a part of a batch");
    }
    true
}

/// Runs `job(part)` for every part: on the worker team when threads are
/// allowed, else one after the other.
pub fn for_each_part<W: Send>(parts: Vec<W>, job: impl Fn(W) + Sync) {
    let threads = crate::nn::linalg::threads();
    if parts.len() == 1 || threads == 1 {
        parts.into_iter().for_each(job);
        return;
    }
    // Each slot is taken exactly once (the team runs every index once).
    let slots: Vec<std::sync::Mutex<Option<W>>> = parts
        .into_iter()
        .map(|p| std::sync::Mutex::new(Some(p)))
        .collect();
    run_parts(slots.len(), threads, &|i| {
        let part = slots[i].lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(part) = part {
            job(part);
        }
    });
}

/// `a`'s row blocks `cuts[k]..cuts[k + 1]` (the parts a batch is cut into).
pub fn row_blocks_mut<'a, T>(
    a: ndarray::ArrayViewMut2<'a, T>,
    cuts: &[usize],
) -> Vec<ndarray::ArrayViewMut2<'a, T>> {
    let mut out = Vec::with_capacity(cuts.len().saturating_sub(1));
    let mut rest = a;
    for c in cuts.windows(2) {
        let (head, tail) = rest.split_at(ndarray::Axis(0), c[1] - c[0]);
        out.push(head);
        rest = tail;
    }
    out
}

impl Team {
    /// Starts workers until there are `n`; false if the OS refuses a thread
    /// (the caller then runs the parts itself).
    fn ensure_workers(&self, n: usize) -> bool {
        let mut started = self.workers.lock().unwrap_or_else(|e| e.into_inner());
        while *started < n {
            let shared = Arc::clone(&self.shared);
            let id = *started;
            // Read before the dispatch that needs the worker is published,
            // so the worker takes part in it (a caller that waits for its
            // helpers' parts, `run_side_by_side`, would otherwise wait
            // forever).
            let seen = shared.generation.load(Ordering::SeqCst);
            let spawned = std::thread::Builder::new()
                .name(format!("pcsim-worker-{id}"))
                .spawn(move || worker(&shared, id, seen));
            if spawned.is_err() {
                return false;
            }
            *started += 1;
        }
        true
    }
}

impl Shared {
    /// Claims parts of `dispatch` until none are left. The counter was
    /// reset before the dispatch was published and is not reset again until
    /// every part is done and every worker has left, so each claim below
    /// `parts` is a part of this dispatch.
    fn claim_and_run(&self, dispatch: &Dispatch<'_>) {
        loop {
            let i = self.next.fetch_add(1, Ordering::AcqRel);
            if i >= dispatch.parts {
                return;
            }
            (dispatch.job)(i);
            self.remaining.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

fn worker(shared: &Shared, id: usize, mut seen: u64) {
    INSIDE.with(|c| c.set(true));
    loop {
        let mut rounds = 0u32;
        loop {
            let now = shared.generation.load(Ordering::Acquire);
            if now != seen {
                seen = now;
                break;
            }
            if rounds < SPIN_ROUNDS {
                std::hint::spin_loop();
                rounds += 1;
                continue;
            }
            let guard = shared.lock.lock().unwrap_or_else(|e| e.into_inner());
            shared.sleepers.fetch_add(1, Ordering::SeqCst);
            let guard = shared
                .wake
                .wait_while(guard, |_| shared.generation.load(Ordering::SeqCst) == seen)
                .unwrap_or_else(|e| e.into_inner());
            shared.sleepers.fetch_sub(1, Ordering::SeqCst);
            drop(guard);
            rounds = 0;
        }
        shared.active.fetch_add(1, Ordering::SeqCst);
        let ptr = shared.dispatch.load(Ordering::SeqCst);
        // SAFETY: a non-null dispatch read while `active` counts this
        // worker stays alive until the worker leaves (see `run_parts`).
        if let Some(dispatch) = unsafe { ptr.as_ref() } {
            // Workers beyond the dispatch's thread count sit this one out.
            if id < dispatch.helpers {
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    shared.claim_and_run(dispatch);
                }));
                if result.is_err() {
                    shared.panicked.store(true, Ordering::Release);
                    shared.remaining.fetch_sub(1, Ordering::AcqRel);
                }
            }
        }
        shared.active.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    #[test]
    fn side_by_side_parts_run_at_the_same_time() {
        // Each part waits for the other: run one after the other they
        // would time out. (Tests running beside this one use the team while
        // the global count is 2 — the team is then busy — so a refusal is
        // retried for a while.)
        let flags = [AtomicU32::new(0), AtomicU32::new(0)];
        let alone = AtomicBool::new(false);
        let mut ran = false;
        let _threads = crate::nn::linalg::threads_for_test(2);
        let trying = std::time::Instant::now();
        while trying.elapsed() < std::time::Duration::from_secs(20) {
            crate::nn::linalg::set_threads(2);
            ran = run_side_by_side(2, &|i| {
                flags[i].store(1, Ordering::SeqCst);
                let start = std::time::Instant::now();
                while flags[1 - i].load(Ordering::SeqCst) == 0 {
                    if start.elapsed() > std::time::Duration::from_secs(5) {
                        alone.store(true, Ordering::SeqCst);
                        return;
                    }
                    std::hint::spin_loop();
                }
            });
            if ran {
                break;
            }
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
        crate::nn::linalg::set_threads(1);
        assert!(ran, "never had 2 threads");
        assert!(!alone.load(Ordering::SeqCst), "a part waited alone");
    }

    #[test]
    fn every_part_runs_exactly_once_for_any_thread_count() {
        for threads in 1..=4 {
            for parts in [1usize, 2, 3, 7, 64] {
                for _ in 0..50 {
                    let counts: Vec<AtomicU32> = (0..parts).map(|_| AtomicU32::new(0)).collect();
                    run_parts(parts, threads, &|i| {
                        counts[i].fetch_add(1, Ordering::Relaxed);
                    });
                    assert!(counts.iter().all(|c| c.load(Ordering::Relaxed) == 1));
                }
            }
        }
    }

    #[test]
    fn concurrent_and_nested_dispatches_complete() {
        std::thread::scope(|s| {
            for _ in 0..3 {
                s.spawn(|| {
                    for _ in 0..200 {
                        let total = AtomicU32::new(0);
                        run_parts(4, 2, &|_| {
                            run_parts(3, 2, &|_| {
                                total.fetch_add(1, Ordering::Relaxed);
                            });
                        });
                        assert_eq!(total.load(Ordering::Relaxed), 12);
                    }
                });
            }
        });
    }
}
