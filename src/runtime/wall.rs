//! The wall-clock driver: every actor an async task on a multi-threaded
//! tokio runtime, messages over bounded flume channels (DESIGN.md §3
//! pitfalls): separate forward and backward inboxes read in a fixed order
//! (`biased;` select, backward first so old samples finish before new ones
//! start); shutdown by channel closure (forward edges hold `Sender`s,
//! backward edges `WeakSender`s, so closure cascades from the input); a
//! per-actor idle timeout turns a lost message into a watchdog error; a
//! panicking actor ends the run with an error naming it.
//!
//! Time is real: delays are milliseconds (FIFO edges get one delivery task
//! per edge, per-message delivery one task per message), compute time is the
//! real compute time, and every actor has a local clock in milliseconds —
//! continuous across runs, with its drift — on which its timers fire (tokio
//! timers, with the clock's Gaussian jitter), so clocked schedules run in
//! real time. Routing (edge check, stamping, loss, duplication, counters) is
//! `route`'s, shared with the virtual driver.

use super::actor::{Actor, ActorId, Ctx, Envelope, Outbox, Port, Topology};
use super::config::Delivery;
use super::route::{Faults, dispatch, resolve};
use super::stats::{ActorStats, EdgeStats, Stats};
use super::timing::{Clock, Delay, Timing, stream};
use super::watchdog::{RuntimeError, Waiting, panic_message};
use rand_chacha::ChaCha8Rng;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// Options of the wall runtime.
#[derive(Clone, Debug)]
pub struct WallOptions {
    /// Worker threads (0: available cores).
    pub workers: usize,
    pub capacity: usize,
    pub idle_timeout: Duration,
    /// Threads an actor's rules may split a batch over when run on a
    /// worker (0: `--threads`). Slices of a layer (`groups`) and shards
    /// already run side by side on the workers; splitting each of them over
    /// the team as well only makes the threads compete for the cores.
    pub rule_threads: usize,
}

impl WallOptions {
    /// The scenario's `runtime.workers`, `channel_capacity` and `idle_timeout_ms`.
    pub fn from_config(r: &super::config::RuntimeConfig) -> Self {
        Self {
            workers: r.workers,
            capacity: r.channel_capacity,
            idle_timeout: Duration::from_millis(r.idle_timeout_ms),
            rule_threads: {
                let groups = if r.granularity == super::config::Granularity::Layer {
                    1
                } else {
                    r.groups
                };
                let side_by_side = groups * r.shards.max(1);
                if side_by_side > 1 {
                    (crate::nn::linalg::threads() / side_by_side).max(1)
                } else {
                    0
                }
            },
        }
    }
}

/// Where a message goes next.
enum Sink<M> {
    Strong(flume::Sender<M>),
    Weak(flume::WeakSender<M>),
    /// FIFO delivery task of a delayed edge: `(deadline, message)`.
    Pipe(flume::Sender<(Instant, M)>),
}

impl<M> Sink<M> {
    fn again(&self) -> Self {
        match self {
            Sink::Strong(s) => Sink::Strong(s.clone()),
            Sink::Weak(w) => Sink::Weak(w.clone()),
            Sink::Pipe(p) => Sink::Pipe(p.clone()),
        }
    }
}

struct OutEdge<M> {
    sink: Sink<M>,
    /// Per-message delayed delivery: each message gets its own task.
    per_message: bool,
    delay: Delay,
    /// The edge's stream: fault injection and delays.
    rng: ChaCha8Rng,
    last: Instant,
}

/// What every actor task shares.
struct Shared {
    topo: Topology,
    names: Vec<String>,
    faults: Faults,
    idle: Duration,
    /// Real time of this run's start and the local-clock origin it maps to.
    start: Instant,
    offset_ms: f64,
    /// Messages lost so far (for the stall report).
    lost: std::sync::atomic::AtomicU64,
}

impl Shared {
    /// Milliseconds on the network's clock (continuous across runs).
    fn ms(&self, t: Instant) -> f64 {
        self.offset_ms + t.duration_since(self.start).as_secs_f64() * 1e3
    }
    fn instant(&self, ms: f64) -> Instant {
        self.start + Duration::from_secs_f64(((ms - self.offset_ms) / 1e3).clamp(0.0, 1e9))
    }
}

