//! Spiking PC on the actor runtime (issue 8, step 3), on seeded synthetic
//! data: at zero delay the actors give the lockstep trainer's weights bit for
//! bit; under the event schedule random delays (and duplicated messages)
//! change nothing either; a delayed run is byte-identical on repeat; every
//! edge balances `sent + duplicated = delivered + lost + in_flight`.
//! Local learning: the layer actors own their weights and momentum across
//! batches (of changing sizes too) and step them themselves — on the virtual
//! and the wall driver still lockstep's weights bit for bit; momentum
//! persists in the actors; one layer's optimizer state never reaches another
//! layer's update; the learning rate reaches the actors.

use ndarray::Array2;
use pcsim::algo::Trainer;
use pcsim::algo::pc::PcConfig;
use pcsim::algo::pc::spiking::{SpikeCounts, SpikingPc, SpikingPcConfig};
use pcsim::data::synthetic::{SyntheticConfig, generate};
use pcsim::nn::activation::LifParams;
use pcsim::nn::{Activation, ActivationKind, LossKind, Mlp};
use pcsim::runtime::config::{DelayConfig, DelayKind, Driver, RuntimeConfig};
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
        // Payload buffers are recycled: every layer outbox sends 13 steps ×
        // 4 batches, and at zero delay the receiver has dropped each message
        // before the next is written, so one buffer per outbox serves them
        // all (layer 3 has two: up and down). The input sends a batch's 13
        // steps at once, so it needs 12 more each batch (step 0 reuses the
        // buffer of the last batch's step 12).
        let buffers = net.payload_buffers();
        assert_eq!(buffers, vec![1 + 4 * 12, 1, 2, 1], "payload buffers");
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

/// Trains on consecutive batches of the given sizes (samples in order),
/// setting the learning rate to `lr.1` before batch `lr.0`; keeps every
/// update. Returns the weights, the loss bits and the last batch's update.
fn train_sizes(
    t: &mut dyn Trainer<f64>,
    mut mlp: Mlp<f64>,
    sizes: &[usize],
    lr: Option<(usize, f64)>,
) -> (Mlp<f64>, Vec<u64>, pcsim::nn::Updates<f64>) {
    let (x, y) = data(sizes.iter().sum());
    let mut losses = Vec::new();
    let mut start = 0;
    for (k, &n) in sizes.iter().enumerate() {
        if let Some((at, rate)) = lr
            && at == k
        {
            t.set_learning_rate(rate);
        }
        let rows = start..start + n;
        start += n;
        let (xb, yb) = (
            x.slice(ndarray::s![rows.clone(), ..]),
            y.slice(ndarray::s![rows, ..]),
        );
        losses.push(t.train_batch(&mut mlp, xb, yb, true).to_bits());
    }
    let upd = t.last_updates().expect("kept").clone();
    (mlp, losses, upd)
}

/// The first and second half of `(x, y)` as two batches.
fn halves<'a>(x: &'a Array2<f64>, y: &'a Array2<f64>) -> [Batch<'a>; 2] {
    let h = x.nrows() / 2;
    [
        (x.slice(ndarray::s![..h, ..]), y.slice(ndarray::s![..h, ..])),
        (x.slice(ndarray::s![h.., ..]), y.slice(ndarray::s![h.., ..])),
    ]
}

type Batch<'a> = (ndarray::ArrayView2<'a, f64>, ndarray::ArrayView2<'a, f64>);

fn lockstep_trainer(mlp: &Mlp<f64>, momentum: f64) -> SpikingPc<f64> {
    SpikingPc::new(
        mlp,
        cfg(2),
        pc(0.1, false),
        LifParams::default(),
        0.1,
        momentum,
        7,
    )
    .expect("lockstep spiking PC")
}

