//! Robustness: generated scenarios — valid ones with random sizes and values,
//! and mutated ones (wrong types, extreme numbers, missing, unknown and
//! duplicated keys, tables as arrays, truncated text, bad UTF-8) — never make
//! `validate` or a capped `run` panic, abort or hang, every refusal names the
//! key or the location, and every run that starts leaves a `summary.json`
//! with its status. Also: a signal interrupts a run cleanly, and a sweep
//! survives a point that panics or aborts.
//!
//! `PCSIM_ROBUSTNESS_CASES=N` (default 2400: 800 valid + 1600 mutated, a
//! few tens of seconds) sets the number of generated scenarios; the long mode
//! is e.g. `PCSIM_ROBUSTNESS_CASES=50000 cargo test --release --test
//! robustness`. `cargo test --release --test robustness -- --ignored
//! --nocapture categories` prints the table of outcomes per mutation
//! category for the binary in `PCSIM_BIN` (default: this build's pcsim).

use pcsim::experiment::{RunOptions, run};
use pcsim::scenario::{self, Scenario};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestCaseError, TestRng, TestRunner};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn cases() -> u32 {
    std::env::var("PCSIM_ROBUSTNESS_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2400)
}

// ---------------------------------------------------------------- generator

/// The knobs of a valid scenario; `render` writes it as TOML.
#[derive(Clone, Debug)]
struct Valid {
    name: String,
    seed: u64,
    f64: bool,
    features: usize,
    classes: usize,
    hidden: Vec<usize>,
    activation: &'static str,
    output: &'static str,
    bias: Option<f64>,
    kind: &'static str,
    gamma: f64,
    steps: usize,
    beta: f64,
    random_feedback: bool,
    predict_steps: usize,
    n_train: usize,
    n_test: usize,
    clusters: usize,
    noise: f64,
    train_subset: Option<usize>,
    epochs: usize,
    batch: usize,
    lr: f64,
    momentum: f64,
    lr_decay: f64,
    eval_every_frac: Option<f64>,
    equivalence_every: usize,
    plots: bool,
    runtime: Option<(&'static str, &'static str, &'static str, f64, f64)>,
    snn: Option<(f64, &'static str, &'static str, usize)>,
    sweep: Option<(&'static str, Vec<&'static str>)>,
}

fn valid() -> impl Strategy<Value = Valid> {
    let shape = (
        "[a-z][a-z0-9_-]{0,12}",
        0u64..1000,
        any::<bool>(),
        1usize..12,
        2usize..6,
        prop::collection::vec(1usize..24, 0..3),
        prop::sample::select(vec!["relu", "sigmoid", "tanh", "linear", "lif", "soft_lif"]),
        prop::sample::select(vec!["mse", "softmax_ce"]),
        prop::option::weighted(0.2, -2.0f64..2.0),
    );
    let algo = (
        prop::sample::select(vec!["bp", "bp", "il", "zil"]),
        0.01f64..1.0,
        1usize..30,
        prop_oneof![Just(1.0), 0.01f64..1.0],
        prop::bool::weighted(0.2),
        prop_oneof![3 => Just(0usize), 1 => 1usize..5],
    );
    let data = (
        1usize..200,
        1usize..60,
        1usize..6,
        0.0f64..2.0,
        prop::option::weighted(0.2, 1usize..300),
    );
    let training = (
        1usize..3,
        1usize..80,
        -4.0f64..0.3,
        prop_oneof![Just(0.0), 0.0f64..0.95],
        0.5f64..1.2,
        prop::option::weighted(0.3, 0.0f64..1.0),
        prop_oneof![3 => Just(0usize), 1 => 1usize..4],
        prop::bool::weighted(0.3),
    );
    let extras = (
        prop::option::weighted(
            0.25,
            (
                prop::sample::select(vec!["virtual", "virtual", "virtual", "wall"]),
                prop::sample::select(vec!["event", "clocked"]),
                prop::sample::select(vec!["event", "clock"]),
                0.0f64..3.0,
                0.0f64..1.0,
            ),
        ),
        prop::option::weighted(
            0.3,
            (
                0.005f64..0.05,
                prop::sample::select(vec!["alpha", "exponential"]),
                prop::sample::select(vec!["spike_count", "current"]),
                1usize..5,
            ),
        ),
        prop::option::weighted(
            0.1,
            prop_oneof![
                Just(("training.learning_rate", vec!["0.05", "0.2"])),
                Just(("seed", vec!["1", "2", "3"])),
                Just(("training.momentum", vec!["0.0", "0.5"])),
            ],
        ),
    );
    (shape, algo, data, training, extras).prop_map(
        |(
            (name, seed, f64, features, classes, hidden, activation, output, bias),
            (kind, gamma, steps, beta, random_feedback, predict_steps),
            (n_train, n_test, clusters, noise, train_subset),
            (epochs, batch, lr_exp, momentum, lr_decay, eval_every_frac, equivalence_every, plots),
            (runtime, snn, sweep),
        )| {
            let pc = kind != "bp";
            let lif = activation == "lif" || activation == "soft_lif";
            Valid {
                name,
                seed,
                f64,
                features,
                classes,
                hidden,
                activation,
                output,
                bias,
                kind,
                gamma,
                steps,
                beta: if kind == "zil" { 1.0 } else { beta },
                random_feedback,
                predict_steps,
                n_train,
                n_test,
                clusters,
                noise,
                train_subset,
                epochs,
                batch,
                lr: 10f64.powf(lr_exp),
                momentum,
                lr_decay,
                eval_every_frac,
                equivalence_every,
                plots,
                // The wall driver runs event schedules only.
                runtime: runtime
                    .filter(|_| pc)
                    .map(|(d, s, t, m, j)| (d, if d == "wall" { "event" } else { s }, t, m, j)),
                snn: snn.filter(|_| lif),
                sweep,
            }
        },
    )
}

impl Valid {
    fn total_steps(&self) -> usize {
        let n = self
            .train_subset
            .map_or(self.n_train, |s| s.min(self.n_train));
        self.epochs * n.div_ceil(self.batch.min(n))
    }

    fn render(&self) -> String {
        let mut t = String::new();
        let w = &mut t;
        let _ = writeln!(w, "name = \"{}\"", self.name);
        let _ = writeln!(w, "seed = {}", self.seed);
        let _ = writeln!(
            w,
            "precision = \"{}\"",
            if self.f64 { "f64" } else { "f32" }
        );
        let mut layers = vec![self.features];
        layers.extend(&self.hidden);
        layers.push(self.classes);
        let _ = writeln!(w, "\n[network]\nlayers = {layers:?}");
        let _ = writeln!(
            w,
            "activation = \"{}\"\noutput = \"{}\"",
            self.activation, self.output
        );
        if let Some(b) = self.bias {
            let _ = writeln!(w, "hidden_bias_init = {b:?}");
        }
        let _ = writeln!(w, "\n[algorithm]\nkind = \"{}\"", self.kind);
        // Only the keys the algorithm uses: validate refuses the others.
        if self.kind != "bp" {
            let _ = writeln!(
                w,
                "\n[algorithm.inference]\nfeedback = \"{}\"\npredict_steps = {}",
                if self.random_feedback {
                    "random"
                } else {
                    "transpose"
                },
                self.predict_steps
            );
        }
        if self.kind == "il" {
            let _ = writeln!(
                w,
                "gamma = {:?}\nsteps = {}\nbeta = {:?}",
                self.gamma, self.steps, self.beta
            );
        }
        let _ = writeln!(w, "\n[data]\nkind = \"synthetic\"");
        if let Some(n) = self.train_subset {
            let _ = writeln!(w, "train_subset = {n}");
        }
        let _ = writeln!(
            w,
            "\n[data.synthetic]\nn_train = {}\nn_test = {}\nn_features = {}\nn_classes = {}\nclusters_per_class = {}\nnoise = {:?}",
            self.n_train, self.n_test, self.features, self.classes, self.clusters, self.noise
        );
        let _ = writeln!(
            w,
            "\n[training]\nepochs = {}\nbatch_size = {}\nlearning_rate = {:?}\nmomentum = {:?}\nlr_decay = {:?}",
            self.epochs, self.batch, self.lr, self.momentum, self.lr_decay
        );
        let eval_every = self
            .eval_every_frac
            .map_or(0, |f| ((f * self.total_steps() as f64) as usize).max(1));
        let _ = writeln!(
            w,
            "\n[output]\neval_every = {eval_every}\nequivalence_every = {}\nplots = {}",
            self.equivalence_every, self.plots
        );
        // Only the keys the driver, schedule and algorithm use.
        if let Some((driver, schedule, trigger, mean, jitter)) = self.runtime {
            let _ = writeln!(w, "\n[runtime]\ndriver = \"{driver}\"");
            if driver != "lockstep" {
                let _ = writeln!(
                    w,
                    "schedule = \"{schedule}\"\ndelay_down = {{ kind = \"exponential\", mean = {mean:?} }}"
                );
                if schedule == "clocked" {
                    let _ = writeln!(w, "period = 10.0\njitter = {jitter:?}");
                    if self.kind == "zil" {
                        let _ = writeln!(w, "trigger = \"{trigger}\"");
                    }
                }
            }
        }
        if let Some((time, synapse, readout, subset)) = self.snn {
            let _ = writeln!(
                w,
                "\n[snn]\npresentation_time = {time:?}\ndt = 0.001\nsynapse = \"{synapse}\"\nreadout = \"{readout}\"\npresentation_sweep = [0.005]\ntest_subset = {subset}"
            );
        }
        if let Some((key, values)) = &self.sweep {
            let _ = writeln!(w, "\n[sweep]\n\"{key}\" = [{}]", values.join(", "));
        }
        t
    }
}

/// Values a hostile user might put anywhere.
const POOL: &[&str] = &[
    "-1",
    "0",
    "1",
    "2",
    "-0.0",
    "0.5",
    "1.5",
    "1e308",
    "-1e308",
    "1e-320",
    "nan",
    "inf",
    "-inf",
    "9223372036854775807",
    "-9223372036854775808",
    "4294967296",
    "65536",
    "1000000000",
    "\"text\"",
    "\"\"",
    "\"../../escape\"",
    "\"/abs/path\"",
    "true",
    "[]",
    "[1, 2]",
    "[0]",
    "[[10, 4]]",
    "{ }",
    "{ kind = \"fixed\" }",
    "\"relu\"",
    "\"virtual\"",
    "\"wall\"",
    "1979-05-27",
];

#[derive(Clone, Debug)]
enum Mutation {
    /// The value of a `key = value` line replaced from `POOL`.
    Value {
        line: usize,
        value: usize,
    },
    DeleteLine {
        line: usize,
    },
    UnknownKey {
        line: usize,
    },
    DuplicateLine {
        line: usize,
    },
    /// A table header replaced by an array of numbers.
    TableAsArray {
        line: usize,
    },
    /// The text cut at a fraction of its length.
    Truncate {
        at: f64,
    },
    /// Raw bytes (often not UTF-8) inserted at a fraction of the length.
    Bytes {
        at: f64,
        bytes: Vec<u8>,
    },
}

impl Mutation {
    fn category(&self) -> &'static str {
        match self {
            Mutation::Value { value, .. } => {
                let v = POOL[*value];
                if v.starts_with(['"', '[', '{', 't']) || v.contains('-') && v.len() == 10 {
                    "wrong type or value"
                } else {
                    "extreme number"
                }
            }
            Mutation::DeleteLine { .. } => "missing key",
            Mutation::UnknownKey { .. } => "unknown key",
            Mutation::DuplicateLine { .. } => "duplicated key",
            Mutation::TableAsArray { .. } => "table as array",
            Mutation::Truncate { .. } => "truncated text",
            Mutation::Bytes { .. } => "raw bytes / bad UTF-8",
        }
    }

    fn apply(&self, text: &str) -> Vec<u8> {
        let lines: Vec<&str> = text.lines().collect();
        let pick = |i: usize| i % lines.len().max(1);
        let mut out: Vec<String> = lines.iter().map(|s| s.to_string()).collect();
        match self {
            Mutation::Value { line, value } => {
                // The n-th `key = value` line.
                let keyed: Vec<usize> = (0..lines.len())
                    .filter(|&i| lines[i].contains(" = "))
                    .collect();
                let i = keyed[line % keyed.len()];
                let key = lines[i].split(" = ").next().unwrap_or("x");
                out[i] = format!("{key} = {}", POOL[*value]);
            }
            Mutation::DeleteLine { line } => {
                out.remove(pick(*line));
            }
            Mutation::UnknownKey { line } => out.insert(pick(*line), "bogus_key = 1".into()),
            Mutation::DuplicateLine { line } => {
                let i = pick(*line);
                out.insert(i, lines[i].to_string());
            }
            Mutation::TableAsArray { line } => {
                // `training = [5, 7, 0.5]` at the top instead of the table:
                // serde would fill the fields in declaration order.
                let headers: Vec<usize> = (0..lines.len())
                    .filter(|&i| lines[i].starts_with('['))
                    .collect();
                let k = line % headers.len();
                let end = headers.get(k + 1).copied().unwrap_or(lines.len());
                let name = lines[headers[k]].trim_matches(['[', ']']).to_string();
                out.drain(headers[k]..end);
                out.insert(0, format!("{name} = [5, 7, 0.5]"));
            }
            Mutation::Truncate { at } => {
                let bytes = text.as_bytes();
                return bytes[..((bytes.len() as f64 * at) as usize).min(bytes.len())].to_vec();
            }
            Mutation::Bytes { at, bytes } => {
                let mut b = text.as_bytes().to_vec();
                let i = ((b.len() as f64 * at) as usize).min(b.len());
                b.splice(i..i, bytes.iter().copied());
                return b;
            }
        }
        (out.join("\n") + "\n").into_bytes()
    }
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        6 => (any::<usize>(), 0..POOL.len()).prop_map(|(line, value)| Mutation::Value { line, value }),
        2 => any::<usize>().prop_map(|line| Mutation::DeleteLine { line }),
        1 => any::<usize>().prop_map(|line| Mutation::UnknownKey { line }),
        1 => any::<usize>().prop_map(|line| Mutation::DuplicateLine { line }),
        1 => any::<usize>().prop_map(|line| Mutation::TableAsArray { line }),
        1 => (0.0f64..1.0).prop_map(|at| Mutation::Truncate { at }),
        2 => (0.0f64..1.0, prop::collection::vec(prop_oneof![Just(0xffu8), Just(0xc3), Just(0x80), Just(0), any::<u8>()], 1..4))
            .prop_map(|(at, bytes)| Mutation::Bytes { at, bytes }),
    ]
}

