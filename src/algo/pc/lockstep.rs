//! The synchronous reference driver: the layer rules of `layer.rs` called in a
//! fixed lockstep order, with no messages (DESIGN.md §3). One inference step
//! `t` is, for all layers at once (Jacobi, not Gauss–Seidel):
//!
//! 1. every layer `l ≥ 3` computes its down-message `ε[l]·W[l]` from the
//!    current errors and the current (pre-update) weights;
//! 2. the layers scheduled at `t` compute and apply their weight update;
//! 3. every hidden layer takes its Euler step from the down-message;
//! 4. bottom-up, every layer `l ≥ 3` receives the new `f(x[l−1])` and
//!    recomputes `u[l]`, `ε[l]`.
//!
//! Layer 2 never receives a new up-message inside a batch (the input is
//! clamped), so its prediction `W[2] x[1] + b[2]` — the largest matrix
//! product — is computed once per batch.
//!
//! The trainers `Il` and `Zil` (the `Trainer` implementations) live here too.

use super::PcConfig;
use super::layer::{PcLayer, Role};
use crate::algo::{Momentum, Trainer};
use crate::nn::{Mlp, Real, Updates};
use anyhow::Result;
use ndarray::{Array2, ArrayView2};

/// The layers `2..=L` of a PC network, driven in lockstep.
#[derive(Clone, Debug)]
pub struct PcNet<T: Real> {
    /// `layers[i]` is layer `i + 2`.
    pub layers: Vec<PcLayer<T>>,
    /// `down[i]`: the down-message for `layers[i]` from `layers[i + 1]`.
    down: Vec<Array2<T>>,
}

impl<T: Real> PcNet<T> {
    /// A network with `mlp`'s shape, activation, output and parameters;
    /// `feedback[i]`, when given, is `B[i + 2]`.
    pub fn new(mlp: &Mlp<T>, feedback: Option<&[Array2<T>]>) -> Result<Self> {
        let last = mlp.w.len() - 1;
        let layers = (0..=last)
            .map(|i| {
                let role = if i == last {
                    Role::Output(mlp.output)
                } else {
                    Role::Hidden(mlp.hidden)
                };
                let fb = feedback.map(|f| f[i].clone());
                PcLayer::new(i + 2, role, mlp.w[i].clone(), mlp.b[i].clone(), fb)
            })
            .collect::<Result<Vec<_>>>()?;
        let down = mlp.sizes[1..last + 1]
            .iter()
            .map(|&n| Array2::zeros((0, n)))
            .collect();
        Ok(Self { layers, down })
    }

    /// Copies `mlp`'s parameters into the layers (no allocation).
    pub fn load_params(&mut self, mlp: &Mlp<T>) {
        for (layer, (w, b)) in self.layers.iter_mut().zip(mlp.w.iter().zip(&mlp.b)) {
            layer.load_params(w.view(), b.view());
        }
    }

    pub fn output(&self) -> &PcLayer<T> {
        self.layers.last().expect("a network has an output layer")
    }

    /// Starts a batch: the output is clamped/nudged towards `target = (y, β)`
    /// or left free (`None`); the value nodes start at the feedforward pass
    /// (`at_rest = false`) or at 0.
    pub fn start(&mut self, x: ArrayView2<T>, target: Option<(ArrayView2<T>, T)>, at_rest: bool) {
        let out = self
            .layers
            .last_mut()
            .expect("a network has an output layer");
        match target {
            Some((y, beta)) => out.set_target(y, beta),
            None => out.free_output(),
        }
        for i in 0..self.layers.len() {
            let (lower, upper) = self.layers.split_at_mut(i);
            let below = if i == 0 {
                x.view()
            } else {
                lower[i - 1].activity_up()
            };
            if at_rest {
                upper[0].init_at_rest(below);
            } else {
                upper[0].init_feedforward(below);
            }
        }
        let rows = x.nrows();
        for d in &mut self.down {
            if d.nrows() != rows {
                *d = Array2::zeros((rows, d.ncols()));
            }
        }
    }

    /// One inference step (see the module docs). Layers `i` with
    /// `update_now(i)` compute `ΔW = scale · εᵀ f(x_prev)` into
    /// `updates.dw[i]`/`db[i]` and apply it to their own weights.
    pub fn step(
        &mut self,
        gamma: T,
        mut update_now: impl FnMut(usize) -> bool,
        scale: T,
        updates: &mut Updates<T>,
    ) {
        let n = self.layers.len();
        self.send_down();
        for i in 0..n {
            if update_now(i) {
                let layer = &mut self.layers[i];
                layer.weight_update_into(scale, updates.dw[i].view_mut(), updates.db[i].view_mut());
                layer.apply_update(updates.dw[i].view(), updates.db[i].view());
            }
        }
        self.relax_only(gamma);
    }

    /// One inference step with no weight update.
    pub fn relax(&mut self, gamma: T) {
        self.send_down();
        self.relax_only(gamma);
    }

    /// Step 1: every layer `l ≥ 3` writes its down-message `ε[l]·W[l]`.
    pub fn send_down(&mut self) {
        for i in 0..self.layers.len() - 1 {
            self.layers[i + 1].error_down_into(self.down[i].view_mut());
        }
    }

