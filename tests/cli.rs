//! The `pcsim` binary as a user meets it: runs, determinism, output files,
//! and clear errors (never a panic) for bad scenarios and bad data files.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Runs pcsim with a fixed memory limit, so the resource bounds answer the
/// same on every machine.
fn pcsim(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pcsim"))
        .args(args)
        .env("PCSIM_MEMORY_LIMIT", "16G")
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

/// Every reproduction of issue 12 that is not about the runtime: exit 1 with
/// a message naming the key, file or path; never a panic or an abort.
#[test]
fn issue_12_reproductions_are_clean_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let base = "[network]\nlayers = [10, 4]\n[output]\nplots = false\n";
    let cases: &[(&str, String, &[&str])] = &[
        (
            "huge-n-train",
            format!("{base}[data.synthetic]\nn_train = 9223372036854775807\n"),
            &["huge-n-train.toml:", "key `data.synthetic.n_train`", "memory", "limit of 16.0 GiB"],
        ),
        (
            "noise",
            format!("{base}[data.synthetic]\nnoise = 1e300\n"),
            &["key `data.synthetic.noise`", "got 1e300"],
        ),
        (
            "n-test",
            format!("{base}[data.synthetic]\nn_test = 1000000000\n"),
            &["key `data.synthetic.n_test`", "GiB of memory"],
        ),
        (
            "clusters",
            format!("{base}[data.synthetic]\nclusters_per_class = 1000000000\n"),
            &["key `data.synthetic.clusters_per_class`", "memory"],
        ),
        (
            "wide",
            "[network]\nlayers = [10, 65536, 65536, 4]\n".into(),
            &["key `network.layers`", "network and optimizer state"],
        ),
        (
            "n-train-31",
            format!("{base}[data.synthetic]\nn_train = 2147483647\n"),
            &["key `data.synthetic.n_train`", "memory"],
        ),
        (
            "steps",
            format!("{base}[algorithm]\nkind = \"il\"\n[algorithm.inference]\nsteps = 1000000000\n"),
            &["steps.toml:8:", "key `algorithm.inference.steps`", "at most 100000"],
        ),
        (
            "escape",
            format!("name = \"../../escaped\"\n{base}"),
            &["escape.toml:1:", "key `name`", "run directory"],
        ),
        ("absolute", format!("name = \"/abs/path\"\n{base}"), &["key `name`"]),
        ("nested", format!("name = \"a/b\"\n{base}"), &["key `name`"]),
        (
            "net-array",
            "network = [[10, 4]]\n".into(),
            &["net-array.toml:1:", "key `network`", "is a table"],
        ),
        (
            "sweep-jitter",
            format!("{base}[algorithm]\nkind = \"zil\"\n[runtime]\ndriver = \"virtual\"\n[sweep]\n\"runtime.jitter\" = [0.0, -1.0]\n"),
            &["key `sweep.\"runtime.jitter\"`", "-1", "runtime.jitter"],
        ),
        (
            "sweep-enum",
            format!("{base}[sweep]\n\"runtime.trigger\" = [\"bogus\"]\n"),
            &["key `sweep.\"runtime.trigger\"`", "bogus"],
        ),
        (
            "sweep-key",
            format!("{base}[sweep]\n\"training.bogus\" = [1]\n"),
            &["key `sweep.\"training.bogus\"`", "unknown field"],
        ),
        (
            "sweep-empty",
            format!("{base}[sweep]\n\"training.epochs\" = []\n"),
            &["key `sweep.\"training.epochs\"`", "no values"],
        ),
        (
            "eval-every",
            "[network]\nlayers = [10, 4]\n[data.synthetic]\nn_train = 100\n[training]\nbatch_size = 10\nepochs = 2\n[output]\neval_every = 50\n".into(),
            &["key `output.eval_every`", "20 training step(s)"],
        ),
    ];
    for (name, text, needles) in cases {
        let file = format!("{name}.toml");
        write(d, &file, text);
        let out = format!("out-{name}");
        assert_error(&pcsim(&["validate", &file], d), needles);
        assert_error(&pcsim(&["run", &file, "--out", &out], d), needles);
        assert!(
            !d.join(&out).exists(),
            "{name}: a refused run made a directory"
        );
    }
    // --set: trailing text and unparsable values are errors, not strings;
    // a table cannot be set from an array.
    write(d, "ok.toml", base);
    for (set, needles) in [
        (
            "training.epochs=1\nname=\"x\"",
            &["key `training.epochs`", "not a TOML value"][..],
        ),
        (
            "name=\"x",
            &["key `name`", "not a TOML value", "invalid basic string"],
        ),
        ("training=[5,7,0.5]", &["key `training`", "is a table"]),
        ("training.epochs=", &["the value is empty"]),
    ] {
        let o = pcsim(&["validate", "ok.toml", "--set", set], d);
        assert_error(&o, needles);
    }
    // A bare word is still a string, a path too.
    let o = pcsim(
        &[
            "validate",
            "ok.toml",
            "--set",
            "description=../x/y",
            "--set",
            "network.activation=tanh",
        ],
        d,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("description = \"../x/y\""));
    // A value from --set that validation refuses is blamed on the --set.
    let o = pcsim(&["validate", "ok.toml", "--set", "training.epochs=0"], d);
    assert_error(
        &o,
        &["key `training.epochs`", "(from --set training.epochs=0)"],
    );
    // Not UTF-8: line, column and byte offset.
    std::fs::write(
        d.join("latin1.toml"),
        b"name = \"caf\xe9\"\n[network]\nlayers = [10, 4]\n",
    )
    .unwrap();
    let o = pcsim(&["validate", "latin1.toml"], d);
    assert_error(
        &o,
        &["latin1.toml:1:12:", "byte offset 11", "0xe9", "UTF-8"],
    );
    // --out pointing at a file names the path.
    std::fs::write(d.join("a-file"), "x").unwrap();
    let o = pcsim(&["run", "ok.toml", "--out", "a-file"], d);
    assert_error(&o, &["a-file", "is not a directory"]);
    // The memory limit and the estimate are in the message; the limit can be set.
    let o = Command::new(env!("CARGO_BIN_EXE_pcsim"))
        .args(["validate", "ok.toml"])
        .env("PCSIM_MEMORY_LIMIT", "1M")
        .current_dir(d)
        .output()
        .unwrap();
    assert_error(
        &o,
        &[
            "MiB of memory",
            "limit of 1.0 MiB",
            "set by PCSIM_MEMORY_LIMIT",
        ],
    );
}

