//! Actor runtime acceptance tests (no MNIST): the actors reproduce the
//! lockstep reference, event-triggered Z-IL stays exact under random delays,
//! clock-triggered Z-IL under jitter does not, virtual runs are reproducible,
//! stalls and panics become errors naming the actors.

use pcsim::algo::Trainer;
use pcsim::algo::bp::Backprop;
use pcsim::algo::optim::OptimizerKind;
use pcsim::experiment::{self, RunOptions, build_network, build_trainer};
use pcsim::nn::{Mlp, Updates};
use pcsim::runtime::RuntimeError;
use pcsim::scenario::{self, Scenario};
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

fn scenario(kind: &str, runtime: &str) -> Scenario {
    // Z-IL fixes γ and T itself (validation refuses them). γ = 0.1: no step
    // overshoots, so the local step control leaves every step at γ and the
    // actors equal lockstep at every granularity (when a step does overshoot,
    // a group actor measures the curvature on its slice of the layer, so
    // `groups` granularity then differs from lockstep; tests/stability.rs).
    let inference = if kind == "il" {
        "[algorithm.inference]\ngamma = 0.1\nsteps = 6"
    } else {
        ""
    };
    let text = format!(
        r#"
name = "rt-test"
seed = 11
precision = "f64"
[network]
layers = [6, 12, 10, 8, 3]
activation = "tanh"
output = "softmax_ce"
[algorithm]
kind = "{kind}"
{inference}
[data.synthetic]
n_train = 96
n_test = 32
n_features = 6
n_classes = 3
[training]
batch_size = 16
learning_rate = 0.05
[runtime]
{runtime}
"#
    );
    let s = scenario::parse(&text, Path::new("test.toml")).expect("valid test scenario");
    scenario::validate(&s).expect("valid");
    s
}

fn batches(s: &Scenario, n: usize) -> Vec<(ndarray::Array2<f64>, ndarray::Array2<f64>)> {
    let split = experiment::load_data(s).expect("synthetic data");
    let (x, y) = split.train.to_real::<f64>();
    let b = s.training.batch_size;
    (0..n)
        .map(|i| {
            (
                x.slice(ndarray::s![i * b..(i + 1) * b, ..]).to_owned(),
                y.slice(ndarray::s![i * b..(i + 1) * b, ..]).to_owned(),
            )
        })
        .collect()
}

/// Trains `steps` batches; returns the final network and the applied updates.
fn train(s: &Scenario, steps: usize) -> (Mlp<f64>, Vec<Updates<f64>>) {
    let mut mlp = build_network::<f64>(s);
    let mut trainer = build_trainer::<f64>(s, &mlp).expect("trainer");
    let mut updates = Vec::new();
    for (x, y) in batches(s, steps) {
        let loss = trainer.train_batch(&mut mlp, x.view(), y.view(), true);
        if let Some(e) = trainer.take_error() {
            panic!("training failed: {e:#}");
        }
        assert!(loss.is_finite());
        updates.push(trainer.last_updates().expect("kept").clone());
    }
    (mlp, updates)
}

/// Max relative difference of every update and the final weights.
fn max_diff(a: &(Mlp<f64>, Vec<Updates<f64>>), b: &(Mlp<f64>, Vec<Updates<f64>>)) -> f64 {
    let mut worst: f64 = 0.0;
    for (ua, ub) in a.1.iter().zip(&b.1) {
        worst = ua.rel_diff(ub).into_iter().fold(worst, f64::max);
    }
    for (wa, wb) in a.0.w.iter().zip(&b.0.w) {
        let num: f64 = (wa - wb).iter().map(|v| v * v).sum::<f64>().sqrt();
        let den: f64 = wb.iter().map(|v| v * v).sum::<f64>().sqrt();
        worst = worst.max(num / den);
    }
    worst
}

/// Max relative difference of each applied update to BP's on the same
/// parameters and batch.
fn deviation_from_bp(s: &Scenario, steps: usize) -> f64 {
    let mut mlp = build_network::<f64>(s);
    let mut trainer = build_trainer::<f64>(s, &mlp).expect("trainer");
    let mut bp = Backprop::new(&mlp, s.training.learning_rate, 0.0, s.training.batch_size);
    let mut reference = Updates::zeros_like(&mlp);
    let mut worst: f64 = 0.0;
    for (x, y) in batches(s, steps) {
        bp.compute_updates(&mlp, x.view(), y.view(), &mut reference);
        trainer.train_batch(&mut mlp, x.view(), y.view(), true);
        if let Some(e) = trainer.take_error() {
            panic!("training failed: {e:#}");
        }
        let applied = trainer.last_updates().expect("kept");
        worst = applied
            .rel_diff(&reference)
            .into_iter()
            .fold(worst, f64::max);
    }
    worst
}

const STEPS: usize = 5;

const GRANULARITIES: [&str; 4] = [
    "granularity = \"layer\"",
    "granularity = \"groups\"\ngroups = 3",
    "granularity = \"nodes\"",
    "granularity = \"nodes\"\ngroups = 2",
];

#[test]
fn zero_delays_reproduce_lockstep_il_and_zil_at_every_granularity() {
    for kind in ["il", "zil"] {
        let reference = train(&scenario(kind, "driver = \"lockstep\""), STEPS);
        for gran in GRANULARITIES {
            let s = scenario(kind, &format!("driver = \"virtual\"\n{gran}"));
            let d = max_diff(&train(&s, STEPS), &reference);
            assert!(
                d <= 1e-12,
                "{kind}, {gran}: actors differ from lockstep by {d:e}"
            );
        }
    }
}

