//! Spiking predictive coding (issue 8), on seeded synthetic data: as the
//! sigma-delta quantum θ falls the spiking update approaches the rate-IL
//! update on the same weights and batch; runs are byte-identical for a seed;
//! the spike counts are consistent (events = spikes × fan-out); errors sent
//! down as sigma-delta spikes approach rate IL's update as θ_e falls; keys
//! that do not apply are refused naming the key; the rule learns. Run with
//! `--nocapture` to see the measured numbers.

use ndarray::Array2;
use pcsim::algo::Trainer;
use pcsim::algo::pc::spiking::{
    ErrorCode, ForwardCode, InputCode, SpikingPc, SpikingPcConfig, WindowAverage, total_rel_diff,
};
use pcsim::algo::pc::{Il, PcConfig};
use pcsim::data::synthetic::{SyntheticConfig, generate};
use pcsim::experiment::{self, RunOptions};
use pcsim::nn::activation::LifParams;
use pcsim::nn::{Activation, ActivationKind, LossKind, Mlp};
use pcsim::scenario;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::path::Path;

fn data(n: usize, features: usize, classes: usize, seed: u64) -> (Array2<f64>, Array2<f64>) {
    let cfg = SyntheticConfig {
        n_train: n,
        n_test: 1,
        n_features: features,
        n_classes: classes,
        ..SyntheticConfig::default()
    };
    generate(&cfg, seed).train.to_real::<f64>()
}

fn network(sizes: &[usize], seed: u64) -> Mlp<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    Mlp::kaiming(
        sizes,
        Activation::new(ActivationKind::Relu),
        LossKind::SoftmaxCe,
        &mut rng,
    )
}

fn pc(beta: f64) -> PcConfig {
    PcConfig {
        gamma: 0.1,
        steps: 20,
        beta,
        predict_steps: 0,
        feedback_seed: None,
        step_control: pcsim::algo::pc::StepControl::Fixed,
    }
}

/// The rate-IL update (learning rate included) on a copy of `mlp`.
fn il_update(
    mlp: &Mlp<f64>,
    cfg: PcConfig,
    x: &Array2<f64>,
    y: &Array2<f64>,
) -> pcsim::nn::Updates<f64> {
    let mut il = Il::new(mlp, cfg, 0.1, 0.0).expect("IL");
    let mut copy = mlp.clone();
    il.train_batch(&mut copy, x.view(), y.view(), true);
    il.last_updates().expect("kept").clone()
}

#[test]
fn update_approaches_rate_il_as_theta_falls() {
    let (x, y) = data(32, 8, 4, 5);
    for (beta, seed) in [(1.0, 1), (0.1, 2)] {
        let mlp = network(&[8, 24, 16, 4], seed);
        let reference = il_update(&mlp, pc(beta), &x, &y);
        let mut diffs = Vec::new();
        for theta in [1e-2, 1e-3, 1e-4] {
            let cfg = SpikingPcConfig {
                theta,
                theta_input: theta,
                ..SpikingPcConfig::default()
            };
            let mut spk = SpikingPc::new(&mlp, cfg, pc(beta), LifParams::default(), 0.1, 0.0, 7)
                .expect("spiking PC");
            let upd = spk.compute_update(&mlp, x.view(), y.view()).clone();
            let per_layer = upd.rel_diff(&reference);
            let d = total_rel_diff(&upd, &reference);
            println!(
                "β {beta}, θ {theta:e}: rel diff from rate IL {d:.4e} (per layer {per_layer:?})"
            );
            diffs.push(d);
        }
        assert!(
            diffs.windows(2).all(|w| w[1] < w[0]),
            "β {beta}: the difference from rate IL must fall with θ: {diffs:?}"
        );
        assert!(
            diffs[2] < 0.05,
            "β {beta}: at θ = 1e-4 the update must be within 5 % of rate IL's, got {}",
            diffs[2]
        );
    }
}

