//! Spiking PC on the actor runtime (issue 8, step 3), on seeded synthetic
//! data: at zero delay the actors give the lockstep trainer's weights bit for
//! bit; under the event schedule random delays (and duplicated messages)
//! change nothing either; a delayed run is byte-identical on repeat; every
//! edge balances `sent + duplicated = delivered + lost + in_flight`.

use ndarray::Array2;
use pcsim::algo::Trainer;
use pcsim::algo::pc::PcConfig;
use pcsim::algo::pc::spiking::{SpikeCounts, SpikingPc, SpikingPcConfig};
use pcsim::data::synthetic::{SyntheticConfig, generate};
use pcsim::nn::activation::LifParams;
use pcsim::nn::{Activation, ActivationKind, LossKind, Mlp};
use pcsim::runtime::config::{DelayConfig, DelayKind, RuntimeConfig};
use pcsim::runtime::spc::SpcTrainer;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

const SIZES: [usize; 4] = [8, 24, 16, 4];

fn data(n: usize) -> (Array2<f64>, Array2<f64>) {
    let cfg = SyntheticConfig {
        n_train: n,
        n_test: 1,
        n_features: SIZES[0],
        n_classes: SIZES[3],
        ..SyntheticConfig::default()
    };
    generate(&cfg, 5).train.to_real::<f64>()
}

fn network(seed: u64) -> Mlp<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    Mlp::kaiming(
        &SIZES,
        Activation::new(ActivationKind::Relu),
        LossKind::SoftmaxCe,
        &mut rng,
    )
}

fn pc(beta: f64, feedback: bool) -> PcConfig {
    PcConfig {
        gamma: 0.1,
        steps: 12,
        beta,
        predict_steps: 0,
        feedback_seed: feedback.then_some(11),
        step_control: pcsim::algo::pc::StepControl::Fixed,
    }
}

fn cfg(window: usize) -> SpikingPcConfig {
    SpikingPcConfig {
        theta: 0.01,
        theta_input: 0.02,
        learning_window: window,
        ..SpikingPcConfig::default()
    }
}

fn delay(mean: f64, spread: f64) -> DelayConfig {
    DelayConfig {
        kind: DelayKind::Uniform,
        mean,
        spread,
    }
}

/// Trains 4 batches of 16 on a trainer; returns the weights and losses.
fn train(t: &mut dyn Trainer<f64>, seed: u64) -> (Mlp<f64>, Vec<u64>) {
    let (x, y) = data(64);
    let mut mlp = network(seed);
    let mut losses = Vec::new();
    for k in 0..4 {
        let rows = k * 16..(k + 1) * 16;
        let (xb, yb) = (
            x.slice(ndarray::s![rows.clone(), ..]),
            y.slice(ndarray::s![rows, ..]),
        );
        losses.push(t.train_batch(&mut mlp, xb, yb, false).to_bits());
    }
    (mlp, losses)
}

fn lockstep(
    beta: f64,
    feedback: bool,
    window: usize,
    seed: u64,
) -> (Mlp<f64>, Vec<u64>, SpikeCounts) {
    let mlp = network(seed);
    let mut t = SpikingPc::new(
        &mlp,
        cfg(window),
        pc(beta, feedback),
        LifParams::default(),
        0.1,
        0.9,
        7,
    )
    .expect("lockstep spiking PC");
    let (m, l) = train(&mut t, seed);
    (m, l, t.counts().clone())
}

fn actors(
    beta: f64,
    feedback: bool,
    window: usize,
    seed: u64,
    rt: RuntimeConfig,
) -> (Mlp<f64>, Vec<u64>, SpcTrainer<f64>) {
    let mlp = network(seed);
    let mut t = SpcTrainer::new(
        &mlp,
        cfg(window),
        pc(beta, feedback),
        LifParams::default(),
        0.1,
        0.9,
        7,
        rt,
        99,
    )
    .expect("spiking PC on actors");
    let (m, l) = train(&mut t, seed);
    assert!(t.take_error().is_none(), "the actor run failed");
    (m, l, t)
}

