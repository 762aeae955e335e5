//! The scenario file: TOML schema, defaults, `--set` overrides and
//! validation. Every error names the file, the line and column, the key path
//! and what is allowed.

use crate::data::synthetic::SyntheticConfig;
use crate::nn::activation::LifParams;
use crate::nn::{ActivationKind, LossKind};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    #[serde(default = "default_name")]
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Master seed; every stream not given its own seed derives from it.
    #[serde(default)]
    pub seed: u64,
    #[serde(default)]
    pub precision: Precision,
    pub network: NetworkConfig,
    #[serde(default)]
    pub algorithm: AlgorithmConfig,
    #[serde(default)]
    pub data: DataConfig,
    #[serde(default)]
    pub training: TrainingConfig,
    #[serde(default)]
    pub output: OutputConfig,
    /// Spiking evaluation of the trained network (shadow training); absent:
    /// no spiking run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snn: Option<SnnConfig>,
    /// How the PC rules are driven: lockstep, virtual-time actors, wall-clock actors.
    #[serde(default)]
    pub runtime: RuntimeConfig,
    /// Grid of scenario keys for `pcsim sweep`: `"runtime.jitter" = [0.0, 0.1]`.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub sweep: std::collections::BTreeMap<String, Vec<toml::Value>>,
}

