//! A seeded synthetic classification set that needs a hidden layer: every
//! class is a union of several Gaussian clusters placed at random, so the
//! classes interleave and no single hyperplane separates them.

use super::{DataError, Dataset, Split};
use ndarray::Array2;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyntheticConfig {
    pub n_train: usize,
    pub n_test: usize,
    pub n_features: usize,
    pub n_classes: usize,
    /// Gaussian clusters per class; more than one makes the classes non-convex.
    pub clusters_per_class: usize,
    /// Standard deviation of each cluster (cluster centres lie in [0, 1]).
    pub noise: f64,
    /// Seed of the generator (defaults to the scenario seed).
    pub seed: Option<u64>,
}

impl Default for SyntheticConfig {
    fn default() -> Self {
        Self {
            n_train: 4000,
            n_test: 1000,
            n_features: 10,
            n_classes: 4,
            clusters_per_class: 5,
            noise: 0.2,
            seed: None,
        }
    }
}

/// An `(rows, cols)` zero matrix, or an error instead of an abort when the
/// memory cannot be had.
fn zeros(rows: usize, cols: usize, what: &str) -> Result<Array2<f32>, DataError> {
    let too_large = || DataError::TooLarge {
        what: format!("{what} ({rows} × {cols} values)"),
        bytes: rows as u128 * cols as u128 * 4,
    };
    let len = rows.checked_mul(cols).ok_or_else(too_large)?;
    let mut buf: Vec<f32> = Vec::new();
    buf.try_reserve_exact(len).map_err(|_| too_large())?;
    buf.resize(len, 0.0);
    Array2::from_shape_vec((rows, cols), buf).map_err(|_| too_large())
}

/// Generates the train and test sets from one stream, so they share centres.
/// Panics on a configuration `try_generate` refuses (tests and benches pass
/// fixed, valid ones).
pub fn generate(cfg: &SyntheticConfig, seed: u64) -> Split {
    try_generate(cfg, seed).unwrap_or_else(|e| panic!("invalid synthetic data configuration: {e}"))
}

/// Generates the train and test sets from one stream, so they share centres;
/// an invalid or too large configuration is an error naming the field.
pub fn try_generate(cfg: &SyntheticConfig, seed: u64) -> Result<Split, DataError> {
    let bad = |m: String| Err(DataError::Other(format!("data.synthetic: {m}")));
    if !(2..=255).contains(&cfg.n_classes) {
        return bad(format!(
            "n_classes must be in 2..=255, got {}",
            cfg.n_classes
        ));
    }
    if cfg.clusters_per_class == 0 || cfg.n_features == 0 {
        return bad("n_features and clusters_per_class must be ≥ 1".into());
    }
    // The f32 standard deviation must be finite (`Normal` refuses ∞).
    let noise = match Normal::new(0.0, cfg.noise as f32) {
        Ok(n) if (cfg.noise as f32).is_finite() => n,
        _ => {
            return bad(format!(
                "noise must be a finite number ≥ 0, got {}",
                cfg.noise
            ));
        }
    };
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let n_clusters = cfg
        .n_classes
        .checked_mul(cfg.clusters_per_class)
        .ok_or_else(|| DataError::TooLarge {
            what: "the synthetic cluster centres".into(),
            bytes: cfg.n_classes as u128
                * cfg.clusters_per_class as u128
                * cfg.n_features as u128
                * 4,
        })?;
    let mut centres = zeros(n_clusters, cfg.n_features, "the synthetic cluster centres")?;
    centres.iter_mut().for_each(|c| *c = rng.r#gen::<f32>());
    let mut make = |n: usize, what: &str| -> Result<Dataset, DataError> {
        let mut x = zeros(n, cfg.n_features, what)?;
        let mut labels = Vec::new();
        labels
            .try_reserve_exact(n)
            .map_err(|_| DataError::TooLarge {
                what: format!("{what} labels"),
                bytes: n as u128,
            })?;
        for mut row in x.rows_mut() {
            let cluster = rng.gen_range(0..n_clusters);
            labels.push((cluster % cfg.n_classes) as u8);
            for (v, c) in row.iter_mut().zip(centres.row(cluster)) {
                *v = c + noise.sample(&mut rng);
            }
        }
        Ok(Dataset {
            x,
            labels,
            n_classes: cfg.n_classes,
        })
    };
    let train = make(cfg.n_train, "the synthetic training set")?;
    let test = make(cfg.n_test, "the synthetic test set")?;
    Ok(Split { train, test })
}