#[test]
fn event_triggered_zil_is_exact_under_random_delays_with_fifo_edges() {
    for (gran, delay) in GRANULARITIES.iter().flat_map(|g| {
        [
            "{ kind = \"exponential\", mean = 2.0 }",
            "{ kind = \"lognormal\", mean = 2.0, spread = 1.0 }",
        ]
        .map(move |d| (*g, d))
    }) {
        for schedule in ["event", "clocked"] {
            let clock = if schedule == "clocked" {
                "trigger = \"event\"\nperiod = 4.0\njitter = 1.5"
            } else {
                ""
            };
            let rt = format!(
                "driver = \"virtual\"\n{gran}\nschedule = \"{schedule}\"\n{clock}\ndelivery = \"fifo\"\ndelay_up = {delay}\ndelay_down = {delay}\ncompute = {{ kind = \"exponential\", mean = 0.3 }}"
            );
            let d = deviation_from_bp(&scenario("zil", &rt), STEPS);
            assert!(
                d <= 1e-12,
                "{gran}, {schedule}, {delay}: Z-IL deviates from BP by {d:e}"
            );
        }
    }
}

#[test]
fn clock_triggered_zil_under_jitter_is_not_exact() {
    let exact = "driver = \"virtual\"\nschedule = \"clocked\"\ntrigger = \"clock\"\nperiod = 10.0\ndelay_up = { kind = \"fixed\", mean = 1.0 }\ndelay_down = { kind = \"fixed\", mean = 1.0 }";
    // Without jitter (delays < P/2) the clock schedule is the lockstep one …
    let d0 = deviation_from_bp(&scenario("zil", exact), STEPS);
    assert!(
        d0 <= 1e-12,
        "clock trigger without jitter deviates by {d0:e}"
    );
    // … with jitter the local clocks miss messages and the updates differ.
    let d = deviation_from_bp(&scenario("zil", &format!("{exact}\njitter = 3.0")), STEPS);
    assert!(
        d > 1e-6,
        "clock trigger under jitter should not be exact, deviation {d:e}"
    );
}

/// `pcsim run` of `s` into `out`.
fn run_into(s: &Scenario, out: &Path) {
    let opts = RunOptions {
        out_dir: out.to_path_buf(),
        ..Default::default()
    };
    experiment::run(s, &opts).expect("run");
}

#[test]
fn two_virtual_runs_write_byte_identical_files() {
    let mut s = scenario(
        "zil",
        "driver = \"virtual\"\nschedule = \"clocked\"\ntrigger = \"clock\"\njitter = 2.0\nperiod = 5.0\ndelay_up = { kind = \"exponential\", mean = 1.0 }\ndelay_down = { kind = \"lognormal\", mean = 1.0, spread = 0.5 }\nduplication = 0.1",
    );
    s.training.epochs = 2;
    s.output.equivalence_every = 1;
    s.output.plots = false;
    let dir = tempfile::tempdir().expect("tempdir");
    let run = |name: &str| {
        let out = dir.path().join(name);
        run_into(&s, &out);
        out
    };
    let (a, b) = (run("a"), run("b"));
    for file in ["equivalence.csv", "runtime_stats.json"] {
        let fa = std::fs::read(a.join(file)).expect("written");
        let fb = std::fs::read(b.join(file)).expect("written");
        assert!(!fa.is_empty());
        assert_eq!(fa, fb, "{file} differs between two runs");
    }
    // metrics.csv without its wall_seconds column (the only non-virtual quantity).
    let strip = |p: &Path| -> Vec<String> {
        std::fs::read_to_string(p.join("metrics.csv"))
            .expect("written")
            .lines()
            .map(|l| l.rsplit_once(',').map_or(l, |(head, _)| head).to_string())
            .collect()
    };
    assert_eq!(strip(&a), strip(&b));
    // And the duplicates were really injected (so the comparison means something).
    let stats: serde_json::Value =
        serde_json::from_slice(&std::fs::read(a.join("runtime_stats.json")).unwrap()).unwrap();
    assert!(stats["duplicated"].as_u64().unwrap() > 0);
}

/// Runs `f` on a thread and fails the test if it takes longer than `secs`.
fn within<R: Send + 'static>(secs: u64, f: impl FnOnce() -> R + Send + 'static) -> R {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(secs))
        .expect("the run hung instead of ending with an error")
}

/// The stall bound of a driver: virtual time units, or wall milliseconds.
fn bound(driver: &str) -> &'static str {
    if driver == "wall" {
        "idle_timeout_ms = 3000"
    } else {
        "watchdog = 1000.0"
    }
}

fn first_error(s: Scenario, inject_panic: Option<(usize, u64)>) -> String {
    let mut mlp = build_network::<f64>(&s);
    let mut trainer = experiment::async_trainer::<f64>(&s);
    trainer.inject_panic = inject_panic;
    for (x, y) in batches(&s, 3) {
        trainer.train_batch(&mut mlp, x.view(), y.view(), false);
        if let Some(e) = trainer.take_error() {
            return format!("{e:#}");
        }
    }
    panic!("no error");
}

#[test]
fn total_message_loss_ends_with_the_watchdog_error() {
    for driver in ["virtual", "wall"] {
        let s = scenario(
            "il",
            &format!("driver = \"{driver}\"\nloss = 1.0\n{}", bound(driver)),
        );
        let msg = within(30, move || first_error(s, None));
        assert!(msg.contains("watchdog"), "{driver}: {msg}");
        assert!(
            msg.contains("input waits for `Done` of sample 0"),
            "{driver}: {msg}"
        );
        assert!(msg.contains("layer5 waits for"), "{driver}: {msg}");
        assert!(msg.contains("runtime.loss"), "{driver}: {msg}");
    }
}

#[test]
fn a_panicking_actor_ends_the_run_with_an_error_naming_it() {
    for driver in ["virtual", "wall"] {
        let s = scenario("zil", &format!("driver = \"{driver}\"\n{}", bound(driver)));
        let msg = within(30, move || first_error(s, Some((3, 1))));
        assert!(msg.contains("actor `layer3` panicked"), "{driver}: {msg}");
    }
    // The error type itself names the actor.
    let e = RuntimeError::ActorPanicked {
        actor: "layer3".into(),
        message: "boom".into(),
    };
    assert!(e.to_string().contains("layer3"));
}