/// Errors down as sigma-delta spikes (`errors = "sigma_delta"`), with a fine
/// forward code (θ = θ_in = 1e-4): as θ_e falls the update approaches rate
/// IL's (transposed and random feedback), and the error counts are
/// consistent (events = error spikes × fan-out of the layer below; at most
/// one message per sample, step and edge; no graded message).
#[test]
fn update_approaches_rate_il_as_theta_error_falls() {
    let (x, y) = data(32, 8, 4, 5);
    let sizes = [8, 24, 16, 4];
    let steps = pc(1.0).steps as u64;
    for (beta, seed, feedback) in [(1.0, 1, None), (0.1, 2, None), (0.1, 3, Some(9))] {
        let mlp = network(&sizes, seed);
        let pcfg = PcConfig {
            feedback_seed: feedback,
            ..pc(beta)
        };
        let reference = il_update(&mlp, pcfg.clone(), &x, &y);
        let mut diffs = Vec::new();
        for theta_error in [1e-2, 1e-3, 1e-4] {
            let cfg = SpikingPcConfig {
                theta: 1e-4,
                theta_input: 1e-4,
                errors: ErrorCode::SigmaDelta,
                theta_error,
                ..SpikingPcConfig::default()
            };
            let mut spk =
                SpikingPc::new(&mlp, cfg, pcfg.clone(), LifParams::default(), 0.1, 0.0, 7)
                    .expect("spiking PC");
            let upd = spk.compute_update(&mlp, x.view(), y.view()).clone();
            let d = total_rel_diff(&upd, &reference);
            let c = spk.counts().clone();
            let digest = c.digest(&sizes, None);
            println!(
                "β {beta}, feedback {feedback:?}, θ_e {theta_error:e}: rel diff from rate IL {d:.4e} (per layer {:?}); error spikes/sample {:?}, events/sample {:?}, messages/sample {:?}",
                upd.rel_diff(&reference),
                digest["error_spikes_per_sample_per_layer"],
                digest["error_synaptic_events_per_sample_per_layer"],
                digest["error_spike_messages_per_sample_per_layer"],
            );
            assert_eq!(
                c.graded_messages, 0,
                "sigma-delta errors send no graded message"
            );
            assert_eq!(c.error_spikes.len(), sizes.len() - 2);
            let events = digest["error_synaptic_events_per_sample_per_layer"]
                .as_array()
                .unwrap();
            for (k, (&s, &m)) in c
                .error_spikes
                .iter()
                .zip(&c.error_spike_messages)
                .enumerate()
            {
                assert!(
                    s > 0,
                    "θ_e {theta_error}: layer {} sent no error spike",
                    k + 3
                );
                assert!(m <= s && m <= 32 * steps, "{m} messages, {s} spikes");
                let e = events[k].as_f64().unwrap();
                let want = s as f64 / 32.0 * sizes[k + 1] as f64;
                assert!((e - want).abs() <= 1e-9 * want, "{e} vs {want}");
            }
            diffs.push(d);
        }
        assert!(
            diffs.windows(2).all(|w| w[1] < w[0]),
            "β {beta}, feedback {feedback:?}: the difference from rate IL must fall with θ_e: {diffs:?}"
        );
        assert!(
            diffs[2] < 0.05,
            "β {beta}, feedback {feedback:?}: at θ_e = 1e-4 the update must be within 5 % of rate IL's, got {}",
            diffs[2]
        );
    }
}

/// With the default graded errors no error spike is counted and the digest
/// has no error keys (its fields are those of the graded runs before).
#[test]
fn graded_errors_count_no_error_spikes() {
    let (x, y) = data(16, 8, 4, 3);
    let sizes = [8, 12, 10, 4];
    let mlp = network(&sizes, 4);
    let mut spk = SpikingPc::new(
        &mlp,
        SpikingPcConfig::default(),
        pc(1.0),
        LifParams::default(),
        0.1,
        0.0,
        7,
    )
    .unwrap();
    spk.compute_update(&mlp, x.view(), y.view());
    let c = spk.counts();
    assert!(c.error_spikes.is_empty() && c.error_spike_messages.is_empty());
    assert!(c.graded_messages > 0);
    let d = c.digest(&sizes, None);
    assert!(d.get("error_spikes_per_sample").is_none(), "{d}");
}

