//! One IL training step (784-256-256-10, batch 64, T = 20, γ = 0.1, f32)
//! next to one Z-IL step and one backprop step on the same shapes, on
//! synthetic MNIST-like inputs (sparse, in [0, 1]) so no download is needed,
//! at 1 thread and at 2 (the lockstep driver splits a batch's rows).

use criterion::{Criterion, criterion_group, criterion_main};
use pcsim::algo::Trainer;
use pcsim::algo::bp::Backprop;
use pcsim::algo::pc::{Il, PcConfig, Zil};
use pcsim::nn::{Activation, ActivationKind, LossKind, Mlp};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::hint::black_box;

mod common;
use common::mnist_like_batch;

fn bench(c: &mut Criterion) {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mlp = Mlp::<f32>::kaiming(
        &[784, 256, 256, 10],
        Activation::new(ActivationKind::Relu),
        LossKind::SoftmaxCe,
        &mut rng,
    );
    let (x, y) = mnist_like_batch(64, &mut rng);
    let cfg = PcConfig {
        gamma: 0.1,
        steps: 20,
        ..PcConfig::default()
    };

    for threads in [1, 2] {
        pcsim::nn::linalg::set_threads(threads);
        steps(c, &mlp, &x, &y, &cfg, threads);
    }
    pcsim::nn::linalg::set_threads(1);
}

fn steps(
    c: &mut Criterion,
    mlp: &Mlp<f32>,
    x: &ndarray::Array2<f32>,
    y: &ndarray::Array2<f32>,
    cfg: &PcConfig,
    threads: usize,
) {
    // A small learning rate keeps the network near its initial state over
    // the many iterations criterion runs.
    let mut m = mlp.clone();
    let mut bp = Backprop::new(&m, 0.001, 0.0, 64);
    c.bench_function(&format!("bp_step 784-256-256-10 b64 f32 {threads}t"), |b| {
        b.iter(|| black_box(bp.train_batch(&mut m, x.view(), y.view(), false)))
    });

    let mut m = mlp.clone();
    let mut il = Il::new(&m, cfg.clone(), 0.001, 0.0).expect("valid config");
    c.bench_function(
        &format!("il_step 784-256-256-10 b64 T20 f32 {threads}t"),
        |b| b.iter(|| black_box(il.train_batch(&mut m, x.view(), y.view(), false))),
    );

    let mut m = mlp.clone();
    let mut zil = Zil::new(&m, cfg.clone(), 0.001, 0.0).expect("valid config");
    c.bench_function(
        &format!("zil_step 784-256-256-10 b64 f32 {threads}t"),
        |b| b.iter(|| black_box(zil.train_batch(&mut m, x.view(), y.view(), false))),
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