#[test]
fn wall_runtime_with_zero_delays_equals_the_lockstep_reference() {
    for kind in ["il", "zil"] {
        let reference = train(&scenario(kind, "driver = \"lockstep\""), STEPS);
        let wall = train(&scenario(kind, "driver = \"wall\"\nworkers = 2"), STEPS);
        // The same rules on the same inputs in the same order: bit for bit.
        for (a, b) in wall.0.w.iter().zip(&reference.0.w) {
            assert_eq!(a, b, "{kind}: wall weights differ from lockstep");
        }
        // The slices run as groups: side by side on threads of their own
        // (2 threads), or as tokio tasks (1).
        for threads in [1, 2] {
            pcsim::nn::linalg::set_threads(threads);
            let groups = train(
                &scenario(
                    kind,
                    "driver = \"wall\"\nworkers = 2\ngranularity = \"groups\"\ngroups = 2",
                ),
                STEPS,
            );
            pcsim::nn::linalg::set_threads(1);
            let d = max_diff(&groups, &reference);
            assert!(
                d <= 1e-12,
                "{kind}, {threads} threads: wall groups differ by {d:e}"
            );
        }
    }
}

/// The validation error (key, message) of a `[runtime]` table, or None.
fn runtime_error(kind: &str, layers: &str, runtime: &str) -> Option<(String, String)> {
    let text = format!(
        "[network]\nlayers = {layers}\n[algorithm]\nkind = \"{kind}\"\n[runtime]\n{runtime}\n"
    );
    let s = scenario::parse(&text, Path::new("x.toml")).expect("parses");
    scenario::validate(&s).err()
}

#[test]
fn bad_runtime_keys_are_named() {
    let err = |kind: &str, rt: &str| runtime_error(kind, "[10, 32, 32, 4]", rt);
    let (key, _) = err("il", "driver = \"virtual\"\nloss = 1.5").expect("loss > 1");
    assert_eq!(key, "runtime.loss");
    // Clocked actors run on the wall driver too.
    assert_eq!(
        err(
            "il",
            "driver = \"wall\"\nschedule = \"clocked\"\njitter = 1.0"
        ),
        None
    );
    // Keys nobody would use are refused, naming the key and why.
    for (kind, rt, key, says) in [
        (
            "bp",
            "granularity = \"groups\"",
            "runtime.granularity",
            "bp",
        ),
        ("bp", "driver = \"virtual\"", "runtime.driver", "bp"),
        (
            "il",
            "granularity = \"nodes\"",
            "runtime.granularity",
            "lockstep",
        ),
        (
            "il",
            "driver = \"virtual\"\ngroups = 2",
            "runtime.groups",
            "granularity",
        ),
        (
            "il",
            "driver = \"virtual\"\njitter = 1.0",
            "runtime.jitter",
            "clocked",
        ),
        (
            "il",
            "driver = \"virtual\"\nschedule = \"clocked\"\ntrigger = \"clock\"",
            "runtime.trigger",
            "Z-IL",
        ),
        (
            "zil",
            "driver = \"virtual\"\ntrigger = \"clock\"",
            "runtime.trigger",
            "clocked",
        ),
        (
            "il",
            "driver = \"wall\"\ncompute = { kind = \"fixed\", mean = 1.0 }",
            "runtime.compute.mean",
            "real-time",
        ),
        (
            "il",
            "driver = \"wall\"\nwatchdog = 5.0",
            "runtime.watchdog",
            "idle_timeout_ms",
        ),
        (
            "il",
            "driver = \"virtual\"\nworkers = 2",
            "runtime.workers",
            "wall",
        ),
        (
            "il",
            "driver = \"virtual\"\ngranularity = \"groups\"\ngroups = 1000",
            "runtime.groups",
            "≤ 32",
        ),
        (
            "il",
            "driver = \"wall\"\nworkers = 1000000000",
            "runtime.workers",
            "≤ 256",
        ),
        (
            "il",
            "driver = \"wall\"\nidle_timeout_ms = 9223372036854775807",
            "runtime.idle_timeout_ms",
            "one day",
        ),
        (
            "il",
            "driver = \"virtual\"\ndelay_up = { kind = \"fixed\", mean = 1e300 }",
            "runtime.delay_up.mean",
            "1e9",
        ),
        (
            "il",
            "driver = \"virtual\"\nschedule = \"clocked\"\njitter = 1e300",
            "runtime.jitter",
            "1e9",
        ),
        ("il", "shards = 2", "runtime.shards", "lockstep"),
        (
            "il",
            "driver = \"virtual\"\nshards = 0",
            "runtime.shards",
            "1..=64",
        ),
        (
            "il",
            "driver = \"wall\"\nshards = 2\nschedule = \"clocked\"",
            "runtime.shards",
            "event",
        ),
        (
            "il",
            "driver = \"virtual\"\nshards = 9\n[training]\nbatch_size = 8",
            "runtime.shards",
            "training.batch_size",
        ),
    ] {
        let (k, msg) = err(kind, rt).unwrap_or_else(|| panic!("{kind} with {rt:?} was accepted"));
        assert_eq!(k, key, "{kind}, {rt}: {msg}");
        assert!(msg.contains(says), "{kind}, {rt}: {msg}");
        assert!(!msg.contains("0000000000"), "unreadable number: {msg}");
    }
    // An unknown actor name lists the valid ones; with shards, every
    // shard's actors carry the shard.
    for (rt, key, lists) in [
        (
            "granularity = \"nodes\"\nactor_compute.layer99 = { mean = 1.0 }",
            "runtime.actor_compute.layer99",
            "err2, val2, err3, val3, err4",
        ),
        (
            "shards = 2\nactor_compute.layer3 = { mean = 1.0 }",
            "runtime.actor_compute.layer3",
            "layer3@0",
        ),
    ] {
        let (k, msg) = err("il", &format!("driver = \"virtual\"\n{rt}")).expect(rt);
        assert_eq!(k, key);
        assert!(msg.contains(lists), "{msg}");
    }
    for rt in [
        "granularity = \"nodes\"\nactor_compute.val3 = { mean = 1.0 }",
        "shards = 2\nactor_compute.\"layer3@1\" = { mean = 1.0 }",
    ] {
        assert_eq!(
            err("il", &format!("driver = \"virtual\"\n{rt}")),
            None,
            "{rt}"
        );
    }
}