// ---------------------------------------------------------------- checks

/// A capped copy for running: one short epoch on a few samples, few
/// inference steps, a short spiking presentation. Sizes that `validate`
/// accepted stay as they are: their bounds are what is under test.
fn capped(s: &Scenario) -> Scenario {
    let mut c = s.clone();
    c.training.epochs = 1;
    c.data.train_subset = Some(c.data.train_subset.unwrap_or(usize::MAX).min(48));
    c.data.test_subset = Some(c.data.test_subset.unwrap_or(usize::MAX).min(24));
    c.algorithm.inference.steps = c.algorithm.inference.steps.min(8);
    c.algorithm.inference.predict_steps = c.algorithm.inference.predict_steps.min(4);
    c.output.eval_every = 0;
    if let Some(snn) = c.snn.as_mut() {
        snn.presentation_time = snn.presentation_time.min(0.03);
        snn.presentation_sweep.retain(|&t| t <= 0.03);
        snn.test_subset = Some(snn.test_subset.unwrap_or(3).min(3));
    }
    c
}

/// Loads `bytes` as a scenario file: never a panic; a refusal names the
/// key or the location.
fn check_load(dir: &Path, bytes: &[u8]) -> Result<Option<Scenario>, TestCaseError> {
    let file = dir.join("case.toml");
    std::fs::write(&file, bytes).expect("write the case");
    let loaded = std::panic::catch_unwind(|| scenario::load(&file, &[]))
        .map_err(|_| TestCaseError::fail("scenario::load panicked"))?;
    match loaded {
        Ok(s) => Ok(Some(s)),
        Err(e) => {
            let shown = e.to_string();
            prop_assert!(
                e.position.is_some() || e.key.is_some(),
                "refusal names neither key nor location: {shown}"
            );
            prop_assert!(shown.starts_with(&file.display().to_string()), "{shown}");
            Ok(None)
        }
    }
}

