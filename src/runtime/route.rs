//! The outbox routing both drivers share: a message an actor wrote is
//! checked against the topology (the link must be one of the sender's own
//! declared edges), stamped with sender, receiver and the sender's local
//! time, counted, and put through the fault injection (loss, duplication)
//! drawn from the edge's own random stream. What the drivers do afterwards —
//! delay and deliver — is theirs.

use super::actor::{ActorId, Edge, Envelope, Outgoing, Topology};
use super::stats::{ActorStats, EdgeStats};
use super::watchdog::RuntimeError;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// Fault injection probabilities (`runtime.loss`, `runtime.duplication`).
#[derive(Clone, Copy, Debug, Default)]
pub struct Faults {
    pub loss: f64,
    pub duplication: f64,
}

/// The edge (and its index) of `msg`'s link, if it is one of `me`'s
/// declared edges; otherwise an error naming the sender and the edge's actors.
pub fn resolve<M>(
    topo: &Topology,
    names: &[String],
    me: ActorId,
    msg: &Outgoing<M>,
) -> Result<(usize, Edge), RuntimeError> {
    let name = |a: ActorId| names.get(a).cloned().unwrap_or_else(|| format!("#{a}"));
    match topo.edge(msg.link) {
        Some(e) if e.from == me => Ok((msg.link.index(), *e)),
        Some(e) => Err(RuntimeError::BadEdge {
            actor: name(me),
            from: name(e.from),
            to: name(e.to),
        }),
        None => Err(RuntimeError::BadEdge {
            actor: name(me),
            from: "?".into(),
            to: format!("edge #{}", msg.link.index()),
        }),
    }
}

/// Stamps, counts and fault-injects one message on its (resolved) edge
/// `e`: returns the envelope and a duplicate, either possibly absent.
pub fn dispatch<M: Clone>(
    e: Edge,
    sent_at: f64,
    msg: Outgoing<M>,
    faults: Faults,
    rng: &mut ChaCha8Rng,
    stats: &mut EdgeStats,
    sender: &mut ActorStats,
) -> [Option<Envelope<M>>; 2] {
    stats.sent += 1;
    sender.sent += 1;
    if faults.loss > 0.0 && rng.r#gen::<f64>() < faults.loss {
        stats.lost += 1;
        return [None, None];
    }
    let duplicate = faults.duplication > 0.0 && rng.r#gen::<f64>() < faults.duplication;
    let env = Envelope {
        from: e.from,
        to: e.to,
        link: msg.link,
        port: e.port,
        sample: msg.sample,
        tick: msg.tick,
        sent_at,
        payload: msg.payload,
    };
    if duplicate {
        stats.duplicated += 1;
        let copy = env.clone();
        [Some(env), Some(copy)]
    } else {
        [Some(env), None]
    }
}
