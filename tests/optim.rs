//! The optimizer keys wired into the trainers (issue 11, strong baselines):
//! BP and IL apply Adam/AdamW exactly as the textbook formula says (checked
//! against a reference written out here in f64), Z-IL stays equal to BP bit
//! for bit with the same optimizer, runs with Adam and a cosine schedule are
//! deterministic, and `validate` refuses the keys where the actors train.

use ndarray::{Array2, ArrayView2, s};
use pcsim::algo::Trainer;
use pcsim::algo::bp::Backprop;
use pcsim::algo::optim::Optimizer;
use pcsim::algo::pc::{Il, PcConfig, Zil};
use pcsim::data::synthetic::{SyntheticConfig, generate};
use pcsim::experiment::{self, RunOptions};
use pcsim::nn::{Activation, ActivationKind, LossKind, Mlp, Updates};
use pcsim::scenario;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

#[path = "common/batches.rs"]
mod shared_batches;
use shared_batches::batches;
use std::path::Path;

fn data(n: usize, seed: u64) -> (Array2<f64>, Array2<f64>) {
    let cfg = SyntheticConfig {
        n_train: n,
        n_test: 1,
        n_features: 5,
        n_classes: 3,
        ..SyntheticConfig::default()
    };
    generate(&cfg, seed).train.to_real::<f64>()
}

fn network() -> Mlp<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    Mlp::kaiming(
        &[5, 7, 6, 3],
        Activation::new(ActivationKind::Tanh),
        LossKind::SoftmaxCe,
        &mut rng,
    )
}

/// Adam by the book, on every parameter of `mlp`: `d` is the descent
/// direction `−∇` (the SGD update at α = 1), `t` the 1-based step.
struct Reference {
    m: Updates<f64>,
    v: Updates<f64>,
    t: i32,
}

impl Reference {
    fn new(mlp: &Mlp<f64>) -> Self {
        Self {
            m: Updates::zeros_like(mlp),
            v: Updates::zeros_like(mlp),
            t: 0,
        }
    }

    fn step(&mut self, mlp: &mut Mlp<f64>, d: &Updates<f64>, lr: f64, wd: f64) {
        let (b1, b2, eps) = (0.9f64, 0.999f64, 1e-8);
        self.t += 1;
        let (c1, c2) = (1.0 - b1.powi(self.t), 1.0 - b2.powi(self.t));
        let one = |p: &mut f64, m: &mut f64, v: &mut f64, d: f64| {
            *p *= 1.0 - lr * wd; // AdamW: decay decoupled from the moments
            *m = b1 * *m + (1.0 - b1) * d;
            *v = b2 * *v + (1.0 - b2) * d * d;
            *p += lr * (*m / c1) / ((*v / c2).sqrt() + eps);
        };
        for l in 0..mlp.w.len() {
            for (((p, m), v), d) in mlp.w[l]
                .iter_mut()
                .zip(self.m.dw[l].iter_mut())
                .zip(self.v.dw[l].iter_mut())
                .zip(d.dw[l].iter())
            {
                one(p, m, v, *d);
            }
            for (((p, m), v), d) in mlp.b[l]
                .iter_mut()
                .zip(self.m.db[l].iter_mut())
                .zip(self.v.db[l].iter_mut())
                .zip(d.db[l].iter())
            {
                one(p, m, v, *d);
            }
        }
    }
}

fn max_abs_diff(a: &Mlp<f64>, b: &Mlp<f64>) -> f64 {
    let w = a.w.iter().zip(&b.w).flat_map(|(x, y)| {
        x.iter()
            .zip(y.iter())
            .map(|(p, q)| (p - q).abs())
            .collect::<Vec<_>>()
    });
    let bias = a.b.iter().zip(&b.b).flat_map(|(x, y)| {
        x.iter()
            .zip(y.iter())
            .map(|(p, q)| (p - q).abs())
            .collect::<Vec<_>>()
    });
    w.chain(bias).fold(0.0, f64::max)
}

/// Trains `trainer` for five batches and, alongside, the reference: Adam by
/// the book on the rule's own direction (`direction(mlp, x, y)`, the SGD
/// update at α = 1 from the same parameters). Returns the largest parameter
/// difference after each step and how far the parameters moved.
/// A rule's update direction at α = 1 for a batch, from given parameters.
type Direction<'a> = dyn FnMut(&Mlp<f64>, ArrayView2<f64>, ArrayView2<f64>) -> Updates<f64> + 'a;