fn assert_bits(a: &Mlp<f64>, b: &Mlp<f64>, what: &str) {
    for (l, (wa, wb)) in a.w.iter().zip(&b.w).enumerate() {
        let same = wa.iter().zip(wb).all(|(p, q)| p.to_bits() == q.to_bits());
        assert!(same, "{what}: W{} differs", l + 2);
    }
    for (l, (ba, bb)) in a.b.iter().zip(&b.b).enumerate() {
        let same = ba.iter().zip(bb).all(|(p, q)| p.to_bits() == q.to_bits());
        assert!(same, "{what}: b{} differs", l + 2);
    }
}

fn assert_balanced(t: &SpcTrainer<f64>) {
    let stats = t.network().and_then(|n| n.stats.as_ref()).expect("stats");
    for (k, e) in stats.edge.iter().enumerate() {
        assert_eq!(
            e.sent + e.duplicated,
            e.delivered + e.lost + e.in_flight,
            "edge {k}: {e:?}"
        );
        assert!(e.sent > 0, "edge {k} carried nothing");
    }
}

#[test]
fn zero_delay_matches_lockstep_bit_for_bit() {
    for (beta, feedback, window, seed) in [(1.0, false, 1, 1), (0.1, true, 4, 2)] {
        let (reference, ref_loss, counts) = lockstep(beta, feedback, window, seed);
        let start = network(seed);
        assert!(
            reference.w[0] != start.w[0],
            "the lockstep trainer did not learn"
        );
        let (got, loss, t) = actors(beta, feedback, window, seed, RuntimeConfig::default());
        assert_bits(
            &got,
            &reference,
            &format!("beta {beta}, feedback {feedback}"),
        );
        assert_eq!(loss, ref_loss, "losses after the sweep");
        assert_balanced(&t);
        let net = t.network().expect("built");
        let sent = net.sent();
        assert_eq!(sent.len(), SIZES.len() - 1, "one sender per up-edge");
        assert!(sent.iter().all(|s| s.spikes > 0), "{sent:?}");
        // The same spikes and messages as the lockstep trainer counts.
        let spikes: Vec<u64> = sent.iter().map(|s| s.spikes).collect();
        let messages: Vec<u64> = sent.iter().map(|s| s.spike_messages).collect();
        assert_eq!(spikes, counts.spikes, "spikes per sender");
        assert_eq!(messages, counts.spike_messages, "spike messages per sender");
        assert_eq!(net.graded(), counts.graded_messages, "graded messages");
        // Every step sends one up-message per edge: spikes or a marker.
        let steps = (pc(beta, feedback).steps + 1) as u64 * 4;
        for s in &sent {
            assert!(s.markers <= steps, "{s:?}");
        }
        assert_eq!(net.duplicates(), 0);
    }
}

#[test]
fn random_delays_change_nothing_and_repeat_byte_for_byte() {
    let rt = RuntimeConfig {
        delay_up: delay(1.0, 0.9),
        delay_down: delay(2.0, 1.5),
        duplication: 0.2,
        ..RuntimeConfig::default()
    };
    let (reference, ref_loss, _) = lockstep(0.1, false, 2, 3);
    let (a, la, ta) = actors(0.1, false, 2, 3, rt.clone());
    let (b, lb, tb) = actors(0.1, false, 2, 3, rt);
    // The event schedule waits for every step's messages: delays and
    // duplicates change no number.
    assert_bits(&a, &reference, "delayed vs lockstep");
    assert_eq!(la, ref_loss);
    assert_bits(&a, &b, "delayed run repeated");
    assert_eq!(la, lb);
    let (sa, sb) = (
        ta.network().unwrap().stats.as_ref().unwrap(),
        tb.network().unwrap().stats.as_ref().unwrap(),
    );
    assert_eq!(sa.elapsed.to_bits(), sb.elapsed.to_bits(), "virtual time");
    let json = |t: &SpcTrainer<f64>| t.runtime_stats().expect("stats").to_string();
    assert_eq!(json(&ta), json(&tb), "runtime stats repeat");
    assert!(sa.elapsed > 0.0);
    let dup: u64 = sa.edge.iter().map(|e| e.duplicated).sum();
    assert!(dup > 0, "duplication 0.2 duplicated nothing");
    assert!(
        ta.network().unwrap().duplicates() > 0,
        "duplicates reached the actors"
    );
    assert_balanced(&ta);
}
