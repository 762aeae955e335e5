//! Predictive coding against backprop (issue 3's acceptance list), on seeded
//! synthetic data generated in code: Z-IL equals BP to rounding for every
//! depth, activation, loss and batch size and over whole trajectories; IL
//! approaches BP only with weak output nudging and long relaxation; the
//! energy does not increase; a wrong Z-IL schedule and feedback alignment
//! visibly differ from BP. Run with `--nocapture` to see the measured numbers.

use ndarray::{Array2, ArrayView2, s};
use pcsim::algo::Trainer;
use pcsim::algo::bp::Backprop;
use pcsim::algo::pc::{Il, PcConfig, PcNet, Zil};
use pcsim::data::synthetic::{SyntheticConfig, generate};
use pcsim::nn::{Activation, ActivationKind, LossKind, Mlp, Updates};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

const ACTIVATIONS: [ActivationKind; 5] = [
    ActivationKind::Relu,
    ActivationKind::Sigmoid,
    ActivationKind::Tanh,
    ActivationKind::Linear,
    ActivationKind::SoftLif,
];
const LOSSES: [LossKind; 2] = [LossKind::Mse, LossKind::SoftmaxCe];

/// `n` seeded samples with `features` inputs and `classes` one-hot targets.
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

fn network(sizes: &[usize], act: ActivationKind, loss: LossKind, seed: u64) -> Mlp<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut mlp = Mlp::kaiming(sizes, Activation::new(act), loss, &mut rng);
    if act == ActivationKind::SoftLif {
        // Soft-LIF is flat below j = 1: shift the hidden biases so units sit
        // on the curve's live part and the test exercises f' for real.
        for b in &mut mlp.b[..sizes.len() - 2] {
            b.fill(1.5);
        }
    }
    mlp
}

/// BP's update on `mlp` for `(x, y)` (learning rate included).
fn bp_update(mlp: &Mlp<f64>, x: ArrayView2<f64>, y: ArrayView2<f64>, lr: f64) -> Updates<f64> {
    let mut bp = Backprop::new(mlp, lr, 0.0, x.nrows());
    let mut out = Updates::zeros_like(mlp);
    bp.compute_updates(mlp, x, y, &mut out);
    out
}

/// The update a trainer applies on a copy of `mlp`.
fn applied(
    trainer: &mut dyn Trainer<f64>,
    mlp: &Mlp<f64>,
    x: ArrayView2<f64>,
    y: ArrayView2<f64>,
) -> Updates<f64> {
    let mut copy = mlp.clone();
    trainer.train_batch(&mut copy, x, y, true);
    trainer.last_updates().expect("kept").clone()
}

fn max(v: &[f64]) -> f64 {
    v.iter().copied().fold(0.0, f64::max)
}

fn il_config(gamma: f64, steps: usize, beta: f64) -> PcConfig {
    PcConfig {
        gamma,
        steps,
        beta,
        ..PcConfig::default()
    }
}

#[test]
fn zil_first_update_equals_bp_for_every_depth_activation_loss_and_batch() {
    let (features, classes) = (6, 3);
    let (x, y) = data(32, features, classes, 11);
    let mut worst = (0.0, String::new());
    let mut cases = 0;
    for depth in 2..=6 {
        let mut sizes = vec![features];
        sizes.extend(std::iter::repeat_n(12, depth - 2));
        sizes.push(classes);
        for act in ACTIVATIONS {
            for loss in LOSSES {
                for batch in [1, 32] {
                    let mlp = network(&sizes, act, loss, 100 + depth as u64);
                    let (bx, by) = (x.slice(s![..batch, ..]), y.slice(s![..batch, ..]));
                    let reference = bp_update(&mlp, bx, by, 0.1);
                    let mut zil = Zil::new(&mlp, PcConfig::default(), 0.1, 0.0).unwrap();
                    let got = applied(&mut zil, &mlp, bx, by);
                    let rd = got.rel_diff(&reference);
                    let case = format!("L={depth} {act:?} {loss:?} batch {batch}");
                    // A zero BP update would make the comparison vacuous.
                    assert!(
                        reference.dw.iter().all(|w| w.iter().any(|&v| v != 0.0)),
                        "{case}: BP update has an all-zero layer"
                    );
                    for (l, &r) in rd.iter().enumerate() {
                        assert!(r <= 1e-12, "{case}: W{} rel diff {r:e} > 1e-12", l + 2);
                    }
                    if max(&rd) >= worst.0 {
                        worst = (max(&rd), case);
                    }
                    cases += 1;
                }
            }
        }
    }
    eprintln!(
        "Z-IL vs BP, first update, {cases} cases: worst rel diff {:.3e} ({})",
        worst.0, worst.1
    );
}