fn against_reference(
    trainer: &mut dyn Trainer<f64>,
    direction: &mut Direction<'_>,
    lr: f64,
    wd: f64,
) -> (f64, f64) {
    let (x, y) = data(5 * 8, 17);
    let start = network();
    let (mut ours, mut theirs) = (start.clone(), start.clone());
    let mut reference = Reference::new(&start);
    let mut worst = 0.0f64;
    for k in 0..5 {
        let rows = k * 8..(k + 1) * 8;
        let (bx, by) = (x.slice(s![rows.clone(), ..]), y.slice(s![rows, ..]));
        let d = direction(&theirs, bx, by);
        reference.step(&mut theirs, &d, lr, wd);
        trainer.train_batch(&mut ours, bx, by, false);
        worst = worst.max(max_abs_diff(&ours, &theirs));
    }
    (worst, max_abs_diff(&ours, &start))
}

#[test]
fn bp_with_adamw_follows_the_hand_written_reference() {
    let (lr, wd) = (0.01, 0.05);
    for opt in [Optimizer::adam(), Optimizer::adamw(wd)] {
        let wd = if opt == Optimizer::adam() { 0.0 } else { wd };
        let mlp = network();
        let mut bp = Backprop::new(&mlp, lr, 0.0, 8).with_optimizer(&mlp, opt);
        let mut direction = |m: &Mlp<f64>, x: ArrayView2<f64>, y: ArrayView2<f64>| {
            let mut u = Updates::zeros_like(m);
            Backprop::new(m, 1.0, 0.0, 8).compute_updates(m, x, y, &mut u);
            u
        };
        let (worst, moved) = against_reference(&mut bp, &mut direction, lr, wd);
        // Five bias-corrected steps of size ≈ α move a parameter by up to 5α.
        assert!(worst <= 1e-12, "{opt:?}: {worst:e} from the reference");
        assert!(
            moved > 2.0 * lr && moved <= 5.0 * lr * 1.01,
            "moved {moved}"
        );
    }
}

#[test]
fn il_with_adamw_follows_the_hand_written_reference() {
    let (lr, wd) = (0.01, 0.05);
    let cfg = PcConfig {
        gamma: 0.2,
        steps: 10,
        beta: 0.5,
        ..PcConfig::default()
    };
    let mlp = network();
    let mut il = Il::new(&mlp, cfg.clone(), lr, 0.0)
        .unwrap()
        .with_optimizer(&mlp, Optimizer::adamw(wd));
    // IL's own direction: its SGD update at α = 1 from the same parameters.
    let mut direction = |m: &Mlp<f64>, x: ArrayView2<f64>, y: ArrayView2<f64>| {
        let mut sgd = Il::new(m, cfg.clone(), 1.0, 0.0).unwrap();
        sgd.train_batch(&mut m.clone(), x, y, true);
        sgd.last_updates().unwrap().clone()
    };
    let (worst, moved) = against_reference(&mut il, &mut direction, lr, wd);
    assert!(worst <= 1e-12, "{worst:e} from the reference");
    assert!(moved > 2.0 * lr, "moved {moved}");
}

/// The MNIST setting (f32, ReLU, sparse input): Z-IL and BP with the same
/// AdamW and a learning rate changed between steps stay equal bit for bit.
#[test]
fn zil_equals_bp_bit_for_bit_with_adamw_in_f32() {
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let start = Mlp::<f32>::kaiming(
        &[64, 48, 40, 4],
        Activation::new(ActivationKind::Relu),
        LossKind::SoftmaxCe,
        &mut rng,
    );
    let opt = Optimizer::adamw(1e-2);
    let (mut bp_net, mut zil_net) = (start.clone(), start.clone());
    let mut bp = Backprop::new(&bp_net, 1e-3, 0.0, 33).with_optimizer(&bp_net, opt);
    let mut zil = Zil::new(&zil_net, PcConfig::default(), 1e-3, 0.0)
        .unwrap()
        .with_optimizer(&zil_net, opt);
    for (step, (x, y)) in batches(30, 33).into_iter().enumerate() {
        let lr = 1e-3 * (1.0 + (step as f64 * 0.3).cos()) / 2.0 + 1e-5;
        bp.set_learning_rate(lr);
        zil.set_learning_rate(lr);
        let a = bp.train_batch(&mut bp_net, x.view(), y.view(), false);
        let b = zil.train_batch(&mut zil_net, x.view(), y.view(), step % 3 == 0);
        assert_eq!(a, b, "loss at step {step}");
        assert_eq!(bp_net.w, zil_net.w, "weights at step {step}");
        assert_eq!(bp_net.b, zil_net.b, "biases at step {step}");
    }
    let moved = (&bp_net.w[0] - &start.w[0]).mapv(f32::abs).sum();
    assert!(moved > 1e-2, "training did not move the weights ({moved})");
}