/// Runs the capped scenario on a thread with a deadline: no panic, no hang,
/// and a `summary.json` with a known status whatever the ending.
fn check_run(dir: &Path, s: &Scenario, may_fail: bool) -> Result<(), TestCaseError> {
    let s = capped(s);
    if scenario::validate(&s).is_err() {
        return Ok(()); // capping made it invalid (e.g. an emptied presentation sweep)
    }
    let out = dir.join("run");
    let opts = RunOptions {
        out_dir: out.clone(),
        force: true,
        ..RunOptions::default()
    };
    let (tx, rx) = std::sync::mpsc::channel();
    let toml = s.to_toml();
    std::thread::spawn(move || {
        let r =
            std::panic::catch_unwind(|| run(&s, &opts).map(|_| ()).map_err(|e| format!("{e:#}")));
        let _ = tx.send(r);
    });
    let result = rx
        .recv_timeout(Duration::from_secs(120))
        .map_err(|_| TestCaseError::fail(format!("run hung (> 120 s):\n{toml}")))?;
    let result = result.map_err(|_| TestCaseError::fail(format!("run panicked:\n{toml}")))?;
    let summary = std::fs::read_to_string(out.join("summary.json"))
        .map_err(|_| TestCaseError::fail(format!("no summary.json ({result:?}):\n{toml}")))?;
    let summary: serde_json::Value = serde_json::from_str(&summary).expect("summary is JSON");
    let status = summary["status"].as_str().unwrap_or("");
    prop_assert!(
        ["completed", "diverged", "failed"].contains(&status),
        "status {status:?}"
    );
    // A valid scenario may diverge (a large learning rate), not fail.
    prop_assert!(
        may_fail || status != "failed",
        "{}\n{toml}",
        summary["reason"]
    );
    prop_assert_eq!(status == "completed", result.is_ok(), "{:?}", result);
    if let Err(e) = result {
        prop_assert!(!e.is_empty());
        prop_assert!(summary["reason"].as_str().is_some_and(|r| !r.is_empty()));
    }
    Ok(())
}