fn default_name() -> String {
    "scenario".into()
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Precision {
    #[default]
    F32,
    F64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkConfig {
    /// Layer sizes, input first: `[784, 256, 256, 10]`.
    pub layers: Vec<usize>,
    #[serde(default = "default_activation")]
    pub activation: ActivationKind,
    #[serde(default = "default_output")]
    pub output: LossKind,
    #[serde(default)]
    pub init: InitKind,
    /// Seed of the weight initialisation (defaults to `seed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_seed: Option<u64>,
    /// Initial bias of the hidden layers (0 by default). With `lif` /
    /// `soft_lif`, 1.0 puts the initial pre-activations at the firing
    /// threshold, as 0 does for ReLU, so few units start silent.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub hidden_bias_init: f64,
    /// Constants of the `lif` / `soft_lif` activations.
    #[serde(default)]
    pub lif: LifParams,
}

fn is_zero(v: &f64) -> bool {
    *v == 0.0
}

fn default_activation() -> ActivationKind {
    ActivationKind::Relu
}
fn default_output() -> LossKind {
    LossKind::SoftmaxCe
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InitKind {
    /// Kaiming-He normal, `std = sqrt(2 / fan_in)`, zero biases.
    #[default]
    Kaiming,
}

/// Which learning algorithm trains the network. New algorithms join here.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlgorithmKind {
    /// Synchronous backprop.
    #[default]
    Bp,
    /// Predictive coding trained with inference learning.
    Il,
    /// Zero-divergence IL: IL with the schedule that makes it equal to BP.
    Zil,
}

impl AlgorithmKind {
    pub const ALLOWED: &'static str = "bp, il, zil";
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlgorithmConfig {
    #[serde(default)]
    pub kind: AlgorithmKind,
    /// Inference (relaxation) settings of the predictive-coding algorithms.
    #[serde(default)]
    pub inference: InferenceConfig,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Feedback {
    /// The error term uses `W[l+1]ᵀ` (exact PC).
    #[default]
    Transpose,
    /// Feedback alignment: a fixed random `B[l+1]` of the same shape.
    Random,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InferenceConfig {
    /// Euler step size γ of the value-node relaxation.
    pub gamma: f64,
    /// Number of inference steps T per training batch.
    pub steps: usize,
    /// Output nudging β: 1 clamps the target; β < 1 clamps
    /// `x[L] = u[L] + β (y − u[L])` and scales the update by 1/β.
    pub beta: f64,
    pub feedback: Feedback,
    /// Inference steps used when predicting with the output free
    /// (0: the feedforward pass, which is the fixed point of that relaxation).
    pub predict_steps: usize,
}

impl Default for InferenceConfig {
    fn default() -> Self {
        Self {
            gamma: 0.1,
            steps: 20,
            beta: 1.0,
            feedback: Feedback::Transpose,
            predict_steps: 0,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DataKind {
    /// Seeded synthetic clusters generated in code (no download).
    #[default]
    Synthetic,
    /// MNIST IDX files from `data.path`.
    Mnist,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    #[serde(default)]
    pub kind: DataKind,
    /// Directory of the MNIST IDX files (raw or `.gz`).
    #[serde(default = "default_mnist_path")]
    pub path: PathBuf,
    /// Use only the first N training samples.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_subset: Option<usize>,
    /// Use only the first N test samples.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_subset: Option<usize>,
    #[serde(default)]
    pub synthetic: SyntheticConfig,
}

fn default_mnist_path() -> PathBuf {
    PathBuf::from("data/mnist")
}

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            kind: DataKind::Synthetic,
            path: default_mnist_path(),
            train_subset: None,
            test_subset: None,
            synthetic: SyntheticConfig::default(),
        }
    }
}

impl DataKind {
    pub fn name(&self) -> &'static str {
        match self {
            DataKind::Synthetic => "synthetic",
            DataKind::Mnist => "mnist",
        }
    }
}

impl DataConfig {
    /// `(input features, classes)` the data will have, known without loading it.
    pub fn shape(&self) -> (usize, usize) {
        match self.kind {
            DataKind::Mnist => (784, 10),
            DataKind::Synthetic => (self.synthetic.n_features, self.synthetic.n_classes),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainingConfig {
    pub epochs: usize,
    pub batch_size: usize,
    /// α; updates are averaged over the batch.
    pub learning_rate: f64,
    /// Heavy-ball momentum (0 = plain SGD).
    pub momentum: f64,
    /// Learning rate multiplied by this after every epoch.
    pub lr_decay: f64,
    /// Seed of the minibatch shuffling (defaults to `seed + 1`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
}

impl Default for TrainingConfig {
    fn default() -> Self {
        Self {
            epochs: 1,
            batch_size: 64,
            learning_rate: 0.1,
            momentum: 0.0,
            lr_decay: 1.0,
            seed: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutputConfig {
    /// Evaluate every N training steps (0: at the end of every epoch).
    pub eval_every: usize,
    /// Compare the applied update with BP's every N steps (0: never).
    pub equivalence_every: usize,
    /// Write SVG plots.
    pub plots: bool,
}

impl Default for OutputConfig {
    fn default() -> Self {
        Self {
            eval_every: 0,
            equivalence_every: 0,
            plots: true,
        }
    }
}

pub use crate::runtime::config::{
    DelayConfig, DelayKind, Delivery, Driver, Granularity, RuntimeConfig, Schedule, Trigger,
};

/// Shape of the synaptic kernel of a spiking network.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SynapseKind {
    /// First-order low-pass `e^{−t/τ_s}/τ_s`.
    Exponential,
    /// Alpha function `t e^{−t/τ_s}/τ_s²` (two first-order stages).
    #[default]
    Alpha,
}

/// How a spiking network's class is read from its output layer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Readout {
    /// Most output spikes; ties broken by the integrated output current.
    #[default]
    SpikeCount,
    /// Largest output current integrated over the presentation.
    Current,
}

/// `[snn]`: after training, run the trained network with LIF spikes
/// (DESIGN.md §4). Needs `network.activation = "lif"` or `"soft_lif"`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SnnConfig {
    /// Run the spiking evaluation after training.
    pub evaluate: bool,
    /// Presentation time per image in seconds.
    pub presentation_time: f64,
    /// Simulation step in seconds.
    pub dt: f64,
    pub synapse: SynapseKind,
    /// Synaptic time constant τ_s in seconds.
    pub tau_s: f64,
    pub readout: Readout,
    /// Presentation times (s) at which accuracy is also read out, each in
    /// `[dt, presentation_time]`.
    pub presentation_sweep: Vec<f64>,
    /// Evaluate only the first N test images with spikes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test_subset: Option<usize>,
    /// Seed of the Poisson input (defaults to `seed + 3`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Worker threads over images (0: all cores); results do not depend on it.
    pub threads: usize,
}

impl Default for SnnConfig {
    fn default() -> Self {
        Self {
            evaluate: true,
            presentation_time: 1.0,
            dt: 1e-3,
            synapse: SynapseKind::Alpha,
            tau_s: 1.18e-3,
            readout: Readout::SpikeCount,
            presentation_sweep: vec![0.01, 0.03, 0.1, 0.3, 1.0],
            test_subset: None,
            seed: None,
            threads: 0,
        }
    }
}

impl Scenario {
    /// Seed of the spiking evaluation's Poisson input.
    pub fn snn_seed(&self) -> u64 {
        self.snn
            .as_ref()
            .and_then(|c| c.seed)
            .unwrap_or(self.seed.wrapping_add(3))
    }

    /// Seed of the runtime's timing streams (defaults to `seed + 3`).
    pub fn runtime_seed(&self) -> u64 {
        self.runtime.seed.unwrap_or(self.seed.wrapping_add(3))
    }
    pub fn init_seed(&self) -> u64 {
        self.network.init_seed.unwrap_or(self.seed)
    }
    pub fn shuffle_seed(&self) -> u64 {
        self.training.seed.unwrap_or(self.seed.wrapping_add(1))
    }
    pub fn data_seed(&self) -> u64 {
        self.data
            .synthetic
            .seed
            .unwrap_or(self.seed.wrapping_add(2))
    }

    /// The scenario as TOML with every default filled in.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("a scenario always serialises")
    }
}

/// A scenario problem, located as precisely as the source allows.
#[derive(Debug, Clone, PartialEq)]
pub struct ScenarioError {
    pub file: PathBuf,
    /// 1-based line and column, when the problem is in the file's text.
    pub position: Option<(usize, usize)>,
    /// Dotted key path such as `training.learning_rate`.
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some((line, col)) = self.position {
            write!(f, ":{line}:{col}")?;
        }
        write!(f, ": ")?;
        if let Some(key) = &self.key {
            write!(f, "key `{key}`: ")?;
        }
        write!(f, "{}", self.message)
    }
}

impl std::error::Error for ScenarioError {}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// Byte span of a dotted key in the document, for locating semantic errors.
fn key_span(text: &str, key: &str) -> Option<std::ops::Range<usize>> {
    let doc = toml_edit::ImDocument::parse(text).ok()?;
    let mut item = doc.as_item();
    let mut span = None;
    for part in key.split('.') {
        let (k, v) = item.as_table_like()?.get_key_value(part)?;
        span = k.span().or(v.span()).or(span);
        item = v;
    }
    span
}

/// Readable explanation of a serde message, with the allowed values spelled out.
fn explain(message: &str) -> String {
    let message = message.trim().trim_end_matches('\n').to_string();
    if message.starts_with("unknown field") {
        format!("{message}; remove or rename the key")
    } else {
        message
    }
}

fn path_string(path: &serde_path_to_error::Path) -> Option<String> {
    let s = path.to_string();
    (s != "." && !s.is_empty()).then_some(s)
}

/// Parses a scenario from text. `file` is used in error messages only.
pub fn parse(text: &str, file: &Path) -> Result<Scenario, ScenarioError> {
    let de = toml::Deserializer::new(text);
    serde_path_to_error::deserialize(de).map_err(|err| {
        let key = path_string(err.path());
        let inner = err.inner();
        let position = inner.span().map(|s| line_col(text, s.start));
        ScenarioError {
            file: file.to_path_buf(),
            position,
            key,
            message: explain(inner.message()),
        }
    })
}

/// Applies `key.path=value` overrides to the scenario text and parses the
/// result. Values are TOML (`3`, `0.5`, `"relu"`, `[784, 10]`); a bare word
/// is taken as a string.
pub fn parse_with_overrides(
    text: &str,
    file: &Path,
    overrides: &[String],
) -> Result<Scenario, ScenarioError> {
    // The file alone first, so its own errors point into its text.
    let base = parse(text, file)?;
    if overrides.is_empty() {
        return Ok(base);
    }
    let mut doc: toml_edit::DocumentMut =
        text.parse()
            .map_err(|e: toml_edit::TomlError| ScenarioError {
                file: file.to_path_buf(),
                position: None,
                key: None,
                message: e.to_string(),
            })?;
    for ov in overrides {
        let err = |message: String| ScenarioError {
            file: file.to_path_buf(),
            position: None,
            key: None,
            message: format!("--set {ov}: {message}"),
        };
        let (key, value) = ov
            .split_once('=')
            .ok_or_else(|| err("expected KEY=VALUE, e.g. training.epochs=1".into()))?;
        let key = key.trim();
        let parts: Vec<&str> = key.split('.').collect();
        if parts.iter().any(|p| p.is_empty()) {
            return Err(err(format!("`{key}` is not a dotted key path")));
        }
        let value = parse_value(value.trim());
        let mut table = doc.as_table_mut() as &mut dyn toml_edit::TableLike;
        for part in &parts[..parts.len() - 1] {
            let entry = table.entry(part).or_insert(toml_edit::table());
            table = entry
                .as_table_like_mut()
                .ok_or_else(|| err(format!("`{part}` is a value, not a table")))?;
        }
        table.insert(parts[parts.len() - 1], toml_edit::value(value));
    }
    let text = doc.to_string();
    parse(&text, file).map_err(|mut e| {
        e.message = format!("{} (after applying --set overrides)", e.message);
        e.position = None;
        e
    })
}

fn parse_value(raw: &str) -> toml_edit::Value {
    match format!("v = {raw}").parse::<toml_edit::DocumentMut>() {
        Ok(doc) => doc["v"].as_value().cloned().unwrap_or_else(|| raw.into()),
        Err(_) => raw.into(),
    }
}

/// Reads, parses (with overrides) and validates a scenario file.
pub fn load(file: &Path, overrides: &[String]) -> Result<Scenario, ScenarioError> {
    let text = std::fs::read_to_string(file).map_err(|e| ScenarioError {
        file: file.to_path_buf(),
        position: None,
        key: None,
        message: format!("cannot read the scenario file: {e}"),
    })?;
    let scenario = parse_with_overrides(&text, file, overrides)?;
    validate(&scenario).map_err(|(key, message)| ScenarioError {
        file: file.to_path_buf(),
        position: key_span(&text, &key).map(|s| line_col(&text, s.start)),
        key: Some(key),
        message,
    })?;
    Ok(scenario)
}

type Invalid = (String, String);

fn check(ok: bool, key: &str, message: impl FnOnce() -> String) -> Result<(), Invalid> {
    if ok {
        Ok(())
    } else {
        Err((key.to_string(), message()))
    }
}

fn positive(value: f64, key: &str) -> Result<(), Invalid> {
    check(value.is_finite() && value > 0.0, key, || {
        format!("must be a finite number > 0, got {value}")
    })
}

/// Semantic checks: sizes that must agree, ranges of numbers.
pub fn validate(s: &Scenario) -> Result<(), Invalid> {
    let layers = &s.network.layers;
    check(layers.len() >= 2, "network.layers", || {
        format!("needs at least an input and an output size, got {layers:?}")
    })?;
    check(layers.iter().all(|&n| n > 0), "network.layers", || {
        format!("every layer needs at least one unit, got {layers:?}")
    })?;
    let (features, classes) = s.data.shape();
    check(layers[0] == features, "network.layers", || {
        format!(
            "input layer has {} units but the {} data has {features} features; set network.layers[0] = {features}",
            layers[0],
            s.data.kind.name()
        )
    })?;
    check(*layers.last().unwrap() == classes, "network.layers", || {
        format!(
            "output layer has {} units but the data has {classes} classes; make the last size {classes}",
            layers.last().unwrap()
        )
    })?;
    let lif = &s.network.lif;
    positive(lif.tau_rc, "network.lif.tau_rc")?;
    check(
        lif.tau_ref.is_finite() && lif.tau_ref >= 0.0,
        "network.lif.tau_ref",
        || format!("must be ≥ 0, got {}", lif.tau_ref),
    )?;
    positive(lif.amplitude, "network.lif.amplitude")?;
    positive(lif.smoothing, "network.lif.smoothing")?;
    check(
        s.network.hidden_bias_init.is_finite(),
        "network.hidden_bias_init",
        || {
            format!(
                "must be a finite number, got {}",
                s.network.hidden_bias_init
            )
        },
    )?;

    let t = &s.training;
    check(t.epochs >= 1, "training.epochs", || "must be ≥ 1".into())?;
    check(t.batch_size >= 1, "training.batch_size", || {
        "must be ≥ 1".into()
    })?;
    positive(t.learning_rate, "training.learning_rate")?;
    check(
        (0.0..1.0).contains(&t.momentum),
        "training.momentum",
        || format!("must be in [0, 1), got {}", t.momentum),
    )?;
    positive(t.lr_decay, "training.lr_decay")?;

    let inf = &s.algorithm.inference;
    positive(inf.gamma, "algorithm.inference.gamma")?;
    check(inf.steps >= 1, "algorithm.inference.steps", || {
        "must be ≥ 1".into()
    })?;
    check(
        inf.beta.is_finite() && inf.beta > 0.0 && inf.beta <= 1.0,
        "algorithm.inference.beta",
        || format!("must be in (0, 1], got {}", inf.beta),
    )?;
    if s.algorithm.kind == AlgorithmKind::Zil {
        check(inf.beta == 1.0, "algorithm.inference.beta", || {
            "Z-IL clamps the target (β = 1); remove the key or use kind = \"il\"".into()
        })?;
    }

    if s.data.kind == DataKind::Synthetic {
        let d = &s.data.synthetic;
        check(d.n_train >= 1, "data.synthetic.n_train", || {
            "must be ≥ 1".into()
        })?;
        check(d.n_test >= 1, "data.synthetic.n_test", || {
            "must be ≥ 1".into()
        })?;
        check(d.n_features >= 1, "data.synthetic.n_features", || {
            "must be ≥ 1".into()
        })?;
        check(
            (2..=255).contains(&d.n_classes),
            "data.synthetic.n_classes",
            || format!("must be in 2..=255, got {}", d.n_classes),
        )?;
        check(
            d.clusters_per_class >= 1,
            "data.synthetic.clusters_per_class",
            || "must be ≥ 1".into(),
        )?;
        check(
            d.noise.is_finite() && d.noise >= 0.0,
            "data.synthetic.noise",
            || format!("must be ≥ 0, got {}", d.noise),
        )?;
    }
    let zil = crate::algo::pc::rule_kind(
        s.algorithm.kind != AlgorithmKind::Bp,
        s.algorithm.kind == AlgorithmKind::Zil,
    );
    crate::algo::pc::check_inference_usage(&s.algorithm.inference, zil)?;
    crate::runtime::config::validate(&s.runtime, zil, &s.network.layers)?;
    for (key, v) in [
        ("data.train_subset", s.data.train_subset),
        ("data.test_subset", s.data.test_subset),
    ] {
        check(v != Some(0), key, || "must be ≥ 1 when given".into())?;
    }
    if let Some(snn) = &s.snn {
        validate_snn(s, snn)?;
    }
    Ok(())
}

/// Checks of the `[snn]` table.
fn validate_snn(s: &Scenario, c: &SnnConfig) -> Result<(), Invalid> {
    check(
        matches!(
            s.network.activation,
            ActivationKind::Lif | ActivationKind::SoftLif
        ),
        "network.activation",
        || {
            format!(
                "[snn] runs the network with LIF spikes, so the hidden activation must be \"lif\" or \"soft_lif\", got {:?}",
                s.network.activation
            )
        },
    )?;
    check(
        s.network.lif.tau_ref.is_finite() && s.network.lif.tau_ref > 0.0,
        "network.lif.tau_ref",
        || {
            format!(
                "[snn] codes inputs as Poisson rates x / t_ref, so t_ref must be > 0, got {}",
                s.network.lif.tau_ref
            )
        },
    )?;
    positive(c.dt, "snn.dt")?;
    check(c.dt <= 0.01, "snn.dt", || {
        format!(
            "must be ≤ 0.01 s (a LIF neuron spikes at most once per step), got {}",
            c.dt
        )
    })?;
    check(
        c.presentation_time.is_finite() && c.presentation_time >= c.dt,
        "snn.presentation_time",
        || format!("must be ≥ snn.dt ({}), got {}", c.dt, c.presentation_time),
    )?;
    check(
        c.presentation_time / c.dt <= 1e7,
        "snn.presentation_time",
        || {
            format!(
                "{} s at dt = {} is more than 10^7 steps per image",
                c.presentation_time, c.dt
            )
        },
    )?;
    positive(c.tau_s, "snn.tau_s")?;
    if let Some(t) = c
        .presentation_sweep
        .iter()
        .find(|&&t| !(t.is_finite() && t >= c.dt && t <= c.presentation_time))
    {
        return Err((
            "snn.presentation_sweep".into(),
            format!(
                "every time must lie in [snn.dt, snn.presentation_time] = [{}, {}], got {t}",
                c.dt, c.presentation_time
            ),
        ));
    }
    check(c.test_subset != Some(0), "snn.test_subset", || {
        "must be ≥ 1 when given".into()
    })?;
    Ok(())
}
