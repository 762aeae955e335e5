//! The wall-clock driver: every actor an async task on a multi-threaded
//! tokio runtime, messages over bounded flume channels (DESIGN.md §3 pitfalls):
//! separate forward and backward inboxes read in a fixed order (`biased;`
//! select, backward first so old samples finish before new ones start);
//! shutdown by channel closure (forward edges hold `Sender`s, backward edges
//! `WeakSender`s, so closure cascades from the input); a per-actor idle
//! timeout turns a lost message into a watchdog error; a panicking actor ends
//! the run with an error naming it. Delays are milliseconds of real time:
//! FIFO edges get one delivery task per edge, per-message delivery one task
//! per message. Compute time is the real compute time (not simulated).

use super::actor::{Actor, Ctx, Envelope, Outbox, Port, Topology};
use super::config::Delivery;
use super::stats::{ActorStats, EdgeStats, Stats};
use super::timing::{Delay, Timing, stream};
use super::watchdog::{RuntimeError, Waiting, panic_message};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Duration;
use tokio::time::Instant;

/// Options of the wall runtime.
#[derive(Clone, Debug)]
pub struct WallOptions {
    /// Worker threads (0: available cores).
    pub workers: usize,
    pub capacity: usize,
    pub idle_timeout: Duration,
}

enum Link<M> {
    Strong(flume::Sender<M>),
    Weak(flume::WeakSender<M>),
    /// FIFO delivery task of a delayed edge: `(deadline, message)`.
    Pipe(flume::Sender<(Instant, M)>),
}

struct OutEdge<M> {
    edge: usize,
    to: usize,
    link: Link<M>,
    /// Final target, for per-message delayed delivery.
    target: Option<Link<M>>,
    delay: Delay,
    rng: ChaCha8Rng,
    last: Instant,
    stats: EdgeStats,
}

type Outgoing<M> = HashMap<(usize, Port), OutEdge<Envelope<M>>>;

type TaskOutput<A> = (
    usize,
    Result<(A, ActorStats, Vec<(usize, EdgeStats)>), RuntimeError>,
);

