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
    /// One actor per layer (its value nodes, error nodes and `W[l]`).
    #[default]
    Layer,
    /// Every hidden layer split into `groups` slices of units, each slice one
    /// actor with its value nodes, error nodes and rows of `W[l]`.
    Groups,
    /// Every hidden layer (or each of its `groups` slices) split into a
    /// value-node actor (`x[l]`) and an error-node actor (`ε[l]`, `W[l]`), so
    /// every message runs between neighbours of the PC circuit.
    Nodes,
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
    /// Slices per hidden layer when `granularity = "groups"` or `"nodes"`.
    pub groups: usize,
    /// Copies of the network that each relax a share of the batch's rows
    /// (samples relax independently) and pool their errors for the one
    /// weight update every copy applies: data parallelism over the cores,
    /// with no messages between the copies during a relaxation.
    pub shards: usize,
    pub schedule: Schedule,
    pub trigger: Trigger,
    pub delivery: Delivery,
    /// Delay of messages travelling up (predictions, towards the output).
    pub delay_up: DelayConfig,
    /// Delay of messages travelling down (errors, towards the input).
    pub delay_down: DelayConfig,
    /// Compute time of one message handling, every actor.
    pub compute: DelayConfig,
    /// Per-actor compute time overrides, by actor name (`"layer3"`,
    /// `"layer3.1"`, `"err3"`, `"val3.1"`; see `pc::actor_names`).
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
            groups: 1,
            shards: 1,
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

/// Largest time value (delays, compute, period, jitter) accepted, in time
/// units (virtual units, or milliseconds on the wall driver).
pub const MAX_TIME: f64 = 1e9;
/// Largest log-space spread of a log-normal delay.
pub const MAX_LOG_SPREAD: f64 = 10.0;
/// Largest `runtime.workers`.
pub const MAX_WORKERS: usize = 256;
/// Largest `runtime.shards`.
pub const MAX_SHARDS: usize = 64;
/// Largest `runtime.pipeline`.
pub const MAX_PIPELINE: usize = 64;
/// Largest `runtime.channel_capacity`.
pub const MAX_CAPACITY: usize = 1 << 16;
/// Largest `runtime.idle_timeout_ms` (one day).
pub const MAX_IDLE_MS: u64 = 86_400_000;
/// Largest `runtime.watchdog`.
pub const MAX_WATCHDOG: f64 = 1e15;

fn err(key: &str, message: String) -> Result<(), Invalid> {
    Err((key.to_string(), message))
}

fn time(v: f64, key: &str, positive: bool) -> Result<(), Invalid> {
    let ok = v.is_finite() && v <= MAX_TIME && if positive { v > 0.0 } else { v >= 0.0 };
    if ok {
        return Ok(());
    }
    let lower = if positive { "> 0" } else { "≥ 0" };
    err(
        key,
        format!(
            "must be {lower} and ≤ {MAX_TIME:e} time units, got {}",
            super::watchdog::readable(v)
        ),
    )
}