fn config(cases: u32) -> Config {
    Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: 200,
        ..Config::default()
    }
}

#[test]
fn generated_valid_scenarios_validate_and_run() {
    let dir = tempfile::tempdir().unwrap();
    let mut runner = TestRunner::new(config(cases() / 3));
    runner
        .run(&valid(), |v| {
            let text = v.render();
            let s = check_load(dir.path(), text.as_bytes())?;
            let s = s.ok_or_else(|| {
                TestCaseError::fail(format!("a valid scenario was refused:\n{text}"))
            })?;
            check_run(dir.path(), &s, false)
        })
        .unwrap();
}

#[test]
fn mutated_scenarios_give_located_errors_or_clean_runs() {
    let dir = tempfile::tempdir().unwrap();
    let mut runner = TestRunner::new(config(cases() - cases() / 3));
    runner
        .run(&(valid(), mutation()), |(v, m)| {
            let bytes = m.apply(&v.render());
            if let Some(s) = check_load(dir.path(), &bytes)? {
                check_run(dir.path(), &s, true)?;
            }
            Ok(())
        })
        .unwrap();
}

// ---------------------------------------------------------------- the binary

fn pcsim_bin() -> PathBuf {
    std::env::var_os("PCSIM_BIN")
        .map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_pcsim")), PathBuf::from)
}

