//! MNIST-like batches for the integration tests that train on tensors
//! directly: 8 × 8 "images", ~20 % non-zero, one-hot targets over 4 classes.

use ndarray::Array2;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// `n` batches of `rows` samples, the same for every call.
pub fn batches(n: usize, rows: usize) -> Vec<(Array2<f32>, Array2<f32>)> {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    (0..n)
        .map(|_| {
            let x = Array2::from_shape_simple_fn((rows, 64), || {
                if rng.gen_bool(0.2) {
                    rng.r#gen::<f32>()
                } else {
                    0.0
                }
            });
            let mut y = Array2::zeros((rows, 4));
            for r in 0..rows {
                y[(r, rng.gen_range(0..4))] = 1.0;
            }
            (x, y)
        })
        .collect()
}