#[test]
fn pipelined_batches_all_finish_and_overlap() {
    let run = |pipeline: usize, driver: &str, gran: &str| {
        let mut s = scenario(
            "il",
            &format!(
                "driver = \"{driver}\"\ngranularity = \"{gran}\"\ngroups = 2\ndelay_up = {{ kind = \"exponential\", mean = 1.0 }}\n{}",
                bound(driver)
            ),
        );
        // An API feature: `pcsim run` trains one batch at a time and refuses it.
        s.runtime.pipeline = pipeline;
        let mut mlp = build_network::<f64>(&s);
        let mut t = experiment::async_trainer::<f64>(&s);
        let loss = t
            .train_batches(&mut mlp, batches(&s, 6), false)
            .expect("runs");
        assert!(loss.is_finite());
        assert_eq!(t.stats().expect("ran").samples, 6, "every batch finished");
        mlp
    };
    let (one, two) = (run(1, "virtual", "groups"), run(2, "virtual", "groups"));
    // With two batches in flight the second sees weights before the first's
    // update: the trajectories differ (so the batches really overlapped) …
    let diff: f64 = one
        .w
        .iter()
        .zip(&two.w)
        .map(|(a, b)| (a - b).iter().map(|v| v.abs()).sum::<f64>())
        .sum();
    assert!(diff > 1e-9, "pipeline = 2 did not overlap batches");
    // … and the wall runtime pipelines as well.
    let wall = run(2, "wall", "groups");
    assert!(wall.is_finite());
    // Value and error nodes pipeline too (each sample has its value nodes).
    let nodes = run(2, "virtual", "nodes");
    assert!(nodes.is_finite());
    assert!(run(3, "wall", "nodes").is_finite());
}

#[test]
fn sweep_shards_merge_into_the_full_table() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("sweep.toml");
    std::fs::write(
        &file,
        r#"
name = "sweep-test"
seed = 3
precision = "f64"
[network]
layers = [6, 8, 3]
activation = "tanh"
[algorithm]
kind = "zil"
[data.synthetic]
n_train = 64
n_test = 32
n_features = 6
n_classes = 3
[training]
batch_size = 16
[runtime]
driver = "virtual"
schedule = "clocked"
period = 4.0
delay_down = { kind = "exponential", mean = 1.0 }
[output]
equivalence_every = 1
plots = false
[sweep]
"runtime.trigger" = ["event", "clock"]
"runtime.jitter" = [0.0, 1.5]
"#,
    )
    .unwrap();
    let opts = |out: &str, shard| experiment::sweep::SweepOptions {
        out_dir: dir.path().join(out),
        shard,
        jobs: 2,
        overrides: vec![],
        force: false,
    };
    let full = experiment::sweep::sweep(&file, &opts("full", (0, 1))).expect("sweep");
    assert_eq!(full.rows.len(), 4);
    assert_eq!(
        &full.header[..4],
        ["point", "runtime.jitter", "runtime.trigger", "max_rel_diff"]
    );
    // The event trigger is exact at every jitter; the rows are complete.
    for row in &full.rows {
        assert_eq!(row[row.len() - 2], "completed", "{row:?}");
        if row[2] == "event" {
            assert!(row[3].parse::<f64>().unwrap() <= 1e-12, "{row:?}");
        }
    }
    let a = experiment::sweep::sweep(&file, &opts("s0", (0, 2))).expect("shard 0");
    let b = experiment::sweep::sweep(&file, &opts("s1", (1, 2))).expect("shard 1");
    assert_eq!(a.rows.len() + b.rows.len(), 4);
    let merged = experiment::sweep::merge(
        &[dir.path().join("s1"), dir.path().join("s0")],
        &dir.path().join("merged"),
        false,
    )
    .expect("merge");
    let strip = |t: &pcsim::metrics::Table| -> Vec<Vec<String>> {
        t.rows.iter().map(|r| r[..r.len() - 1].to_vec()).collect()
    };
    assert_eq!(
        strip(&merged),
        strip(&full),
        "merged shards differ from the full sweep"
    );
    assert!(experiment::sweep::parse_shard("2/2").is_err());
}

#[test]
fn momentum_is_kept_by_each_actor_and_equals_lockstep() {
    for kind in ["il", "zil"] {
        let with_momentum = |driver: &str| {
            let mut s = scenario(kind, &format!("driver = \"{driver}\""));
            s.training.momentum = 0.9;
            train(&s, STEPS)
        };
        let (lock, virt) = (with_momentum("lockstep"), with_momentum("virtual"));
        let d = max_diff(&virt, &lock);
        assert!(
            d <= 1e-12,
            "{kind}, momentum: actors differ from lockstep by {d:e}"
        );
        // And momentum really changed the trajectory.
        let plain = train(&scenario(kind, "driver = \"virtual\""), STEPS);
        assert!(max_diff(&virt, &plain) > 1e-6);
    }
}

