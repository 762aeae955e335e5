//! The actor runtime (DESIGN.md §3): every layer — or every group of value
//! nodes and of error nodes — is an actor, a plain state machine that owns
//! its state and exchanges only local messages. One `Actor` trait, two
//! drivers behind one interface: `virtual_time` (deterministic discrete-event
//! simulation) and `wall` (tokio tasks over bounded flume channels), which
//! share the outbox routing (`route`). `spike` is the spike message (the
//! neurons that fired in a step, signed for signed codes) that spiking
//! actors send — the drivers are generic over the payload, so spikes get the
//! same timing and fault models as graded messages. `pc` holds the
//! predictive-coding actors that drive the PC rules, `trainer` the `Trainer`
//! that lets `experiment` run asynchronous IL / Z-IL like any other
//! algorithm; the spiking network's actors live in `snn::actors`.

pub mod actor;
pub mod config;
pub mod pc;
pub mod route;
pub mod spc;
pub mod spike;
pub mod stats;
pub mod timing;
pub mod trainer;
pub mod virtual_time;
pub mod wall;
pub mod watchdog;

pub use actor::{Actor, ActorId, Ctx, Direction, Envelope, Link, Port, Topology};
pub use spike::Spikes;
pub use stats::Stats;
pub use timing::Timing;
pub use virtual_time::VirtualDriver;
pub use wall::{WallDriver, WallOptions};
pub use watchdog::{RuntimeError, Waiting};

/// Either driver, behind one interface.
pub enum Driver<A: Actor> {
    Virtual(VirtualDriver<A>),
    Wall(WallDriver<A>),
}

impl<A: Actor> Driver<A> {
    /// Runs the network until every actor is done.
    pub fn run(&mut self) -> Result<f64, RuntimeError> {
        match self {
            Driver::Virtual(d) => d.run(),
            Driver::Wall(d) => d.run(),
        }
    }
    pub(crate) fn actors_mut(&mut self) -> &mut Vec<A> {
        match self {
            Driver::Virtual(d) => &mut d.actors,
            Driver::Wall(d) => &mut d.actors,
        }
    }
    pub fn stats(&self) -> &Stats {
        match self {
            Driver::Virtual(d) => &d.stats,
            Driver::Wall(d) => &d.stats,
        }
    }
    pub fn stats_mut(&mut self) -> &mut Stats {
        match self {
            Driver::Virtual(d) => &mut d.stats,
            Driver::Wall(d) => &mut d.stats,
        }
    }
    /// `"virtual time units"` or `"seconds"`.
    pub fn time_unit(&self) -> &'static str {
        match self {
            Driver::Virtual(_) => "virtual time units",
            Driver::Wall(_) => "seconds",
        }
    }
}
