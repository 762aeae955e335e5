//! Predictive coding (DESIGN.md §2–3): the per-layer rules (`layer`), written
//! once on batched matrices, the value-node rules of a layer whose value and
//! error nodes are separate actors (`value`), the synchronous lockstep driver
//! with the `Il` and `Zil` trainers (`lockstep`), and — in this file — the one
//! configuration every driver is built from (`PcRule`) with the rules that
//! define Z-IL (update time, fixed γ = β = 1, update scale, momentum). The
//! actor runtimes drive the same rules by message passing. Spiking PC
//! (`spiking`) reuses the Euler step with spikes forward.

pub mod layer;
pub mod lockstep;
pub mod spiking;
pub mod value;

pub use layer::{Control, PcLayer, Role, UpdateInput, UpdateRows, euler_step};
pub use lockstep::{Il, PcNet, RelaxStats, Zil};
pub use value::ValueNodes;

use crate::nn::{Mlp, Real};
use anyhow::{Result, ensure};
use ndarray::{Array2, ArrayView, ArrayViewMut, Dimension};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

/// Settings of the PC trainers (the scenario's `[algorithm.inference]`,
/// translated by the experiment layer so `algo` does not depend on the schema).
#[derive(Clone, Debug, PartialEq)]
pub struct PcConfig {
    /// Euler step γ.
    pub gamma: f64,
    /// Inference steps T per training batch.
    pub steps: usize,
    /// Output nudging β in (0, 1]; the update is scaled by 1/β.
    pub beta: f64,
    /// Relaxation steps (from rest, output free) when predicting; 0 = the
    /// feedforward pass.
    pub predict_steps: usize,
    /// `Some(seed)`: feedback alignment with fixed random `B[l]` drawn from
    /// this seed; `None`: the error term uses `W[l]` (exact PC).
    pub feedback_seed: Option<u64>,
    /// How the hidden layers size their Euler steps.
    pub step_control: StepControl,
}

/// How a hidden layer sizes its Euler steps (the rule is in
/// `layer::euler_step`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StepControl {
    /// Every step is γ: explicit Euler, unstable once γ exceeds two over the
    /// curvature the value nodes feel (it grows with the weights above).
    Fixed,
    /// Each layer lowers a sample's step when its own last step overshot, by
    /// the curvature it measured along that step (local: the layer's own
    /// nodes and its down-message). Equal to `Fixed` while no step overshoots.
    #[default]
    LocalCurvature,
}

impl Default for PcConfig {
    fn default() -> Self {
        Self {
            gamma: 0.1,
            steps: 20,
            beta: 1.0,
            predict_steps: 0,
            feedback_seed: None,
            step_control: StepControl::default(),
        }
    }
}

impl PcConfig {
    pub fn validate(&self) -> Result<()> {
        ensure!(
            self.gamma.is_finite() && self.gamma > 0.0,
            "algorithm.inference.gamma must be a finite number > 0, got {}",
            self.gamma
        );
        ensure!(self.steps >= 1, "algorithm.inference.steps must be ≥ 1");
        ensure!(
            self.beta.is_finite() && self.beta > 0.0 && self.beta <= 1.0,
            "algorithm.inference.beta must be in (0, 1], got {}",
            self.beta
        );
        Ok(())
    }
}

/// Fixed random feedback matrices `B[l]` (one per weight layer, `W[l]`'s
/// shape), drawn like the Kaiming initialisation of `W[l]` so error messages
/// have comparable magnitudes.
pub fn random_feedback<T: Real>(mlp: &Mlp<T>, seed: u64) -> Vec<Array2<T>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    mlp.w
        .iter()
        .map(|w| {
            let std = (2.0 / w.ncols() as f64).sqrt();
            let normal = Normal::new(0.0, std).expect("finite std");
            Array2::from_shape_simple_fn(w.raw_dim(), || T::of(normal.sample(&mut rng)))
        })
        .collect()
}

/// Z-IL updates `W[l]` exactly once, at inference step `t = L − l` (the
/// output weights at t = 0, the first hidden weights last; DESIGN.md §2).
pub fn zil_update_step(depth: usize, l: usize) -> usize {
    depth - l
}

/// Z-IL's fixed relaxation: γ = 1 and β = 1 (the target clamped), `steps`
/// inference steps, plain steps (a layer takes one step before its update,
/// which the step control never changes anyway); the feedback and
/// prediction settings are kept.
pub fn zil_config(cfg: PcConfig, steps: usize) -> PcConfig {
    PcConfig {
        gamma: 1.0,
        beta: 1.0,
        steps,
        step_control: StepControl::Fixed,
        ..cfg
    }
}

/// The factor of every PC weight update, `s = α / (β · B)` for a batch of
/// `rows` samples, computed in `T` so every driver rounds it alike.
pub fn update_scale<T: Real>(learning_rate: T, beta: T, rows: usize) -> T {
    learning_rate / (beta * T::of(rows as f64))
}

/// Heavy-ball momentum on an update that already includes the learning
/// rate: `v ← μ v + ΔW` (then `W ← W + v`); the same arithmetic as
/// `algo::Momentum`, for an actor that owns only its slice of the weights.
pub fn momentum_step<T: Real, D: Dimension>(mu: T, mut v: ArrayViewMut<T, D>, d: ArrayView<T, D>) {
    v.zip_mut_with(&d, |v, &d| *v = mu * *v + d);
}

