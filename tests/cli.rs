//! The `pcsim` binary as a user meets it: runs, determinism, output files,
//! and clear errors (never a panic) for bad scenarios and bad data files.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn pcsim(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pcsim"))
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("pcsim runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts a failed run with a message containing every `needle` and no panic.
fn assert_error(o: &Output, needles: &[&str]) {
    let err = stderr(o);
    assert_eq!(
        o.status.code(),
        Some(1),
        "expected exit code 1, stderr:\n{err}"
    );
    assert!(!err.contains("panicked"), "panic:\n{err}");
    for n in needles {
        assert!(err.contains(n), "stderr lacks {n:?}:\n{err}");
    }
}

const SMALL: &str = r#"
name = "small"
seed = 4

[network]
layers = [10, 16, 4]
activation = "tanh"
output = "softmax_ce"

[data.synthetic]
n_train = 300
n_test = 100

[training]
epochs = 2
batch_size = 16
learning_rate = 0.1
"#;

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn same_scenario_and_seed_give_identical_metrics() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "s.toml", SMALL);
    for out in ["a", "b"] {
        let o = pcsim(&["run", "s.toml", "--out", out], dir.path());
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let read = |out: &str| -> Vec<String> {
        // Every column but the wall clock.
        std::fs::read_to_string(dir.path().join(out).join("metrics.csv"))
            .unwrap()
            .lines()
            .map(|l| l.rsplit_once(',').unwrap().0.to_string())
            .collect()
    };
    let (a, b) = (read("a"), read("b"));
    assert_eq!(a.len(), 3, "header + one row per epoch");
    assert_eq!(a, b);
    // A different seed gives different numbers, so the comparison can fail.
    let o = pcsim(&["run", "s.toml", "--out", "c", "--seed", "5"], dir.path());
    assert!(o.status.success(), "{}", stderr(&o));
    assert_ne!(read("a"), read("c"));
}

#[test]
fn run_writes_the_documented_files() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "s.toml", SMALL);
    let o = pcsim(
        &[
            "run",
            "s.toml",
            "--out",
            "r",
            "--export-npy",
            "npy",
            "--set",
            "training.epochs=1",
        ],
        dir.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let r = dir.path().join("r");
    for f in [
        "scenario.toml",
        "metrics.csv",
        "summary.json",
        "training.svg",
    ] {
        assert!(r.join(f).is_file(), "missing {f}");
    }
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(r.join("summary.json")).unwrap()).unwrap();
    let acc = summary["test_accuracy"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&acc));
    assert_eq!(summary["epochs"], 1);
    assert_eq!(summary["algorithm"], "bp");
    assert!(summary["wall_seconds"].as_f64().unwrap() > 0.0);
    let header = std::fs::read_to_string(r.join("metrics.csv")).unwrap();
    assert!(header.starts_with("epoch,step,train_loss,test_loss,test_accuracy,wall_seconds"));
    // The resolved scenario is itself a valid scenario.
    let o = pcsim(&["validate", "r/scenario.toml"], dir.path());
    assert!(o.status.success(), "{}", stderr(&o));
    // .npy export: shapes (out, in) and the first update.
    let npy = dir.path().join("npy");
    let w2: ndarray::Array2<f32> = ndarray_npy::read_npy(npy.join("W2.npy")).unwrap();
    let dw3: ndarray::Array2<f32> = ndarray_npy::read_npy(npy.join("dW3.npy")).unwrap();
    let b3: ndarray::Array1<f32> = ndarray_npy::read_npy(npy.join("b3.npy")).unwrap();
    let bx: ndarray::Array2<f32> = ndarray_npy::read_npy(npy.join("batch_x.npy")).unwrap();
    let by: ndarray::Array2<f32> = ndarray_npy::read_npy(npy.join("batch_y.npy")).unwrap();
    assert_eq!(w2.dim(), (16, 10));
    assert_eq!(dw3.dim(), (4, 16));
    assert_eq!(b3.dim(), 4);
    assert_eq!(bx.dim(), (16, 10));
    assert_eq!(by.dim(), (16, 4));
    assert!(by.rows().into_iter().all(|r| r.sum() == 1.0));
    assert!(dw3.iter().any(|&v| v != 0.0));
}

#[test]
fn refuses_to_overwrite_results() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "s.toml", SMALL);
    let o = pcsim(
        &["run", "s.toml", "--out", "r", "--set", "training.epochs=1"],
        dir.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let before = std::fs::read(dir.path().join("r/metrics.csv")).unwrap();
    let o = pcsim(
        &["run", "s.toml", "--out", "r", "--set", "training.epochs=1"],
        dir.path(),
    );
    assert_error(&o, &["already exists", "--force"]);
    assert_eq!(
        before,
        std::fs::read(dir.path().join("r/metrics.csv")).unwrap()
    );
}

