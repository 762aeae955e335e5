//! Optimizers and learning-rate schedules that turn a rule's update into a
//! parameter change: SGD with heavy-ball momentum (the semantics of
//! `algo::Momentum`, bit for bit), Adam, AdamW, and per-step learning-rate
//! schedules (step decay per epoch, cosine with linear warm-up).
//!
//! State is kept per parameter tensor (`ParamState`), and every element's
//! moments depend only on that element's own updates, so the rule stays local:
//! an actor that owns `W[l]` holds the states of `W[l]` and `b[l]`, and a
//! driver that owns the whole network holds one per tensor (`NetworkState`).
//!
//! What a rule hands to `ParamState::step` depends on the optimizer (see
//! `Optimizer::update_scale`): SGD takes the update already scaled by the
//! learning rate, exactly as the rules compute it today (`ΔW = −α ∇`), so
//! existing runs keep their rounding; Adam and AdamW take the descent
//! direction at learning rate 1 (`−∇`) and apply α themselves, because their
//! moments must not change when a schedule changes α.
//!
//! `OptimizerOptions` are the `[training]` keys (`optimizer`, `beta1`,
//! `beta2`, `eps`, `weight_decay`, `schedule`, `warmup_steps` /
//! `warmup_epochs`, `min_lr`). BP and the lockstep IL / Z-IL trainers apply
//! their updates through `NetworkState`, and the run loop takes its learning
//! rate from `LrSchedule` at every step; the actor runtimes keep their own
//! per-slice SGD step, so `validate` refuses these keys for them.

use crate::nn::{Mlp, Real, Updates};
use ndarray::{Array, ArrayView, ArrayViewMut, Dimension, Zip};
use serde::{Deserialize, Serialize};

/// Which optimizer turns updates into parameter changes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OptimizerKind {
    /// SGD with optional heavy-ball momentum (`training.momentum`).
    #[default]
    Sgd,
    /// Adam (Kingma & Ba 2015); `weight_decay` is an L2 term added to the gradient.
    Adam,
    /// AdamW (Loshchilov & Hutter 2019): weight decay decoupled from the
    /// moments, `W ← W − α λ W` before the Adam step (PyTorch's convention).
    #[serde(rename = "adamw")]
    AdamW,
}

/// The optimizer's constants (one value shared by every tensor it updates).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Optimizer {
    pub kind: OptimizerKind,
    /// Heavy-ball momentum μ (SGD only).
    pub momentum: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// λ: L2 coefficient (SGD, Adam) or decoupled decay rate (AdamW).
    pub weight_decay: f64,
}

impl Optimizer {
    /// SGD with heavy-ball momentum μ (0: plain SGD).
    pub fn sgd(momentum: f64) -> Self {
        Self {
            kind: OptimizerKind::Sgd,
            momentum,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }

    /// Adam with the usual constants (β1 0.9, β2 0.999, ε 1e-8, no decay).
    pub fn adam() -> Self {
        Self {
            kind: OptimizerKind::Adam,
            momentum: 0.0,
            ..Self::sgd(0.0)
        }
    }

    /// AdamW with decoupled weight decay λ.
    pub fn adamw(weight_decay: f64) -> Self {
        Self {
            kind: OptimizerKind::AdamW,
            weight_decay,
            ..Self::adam()
        }
    }

    /// Plain SGD (no momentum, no decay): `W ← W + ΔW`, which the trainers
    /// fuse into the update kernels instead of going through a ΔW buffer.
    pub fn is_plain(&self) -> bool {
        self.kind == OptimizerKind::Sgd && self.momentum == 0.0 && self.weight_decay == 0.0
    }

    pub fn is_sgd(&self) -> bool {
        self.kind == OptimizerKind::Sgd
    }

    /// The learning rate a rule folds into the update it passes to
    /// `ParamState::step`: α for SGD (today's `ΔW = −α ∇`), 1 for Adam and
    /// AdamW (they need the raw direction `−∇`).
    pub fn update_scale(&self, learning_rate: f64) -> f64 {
        match self.kind {
            OptimizerKind::Sgd => learning_rate,
            OptimizerKind::Adam | OptimizerKind::AdamW => 1.0,
        }
    }

    /// A fresh state for one parameter tensor.
    pub fn state<T: Real, D: Dimension>(&self) -> ParamState<T, D> {
        ParamState::new(*self)
    }
}

/// The optimizer state of one parameter tensor (`W[l]` or `b[l]`): the
/// momentum velocity, or Adam's first and second moments and step count.
/// Buffers are allocated at the first step, never afterwards.
#[derive(Clone, Debug)]
pub struct ParamState<T: Real, D: Dimension> {
    opt: Optimizer,
    /// Velocity (SGD) or first moment m (Adam).
    m: Option<Array<T, D>>,
    /// Second moment v (Adam).
    v: Option<Array<T, D>>,
    steps: u64,
}

impl<T: Real, D: Dimension> ParamState<T, D> {
    pub fn new(opt: Optimizer) -> Self {
        Self {
            opt,
            m: None,
            v: None,
            steps: 0,
        }
    }

