//! One backprop training step on MNIST shapes (784-256-256-10, batch 64, f32),
//! on synthetic MNIST-like inputs (sparse, in [0, 1]) so no download is needed.

use criterion::{Criterion, criterion_group, criterion_main};
use ndarray::Array2;
use pcsim::algo::Trainer;
use pcsim::algo::bp::Backprop;
use pcsim::nn::{Activation, ActivationKind, LossKind, Mlp};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::hint::black_box;

/// A batch that looks like MNIST to the kernels: ~19 % non-zero pixels.
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

fn bench(c: &mut Criterion) {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut mlp = Mlp::<f32>::kaiming(
        &[784, 256, 256, 10],
        Activation::new(ActivationKind::Relu),
        LossKind::SoftmaxCe,
        &mut rng,
    );
    let (x, y) = mnist_like_batch(64, &mut rng);
    let mut bp = Backprop::new(&mlp, 0.01, 0.0, 64);
    for threads in [1, 2] {
        pcsim::nn::linalg::set_threads(threads);
        c.bench_function(
            &format!("bp_step 784-256-256-10 b64 f32 threads={threads}"),
            |b| b.iter(|| black_box(bp.train_batch(&mut mlp, x.view(), y.view(), false))),
        );
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