const SCENARIO: &str = r#"
name = "adamw"
seed = 4

[network]
layers = [6, 16, 12, 3]
activation = "relu"

[algorithm]
kind = "KIND"

[data.synthetic]
n_train = 300
n_test = 120
n_features = 6
n_classes = 3

[training]
epochs = 4
batch_size = 20
learning_rate = 0.01
optimizer = "adamw"
weight_decay = 1e-3
schedule = "cosine"
warmup_epochs = 1

[output]
plots = false
"#;

fn run(kind: &str, dir: &Path, threads: usize) -> (serde_json::Value, String) {
    let s = scenario::parse(&SCENARIO.replace("KIND", kind), Path::new("adamw.toml")).unwrap();
    scenario::validate(&s).unwrap();
    pcsim::nn::linalg::set_threads(threads);
    let summary = experiment::run(
        &s,
        &RunOptions {
            out_dir: dir.to_path_buf(),
            ..Default::default()
        },
    )
    .unwrap();
    pcsim::nn::linalg::set_threads(0);
    let metrics = std::fs::read_to_string(dir.join("metrics.csv")).unwrap();
    // Drop the wall-clock column (wherever it is).
    let wall = metrics
        .lines()
        .next()
        .and_then(|h| h.split(',').position(|c| c == "wall_seconds"))
        .expect("metrics.csv has wall_seconds");
    let metrics = metrics
        .lines()
        .map(|l| {
            l.split(',')
                .enumerate()
                .filter(|&(i, _)| i != wall)
                .map(|(_, c)| c)
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect::<Vec<_>>()
        .join("\n");
    (summary, metrics)
}

/// A run with AdamW, a cosine schedule and warm-up gives the same metrics at
/// every repetition and thread count, for BP, IL and Z-IL, and learns.
#[test]
fn adamw_cosine_runs_are_deterministic() {
    let tmp = tempfile::tempdir().unwrap();
    for kind in ["bp", "il", "zil"] {
        let (a, ma) = run(kind, &tmp.path().join(format!("{kind}-a")), 1);
        let (b, mb) = run(kind, &tmp.path().join(format!("{kind}-b")), 2);
        assert_eq!(ma, mb, "{kind}: metrics differ between two runs");
        assert_eq!(a["test_accuracy"], b["test_accuracy"]);
        let acc = a["test_accuracy"].as_f64().unwrap();
        // Three balanced classes: chance is 1/3.
        assert!(acc > 0.6, "{kind}: test accuracy {acc}");
    }
}

/// The actors apply the optimizer per layer slice (equal to lockstep:
/// `tests/runtime.rs`), so every driver takes the keys; spiking PC, with
/// its own SGD step, refuses them (`tests/spiking_pc.rs`).
#[test]
fn optimizer_keys_are_taken_by_every_driver_and_checked_together() {
    let text = SCENARIO.replace("KIND", "il");
    let load = |extra: &[&str]| {
        let overrides: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        scenario::parse_with_overrides(&text, Path::new("adamw.toml"), &overrides)
            .map_err(|e| e.to_string())
            .and_then(|s| scenario::validate(&s).map_err(|(k, m)| format!("{k}: {m}")))
    };
    assert!(load(&[]).is_ok());
    for driver in ["virtual", "wall"] {
        let given = load(&[&format!("runtime.driver={driver}")]);
        assert!(given.is_ok(), "{driver}: {given:?}");
    }
    // Keys that need another key name themselves.
    let e = load(&["training.lr_decay=0.9"]).unwrap_err();
    assert!(e.starts_with("training.lr_decay"), "{e}");
    let e = load(&["training.optimizer=sgd", "training.beta1=0.8"]).unwrap_err();
    assert!(e.starts_with("training.beta1"), "{e}");
}