    /// Updates applied so far (Adam's bias correction uses it).
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Applies one update to `param`. `update` is scaled as
    /// `Optimizer::update_scale(learning_rate)` says; `learning_rate` is the
    /// current α (from the schedule).
    pub fn step(&mut self, param: ArrayViewMut<T, D>, update: ArrayView<T, D>, learning_rate: f64) {
        let rule = self.begin_step(&param, &update, learning_rate);
        let (m, v) = (
            self.m.as_mut().map(|m| m.view_mut()),
            self.v.as_mut().map(|v| v.view_mut()),
        );
        rule.apply(param, m, v, update);
    }

    /// Counts the step, allocates the moments the optimizer needs, and
    /// returns the step's element rule.
    fn begin_step(
        &mut self,
        param: &ArrayViewMut<T, D>,
        update: &ArrayView<T, D>,
        learning_rate: f64,
    ) -> ElementStep {
        assert_eq!(
            param.shape(),
            update.shape(),
            "update shape differs from the parameter's"
        );
        self.steps += 1;
        let o = self.opt;
        let momentum = o.kind == OptimizerKind::Sgd && o.momentum != 0.0;
        if momentum || o.kind != OptimizerKind::Sgd {
            self.m.get_or_insert_with(|| zeros_in_layout(param));
        }
        if o.kind != OptimizerKind::Sgd {
            self.v.get_or_insert_with(|| zeros_in_layout(param));
        }
        ElementStep {
            opt: o,
            t: self.steps,
            learning_rate,
        }
    }
}

impl<T: Real> ParamState<T, ndarray::Ix2> {
    /// `step` with the element work cut into blocks of whole contiguous
    /// lanes, run on the worker team: every element's step depends only on
    /// that element, so the bits are those of `step` for any thread count.
    pub fn step_on_team(
        &mut self,
        param: ArrayViewMut<T, ndarray::Ix2>,
        update: ArrayView<T, ndarray::Ix2>,
        learning_rate: f64,
    ) {
        let parts = crate::nn::linalg::threads();
        if parts <= 1 {
            self.step(param, update, learning_rate);
            return;
        }
        let mut param = param;
        let rule = self.begin_step(&param, &update, learning_rate);
        let axis = if param.strides()[0].unsigned_abs() >= param.strides()[1].unsigned_abs() {
            ndarray::Axis(0)
        } else {
            ndarray::Axis(1)
        };
        let chunk = param.len_of(axis).div_ceil(parts).max(1);
        let mut m = self.m.as_mut().map(|m| m.axis_chunks_iter_mut(axis, chunk));
        let mut v = self.v.as_mut().map(|v| v.axis_chunks_iter_mut(axis, chunk));
        let jobs: Vec<_> = param
            .axis_chunks_iter_mut(axis, chunk)
            .zip(update.axis_chunks_iter(axis, chunk))
            .map(|(p, u)| {
                let m = m.as_mut().and_then(|m| m.next());
                let v = v.as_mut().and_then(|v| v.next());
                (p, m, v, u)
            })
            .collect();
        crate::nn::team::for_each_part(jobs, |(p, m, v, u)| rule.apply(p, m, v, u));
    }
}

/// One step's rule for single elements: the optimizer, its step count and
/// α (the moments are the caller's).
#[derive(Clone, Copy)]
struct ElementStep {
    opt: Optimizer,
    t: u64,
    learning_rate: f64,
}

impl ElementStep {
    fn apply<T: Real, D: Dimension>(
        self,
        mut param: ArrayViewMut<T, D>,
        m: Option<ArrayViewMut<T, D>>,
        v: Option<ArrayViewMut<T, D>>,
        update: ArrayView<T, D>,
    ) {
        let (o, learning_rate) = (self.opt, self.learning_rate);
        match o.kind {
            OptimizerKind::Sgd => {
                let decay = T::of(learning_rate * o.weight_decay);
                let with_decay = |d: T, p: T| {
                    if o.weight_decay == 0.0 {
                        d
                    } else {
                        d - decay * p
                    }
                };
                let Some(v) = m else {
                    // `W ← W + ΔW`, as `Mlp::apply`.
                    Zip::from(&mut param)
                        .and(&update)
                        .for_each(|p, &d| *p += with_decay(d, *p));
                    return;
                };
                // `v ← μ v + ΔW; W ← W + v`, as `algo::Momentum`.
                let mu = T::of(o.momentum);
                Zip::from(&mut param)
                    .and(v)
                    .and(&update)
                    .for_each(|p, v, &d| {
                        *v = mu * *v + with_decay(d, *p);
                        *p += *v;
                    });
            }
            OptimizerKind::Adam | OptimizerKind::AdamW => {
                // PyTorch's formulation, in terms of the descent direction
                // d = −g: m ← β1 m + (1 − β1) d, v ← β2 v + (1 − β2) d²,
                // W ← W + (α / (1 − β1^t)) · m / (√v / √(1 − β2^t) + ε).
                let (Some(m), Some(v)) = (m, v) else {
                    unreachable!("begin_step allocates Adam's moments");
                };
                let t = self.t as i32;
                let (b1, b2) = (T::of(o.beta1), T::of(o.beta2));
                let (c1, c2) = (T::of(1.0 - o.beta1), T::of(1.0 - o.beta2));
                let step_size = T::of(learning_rate / (1.0 - o.beta1.powi(t)));
                let bc2_sqrt = T::of((1.0 - o.beta2.powi(t)).sqrt());
                let eps = T::of(o.eps);
                let coupled = o.kind == OptimizerKind::Adam && o.weight_decay != 0.0;
                let l2 = T::of(o.weight_decay);
                let shrink = T::of(1.0 - learning_rate * o.weight_decay);
                let decoupled = o.kind == OptimizerKind::AdamW && o.weight_decay != 0.0;
                Zip::from(&mut param)
                    .and(m)
                    .and(v)
                    .and(&update)
                    .for_each(|p, m, v, &d| {
                        let d = if coupled { d - l2 * *p } else { d };
                        if decoupled {
                            *p *= shrink;
                        }
                        *m = b1 * *m + c1 * d;
                        *v = b2 * *v + c2 * d * d;
                        *p += step_size * *m / (v.sqrt() / bc2_sqrt + eps);
                    });
            }
        }
    }
}

/// Zeros with `param`'s memory order when it is contiguous (a column-major
/// `W` gets column-major moments, so the update is one contiguous pass).
fn zeros_in_layout<T: Real, D: Dimension>(param: &ArrayViewMut<T, D>) -> Array<T, D> {
    param.map(|_| T::zero())
}

/// Optimizer states of a whole network (BP or lockstep PC own all layers).
#[derive(Clone, Debug)]
pub struct NetworkState<T: Real> {
    pub w: Vec<ParamState<T, ndarray::Ix2>>,
    pub b: Vec<ParamState<T, ndarray::Ix1>>,
}

impl<T: Real> NetworkState<T> {
    pub fn new(opt: Optimizer, mlp: &Mlp<T>) -> Self {
        Self {
            w: mlp.w.iter().map(|_| opt.state()).collect(),
            b: mlp.b.iter().map(|_| opt.state()).collect(),
        }
    }