/// An actor's outgoing edges, by edge index (`None`: not its own).
type OutEdges<M> = Vec<Option<OutEdge<Envelope<M>>>>;

type TaskResult<A> = Result<(A, ActorStats, Vec<EdgeStats>), RuntimeError>;
type TaskOutput<A> = (usize, TaskResult<A>);
type ActorFuture<A> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Option<TaskOutput<A>>> + Send>>;
/// Actors run by one task or thread (`None`: ended).
type Group<A> = Vec<Option<ActorFuture<A>>>;

/// The waker a group of actors polls its members with: a wake-up during a
/// pass (a member sending to another) only asks for another pass; one
/// while the group waits wakes the group's task.
struct GroupWaker {
    woken: AtomicBool,
    polling: AtomicBool,
    outer: std::sync::Mutex<Option<std::task::Waker>>,
}

impl std::task::Wake for GroupWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::SeqCst);
        if !self.polling.load(Ordering::SeqCst)
            && let Some(w) = self
                .outer
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_ref()
        {
            w.wake_by_ref();
        }
    }
}

/// Set when an actor failed: every group stops (the others would only
/// wait for messages that will not come, until the idle timeout).
#[derive(Default)]
struct Abort {
    raised: AtomicBool,
    groups: std::sync::Mutex<Vec<std::task::Waker>>,
}

impl Abort {
    fn watch(&self, waker: std::task::Waker) {
        self.groups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(waker);
    }
    fn raise(&self) {
        self.raised.store(true, Ordering::SeqCst);
        for w in self.groups.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            w.wake_by_ref();
        }
    }
}

/// Wakes the thread that `spin_block_on` runs on.
struct ThreadWaker {
    woken: AtomicBool,
    thread: std::thread::Thread,
}

impl std::task::Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::SeqCst);
        self.thread.unpark();
    }
}

/// How long a group's thread spins for news before it sleeps (≈ 0.2 ms:
/// the wait for another shard at the update, the harness between batches).
const SPIN_ROUNDS: u32 = 1 << 16;

/// Runs `f` to completion on this thread (inside a tokio runtime's context,
/// whose workers drive the timers): polls, then spins on the waker's flag,
/// then sleeps until woken. Returns the output and the time spent waiting.
fn spin_block_on<F: std::future::Future>(f: F) -> (F::Output, Duration) {
    let mut f = std::pin::pin!(f);
    let me = Arc::new(ThreadWaker {
        woken: AtomicBool::new(false),
        thread: std::thread::current(),
    });
    let waker = std::task::Waker::from(me.clone());
    let mut cx = std::task::Context::from_waker(&waker);
    let mut waited = Duration::ZERO;
    loop {
        if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return (v, waited);
        }
        if me.woken.swap(false, Ordering::SeqCst) {
            continue;
        }
        let since = std::time::Instant::now();
        let mut spins = 0u32;
        while !me.woken.swap(false, Ordering::SeqCst) {
            if spins < SPIN_ROUNDS {
                std::hint::spin_loop();
                spins += 1;
            } else {
                std::thread::park();
            }
        }
        waited += since.elapsed();
    }
}

/// Passes over a group's members before its task yields to the scheduler
/// even though members keep waking each other (fairness to other tasks).
const MAX_PASSES: u32 = 4096;