const LONG_RUN: &str = r#"
name = "long"
[network]
layers = [10, 32, 32, 4]
[algorithm]
kind = "il"
[algorithm.inference]
steps = 50
[data.synthetic]
n_train = 4000
n_test = 200
[training]
epochs = 10000
batch_size = 16
[output]
plots = false
"#;

/// Starts pcsim with `args` in `cwd` (stdout discarded, stderr kept).
fn spawn(args: &[&str], cwd: &Path) -> std::process::Child {
    Command::new(pcsim_bin())
        .args(args)
        .current_dir(cwd)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("pcsim starts")
}

/// Waits until every path exists (the runs have evaluated, so they train).
fn wait_for(paths: &[PathBuf]) {
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while !paths.iter().all(|p| p.exists()) {
        assert!(
            std::time::Instant::now() < deadline,
            "never appeared: {paths:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn signal(child: &std::process::Child, signal: rustix::process::Signal) {
    rustix::process::kill_process(rustix::process::Pid::from_child(child), signal)
        .expect("signal sent");
}

fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("written")).expect("JSON")
}

/// SIGINT and SIGTERM stop a run at the next step: exit 130 / 143, a
/// summary with `status = "interrupted"`, the steps done and the metrics.
#[test]
fn a_signal_interrupts_a_run_and_the_summary_says_so() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("long.toml"), LONG_RUN).unwrap();
    for (signal, code, name) in [
        (rustix::process::Signal::INT, 130, "SIGINT"),
        (rustix::process::Signal::TERM, 143, "SIGTERM"),
    ] {
        let out = dir.path().join(name);
        let child = spawn(&["run", "long.toml", "--out", name], dir.path());
        wait_for(&[out.join("metrics.csv")]);
        self::signal(&child, signal);
        let o = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(code), "{err}");
        assert!(err.contains(&format!("interrupted by {name}")), "{err}");
        let summary = read_json(&out.join("summary.json"));
        assert_eq!(summary["status"], "interrupted");
        assert_eq!(summary["reason"], format!("stopped by {name}"));
        let steps = summary["steps"].as_u64().unwrap();
        let epochs = summary["epochs"].as_u64().unwrap();
        assert!(epochs >= 1 && steps >= 250 * epochs, "{summary}");
        assert!(epochs < 10000);
        // The metrics end at the interruption, evaluated there.
        let metrics = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
        let last = metrics.lines().last().unwrap();
        assert_eq!(
            last.split(',').nth(1).unwrap(),
            steps.to_string(),
            "{metrics}"
        );
        assert_eq!(
            summary["test_accuracy"].as_f64().unwrap().to_string(),
            last.split(',').nth(4).unwrap()
        );
        // No temporary files are left behind.
        for e in std::fs::read_dir(&out).unwrap() {
            let name = e.unwrap().file_name().into_string().unwrap();
            assert!(!name.contains("tmp") && !name.contains("partial"), "{name}");
        }
    }
}