#[test]
fn delayed_spikes_are_delivered_or_in_flight() {
    let (x, y) = data(16, 8, 4, 3);
    let sizes = [8, 12, 10, 4];
    let mlp = network(&sizes, 4);
    let mut diffs = Vec::new();
    let reference = il_update(&mlp, pc(1.0), &x, &y);
    for jitter in [0, 1, 3] {
        let cfg = SpikingPcConfig {
            theta: 0.001,
            theta_input: 0.001,
            delay_jitter: jitter,
            ..SpikingPcConfig::default()
        };
        let mut spk =
            SpikingPc::new(&mlp, cfg, pc(1.0), LifParams::default(), 0.1, 0.0, 7).unwrap();
        let upd = spk.compute_update(&mlp, x.view(), y.view()).clone();
        let c = spk.counts().clone();
        let sent: u64 = c.spike_messages.iter().sum();
        if jitter > 0 {
            assert_eq!(
                sent,
                c.delivered + c.in_flight,
                "jitter {jitter}: sent = delivered + in flight"
            );
            assert!(c.delivered > 0);
        }
        diffs.push(total_rel_diff(&upd, &reference));
    }
    println!("rel diff from rate IL vs delay jitter 0, 1, 3 steps: {diffs:?}");
    assert!(diffs[0] < 0.05 && diffs[2] > diffs[0], "{diffs:?}");
}

#[test]
fn spike_counts_are_consistent() {
    let (x, y) = data(16, 8, 4, 3);
    let sizes = [8, 12, 10, 4];
    let mlp = network(&sizes, 4);
    let cfg = SpikingPcConfig {
        theta: 0.01,
        theta_input: 0.01,
        ..SpikingPcConfig::default()
    };
    let mut spk = SpikingPc::new(&mlp, cfg, pc(1.0), LifParams::default(), 0.1, 0.0, 7).unwrap();
    spk.compute_update(&mlp, x.view(), y.view());
    let c = spk.counts().clone();
    assert_eq!(c.samples, 16);
    assert_eq!(c.steps, 16 * 21);
    // The input is announced once, in the sweep: one message per sample,
    // and at least |x| / θ_in − 1 quanta per input.
    assert_eq!(c.spike_messages[0], 16);
    let min_input: u64 = x
        .iter()
        .map(|v| ((v.abs() / 0.01).floor() as u64).saturating_sub(1))
        .sum();
    assert!(c.spikes[0] >= min_input, "{} < {min_input}", c.spikes[0]);
    // A message per sample, step and edge at most.
    for &m in &c.spike_messages {
        assert!(m <= c.steps, "{m} messages > {} steps", c.steps);
    }
    let d = c.digest(&sizes, None);
    let spikes = d["spikes_per_sample_per_layer"].as_array().unwrap();
    let events = d["synaptic_events_per_sample_per_layer"]
        .as_array()
        .unwrap();
    for l in 0..3 {
        let (s, e) = (spikes[l].as_f64().unwrap(), events[l].as_f64().unwrap());
        assert!(s > 0.0, "layer {} sent no spikes", l + 1);
        assert!((e - s * sizes[l + 1] as f64).abs() <= 1e-9 * e);
    }
}