/// Runs several actors in one task: every pass polls those still running,
/// and passes repeat while a member woke another, so messages inside the
/// group are handed over without a trip through the scheduler (a poll
/// without news is cheap: the actor finds its inboxes empty). Ends early on
/// a fatal error, which the driver then spreads.
async fn together<A: Actor>(mut actors: Group<A>, abort: Arc<Abort>) -> Vec<TaskOutput<A>> {
    let mut outputs = Vec::with_capacity(actors.len());
    let group = Arc::new(GroupWaker {
        woken: AtomicBool::new(false),
        polling: AtomicBool::new(false),
        outer: std::sync::Mutex::new(None),
    });
    let inner = std::task::Waker::from(group.clone());
    abort.watch(inner.clone());
    std::future::poll_fn(|cx| {
        {
            let mut outer = group.outer.lock().unwrap_or_else(|e| e.into_inner());
            if !outer.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *outer = Some(cx.waker().clone());
            }
        }
        let mut inner_cx = std::task::Context::from_waker(&inner);
        for _ in 0..MAX_PASSES {
            if abort.raised.load(Ordering::SeqCst) {
                return std::task::Poll::Ready(());
            }
            group.polling.store(true, Ordering::SeqCst);
            group.woken.store(false, Ordering::SeqCst);
            let mut running = false;
            for slot in actors.iter_mut() {
                let Some(f) = slot else {
                    continue;
                };
                match f.as_mut().poll(&mut inner_cx) {
                    std::task::Poll::Ready(out) => {
                        *slot = None;
                        if let Some(out) = out {
                            let fatal = matches!(&out.1, Err(e) if !matches!(e, RuntimeError::Stalled { .. }));
                            outputs.push(out);
                            if fatal {
                                abort.raise();
                                return std::task::Poll::Ready(());
                            }
                        }
                    }
                    std::task::Poll::Pending => running = true,
                }
            }
            group.polling.store(false, Ordering::SeqCst);
            if !running {
                return std::task::Poll::Ready(());
            }
            if !group.woken.load(Ordering::SeqCst) {
                return std::task::Poll::Pending;
            }
        }
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    })
    .await;
    outputs
}

/// A network run on a persistent tokio runtime.
pub struct WallDriver<A: Actor> {
    pub actors: Vec<A>,
    topo: Topology,
    timing: Timing,
    pub opts: WallOptions,
    rt: tokio::runtime::Runtime,
    pub stats: Stats,
    runs: u64,
    /// Local-clock milliseconds elapsed in earlier runs.
    clock_ms: f64,
    /// Actors that share one task (by group number; empty: a task each,
    /// or one group of all when there is one worker).
    homes: Vec<usize>,
    workers: usize,
    /// Per group, the seconds its thread worked in the last run (not
    /// waiting for another group); empty unless the groups ran side by
    /// side on threads of their own.
    group_busy: Vec<f64>,
}