    /// Steps 3 and 4 (after `send_down`): Euler steps from the down-messages,
    /// then the new up-messages bottom-up.
    pub fn relax_only(&mut self, gamma: T) {
        let n = self.layers.len();
        for i in 0..n - 1 {
            self.layers[i].on_feedback(self.down[i].view(), gamma);
        }
        for i in 1..n {
            let (lower, upper) = self.layers.split_at_mut(i);
            upper[0].on_activity(lower[i - 1].activity_up());
        }
    }

    /// Every layer computes its update `scale · εᵀ f(x_prev)` from the current
    /// state (IL's update after relaxing), without applying it.
    pub fn collect_updates(&self, scale: T, updates: &mut Updates<T>) {
        for (i, layer) in self.layers.iter().enumerate() {
            layer.weight_update_into(scale, updates.dw[i].view_mut(), updates.db[i].view_mut());
        }
    }

    /// Energy `E = Σ_hidden ½|ε|² + β · loss(y, u[L])`, summed over the batch.
    pub fn energy(&self) -> f64 {
        self.layers.iter().map(|l| l.energy()).sum()
    }
}

/// Shared machinery of the IL and Z-IL trainers.
struct Common<T: Real> {
    cfg: PcConfig,
    net: PcNet<T>,
    /// A second network for predicting with relaxation, so evaluation batches
    /// do not reallocate the training buffers.
    eval: Option<PcNet<T>>,
    feedback: Option<Vec<Array2<T>>>,
    learning_rate: T,
    optimizer: Momentum<T>,
    updates: Updates<T>,
    kept: bool,
}

impl<T: Real> Common<T> {
    fn new(mlp: &Mlp<T>, cfg: PcConfig, learning_rate: f64, momentum: f64) -> Result<Self> {
        cfg.validate()?;
        let feedback = cfg
            .feedback_seed
            .map(|seed| super::random_feedback(mlp, seed));
        let net = PcNet::new(mlp, feedback.as_deref())?;
        Ok(Self {
            cfg,
            net,
            eval: None,
            feedback,
            learning_rate: T::of(learning_rate),
            optimizer: Momentum::new(momentum),
            updates: Updates::zeros_like(mlp),
            kept: false,
        })
    }

    /// Loads the parameters and starts the batch from the feedforward pass
    /// with the target clamped/nudged; returns the feedforward loss.
    fn start(&mut self, mlp: &Mlp<T>, x: ArrayView2<T>, y: ArrayView2<T>, beta: T) -> f64 {
        self.net.load_params(mlp);
        self.net.start(x, Some((y, beta)), false);
        mlp.output.loss(self.net.output().u(), y).f64()
    }

    /// Plain SGD with no update to keep: add the updates straight into the
    /// parameters (as `Backprop` does), skipping the ΔW buffers.
    fn fused(&self, keep_updates: bool) -> bool {
        !keep_updates && self.optimizer.is_plain()
    }

    fn finish(&mut self, mlp: &mut Mlp<T>, keep_updates: bool) {
        self.optimizer.apply(mlp, &self.updates);
        self.kept = keep_updates;
    }

    fn predict(&mut self, mlp: &Mlp<T>, x: ArrayView2<T>) -> Result<Array2<T>> {
        if self.cfg.predict_steps == 0 {
            return Ok(mlp.predict(x));
        }
        let eval = match &mut self.eval {
            Some(e) => e,
            None => self.eval.insert(PcNet::new(mlp, self.feedback.as_deref())?),
        };
        eval.load_params(mlp);
        eval.start(x, None, true);
        let gamma = T::of(self.cfg.gamma);
        for _ in 0..self.cfg.predict_steps {
            eval.relax(gamma);
        }
        Ok(eval.output().u().to_owned())
    }
}

/// Inference learning: clamp the input, clamp (β = 1) or nudge (β < 1) the
/// output, relax the hidden value nodes for `steps` Euler steps of size γ
/// from the feedforward pass, then `ΔW[l] = α/(β B) · ε[l]ᵀ f(x[l−1])`,
/// `Δb[l] = α/(β B) · Σ ε[l]` for all layers at once.
pub struct Il<T: Real> {
    c: Common<T>,
}

impl<T: Real> Il<T> {
    pub fn new(mlp: &Mlp<T>, cfg: PcConfig, learning_rate: f64, momentum: f64) -> Result<Self> {
        Ok(Self {
            c: Common::new(mlp, cfg, learning_rate, momentum)?,
        })
    }

    /// The lockstep network (state after the last training batch).
    pub fn net(&self) -> &PcNet<T> {
        &self.c.net
    }
}

