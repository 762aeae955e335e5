//! Spiking inference of one image through 784-256-256-10 LIF layers, 100 ms
//! at dt = 1 ms. Throughput is reported in synaptic events (spikes × fan-out),
//! so criterion's "elem/s" is synaptic events per second.
//!
//! The weights are Kaiming-random with a soft-LIF activation (hidden layers
//! fire less than a trained network's), or the trained weights of an `[snn]`
//! run with `PCSIM_SNN_WEIGHTS=<run>/weights`; the image
//! is the first MNIST test digit when `../shared/data/mnist` exists, else a
//! seeded digit-like pattern (about 19 % of the pixels on).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use pcsim::nn::activation::{Activation, ActivationKind, LifParams};
use pcsim::nn::{LossKind, Mlp};
use pcsim::snn::network::ImageResult;
use pcsim::snn::{Readout, SpikingConfig, SpikingNetwork, SynapseKind};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::hint::black_box;
use std::path::Path;

fn image() -> Vec<f32> {
    let dir = Path::new("../shared/data/mnist");
    if let Ok(split) = pcsim::data::mnist::load(dir) {
        return split.test.x.row(0).to_vec();
    }
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    (0..784)
        .map(|_| {
            if rng.gen_bool(0.19) {
                rng.gen_range(0.3f32..1.0)
            } else {
                0.0
            }
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let act = Activation::with_lif(
        ActivationKind::SoftLif,
        LifParams {
            smoothing: 0.01,
            ..LifParams::default()
        },
    );
    let mut mlp = Mlp::<f32>::kaiming(&[784, 256, 256, 10], act, LossKind::SoftmaxCe, &mut rng);
    for b in &mut mlp.b {
        b.fill(0.5);
    }
    let cfg = SpikingConfig {
        dt: 1e-3,
        presentation_time: 0.1,
        synapse: SynapseKind::Alpha,
        tau_s: 1.18e-3,
        readout: Readout::SpikeCount,
        checkpoints: Vec::new(),
        seed: 3,
    };
    // Trained weights from an `[snn]` run, when given.
    if let Ok(dir) = std::env::var("PCSIM_SNN_WEIGHTS") {
        for (i, (w, b)) in mlp.w.iter_mut().zip(&mut mlp.b).enumerate() {
            let dir = Path::new(&dir);
            *w = ndarray_npy::read_npy(dir.join(format!("W{}.npy", i + 2))).expect("W.npy");
            *b = ndarray_npy::read_npy(dir.join(format!("b{}.npy", i + 2))).expect("b.npy");
        }
        eprintln!("weights from {dir}");
    }
    let net = SpikingNetwork::from_mlp(&mlp, cfg).expect("valid network");
    let x = image();
    let mut ws = net.workspace();
    let mut out = ImageResult::default();
    net.run_image(&mut ws, &x, 0, &mut out);
    let events: u64 = (0..3)
        .map(|l| out.spikes[l] * net.sizes[l + 1] as u64)
        .sum();
    eprintln!(
        "one image, 100 ms: spikes per layer {:?}, {events} synaptic events",
        out.spikes
    );
    let mut group = c.benchmark_group("snn_inference");
    group.throughput(Throughput::Elements(events));
    group.bench_function("784-256-256-10_100ms_dt1ms", |b| {
        b.iter(|| net.run_image(&mut ws, black_box(&x), 0, &mut out))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