    /// Applies `updates` (scaled as `Optimizer::update_scale` says) to every
    /// layer.
    pub fn step(&mut self, mlp: &mut Mlp<T>, updates: &Updates<T>, learning_rate: f64) {
        for ((s, w), dw) in self.w.iter_mut().zip(&mut mlp.w).zip(&updates.dw) {
            s.step_on_team(w.view_mut(), dw.view(), learning_rate);
        }
        for ((s, b), db) in self.b.iter_mut().zip(&mut mlp.b).zip(&updates.db) {
            s.step(b.view_mut(), db.view(), learning_rate);
        }
    }
}

/// How the learning rate moves over training.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScheduleKind {
    /// `α · lr_decay^epoch` (today's `training.lr_decay`, once per epoch).
    #[default]
    Step,
    /// Half a cosine from α down to `min_lr` over the steps after the warm-up.
    Cosine,
}

/// A learning rate per training step (0-based, counted over the whole run).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LrSchedule {
    pub base: f64,
    pub kind: ScheduleKind,
    /// Step decay factor per epoch.
    pub decay: f64,
    pub min_lr: f64,
    pub warmup_steps: usize,
    pub steps_per_epoch: usize,
    pub total_steps: usize,
}

impl LrSchedule {
    /// Today's schedule: `base · decay^epoch`.
    pub fn step_decay(base: f64, decay: f64, steps_per_epoch: usize, epochs: usize) -> Self {
        Self {
            base,
            kind: ScheduleKind::Step,
            decay,
            min_lr: 0.0,
            warmup_steps: 0,
            steps_per_epoch: steps_per_epoch.max(1),
            total_steps: steps_per_epoch.max(1) * epochs,
        }
    }