/// A SIGKILL at any moment leaves no half-written file: metrics.csv is
/// rewritten after every step here, and whatever instant the kill hits, every
/// file under a real name is complete.
#[test]
fn sigkill_leaves_no_half_written_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("long.toml"), LONG_RUN).unwrap();
    for (k, delay) in [150u64, 400, 700].into_iter().enumerate() {
        let name = format!("k{k}");
        let out = dir.path().join(&name);
        let args = [
            "run",
            "long.toml",
            "--set",
            "output.eval_every=1",
            "--out",
            &name,
        ];
        let mut child = spawn(&args, dir.path());
        wait_for(&[out.join("metrics.csv")]);
        std::thread::sleep(Duration::from_millis(delay));
        child.kill().unwrap();
        child.wait().unwrap();
        for e in std::fs::read_dir(&out).unwrap() {
            let name = e.unwrap().file_name().into_string().unwrap();
            assert!(
                [
                    ".pcsim-output",
                    "scenario.toml",
                    "metrics.csv",
                    ".metrics.csv.pcsim-tmp"
                ]
                .contains(&name.as_str()),
                "unexpected file {name}"
            );
        }
        let metrics = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
        assert!(metrics.ends_with('\n'), "cut mid-row");
        // Every row as wide as the header (6 columns; lockstep IL adds the
        // relaxation monitor's 3).
        let width = metrics.lines().next().map_or(0, |h| h.split(',').count());
        assert!(width == 6 || width == 9, "{metrics}");
        assert!(
            metrics.lines().all(|l| l.split(',').count() == width),
            "{metrics}"
        );
    }
}