/// BP and Z-IL trained side by side for 50 steps: every applied update and
/// the final weights agree, so the whole trajectories are equal.
#[test]
fn zil_trajectory_equals_bp_over_50_steps() {
    let configs = [
        (
            vec![8, 16, 16, 16, 4],
            ActivationKind::Tanh,
            LossKind::SoftmaxCe,
            32,
        ),
        (vec![8, 20, 20, 4], ActivationKind::Relu, LossKind::Mse, 1),
        (
            vec![8, 16, 16, 16, 16, 4],
            ActivationKind::Sigmoid,
            LossKind::SoftmaxCe,
            32,
        ),
    ];
    let (x, y) = data(50 * 32, 8, 4, 21);
    for (sizes, act, loss, batch) in configs {
        let mut m_bp = network(&sizes, act, loss, 5);
        let mut m_zil = m_bp.clone();
        let lr = 0.2;
        let mut bp = Backprop::new(&m_bp, lr, 0.0, batch);
        let mut zil = Zil::new(&m_zil, PcConfig::default(), lr, 0.0).unwrap();
        let mut worst = 0.0f64;
        for step in 0..50 {
            let rows = step * batch..(step + 1) * batch;
            let (bx, by) = (x.slice(s![rows.clone(), ..]), y.slice(s![rows, ..]));
            bp.train_batch(&mut m_bp, bx, by, true);
            zil.train_batch(&mut m_zil, bx, by, true);
            let rd = zil
                .last_updates()
                .unwrap()
                .rel_diff(bp.last_updates().unwrap());
            assert!(
                max(&rd) <= 1e-12,
                "{sizes:?} {act:?}: step {step} rel diff {rd:?}"
            );
            worst = worst.max(max(&rd));
        }
        let mut wdiff = 0.0f64;
        for (a, b) in m_zil.w.iter().zip(&m_bp.w) {
            let num = (a - b).mapv(|v| v * v).sum().sqrt();
            wdiff = wdiff.max(num / b.mapv(|v| v * v).sum().sqrt());
        }
        assert!(
            wdiff <= 1e-12,
            "{sizes:?}: weights drifted apart by {wdiff:e}"
        );
        // The weights must really have moved, or equal trajectories prove nothing.
        let start = network(&sizes, act, loss, 5);
        let moved = (&m_bp.w[0] - &start.w[0]).mapv(f64::abs).sum();
        assert!(moved > 1e-3, "{sizes:?}: training did not move the weights");
        eprintln!(
            "Z-IL vs BP over 50 steps {sizes:?} {act:?} {loss:?} batch {batch}: max update rel diff {worst:.3e}, final weight rel diff {wdiff:.3e}"
        );
    }
}

/// The exactness test can fail: updating every layer at the end of
/// inference (t = L − 1) instead of at t = L − l gives a different update.
#[test]
fn zil_with_a_wrong_schedule_is_not_exact() {
    let sizes = [8, 16, 16, 16, 4];
    let (x, y) = data(32, 8, 4, 31);
    let mlp = network(&sizes, ActivationKind::Tanh, LossKind::SoftmaxCe, 9);
    let reference = bp_update(&mlp, x.view(), y.view(), 0.1);
    let depth = sizes.len();
    let wrong = vec![depth - 1; depth - 1];
    let mut zil = Zil::with_schedule(&mlp, PcConfig::default(), 0.1, 0.0, wrong).unwrap();
    let rd = applied(&mut zil, &mlp, x.view(), y.view()).rel_diff(&reference);
    eprintln!("Z-IL with all layers updated at t = L-1: rel diff per layer {rd:.3?}");
    assert!(max(&rd) > 1e-2, "wrong schedule still exact: {rd:?}");
    let mut right = Zil::new(&mlp, PcConfig::default(), 0.1, 0.0).unwrap();
    let rd = applied(&mut right, &mlp, x.view(), y.view()).rel_diff(&reference);
    assert!(max(&rd) <= 1e-12);
}

