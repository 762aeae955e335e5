//! Predictive coding (DESIGN.md §2–3): the per-layer rules (`layer`), written
//! once on batched matrices, and the synchronous lockstep driver with the
//! `Il` and `Zil` trainers (`lockstep`). The actor runtimes drive the same
//! `PcLayer` rules by message passing.

pub mod layer;
pub mod lockstep;

pub use layer::{PcLayer, Role};
pub use lockstep::{Il, PcNet, Zil};

use crate::nn::{Mlp, Real};
use anyhow::{Result, ensure};
use ndarray::Array2;
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
}

impl Default for PcConfig {
    fn default() -> Self {
        Self {
            gamma: 0.1,
            steps: 20,
            beta: 1.0,
            predict_steps: 0,
            feedback_seed: None,
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