/// A signal to a sweep reaches its running points once: each writes its
/// summary as interrupted, the sweep writes sweep.csv and exits 130.
#[test]
fn an_interrupted_sweep_writes_its_table() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!("{LONG_RUN}\n[sweep]\n\"seed\" = [1, 2]\n");
    std::fs::write(dir.path().join("s.toml"), text).unwrap();
    let out = dir.path().join("sweep");
    let child = spawn(
        &["sweep", "s.toml", "--jobs", "2", "--out", "sweep"],
        dir.path(),
    );
    wait_for(&[0, 1].map(|g| out.join(format!("points/p000{g}/metrics.csv"))));
    signal(&child, rustix::process::Signal::INT);
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(130), "{err}");
    assert!(err.contains("the sweep was interrupted by SIGINT"), "{err}");
    let csv = std::fs::read_to_string(out.join("sweep.csv")).unwrap();
    let rows: Vec<&str> = csv.lines().skip(1).collect();
    assert_eq!(rows.len(), 2, "{csv}");
    assert!(
        rows.iter()
            .all(|r| r.split(',').rev().nth(1) == Some("interrupted")),
        "{csv}"
    );
    for g in 0..2 {
        let s = read_json(&out.join(format!("points/p000{g}/summary.json")));
        assert_eq!(s["status"], "interrupted");
        assert!(s["test_accuracy"].is_number(), "{s}");
    }
}

const SWEEP: &str = r#"
name = "crashy"
[network]
layers = [10, 8, 4]
[data.synthetic]
n_train = 200
n_test = 50
[output]
plots = false
[sweep]
"training.learning_rate" = [0.05, 0.1, 0.2]
"#;

/// One point that panics, one that aborts: the sweep finishes the others,
/// writes sweep.csv and marks the two failed with their reasons.
#[test]
fn a_sweep_survives_a_panicking_and_an_aborting_point() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("s.toml"), SWEEP).unwrap();
    for (fault, reason) in [("panic", "panicked"), ("abort", "killed by SIGABRT")] {
        let out = dir.path().join(fault);
        let o = Command::new(pcsim_bin())
            .args(["sweep", "s.toml", "--jobs", "2", "--out"])
            .arg(&out)
            .env(pcsim::experiment::run::FAULT_ENV, format!("{fault}@p0001"))
            .current_dir(dir.path())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(0), "{err}");
        let csv = std::fs::read_to_string(out.join("sweep.csv")).unwrap();
        let rows: Vec<Vec<&str>> = csv
            .lines()
            .skip(1)
            .map(|l| l.split(',').collect())
            .collect();
        assert_eq!(rows.len(), 3, "{csv}");
        let status = |r: &Vec<&str>| r[r.len() - 2].to_string();
        assert_eq!(status(&rows[0]), "completed", "{csv}");
        assert_eq!(status(&rows[2]), "completed", "{csv}");
        assert!(
            status(&rows[1]).starts_with("failed") && status(&rows[1]).contains(reason),
            "{csv}"
        );
        assert!(
            status(&rows[1]).contains("injected"),
            "the reason quotes the point's message: {csv}"
        );
        // The finished points keep their accuracy; the failed one has none.
        assert!(rows[0][rows[0].len() - 3].parse::<f64>().is_ok(), "{csv}");
        assert_eq!(rows[1][rows[1].len() - 3], "", "{csv}");
    }
}

// ------------------------------------------------- the category table (note)

/// Columns of the category table after `cases`.
const OUTCOMES: [&str; 7] = [
    "refused, located",
    "refused, unlocated",
    "ran",
    "run ended in an error",
    "panics",
    "aborts",
    "hangs",
];

/// The `OUTCOMES` column of a process exit: `validate` (`refusal`) or `run`.
fn column(code: Option<i32>, refusal: bool, located: bool) -> usize {
    match (code, refusal) {
        (Some(1), true) if located => 0,
        (Some(1 | 2), true) => 1,
        (Some(0), false) => 2,
        (Some(1), false) => 3,
        (Some(101), _) => 4,
        (Some(-1), _) => 6,
        _ => 5,
    }
}