#[test]
fn adam_and_adamw_are_kept_by_each_actor_and_equal_lockstep() {
    for kind in ["il", "zil"] {
        for (optimizer, decay) in [("adam", 0.0), ("adamw", 0.01)] {
            let with = |driver: &str, gran: &str| {
                let mut s = scenario(kind, &format!("driver = \"{driver}\"\n{gran}"));
                s.training.learning_rate = 0.01;
                s.training.optimizer = scenario::OptimizerKind::AdamW;
                if optimizer == "adam" {
                    s.training.optimizer = scenario::OptimizerKind::Adam;
                }
                s.training.weight_decay = decay;
                scenario::validate(&s).expect("the actors take the optimizer keys");
                train(&s, STEPS)
            };
            let lock = with("lockstep", "");
            for gran in GRANULARITIES {
                let d = max_diff(&with("virtual", gran), &lock);
                assert!(
                    d <= 1e-12,
                    "{kind}, {optimizer}, {gran}: actors differ from lockstep by {d:e}"
                );
            }
            // And the optimizer really changed the trajectory.
            let sgd = train(&scenario(kind, "driver = \"virtual\""), STEPS);
            assert!(max_diff(&with("virtual", ""), &sgd) > 1e-6);
        }
    }
}

/// The network after 5 batches of 16 in f32 (plain fast path, no update kept).
fn train_f32(s: &Scenario) -> Mlp<f32> {
    train_f32_batches(s, false, &[16; 5]).mlp
}

/// The network and the losses after batches of `rows` rows in f32; `sparse`
/// zeroes ≈ 80 % of the inputs (layer 2 then takes the sparse kernels).
/// What `train_f32_batches` ends with: the network, each batch's loss and
/// the last batch's update.
struct Trained {
    mlp: Mlp<f32>,
    losses: Vec<f64>,
    last_update: Option<Updates<f32>>,
}

fn train_f32_batches(s: &Scenario, sparse: bool, rows: &[usize]) -> Trained {
    let mut mlp = build_network::<f32>(s);
    let mut trainer = build_trainer::<f32>(s, &mlp).expect("trainer");
    let split = experiment::load_data(s).expect("data");
    let (mut x, y) = split.train.to_real::<f32>();
    if sparse {
        for (k, v) in x.iter_mut().enumerate() {
            if k % 5 != 0 {
                *v = 0.0;
            }
        }
    }
    let mut losses = Vec::new();
    let mut first = 0;
    for &n in rows {
        let r = first..first + n;
        first += n;
        let loss = trainer.train_batch(
            &mut mlp,
            x.slice(ndarray::s![r.clone(), ..]),
            y.slice(ndarray::s![r, ..]),
            true,
        );
        if let Some(e) = trainer.take_error() {
            panic!("training failed: {e:#}");
        }
        losses.push(loss);
    }
    let last_update = trainer.last_updates().cloned();
    Trained {
        mlp,
        losses,
        last_update,
    }
}

#[test]
fn f32_actors_follow_the_lockstep_reference_bit_for_bit() {
    // A learning rate whose α/(β·B) rounds differently in f64 and f32.
    let run = |driver: &str| {
        let mut s = scenario("il", &format!("driver = \"{driver}\""));
        s.precision = scenario::Precision::F32;
        s.training.learning_rate = 0.05 * 0.85f64.powi(3);
        s.algorithm.inference.beta = 0.1;
        s.training.momentum = 0.9;
        train_f32(&s)
    };
    let (a, b) = (run("lockstep"), run("virtual"));
    assert_eq!(a.w, b.w);
    assert_eq!(a.b, b.b);
}

/// The actors' rules split their rows (and their update's units) over the
/// worker team: any thread count gives lockstep's single-thread bits, on
/// both drivers and at a granularity with slices.
#[test]
fn actors_on_several_threads_equal_single_thread_lockstep_bit_for_bit() {
    let run = |runtime: &str, threads: usize| {
        let mut s = scenario("il", runtime);
        s.precision = scenario::Precision::F32;
        s.training.momentum = 0.9;
        pcsim::nn::linalg::set_threads(threads);
        let mlp = train_f32(&s);
        pcsim::nn::linalg::set_threads(1);
        mlp
    };
    let reference = run("driver = \"lockstep\"", 1);
    for runtime in [
        "driver = \"virtual\"",
        "driver = \"wall\"\nworkers = 1",
        "driver = \"virtual\"\ngranularity = \"nodes\"",
    ] {
        for threads in [2, 3] {
            let m = run(runtime, threads);
            assert_eq!(m.w, reference.w, "{runtime}, {threads} threads");
            assert_eq!(m.b, reference.b, "{runtime}, {threads} threads");
        }
    }
}

/// Test accuracy of a short run through the library.
fn test_accuracy(s: &Scenario) -> f64 {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = s.clone();
    s.output.plots = false;
    let summary = experiment::run(
        &s,
        &RunOptions {
            out_dir: dir.path().join("run"),
            ..Default::default()
        },
    )
    .expect("run");
    summary["test_accuracy"].as_f64().expect("accuracy")
}

#[test]
fn feedback_alignment_and_predict_steps_reach_the_actors() {
    for kind in ["il", "zil"] {
        let with = |driver: &str, extra: &str| {
            let mut s = scenario(kind, &format!("driver = \"{driver}\"\n{extra}"));
            s.algorithm.inference.feedback = scenario::Feedback::Random;
            train(&s, STEPS)
        };
        // Feedback alignment: the actors equal the lockstep FA run …
        let lock = with("lockstep", "");
        for gran in GRANULARITIES {
            let d = max_diff(&with("virtual", gran), &lock);
            assert!(d <= 1e-12, "{kind}, {gran}: FA actors differ by {d:e}");
        }
        // … and differ from exact PC (for Z-IL: from BP's updates).
        let exact = train(&scenario(kind, "driver = \"virtual\""), STEPS);
        assert!(
            max_diff(&with("virtual", ""), &exact) > 1e-6,
            "{kind}: feedback = random changed nothing"
        );
    }
    // predict_steps: the asynchronous trainer predicts by relaxation like
    // the lockstep one, which differs from the feedforward answer after a
    // few steps from rest.
    let accuracy = |driver: &str, predict_steps: usize| {
        let mut s = scenario("il", &format!("driver = \"{driver}\""));
        s.algorithm.inference.predict_steps = predict_steps;
        s.data.synthetic.n_test = 200;
        test_accuracy(&s)
    };
    let (lock3, virt3, virt0) = (
        accuracy("lockstep", 3),
        accuracy("virtual", 3),
        accuracy("virtual", 0),
    );
    assert_eq!(lock3, virt3, "predict_steps: actors and lockstep disagree");
    assert_ne!(
        virt3, virt0,
        "predict_steps = 3 predicted like the feedforward pass"
    );
}

