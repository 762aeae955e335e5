//! The `[runtime]` table of a scenario: which driver runs the PC rules
//! (lockstep reference, virtual-time actors, wall-clock actors), the network's
//! granularity, timing models per edge class and per actor, schedules, Z-IL
//! triggers, fault injection and the watchdog. Validation errors name the key.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Which driver delivers the PC rules' messages.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Driver {
    /// The synchronous reference: the rules called in a fixed order, no messages.
    #[default]
    Lockstep,
    /// Deterministic discrete-event simulation (own event queue).
    Virtual,
    /// One tokio task per actor on a multi-threaded runtime, flume channels.
    Wall,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Granularity {
    /// One actor per layer.
    #[default]
    Layer,
    /// Every layer split into `groups` value-node actors and `groups` error-node actors.
    Groups,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Schedule {
    /// An actor computes an inference step when the messages it needs have arrived.
    #[default]
    Event,
    /// An actor computes on its own local clock (period, drift, jitter) with
    /// whatever messages it has received by then.
    Clocked,
}

/// When Z-IL updates `W[l]` (the rule "at t = L − l").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// When the error wave first reaches the actor (a local event).
    #[default]
    Event,
    /// At the actor's local inference step t = L − l (its clock).
    Clock,
}

/// Delivery order on an edge.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Delivery {
    /// One queue per edge: messages arrive in the order sent (head-of-line blocking).
    #[default]
    Fifo,
    /// Every message is delayed independently and may overtake earlier ones.
    PerMessage,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DelayKind {
    /// Always `mean`.
    #[default]
    Fixed,
    /// Uniform on `[mean − spread, mean + spread]`.
    Uniform,
    /// Exponential with mean `mean`.
    Exponential,
    /// Log-normal with mean `mean` and log-space standard deviation `spread`.
    Lognormal,
}

/// A random duration in time units (virtual time units; milliseconds in the
/// wall runtime).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DelayConfig {
    pub kind: DelayKind,
    pub mean: f64,
    pub spread: f64,
}

impl Default for DelayConfig {
    fn default() -> Self {
        Self {
            kind: DelayKind::Fixed,
            mean: 0.0,
            spread: 0.0,
        }
    }
}

impl DelayConfig {
    pub fn is_zero(&self) -> bool {
        self.mean == 0.0 && (self.kind != DelayKind::Uniform || self.spread == 0.0)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeConfig {
    pub driver: Driver,
    pub granularity: Granularity,
    /// Groups per layer when `granularity = "groups"`.
    pub groups: usize,
    pub schedule: Schedule,
    pub trigger: Trigger,
    pub delivery: Delivery,
    /// Delay of messages travelling up (predictions, towards the output).
    pub delay_up: DelayConfig,
    /// Delay of messages travelling down (errors, towards the input).
    pub delay_down: DelayConfig,
    /// Compute time of one message handling, every actor.
    pub compute: DelayConfig,
    /// Per-actor compute time overrides, by actor name (`"layer3"`, `"err3.1"`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub actor_compute: BTreeMap<String, DelayConfig>,
    /// Local-clock period of one inference step (`schedule = "clocked"`).
    pub period: f64,
    /// Each actor's clock runs at rate `1 + d`, `d` uniform in `[−drift, drift]`.
    pub drift: f64,
    /// Standard deviation of the timing of every clocked step (time units).
    pub jitter: f64,
    /// Probability that a message is lost.
    pub loss: f64,
    /// Probability that a message is delivered twice.
    pub duplication: f64,
    /// Batches in flight (1: the next batch enters when the last one is
    /// finished — the setting under which the actors equal the lockstep
    /// reference; more pipelines batches through the layers, so a batch sees
    /// weights that earlier batches are still updating).
    pub pipeline: usize,
    /// Bound of each bounded channel (wall runtime).
    pub channel_capacity: usize,
    /// Watchdog: virtual time units without progress before the run is
    /// declared stalled (virtual runtime).
    pub watchdog: f64,
    /// Watchdog: milliseconds an actor may wait for a message before the run
    /// is declared stalled (wall runtime).
    pub idle_timeout_ms: u64,
    /// Worker threads of the wall runtime (0: available cores).
    pub workers: usize,
    /// Seed of the timing streams (defaults to the scenario seed + 3).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            driver: Driver::Lockstep,
            granularity: Granularity::Layer,
            groups: 2,
            schedule: Schedule::Event,
            trigger: Trigger::Event,
            delivery: Delivery::Fifo,
            delay_up: DelayConfig::default(),
            delay_down: DelayConfig::default(),
            compute: DelayConfig::default(),
            actor_compute: BTreeMap::new(),
            period: 10.0,
            drift: 0.0,
            jitter: 0.0,
            loss: 0.0,
            duplication: 0.0,
            pipeline: 1,
            channel_capacity: 64,
            watchdog: 1e6,
            idle_timeout_ms: 10_000,
            workers: 0,
            seed: None,
        }
    }
}