#[test]
fn corrupt_data_files_are_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // IDX header whose dimensions multiply past usize (count 4, 2^31 × 2^31).
    write_mnist_fixture(&d.join("overflow"), 20);
    let mut header = 0x0803u32.to_be_bytes().to_vec();
    for dim in [4u32, 1 << 31, 1 << 31] {
        header.extend(dim.to_be_bytes());
    }
    std::fs::write(d.join("overflow/train-images-idx3-ubyte"), header).unwrap();
    mnist_scenario(d, "overflow");
    let o = pcsim(&["run", "m.toml", "--out", "r1"], d);
    assert_error(&o, &["train-images-idx3-ubyte", "dimensions"]);
    // A gzip file with trailing garbage.
    use flate2::{Compression, write::GzEncoder};
    use std::io::Write;
    write_mnist_fixture(&d.join("gz"), 20);
    let raw = std::fs::read(d.join("gz/t10k-labels-idx1-ubyte")).unwrap();
    let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
    enc.write_all(&raw).unwrap();
    let mut gz = enc.finish().unwrap();
    gz.extend_from_slice(b"trailing garbage");
    std::fs::write(d.join("gz/t10k-labels-idx1-ubyte.gz"), gz).unwrap();
    std::fs::remove_file(d.join("gz/t10k-labels-idx1-ubyte")).unwrap();
    mnist_scenario(d, "gz");
    let o = pcsim(&["run", "m.toml", "--out", "r2"], d);
    assert_error(&o, &["t10k-labels-idx1-ubyte.gz", "gzip"]);
    // Images that are not 28 × 28.
    let p = d.join("small");
    write_mnist_fixture(&p, 20);
    let pixels: Vec<u8> = vec![7; 20 * 4];
    std::fs::write(
        p.join("train-images-idx3-ubyte"),
        pcsim::data::idx::encode(&[20, 2, 2], &pixels),
    )
    .unwrap();
    mnist_scenario(d, "small");
    let o = pcsim(&["run", "m.toml", "--out", "r3"], d);
    assert_error(&o, &["train-images-idx3-ubyte", "2 × 2"]);
    // The failed runs recorded why.
    for r in ["r1", "r2", "r3"] {
        let s: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(d.join(r).join("summary.json")).unwrap())
                .unwrap();
        assert_eq!(s["status"], "failed", "{r}");
        assert!(s["reason"].as_str().unwrap().contains("idx"), "{r}: {s}");
    }
    // `data mnist --from` a copy that fails verification writes nothing.
    let o = pcsim(&["data", "mnist", "--from", "small", "--dir", "copy"], d);
    assert_error(&o, &["SHA-256"]);
    assert!(
        !d.join("copy").exists() || std::fs::read_dir(d.join("copy")).unwrap().next().is_none()
    );
}