fn outcome(cmd: &mut Command, timeout: Duration) -> (Option<i32>, String) {
    let mut child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let start = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            use std::io::Read;
            let _ = child.stderr.take().unwrap().read_to_string(&mut err);
            return (status.code(), err);
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            return (Some(-1), "timeout".into());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The outcomes per mutation category of the binary in `PCSIM_BIN`, as
/// a user would meet them: `validate` the file, and when it passes, `run`
/// it capped with `--set` (exit 101 = panic, killed by a signal = abort,
/// 60 s = hang). `PCSIM_CATEGORY_CASES` sets the number of cases (1200).
#[test]
#[ignore]
fn categories() {
    let n: usize = std::env::var("PCSIM_CATEGORY_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1200);
    let dir = tempfile::tempdir().unwrap();
    let bin = pcsim_bin();
    let mut runner = TestRunner::new_with_rng(
        config(1),
        TestRng::deterministic_rng(proptest::test_runner::RngAlgorithm::ChaCha),
    );
    let strategy = (valid(), prop::option::weighted(0.8, mutation()));
    // Per category: cases, then one count per `OUTCOMES` column.
    let mut table: std::collections::BTreeMap<&str, [usize; 8]> = Default::default();
    // `PCSIM_CATEGORY_DUMP=DIR` keeps the cases whose run did not succeed.
    let dump = std::env::var_os("PCSIM_CATEGORY_DUMP").map(PathBuf::from);
    let located = regex_like_location;
    for case in 0..n {
        let (v, m) = strategy.new_tree(&mut runner).unwrap().current();
        let text = v.render();
        let bytes = m
            .as_ref()
            .map_or_else(|| text.clone().into_bytes(), |m| m.apply(&text));
        let category = m.as_ref().map_or("valid", Mutation::category);
        let t = table.entry(category).or_default();
        t[0] += 1;
        std::fs::write(dir.path().join("case.toml"), &bytes).unwrap();
        let (code, err) = outcome(
            Command::new(&bin)
                .args(["validate", "case.toml"])
                .current_dir(dir.path()),
            Duration::from_secs(60),
        );
        if code != Some(0) {
            t[1 + column(code, true, located(&err))] += 1;
            continue;
        }
        let mut run = Command::new(&bin);
        run.args([
            "run",
            "case.toml",
            "--force",
            "--out",
            &format!("r{}", case % 4),
        ]);
        for set in [
            "training.epochs=1",
            "data.train_subset=48",
            "data.test_subset=24",
            "output.eval_every=0",
            "algorithm.inference.steps=8",
        ] {
            run.args(["--set", set]);
        }
        if text.contains("predict_steps") {
            run.args(["--set", "algorithm.inference.predict_steps=2"]);
        }
        if text.contains("[snn]") {
            run.args([
                "--set",
                "snn.presentation_time=0.03",
                "--set",
                "snn.test_subset=3",
                "--set",
                "snn.presentation_sweep=[0.01]",
            ]);
        }
        let (code, err) = outcome(run.current_dir(dir.path()), Duration::from_secs(60));
        if let (Some(dump), false) = (&dump, code == Some(0)) {
            std::fs::write(dump.join(format!("case{case}.toml")), &bytes).unwrap();
            std::fs::write(dump.join(format!("case{case}.err")), &err).unwrap();
        }
        t[1 + column(code, false, false)] += 1;
    }
    println!("binary: {}", bin.display());
    println!("| category | cases | {} |", OUTCOMES.join(" | "));
    println!("|---|---|{}", "---|".repeat(OUTCOMES.len()));
    let mut total = [0usize; 8];
    let line = |name: &str, counts: &[usize; 8]| {
        let cells: Vec<String> = counts.iter().map(usize::to_string).collect();
        println!("| {name} | {} |", cells.join(" | "));
    };
    for (c, counts) in &table {
        line(c, counts);
        total.iter_mut().zip(counts).for_each(|(t, n)| *t += n);
    }
    line("all", &total);
}

/// `file:LINE:COL:` or a named key in an error message.
fn regex_like_location(err: &str) -> bool {
    if err.contains("key `") {
        return true;
    }
    err.split(':').collect::<Vec<_>>().windows(2).any(|w| {
        w[0].chars().last().is_some_and(|c| c.is_ascii_digit())
            && w[0]
                .rsplit(|c: char| !c.is_ascii_digit())
                .next()
                .is_some_and(|d| !d.is_empty())
            && w[1].chars().all(|c| c.is_ascii_digit())
            && !w[1].is_empty()
    })
}