fn check_delay(d: &DelayConfig, key: &str) -> Result<(), Invalid> {
    time(d.mean, &format!("{key}.mean"), false)?;
    time(d.spread, &format!("{key}.spread"), false)?;
    if d.kind != DelayKind::Fixed && d.mean == 0.0 {
        return err(
            &format!("{key}.kind"),
            format!(
                "a {:?} duration with mean 0 is no duration; give {key}.mean > 0 or use kind = \"fixed\"",
                d.kind
            )
            .to_lowercase(),
        );
    }
    if matches!(d.kind, DelayKind::Fixed | DelayKind::Exponential) && d.spread != 0.0 {
        return err(
            &format!("{key}.spread"),
            format!(
                "a {:?} duration has no spread (only uniform and lognormal ones do); remove it",
                d.kind
            )
            .to_lowercase(),
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
    if d.kind == DelayKind::Lognormal && d.spread > MAX_LOG_SPREAD {
        return err(
            &format!("{key}.spread"),
            format!(
                "the log-space σ of a log-normal delay must be ≤ {MAX_LOG_SPREAD}, got {}",
                d.spread
            ),
        );
    }
    Ok(())
}

/// Which keys of `[runtime]` a configuration uses, and why a key it does
/// not use is refused. `zil`: `None` for backprop.
fn unused_reason(r: &RuntimeConfig, zil: Option<bool>, spikes: bool, key: &str) -> Option<String> {
    let top = key
        .strip_prefix("runtime.")
        .and_then(|k| k.split('.').next())
        .unwrap_or(key);
    if spikes && r.driver == Driver::Lockstep && top != "driver" {
        return match top {
            "delay_up" | "delivery" | "loss" | "duplication" | "compute" | "seed" | "watchdog" => {
                None
            }
            _ => Some(
                "the spiking evaluation on the actors (snn.runtime = \"virtual\") times its spike edges with runtime.delay_up, delivery, loss, duplication, compute, seed and watchdog only (spikes travel up, every layer steps on its own clock); remove the key".into(),
            ),
        };
    }
    if zil.is_none() {
        return Some(
            "[runtime] drives the predictive-coding rules; algorithm.kind = \"bp\" has none (remove the key, or set algorithm.kind = \"il\" or \"zil\")".into(),
        );
    }
    let clocked = r.schedule == Schedule::Clocked;
    match (r.driver, top) {
        (_, "driver") => None,
        (Driver::Lockstep, _) => Some(
            "the lockstep driver calls the PC rules in a fixed order, with no actors or messages, and does not use it; set runtime.driver = \"virtual\" or \"wall\", or remove the key".into(),
        ),
        (_, "groups") if r.granularity == Granularity::Layer => Some(
            "layers are split only with runtime.granularity = \"groups\" or \"nodes\" (now \"layer\")".into(),
        ),
        (_, "trigger") if zil == Some(false) => {
            Some("only Z-IL has an update trigger (algorithm.kind = \"zil\")".into())
        }
        (_, "trigger") if !clocked => Some(
            "the trigger chooses between local events and the local clock of clocked actors (runtime.schedule = \"clocked\"); under the event schedule every step waits for its messages".into(),
        ),
        (_, "period" | "drift" | "jitter") if !clocked => Some(
            "only clocked actors have a local clock (runtime.schedule = \"clocked\"); remove the key or set the schedule".into(),
        ),
        (Driver::Wall, "compute" | "actor_compute") => Some(
            "has no real-time meaning: the wall driver's compute times are the real ones; use runtime.driver = \"virtual\" to simulate them, or remove the key".into(),
        ),
        (Driver::Wall, "watchdog") => Some(
            "is the virtual-time stall bound; the wall driver's is runtime.idle_timeout_ms".into(),
        ),
        (Driver::Virtual, "channel_capacity" | "idle_timeout_ms" | "workers") => Some(
            "is a setting of the wall driver (runtime.driver = \"wall\"); the virtual driver has no channels, threads or real time".into(),
        ),
        _ => None,
    }
}

/// Semantic checks of the `[runtime]` table for a network of `layers` and
/// the algorithm (`zil`: `None` for backprop, `Some(false)` IL, `Some(true)`
/// Z-IL); errors name the key. A key the chosen driver, schedule or
/// algorithm does not use is refused, so none is silently ignored.
///
/// `spikes`: the `[snn]` evaluation runs on the actors and takes its spike
/// edges' timing from the table (the keys it uses are then accepted with
/// the lockstep driver, and with backprop).
pub fn validate(
    r: &RuntimeConfig,
    zil: Option<bool>,
    spikes: bool,
    layers: &[usize],
) -> Result<(), Invalid> {
    for key in crate::algo::pc::changed_keys(r, &RuntimeConfig::default(), "runtime") {
        if let Some(reason) = unused_reason(r, zil, spikes, &key) {
            return err(&key, reason);
        }
    }
    let hidden = layers.get(1..layers.len().saturating_sub(1)).unwrap_or(&[]);
    if r.groups < 1 {
        return err("runtime.groups", "must be ≥ 1".into());
    }
    if r.groups > 1 {
        match hidden.iter().min() {
            None => {
                return err(
                    "runtime.groups",
                    format!("the network {layers:?} has no hidden layer to split into groups"),
                );
            }
            Some(&narrowest) if r.groups > narrowest => {
                return err(
                    "runtime.groups",
                    format!(
                        "{} groups need at least {} units in every hidden layer; the narrowest has {narrowest} (network.layers = {layers:?}), so runtime.groups ≤ {narrowest}",
                        r.groups, r.groups
                    ),
                );
            }
            _ => {}
        }
    }
    if !(1..=MAX_SHARDS).contains(&r.shards) {
        return err(
            "runtime.shards",
            format!("must be in 1..={MAX_SHARDS}, got {}", r.shards),
        );
    }
    if r.shards > 1 && r.schedule == Schedule::Clocked {
        return err(
            "runtime.shards",
            "the shards' weight update waits for every shard's errors, but clocked actors update on their own clock with whatever has arrived; use schedule = \"event\" or shards = 1".into(),
        );
    }
    if r.shards > 1 && r.pipeline > 1 {
        return err(
            "runtime.shards",
            "shards relax one batch at a time; use pipeline = 1 or shards = 1".into(),
        );
    }
    check_delay(&r.delay_up, "runtime.delay_up")?;
    check_delay(&r.delay_down, "runtime.delay_down")?;
    check_delay(&r.compute, "runtime.compute")?;
    if !r.actor_compute.is_empty() {
        let names = super::pc::actor_names(layers, r.granularity, r.groups, r.shards);
        for (name, d) in &r.actor_compute {
            if !names.contains(name) {
                return err(
                    &format!("runtime.actor_compute.{name}"),
                    format!(
                        "no actor is called `{name}` in this network (granularity \"{}\", {} group(s), {} shard(s)); the actors are: {}",
                        match r.granularity {
                            Granularity::Layer => "layer",
                            Granularity::Groups => "groups",
                            Granularity::Nodes => "nodes",
                        },
                        r.groups,
                        r.shards,
                        names.join(", ")
                    ),
                );
            }
            check_delay(d, &format!("runtime.actor_compute.{name}"))?;
        }
    }
    time(r.period, "runtime.period", true)?;
    if !(r.drift.is_finite() && (0.0..0.5).contains(&r.drift)) {
        return err(
            "runtime.drift",
            format!("must be in [0, 0.5), got {}", r.drift),
        );
    }
    time(r.jitter, "runtime.jitter", false)?;
    for (key, p) in [
        ("runtime.loss", r.loss),
        ("runtime.duplication", r.duplication),
    ] {
        if !(0.0..=1.0).contains(&p) {
            return err(key, format!("is a probability in [0, 1], got {p}"));
        }
    }
    if !(1..=MAX_PIPELINE).contains(&r.pipeline) {
        return err(
            "runtime.pipeline",
            format!("must be in 1..={MAX_PIPELINE}, got {}", r.pipeline),
        );
    }
    if r.pipeline > 1 {
        return err(
            "runtime.pipeline",
            "a run trains one batch at a time (each batch's update is applied before the next batch is drawn), so batches cannot overlap; pipelined batches are an API feature (`AsyncTrainer::train_batches`, see benches/runtime.rs); use pipeline = 1".into(),
        );
    }
    if r.schedule == Schedule::Clocked && r.pipeline > 1 {
        return err(
            "runtime.pipeline",
            "clocked actors present one batch per sample period; use pipeline = 1".into(),
        );
    }
    if !(1..=MAX_CAPACITY).contains(&r.channel_capacity) {
        return err(
            "runtime.channel_capacity",
            format!("must be in 1..={MAX_CAPACITY}, got {}", r.channel_capacity),
        );
    }
    if !(r.watchdog.is_finite() && r.watchdog > 0.0 && r.watchdog <= MAX_WATCHDOG) {
        return err(
            "runtime.watchdog",
            format!(
                "must be > 0 and ≤ {MAX_WATCHDOG:e} virtual time units, got {}",
                super::watchdog::readable(r.watchdog)
            ),
        );
    }
    if !(1..=MAX_IDLE_MS).contains(&r.idle_timeout_ms) {
        return err(
            "runtime.idle_timeout_ms",
            format!(
                "must be in 1..={MAX_IDLE_MS} (one day), got {}",
                r.idle_timeout_ms
            ),
        );
    }
    if r.workers > MAX_WORKERS {
        return err(
            "runtime.workers",
            format!(
                "must be ≤ {MAX_WORKERS} (0 = one per core), got {}",
                r.workers
            ),
        );
    }
    Ok(())
}