    /// Linear warm-up over `warmup_steps`, then a cosine from `base` to `min_lr`.
    pub fn cosine(base: f64, min_lr: f64, warmup_steps: usize, total_steps: usize) -> Self {
        Self {
            base,
            kind: ScheduleKind::Cosine,
            decay: 1.0,
            min_lr,
            warmup_steps,
            steps_per_epoch: total_steps.max(1),
            total_steps,
        }
    }

    /// The learning rate of training step `step`.
    ///
    /// Warm-up: `lr(s) = target(s) · (s + 1) / warmup_steps` for
    /// `s < warmup_steps`, so the first step already learns and the last
    /// warm-up step reaches the target. Cosine after it:
    /// `min + (base − min) · ½ (1 + cos(π p))`, `p = (s − w) / (total − w)`,
    /// so `lr(w) = base` and the rate would reach `min_lr` one step after
    /// the last. Step decay multiplies by `decay` once per finished epoch,
    /// by repeated multiplication as the run loop does today, so the numbers
    /// are bit-identical with `lr *= lr_decay`.
    pub fn lr(&self, step: usize) -> f64 {
        let target = match self.kind {
            ScheduleKind::Step => {
                let mut lr = self.base;
                for _ in 0..step / self.steps_per_epoch {
                    lr *= self.decay;
                }
                lr
            }
            ScheduleKind::Cosine => {
                if step < self.warmup_steps {
                    self.base
                } else {
                    let span = self.total_steps.saturating_sub(self.warmup_steps).max(1);
                    let p = ((step - self.warmup_steps) as f64 / span as f64).min(1.0);
                    self.min_lr
                        + (self.base - self.min_lr) * 0.5 * (1.0 + (std::f64::consts::PI * p).cos())
                }
            }
        };
        if step < self.warmup_steps {
            target * (step + 1) as f64 / self.warmup_steps as f64
        } else {
            target
        }
    }
}

/// The proposed `[training]` keys of the optimizer and schedule. The
/// existing `learning_rate`, `momentum` and `lr_decay` keys stay where they
/// are and are passed to `validate` / `build`.
///
/// ```toml
/// [training]
/// optimizer = "adamw"      # "sgd" (default), "adam", "adamw"
/// beta1 = 0.9              # Adam/AdamW only (default 0.9)
/// beta2 = 0.999            # Adam/AdamW only (default 0.999)
/// eps = 1e-8               # Adam/AdamW only (default 1e-8)
/// weight_decay = 1e-4      # L2 (sgd, adam) or decoupled (adamw); default 0
/// schedule = "cosine"      # "step" (default: lr_decay per epoch) or "cosine"
/// warmup_epochs = 1        # or warmup_steps = 500 (linear warm-up)
/// min_lr = 0.0             # cosine only: the rate it ends at
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OptimizerOptions {
    pub optimizer: OptimizerKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub beta1: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub beta2: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eps: Option<f64>,
    pub weight_decay: f64,
    pub schedule: ScheduleKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warmup_steps: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warmup_epochs: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_lr: Option<f64>,
}

/// A refused key and what to do about it (the scenario layer adds the file
/// and line).
pub type Invalid = (String, String);

fn refuse(key: &str, message: String) -> Result<(), Invalid> {
    Err((format!("training.{key}"), message))
}

/// The settings of `[training]` the optimizer options are checked against.
#[derive(Clone, Copy, Debug)]
pub struct TrainingKeys {
    pub learning_rate: f64,
    pub momentum: f64,
    pub lr_decay: f64,
    pub epochs: usize,
}