impl<T: Real> Trainer<T> for Il<T> {
    fn train_batch(
        &mut self,
        mlp: &mut Mlp<T>,
        x: ArrayView2<T>,
        y: ArrayView2<T>,
        keep_updates: bool,
    ) -> f64 {
        let c = &mut self.c;
        let beta = T::of(c.cfg.beta);
        let loss = c.start(mlp, x, y, beta);
        let gamma = T::of(c.cfg.gamma);
        for _ in 0..c.cfg.steps {
            c.net.relax(gamma);
        }
        let scale = super::update_scale(c.learning_rate, beta, x.nrows());
        if c.fused(keep_updates) {
            for (i, layer) in c.net.layers.iter().enumerate() {
                layer.add_weight_update_to(scale, mlp.w[i].view_mut(), mlp.b[i].view_mut());
            }
            c.kept = false;
            return loss;
        }
        c.net.collect_updates(scale, &mut c.updates);
        c.finish(mlp, keep_updates);
        loss
    }

    fn set_learning_rate(&mut self, learning_rate: f64) {
        self.c.learning_rate = T::of(learning_rate);
    }

    fn last_updates(&self) -> Option<&Updates<T>> {
        self.c.kept.then_some(&self.c.updates)
    }

    fn predict(&mut self, mlp: &Mlp<T>, x: ArrayView2<T>) -> Array2<T> {
        // PcNet::new only fails on shapes an Mlp cannot have.
        self.c.predict(mlp, x).unwrap_or_else(|_| mlp.predict(x))
    }
}

/// Z-IL: IL from the feedforward pass with the target clamped at `t = 0`,
/// γ = 1, and `W[l]` updated exactly once, at inference step `t = L − l`
/// (the schedule is a parameter only so tests can show that a wrong one
/// breaks the equivalence with BP).
pub struct Zil<T: Real> {
    c: Common<T>,
    /// `schedule[i]`: the step at which layer `i + 2` updates.
    schedule: Vec<usize>,
}

impl<T: Real> Zil<T> {
    /// Z-IL with the exact schedule `t = L − l`. Uses `cfg.feedback_seed`
    /// and `cfg.predict_steps`; γ, the number of steps and β are fixed by
    /// the algorithm (1, L − 1, 1).
    pub fn new(mlp: &Mlp<T>, cfg: PcConfig, learning_rate: f64, momentum: f64) -> Result<Self> {
        let depth = mlp.depth();
        let schedule = (2..=depth)
            .map(|l| super::zil_update_step(depth, l))
            .collect();
        Self::with_schedule(mlp, cfg, learning_rate, momentum, schedule)
    }

    /// Z-IL with layer `l = i + 2` updated at step `schedule[i]`.
    pub fn with_schedule(
        mlp: &Mlp<T>,
        cfg: PcConfig,
        learning_rate: f64,
        momentum: f64,
        schedule: Vec<usize>,
    ) -> Result<Self> {
        anyhow::ensure!(
            schedule.len() == mlp.w.len(),
            "Z-IL schedule has {} entries for {} weight layers",
            schedule.len(),
            mlp.w.len()
        );
        let cfg = super::zil_config(cfg, schedule.iter().max().map_or(1, |&t| t + 1));
        Ok(Self {
            c: Common::new(mlp, cfg, learning_rate, momentum)?,
            schedule,
        })
    }

    pub fn schedule(&self) -> &[usize] {
        &self.schedule
    }
}

impl<T: Real> Trainer<T> for Zil<T> {
    fn train_batch(
        &mut self,
        mlp: &mut Mlp<T>,
        x: ArrayView2<T>,
        y: ArrayView2<T>,
        keep_updates: bool,
    ) -> f64 {
        let c = &mut self.c;
        let loss = c.start(mlp, x, y, T::one());
        let scale = super::update_scale(c.learning_rate, T::one(), x.nrows());
        let last = c.cfg.steps - 1;
        let fused = c.fused(keep_updates);
        for t in 0..=last {
            // Down-messages first: they use the pre-update weights.
            if t < last {
                c.net.send_down();
            }
            for i in (0..c.net.layers.len()).filter(|&i| self.schedule[i] == t) {
                let layer = &mut c.net.layers[i];
                if fused {
                    // Nothing later in this batch reads W[l] in a way that
                    // reaches an update, so the driver's copy is updated
                    // now and the layer's own at the next `load_params`.
                    layer.add_weight_update_to(scale, mlp.w[i].view_mut(), mlp.b[i].view_mut());
                } else {
                    layer.weight_update_into(
                        scale,
                        c.updates.dw[i].view_mut(),
                        c.updates.db[i].view_mut(),
                    );
                    layer.apply_update(c.updates.dw[i].view(), c.updates.db[i].view());
                }
            }
            // Nothing after the last update can change an update: skip the
            // relaxation that would follow it.
            if t < last {
                c.net.relax_only(T::one());
            }
        }
        if fused {
            c.kept = false;
            return loss;
        }
        c.finish(mlp, keep_updates);
        loss
    }

    fn set_learning_rate(&mut self, learning_rate: f64) {
        self.c.learning_rate = T::of(learning_rate);
    }

    fn last_updates(&self) -> Option<&Updates<T>> {
        self.c.kept.then_some(&self.c.updates)
    }

    fn predict(&mut self, mlp: &Mlp<T>, x: ArrayView2<T>) -> Array2<T> {
        self.c.predict(mlp, x).unwrap_or_else(|_| mlp.predict(x))
    }
}