fn actor_trainer(mlp: &Mlp<f64>, momentum: f64, rt: RuntimeConfig) -> SpcTrainer<f64> {
    SpcTrainer::new(
        mlp,
        cfg(2),
        pc(0.1, false),
        LifParams::default(),
        0.1,
        momentum,
        7,
        rt,
        99,
    )
    .expect("spiking PC on actors")
}

fn wall() -> RuntimeConfig {
    RuntimeConfig {
        driver: Driver::Wall,
        workers: 2,
        ..RuntimeConfig::default()
    }
}

/// Batches of changing size make the network rebuild its per-batch state
/// twice; the actors carry weights, momentum and counts over, and on both
/// drivers end with lockstep's weights, losses and spike counts bit for bit
/// (a decayed learning rate included).
#[test]
fn local_learning_on_virtual_and_wall_equals_lockstep_over_batch_sizes() {
    const BATCHES: [usize; 5] = [16, 16, 10, 16, 6];
    let start = network(4);
    let mut lock = lockstep_trainer(&start, 0.9);
    let (reference, ref_loss, ref_upd) =
        train_sizes(&mut lock, start.clone(), &BATCHES, Some((3, 0.05)));
    assert!(reference.w[1] != start.w[1], "lockstep did not learn");
    let virt = RuntimeConfig {
        driver: Driver::Virtual,
        delay_up: delay(1.0, 0.5),
        ..RuntimeConfig::default()
    };
    for (name, rt) in [("virtual", virt), ("wall", wall())] {
        let mut t = actor_trainer(&start, 0.9, rt);
        let (got, loss, upd) = train_sizes(&mut t, start.clone(), &BATCHES, Some((3, 0.05)));
        assert!(t.take_error().is_none(), "{name}: the actor run failed");
        assert_bits(&got, &reference, name);
        assert_eq!(loss, ref_loss, "{name}: losses");
        assert_eq!(upd, ref_upd, "{name}: the last batch's update");
        let net = t.network().expect("built");
        assert_eq!(net.rows(), 6, "{name}: the last batch was 6 rows");
        // The actors hold what was stored into the Mlp, and the new rate.
        for (i, w) in reference.w.iter().enumerate() {
            let syn = net.synapses(i).expect("layer");
            assert_eq!(syn.weights(), w.view(), "{name}: actor W{}", i + 2);
            assert_eq!(syn.learning_rate(), 0.05, "{name}: learning rate");
        }
        let spikes: Vec<u64> = net.sent().iter().map(|s| s.spikes).collect();
        assert_eq!(spikes, lock.counts().spikes, "{name}: spikes over resizes");
        assert_eq!(net.graded(), lock.counts().graded_messages, "{name}");
    }
}

/// The velocity lives in the actors: after one batch it is that batch's
/// update; two batches in one trainer differ from a second batch on a
/// trainer rebuilt from the same weights (zero momentum) — and with μ = 0
/// the two are the same bit for bit, so the difference is the momentum.
#[test]
fn momentum_persists_in_the_actors_across_batches() {
    let start = network(6);
    for mu in [0.9, 0.0] {
        let mut one = actor_trainer(&start, mu, RuntimeConfig::default());
        let (after1, _, upd1) = train_sizes(&mut one, start.clone(), &[16], None);
        for i in 0..SIZES.len() - 1 {
            let syn = one.network().unwrap().synapses(i).unwrap();
            match syn.velocity() {
                Some((vw, vb)) => {
                    assert_eq!(vw, upd1.dw[i].view(), "v = ΔW after one batch");
                    assert_eq!(vb, upd1.db[i].view());
                }
                None => assert_eq!(mu, 0.0, "no velocity with momentum {mu}"),
            }
        }
        let (x, y) = data(32);
        let [_, (xb, yb)] = halves(&x, &y);
        let mut kept = after1.clone();
        one.train_batch(&mut kept, xb, yb, false);
        let mut fresh = actor_trainer(&after1, mu, RuntimeConfig::default());
        let mut reloaded = after1.clone();
        fresh.train_batch(&mut reloaded, xb, yb, false);
        assert!(one.take_error().is_none() && fresh.take_error().is_none());
        if mu == 0.0 {
            assert_bits(&kept, &reloaded, "plain SGD: kept vs reloaded");
        } else {
            for i in 0..SIZES.len() - 1 {
                assert!(
                    kept.w[i] != reloaded.w[i],
                    "W{}: momentum changed nothing",
                    i + 2
                );
            }
        }
    }
}