fn summary(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap()
}

/// `--force` into an earlier run's directory leaves none of its files; a
/// directory pcsim did not write is refused and left alone.
#[test]
fn force_makes_the_directory_describe_one_run() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "s.toml", SMALL);
    let o = pcsim(
        &[
            "run",
            "s.toml",
            "--out",
            "r",
            "--set",
            "output.equivalence_every=1",
            "--set",
            "training.epochs=1",
        ],
        d,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(d.join("r/equivalence.csv").exists());
    std::fs::create_dir(d.join("r/weights")).unwrap();
    let o = pcsim(
        &[
            "run",
            "s.toml",
            "--out",
            "r",
            "--force",
            "--set",
            "training.epochs=1",
        ],
        d,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let mut names: Vec<String> = std::fs::read_dir(d.join("r"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            ".pcsim-output",
            "metrics.csv",
            "scenario.toml",
            "summary.json",
            "training.svg"
        ]
    );
    std::fs::create_dir(d.join("mine")).unwrap();
    std::fs::write(d.join("mine/notes.txt"), "keep").unwrap();
    let o = pcsim(&["run", "s.toml", "--out", "mine", "--force"], d);
    assert_error(&o, &["mine", "not written by pcsim"]);
    assert_eq!(
        std::fs::read_to_string(d.join("mine/notes.txt")).unwrap(),
        "keep"
    );
}

/// Divergence in the first epoch names the epoch, the step and the layer,
/// and still writes metrics.csv and the summary.
#[test]
fn divergence_names_epoch_step_and_layer() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let text = SMALL
        .replace("learning_rate = 0.1", "learning_rate = 1e30")
        .replace("\"softmax_ce\"", "\"mse\"")
        .replace("\"tanh\"", "\"relu\"");
    write(d, "d.toml", &text);
    let o = pcsim(&["run", "d.toml", "--out", "r"], d);
    assert_error(
        &o,
        &[
            "diverged at epoch 1, step 2",
            "W2/b2",
            "training.learning_rate (now 1e30)",
        ],
    );
    assert!(d.join("r/metrics.csv").exists());
    let s = summary(&d.join("r"));
    assert_eq!(s["status"], "diverged");
    assert_eq!(s["steps"], 2);
    assert!(s["reason"].as_str().unwrap().contains("step 2"), "{s}");
}

/// Every ending writes summary.json with its status and reason: a data set
/// that cannot be loaded, an actor network that fails.
#[test]
fn failures_leave_a_summary_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    mnist_scenario(d, "nowhere");
    let o = pcsim(&["run", "m.toml", "--out", "r1"], d);
    assert_error(&o, &["MNIST not found"]);
    let s = summary(&d.join("r1"));
    assert_eq!(s["status"], "failed");
    assert!(s["reason"].as_str().unwrap().contains("MNIST not found"));
    let text = format!(
        "{SMALL}\n[algorithm]\nkind = \"il\"\n[runtime]\ndriver = \"virtual\"\nloss = 1.0\n"
    );
    write(d, "lost.toml", &text);
    let o = pcsim(&["run", "lost.toml", "--out", "r2"], d);
    assert_error(&o, &["actor network failed at epoch 1, step 1"]);
    let s = summary(&d.join("r2"));
    assert_eq!(s["status"], "failed");
    assert!(s["reason"].as_str().unwrap().contains("watchdog"), "{s}");
}

/// The summary's accuracy is that of the final parameters, even when the
/// evaluation interval does not divide the number of steps.
#[test]
fn the_last_step_is_always_evaluated() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "s.toml", SMALL);
    // 300 samples / batch 16 = 19 steps per epoch, 38 in all; every 5 steps.
    let o = pcsim(
        &[
            "run",
            "s.toml",
            "--out",
            "r",
            "--set",
            "output.eval_every=5",
        ],
        d,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let metrics = std::fs::read_to_string(d.join("r/metrics.csv")).unwrap();
    let steps: Vec<&str> = metrics
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(1).unwrap())
        .collect();
    assert_eq!(steps, ["5", "10", "15", "20", "25", "30", "35", "38"]);
    let s = summary(&d.join("r"));
    let last_acc = metrics.lines().last().unwrap().split(',').nth(4).unwrap();
    assert_eq!(s["test_accuracy"].as_f64().unwrap().to_string(), last_acc);
    assert_eq!(s["status"], "completed");
}

#[test]
fn a_scenario_can_come_from_standard_input() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_pcsim"))
        .args(["run", "-", "--out", "r", "--set", "training.epochs=1"])
        .current_dir(dir.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(SMALL.as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(summary(&dir.path().join("r"))["name"], "small");
}