impl OptimizerOptions {
    /// Checks the keys against each other and against `[training]`; every
    /// error names the key and says what to do.
    pub fn validate(&self, t: TrainingKeys) -> Result<(), Invalid> {
        let adam = self.optimizer != OptimizerKind::Sgd;
        for (key, value, default) in [("beta1", self.beta1, 0.9), ("beta2", self.beta2, 0.999)] {
            if value.is_some() && !adam {
                return refuse(
                    key,
                    "is used only by optimizer = \"adam\" or \"adamw\"; remove it or set training.optimizer".into(),
                );
            }
            let v = value.unwrap_or(default);
            if !(v.is_finite() && (0.0..1.0).contains(&v)) {
                return refuse(key, format!("must be in [0, 1), got {v}"));
            }
        }
        if let Some(eps) = self.eps {
            if !adam {
                return refuse(
                    "eps",
                    "is used only by optimizer = \"adam\" or \"adamw\"; remove it or set training.optimizer".into(),
                );
            }
            if !(eps.is_finite() && eps > 0.0) {
                return refuse("eps", format!("must be a finite number > 0, got {eps}"));
            }
        }
        if adam && t.momentum != 0.0 {
            return refuse(
                "momentum",
                format!(
                    "Adam keeps its own first moment (training.beta1); remove training.momentum (now {}) or use optimizer = \"sgd\"",
                    t.momentum
                ),
            );
        }
        let wd = self.weight_decay;
        if !(wd.is_finite() && wd >= 0.0) {
            return refuse("weight_decay", format!("must be ≥ 0, got {wd}"));
        }
        if self.optimizer == OptimizerKind::AdamW && wd * t.learning_rate >= 1.0 {
            return refuse(
                "weight_decay",
                format!(
                    "AdamW shrinks W by (1 − learning_rate · weight_decay) per step, which is ≤ 0 for {} · {wd}; lower it",
                    t.learning_rate
                ),
            );
        }
        if self.warmup_steps.is_some() && self.warmup_epochs.is_some() {
            return refuse(
                "warmup_epochs",
                "give the warm-up in steps or in epochs, not both (remove training.warmup_steps or training.warmup_epochs)".into(),
            );
        }
        if let Some(w) = self.warmup_epochs
            && w >= t.epochs
        {
            return refuse(
                "warmup_epochs",
                format!("must be less than training.epochs ({}), got {w}", t.epochs),
            );
        }
        match self.schedule {
            ScheduleKind::Step => {
                if self.min_lr.is_some() {
                    return refuse(
                        "min_lr",
                        "is used only by schedule = \"cosine\"; remove it or set training.schedule = \"cosine\"".into(),
                    );
                }
            }
            ScheduleKind::Cosine => {
                if t.lr_decay != 1.0 {
                    return refuse(
                        "lr_decay",
                        format!(
                            "the cosine schedule sets the learning rate; remove training.lr_decay (now {}) or use schedule = \"step\"",
                            t.lr_decay
                        ),
                    );
                }
                let min = self.min_lr.unwrap_or(0.0);
                if !(min.is_finite() && min >= 0.0 && min <= t.learning_rate) {
                    return refuse(
                        "min_lr",
                        format!(
                            "must be in [0, training.learning_rate = {}], got {min}",
                            t.learning_rate
                        ),
                    );
                }
            }
        }
        Ok(())
    }

    /// The optimizer these keys describe, with `[training]`'s momentum
    /// (checked by `validate`, not here).
    pub fn optimizer(&self, momentum: f64) -> Optimizer {
        Optimizer {
            kind: self.optimizer,
            momentum,
            beta1: self.beta1.unwrap_or(0.9),
            beta2: self.beta2.unwrap_or(0.999),
            eps: self.eps.unwrap_or(1e-8),
            weight_decay: self.weight_decay,
        }
    }

