//! The `Actor` trait: a plain state machine. The drivers call `handle` with
//! one message at a time and `timer` when a local-clock timer fires; the actor
//! answers only by putting messages and timers into its `Ctx` (no `.await`,
//! no shared state). Messages carry the sample/batch id, the inference tick
//! and the sender's local time; payloads are moved, never cloned to send.

use std::any::Any;

/// Index of an actor in its network.
pub type ActorId = usize;

/// Which inbox a message goes to. Forward edges carry predictions up (towards
/// the output), backward edges carry errors down (towards the input).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Port {
    Forward,
    Backward,
}

impl Port {
    pub fn as_str(self) -> &'static str {
        match self {
            Port::Forward => "up",
            Port::Backward => "down",
        }
    }
}

/// A message in flight.
#[derive(Clone, Debug)]
pub struct Envelope<M> {
    pub from: ActorId,
    pub to: ActorId,
    pub port: Port,
    /// Sample (batch) id, so an actor tells a new sample from an old one.
    pub sample: u64,
    /// Inference step the payload belongs to.
    pub tick: u32,
    /// The sender's local time when it sent the message.
    pub sent_at: f64,
    pub payload: M,
}

/// What one handler invocation produced; reused by the drivers, so handling
/// does not allocate once the buffers have grown.
#[derive(Debug)]
pub struct Outbox<M> {
    pub(crate) sends: Vec<Envelope<M>>,
    /// `(local time, tag)` of timers to fire.
    pub(crate) timers: Vec<(f64, u64)>,
    /// Units of progress (finished samples) reported by this handler.
    pub(crate) progress: u64,
    pub(crate) progressed: bool,
}

impl<M> Default for Outbox<M> {
    fn default() -> Self {
        Self {
            sends: Vec::new(),
            timers: Vec::new(),
            progress: 0,
            progressed: false,
        }
    }
}

/// The actor's view of the world while it handles one event.
pub struct Ctx<'a, M> {
    pub(crate) me: ActorId,
    pub(crate) now: f64,
    pub(crate) out: &'a mut Outbox<M>,
}

impl<'a, M> Ctx<'a, M> {
    pub fn new(me: ActorId, now: f64, out: &'a mut Outbox<M>) -> Self {
        Self { me, now, out }
    }

    /// This actor's id.
    pub fn me(&self) -> ActorId {
        self.me
    }

    /// The actor's local time (its own clock, with its drift).
    pub fn now(&self) -> f64 {
        self.now
    }

    /// Sends `payload` (moved) along the declared edge `(me, to, port)`.
    pub fn send(&mut self, to: ActorId, port: Port, sample: u64, tick: u32, payload: M) {
        self.out.sends.push(Envelope {
            from: self.me,
            to,
            port,
            sample,
            tick,
            sent_at: self.now,
            payload,
        });
    }

    /// Asks for `timer(tag)` at local time `at` (drivers add the clock's jitter).
    pub fn timer_at(&mut self, at: f64, tag: u64) {
        self.out.timers.push((at, tag));
    }

    /// Reports progress (e.g. a finished sample) to the watchdog.
    pub fn progress(&mut self, units: u64) {
        self.out.progress += units;
        self.out.progressed = true;
    }
}

/// A state machine driven by messages and local timers.
pub trait Actor: Send + 'static {
    /// The payload type of the messages of this network. `Clone` is used only
    /// to duplicate messages under fault injection.
    type Msg: Send + Clone + 'static;

    /// A stable name for errors and statistics (`"layer3"`).
    fn name(&self) -> String;

    /// Called once before any message.
    fn start(&mut self, _ctx: &mut Ctx<Self::Msg>) {}

    /// One incoming message.
    fn handle(&mut self, env: Envelope<Self::Msg>, ctx: &mut Ctx<Self::Msg>);

    /// A timer requested with `Ctx::timer_at` fired.
    fn timer(&mut self, _tag: u64, _ctx: &mut Ctx<Self::Msg>) {}

    /// True when the actor has nothing left to do in this run.
    fn is_done(&self) -> bool;

    /// What the actor is waiting for, for the watchdog's error message.
    fn waiting_for(&self) -> String;

    /// Access to the concrete state after a run (weights, updates).
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

/// The declared edges of a network: an actor may send only along them.
#[derive(Clone, Debug, Default)]
pub struct Topology {
    /// `(from, to, port)`, one entry per edge.
    pub edges: Vec<(ActorId, ActorId, Port)>,
    lookup: std::collections::HashMap<(ActorId, ActorId, Port), usize>,
}

impl Topology {
    pub fn new() -> Self {
        Self::default()
    }

    /// Declares an edge (idempotent) and returns its index.
    pub fn add(&mut self, from: ActorId, to: ActorId, port: Port) -> usize {
        let n = self.edges.len();
        *self.lookup.entry((from, to, port)).or_insert_with(|| {
            self.edges.push((from, to, port));
            n
        })
    }

    pub fn edge(&self, from: ActorId, to: ActorId, port: Port) -> Option<usize> {
        self.lookup.get(&(from, to, port)).copied()
    }
}