/// IL or Z-IL with every setting that defines it: the one configuration the
/// lockstep trainers and the actor networks are built from.
#[derive(Clone, Debug, PartialEq)]
pub struct PcRule {
    /// Z-IL (true) or IL.
    pub zil: bool,
    /// The relaxation; for Z-IL already with its fixed values (`zil_config`).
    pub cfg: PcConfig,
    /// Number of layers L.
    pub depth: usize,
    pub learning_rate: f64,
    /// Heavy-ball momentum μ (0: plain SGD).
    pub momentum: f64,
    /// How a layer applies its update: SGD with `momentum` unless replaced
    /// (`with_optimizer`). Every optimizer's state is per weight, so a
    /// layer (or a slice of one) keeps its own.
    pub optimizer: crate::algo::optim::Optimizer,
}

impl PcRule {
    /// Inference learning with `cfg` on a network of `depth` layers.
    pub fn il(cfg: PcConfig, depth: usize, learning_rate: f64, momentum: f64) -> Self {
        Self {
            zil: false,
            cfg,
            depth,
            learning_rate,
            momentum,
            optimizer: crate::algo::optim::Optimizer::sgd(momentum),
        }
    }

    /// Z-IL: `cfg`'s feedback and prediction settings with γ = β = 1 and
    /// L − 1 inference steps.
    pub fn zil(cfg: PcConfig, depth: usize, learning_rate: f64, momentum: f64) -> Self {
        Self {
            zil: true,
            cfg: zil_config(cfg, depth.saturating_sub(1).max(1)),
            depth,
            learning_rate,
            momentum,
            optimizer: crate::algo::optim::Optimizer::sgd(momentum),
        }
    }

    /// The same rule applying its updates with `optimizer`.
    pub fn with_optimizer(mut self, optimizer: crate::algo::optim::Optimizer) -> Self {
        self.optimizer = optimizer;
        self
    }

    /// The inference step at which layer `l` (≥ 2) updates its weights: Z-IL's
    /// `L − l`, IL's `T` (after the relaxation).
    pub fn update_step(&self, l: usize) -> usize {
        if self.zil {
            zil_update_step(self.depth, l)
        } else {
            self.cfg.steps
        }
    }

    /// `α / (β · rows)` in `T` (with α = 1 for Adam, which applies α itself).
    pub fn scale<T: Real>(&self, rows: usize) -> T {
        let alpha = self.optimizer.update_scale(self.learning_rate);
        update_scale(T::of(alpha), T::of(self.cfg.beta), rows)
    }

    /// The fixed feedback matrices `B[l]` of feedback alignment, if any.
    pub fn feedback<T: Real>(&self, mlp: &Mlp<T>) -> Option<Vec<Array2<T>>> {
        self.cfg
            .feedback_seed
            .map(|seed| random_feedback(mlp, seed))
    }
}

/// The algorithms, as far as key usage goes: `None` is a rule without a
/// relaxation (backprop).
pub fn rule_kind(pc: bool, zil: bool) -> Option<bool> {
    pc.then_some(zil)
}

/// Refuses `[algorithm.inference]` keys the algorithm does not use, naming
/// the key: backprop uses none of them, Z-IL fixes γ, T and β and uses only
/// `feedback` and `predict_steps`. `inference` is compared with its type's
/// default, key by key, so keys added later are covered without a change
/// here. `zil`: `None` for backprop.
pub fn check_inference_usage<I: serde::Serialize + Default>(
    inference: &I,
    zil: Option<bool>,
) -> std::result::Result<(), (String, String)> {
    for key in changed_keys(inference, &I::default(), "algorithm.inference") {
        let leaf = key.rsplit('.').next().unwrap_or(&key);
        match zil {
            None => {
                return Err((
                    key.clone(),
                    "backprop has no relaxation and does not use [algorithm.inference]; remove the key or set algorithm.kind = \"il\" or \"zil\"".into(),
                ));
            }
            Some(true) if !matches!(leaf, "feedback" | "predict_steps") => {
                return Err((
                    key.clone(),
                    "Z-IL fixes γ = 1, β = 1 and T = L − 1 (it uses only `feedback` and `predict_steps`); remove the key or use algorithm.kind = \"il\"".into(),
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

/// The dotted keys (under `prefix`) where `value` and `default` serialise
/// differently, leaves first-differing-first.
pub fn changed_keys<S: serde::Serialize>(value: &S, default: &S, prefix: &str) -> Vec<String> {
    fn walk(a: &toml::Value, b: Option<&toml::Value>, key: &str, out: &mut Vec<String>) {
        match (a, b) {
            (toml::Value::Table(ta), Some(toml::Value::Table(tb))) => {
                for (k, va) in ta {
                    walk(va, tb.get(k), &format!("{key}.{k}"), out);
                }
                for k in tb.keys().filter(|k| !ta.contains_key(*k)) {
                    out.push(format!("{key}.{k}"));
                }
            }
            (toml::Value::Table(ta), None) => {
                for (k, va) in ta {
                    walk(va, None, &format!("{key}.{k}"), out);
                }
            }
            (a, b) if Some(a) != b => out.push(key.to_string()),
            _ => {}
        }
    }
    let (Ok(a), Ok(b)) = (toml::Value::try_from(value), toml::Value::try_from(default)) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    walk(&a, Some(&b), prefix, &mut out);
    out
}