/// Starts (and stops) `n` threads at once, so a process limit becomes a
/// clean error before tokio, which panics when it cannot spawn a worker.
fn check_threads(workers: usize) -> Result<(), RuntimeError> {
    // The workers and the thread that blocks on the runtime.
    let n = workers + 1;
    let gate = Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
    let mut handles = Vec::with_capacity(n);
    let mut failure = None;
    for _ in 0..n {
        let g = gate.clone();
        let spawned = std::thread::Builder::new()
            .stack_size(64 * 1024)
            .spawn(move || {
                let (lock, cv) = &*g;
                let mut open = lock.lock().unwrap_or_else(|e| e.into_inner());
                while !*open {
                    open = cv.wait(open).unwrap_or_else(|e| e.into_inner());
                }
            });
        match spawned {
            Ok(h) => handles.push(h),
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    *gate.0.lock().unwrap_or_else(|e| e.into_inner()) = true;
    gate.1.notify_all();
    let started = handles.len();
    for h in handles {
        let _ = h.join();
    }
    match failure {
        None => Ok(()),
        Some(e) => Err(RuntimeError::Setup(format!(
            "cannot start {workers} worker threads (runtime.workers; the system allowed {} more threads): {e}; lower runtime.workers (0 = one per core)",
            started.saturating_sub(1)
        ))),
    }
}

impl<A: Actor> WallDriver<A> {
    pub fn new(
        actors: Vec<A>,
        topo: Topology,
        timing: Timing,
        opts: WallOptions,
    ) -> Result<Self, RuntimeError> {
        let workers = if opts.workers == 0 {
            std::thread::available_parallelism().map_or(2, |n| n.get())
        } else {
            opts.workers
        };
        check_threads(workers)?;
        let built = catch_unwind(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(workers)
                .on_thread_start(move || crate::nn::linalg::limit_threads_here(opts.rule_threads))
                .max_blocking_threads(1)
                .enable_time()
                .build()
        });
        let rt = match built {
            Ok(Ok(rt)) => rt,
            Ok(Err(e)) => {
                return Err(RuntimeError::Setup(format!(
                    "cannot start the tokio runtime with {workers} workers (runtime.workers): {e}"
                )));
            }
            Err(p) => {
                return Err(RuntimeError::Setup(format!(
                    "cannot start the tokio runtime with {workers} workers (runtime.workers): {}",
                    panic_message(p.as_ref())
                )));
            }
        };
        let names = actors.iter().map(|a| a.name()).collect();
        Ok(Self {
            stats: Stats::new(names, &topo),
            actors,
            topo,
            timing,
            opts,
            rt,
            runs: 0,
            clock_ms: 0.0,
            homes: Vec::new(),
            workers,
            group_busy: Vec::new(),
        })
    }

    /// Runs the actors with the same `homes[i]` as one group (the shards
    /// of a network, or the same slice of every layer), so they hand
    /// messages to each other without waking another thread; the groups run
    /// side by side on threads of their own (tokio keeps a woken task on
    /// the waker's worker, which would let the chains of separate tasks
    /// pile up on one worker while the other idles).
    pub fn place_together(&mut self, homes: Vec<usize>) {
        debug_assert!(homes.is_empty() || homes.len() == self.actors.len());
        self.homes = homes;
    }

    /// Per group of `place_together` (by group number), the seconds its
    /// thread worked in the last run — from its start to its end, less the
    /// time it waited for news from another group. Empty unless the groups
    /// ran side by side on threads of their own.
    pub fn group_busy(&self) -> &[f64] {
        &self.group_busy
    }

    /// Runs until every actor is done; returns the wall seconds it took. On an
    /// error the actors are lost (the network's state is undefined).
    pub fn run(&mut self) -> Result<f64, RuntimeError> {
        let n = self.actors.len();
        let n_edges = self.topo.len();
        let cap = self.opts.capacity;
        let (mut fwd_tx, mut fwd_rx, mut bwd_tx, mut bwd_rx) = (vec![], vec![], vec![], vec![]);
        for _ in 0..n {
            let (tx, rx) = flume::bounded::<Envelope<A::Msg>>(cap);
            fwd_tx.push(tx);
            fwd_rx.push(Some(rx));
            let (tx, rx) = flume::bounded::<Envelope<A::Msg>>(cap);
            bwd_tx.push(tx);
            bwd_rx.push(Some(rx));
        }
        let run_seed = self.timing.seed ^ self.runs.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        self.runs += 1;
        let names: Vec<String> = self.actors.iter().map(|a| a.name()).collect();
        let actors = std::mem::take(&mut self.actors);
        let timing = &self.timing;
        let topo = &self.topo;
        let offset_ms = self.clock_ms;
        let idle = self.opts.idle_timeout;

        let start = Instant::now();
        let shared = Arc::new(Shared {
            topo: topo.clone(),
            names: names.clone(),
            faults: timing.faults(),
            idle,
            start,
            offset_ms,
            lost: Default::default(),
        });
        let mut group_busy = Vec::new();
        let (done, errors, took) = self.rt.block_on(async {
            let mut set = tokio::task::JoinSet::new();
            let mut outs: Vec<OutEdges<A::Msg>> = (0..n)
                .map(|_| (0..n_edges).map(|_| None).collect())
                .collect();
            for (e, edge) in topo.edges().iter().enumerate() {
                let direct = match edge.port {
                    Port::Forward => Sink::Strong(fwd_tx[edge.to].clone()),
                    Port::Backward => Sink::Weak(bwd_tx[edge.to].downgrade()),
                };
                let delay = timing.delay(edge.direction).clone();
                let fifo_delayed = !delay.is_zero() && timing.delivery == Delivery::Fifo;
                let sink = if fifo_delayed {
                    let (tx, rx) = flume::bounded::<(Instant, Envelope<A::Msg>)>(cap);
                    set.spawn(async move {
                        pipe(rx, direct).await;
                        Vec::new()
                    });
                    Sink::Pipe(tx)
                } else {
                    direct
                };
                outs[edge.from][e] = Some(OutEdge {
                    sink,
                    per_message: !delay.is_zero() && !fifo_delayed,
                    delay,
                    rng: stream(run_seed, 2, e as u64),
                    last: start,
                });
            }
            drop(fwd_tx);
            // One worker: all actors in one group on this thread.
            let homes = if self.homes.is_empty() && self.workers == 1 {
                vec![0; n]
            } else {
                self.homes.clone()
            };
            let mut grouped: Vec<Group<A>> = Vec::new();
            for (i, (actor, out)) in actors.into_iter().zip(outs).enumerate() {
                let task = actor_task(ActorTask {
                    i,
                    actor,
                    fwd_rx: fwd_rx[i].take().expect("once"),
                    bwd_rx: bwd_rx[i].take().expect("once"),
                    own_bwd: bwd_tx[i].clone(),
                    outs: out,
                    clock: timing.clocks[i].clone(),
                    jitter_rng: stream(run_seed, 3, i as u64),
                    shared: shared.clone(),
                });
                match homes.get(i) {
                    Some(&h) => {
                        if grouped.len() <= h {
                            grouped.resize_with(h + 1, Vec::new);
                        }
                        grouped[h].push(Some(Box::pin(task)));
                    }
                    None => {
                        set.spawn(async move { task.await.into_iter().collect::<Vec<_>>() });
                    }
                }
            }
            drop(bwd_tx);
            let mut done: Vec<Option<TaskOutput<A>>> = (0..n).map(|_| None).collect();
            let mut errors = Vec::new();
            let mut returned = 0;
            grouped.retain(|g| !g.is_empty());
            let abort = Arc::new(Abort::default());
            // The groups run on threads of their own, which spin a while
            // before they sleep: a tokio worker parks the moment it has
            // nothing to do and takes ≈ 0.5 ms to wake, once per batch and
            // at every wait for another group.
            let ran = match grouped.len() {
                0 => None,
                1 => {
                    let group = grouped.pop().expect("one");
                    Some(vec![spin_block_on(together::<A>(group, abort.clone())).0])
                }
                k => {
                    let slots: Vec<std::sync::Mutex<Option<Group<A>>>> = grouped
                        .drain(..)
                        .map(|g| std::sync::Mutex::new(Some(g)))
                        .collect();
                    let results: Vec<std::sync::Mutex<(Vec<TaskOutput<A>>, f64)>> = (0..k)
                        .map(|_| std::sync::Mutex::new((Vec::new(), 0.0)))
                        .collect();
                    let handle = tokio::runtime::Handle::current();
                    let side_by_side = crate::nn::team::run_side_by_side(k, &|j| {
                        let _runtime = handle.enter();
                        let group = slots[j].lock().unwrap_or_else(|e| e.into_inner()).take();
                        if let Some(group) = group {
                            let began = std::time::Instant::now();
                            let (out, waited) = spin_block_on(together::<A>(group, abort.clone()));
                            let busy = began.elapsed().saturating_sub(waited).as_secs_f64();
                            *results[j].lock().unwrap_or_else(|e| e.into_inner()) = (out, busy);
                        }
                    });
                    if side_by_side {
                        let (outs, busy): (Vec<_>, Vec<_>) = results
                            .into_iter()
                            .map(|r| r.into_inner().unwrap_or_else(|e| e.into_inner()))
                            .unzip();
                        group_busy = busy;
                        Some(outs)
                    } else {
                        // Fewer threads than groups: the groups become tasks.
                        for slot in slots {
                            if let Some(group) =
                                slot.into_inner().unwrap_or_else(|e| e.into_inner())
                            {
                                set.spawn(tokio::task::unconstrained(together::<A>(
                                    group,
                                    abort.clone(),
                                )));
                            }
                        }
                        None
                    }
                }
            };
            let mut outputs: Vec<TaskOutput<A>> = ran.into_iter().flatten().flatten().collect();
            loop {
                let (ended, fatal) = record(outputs, &mut done, &mut errors);
                returned += ended;
                if fatal {
                    abort.raise();
                    set.abort_all();
                }
                if returned == n {
                    // Every actor has ended: delivery tasks still sleeping
                    // on long delays have nobody left to deliver to.
                    set.abort_all();
                }
                let Some(res) = set.join_next().await else {
                    break;
                };
                outputs = match res {
                    Ok(outputs) => outputs,
                    Err(e) if e.is_cancelled() => Vec::new(),
                    Err(e) => {
                        errors.push(RuntimeError::Setup(format!("a task failed: {e}")));
                        Vec::new()
                    }
                };
            }
            (done, errors, start.elapsed())
        });
        self.clock_ms += took.as_secs_f64() * 1e3;
        self.group_busy = group_busy;
        if !errors.is_empty() {
            // A panic or a bad edge first; otherwise every stalled actor in one report.
            let mut waiting = Vec::new();
            let mut lost = shared.lost.load(std::sync::atomic::Ordering::Relaxed);
            for e in errors {
                match e {
                    RuntimeError::Stalled {
                        waiting: w,
                        lost: l,
                        ..
                    } => {
                        waiting.extend(w);
                        lost = lost.max(l);
                    }
                    other => return Err(other),
                }
            }
            return Err(RuntimeError::Stalled {
                waited: format!("{} ms", idle.as_millis()),
                bound: format!("runtime.idle_timeout_ms = {}", idle.as_millis()),
                waiting,
                lost,
            });
        }
        let mut run_stats = Stats::new(names, topo);
        for (i, slot) in done.into_iter().enumerate() {
            let Some((_, Ok((actor, astats, estats)))) = slot else {
                return Err(RuntimeError::Setup(format!("actor {i} did not return")));
            };
            self.actors.push(actor);
            run_stats.actor[i] = astats;
            for (total, e) in run_stats.edge.iter_mut().zip(estats) {
                total.sent += e.sent;
                total.delivered += e.delivered;
                total.lost += e.lost;
                total.duplicated += e.duplicated;
                total.latency_sum += e.latency_sum;
            }
        }
        // Sends are counted by the sender's task and deliveries by the
        // receiver's, so what neither lost nor handled is still on its way:
        // sleeping in a delay task (aborted when the actors ended) or left in
        // the inbox of an actor that had finished.
        for e in &mut run_stats.edge {
            e.in_flight = (e.sent + e.duplicated).saturating_sub(e.lost + e.delivered);
        }
        let secs = took.as_secs_f64();
        run_stats.elapsed = secs;
        run_stats.runs = 1;
        run_stats.samples = run_stats.actor.iter().map(|a| a.progress).sum();
        self.stats.merge(&run_stats);
        Ok(secs)
    }
}

/// Files the ended actors' outputs: each returned actor into `done`, each
/// error into `errors`. Returns how many ended and whether an error is fatal
/// (anything but a stall: the other actors are then stopped).
fn record<A>(
    outputs: Vec<TaskOutput<A>>,
    done: &mut [Option<TaskOutput<A>>],
    errors: &mut Vec<RuntimeError>,
) -> (usize, bool) {
    let (ended, mut fatal) = (outputs.len(), false);
    for out in outputs {
        match out {
            (i, Ok(x)) => done[i] = Some((i, Ok(x))),
            (_, Err(e)) => {
                fatal |= !matches!(e, RuntimeError::Stalled { .. });
                errors.push(e);
            }
        }
    }
    (ended, fatal)
}

/// FIFO delivery of a delayed edge: one queue, deadlines kept in order.
async fn pipe<M>(rx: flume::Receiver<(Instant, M)>, target: Sink<M>) {
    while let Ok((deadline, msg)) = rx.recv_async().await {
        tokio::time::sleep_until(deadline).await;
        if !deliver(&target, msg).await {
            break;
        }
    }
}

async fn deliver<M>(sink: &Sink<M>, msg: M) -> bool {
    match sink {
        Sink::Strong(tx) => tx.send_async(msg).await.is_ok(),
        Sink::Weak(w) => match w.upgrade() {
            Some(tx) => tx.send_async(msg).await.is_ok(),
            None => false,
        },
        Sink::Pipe(_) => unreachable!("pipes are fed with deadlines"),
    }
}

/// Delivers `msg` at once when its edge has no delay and the inbox has
/// room (or is gone: the message would be dropped anyway), without the
/// timed asynchronous send; gives it back otherwise.
fn send_now<M>(out: &OutEdge<M>, msg: M) -> Result<(), M> {
    if !out.delay.is_zero() {
        return Err(msg);
    }
    let tried = match &out.sink {
        Sink::Strong(tx) => tx.try_send(msg),
        Sink::Weak(w) => match w.upgrade() {
            Some(tx) => tx.try_send(msg),
            None => return Ok(()),
        },
        Sink::Pipe(_) => return Err(msg),
    };
    match tried {
        Ok(()) | Err(flume::TrySendError::Disconnected(_)) => Ok(()),
        Err(flume::TrySendError::Full(msg)) => Err(msg),
    }
}

async fn send<M: Send + 'static>(out: &mut OutEdge<M>, env: M) {
    if out.delay.is_zero() {
        deliver(&out.sink, env).await;
        return;
    }
    let d = Duration::from_secs_f64(out.delay.sample(&mut out.rng) / 1e3);
    match &out.sink {
        Sink::Pipe(tx) => {
            let at = (Instant::now() + d).max(out.last);
            out.last = at;
            let _ = tx.send_async((at, env)).await;
        }
        sink => {
            debug_assert!(out.per_message);
            let target = sink.again();
            tokio::spawn(async move {
                tokio::time::sleep(d).await;
                deliver(&target, env).await;
            });
        }
    }
}

