//! Actor-runtime benchmarks.
//!
//! 1. `virtual_msgs`: virtual-time overhead — messages per second through the
//!    discrete-event driver with tiny payloads (two actors ping-ponging).
//! 2. `il_throughput`: wall-clock asynchronous IL training throughput on
//!    MNIST shapes (784-256-256-10, batch 64, T = 20, f32, random data)
//!    against the synchronous lockstep IL step at the same batch size.
//!    The synchronous baseline runs on one thread (the library's default,
//!    `nn::linalg::set_threads`); each wall actor computes on one core.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ndarray::Array2;
use pcsim::algo::Trainer;
use pcsim::algo::pc::PcRule;
use pcsim::algo::pc::{Il, PcConfig};
use pcsim::nn::{Activation, ActivationKind, LossKind, Mlp};
use pcsim::runtime::actor::{Actor, Ctx, Direction, Envelope, Link, Port, Topology};
use pcsim::runtime::config::{Driver, Granularity, RuntimeConfig, Schedule, Trigger};
use pcsim::runtime::pc::PcSettings;
use pcsim::runtime::trainer::AsyncTrainer;
use pcsim::runtime::{Timing, VirtualDriver};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::time::Duration;

struct Ping {
    left: u64,
    first: bool,
    /// The one edge this actor owns.
    link: Link,
}

impl Actor for Ping {
    type Msg = u64;
    fn name(&self) -> String {
        "ping".into()
    }
    fn start(&mut self, ctx: &mut Ctx<u64>) {
        if self.first {
            ctx.send(self.link, 0, 0, 0);
        }
    }
    fn handle(&mut self, env: Envelope<u64>, ctx: &mut Ctx<u64>) {
        if self.left == 0 {
            return;
        }
        self.left -= 1;
        ctx.send(self.link, env.sample + 1, 0, env.payload + 1);
    }
    fn is_done(&self) -> bool {
        self.left == 0
    }
    fn waiting_for(&self) -> String {
        "the ball".into()
    }
}

fn virtual_msgs(c: &mut Criterion) {
    const N: u64 = 100_000;
    let mut g = c.benchmark_group("virtual_msgs");
    g.throughput(Throughput::Elements(2 * N));
    g.sample_size(10);
    g.bench_function("ping_pong_exponential_delays", |b| {
        b.iter(|| {
            let mut topo = Topology::new();
            let there = topo.add(0, 1, Port::Forward, Direction::Up);
            let back = topo.add(1, 0, Port::Backward, Direction::Down);
            let cfg = RuntimeConfig {
                delay_up: pcsim::runtime::config::DelayConfig {
                    kind: pcsim::runtime::config::DelayKind::Exponential,
                    mean: 1.0,
                    spread: 0.0,
                },
                ..Default::default()
            };
            let timing = Timing::from_config(&cfg, &["a".into(), "b".into()], 1);
            let actors = vec![
                Ping {
                    left: N,
                    first: true,
                    link: there,
                },
                Ping {
                    left: N,
                    first: false,
                    link: back,
                },
            ];
            let mut d = VirtualDriver::new(actors, topo, timing, 1e12);
            d.run().expect("runs");
            d.stats.messages()
        })
    });
    g.finish();
}

type Batches = Vec<(Array2<f32>, Array2<f32>)>;

fn mnist_shapes() -> (Mlp<f32>, Batches) {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mlp = Mlp::<f32>::kaiming(
        &[784, 256, 256, 10],
        Activation::new(ActivationKind::Relu),
        LossKind::SoftmaxCe,
        &mut rng,
    );
    // PCSIM_BENCH_BATCH overrides the batch size (default 64, the target's).
    let batch: usize = std::env::var("PCSIM_BENCH_BATCH")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    let batches = (0..4)
        .map(|_| {
            let x = Array2::from_shape_simple_fn((batch, 784), || rng.r#gen::<f32>());
            let mut y = Array2::zeros((batch, 10));
            for mut row in y.rows_mut() {
                row[rng.gen_range(0..10)] = 1.0;
            }
            (x, y)
        })
        .collect();
    (mlp, batches)
}

fn il_throughput(c: &mut Criterion) {
    let (mlp0, batches) = mnist_shapes();
    let per_iter = batches.iter().map(|b| b.0.nrows()).sum::<usize>() as u64;
    let mut g = c.benchmark_group("il_throughput");
    g.throughput(Throughput::Elements(per_iter));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(8));
    let cfg = PcConfig {
        gamma: 0.1,
        steps: 20,
        ..Default::default()
    };
    g.bench_function("sync_lockstep_il", |b| {
        let mut mlp = mlp0.clone();
        let mut il = Il::new(&mlp, cfg.clone(), 0.01, 0.0).expect("il");
        b.iter(|| {
            for (x, y) in &batches {
                il.train_batch(&mut mlp, x.view(), y.view(), false);
            }
        })
    });
    for (name, granularity, groups, workers, pipeline) in [
        ("wall_layer_2workers", Granularity::Layer, 1, 2, 1),
        ("wall_layer_2workers_pipeline2", Granularity::Layer, 1, 2, 2),
        ("wall_groups2_2workers", Granularity::Groups, 2, 2, 1),
        ("wall_nodes_2workers", Granularity::Nodes, 1, 2, 1),
        (
            "wall_groups2_2workers_pipeline2",
            Granularity::Groups,
            2,
            2,
            2,
        ),
        (
            "wall_groups2_1worker_pipeline2",
            Granularity::Groups,
            2,
            1,
            2,
        ),
    ] {
        g.bench_function(name, |b| {
            let mut mlp = mlp0.clone();
            let rt = RuntimeConfig {
                driver: Driver::Wall,
                granularity,
                groups,
                workers,
                pipeline,
                ..Default::default()
            };
            let settings = PcSettings {
                rule: PcRule::il(cfg.clone(), 4, 0.01, 0.0),
                schedule: Schedule::Event,
                trigger: Trigger::Event,
                period: 10.0,
                pipeline,
            };
            let mut t = AsyncTrainer::<f32>::new(rt, settings, 1);
            b.iter(|| {
                // All batches in one run, so `pipeline > 1` can overlap them.
                t.train_batches(&mut mlp, batches.clone(), false)
                    .expect("wall run")
            })
        });
    }
    g.finish();
}

criterion_group!(benches, virtual_msgs, il_throughput);
criterion_main!(benches);