    /// The optimizer and the schedule of a run with `steps_per_epoch`
    /// batches per epoch. Refuses a warm-up as long as the run.
    pub fn build(
        &self,
        t: TrainingKeys,
        steps_per_epoch: usize,
    ) -> Result<(Optimizer, LrSchedule), Invalid> {
        self.validate(t)?;
        let opt = self.optimizer(t.momentum);
        let steps_per_epoch = steps_per_epoch.max(1);
        let total = steps_per_epoch * t.epochs;
        let warmup = self
            .warmup_steps
            .or(self.warmup_epochs.map(|e| e * steps_per_epoch))
            .unwrap_or(0);
        if warmup >= total && warmup > 0 {
            refuse(
                if self.warmup_steps.is_some() {
                    "warmup_steps"
                } else {
                    "warmup_epochs"
                },
                format!(
                    "the warm-up ({warmup} steps) must be shorter than the run ({total} steps)"
                ),
            )?;
        }
        let mut schedule = match self.schedule {
            ScheduleKind::Step => {
                LrSchedule::step_decay(t.learning_rate, t.lr_decay, steps_per_epoch, t.epochs)
            }
            ScheduleKind::Cosine => {
                LrSchedule::cosine(t.learning_rate, self.min_lr.unwrap_or(0.0), warmup, total)
            }
        };
        schedule.warmup_steps = warmup;
        Ok((opt, schedule))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array1, Array2, array};

    fn keys() -> TrainingKeys {
        TrainingKeys {
            learning_rate: 0.1,
            momentum: 0.0,
            lr_decay: 1.0,
            epochs: 10,
        }
    }

    #[test]
    fn adam_first_steps_match_hand_computed_values() {
        // One weight, gradient g = 2 (direction d = −2), α = 0.1, β1 0.9,
        // β2 0.999, ε 1e-8. Step 1: m = −0.2, v = 0.004, m̂ = −2, v̂ = 4,
        // Δ = 0.1 · (−2) / (2 + 1e-8).
        let mut p = array![1.0f64];
        let mut s: ParamState<f64, _> = Optimizer::adam().state();
        s.step(p.view_mut(), array![-2.0].view(), 0.1);
        let want1 = 1.0 - 0.1 * 2.0 / (2.0 + 1e-8);
        assert!((p[0] - want1).abs() < 1e-15, "{} vs {want1}", p[0]);
        // Step 2 with d = −1: m = 0.9·(−0.2) + 0.1·(−1) = −0.28,
        // v = 0.999·0.004 + 0.001·1 = 0.004996; m̂ = −0.28/0.19,
        // v̂ = 0.004996/0.001999.
        s.step(p.view_mut(), array![-1.0].view(), 0.1);
        let (mh, vh) = (-0.28 / 0.19, 0.004996 / (1.0 - 0.999f64.powi(2)));
        let want2 = want1 + 0.1 * mh / (vh.sqrt() + 1e-8);
        assert!((p[0] - want2).abs() < 1e-12, "{} vs {want2}", p[0]);
        assert_eq!(s.steps(), 2);
    }

    #[test]
    fn adam_bias_correction_makes_the_first_step_alpha_sized() {
        // With bias correction the first step is α·sign(d) (up to ε),
        // whatever the gradient's scale.
        for g in [1e-6f64, 1.0, 1e6] {
            let mut p = Array1::<f64>::zeros(3);
            let mut s: ParamState<f64, _> = Optimizer::adam().state();
            s.step(p.view_mut(), array![g, -g, 0.0].view(), 0.01);
            assert!((p[0] - 0.01).abs() < 1e-6 * 0.01 + 1e-8 / g);
            assert!((p[1] + 0.01).abs() < 1e-6 * 0.01 + 1e-8 / g);
            assert_eq!(p[2], 0.0);
        }
    }

    #[test]
    fn adamw_decay_is_decoupled_and_adam_decay_is_l2() {
        // Zero gradient: AdamW still shrinks W by (1 − αλ); Adam's L2 term
        // becomes the gradient and its normalised first step is α·sign.
        let (lr, wd) = (0.1, 0.5);
        let mut p = array![2.0f64];
        let mut s: ParamState<f64, _> = Optimizer::adamw(wd).state();
        s.step(p.view_mut(), array![0.0].view(), lr);
        assert!((p[0] - 2.0 * (1.0 - lr * wd)).abs() < 1e-15, "{}", p[0]);

        let mut q = array![2.0f64];
        let adam_l2 = Optimizer {
            weight_decay: wd,
            ..Optimizer::adam()
        };
        let mut s: ParamState<f64, _> = adam_l2.state();
        s.step(q.view_mut(), array![0.0].view(), lr);
        // d = −λ·W = −1 → first step −α (bias-corrected), up to ε.
        assert!((q[0] - (2.0 - lr)).abs() < 1e-8, "{}", q[0]);

        // With a gradient, AdamW = shrink, then the plain Adam step.
        let mut a = array![2.0f64];
        let mut b = array![2.0f64 * (1.0 - lr * wd)];
        let mut sa: ParamState<f64, _> = Optimizer::adamw(wd).state();
        let mut sb: ParamState<f64, _> = Optimizer::adam().state();
        sa.step(a.view_mut(), array![0.3].view(), lr);
        sb.step(b.view_mut(), array![0.3].view(), lr);
        assert_eq!(a[0], b[0]);
    }

