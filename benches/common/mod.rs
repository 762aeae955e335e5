//! Inputs shared by the benchmarks: MNIST-shaped batches generated in code,
//! so no benchmark needs a download.

use ndarray::Array2;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// A batch that looks like MNIST to the kernels: ~19 % non-zero pixels in
/// [0, 1], one-hot targets over 10 classes.
pub fn mnist_like_batch(batch: usize, rng: &mut ChaCha8Rng) -> (Array2<f32>, Array2<f32>) {
    let x = Array2::from_shape_simple_fn((batch, 784), || {
        if rng.gen_bool(0.19) {
            rng.r#gen::<f32>()
        } else {
            0.0
        }
    });
    let mut y = Array2::zeros((batch, 10));
    for r in 0..batch {
        y[(r, rng.gen_range(0..10))] = 1.0;
    }
    (x, y)
}