/// Three actors in a chain `a → b → c`; `a` tries to use `b`'s link.
struct Rogue {
    name: &'static str,
    link: Option<pcsim::runtime::Link>,
}

impl pcsim::runtime::Actor for Rogue {
    type Msg = u8;
    fn name(&self) -> String {
        self.name.into()
    }
    fn start(&mut self, ctx: &mut pcsim::runtime::Ctx<u8>) {
        if let Some(link) = self.link {
            ctx.send(link, 0, 0, 1);
        }
    }
    fn handle(&mut self, _: pcsim::runtime::Envelope<u8>, _: &mut pcsim::runtime::Ctx<u8>) {}
    fn is_done(&self) -> bool {
        true
    }
    fn waiting_for(&self) -> String {
        "nothing".into()
    }
}

#[test]
fn a_message_on_another_actors_edge_is_an_error_naming_both_actors() {
    use pcsim::runtime::{
        Direction, Port, Timing, Topology, VirtualDriver, WallDriver, WallOptions,
    };
    let build = || {
        let mut topo = Topology::new();
        let _a_to_b = topo.add(0, 1, Port::Forward, Direction::Up);
        let b_to_c = topo.add(1, 2, Port::Forward, Direction::Up);
        // `a` holds a link, but it is `b`'s edge: links cannot be forged, only misused.
        let actors = vec![
            Rogue {
                name: "a",
                link: Some(b_to_c),
            },
            Rogue {
                name: "b",
                link: None,
            },
            Rogue {
                name: "c",
                link: None,
            },
        ];
        (actors, topo, Timing::ideal(3, 1))
    };
    let (actors, topo, timing) = build();
    let virt = VirtualDriver::new(actors, topo, timing, 10.0).run();
    let (actors, topo, timing) = build();
    let opts = WallOptions {
        workers: 1,
        capacity: 4,
        idle_timeout: Duration::from_secs(2),
        rule_threads: 0,
    };
    let wall = WallDriver::new(actors, topo, timing, opts).unwrap().run();
    for result in [virt, wall] {
        let msg = result.expect_err("bad edge").to_string();
        assert!(
            msg.contains("actor `a`") && msg.contains("`b` → `c`"),
            "{msg}"
        );
    }
}

#[test]
fn clocked_wall_runs_learn_like_the_virtual_clocked_run() {
    // Real milliseconds on the wall clock, virtual units in virtual time: the
    // same schedule (period 6, jitter 0.3, no delays), so both learn alike.
    let run = |driver: &str| {
        let mut s = scenario(
            "il",
            &format!(
                "driver = \"{driver}\"\nschedule = \"clocked\"\nperiod = 4.0\njitter = 0.2\ngranularity = \"nodes\"\n{}",
                if driver == "wall" { "workers = 2" } else { "" }
            ),
        );
        s.training.epochs = 2;
        s.training.learning_rate = 0.5;
        s.data.synthetic.n_train = 192;
        s.data.synthetic.n_test = 300;
        let acc = within(60, move || test_accuracy(&s));
        eprintln!("{driver}: clocked accuracy {acc}");
        acc
    };
    let (wall, virt) = (run("wall"), run("virtual"));
    assert!(
        (wall - virt).abs() <= 0.05,
        "clocked wall accuracy {wall} vs virtual {virt}"
    );
    assert!(virt > 0.4, "the clocked run did not learn: {virt}");
}

#[test]
fn wall_statistics_count_duplicates_and_nodes_equal_lockstep() {
    let s = scenario(
        "zil",
        "driver = \"wall\"\nduplication = 1.0\ngranularity = \"nodes\"\ngroups = 2\nworkers = 2",
    );
    let mut mlp = build_network::<f64>(&s);
    let mut t = experiment::async_trainer::<f64>(&s);
    t.train_batches(&mut mlp, batches(&s, 2), false)
        .expect("runs");
    let stats = t.stats_json().expect("ran");
    let (sent, dup) = (
        stats["messages"].as_u64().unwrap(),
        stats["duplicated"].as_u64().unwrap(),
    );
    assert!(sent > 0);
    assert_eq!(dup, sent, "duplication = 1 duplicates every message");
    // Duplicates change nothing in the event schedule: still the lockstep reference.
    let reference = train(&scenario("zil", "driver = \"lockstep\""), STEPS);
    for gran in GRANULARITIES {
        let wall = train(
            &scenario(
                "zil",
                &format!("driver = \"wall\"\nworkers = 2\n{gran}\nduplication = 0.3"),
            ),
            STEPS,
        );
        let d = max_diff(&wall, &reference);
        assert!(d <= 1e-12, "wall, {gran}: differs by {d:e}");
    }
}

#[test]
fn messages_per_sample_of_each_granularity() {
    // Z-IL on 6-12-10-8-3 (L = 5), event schedule, one batch: the counts
    // follow from the circuit (each hidden message of a step is one edge).
    let count = |gran: &str| {
        let s = scenario("zil", &format!("driver = \"virtual\"\n{gran}"));
        let mut mlp = build_network::<f64>(&s);
        let mut t = experiment::async_trainer::<f64>(&s);
        t.train_batches(&mut mlp, batches(&s, 4), false)
            .expect("runs");
        t.stats().expect("ran").messages() as f64 / 4.0
    };
    let (layer, groups, nodes) = (
        count("granularity = \"layer\""),
        count("granularity = \"groups\"\ngroups = 3"),
        count("granularity = \"nodes\""),
    );
    eprintln!("messages per sample: layer {layer}, groups(3) {groups}, nodes {nodes}");
    assert!(layer < nodes && layer < groups, "{layer} {groups} {nodes}");
}