const BASE: &str = r#"
name = "spk"
seed = 3
[network]
layers = [6, 16, 12, 3]
activation = "relu"
[algorithm]
kind = "spiking_pc"
[algorithm.inference]
gamma = 0.1
steps = 15
[algorithm.spiking]
theta = 0.01
theta_input = 0.01
[data.synthetic]
n_train = 600
n_test = 300
n_features = 6
n_classes = 3
[training]
epochs = 4
batch_size = 20
learning_rate = 0.1
[output]
plots = false
equivalence_every = 10
"#;

fn load(text: &str, overrides: &[&str]) -> Result<scenario::Scenario, scenario::ScenarioError> {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), text).unwrap();
    let ov: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
    scenario::load(file.path(), &ov)
}

/// Every output file but the wall-clock fields.
fn outputs(s: &scenario::Scenario, dir: &Path) -> Vec<(String, String)> {
    experiment::run(
        s,
        &RunOptions {
            out_dir: dir.to_path_buf(),
            ..Default::default()
        },
    )
    .expect("run");
    let mut out = Vec::new();
    for name in ["metrics.csv", "equivalence.csv", "summary.json"] {
        let text = std::fs::read_to_string(dir.join(name)).unwrap();
        let text = if name == "summary.json" {
            let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
            for k in ["wall_seconds", "train_seconds", "seconds_per_epoch"] {
                v.as_object_mut().unwrap().remove(k);
            }
            v.to_string()
        } else if name == "metrics.csv" {
            text.lines()
                .map(|l| l.rsplit_once(',').map_or(l, |(h, _)| h).to_string())
                .collect::<Vec<_>>()
                .join("\n")
        } else {
            text
        };
        out.push((name.to_string(), text));
    }
    out
}

#[test]
fn runs_are_byte_identical_for_a_seed_and_learn() {
    let tmp = tempfile::tempdir().unwrap();
    let lif = [
        "network.activation=\"lif\"",
        "network.hidden_bias_init=1.0",
        "algorithm.spiking={code=\"lif\", input=\"poisson\"}",
        "training.epochs=1",
    ];
    let jitter = ["algorithm.spiking.delay_jitter=3", "training.epochs=1"];
    let errors = [
        "algorithm.spiking.errors=\"sigma_delta\"",
        "algorithm.spiking.theta_error=0.001",
    ];
    for (name, overrides) in [
        ("sigma_delta", &[][..]),
        ("lif", &lif[..]),
        ("jitter", &jitter[..]),
        ("error_spikes", &errors[..]),
    ] {
        let s = load(BASE, overrides).expect("valid");
        let a = outputs(&s, &tmp.path().join(format!("{name}-a")));
        let b = outputs(&s, &tmp.path().join(format!("{name}-b")));
        assert_eq!(a, b, "{name}: two runs of one seed differ");
        let mut other = s.clone();
        other.seed += 1;
        let c = outputs(&other, &tmp.path().join(format!("{name}-c")));
        assert_ne!(a[0], c[0], "{name}: another seed gives the same metrics");
        let summary: serde_json::Value = serde_json::from_str(&a[2].1).unwrap();
        let acc = summary["test_accuracy"].as_f64().unwrap();
        let spk = &summary["spiking_pc"];
        println!(
            "{name}: accuracy {acc:.3}, spikes/sample {:.1}, events/sample {:.1}, vs IL {}",
            spk["training"]["spikes_per_sample"],
            spk["training"]["synaptic_events_per_sample"],
            spk["vs_il"]
        );
        assert!(spk["training"]["spikes_per_sample"].as_f64().unwrap() > 0.0);
        assert!(spk["vs_il"]["compared_batches"].as_u64().unwrap() > 0);
        if name == "error_spikes" {
            println!(
                "error_spikes: error spikes/sample {}, error events/sample {}, error messages/sample {}",
                spk["training"]["error_spikes_per_sample"],
                spk["training"]["error_synaptic_events_per_sample"],
                spk["training"]["error_spike_messages_per_sample"]
            );
            assert!(spk["training"]["error_spikes_per_sample"].as_f64().unwrap() > 0.0);
            assert_eq!(spk["theta_error"], 0.001);
            let header = a[0].1.lines().next().unwrap();
            for col in [
                "error_spikes_per_sample",
                "error_synaptic_events_per_sample",
                "error_spike_messages_per_sample",
                "error_spikes_per_sample_l3",
                "error_spikes_per_sample_l4",
            ] {
                assert!(header.split(',').any(|h| h == col), "{col} not in {header}");
            }
            assert!(
                acc > 0.5,
                "spiking PC with error spikes should learn (chance 1/3): {acc}"
            );
        } else {
            assert!(spk["training"].get("error_spikes_per_sample").is_none());
        }
        if name == "sigma_delta" {
            let il = load(BASE, &[]).unwrap();
            let mut il = il;
            il.algorithm.kind = scenario::AlgorithmKind::Il;
            il.algorithm.spiking = None;
            let il_out = outputs(&il, &tmp.path().join("il"));
            let il_sum: serde_json::Value = serde_json::from_str(&il_out[2].1).unwrap();
            let il_acc = il_sum["test_accuracy"].as_f64().unwrap();
            println!("rate IL on the same run: accuracy {il_acc:.3}");
            assert!(
                acc > 0.5,
                "sigma-delta spiking PC should learn (chance 1/3): {acc}"
            );
            assert!(
                (acc - il_acc).abs() < 0.05,
                "θ = 0.01 spiking PC {acc} vs rate IL {il_acc}"
            );
        }
    }
}