    #[test]
    fn sgd_with_momentum_is_bit_identical_to_algo_momentum() {
        use rand::SeedableRng;
        use rand_distr::{Distribution, Normal};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let hidden = crate::nn::Activation::new(crate::nn::ActivationKind::Tanh);
        let mlp0 =
            Mlp::<f32>::kaiming(&[7, 5, 3], hidden, crate::nn::LossKind::SoftmaxCe, &mut rng);
        for mu in [0.0, 0.9] {
            let (mut a, mut b) = (mlp0.clone(), mlp0.clone());
            let mut reference = crate::algo::Momentum::<f32>::new(mu);
            let mut state = NetworkState::new(Optimizer::sgd(mu), &b);
            let normal = Normal::new(0.0f32, 0.1).unwrap();
            for _ in 0..5 {
                let mut u = Updates::zeros_like(&a);
                for w in u.dw.iter_mut() {
                    w.mapv_inplace(|_| normal.sample(&mut rng));
                }
                for v in u.db.iter_mut() {
                    v.mapv_inplace(|_| normal.sample(&mut rng));
                }
                reference.apply(&mut a, &u);
                state.step(&mut b, &u, 0.05);
            }
            for (x, y) in a.w.iter().zip(&b.w) {
                assert!(
                    x.iter().zip(y).all(|(p, q)| p.to_bits() == q.to_bits()),
                    "μ = {mu}"
                );
            }
            for (x, y) in a.b.iter().zip(&b.b) {
                assert!(
                    x.iter().zip(y).all(|(p, q)| p.to_bits() == q.to_bits()),
                    "μ = {mu}"
                );
            }
        }
    }

    #[test]
    fn sgd_weight_decay_is_l2_scaled_by_the_learning_rate() {
        let mut p = array![[2.0f64, -4.0]];
        let opt = Optimizer {
            weight_decay: 0.1,
            ..Optimizer::sgd(0.0)
        };
        let mut s: ParamState<f64, _> = opt.state();
        s.step(p.view_mut(), Array2::zeros((1, 2)).view(), 0.5);
        assert_eq!(p, array![[2.0 - 0.05 * 2.0, -4.0 + 0.05 * 4.0]]);
    }

    #[test]
    fn update_scale_folds_alpha_into_sgd_updates_only() {
        assert_eq!(Optimizer::sgd(0.9).update_scale(0.05), 0.05);
        assert_eq!(Optimizer::adam().update_scale(0.05), 1.0);
        assert_eq!(Optimizer::adamw(0.01).update_scale(0.05), 1.0);
    }

    #[test]
    fn step_decay_equals_repeated_multiplication_bit_for_bit() {
        let s = LrSchedule::step_decay(0.05, 0.85, 7, 20);
        let mut lr = 0.05f64;
        for epoch in 0..20 {
            for k in 0..7 {
                assert_eq!(s.lr(epoch * 7 + k).to_bits(), lr.to_bits(), "epoch {epoch}");
            }
            lr *= 0.85;
        }
    }

    #[test]
    fn cosine_endpoints_midpoint_and_warmup() {
        let s = LrSchedule::cosine(0.1, 0.001, 10, 110);
        // Warm-up: linear, first step > 0, reaches the base at its last step.
        assert!((s.lr(0) - 0.01).abs() < 1e-15);
        assert!((s.lr(4) - 0.05).abs() < 1e-15);
        assert!((s.lr(9) - 0.1).abs() < 1e-15);
        // Cosine: starts at the base, halfway at the mean, ends at min_lr.
        assert!((s.lr(10) - 0.1).abs() < 1e-15);
        assert!((s.lr(60) - (0.1 + 0.001) / 2.0).abs() < 1e-15);
        assert!((s.lr(110) - 0.001).abs() < 1e-15);
        assert!(s.lr(109) > 0.001 && s.lr(109) < 0.0011);
        // Monotone after the warm-up.
        assert!((10..110).all(|k| s.lr(k + 1) <= s.lr(k)));
        // No warm-up: step 0 is the base.
        assert_eq!(LrSchedule::cosine(0.1, 0.0, 0, 50).lr(0), 0.1);
    }

