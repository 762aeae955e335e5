//! The deterministic discrete-event driver: a binary heap of events ordered
//! by (virtual time, sequence number). Delays, compute times and clock jitter
//! come from seeded streams per edge and per actor, so the same network,
//! timing and seed give bit-identical results. An actor handles one event at
//! a time; events reaching a busy actor wait (queueing delay) until it is free.

use super::actor::{Actor, ActorId, Ctx, Direction, Envelope, Outbox, Topology};
use super::config::Delivery;
use super::route::{dispatch, resolve};
use super::stats::Stats;
use super::timing::{Timing, stream};
use super::watchdog::{RuntimeError, Waiting, panic_message, readable};
use rand_chacha::ChaCha8Rng;
use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::panic::{AssertUnwindSafe, catch_unwind};

enum Kind<M> {
    Start(ActorId),
    Deliver(Envelope<M>, usize),
    Timer(ActorId, u64),
}

struct Event<M> {
    time: f64,
    seq: u64,
    /// When the event first became due (for queueing delay).
    due: f64,
    kind: Kind<M>,
}

impl<M> PartialEq for Event<M> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl<M> Eq for Event<M> {}
impl<M> PartialOrd for Event<M> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<M> Ord for Event<M> {
    /// Reversed: the heap pops the earliest (time, seq) first.
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .time
            .total_cmp(&self.time)
            .then(other.seq.cmp(&self.seq))
    }
}

/// A virtual-time network: actors, their edges, timing, and the state that
/// persists across runs (virtual clock, random streams, statistics).
pub struct VirtualDriver<A: Actor> {
    pub actors: Vec<A>,
    pub topo: Topology,
    pub timing: Timing,
    /// Watchdog bound: virtual time without progress.
    pub watchdog: f64,
    names: Vec<String>,
    now: f64,
    seq: u64,
    busy_until: Vec<f64>,
    edge_last: Vec<f64>,
    edge_rng: Vec<ChaCha8Rng>,
    actor_rng: Vec<ChaCha8Rng>,
    pub stats: Stats,
    outbox: Outbox<A::Msg>,
}

impl<A: Actor> VirtualDriver<A> {
    pub fn new(actors: Vec<A>, topo: Topology, timing: Timing, watchdog: f64) -> Self {
        let names: Vec<String> = actors.iter().map(|a| a.name()).collect();
        let n = actors.len();
        let e = topo.len();
        Self {
            busy_until: vec![0.0; n],
            edge_last: vec![0.0; e],
            edge_rng: (0..e).map(|i| stream(timing.seed, 2, i as u64)).collect(),
            actor_rng: (0..n).map(|i| stream(timing.seed, 3, i as u64)).collect(),
            stats: Stats::new(names.clone(), &topo),
            names,
            actors,
            topo,
            timing,
            watchdog,
            now: 0.0,
            seq: 0,
            outbox: Outbox::default(),
        }
    }

    /// Current virtual time.
    pub fn now(&self) -> f64 {
        self.now
    }

    fn push(
        &mut self,
        heap: &mut BinaryHeap<Event<A::Msg>>,
        time: f64,
        due: f64,
        kind: Kind<A::Msg>,
    ) {
        self.seq += 1;
        heap.push(Event {
            time,
            seq: self.seq,
            due,
            kind,
        });
    }