/// The LIF code on an easy seeded task (4 Gaussian classes): soft-LIF value
/// nodes with hidden bias 2 (every unit starts firing), Poisson input,
/// τ_s 20 ms, a 100-step feedforward sweep, T 200, the update from the
/// window means of the last 100 steps.
const LIF: &str = r#"
name = "spk-lif"
seed = 1
[network]
layers = [10, 24, 16, 4]
activation = "soft_lif"
hidden_bias_init = 2.0
[algorithm]
kind = "spiking_pc"
[algorithm.inference]
gamma = 0.1
steps = 200
[algorithm.spiking]
code = "lif"
input = "poisson"
tau_s = 0.02
sweep_steps = 100
learning_window = 100
window_average = "means"
[data.synthetic]
n_train = 400
n_test = 200
n_features = 10
n_classes = 4
clusters_per_class = 1
[training]
epochs = 3
batch_size = 20
learning_rate = 0.03
[output]
plots = false
equivalence_every = 0
"#;

#[test]
fn lif_code_learns() {
    let tmp = tempfile::tempdir().unwrap();
    let s = load(LIF, &[]).expect("valid");
    experiment::run(
        &s,
        &RunOptions {
            out_dir: tmp.path().to_path_buf(),
            ..Default::default()
        },
    )
    .expect("run");
    let read = |name: &str| std::fs::read_to_string(tmp.path().join(name)).unwrap();
    let summary: serde_json::Value = serde_json::from_str(&read("summary.json")).unwrap();
    let acc = summary["test_accuracy"].as_f64().unwrap();
    let losses: Vec<f64> = read("metrics.csv")
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(2).unwrap().parse().unwrap())
        .collect();
    let rates = &summary["spiking_pc"]["training"]["mean_rate_hz"];
    println!("LIF code: train loss per epoch {losses:?}, test accuracy {acc}, rates (Hz) {rates}");
    let chance_loss = 4f64.ln();
    let last = *losses.last().unwrap();
    assert!(
        last < 0.75 * chance_loss,
        "the LIF code's training loss must fall clearly below ln 4 = {chance_loss:.3}: {losses:?}"
    );
    assert!(losses[0] > last, "{losses:?}");
    assert!(acc > 0.6, "test accuracy {acc} (chance 0.25)");
    // The hidden senders fire in the tens of Hz (the trace needs rate · τ_s ≫ 1).
    for l in 1..3 {
        let r = rates[l].as_f64().unwrap();
        assert!(r > 20.0 && r < 250.0, "layer {} fires at {r} Hz", l + 1);
    }
}

