//! Message and timing statistics of a run: messages per actor and per edge,
//! lost and duplicated messages, mean delivery latency and queueing delay,
//! virtual time per sample. Accumulated across runs of the same network and
//! written as `runtime_stats.json` / `runtime_edges.csv`.

use super::actor::{Edge, Topology};
use serde_json::json;

#[derive(Clone, Debug, Default)]
pub struct EdgeStats {
    pub sent: u64,
    pub delivered: u64,
    pub lost: u64,
    pub duplicated: u64,
    /// Messages dispatched (not lost) but not handled when the run ended:
    /// still delayed, queued, or in the inbox of an actor that had finished.
    /// Every message sent is delivered, lost or in flight:
    /// `sent + duplicated = delivered + lost + in_flight`.
    pub in_flight: u64,
    /// Sum of (arrival − send) over delivered messages.
    pub latency_sum: f64,
}

#[derive(Clone, Debug, Default)]
pub struct ActorStats {
    pub handled: u64,
    pub sent: u64,
    pub timers: u64,
    /// Sum of (start of handling − arrival) over handled messages.
    pub queueing_sum: f64,
    pub busy: f64,
    /// Progress units (finished samples) reported.
    pub progress: u64,
}

#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub names: Vec<String>,
    pub edges: Vec<Edge>,
    pub edge: Vec<EdgeStats>,
    pub actor: Vec<ActorStats>,
    /// Total time the runs took (virtual time units, or wall seconds).
    pub elapsed: f64,
    /// Finished samples (batches) reported by the actors.
    pub samples: u64,
    pub runs: u64,
    pub events: u64,
}

impl Stats {
    pub fn new(names: Vec<String>, topo: &Topology) -> Self {
        Self {
            edge: vec![EdgeStats::default(); topo.len()],
            actor: vec![ActorStats::default(); names.len()],
            names,
            edges: topo.edges().to_vec(),
            ..Default::default()
        }
    }

    pub fn lost(&self) -> u64 {
        self.edge.iter().map(|e| e.lost).sum()
    }

    pub fn in_flight(&self) -> u64 {
        self.edge.iter().map(|e| e.in_flight).sum()
    }

    pub fn messages(&self) -> u64 {
        self.edge.iter().map(|e| e.sent).sum()
    }

    /// Adds another run's counts (same network).
    pub fn merge(&mut self, other: &Stats) {
        for (a, b) in self.edge.iter_mut().zip(&other.edge) {
            a.sent += b.sent;
            a.delivered += b.delivered;
            a.lost += b.lost;
            a.duplicated += b.duplicated;
            a.in_flight += b.in_flight;
            a.latency_sum += b.latency_sum;
        }
        for (a, b) in self.actor.iter_mut().zip(&other.actor) {
            a.handled += b.handled;
            a.sent += b.sent;
            a.timers += b.timers;
            a.queueing_sum += b.queueing_sum;
            a.busy += b.busy;
            a.progress += b.progress;
        }
        self.elapsed += other.elapsed;
        self.samples += other.samples;
        self.runs += other.runs;
        self.events += other.events;
    }

    /// Summary as JSON (`time_unit` names what `elapsed` counts).
    pub fn to_json(&self, time_unit: &str) -> serde_json::Value {
        let handled: u64 = self.actor.iter().map(|a| a.handled).sum();
        let queueing: f64 = self.actor.iter().map(|a| a.queueing_sum).sum();
        let delivered: u64 = self.edge.iter().map(|e| e.delivered).sum();
        let latency: f64 = self.edge.iter().map(|e| e.latency_sum).sum();
        let actors: Vec<_> = self
            .names
            .iter()
            .zip(&self.actor)
            .map(|(n, a)| {
                json!({
                    "actor": n,
                    "handled": a.handled,
                    "sent": a.sent,
                    "timers": a.timers,
                    "mean_queueing_delay": if a.handled > 0 { a.queueing_sum / a.handled as f64 } else { 0.0 },
                    "busy": a.busy,
                })
            })
            .collect();
        json!({
            "time_unit": time_unit,
            "elapsed": self.elapsed,
            "samples": self.samples,
            "runs": self.runs,
            "time_per_sample": if self.samples > 0 { self.elapsed / self.samples as f64 } else { f64::NAN },
            "messages": self.messages(),
            "messages_per_sample": if self.samples > 0 { self.messages() as f64 / self.samples as f64 } else { f64::NAN },
            "delivered": delivered,
            "lost": self.lost(),
            "duplicated": self.edge.iter().map(|e| e.duplicated).sum::<u64>(),
            "in_flight": self.in_flight(),
            "mean_latency": if delivered > 0 { latency / delivered as f64 } else { 0.0 },
            "mean_queueing_delay": if handled > 0 { queueing / handled as f64 } else { 0.0 },
            "events": self.events,
            "actors": actors,
            "edges": self.edges.iter().zip(&self.edge).map(|(edge, e)| json!({
                "from": self.names[edge.from],
                "to": self.names[edge.to],
                "direction": edge.direction.as_str(),
                "sent": e.sent,
                "delivered": e.delivered,
                "lost": e.lost,
                "duplicated": e.duplicated,
                "in_flight": e.in_flight,
                "mean_latency": if e.delivered > 0 { e.latency_sum / e.delivered as f64 } else { 0.0 },
            })).collect::<Vec<_>>(),
        })
    }

    /// One row per edge.
    pub fn edge_table(&self) -> crate::metrics::Table {
        let mut t = crate::metrics::Table::new(&[
            "from",
            "to",
            "direction",
            "sent",
            "delivered",
            "lost",
            "duplicated",
            "in_flight",
            "mean_latency",
        ]);
        for (edge, e) in self.edges.iter().zip(&self.edge) {
            t.push(vec![
                self.names[edge.from].clone(),
                self.names[edge.to].clone(),
                edge.direction.as_str().into(),
                e.sent.to_string(),
                e.delivered.to_string(),
                e.lost.to_string(),
                e.duplicated.to_string(),
                e.in_flight.to_string(),
                crate::metrics::num(if e.delivered > 0 {
                    e.latency_sum / e.delivered as f64
                } else {
                    0.0
                }),
            ]);
        }
        t
    }
}