/// IL's update versus BP's: rel diff per layer, maximum over layers.
fn il_vs_bp(mlp: &Mlp<f64>, x: ArrayView2<f64>, y: ArrayView2<f64>, cfg: PcConfig) -> f64 {
    let reference = bp_update(mlp, x, y, 0.1);
    let mut il = Il::new(mlp, cfg, 0.1, 0.0).unwrap();
    max(&applied(&mut il, mlp, x, y).rel_diff(&reference))
}

fn il_setup() -> (Mlp<f64>, Array2<f64>, Array2<f64>) {
    let (x, y) = data(32, 8, 4, 41);
    let mlp = network(&[8, 16, 16, 4], ActivationKind::Tanh, LossKind::Mse, 13);
    (mlp, x, y)
}

#[test]
fn il_approaches_bp_as_the_output_nudge_weakens() {
    let (mlp, x, y) = il_setup();
    let betas = [0.1, 0.03, 0.01];
    let rd: Vec<f64> = betas
        .iter()
        .map(|&b| il_vs_bp(&mlp, x.view(), y.view(), il_config(0.1, 200, b)))
        .collect();
    eprintln!("IL vs BP, T = 200, gamma = 0.1: beta {betas:?} -> max rel diff {rd:.4?}");
    for w in rd.windows(2) {
        assert!(w[1] < w[0], "rel diff did not fall with beta: {rd:?}");
    }
    // At equilibrium the difference is O(β): ten times weaker nudging, at
    // least three times closer.
    assert!(rd[2] < 0.3 * rd[0], "{rd:?}");
    // And the limit is BP: β = 0.001, relaxed to equilibrium.
    let limit = il_vs_bp(&mlp, x.view(), y.view(), il_config(0.1, 1000, 0.001));
    eprintln!("IL vs BP, T = 1000, gamma = 0.1, beta = 0.001: max rel diff {limit:.4}");
    assert!(limit < 0.02, "β = 0.001 still {limit} away from BP");
}

#[test]
fn il_approaches_bp_as_inference_runs_longer() {
    let (mlp, x, y) = il_setup();
    let steps = [10, 20, 50, 100, 200];
    let rd: Vec<f64> = steps
        .iter()
        .map(|&t| il_vs_bp(&mlp, x.view(), y.view(), il_config(0.1, t, 0.01)))
        .collect();
    eprintln!("IL vs BP, beta = 0.01, gamma = 0.1: T {steps:?} -> max rel diff {rd:.4?}");
    for w in rd.windows(2) {
        assert!(w[1] < w[0], "rel diff did not fall with T: {rd:?}");
    }
    // T = 200 is close to the equilibrium (whose O(β) gap remains).
    let equilibrium = il_vs_bp(&mlp, x.view(), y.view(), il_config(0.1, 3000, 0.01));
    eprintln!("IL vs BP, beta = 0.01, gamma = 0.1, T = 3000: {equilibrium:.4}");
    assert!(
        rd[0] > 0.5 && rd[4] < 1.2 * equilibrium && equilibrium < 0.15,
        "{rd:?} {equilibrium}"
    );
}

/// With the target fully clamped (β = 1) the relaxed errors are not BP's
/// gradients: IL settles about 0.8 away from BP and stays there.
#[test]
fn il_with_the_target_clamped_stays_away_from_bp() {
    let (mlp, x, y) = il_setup();
    let rd200 = il_vs_bp(&mlp, x.view(), y.view(), il_config(0.1, 200, 1.0));
    let rd1000 = il_vs_bp(&mlp, x.view(), y.view(), il_config(0.1, 1000, 1.0));
    eprintln!("IL vs BP, beta = 1, gamma = 0.1: T = 200 -> {rd200:.4}, T = 1000 -> {rd1000:.4}");
    assert!((0.5..1.0).contains(&rd200), "β = 1: rel diff {rd200}");
    assert!((rd200 - rd1000).abs() < 0.02, "{rd200} vs {rd1000}");
}