#[test]
fn keys_that_do_not_apply_are_refused_by_name() {
    let cases: &[(&[&str], &str, &str)] = &[
        (
            &["algorithm.spiking.sweep_steps=10"],
            "algorithm.spiking.sweep_steps",
            "LIF code",
        ),
        (
            &["algorithm.spiking.window_average=\"means\""],
            "algorithm.spiking.window_average",
            "LIF code",
        ),
        (
            &[
                "algorithm.spiking.code=\"lif\"",
                "network.activation=\"lif\"",
                "algorithm.spiking.sweep_steps=2",
                "algorithm.spiking.delay_jitter=2",
            ],
            "algorithm.spiking.sweep_steps",
            "delay_jitter",
        ),
        (
            &[
                "algorithm.spiking.code=\"lif\"",
                "network.activation=\"lif\"",
                "algorithm.spiking.window_average=\"mean\"",
            ],
            "algorithm.spiking.window_average",
            "means",
        ),
        (
            &["algorithm.kind=\"il\"", "algorithm.spiking.theta=0.02"],
            "algorithm.spiking",
            "spiking_pc",
        ),
        (
            &["algorithm.spiking.dt=0.002"],
            "algorithm.spiking.dt",
            "lif",
        ),
        (
            &["algorithm.spiking.tau_s=0.01"],
            "algorithm.spiking.tau_s",
            "poisson",
        ),
        (
            &["algorithm.spiking.code=\"lif\""],
            "algorithm.spiking.code",
            "soft_lif",
        ),
        (
            &[
                "algorithm.spiking.code=\"lif\"",
                "network.activation=\"lif\"",
                "algorithm.spiking.theta=0.02",
            ],
            "algorithm.spiking.theta",
            "sigma_delta",
        ),
        (
            &[
                "algorithm.spiking.input=\"poisson\"",
                "algorithm.spiking.theta_input=0.02",
            ],
            "algorithm.spiking.theta_input",
            "sigma_delta",
        ),
        (
            &["algorithm.spiking.theta=0"],
            "algorithm.spiking.theta",
            "> 0",
        ),
        (
            &["algorithm.spiking.theta_error=0.01"],
            "algorithm.spiking.theta_error",
            "errors = \"sigma_delta\"",
        ),
        (
            &[
                "algorithm.spiking.errors=\"sigma_delta\"",
                "algorithm.spiking.theta_error=0",
            ],
            "algorithm.spiking.theta_error",
            "> 0",
        ),
        (
            &["algorithm.spiking.errors=\"spikes\""],
            "algorithm.spiking.errors",
            "sigma_delta",
        ),
        (
            &[
                "runtime.driver=\"virtual\"",
                "algorithm.spiking.errors=\"sigma_delta\"",
            ],
            "algorithm.spiking.errors",
            "graded",
        ),
        (
            &[
                "runtime.driver=\"wall\"",
                "algorithm.spiking.errors=\"sigma_delta\"",
            ],
            "algorithm.spiking.errors",
            "runtime.driver = \"lockstep\"",
        ),
        (
            &["algorithm.spiking.learning_window=16"],
            "algorithm.spiking.learning_window",
            "1..=",
        ),
        (
            &["algorithm.spiking.delay_jitter=16"],
            "algorithm.spiking.delay_jitter",
            "at most",
        ),
        (
            &[
                "algorithm.spiking.code=\"lif\"",
                "network.activation=\"lif\"",
                "algorithm.spiking.input=\"poisson\"",
                "algorithm.spiking.delay_jitter=2",
            ],
            "algorithm.spiking.delay_jitter",
            "sigma-delta",
        ),
        (
            &["algorithm.spiking.learning_window=0"],
            "algorithm.spiking.learning_window",
            "1..=",
        ),
        (
            &["algorithm.inference.predict_steps=5"],
            "algorithm.inference.predict_steps",
            "spiking_pc",
        ),
        (
            &["runtime.driver=\"virtual\"", "runtime.schedule=\"clocked\""],
            "runtime.schedule",
            "event",
        ),
        (
            &[
                "runtime.driver=\"virtual\"",
                "runtime.granularity=\"groups\"",
                "runtime.groups=2",
            ],
            "runtime.granularity",
            "one actor per layer",
        ),
        (
            &["runtime.driver=\"virtual\"", "runtime.loss=0.1"],
            "runtime.loss",
            "stall",
        ),
        (
            &[
                "runtime.driver=\"virtual\"",
                "algorithm.spiking.code=\"lif\"",
                "network.activation=\"lif\"",
            ],
            "algorithm.spiking.code",
            "sigma-delta",
        ),
        (
            &[
                "runtime.driver=\"virtual\"",
                "algorithm.spiking.input=\"poisson\"",
            ],
            "algorithm.spiking.input",
            "sigma-delta",
        ),
        (
            &[
                "runtime.driver=\"virtual\"",
                "algorithm.spiking.delay_jitter=2",
            ],
            "algorithm.spiking.delay_jitter",
            "runtime.delay_up",
        ),
        (
            &["training.optimizer=\"adamw\""],
            "training.optimizer",
            "spiking_pc",
        ),
        (
            &["training.schedule=\"cosine\""],
            "training.schedule",
            "spiking_pc",
        ),
        (
            &["algorithm.spiking.code=\"morse\""],
            "algorithm.spiking.code",
            "sigma_delta",
        ),
        (
            &[
                "algorithm.spiking.input=\"poisson\"",
                "algorithm.spiking.dt=0.5",
            ],
            "algorithm.spiking.dt",
            "0.01",
        ),
    ];
    let bare = BASE.replace(
        "[algorithm.spiking]\ntheta = 0.01\ntheta_input = 0.01\n",
        "",
    );
    for (overrides, key, fragment) in cases {
        let err = load(&bare, overrides).expect_err(&format!("{overrides:?} must be refused"));
        let msg = err.to_string();
        assert!(
            err.key.as_deref() == Some(*key),
            "{overrides:?}: expected key {key}, got {msg}"
        );
        assert!(
            msg.contains(fragment),
            "{overrides:?}: message should mention {fragment}: {msg}"
        );
    }
    // The defaults are filled in (and printed by `validate`) for spiking_pc.
    let s = load(&bare, &[]).unwrap();
    assert_eq!(s.algorithm.spiking, Some(SpikingPcConfig::default()));
    assert!(s.to_toml().contains("[algorithm.spiking]"));
}