struct ActorTask<A: Actor> {
    i: ActorId,
    actor: A,
    fwd_rx: flume::Receiver<Envelope<A::Msg>>,
    bwd_rx: flume::Receiver<Envelope<A::Msg>>,
    /// Keeps the actor's own backward inbox open while it runs.
    own_bwd: flume::Sender<Envelope<A::Msg>>,
    outs: OutEdges<A::Msg>,
    clock: Clock,
    jitter_rng: ChaCha8Rng,
    shared: Arc<Shared>,
}

enum Event<M> {
    Message(Envelope<M>),
    Timer(u64),
}

fn stalled(actor: String, waiting_for: String, idle: Duration) -> RuntimeError {
    RuntimeError::Stalled {
        waited: format!("{} ms", idle.as_millis()),
        bound: format!("runtime.idle_timeout_ms = {}", idle.as_millis()),
        waiting: vec![Waiting { actor, waiting_for }],
        lost: 0,
    }
}

async fn actor_task<A: Actor>(task: ActorTask<A>) -> Option<TaskOutput<A>> {
    let ActorTask {
        i,
        mut actor,
        fwd_rx,
        bwd_rx,
        own_bwd,
        mut outs,
        clock,
        mut jitter_rng,
        shared,
    } = task;
    let sh = &*shared;
    let idle = sh.idle;
    let mut stats = ActorStats::default();
    let mut edge_stats = vec![EdgeStats::default(); sh.topo.len()];
    let mut outbox: Outbox<A::Msg> = Outbox::default();
    let name = actor.name();
    let far = sh.start + Duration::from_secs(86_400 * 365);
    let mut fwd_open = true;
    let idle_sleep = tokio::time::sleep(idle);
    tokio::pin!(idle_sleep);
    let timer_sleep = tokio::time::sleep_until(far);
    tokio::pin!(timer_sleep);
    let mut armed = far;
    let mut timers: BinaryHeap<Reverse<(Instant, u64, u64)>> = BinaryHeap::new();
    let mut timer_seq = 0u64;
    let mut last_activity = Instant::now();
    let mut pending: Option<Event<A::Msg>> = None;
    let mut first = true;
    loop {
        let wall_now = Instant::now();
        let now = clock.local(sh.ms(wall_now));
        let result = {
            let mut ctx = Ctx::new(now, &mut outbox);
            if first {
                first = false;
                catch_unwind(AssertUnwindSafe(|| actor.start(&mut ctx)))
            } else {
                match pending.take() {
                    Some(Event::Message(env)) => {
                        last_activity = wall_now;
                        let waited = (now - env.sent_at).max(0.0) / 1e3;
                        stats.handled += 1;
                        stats.queueing_sum += waited;
                        let e = &mut edge_stats[env.link.index()];
                        e.delivered += 1;
                        e.latency_sum += waited;
                        catch_unwind(AssertUnwindSafe(|| actor.handle(env, &mut ctx)))
                    }
                    Some(Event::Timer(tag)) => {
                        last_activity = wall_now;
                        stats.timers += 1;
                        catch_unwind(AssertUnwindSafe(|| actor.timer(tag, &mut ctx)))
                    }
                    None => Ok(()),
                }
            }
        };
        if let Err(payload) = result {
            return Some((
                i,
                Err(RuntimeError::ActorPanicked {
                    actor: name,
                    message: panic_message(payload.as_ref()),
                }),
            ));
        }
        for (at, tag) in outbox.timers.drain(..) {
            let jitter = clock.jitter(&mut jitter_rng);
            let deadline = sh.instant(clock.to_virtual(at) + jitter).max(wall_now);
            timer_seq += 1;
            timers.push(Reverse((deadline, timer_seq, tag)));
        }
        for msg in outbox.sends.drain(..) {
            let (edge, e) = match resolve(&sh.topo, &sh.names, i, &msg) {
                Ok(x) => x,
                Err(e) => return Some((i, Err(e))),
            };
            let out = outs[edge]
                .as_mut()
                .expect("resolved edges are the actor's own");
            let copies = dispatch(
                e,
                now,
                msg,
                sh.faults,
                &mut out.rng,
                &mut edge_stats[edge],
                &mut stats,
            );
            if copies[0].is_none() {
                sh.lost.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            for env in copies.into_iter().flatten() {
                let to = env.to;
                let Err(env) = send_now(out, env) else {
                    continue;
                };
                // A full inbox blocks the sender; bounded by the idle timeout
                // so a cycle of full channels is an error, not a hang.
                if tokio::time::timeout(idle, send(out, env)).await.is_err() {
                    return Some((
                        i,
                        Err(stalled(
                            name,
                            format!(
                                "room in the full inbox of `{}` (runtime.channel_capacity)",
                                sh.names[to]
                            ),
                            idle,
                        )),
                    ));
                }
            }
        }
        stats.progress += outbox.progress;
        outbox.progress = 0;
        outbox.progressed = false;
        // Shutdown by channel closure: an idle actor ends once nobody below
        // can send it anything more.
        if actor.is_done() && !fwd_open {
            break;
        }
        let next_timer = timers.peek().map(|Reverse((t, _, _))| *t);
        if let Some(t) = next_timer
            && t != armed
        {
            timer_sleep.as_mut().reset(t);
            armed = t;
        }
        // The idle timer is re-armed lazily (touching the timer wheel on
        // every message would cost a shared lock per message): when it fires
        // early, it is moved to `last activity + idle`. An actor waiting for
        // its own clock is not idle.
        pending = tokio::select! {
            biased;
            _ = &mut timer_sleep, if next_timer.is_some() => {
                let Reverse((_, _, tag)) = timers.pop().expect("armed");
                armed = far;
                Some(Event::Timer(tag))
            }
            m = bwd_rx.recv_async() => m.ok().map(Event::Message),
            m = fwd_rx.recv_async(), if fwd_open => match m {
                Ok(m) => Some(Event::Message(m)),
                Err(_) => { fwd_open = false; None }
            },
            _ = &mut idle_sleep, if !actor.is_done() && next_timer.is_none() => {
                if last_activity.elapsed() < idle {
                    idle_sleep.as_mut().reset(last_activity + idle);
                    None
                } else {
                    return Some((i, Err(stalled(name, actor.waiting_for(), idle))));
                }
            }
        };
    }
    drop(own_bwd);
    Some((i, Ok((actor, stats, edge_stats))))
}