/// For small γ every inference step is a gradient step on
/// `E = Σ_hidden ½|ε|² + β·loss`, so E never increases.
#[test]
fn energy_does_not_increase_during_inference() {
    let (x, y) = data(32, 8, 4, 51);
    for (act, loss, beta) in [
        (ActivationKind::Tanh, LossKind::Mse, 1.0),
        (ActivationKind::Relu, LossKind::SoftmaxCe, 1.0),
        (ActivationKind::Sigmoid, LossKind::Mse, 0.1),
    ] {
        let mlp = network(&[8, 16, 16, 16, 4], act, loss, 17);
        let mut net = PcNet::new(&mlp, None).unwrap();
        net.start(x.view(), Some((y.view(), beta)), false);
        let mut energies = vec![net.energy()];
        for _ in 0..100 {
            net.relax(0.05);
            energies.push(net.energy());
        }
        for (t, w) in energies.windows(2).enumerate() {
            assert!(
                w[1] <= w[0] * (1.0 + 1e-12),
                "{act:?} {loss:?}: energy rose at step {t}: {} -> {}",
                w[0],
                w[1]
            );
        }
        let (first, last) = (energies[0], *energies.last().unwrap());
        // A full clamp leaves much energy to relax away; a weak nudge little.
        let bound = if beta == 1.0 { 0.9 * first } else { first };
        assert!(
            last < bound,
            "{act:?}: energy barely fell: {first} -> {last}"
        );
        eprintln!("energy {act:?} {loss:?} beta {beta}: {first:.4} -> {last:.4} over 100 steps");
    }
}

/// Feedback alignment (`B` instead of `Wᵀ`): it trains, and its hidden-layer
/// updates are not BP's (the output layer's is: its error is the same).
#[test]
fn feedback_alignment_runs_and_differs_from_bp() {
    let (x, y) = data(512, 8, 4, 61);
    let mut mlp = network(
        &[8, 32, 32, 4],
        ActivationKind::Relu,
        LossKind::SoftmaxCe,
        19,
    );
    let fa = PcConfig {
        feedback_seed: Some(3),
        ..PcConfig::default()
    };
    let reference = bp_update(&mlp, x.slice(s![..32, ..]), y.slice(s![..32, ..]), 0.1);
    let mut zil = Zil::new(&mlp, fa.clone(), 0.1, 0.0).unwrap();
    let rd =
        applied(&mut zil, &mlp, x.slice(s![..32, ..]), y.slice(s![..32, ..])).rel_diff(&reference);
    eprintln!("Z-IL with random feedback vs BP: rel diff per layer {rd:.3?}");
    assert!(rd[2] <= 1e-12, "output layer should match BP: {rd:?}");
    assert!(
        rd[0] > 0.1 && rd[1] > 0.1,
        "hidden layers should differ: {rd:?}"
    );

    let mut il = Il::new(&mlp, fa, 0.1, 0.0).unwrap();
    let first_loss = mlp.evaluate(x.view(), y.view()).0;
    for _ in 0..20 {
        for start in (0..512).step_by(32) {
            let r = start..start + 32;
            let loss = il.train_batch(
                &mut mlp,
                x.slice(s![r.clone(), ..]),
                y.slice(s![r, ..]),
                false,
            );
            assert!(loss.is_finite());
        }
    }
    let last_loss = mlp.evaluate(x.view(), y.view()).0;
    eprintln!("IL with feedback alignment: training loss {first_loss:.2} -> {last_loss:.2}");
    assert!(last_loss < 0.8 * first_loss, "{first_loss} -> {last_loss}");
}