    /// Runs until every actor is done (calling `start` on each first).
    /// Returns the virtual time the run took.
    pub fn run(&mut self) -> Result<f64, RuntimeError> {
        let started = self.now;
        let mut heap = BinaryHeap::new();
        for a in 0..self.actors.len() {
            let t = self.now;
            self.push(&mut heap, t, t, Kind::Start(a));
        }
        let mut last_progress = self.now;
        while let Some(ev) = heap.pop() {
            if ev.time - last_progress > self.watchdog {
                // What is still queued stays counted: in flight, not dropped.
                let pending = std::iter::once(&ev).chain(heap.iter());
                for e in pending {
                    if let Kind::Deliver(_, edge) = &e.kind {
                        self.stats.edge[*edge].in_flight += 1;
                    }
                }
                return Err(self.stalled(ev.time - last_progress));
            }
            self.now = ev.time;
            let actor = match &ev.kind {
                Kind::Start(a) | Kind::Timer(a, _) => *a,
                Kind::Deliver(env, _) => env.to,
            };
            if self.busy_until[actor] > ev.time {
                // The actor is still computing: the event waits in its queue.
                let t = self.busy_until[actor];
                self.push(&mut heap, t, ev.due, ev.kind);
                continue;
            }
            self.stats.events += 1;
            let local = self.timing.clocks[actor].local(ev.time);
            let mut out = std::mem::take(&mut self.outbox);
            let a = &mut self.actors[actor];
            let result = {
                let mut ctx = Ctx::new(local, &mut out);
                match ev.kind {
                    Kind::Start(_) => catch_unwind(AssertUnwindSafe(|| a.start(&mut ctx))),
                    Kind::Timer(_, tag) => {
                        self.stats.actor[actor].timers += 1;
                        catch_unwind(AssertUnwindSafe(|| a.timer(tag, &mut ctx)))
                    }
                    Kind::Deliver(env, edge) => {
                        let st = &mut self.stats.actor[actor];
                        st.handled += 1;
                        st.queueing_sum += ev.time - ev.due;
                        self.stats.edge[edge].delivered += 1;
                        self.stats.edge[edge].latency_sum +=
                            ev.due - self.timing.clocks[env.from].to_virtual(env.sent_at);
                        catch_unwind(AssertUnwindSafe(|| a.handle(env, &mut ctx)))
                    }
                }
            };
            if let Err(payload) = result {
                return Err(RuntimeError::ActorPanicked {
                    actor: self.actors[actor].name(),
                    message: panic_message(payload.as_ref()),
                });
            }
            let compute = self.timing.compute[actor].sample(&mut self.actor_rng[actor]);
            let done_at = ev.time + compute;
            self.busy_until[actor] = done_at;
            self.stats.actor[actor].busy += compute;
            if out.progressed {
                self.stats.samples += out.progress;
                last_progress = done_at;
                out.progress = 0;
                out.progressed = false;
            }
            for (at, tag) in out.timers.drain(..) {
                let clock = &self.timing.clocks[actor];
                let jitter = clock.jitter(&mut self.actor_rng[actor]);
                let t = (clock.to_virtual(at) + jitter).max(done_at);
                self.push(&mut heap, t, t, Kind::Timer(actor, tag));
            }
            let mut sends = std::mem::take(&mut out.sends);
            let sent_at = self.timing.clocks[actor].local(done_at);
            let faults = self.timing.faults();
            for msg in sends.drain(..) {
                let (edge, e) = resolve(&self.topo, &self.names, actor, &msg)?;
                // The message leaves when the computation that produced it ends.
                let copies = dispatch(
                    e,
                    sent_at,
                    msg,
                    faults,
                    &mut self.edge_rng[edge],
                    &mut self.stats.edge[edge],
                    &mut self.stats.actor[actor],
                );
                let direction = e.direction;
                for env in copies.into_iter().flatten() {
                    let t = self.arrival(edge, direction, done_at);
                    self.push(&mut heap, t, t, Kind::Deliver(env, edge));
                }
            }
            out.sends = sends;
            self.outbox = out;
        }
        let waiting: Vec<Waiting> = self
            .actors
            .iter()
            .filter(|a| !a.is_done())
            .map(|a| Waiting {
                actor: a.name(),
                waiting_for: a.waiting_for(),
            })
            .collect();
        if !waiting.is_empty() {
            return Err(RuntimeError::Stalled {
                waited: "the rest of the run".into(),
                bound: "no events left in the virtual-time queue".into(),
                waiting,
                lost: self.stats.lost(),
            });
        }
        self.stats.runs += 1;
        let took = self.now - started;
        self.stats.elapsed += took;
        Ok(took)
    }

    fn arrival(&mut self, edge: usize, direction: Direction, sent: f64) -> f64 {
        let d = self
            .timing
            .delay(direction)
            .sample(&mut self.edge_rng[edge]);
        let mut t = sent + d;
        if self.timing.delivery == Delivery::Fifo {
            t = t.max(self.edge_last[edge]);
            self.edge_last[edge] = t;
        }
        t
    }

    fn stalled(&self, waited: f64) -> RuntimeError {
        RuntimeError::Stalled {
            waited: format!("{} virtual time units", readable(waited)),
            bound: format!("runtime.watchdog = {}", readable(self.watchdog)),
            waiting: self
                .actors
                .iter()
                .filter(|a| !a.is_done())
                .map(|a| Waiting {
                    actor: a.name(),
                    waiting_for: a.waiting_for(),
                })
                .collect(),
            lost: self.stats.lost(),
        }
    }
}