#[test]
fn bad_scenarios_get_located_errors() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&str, String, &[&str])] = &[
        (
            "syntax.toml",
            SMALL.replace("epochs = 2", "epochs = = 2"),
            &["syntax.toml:", "invalid"],
        ),
        (
            "unknown.toml",
            SMALL.replace("epochs = 2", "epochs = 2\nepoch_count = 3"),
            &[
                "unknown.toml:",
                "key `training.epoch_count`",
                "unknown field `epoch_count`",
                "batch_size",
            ],
        ),
        (
            "type.toml",
            SMALL.replace("epochs = 2", "epochs = \"two\""),
            &["type.toml:", "key `training.epochs`", "invalid type"],
        ),
        (
            "variant.toml",
            SMALL.replace("\"tanh\"", "\"swish\""),
            &["variant.toml:", "key `network.activation`", "relu"],
        ),
        (
            "sizes.toml",
            SMALL.replace("[10, 16, 4]", "[12, 16, 4]"),
            &["sizes.toml:6:", "key `network.layers`", "10 features"],
        ),
        (
            "lr.toml",
            SMALL.replace("learning_rate = 0.1", "learning_rate = -1.0"),
            &["lr.toml:", "key `training.learning_rate`", "> 0"],
        ),
    ];
    for (name, text, needles) in cases {
        write(dir.path(), name, text);
        for cmd in ["validate", "run"] {
            let o = pcsim(&[cmd, name, "--set", "output.plots=false"], dir.path());
            assert_error(&o, needles);
        }
    }
    // Errors in --set overrides name the key too.
    write(dir.path(), "ok.toml", SMALL);
    let o = pcsim(
        &["validate", "ok.toml", "--set", "training.epochz=1"],
        dir.path(),
    );
    assert_error(&o, &["unknown field `epochz`", "--set"]);
    let o = pcsim(&["validate", "missing.toml"], dir.path());
    assert_error(&o, &["missing.toml", "cannot read"]);
}

fn mnist_scenario(dir: &Path, data: &str) -> PathBuf {
    write(
        dir,
        "m.toml",
        &format!(
            "[network]\nlayers = [784, 10]\n[data]\nkind = \"mnist\"\npath = \"{data}\"\n[training]\nepochs = 1\n"
        ),
    )
}

fn write_mnist_fixture(dir: &Path, n: usize) {
    use pcsim::data::idx::encode;
    use pcsim::data::mnist::*;
    std::fs::create_dir_all(dir).unwrap();
    let images: Vec<u8> = (0..n * 784).map(|i| (i % 251) as u8).collect();
    let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
    for (img, lab) in [(TRAIN_IMAGES, TRAIN_LABELS), (TEST_IMAGES, TEST_LABELS)] {
        std::fs::write(dir.join(img), encode(&[n, 28, 28], &images)).unwrap();
        std::fs::write(dir.join(lab), encode(&[n], &labels)).unwrap();
    }
}

#[test]
fn bad_data_files_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Missing: the error says how to get MNIST.
    mnist_scenario(d, "nowhere");
    let o = pcsim(&["run", "m.toml", "--out", "r1"], d);
    assert_error(&o, &["MNIST not found", "pcsim data mnist"]);

    // A well-formed fixture runs.
    write_mnist_fixture(&d.join("good"), 50);
    mnist_scenario(d, "good");
    let o = pcsim(&["run", "m.toml", "--out", "r2"], d);
    assert!(o.status.success(), "{}", stderr(&o));

    // Truncated image file.
    write_mnist_fixture(&d.join("trunc"), 50);
    let p = d.join("trunc/t10k-images-idx3-ubyte");
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() - 100]).unwrap();
    mnist_scenario(d, "trunc");
    let o = pcsim(&["run", "m.toml", "--out", "r3"], d);
    assert_error(&o, &["t10k-images-idx3-ubyte", "truncated"]);

    // Wrong magic (labels where images belong).
    write_mnist_fixture(&d.join("magic"), 50);
    std::fs::copy(
        d.join("magic/train-labels-idx1-ubyte"),
        d.join("magic/train-images-idx3-ubyte"),
    )
    .unwrap();
    mnist_scenario(d, "magic");
    let o = pcsim(&["run", "m.toml", "--out", "r4"], d);
    assert_error(&o, &["train-images-idx3-ubyte", "magic number"]);

    // A damaged gzip file.
    write_mnist_fixture(&d.join("gz"), 50);
    std::fs::remove_file(d.join("gz/train-labels-idx1-ubyte")).unwrap();
    std::fs::write(
        d.join("gz/train-labels-idx1-ubyte.gz"),
        b"\x1f\x8b\x08\x00garbage",
    )
    .unwrap();
    mnist_scenario(d, "gz");
    let o = pcsim(&["run", "m.toml", "--out", "r5"], d);
    assert_error(&o, &["train-labels-idx1-ubyte.gz", "gzip"]);
}

#[test]
fn gzipped_idx_files_load() {
    use flate2::{Compression, write::GzEncoder};
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("gz");
    write_mnist_fixture(&d, 20);
    for name in pcsim::data::mnist::SHA256.map(|(n, _)| n) {
        let raw = std::fs::read(d.join(name)).unwrap();
        let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
        enc.write_all(&raw).unwrap();
        std::fs::write(d.join(format!("{name}.gz")), enc.finish().unwrap()).unwrap();
        std::fs::remove_file(d.join(name)).unwrap();
    }
    let split = pcsim::data::mnist::load(&d).unwrap();
    assert_eq!(split.train.len(), 20);
    assert_eq!(split.train.n_features(), 784);
    assert!(split.train.x.iter().all(|&v| (0.0..=1.0).contains(&v)));
    assert_eq!(split.test.labels[13], 3);
}

#[test]
fn diverging_run_is_an_error_and_keeps_its_results() {
    let dir = tempfile::tempdir().unwrap();
    let text = SMALL
        .replace("learning_rate = 0.1", "learning_rate = 1e30")
        .replace("\"softmax_ce\"", "\"mse\"")
        .replace("\"tanh\"", "\"relu\"");
    write(dir.path(), "d.toml", &text);
    let o = pcsim(&["run", "d.toml", "--out", "r"], dir.path());
    assert_error(&o, &["diverged", "learning_rate"]);
    let summary = std::fs::read_to_string(dir.path().join("r/summary.json")).unwrap();
    assert!(summary.contains("\"diverged\""));
}

#[test]
fn help_shows_examples() {
    let o = pcsim(&["--help"], Path::new("."));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("Examples:") && out.contains("pcsim run scenarios/quickstart.toml"),
        "{out}"
    );
}