/// `runtime.driver = "virtual"` (or `"wall"`) runs the layers as actors
/// (`runtime::spc`): through the whole experiment (f32, random delays on the
/// virtual driver) the losses, accuracies and BP comparison equal the
/// lockstep run's, byte for byte.
#[test]
fn scenario_on_the_virtual_driver_equals_lockstep() {
    let tmp = tempfile::tempdir().unwrap();
    let lock = load(BASE, &["training.epochs=2"]).expect("valid");
    let actors = load(
        BASE,
        &[
            "training.epochs=2",
            "runtime.driver=\"virtual\"",
            "runtime.delay_up={kind=\"uniform\", mean=1.0, spread=0.5}",
            "runtime.delay_down={kind=\"exponential\", mean=0.7}",
        ],
    )
    .expect("valid");
    let a = outputs(&lock, &tmp.path().join("lockstep"));
    let b = outputs(&actors, &tmp.path().join("virtual"));
    // metrics.csv: the common columns (lockstep adds its spike metrics).
    let cols = |t: &str| -> Vec<String> {
        t.lines()
            .map(|l| l.split(',').take(5).collect::<Vec<_>>().join(","))
            .collect()
    };
    assert_eq!(cols(&a[0].1), cols(&b[0].1), "metrics differ");
    assert_eq!(a[1], b[1], "equivalence.csv differs");
    let acc = |t: &str| {
        let v: serde_json::Value = serde_json::from_str(t).unwrap();
        v["test_accuracy"].as_f64().unwrap()
    };
    assert_eq!(acc(&a[2].1).to_bits(), acc(&b[2].1).to_bits());
    let stats: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(tmp.path().join("virtual/runtime_stats.json")).unwrap(),
    )
    .unwrap();
    assert!(stats["elapsed"].as_f64().unwrap() > 0.0, "{stats}");
    assert_eq!(stats["lost"], 0);
    assert_eq!(stats["in_flight"], 0);
    // The same actors on the wall-clock driver (tokio tasks, real threads):
    // the event schedule makes the numbers the same again.
    let wall = load(
        BASE,
        &[
            "training.epochs=2",
            "runtime.driver=\"wall\"",
            "runtime.workers=2",
        ],
    )
    .expect("valid");
    let c = outputs(&wall, &tmp.path().join("wall"));
    assert_eq!(cols(&a[0].1), cols(&c[0].1), "wall: metrics differ");
    assert_eq!(a[1], c[1], "wall: equivalence.csv differs");
    assert_eq!(acc(&a[2].1).to_bits(), acc(&c[2].1).to_bits());
}

