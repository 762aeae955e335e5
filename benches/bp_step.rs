//! One backprop training step on MNIST shapes (784-256-256-10, batch 64, f32),
//! on synthetic MNIST-like inputs (sparse, in [0, 1]) so no download is needed.

use criterion::{Criterion, criterion_group, criterion_main};
use pcsim::algo::Trainer;
use pcsim::algo::bp::Backprop;
use pcsim::nn::{Activation, ActivationKind, LossKind, Mlp};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::hint::black_box;

mod common;
use common::mnist_like_batch;

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