#[test]
fn layer_groups_sum_their_feedback_in_one_order_whatever_arrives_first() {
    // A slice's feedback `ε[l+1] W[l+1]` is the sum of the partial products
    // of the groups above, added in the senders' order rather than as they
    // arrive: random delays that reorder them, duplicates and the wall
    // driver's threads change no bit of the run.
    for gran in [
        "granularity = \"groups\"\ngroups = 3",
        "granularity = \"nodes\"\ngroups = 2",
    ] {
        let reference = train(
            &scenario("il", &format!("driver = \"virtual\"\n{gran}")),
            STEPS,
        );
        for timing in [
            "driver = \"virtual\"\ndelivery = \"per_message\"\ndelay_down = { kind = \"exponential\", mean = 2.0 }",
            "driver = \"virtual\"\nduplication = 0.3",
            "driver = \"wall\"\nworkers = 2",
            "driver = \"wall\"\nworkers = 2\nduplication = 0.3",
        ] {
            let got = train(&scenario("il", &format!("{timing}\n{gran}")), STEPS);
            assert_eq!(got.0.w, reference.0.w, "{gran}, {timing}: weights");
            assert_eq!(got.0.b, reference.0.b, "{gran}, {timing}: biases");
            assert!(got.1 == reference.1, "{gran}, {timing}: updates");
        }
    }
}

#[test]
fn shards_equal_the_lockstep_reference_bit_for_bit() {
    // Each shard relaxes its rows; the pooled update sums the shards' rows
    // in order, so weights, updates and losses equal one network holding
    // the batch — sparse or dense input, on either driver, with momentum,
    // Adam or weight decay, even with a shard left without rows (a last
    // batch of 1 row).
    for (kind, sparse, optimizer) in [
        ("il", false, "momentum"),
        ("il", true, "momentum"),
        ("zil", false, "momentum"),
        ("zil", true, "momentum"),
        ("il", true, "adam"),
        ("zil", false, "sgd with weight decay"),
    ] {
        let run = |runtime: &str, threads: usize| {
            let mut s = scenario(kind, runtime);
            s.precision = scenario::Precision::F32;
            match optimizer {
                "momentum" => s.training.momentum = 0.9,
                "adam" => s.training.optimizer = OptimizerKind::Adam,
                _ => s.training.weight_decay = 1e-3,
            }
            pcsim::nn::linalg::set_threads(threads);
            let out = train_f32_batches(&s, sparse, &[16, 16, 16, 1]);
            pcsim::nn::linalg::set_threads(1);
            out
        };
        let reference = run("driver = \"lockstep\"", 1);
        // A `groups` slice limits its steps on its own slice (see
        // `scenario`), so sharded groups are held to unsharded groups.
        let groups = "driver = \"virtual\"\ngranularity = \"groups\"\ngroups = 2";
        let grouped = run(groups, 1);
        for (runtime, threads) in [
            ("driver = \"virtual\"\nshards = 2", 1),
            (
                "driver = \"virtual\"\nshards = 3\ngranularity = \"nodes\"",
                1,
            ),
            ("driver = \"wall\"\nshards = 2", 2),
            ("driver = \"wall\"\nshards = 3", 2),
            ("driver = \"wall\"\nshards = 2\nworkers = 1", 1),
            (
                "driver = \"wall\"\nshards = 2\ngranularity = \"groups\"\ngroups = 2",
                3,
            ),
        ] {
            let reference = if runtime.contains("groups") {
                &grouped
            } else {
                &reference
            };
            let got = run(runtime, threads);
            let what =
                format!("{kind}, sparse {sparse}, {optimizer}, {runtime}, {threads} threads");
            assert_eq!(got.mlp.w, reference.mlp.w, "{what}");
            assert_eq!(got.mlp.b, reference.mlp.b, "{what}");
            assert_eq!(got.losses, reference.losses, "{what}");
            assert!(got.last_update.is_some(), "{what}");
            assert_eq!(got.last_update, reference.last_update, "{what}");
        }
    }
}

#[test]
fn a_panicking_shard_ends_the_run_at_once() {
    // The other shard waits for the pooled update; the failure must reach
    // it at once rather than after the idle timeout.
    for threads in [1, 2] {
        let mut s = scenario(
            "il",
            "driver = \"wall\"\nshards = 2\nidle_timeout_ms = 60000",
        );
        s.training.epochs = 1;
        pcsim::nn::linalg::set_threads(threads);
        let started = std::time::Instant::now();
        let msg = within(30, move || first_error(s, Some((3, 1))));
        pcsim::nn::linalg::set_threads(1);
        assert!(msg.contains("layer3@"), "{msg}");
        assert!(msg.contains("injected fault"), "{msg}");
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "took {:?}",
            started.elapsed()
        );
    }
}