/// With the output free, the feedforward pass is the relaxation's fixed
/// point: relaxing from rest converges to it, and `predict_steps = 0` is it.
#[test]
fn free_relaxation_converges_to_the_feedforward_pass() {
    let (x, y) = data(16, 8, 4, 71);
    let mlp = network(
        &[8, 16, 16, 4],
        ActivationKind::Tanh,
        LossKind::SoftmaxCe,
        23,
    );
    let ff = mlp.predict(x.view());
    let mut il = Il::new(&mlp, PcConfig::default(), 0.1, 0.0).unwrap();
    assert_eq!(il.predict(&mlp, x.view()), ff);
    let mut relaxing = Il::new(
        &mlp,
        PcConfig {
            gamma: 0.2,
            predict_steps: 1000,
            ..PcConfig::default()
        },
        0.1,
        0.0,
    )
    .unwrap();
    let pred = relaxing.predict(&mlp, x.view());
    let err = (&pred - &ff).mapv(f64::abs).fold(0.0f64, |m, &v| m.max(v));
    assert!(
        err < 1e-9,
        "relaxed prediction is {err:e} from the feedforward pass"
    );
    // And the free network's energy is zero there.
    let mut net = PcNet::new(&mlp, None).unwrap();
    net.start(x.view(), None, false);
    assert_eq!(net.energy(), 0.0);
    // Clamping the target gives the output error energy to relax.
    net.start(x.view(), Some((y.view(), 1.0)), false);
    assert!(net.energy() > 0.0);
}

#[test]
fn bad_inference_settings_are_errors() {
    let mlp = network(&[4, 8, 2], ActivationKind::Relu, LossKind::Mse, 1);
    for (cfg, key) in [
        (il_config(0.0, 20, 1.0), "gamma"),
        (il_config(0.1, 0, 1.0), "steps"),
        (il_config(0.1, 20, 1.5), "beta"),
    ] {
        let err = Il::new(&mlp, cfg, 0.1, 0.0)
            .err()
            .expect("must be rejected");
        assert!(err.to_string().contains(key), "{err}");
    }
}