/// A `[10, 24, 16, 4]` soft-LIF network with hidden biases 2 (the units
/// start well inside the firing range, j > 1).
fn lif_network(seed: u64) -> Mlp<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut mlp = Mlp::kaiming(
        &[10, 24, 16, 4],
        Activation::new(ActivationKind::SoftLif),
        LossKind::SoftmaxCe,
        &mut rng,
    );
    let n = mlp.b.len();
    for b in &mut mlp.b[..n - 1] {
        b.fill(2.0);
    }
    mlp
}

/// The LIF code's update approaches rate IL's (same weights, same batch, f =
/// the soft-LIF rate, same T) as the presentation grows: longer synaptic
/// traces (τ_s), a longer feedforward sweep and a longer learning window
/// average out more of the spike noise.
#[test]
fn lif_update_approaches_rate_il_as_presentation_grows() {
    let (x, y) = data(32, 10, 4, 5);
    let mlp = lif_network(1);
    let mut diffs = Vec::new();
    for (tau_s, window) in [(0.005, 25), (0.02, 100), (0.08, 400)] {
        let steps = 2 * window;
        let pcfg = PcConfig { steps, ..pc(1.0) };
        let reference = il_update(&mlp, pcfg.clone(), &x, &y);
        for avg in [WindowAverage::Product, WindowAverage::Means] {
            let cfg = SpikingPcConfig {
                code: ForwardCode::Lif,
                input: InputCode::Poisson,
                tau_s,
                sweep_steps: window,
                learning_window: window,
                window_average: avg,
                ..SpikingPcConfig::default()
            };
            let mut spk =
                SpikingPc::new(&mlp, cfg, pcfg.clone(), LifParams::default(), 0.1, 0.0, 7).unwrap();
            let upd = spk.compute_update(&mlp, x.view(), y.view()).clone();
            let d = total_rel_diff(&upd, &reference);
            println!(
                "τ_s {tau_s}, T {steps}, window {window}, {avg:?}: rel diff {d:.3} (per layer {:?}), cosine {:?}",
                upd.rel_diff(&reference),
                upd.cosine(&reference)
            );
            if avg == WindowAverage::Means {
                diffs.push(d);
            }
        }
    }
    assert!(
        diffs.windows(2).all(|w| w[1] < w[0]),
        "the LIF update's difference from rate IL must fall as the presentation grows: {diffs:?}"
    );
    assert!(diffs[2] < 0.2, "at τ_s 80 ms, T 800: {diffs:?}");
}