    #[test]
    fn options_parse_from_toml_and_build() {
        let o: OptimizerOptions = toml::from_str(
            "optimizer = \"adamw\"\nweight_decay = 1e-4\nschedule = \"cosine\"\nwarmup_epochs = 1\nmin_lr = 1e-5\n",
        )
        .unwrap();
        let (opt, sched) = o.build(keys(), 100).unwrap();
        assert_eq!(opt.kind, OptimizerKind::AdamW);
        assert_eq!((opt.beta1, opt.beta2, opt.eps), (0.9, 0.999, 1e-8));
        assert_eq!(sched.warmup_steps, 100);
        assert_eq!(sched.total_steps, 1000);
        assert!((sched.lr(1000) - 1e-5).abs() < 1e-15);
        // The default is today's behaviour: SGD, step decay.
        let d: OptimizerOptions = toml::from_str("").unwrap();
        let (opt, sched) = d
            .build(
                TrainingKeys {
                    momentum: 0.9,
                    lr_decay: 0.85,
                    ..keys()
                },
                10,
            )
            .unwrap();
        assert_eq!(opt, Optimizer::sgd(0.9));
        assert_eq!(sched.lr(10), 0.1 * 0.85);
        // Unknown keys are refused by name.
        let e = toml::from_str::<OptimizerOptions>("beta3 = 0.5").unwrap_err();
        assert!(e.to_string().contains("beta3"), "{e}");
        let e = toml::from_str::<OptimizerOptions>("optimizer = \"rmsprop\"").unwrap_err();
        assert!(e.to_string().contains("rmsprop"), "{e}");
    }

    #[test]
    fn validation_names_the_key() {
        let refused = |o: OptimizerOptions, t: TrainingKeys| o.validate(t).unwrap_err().0;
        let adam = OptimizerOptions {
            optimizer: OptimizerKind::Adam,
            ..Default::default()
        };
        assert_eq!(
            refused(
                OptimizerOptions {
                    beta1: Some(0.9),
                    ..Default::default()
                },
                keys()
            ),
            "training.beta1"
        );
        assert_eq!(
            refused(
                OptimizerOptions {
                    eps: Some(1e-8),
                    ..Default::default()
                },
                keys()
            ),
            "training.eps"
        );
        assert_eq!(
            refused(
                OptimizerOptions {
                    beta2: Some(1.0),
                    ..adam.clone()
                },
                keys()
            ),
            "training.beta2"
        );
        assert_eq!(
            refused(
                adam.clone(),
                TrainingKeys {
                    momentum: 0.9,
                    ..keys()
                }
            ),
            "training.momentum"
        );
        assert_eq!(
            refused(
                OptimizerOptions {
                    weight_decay: -1.0,
                    ..Default::default()
                },
                keys()
            ),
            "training.weight_decay"
        );
        let cosine = OptimizerOptions {
            schedule: ScheduleKind::Cosine,
            ..Default::default()
        };
        assert_eq!(
            refused(
                cosine.clone(),
                TrainingKeys {
                    lr_decay: 0.9,
                    ..keys()
                }
            ),
            "training.lr_decay"
        );
        assert_eq!(
            refused(
                OptimizerOptions {
                    min_lr: Some(1.0),
                    ..cosine.clone()
                },
                keys()
            ),
            "training.min_lr"
        );
        assert_eq!(
            refused(
                OptimizerOptions {
                    min_lr: Some(0.0),
                    ..Default::default()
                },
                keys()
            ),
            "training.min_lr"
        );
        assert_eq!(
            refused(
                OptimizerOptions {
                    warmup_steps: Some(5),
                    warmup_epochs: Some(1),
                    ..cosine.clone()
                },
                keys()
            ),
            "training.warmup_epochs"
        );
        assert_eq!(
            refused(
                OptimizerOptions {
                    warmup_epochs: Some(10),
                    ..cosine.clone()
                },
                keys()
            ),
            "training.warmup_epochs"
        );
        let long = OptimizerOptions {
            warmup_steps: Some(1000),
            ..cosine
        };
        assert_eq!(
            long.build(keys(), 100).unwrap_err().0,
            "training.warmup_steps"
        );
        assert!(adam.validate(keys()).is_ok());
    }
}
