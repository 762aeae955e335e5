//! A seeded synthetic classification set that needs a hidden layer: every
//! class is a union of several Gaussian clusters placed at random, so the
//! classes interleave and no single hyperplane separates them.

use super::{Dataset, Split};
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

/// Generates the train and test sets from one stream, so they share centres.
pub fn generate(cfg: &SyntheticConfig, seed: u64) -> Split {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let n_clusters = cfg.n_classes * cfg.clusters_per_class;
    let centres = Array2::from_shape_simple_fn((n_clusters, cfg.n_features), || rng.r#gen::<f32>());
    let noise = Normal::new(0.0, cfg.noise as f32).expect("noise is validated finite");
    let mut make = |n: usize| {
        let mut x = Array2::zeros((n, cfg.n_features));
        let mut labels = Vec::with_capacity(n);
        for mut row in x.rows_mut() {
            let cluster = rng.gen_range(0..n_clusters);
            labels.push((cluster % cfg.n_classes) as u8);
            for (v, c) in row.iter_mut().zip(centres.row(cluster)) {
                *v = c + noise.sample(&mut rng);
            }
        }
        Dataset {
            x,
            labels,
            n_classes: cfg.n_classes,
        }
    };
    let train = make(cfg.n_train);
    let test = make(cfg.n_test);
    Split { train, test }
}