/// The full pipeline: the shipped zil-equivalence scenario records Z-IL == BP
/// in summary.json, and `--export-npy` writes the documented files.
#[test]
fn zil_equivalence_scenario_records_exactness() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/zil-equivalence.toml");
    let s = pcsim::scenario::load(&path, &["training.epochs=1".into()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let opts = pcsim::experiment::RunOptions {
        out_dir: dir.path().join("run"),
        export_npy: Some(dir.path().join("npy")),
        ..Default::default()
    };
    let summary = pcsim::experiment::run(&s, &opts).unwrap();
    let max_rd = summary["equivalence"]["max_rel_diff"].as_f64().unwrap();
    let steps = summary["equivalence"]["recorded_steps"].as_u64().unwrap();
    assert!(max_rd <= 1e-12 && steps > 10, "{summary}");
    for name in ["W2", "b6", "batch_x", "batch_y", "dW2", "dW6", "db6"] {
        assert!(
            dir.path().join(format!("npy/{name}.npy")).exists(),
            "{name}.npy"
        );
    }
    assert!(dir.path().join("run/equivalence.csv").exists());
}

/// The rules API as the actor runtime uses it: each layer owns its state and
/// only sees owned message payloads (`activity_up().to_owned()`,
/// `error_down()`). Driving it by hand in the lockstep order reproduces the
/// lockstep driver bit for bit (state at every step and updates), and Z-IL's
/// timing rule gives BP's update.
#[test]
fn rules_driven_by_owned_messages_match_the_lockstep_driver() {
    use pcsim::algo::pc::{PcLayer, Role};
    let sizes = [8, 16, 16, 4];
    let (x, y) = data(32, 8, 4, 81);
    let mlp = network(&sizes, ActivationKind::Tanh, LossKind::SoftmaxCe, 29);
    let last = mlp.w.len() - 1;
    let mut layers: Vec<PcLayer<f64>> = (0..=last)
        .map(|i| {
            let role = if i == last {
                Role::Output(mlp.output)
            } else {
                Role::Hidden(mlp.hidden)
            };
            PcLayer::new(i + 2, role, mlp.w[i].clone(), mlp.b[i].clone(), None).unwrap()
        })
        .collect();
    layers[last].set_target(y.view(), 1.0);
    let mut up = x.clone();
    for layer in &mut layers {
        layer.init_feedforward(up.view());
        up = layer.activity_up().to_owned();
    }
    let mut net = PcNet::new(&mlp, None).unwrap();
    net.start(x.view(), Some((y.view(), 1.0)), false);

    let depth = sizes.len();
    let scale = 0.1 / 32.0;
    let mut updates = Updates::zeros_like(&mlp);
    let mut net_updates = Updates::zeros_like(&mlp);
    for t in 0..depth - 1 {
        // Down-messages first, with the pre-update weights.
        let down: Vec<Array2<f64>> = (1..=last).map(|i| layers[i].error_down()).collect();
        for (i, layer) in layers.iter_mut().enumerate() {
            if depth - (i + 2) == t {
                layer.weight_update_into(scale, updates.dw[i].view_mut(), updates.db[i].view_mut());
                layer.apply_update(updates.dw[i].view(), updates.db[i].view());
            }
        }
        for (i, msg) in down.iter().enumerate() {
            layers[i].on_feedback(msg.view(), 1.0);
        }
        for i in 1..=last {
            let msg = layers[i - 1].activity_up().to_owned();
            layers[i].on_activity(msg.view());
        }
        net.step(1.0, |i| depth - (i + 2) == t, scale, &mut net_updates);
        for (a, b) in layers.iter().zip(&net.layers) {
            assert_eq!(a.x(), b.x(), "layer {} x at t = {t}", a.index());
            assert_eq!(a.eps(), b.eps(), "layer {} ε at t = {t}", a.index());
        }
    }
    assert_eq!(updates, net_updates);
    let reference = bp_update(&mlp, x.view(), y.view(), 0.1);
    let rd = updates.rel_diff(&reference);
    assert!(max(&rd) <= 1e-12, "{rd:?}");
}

/// The plain-SGD fast paths (no update kept, updates added straight into the
/// weights) in f32, the MNIST setting: Z-IL stays on BP's trajectory.
#[test]
fn zil_fast_path_follows_bp_in_f32() {
    let (x, y) = data(50 * 16, 8, 4, 91);
    let (x, y) = (x.mapv(|v| v as f32), y.mapv(|v| v as f32));
    let mut rng = ChaCha8Rng::seed_from_u64(37);
    let mut m_bp = Mlp::<f32>::kaiming(
        &[8, 32, 32, 4],
        Activation::new(ActivationKind::Relu),
        LossKind::SoftmaxCe,
        &mut rng,
    );
    let start = m_bp.clone();
    let mut m_zil = m_bp.clone();
    let mut bp = Backprop::new(&m_bp, 0.1, 0.0, 16);
    let mut zil = Zil::new(&m_zil, PcConfig::default(), 0.1, 0.0).unwrap();
    for step in 0..50 {
        let rows = step * 16..(step + 1) * 16;
        let (bx, by) = (x.slice(s![rows.clone(), ..]), y.slice(s![rows, ..]));
        let l_bp = bp.train_batch(&mut m_bp, bx, by, false);
        let l_zil = zil.train_batch(&mut m_zil, bx, by, false);
        assert!(
            (l_bp - l_zil).abs() <= 1e-6 * l_bp.abs(),
            "step {step}: loss {l_bp} vs {l_zil}"
        );
    }
    let mut worst = 0.0f64;
    for (a, b) in m_zil.w.iter().zip(&m_bp.w) {
        let num = (a - b).mapv(|v| (v as f64).powi(2)).sum().sqrt();
        worst = worst.max(num / b.mapv(|v| (v as f64).powi(2)).sum().sqrt());
    }
    eprintln!("Z-IL vs BP, f32 fast paths, 50 steps: final weight rel diff {worst:.3e}");
    assert!(worst <= 1e-6, "weights drifted apart by {worst:e}");
    assert!((&m_bp.w[0] - &start.w[0]).mapv(f32::abs).sum() > 1e-3);
}
