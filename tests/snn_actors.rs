//! Spikes through the actor runtime (issue 8, steps 1–2): the shadow SNN run
//! as one actor per layer exchanging spike messages equals the per-image
//! loop at zero delay (same spikes, same predictions), every spike message
//! is delivered, lost or in flight on both drivers, and seeded virtual runs
//! with delays and loss are reproducible. Small random networks, seconds.

use ndarray::Array2;
use pcsim::nn::activation::LifParams;
use pcsim::runtime::config::{DelayConfig, DelayKind, RuntimeConfig};
use pcsim::runtime::{Actor, Spikes, Stats, Timing, WallDriver, WallOptions};
use pcsim::snn::network::ImageResult;
use pcsim::snn::{
    ActorNetwork, Readout, SpikingConfig, SpikingNetwork, SynapseKind, evaluate, evaluate_on_actors,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::time::Duration;

const SIZES: [usize; 4] = [16, 24, 20, 4];

/// A random network that fires in every layer: weights uniform with a
/// positive mean, hidden biases near the threshold.
fn network(presentation_time: f64, seed: u64) -> SpikingNetwork {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut w = Vec::new();
    let mut b = Vec::new();
    for i in 0..SIZES.len() - 1 {
        let (n_in, n_out) = (SIZES[i], SIZES[i + 1]);
        let scale = 3.0 / (n_in as f32).sqrt();
        w.push(
            (0..n_in * n_out)
                .map(|_| scale * rng.gen_range(-0.6f32..1.0))
                .collect(),
        );
        b.push((0..n_out).map(|_| rng.gen_range(0.6f32..1.2)).collect());
    }
    let cfg = SpikingConfig {
        dt: 1e-3,
        presentation_time,
        synapse: SynapseKind::Alpha,
        tau_s: 5e-3,
        readout: Readout::SpikeCount,
        checkpoints: [0.02, 0.05]
            .into_iter()
            .filter(|&t| t < presentation_time)
            .collect(),
        seed,
    };
    SpikingNetwork::from_parts(&SIZES, &w, &b, LifParams::default(), cfg).unwrap()
}

fn images(n: usize) -> (Array2<f32>, Vec<u8>) {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let x = Array2::from_shape_fn((n, SIZES[0]), |_| rng.gen_range(0.0f32..1.0));
    let labels = (0..n).map(|i| (i % SIZES[3]) as u8).collect();
    (x, labels)
}

fn runtime(mean: f64, spread: f64, loss: f64) -> RuntimeConfig {
    RuntimeConfig {
        delay_up: DelayConfig {
            kind: if spread > 0.0 {
                DelayKind::Uniform
            } else {
                DelayKind::Fixed
            },
            mean,
            spread,
        },
        loss,
        ..RuntimeConfig::default()
    }
}

#[test]
fn actors_at_zero_delay_equal_the_per_image_loop() {
    let net = network(0.1, 5);
    let (x, labels) = images(24);
    let mut ws = net.workspace();
    let mut actors = ActorNetwork::new(&net, 1.0);
    let names = actors.names();
    assert_eq!(names, ["input", "layer2", "layer3", "layer4"]);
    for i in 0..x.nrows() {
        let row: Vec<f32> = x.row(i).to_vec();
        let mut expected = ImageResult::default();
        net.run_image(&mut ws, &row, i as u64, &mut expected);
        actors.load(&row, i as u64);
        let stats = actors
            .run_virtual(Timing::ideal(names.len(), 1), 1e6)
            .unwrap();
        let mut got = ImageResult::default();
        actors.result(&mut got);
        assert_eq!(got, expected, "image {i}");
        assert!(
            expected.spikes.iter().all(|&s| s > 0),
            "every layer fires: {:?}",
            expected.spikes
        );
        // Only steps in which something fired send a message, and nothing
        // is lost or late without delays.
        let steps = net.steps() as u64;
        assert!(stats.messages() <= steps * 3);
        assert_eq!(stats.lost() + stats.in_flight() + actors.late_spikes(), 0);
    }
    // The whole evaluation agrees too, for any number of threads.
    let looped = evaluate(&net, x.view(), &labels, 1).unwrap();
    for threads in [1, 2] {
        let (report, a) =
            evaluate_on_actors(&net, x.view(), &labels, threads, &runtime(0.0, 0.0, 0.0), 9)
                .unwrap();
        assert_eq!(report.predictions, looped.predictions);
        assert_eq!(report.spikes_per_image, looped.spikes_per_image);
        assert_eq!(report.accuracy_vs_time, looped.accuracy_vs_time);
        assert_eq!(report.tie_break_fraction, looped.tie_break_fraction);
        assert_eq!(a.stats.samples, x.nrows() as u64);
    }
}

/// Per edge: sent (+ duplicates) = delivered + lost + in flight, and the
/// driver's counts equal the actors' own counts of what they sent and handled.
fn check_accounting(stats: &Stats, actors: &ActorNetwork) -> (u64, u64) {
    let (sent, handled) = actors.message_counts();
    let (mut lost, mut in_flight) = (0, 0);
    for (edge, e) in stats.edges.iter().zip(&stats.edge) {
        assert_eq!(
            e.sent + e.duplicated,
            e.delivered + e.lost + e.in_flight,
            "edge {} → {}: {e:?}",
            edge.from,
            edge.to
        );
        assert_eq!(e.sent, sent[edge.from], "sent by actor {}", edge.from);
        assert_eq!(
            e.delivered, handled[edge.to],
            "handled by actor {}",
            edge.to
        );
        lost += e.lost;
        in_flight += e.in_flight;
    }
    (lost, in_flight)
}

#[test]
fn every_spike_message_is_delivered_lost_or_in_flight_on_the_virtual_driver() {
    let net = network(0.1, 5);
    let (x, _) = images(4);
    let mut actors = ActorNetwork::new(&net, 1.0);
    let names = actors.names();
    // Jittered delays of 0.5–3.5 ms (several steps) and 20 % loss.
    let r = runtime(2e-3, 1.5e-3, 0.2);
    let (mut lost, mut late) = (0, 0);
    for i in 0..x.nrows() {
        actors.load(&x.row(i).to_vec(), i as u64);
        let stats = actors
            .run_virtual(Timing::from_config(&r, &names, 4 + i as u64), 1e6)
            .unwrap();
        let (l, in_flight) = check_accounting(&stats, &actors);
        // The virtual driver runs until its queue is empty.
        assert_eq!(in_flight, 0);
        lost += l;
        late += actors.late_spikes();
        assert!(stats.messages() > 0);
    }
    assert!(lost > 0, "20 % loss loses messages");
    assert!(late > 0, "delayed spikes arrive after the last step");
}

#[test]
fn every_spike_message_is_delivered_lost_or_in_flight_on_the_wall_driver() {
    // 30 steps of 1 ms in real time; delays of 1–5 ms, 20 % loss.
    let net = network(0.03, 5);
    let (x, _) = images(2);
    let mut actors = ActorNetwork::new(&net, 1000.0);
    let names = actors.names();
    let r = runtime(3.0, 2.0, 0.2);
    let opts = WallOptions {
        workers: 2,
        capacity: 64,
        idle_timeout: Duration::from_secs(10),
        rule_threads: 0,
    };
    let (mut lost, mut delivered) = (0, 0);
    for i in 0..x.nrows() {
        actors.load(&x.row(i).to_vec(), i as u64);
        let timing = Timing::from_config(&r, &names, 4 + i as u64);
        let list = std::mem::take(&mut actors.actors);
        let mut driver = WallDriver::new(list, actors.topo.clone(), timing, opts.clone()).unwrap();
        driver.run().unwrap();
        actors.actors = std::mem::take(&mut driver.actors);
        assert!(actors.actors.iter().all(|a| a.is_done()));
        let (l, _) = check_accounting(&driver.stats, &actors);
        lost += l;
        delivered += driver.stats.edge.iter().map(|e| e.delivered).sum::<u64>();
    }
    assert!(
        lost > 0 && delivered > 0,
        "lost {lost}, delivered {delivered}"
    );
}

#[test]
fn delayed_virtual_runs_are_reproducible_and_the_delay_shows() {
    let net = network(0.1, 5);
    let (x, labels) = images(16);
    let r = runtime(2e-3, 1.5e-3, 0.1);
    let (a, sa) = evaluate_on_actors(&net, x.view(), &labels, 1, &r, 21).unwrap();
    let (b, sb) = evaluate_on_actors(&net, x.view(), &labels, 2, &r, 21).unwrap();
    assert_eq!(a.predictions, b.predictions);
    assert_eq!(a.spikes_per_image, b.spikes_per_image);
    assert_eq!(
        sa.stats.to_json("s").to_string(),
        sb.stats.to_json("s").to_string(),
        "same seed, same messages, any thread count"
    );
    let (c, _) = evaluate_on_actors(&net, x.view(), &labels, 1, &r, 22).unwrap();
    assert_ne!(c.spikes_per_image, a.spikes_per_image, "the seed matters");
    let (zero, _) =
        evaluate_on_actors(&net, x.view(), &labels, 1, &runtime(0.0, 0.0, 0.0), 21).unwrap();
    // Lost and late input spikes leave the layers above with less drive.
    assert!(
        a.spikes_per_image[1] < zero.spikes_per_image[1],
        "{:?} vs {:?}",
        a.spikes_per_image,
        zero.spikes_per_image
    );
    assert_eq!(a.spikes_per_image[0], zero.spikes_per_image[0]);
}

#[test]
fn spike_messages_count_and_add_columns() {
    let s = Spikes::signed(&[3, 0, 2], &[2, 0, -1]);
    assert_eq!(s.neurons, [3, 2]);
    assert_eq!(s.spikes(), 3);
    let u = Spikes::unsigned(&[1, 1, 0]);
    assert_eq!(u.spikes(), 3);
    // Columns of 2 weights per presynaptic neuron.
    let columns = [1.0f64, 2.0, 10.0, 20.0, 100.0, 200.0, 1000.0, 2000.0];
    let mut acc = [0.0f64; 2];
    s.add_columns(&columns, 0.5, &mut acc);
    assert_eq!(
        acc,
        [0.5 * (2.0 * 1000.0 - 100.0), 0.5 * (2.0 * 2000.0 - 200.0)]
    );
    let mut acc = [0.0f64; 2];
    u.add_columns(&columns, 1.0, &mut acc);
    assert_eq!(acc, [21.0, 42.0]);
}

#[test]
fn the_snn_runtime_key_runs_the_evaluation_on_actors() {
    use pcsim::experiment::{RunOptions, run};
    use pcsim::scenario::{parse, validate};
    use std::path::Path;
    let text = |extra_snn: &str, extra: &str| {
        format!(
            r#"
name = "snn-actors"
seed = 2
[network]
layers = [10, 24, 4]
activation = "soft_lif"
hidden_bias_init = 1.0
[data.synthetic]
n_train = 300
n_test = 40
[training]
epochs = 1
batch_size = 32
learning_rate = 0.02
[snn]
presentation_time = 0.05
presentation_sweep = [0.02]
{extra_snn}
{extra}
"#
        )
    };
    let dir = tempfile::tempdir().unwrap();
    let mut summaries = Vec::new();
    for (name, snn) in [("loop", ""), ("virtual", "runtime = \"virtual\"")] {
        let s = parse(&text(snn, ""), Path::new("t.toml")).unwrap();
        validate(&s).unwrap();
        let opts = RunOptions {
            out_dir: dir.path().join(name),
            ..RunOptions::default()
        };
        summaries.push(run(&s, &opts).unwrap());
    }
    let (looped, actors) = (&summaries[0]["snn"], &summaries[1]["snn"]);
    assert_eq!(looped["spiking_accuracy"], actors["spiking_accuracy"]);
    assert_eq!(looped["spikes_per_image"], actors["spikes_per_image"]);
    assert_eq!(actors["runtime"], "virtual");
    assert!(
        actors["actors"]["spike_messages_per_image"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    assert!(dir.path().join("virtual/snn_runtime_edges.csv").exists());

    // The spike edges take [runtime]'s delays; what they cannot use is refused.
    let delayed = parse(
        &text(
            "runtime = \"virtual\"",
            "[runtime]\nloss = 0.1\ndelay_up = { kind = \"uniform\", mean = 0.002, spread = 0.001 }",
        ),
        Path::new("t.toml"),
    )
    .unwrap();
    validate(&delayed).unwrap();
    for (extra, key) in [
        (
            "[runtime]\ndelay_down = { mean = 0.002 }",
            "runtime.delay_down.mean",
        ),
        ("[runtime]\nloss = 0.1", "runtime.loss"),
    ] {
        let s = parse(&text("", extra), Path::new("t.toml")).unwrap();
        let (k, _) = validate(&s).unwrap_err();
        assert_eq!(k, key);
    }
    let s = parse(
        &text(
            "runtime = \"virtual\"",
            "[runtime]\ndelay_down = { mean = 0.002 }",
        ),
        Path::new("t.toml"),
    )
    .unwrap();
    assert_eq!(validate(&s).unwrap_err().0, "runtime.delay_down.mean");
    // Training on the actors and spikes on the actors would share [runtime].
    let s = parse(
        &text(
            "runtime = \"virtual\"",
            "[algorithm]\nkind = \"il\"\n[runtime]\ndriver = \"virtual\"",
        ),
        Path::new("t.toml"),
    )
    .unwrap();
    assert_eq!(validate(&s).unwrap_err().0, "snn.runtime");
}