/// A network run on a persistent tokio runtime.
pub struct WallDriver<A: Actor> {
    pub actors: Vec<A>,
    pub topo: Topology,
    pub timing: Timing,
    pub opts: WallOptions,
    rt: tokio::runtime::Runtime,
    pub stats: Stats,
    runs: u64,
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
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_time()
            .build()
            .map_err(|e| RuntimeError::Setup(format!("cannot start the tokio runtime: {e}")))?;
        let names = actors.iter().map(|a| a.name()).collect();
        Ok(Self {
            stats: Stats::new(names, &topo),
            actors,
            topo,
            timing,
            opts,
            rt,
            runs: 0,
        })
    }

    /// Runs until every actor is done; returns the wall seconds it took. On an
    /// error the actors are lost (the network's state is undefined).
    pub fn run(&mut self) -> Result<f64, RuntimeError> {
        let n = self.actors.len();
        let cap = self.opts.capacity;
        let mut fwd = Vec::with_capacity(n);
        let mut bwd = Vec::with_capacity(n);
        for _ in 0..n {
            fwd.push(Some(flume::bounded::<Envelope<A::Msg>>(cap)));
            bwd.push(Some(flume::bounded::<Envelope<A::Msg>>(cap)));
        }
        let fwd_tx: Vec<_> = fwd
            .iter()
            .map(|c| c.as_ref().expect("new").0.clone())
            .collect();
        let bwd_tx: Vec<_> = bwd
            .iter()
            .map(|c| c.as_ref().expect("new").0.clone())
            .collect();
        let run_seed = self.timing.seed ^ self.runs.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        self.runs += 1;
        let start = Instant::now();
        let idle = self.opts.idle_timeout;
        let timing = &self.timing;
        let topo = &self.topo;
        let names: Vec<String> = self.actors.iter().map(|a| a.name()).collect();
        let actors = std::mem::take(&mut self.actors);
        let lost_counter = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));

        let outcome = self.rt.block_on(async {
            let mut set = tokio::task::JoinSet::new();
            // Per actor: its outgoing edges.
            let mut outs: Vec<Outgoing<A::Msg>> = (0..n).map(|_| HashMap::new()).collect();
            for (e, &(from, to, port)) in topo.edges.iter().enumerate() {
                let direct = match port {
                    Port::Forward => Link::Strong(fwd_tx[to].clone()),
                    Port::Backward => Link::Weak(bwd_tx[to].downgrade()),
                };
                let delay = timing.delay(port).clone();
                let (link, target) = if delay.is_zero() {
                    (direct, None)
                } else if timing.delivery == Delivery::Fifo {
                    let (tx, rx) = flume::bounded::<(Instant, Envelope<A::Msg>)>(cap);
                    set.spawn(pipe::<A>(rx, direct));
                    (Link::Pipe(tx), None)
                } else {
                    let again = match &direct {
                        Link::Strong(s) => Link::Strong(s.clone()),
                        Link::Weak(w) => Link::Weak(w.clone()),
                        Link::Pipe(_) => unreachable!("direct links are channels"),
                    };
                    (direct, Some(again))
                };
                outs[from].insert(
                    (to, port),
                    OutEdge {
                        edge: e,
                        to,
                        link,
                        target,
                        delay,
                        rng: stream(run_seed, 2, e as u64),
                        last: start,
                        stats: EdgeStats::default(),
                    },
                );
            }
            drop(fwd_tx);
            for (i, (actor, out)) in actors.into_iter().zip(outs).enumerate() {
                let (_, fwd_rx) = fwd[i].take().expect("once");
                let (own_bwd, bwd_rx) = bwd[i].take().expect("once");
                let loss = timing.loss;
                let dup = timing.duplication;
                set.spawn(actor_task(
                    i,
                    actor,
                    fwd_rx,
                    bwd_rx,
                    own_bwd,
                    out,
                    idle,
                    start,
                    (loss, dup, run_seed),
                    lost_counter.clone(),
                ));
            }
            drop(bwd_tx);
            let mut done: Vec<Option<TaskOutput<A>>> = (0..n).map(|_| None).collect();
            let mut errors = Vec::new();
            while let Some(res) = set.join_next().await {
                match res {
                    Ok(Some((i, Ok(x)))) => done[i] = Some((i, Ok(x))),
                    Ok(Some((_, Err(e)))) => {
                        let fatal = !matches!(e, RuntimeError::Stalled { .. });
                        errors.push(e);
                        if fatal {
                            set.abort_all();
                        }
                    }
                    Ok(None) => {}
                    Err(e) if e.is_cancelled() => {}
                    Err(e) => errors.push(RuntimeError::Setup(format!("a task failed: {e}"))),
                }
            }
            (done, errors)
        });
        let (done, errors) = outcome;
        if !errors.is_empty() {
            // A panic first; otherwise every stalled actor in one report.
            let mut waiting = Vec::new();
            let mut lost = lost_counter.load(std::sync::atomic::Ordering::Relaxed);
            for e in errors {
                match e {
                    RuntimeError::Stalled {
                        waiting: w,
                        lost: l,
                        ..
                    } => {
                        waiting.extend(w);
                        lost += l;
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
            for (e, s) in estats {
                run_stats.edge[e] = s;
            }
        }
        let secs = start.elapsed().as_secs_f64();
        run_stats.elapsed = secs;
        run_stats.runs = 1;
        run_stats.samples = run_stats.actor.iter().map(|a| a.progress).sum();
        self.stats.merge(&run_stats);
        Ok(secs)
    }
}

/// FIFO delivery of a delayed edge: one queue, deadlines kept in order.
async fn pipe<A: Actor>(
    rx: flume::Receiver<(Instant, Envelope<A::Msg>)>,
    target: Link<Envelope<A::Msg>>,
) -> Option<TaskOutput<A>> {
    while let Ok((deadline, msg)) = rx.recv_async().await {
        tokio::time::sleep_until(deadline).await;
        if !deliver(&target, msg).await {
            break;
        }
    }
    None
}

async fn deliver<M>(link: &Link<M>, msg: M) -> bool {
    match link {
        Link::Strong(tx) => tx.send_async(msg).await.is_ok(),
        Link::Weak(w) => match w.upgrade() {
            Some(tx) => tx.send_async(msg).await.is_ok(),
            None => false,
        },
        Link::Pipe(_) => unreachable!("pipes are fed with deadlines"),
    }
}

#[allow(clippy::too_many_arguments)]
async fn actor_task<A: Actor>(
    i: usize,
    mut actor: A,
    fwd_rx: flume::Receiver<Envelope<A::Msg>>,
    bwd_rx: flume::Receiver<Envelope<A::Msg>>,
    own_bwd: flume::Sender<Envelope<A::Msg>>,
    mut outs: Outgoing<A::Msg>,
    idle: Duration,
    start: Instant,
    (loss, dup, seed): (f64, f64, u64),
    lost_counter: std::sync::Arc<std::sync::atomic::AtomicU64>,
) -> Option<TaskOutput<A>> {
    let mut stats = ActorStats::default();
    let mut outbox: Outbox<A::Msg> = Outbox::default();
    let mut fault_rng = stream(seed, 4, i as u64);
    let name = actor.name();
    let ms = |t: Instant| t.duration_since(start).as_secs_f64() * 1e3;
    let mut fwd_open = true;
    let sleep = tokio::time::sleep(idle);
    tokio::pin!(sleep);
    let mut last_activity = Instant::now();
    let mut pending: Option<Envelope<A::Msg>> = None;
    let mut first = true;
    loop {
        let now = ms(Instant::now());
        let result = {
            let mut ctx = Ctx::new(i, now, &mut outbox);
            if first {
                first = false;
                catch_unwind(AssertUnwindSafe(|| actor.start(&mut ctx)))
            } else if let Some(env) = pending.take() {
                last_activity = Instant::now();
                stats.handled += 1;
                stats.queueing_sum += (now - env.sent_at).max(0.0);
                catch_unwind(AssertUnwindSafe(|| actor.handle(env, &mut ctx)))
            } else {
                Ok(())
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
        for env in outbox.sends.drain(..) {
            let Some(out) = outs.get_mut(&(env.to, env.port)) else {
                return Some((
                    i,
                    Err(RuntimeError::BadEdge {
                        actor: name,
                        to: env.to,
                        port: env.port.as_str(),
                    }),
                ));
            };
            out.stats.sent += 1;
            stats.sent += 1;
            if loss > 0.0 && fault_rng.r#gen::<f64>() < loss {
                out.stats.lost += 1;
                lost_counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                continue;
            }
            let copy = (dup > 0.0 && fault_rng.r#gen::<f64>() < dup).then(|| env.clone());
            for env in std::iter::once(env).chain(copy) {
                out.stats.delivered += 1;
                // A full inbox blocks the sender; bounded by the idle timeout
                // so a cycle of full channels is an error, not a hang.
                let to = out.to;
                if tokio::time::timeout(idle, send(out, env)).await.is_err() {
                    return Some((
                        i,
                        Err(RuntimeError::Stalled {
                            waited: format!("{} ms", idle.as_millis()),
                            bound: format!("runtime.idle_timeout_ms = {}", idle.as_millis()),
                            waiting: vec![Waiting {
                                actor: name,
                                waiting_for: format!(
                                    "room in the full inbox of actor #{to} (runtime.channel_capacity)"
                                ),
                            }],
                            lost: 0,
                        }),
                    ));
                }
            }
        }
        outbox.timers.clear();
        stats.progress += outbox.progress;
        outbox.progress = 0;
        outbox.progressed = false;
        // Shutdown by channel closure: an idle actor ends once nobody below
        // can send it anything more.
        if actor.is_done() && !fwd_open {
            break;
        }
        // The idle timer is re-armed lazily (touching the timer wheel on
        // every message would cost a shared lock per message): when it fires
        // early, it is moved to `last activity + idle`.
        let next = if fwd_open {
            tokio::select! {
                biased;
                m = bwd_rx.recv_async() => m.ok(),
                m = fwd_rx.recv_async() => match m {
                    Ok(m) => Some(m),
                    Err(_) => { fwd_open = false; None }
                },
                _ = &mut sleep, if !actor.is_done() => {
                    if last_activity.elapsed() < idle {
                        sleep.as_mut().reset(last_activity + idle);
                        None
                    } else {
                        return Some((i, Err(stalled(&actor, idle))));
                    }
                }
            }
        } else {
            tokio::select! {
                biased;
                m = bwd_rx.recv_async() => m.ok(),
                _ = &mut sleep => {
                    if last_activity.elapsed() < idle {
                        sleep.as_mut().reset(last_activity + idle);
                        None
                    } else {
                        return Some((i, Err(stalled(&actor, idle))));
                    }
                }
            }
        };
        pending = next;
    }
    drop(own_bwd);
    let edges = outs.into_values().map(|o| (o.edge, o.stats)).collect();
    Some((i, Ok((actor, stats, edges))))
}

fn stalled<A: Actor>(actor: &A, idle: Duration) -> RuntimeError {
    RuntimeError::Stalled {
        waited: format!("{} ms", idle.as_millis()),
        bound: format!("runtime.idle_timeout_ms = {}", idle.as_millis()),
        waiting: vec![Waiting {
            actor: actor.name(),
            waiting_for: actor.waiting_for(),
        }],
        lost: 0,
    }
}

async fn send<M: Send + 'static>(out: &mut OutEdge<M>, env: M) {
    match &out.link {
        Link::Pipe(tx) => {
            let d = out.delay.sample(&mut out.rng);
            let at = (Instant::now() + Duration::from_secs_f64(d / 1e3)).max(out.last);
            out.last = at;
            let _ = tx.send_async((at, env)).await;
        }
        link if out.target.is_some() => {
            let _ = link;
            let d = out.delay.sample(&mut out.rng);
            let target = match out.target.as_ref().expect("checked") {
                Link::Strong(s) => Link::Strong(s.clone()),
                Link::Weak(w) => Link::Weak(w.clone()),
                Link::Pipe(_) => unreachable!("targets are channels"),
            };
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs_f64(d / 1e3)).await;
                deliver(&target, env).await;
            });
        }
        link => {
            deliver(link, env).await;
        }
    }
}
