//! The schema of a scenario file: the tables and keys, their types and
//! defaults, and the seeds derived from the master seed. Option types that
//! belong to a model (activations, losses, LIF constants, synthetic data,
//! synapses, readouts, the `[runtime]` table) are defined by their model
//! module and composed here, so no model module imports the schema.

pub use crate::algo::optim::{OptimizerKind, ScheduleKind};
use crate::algo::optim::{OptimizerOptions, TrainingKeys};
pub use crate::algo::pc::spiking::{ErrorCode, ForwardCode, InputCode, SpikingPcConfig};
use crate::data::synthetic::SyntheticConfig;
use crate::nn::activation::LifParams;
use crate::nn::{ActivationKind, LossKind};
use crate::snn::{Readout, SnnRuntime, SpikingConfig, SynapseKind};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

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
    /// Predictive coding with spikes forward and graded errors down
    /// (`[algorithm.spiking]`).
    SpikingPc,
}

impl AlgorithmKind {
    pub const ALLOWED: &'static str = "bp, il, zil, spiking_pc";
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlgorithmConfig {
    #[serde(default)]
    pub kind: AlgorithmKind,
    /// Inference (relaxation) settings of the predictive-coding algorithms.
    #[serde(default)]
    pub inference: InferenceConfig,
    /// Spike codes of `spiking_pc`; filled with its defaults when the kind
    /// is `spiking_pc` (so the resolved scenario shows them), refused for
    /// any other kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spiking: Option<SpikingPcConfig>,
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

/// How the hidden value nodes size their Euler steps
/// (`algorithm.inference.step_control`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepControl {
    /// Every step is γ (explicit Euler; unstable for large weights).
    Fixed,
    /// Each layer lowers a sample's step when its last step overshot, by the
    /// curvature it measured along it (local; equal to `fixed` until then).
    #[default]
    LocalCurvature,
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
    /// Step-size rule of the relaxation.
    pub step_control: StepControl,
}

impl Default for InferenceConfig {
    fn default() -> Self {
        Self {
            gamma: 0.1,
            steps: 20,
            beta: 1.0,
            feedback: Feedback::Transpose,
            predict_steps: 0,
            step_control: StepControl::LocalCurvature,
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
    // The optimizer and schedule keys of `algo::optim::OptimizerOptions`.
    // Written out only when given, so the resolved scenario of a plain-SGD
    // run (and a suite's check that a finished run is unchanged) stays as
    // it was before these keys existed.
    /// `sgd` (default; `momentum` applies), `adam` or `adamw`.
    #[serde(skip_serializing_if = "is_default")]
    pub optimizer: OptimizerKind,
    /// Adam's first-moment decay (default 0.9).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub beta1: Option<f64>,
    /// Adam's second-moment decay (default 0.999).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub beta2: Option<f64>,
    /// Adam's ε (default 1e-8).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eps: Option<f64>,
    /// λ: L2 term (`sgd`, `adam`) or decoupled decay (`adamw`); default 0.
    #[serde(skip_serializing_if = "is_zero")]
    pub weight_decay: f64,
    /// `step` (default: `lr_decay` once per epoch) or `cosine` (per step).
    #[serde(skip_serializing_if = "is_default")]
    pub schedule: ScheduleKind,
    /// Linear warm-up over this many steps (or `warmup_epochs`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warmup_steps: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warmup_epochs: Option<usize>,
    /// The rate the cosine schedule ends at (default 0).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_lr: Option<f64>,
}

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

impl TrainingConfig {
    /// The optimizer and schedule keys, for `algo::optim`.
    pub fn optimizer_options(&self) -> OptimizerOptions {
        OptimizerOptions {
            optimizer: self.optimizer,
            beta1: self.beta1,
            beta2: self.beta2,
            eps: self.eps,
            weight_decay: self.weight_decay,
            schedule: self.schedule,
            warmup_steps: self.warmup_steps,
            warmup_epochs: self.warmup_epochs,
            min_lr: self.min_lr,
        }
    }

    /// The keys the optimizer options are checked against.
    pub fn optimizer_keys(&self) -> TrainingKeys {
        TrainingKeys {
            learning_rate: self.learning_rate,
            momentum: self.momentum,
            lr_decay: self.lr_decay,
            epochs: self.epochs,
        }
    }

    /// Whether any optimizer or schedule key differs from plain SGD with
    /// step decay (the one thing the actor runtimes apply).
    pub fn optimizer_key_given(&self) -> Option<&'static str> {
        let o = self.optimizer_options();
        let d = OptimizerOptions::default();
        [
            ("training.optimizer", o.optimizer != d.optimizer),
            ("training.beta1", o.beta1.is_some()),
            ("training.beta2", o.beta2.is_some()),
            ("training.eps", o.eps.is_some()),
            ("training.weight_decay", o.weight_decay != 0.0),
            ("training.schedule", o.schedule != d.schedule),
            ("training.warmup_steps", o.warmup_steps.is_some()),
            ("training.warmup_epochs", o.warmup_epochs.is_some()),
            ("training.min_lr", o.min_lr.is_some()),
        ]
        .into_iter()
        .find(|(_, given)| *given)
        .map(|(k, _)| k)
    }
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
            optimizer: OptimizerKind::Sgd,
            beta1: None,
            beta2: None,
            eps: None,
            weight_decay: 0.0,
            schedule: ScheduleKind::Step,
            warmup_steps: None,
            warmup_epochs: None,
            min_lr: None,
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
    /// `"loop"`: the per-image loop; `"virtual"`: one actor per layer on the
    /// virtual-time driver, spike messages timed by `[runtime]`.
    pub runtime: SnnRuntime,
}

impl Default for SnnConfig {
    /// The simulation defaults are the spiking model's own (`SpikingConfig`).
    fn default() -> Self {
        let model = SpikingConfig::default();
        Self {
            evaluate: true,
            presentation_time: model.presentation_time,
            dt: model.dt,
            synapse: model.synapse,
            tau_s: model.tau_s,
            readout: model.readout,
            presentation_sweep: vec![0.01, 0.03, 0.1, 0.3, 1.0],
            test_subset: None,
            seed: None,
            threads: 0,
            runtime: SnnRuntime::Loop,
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

    /// Seed of spiking PC's Poisson input (`seed + 5`).
    pub fn spiking_pc_seed(&self) -> u64 {
        self.seed.wrapping_add(5)
    }

    /// The `[algorithm.spiking]` settings in force (defaults if absent).
    pub fn spiking_pc(&self) -> SpikingPcConfig {
        self.algorithm.spiking.clone().unwrap_or_default()
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