type Invalid = (String, String);

fn err(key: &str, message: String) -> Result<(), Invalid> {
    Err((key.to_string(), message))
}

fn check_delay(d: &DelayConfig, key: &str) -> Result<(), Invalid> {
    if !(d.mean.is_finite() && d.mean >= 0.0) {
        return err(
            &format!("{key}.mean"),
            format!("must be ≥ 0, got {}", d.mean),
        );
    }
    if !(d.spread.is_finite() && d.spread >= 0.0) {
        return err(
            &format!("{key}.spread"),
            format!("must be ≥ 0, got {}", d.spread),
        );
    }
    if d.kind == DelayKind::Uniform && d.spread > d.mean {
        return err(
            &format!("{key}.spread"),
            format!(
                "a uniform delay on [mean − spread, mean + spread] needs spread ≤ mean (got spread {} > mean {})",
                d.spread, d.mean
            ),
        );
    }
    Ok(())
}

/// Semantic checks of the `[runtime]` table; errors name the key.
pub fn validate(r: &RuntimeConfig, zil: bool) -> Result<(), Invalid> {
    let _ = zil;
    if r.granularity == Granularity::Groups && r.groups < 1 {
        return err("runtime.groups", "must be ≥ 1".into());
    }
    check_delay(&r.delay_up, "runtime.delay_up")?;
    check_delay(&r.delay_down, "runtime.delay_down")?;
    check_delay(&r.compute, "runtime.compute")?;
    for (name, d) in &r.actor_compute {
        check_delay(d, &format!("runtime.actor_compute.{name}"))?;
    }
    if !(r.period.is_finite() && r.period > 0.0) {
        return err("runtime.period", format!("must be > 0, got {}", r.period));
    }
    if !(r.drift.is_finite() && (0.0..0.5).contains(&r.drift)) {
        return err(
            "runtime.drift",
            format!("must be in [0, 0.5), got {}", r.drift),
        );
    }
    if !(r.jitter.is_finite() && r.jitter >= 0.0) {
        return err("runtime.jitter", format!("must be ≥ 0, got {}", r.jitter));
    }
    for (key, p) in [
        ("runtime.loss", r.loss),
        ("runtime.duplication", r.duplication),
    ] {
        if !(0.0..=1.0).contains(&p) {
            return err(key, format!("is a probability in [0, 1], got {p}"));
        }
    }
    if r.pipeline < 1 {
        return err("runtime.pipeline", "must be ≥ 1".into());
    }
    if r.schedule == Schedule::Clocked && r.pipeline > 1 {
        return err(
            "runtime.pipeline",
            "clocked actors present one batch per sample period; use pipeline = 1".into(),
        );
    }
    if r.channel_capacity < 1 {
        return err("runtime.channel_capacity", "must be ≥ 1".into());
    }
    if !(r.watchdog.is_finite() && r.watchdog > 0.0) {
        return err(
            "runtime.watchdog",
            format!("must be > 0, got {}", r.watchdog),
        );
    }
    if r.idle_timeout_ms == 0 {
        return err("runtime.idle_timeout_ms", "must be ≥ 1".into());
    }
    if r.driver == Driver::Wall && r.schedule == Schedule::Clocked {
        return err(
            "runtime.schedule",
            "the wall runtime runs event schedules only; use driver = \"virtual\" for clocked actors"
                .into(),
        );
    }
    Ok(())
}