#[test]
fn a_chain_of_batches_in_one_run_equals_one_run_per_batch_bit_for_bit() {
    // `pcsim run` hands the actors up to `CHAIN` batches per run when the
    // timing is exact; each batch must still see every update of the one
    // before it, so weights and each batch's loss equal one run per batch.
    let configs = [
        "driver = \"virtual\"",
        "driver = \"virtual\"\ngranularity = \"nodes\"\ngroups = 2",
        "driver = \"virtual\"\nshards = 2",
        "driver = \"wall\"\nworkers = 2",
        "driver = \"wall\"\nworkers = 2\ngranularity = \"groups\"\ngroups = 2",
        "driver = \"wall\"\nworkers = 2\nshards = 2",
    ];
    for runtime in configs {
        let mut s = scenario("il", runtime);
        s.training.momentum = 0.9;
        let data = batches(&s, 6);
        let views: Vec<_> = data.iter().map(|(x, y)| (x.view(), y.view())).collect();
        let one_by_one = {
            let mut mlp = build_network::<f64>(&s);
            let mut t = build_trainer::<f64>(&s, &mlp).expect("trainer");
            let losses: Vec<f64> = views
                .iter()
                .map(|&(x, y)| t.train_batch(&mut mlp, x, y, false))
                .collect();
            assert!(t.take_error().is_none(), "{runtime}");
            (mlp, losses)
        };
        let chained = {
            let mut mlp = build_network::<f64>(&s);
            let mut t = build_trainer::<f64>(&s, &mlp).expect("trainer");
            assert_eq!(t.chain_len(), pcsim::runtime::trainer::CHAIN, "{runtime}");
            let losses = t.train_chain(&mut mlp, &views);
            assert!(t.take_error().is_none(), "{runtime}");
            let runs = t.runtime_stats().expect("ran")["runs"].as_u64();
            assert_eq!(runs, Some(1), "{runtime}: the six batches ran as one chain");
            (mlp, losses)
        };
        assert_eq!(chained.1.len(), 6);
        for (a, b) in chained.1.iter().zip(&one_by_one.1) {
            assert_eq!(
                a.to_bits(),
                b.to_bits(),
                "{runtime}: a batch's loss differs"
            );
        }
        for (a, b) in chained.0.w.iter().zip(&one_by_one.0.w) {
            assert_eq!(a, b, "{runtime}: chained weights differ");
        }
    }
    // Timing that could reorder work across batches or draws per run: one
    // batch per run.
    for runtime in [
        "driver = \"virtual\"\ndelay_up = { kind = \"exponential\", mean = 1.0 }",
        "driver = \"virtual\"\nschedule = \"clocked\"",
        "driver = \"virtual\"\nduplication = 0.1",
        "driver = \"virtual\"\ncompute = { kind = \"fixed\", mean = 1.0 }",
    ] {
        let s = scenario("il", runtime);
        let mlp = build_network::<f64>(&s);
        let t = build_trainer::<f64>(&s, &mlp).expect("trainer");
        assert_eq!(t.chain_len(), 1, "{runtime}");
    }
}

#[test]
fn a_chained_pcsim_run_writes_the_lockstep_metrics() {
    // Chains end at every evaluation point, before every batch the
    // equivalence probe compares, and at each epoch: the actors' run then
    // writes lockstep's losses, accuracies and equivalence rows, bit for bit.
    let run = |runtime: &str| {
        let mut s = scenario("il", runtime);
        s.training.epochs = 2;
        s.training.momentum = 0.9;
        s.output.eval_every = 5;
        s.output.equivalence_every = 4;
        s.output.plots = false;
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("run");
        run_into(&s, &out);
        let read = |f: &str| std::fs::read_to_string(out.join(f)).unwrap_or_default();
        let metrics = read("metrics.csv");
        let mut lines = metrics.lines();
        let header: Vec<&str> = lines.next().expect("header").split(',').collect();
        let keep = ["epoch", "step", "train_loss", "test_loss", "test_accuracy"];
        let cols: Vec<usize> = keep
            .iter()
            .map(|k| header.iter().position(|h| h == k).expect("column"))
            .collect();
        let rows: Vec<Vec<String>> = lines
            .map(|l| {
                let f: Vec<&str> = l.split(',').collect();
                cols.iter().map(|&c| f[c].to_string()).collect()
            })
            .collect();
        let runs = serde_json::from_str::<serde_json::Value>(&read("runtime_stats.json"))
            .ok()
            .and_then(|v| v["runs"].as_u64());
        (rows, read("equivalence.csv"), runs)
    };
    let lockstep = run("driver = \"lockstep\"");
    let steps: Vec<&str> = lockstep.0.iter().map(|r| r[1].as_str()).collect();
    assert_eq!(steps, ["5", "10", "12"], "evaluation points");
    for runtime in [
        "driver = \"virtual\"",
        "driver = \"wall\"\nworkers = 2\nshards = 2",
    ] {
        let actors = run(runtime);
        assert_eq!(actors.0, lockstep.0, "{runtime}: metrics differ");
        assert!(!actors.1.is_empty());
        assert_eq!(actors.1, lockstep.1, "{runtime}: equivalence rows differ");
        // 6 batches per epoch; compared steps 0, 4, 8 alone; evaluations
        // after steps 5 and 10: [0] [1 2 3] [4] [5] | [6 7] [8] [9] [10 11].
        assert_eq!(actors.2, Some(8), "{runtime}: runs of the network");
    }
}

#[test]
fn with_pipeline_1_a_batch_enters_a_layer_after_the_last_one_updated_it() {
    // Several batches in one run (the API's `train_batches`) under random
    // delays: layer 2 finishes a batch, and the input sends the next, while
    // a layer above may still wait for its last feedback. That layer must
    // not start the next batch before its update, so every batch sees the
    // updates of all batches before it: the lockstep trajectory.
    for gran in GRANULARITIES {
        let runtime = format!(
            "driver = \"virtual\"\n{gran}\ndelay_up = {{ kind = \"exponential\", mean = 2.0 }}\ndelay_down = {{ kind = \"lognormal\", mean = 2.0, spread = 1.0 }}\ncompute = {{ kind = \"exponential\", mean = 0.3 }}"
        );
        let s = scenario("il", &runtime);
        let mut mlp = build_network::<f64>(&s);
        let mut t = experiment::async_trainer::<f64>(&s);
        t.train_batches(&mut mlp, batches(&s, 6), false)
            .expect("runs");
        let reference = {
            let s = scenario("il", "driver = \"lockstep\"");
            let mut mlp = build_network::<f64>(&s);
            let mut t = build_trainer::<f64>(&s, &mlp).expect("trainer");
            for (x, y) in batches(&s, 6) {
                t.train_batch(&mut mlp, x.view(), y.view(), false);
            }
            mlp
        };
        for (a, b) in mlp.w.iter().zip(&reference.w) {
            let d = (a - b).iter().fold(0.0f64, |m, v| m.max(v.abs()));
            assert!(
                d <= 1e-12,
                "{gran}: one run of 6 batches leaves lockstep by {d:e}"
            );
        }
    }
}
