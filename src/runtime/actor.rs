//! The `Actor` trait — a plain state machine — and the `Topology` that
//! declares who may talk to whom. The drivers call `handle` with one message
//! at a time and `timer` when a local-clock timer fires; the actor answers
//! only by putting messages and timers into its `Ctx` (no `.await`, no shared
//! state). Locality by construction: an actor sends through `Link`s, handles
//! that only `Topology::add` makes, one per declared edge; the driver checks
//! that the link is the sender's own and stamps the sender, the receiver and
//! the sender's local time on the envelope. Payloads are moved, never cloned
//! to send.

use std::collections::HashMap;

/// Index of an actor in its network.
pub type ActorId = usize;

/// Which inbox a message goes to, and how shutdown cascades. Forward edges
/// follow the feedforward dataflow from the input (predictions up, and in
/// the `nodes` granularity an error node to its own value nodes); their
/// senders keep the receiver alive. Backward edges carry feedback (errors
/// down, a value node's step back to its error node) and are read first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Port {
    Forward,
    Backward,
}

/// The timing class of an edge: its messages get `runtime.delay_up` or
/// `runtime.delay_down`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Direction {
    /// Values and predictions, towards the output.
    Up,
    /// Errors, towards the input.
    Down,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Up => "up",
            Direction::Down => "down",
        }
    }
}

/// A handle to one declared edge. Only `Topology::add` makes them, so a
/// message on an undeclared edge cannot be expressed; a driver refuses a
/// link that belongs to another actor (`RuntimeError::BadEdge`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Link(usize);

impl Link {
    /// The edge's index in its topology.
    pub fn index(self) -> usize {
        self.0
    }
}

/// A declared edge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Edge {
    pub from: ActorId,
    pub to: ActorId,
    pub port: Port,
    pub direction: Direction,
}

/// A message in flight; the driver fills in who sent it, to whom and when.
#[derive(Clone, Debug)]
pub struct Envelope<M> {
    pub from: ActorId,
    pub to: ActorId,
    /// The edge it travels on.
    pub link: Link,
    pub port: Port,
    /// Sample (batch) id, so an actor tells a new sample from an old one.
    pub sample: u64,
    /// Inference step the payload belongs to.
    pub tick: u32,
    /// The sender's local time when the message left.
    pub sent_at: f64,
    pub payload: M,
}

/// A message as an actor writes it: a link of its own and the content.
#[derive(Debug)]
pub struct Outgoing<M> {
    pub link: Link,
    pub sample: u64,
    pub tick: u32,
    pub payload: M,
}

/// What one handler invocation produced; reused by the drivers, so handling
/// does not allocate once the buffers have grown.
#[derive(Debug)]
pub struct Outbox<M> {
    pub(crate) sends: Vec<Outgoing<M>>,
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
    now: f64,
    out: &'a mut Outbox<M>,
}

impl<'a, M> Ctx<'a, M> {
    pub fn new(now: f64, out: &'a mut Outbox<M>) -> Self {
        Self { now, out }
    }

    /// The actor's local time (its own clock, with its drift).
    pub fn now(&self) -> f64 {
        self.now
    }

    /// Sends `payload` (moved) along `link`, one of this actor's own edges.
    pub fn send(&mut self, link: Link, sample: u64, tick: u32, payload: M) {
        self.out.sends.push(Outgoing {
            link,
            sample,
            tick,
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
}

/// The declared edges of a network: the only ones anybody can send on.
#[derive(Clone, Debug, Default)]
pub struct Topology {
    edges: Vec<Edge>,
    lookup: HashMap<(ActorId, ActorId, Port), usize>,
}

impl Topology {
    pub fn new() -> Self {
        Self::default()
    }

    /// Declares the edge `from → to` (idempotent) and returns its link,
    /// which belongs to `from`.
    pub fn add(&mut self, from: ActorId, to: ActorId, port: Port, direction: Direction) -> Link {
        let n = self.edges.len();
        Link(*self.lookup.entry((from, to, port)).or_insert_with(|| {
            self.edges.push(Edge {
                from,
                to,
                port,
                direction,
            });
            n
        }))
    }

    pub fn edges(&self) -> &[Edge] {
        &self.edges
    }

    /// The edge behind a link (links come only from this topology).
    pub fn edge(&self, link: Link) -> Option<&Edge> {
        self.edges.get(link.0)
    }

    pub fn len(&self) -> usize {
        self.edges.len()
    }

    pub fn is_empty(&self) -> bool {
        self.edges.is_empty()
    }
}