/// Locality of the update: perturbing layer 3's optimizer state before a
/// batch changes layer 3's weights after it and nothing of layers 2 and 4
/// (their weights, velocities) nor any layer's update of that batch — each
/// actor's step reads only its own synapses and its own accumulated update.
#[test]
fn one_layers_optimizer_state_does_not_reach_another_layers_update() {
    let start = network(8);
    let (x, y) = data(32);
    let [b1, b2] = halves(&x, &y);
    let run = |perturb: bool| {
        let mut t = actor_trainer(&start, 0.9, RuntimeConfig::default());
        let mut mlp = start.clone();
        t.train_batch(&mut mlp, b1.0, b1.1, false);
        if perturb {
            let syn = t.network_mut().unwrap().synapses_mut(1).unwrap();
            let (mut vw, mut vb) = syn.velocity_mut().expect("momentum 0.9");
            vw.mapv_inplace(|v| 3.0 * v + 0.01);
            vb.mapv_inplace(|v| v - 0.02);
        }
        t.train_batch(&mut mlp, b2.0, b2.1, true);
        assert!(t.take_error().is_none());
        let upd = t.last_updates().unwrap().clone();
        let net = t.network().unwrap();
        let vel: Vec<_> = (0..3)
            .map(|i| {
                let (vw, vb) = net.synapses(i).unwrap().velocity().unwrap();
                (vw.to_owned(), vb.to_owned())
            })
            .collect();
        (mlp, upd, vel)
    };
    let (a, ua, va) = run(false);
    let (b, ub, vb) = run(true);
    assert_eq!(ua, ub, "the batch's updates (computed before any step)");
    for i in [0, 2] {
        let bits = |p: &ndarray::Array2<f64>, q: &ndarray::Array2<f64>| {
            p.iter().zip(q).all(|(u, v)| u.to_bits() == v.to_bits())
        };
        assert!(bits(&a.w[i], &b.w[i]), "W{} saw layer 3's momentum", i + 2);
        assert_eq!(a.b[i], b.b[i], "b{}", i + 2);
        assert_eq!(va[i], vb[i], "velocity of layer {}", i + 2);
    }
    assert!(
        a.w[1] != b.w[1],
        "the perturbed layer's own step ignored its state"
    );
    assert!(a.b[1] != b.b[1]);
}

/// The actors own their weights, but a write to the `Mlp` between batches
/// (from outside the trainer) is not silently lost: the next batch reloads
/// the changed layer, so with plain SGD the actors again equal lockstep
/// trained on the same edited weights.
#[test]
fn a_weight_written_outside_the_trainer_is_reloaded() {
    let start = network(8);
    let (x, y) = data(32);
    let [first, second] = halves(&x, &y);
    let mut on_actors = actor_trainer(&start, 0.0, RuntimeConfig::default());
    let mut mlp = start.clone();
    on_actors.train_batch(&mut mlp, first.0, first.1, false);
    mlp.w[1].mapv_inplace(|w| 0.5 * w);
    let edited = mlp.clone();
    on_actors.train_batch(&mut mlp, second.0, second.1, false);
    assert!(on_actors.take_error().is_none());
    let mut reference = edited.clone();
    lockstep_trainer(&edited, 0.0).train_batch(&mut reference, second.0, second.1, false);
    assert_bits(&mlp, &reference, "after an outside write to W3");
    assert_eq!(
        on_actors.network_mut().unwrap().sync_from(&mlp),
        0,
        "the actors hold what they stored"
    );
}
