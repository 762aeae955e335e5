//! Turning a stalled or broken network into a clear error: the drivers report
//! `RuntimeError::Stalled` (no progress within the bound, with every waiting
//! actor and what it waits for) or `RuntimeError::ActorPanicked` (naming the
//! actor), never a hang.

use std::fmt;

/// A waiting actor and what it waits for.
#[derive(Clone, Debug, PartialEq)]
pub struct Waiting {
    pub actor: String,
    pub waiting_for: String,
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("{}", stalled_message(.waited, .bound, .waiting, .lost))]
    Stalled {
        /// How long the network made no progress (time units or ms).
        waited: String,
        /// The configured bound (key and value).
        bound: String,
        waiting: Vec<Waiting>,
        /// Messages lost to fault injection so far.
        lost: u64,
    },
    #[error("actor `{actor}` panicked: {message}")]
    ActorPanicked { actor: String, message: String },
    #[error(
        "actor `{actor}` sent a message on the edge `{from}` → `{to}`, which is not one of its own declared edges"
    )]
    BadEdge {
        /// The sender.
        actor: String,
        /// The edge it used.
        from: String,
        to: String,
    },
    #[error("runtime setup failed: {0}")]
    Setup(String),
}

fn stalled_message(waited: &str, bound: &str, waiting: &[Waiting], lost: &u64) -> String {
    let mut s = format!(
        "watchdog: the network made no progress for {waited} ({bound}); {} actor(s) still waiting:",
        waiting.len()
    );
    for w in waiting {
        s.push_str(&format!("\n  - {} waits for {}", w.actor, w.waiting_for));
    }
    if *lost > 0 {
        s.push_str(&format!(
            "\n  {lost} message(s) were lost (runtime.loss); a lost message stalls the event schedule"
        ));
    }
    s
}

/// A duration or bound as a person reads it: at most four significant
/// digits, scientific notation outside [1e-3, 1e6).
pub fn readable(v: f64) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    let a = v.abs();
    if a == 0.0 || (1e-3..1e6).contains(&a) {
        let s = format!("{v:.4}");
        let s = s.trim_end_matches('0').trim_end_matches('.');
        s.to_string()
    } else {
        format!("{v:.3e}")
    }
}

/// A panic payload as text.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(non-string panic payload)".to_string()
    }
}

impl fmt::Display for Waiting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} waits for {}", self.actor, self.waiting_for)
    }
}
