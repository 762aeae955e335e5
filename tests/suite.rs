//! `pcsim suite` through the binary, on tiny synthetic scenarios: a suite
//! runs, is skipped entirely when run again (nothing rewritten), resumes
//! exactly the runs whose directory was deleted, interrupted or changed,
//! survives a run that aborts (a failed row, redone next time), splits into
//! shards that share a directory, and `pcsim report` over it gives numbers
//! equal to the runs' `summary.json` (mean and std recomputed here) with a
//! header naming the commands, the pcsim version and the machine. Every
//! suite in `scenarios/` expands into valid scenarios (`--dry-run`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, SystemTime};

fn pcsim_bin() -> PathBuf {
    std::env::var_os("PCSIM_BIN")
        .map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_pcsim")), PathBuf::from)
}

fn pcsim(args: &[&str], cwd: &Path) -> Output {
    Command::new(pcsim_bin())
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("pcsim runs")
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn ok(args: &[&str], cwd: &Path) -> Output {
    let o = pcsim(args, cwd);
    assert_eq!(o.status.code(), Some(0), "pcsim {args:?}: {}", text(&o));
    o
}

fn fails(args: &[&str], cwd: &Path, needles: &[&str]) {
    let o = pcsim(args, cwd);
    assert_eq!(o.status.code(), Some(1), "pcsim {args:?}: {}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    for n in needles {
        assert!(err.contains(n), "pcsim {args:?}: no {n:?} in\n{err}");
    }
    assert!(!err.contains("panicked"), "{err}");
}

mod common;
use common::TINY;

/// `TINY` without plots (they would only cost time here).
fn tiny() -> String {
    format!("{TINY}\n[output]\nplots = false\n")
}

const SUITE: &str = r#"
name = "test-suite"
scenario = "tiny.toml"
seeds = [1, 2, 3]

[[run]]
id = "bp"

[[run]]
id = "il"
seeds = [1, 2]
set = [
    "algorithm.kind=il",
    "algorithm.inference.beta=0.1",
    "algorithm.inference.gamma=0.2",
    "algorithm.inference.steps=5",
]

[[run]]
id = "lr"
seeds = [4]
grid = { "training.learning_rate" = [0.05, 0.2] }
"#;

/// The run directories of `SUITE`, in expansion order.
const DIRS: [&str; 7] = [
    "bp/seed-1",
    "bp/seed-2",
    "bp/seed-3",
    "il/seed-1",
    "il/seed-2",
    "lr/p0000/seed-4",
    "lr/p0001/seed-4",
];

fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tiny.toml"), tiny()).unwrap();
    std::fs::write(dir.path().join("t.suite.toml"), SUITE).unwrap();
    dir
}

fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("written")).expect("JSON")
}

/// A CSV file as one map per row (column → cell).
fn read_csv(path: &Path) -> Vec<BTreeMap<String, String>> {
    let mut r = csv::Reader::from_path(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let header: Vec<String> = r.headers().unwrap().iter().map(String::from).collect();
    r.records()
        .map(|rec| {
            header
                .iter()
                .cloned()
                .zip(rec.unwrap().iter().map(String::from))
                .collect()
        })
        .collect()
}

/// `(modified time, contents)` of every run's `summary.json`.
fn snapshot(out: &Path) -> BTreeMap<String, (SystemTime, String)> {
    DIRS.iter()
        .map(|d| {
            let f = out.join(d).join("summary.json");
            let modified = std::fs::metadata(&f).unwrap().modified().unwrap();
            (
                d.to_string(),
                (modified, std::fs::read_to_string(&f).unwrap()),
            )
        })
        .collect()
}

/// The `dir`s of the rows of suite.csv whose action is `action`.
fn with_action(out: &Path, action: &str) -> Vec<String> {
    read_csv(&out.join("suite.csv"))
        .into_iter()
        .filter(|r| r["action"] == action)
        .map(|r| r["dir"].clone())
        .collect()
}

#[test]
fn a_suite_runs_skips_resumes_and_reports_its_own_numbers() {
    let tmp = setup();
    let cwd = tmp.path();
    let out = cwd.join("out");
    let suite = ["suite", "t.suite.toml", "--out", "out", "--jobs", "2"];
    ok(&suite, cwd);
    let rows = read_csv(&out.join("suite.csv"));
    let dirs: Vec<&str> = rows.iter().map(|r| r["dir"].as_str()).collect();
    assert_eq!(dirs, DIRS);
    for (k, r) in rows.iter().enumerate() {
        assert_eq!(r["run"], k.to_string());
        assert_eq!(r["status"], "completed", "{r:?}");
        assert_eq!(r["action"], "ran", "{r:?}");
        let s = read_json(&out.join(&r["dir"]).join("summary.json"));
        assert_eq!(
            r["test_accuracy"].parse::<f64>().unwrap(),
            s["test_accuracy"].as_f64().unwrap()
        );
        // The scenario is the base with the entry's overrides, its id as the
        // name and its seed.
        let scenario: toml::Value = toml::from_str(
            &std::fs::read_to_string(out.join(&r["dir"]).join("scenario.toml")).unwrap(),
        )
        .unwrap();
        assert_eq!(scenario["name"].as_str(), Some(r["id"].as_str()));
        assert_eq!(scenario["seed"].to_string(), r["seed"]);
    }
    let lr = |d: &str| {
        let s: toml::Value =
            toml::from_str(&std::fs::read_to_string(out.join(d).join("scenario.toml")).unwrap())
                .unwrap();
        s["training"]["learning_rate"].as_float().unwrap()
    };
    assert_eq!((lr("lr/p0000/seed-4"), lr("lr/p0001/seed-4")), (0.05, 0.2));
    assert!(out.join("suite.toml").is_file() && out.join("suite.json").is_file());

    // Again: every run is finished and unchanged, so nothing runs and no
    // summary is rewritten.
    let before = snapshot(&out);
    let o = ok(&suite, cwd);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("0 ran, 7 skipped"),
        "{}",
        text(&o)
    );
    assert_eq!(with_action(&out, "skipped").len(), 7);
    assert_eq!(snapshot(&out), before, "a skipped run was rewritten");

    // A deleted run directory: only that run runs again, to the same numbers.
    std::fs::remove_dir_all(out.join("il/seed-2")).unwrap();
    ok(&suite, cwd);
    assert_eq!(with_action(&out, "ran"), ["il/seed-2"]);
    let after = snapshot(&out);
    for (d, v) in &before {
        if d == "il/seed-2" {
            let (old, new) = (
                serde_json::from_str::<serde_json::Value>(&v.1).unwrap(),
                serde_json::from_str::<serde_json::Value>(&after[d].1).unwrap(),
            );
            assert_eq!(old["test_accuracy"], new["test_accuracy"]);
            assert_eq!(old["test_loss"], new["test_loss"]);
        } else {
            assert_eq!(after[d], *v, "{d} was rewritten");
        }
    }

    // An interrupted run and a changed entry run again; nothing else does.
    let bp3 = out.join("bp/seed-3/summary.json");
    let mut s = read_json(&bp3);
    s["status"] = "interrupted".into();
    std::fs::write(&bp3, s.to_string()).unwrap();
    std::fs::write(
        cwd.join("t.suite.toml"),
        SUITE.replace("[0.05, 0.2]", "[0.05, 0.3]"),
    )
    .unwrap();
    ok(&suite, cwd);
    assert_eq!(with_action(&out, "ran"), ["bp/seed-3", "lr/p0001/seed-4"]);
    assert_eq!(read_json(&bp3)["status"], "completed");
    assert_eq!(lr("lr/p0001/seed-4"), 0.3);

    // The report: one row per entry (per grid point), numbers recomputed
    // from the runs' summary.json.
    let o = ok(&["report", "out", "--out", "rep.md"], cwd);
    assert!(String::from_utf8_lossy(&o.stdout).contains("rep.md"));
    let report = read_csv(&cwd.join("rep/report.csv"));
    let groups: Vec<&str> = report.iter().map(|r| r["group"].as_str()).collect();
    for g in [
        "bp",
        "il",
        "lr [learning_rate=0.05]",
        "lr [learning_rate=0.3]",
    ] {
        assert!(groups.contains(&g), "no group {g}: {groups:?}");
    }
    assert_eq!(report.len(), 4, "{groups:?}");
    for r in &report {
        let dirs: Vec<&str> = r["dirs"].split(';').collect();
        let acc: Vec<f64> = dirs
            .iter()
            .map(|d| {
                read_json(&cwd.join(d).join("summary.json"))["test_accuracy"]
                    .as_f64()
                    .unwrap_or_else(|| panic!("{d}"))
            })
            .collect();
        let n = acc.len() as f64;
        let mean = acc.iter().sum::<f64>() / n;
        let got_mean: f64 = r["test_accuracy_mean"].parse().unwrap();
        assert!((got_mean - mean).abs() <= 1e-12, "{r:?}: mean {mean}");
        assert_eq!(r["completed"], acc.len().to_string());
        if acc.len() > 1 {
            let std = (acc.iter().map(|a| (a - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
            let got_std: f64 = r["test_accuracy_std"].parse().unwrap();
            assert!((got_std - std).abs() <= 1e-12, "{r:?}: std {std}");
        }
    }
    let bp = report.iter().find(|r| r["group"] == "bp").unwrap();
    assert_eq!(
        (bp["completed"].as_str(), bp["seeds"].as_str()),
        ("3", "1 2 3")
    );

    // The header names the suite's and the report's commands, the pcsim
    // version with its git commit, and the machine.
    let md = std::fs::read_to_string(cwd.join("rep.md")).unwrap();
    let version = String::from_utf8(ok(&["--version"], cwd).stdout).unwrap();
    let version = version.trim().trim_start_matches("pcsim ");
    assert!(version.contains("(git "), "{version}");
    for needle in [
        "`pcsim suite t.suite.toml --out out --jobs 2`",
        "`pcsim report out --out rep.md`",
        version,
        "7 ran, 0 skipped",
        "2 ran, 5 skipped",
        "later invocation(s) that found every run finished",
        "CPUs",
        "![",
        "](rep/accuracy.svg)",
    ] {
        assert!(md.contains(needle), "no {needle:?} in\n{md}");
    }
    assert!(cwd.join("rep/accuracy.svg").is_file());
    // A second report onto rep.md needs --force.
    fails(
        &["report", "out", "--out", "rep.md"],
        cwd,
        &["rep.md", "--force"],
    );
    ok(&["report", "out", "--out", "rep.md", "--force"], cwd);
}

/// A run that aborts is a failed row with its reason, the suite goes on,
/// the directory records the failure, the report shows it failed, and the
/// next invocation redoes exactly that run.
#[test]
fn a_run_that_dies_is_a_failed_row_and_is_redone() {
    let tmp = setup();
    let cwd = tmp.path();
    std::fs::write(
        cwd.join("t.suite.toml"),
        "name = \"crashy\"\nscenario = \"tiny.toml\"\nseeds = [1]\n\n[[run]]\nid = \"fine\"\n\n[[run]]\nid = \"crash\"\nseeds = [9]\n",
    )
    .unwrap();
    let out = cwd.join("out");
    let o = Command::new(pcsim_bin())
        .args(["suite", "t.suite.toml", "--out", "out", "--jobs", "2"])
        .env(pcsim::experiment::run::FAULT_ENV, "abort@seed-9")
        .current_dir(cwd)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("1 not completed"),
        "{}",
        text(&o)
    );
    let rows = read_csv(&out.join("suite.csv"));
    assert_eq!(rows[0]["status"], "completed");
    let failed = &rows[1]["status"];
    assert!(
        failed.starts_with("failed") && failed.contains("SIGABRT") && failed.contains("injected"),
        "{failed}"
    );
    assert_eq!(rows[1]["test_accuracy"], "");
    let s = read_json(&out.join("crash/seed-9/summary.json"));
    assert_eq!(s["status"], "failed");
    assert!(s["reason"].as_str().unwrap().contains("SIGABRT"), "{s}");

    ok(&["report", "out", "--out", "rep"], cwd);
    let report = read_csv(&cwd.join("rep/report.csv"));
    let crash = report.iter().find(|r| r["group"] == "crash").unwrap();
    assert_eq!(crash["status"], "failed");
    assert_eq!(crash["test_accuracy_mean"], "");
    let md = std::fs::read_to_string(cwd.join("rep/report.md")).unwrap();
    assert!(md.contains("— (failed)") && md.contains("SIGABRT"), "{md}");

    ok(&["suite", "t.suite.toml", "--out", "out"], cwd);
    assert_eq!(with_action(&out, "ran"), ["crash/seed-9"]);
    assert_eq!(
        read_json(&out.join("crash/seed-9/summary.json"))["status"],
        "completed"
    );
}

/// Shards run disjoint runs into one directory, each with its own table;
/// an unsharded invocation afterwards finds everything finished.
#[test]
fn shards_split_a_suite_and_share_its_directory() {
    let tmp = setup();
    let cwd = tmp.path();
    let out = cwd.join("out");
    let mut seen = Vec::new();
    for i in 0..2 {
        let shard = format!("{i}/2");
        ok(
            &[
                "suite",
                "t.suite.toml",
                "--out",
                "out",
                "--shard",
                &shard,
                "--jobs",
                "1",
            ],
            cwd,
        );
        let rows = read_csv(&out.join(format!("suite.shard-{i}-of-2.csv")));
        for r in &rows {
            let k: usize = r["run"].parse().unwrap();
            assert_eq!(k % 2, i, "{r:?}");
            assert_eq!(r["action"], "ran");
            seen.push(k);
        }
        assert!(out.join(format!("suite.shard-{i}-of-2.json")).is_file());
    }
    seen.sort_unstable();
    assert_eq!(seen, (0..DIRS.len()).collect::<Vec<_>>());
    let o = ok(&["suite", "t.suite.toml", "--out", "out"], cwd);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("0 ran, 7 skipped"),
        "{}",
        text(&o)
    );
    fails(
        &["suite", "t.suite.toml", "--out", "out", "--shard", "2/2"],
        cwd,
        &["--shard 2/2", "0 ≤ i < n"],
    );
}

/// A directory of scenario files is a suite: one entry per file (named by
/// the file, keeping the scenario's name and seed), a `[sweep]` table
/// expanding into grid points; `*.suite.toml` files are not scenarios.
#[test]
fn a_directory_of_scenarios_is_a_suite() {
    let tmp = setup();
    let cwd = tmp.path();
    let dir = cwd.join("scen");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("a.toml"), tiny()).unwrap();
    std::fs::write(
        dir.join("b.toml"),
        format!(
            "{}\n[sweep]\n\"training.learning_rate\" = [0.05, 0.1]\n",
            tiny()
        )
        .replace("seed = 1", "seed = 5"),
    )
    .unwrap();
    std::fs::write(dir.join("ignored.suite.toml"), "not = \"a scenario\"").unwrap();
    ok(&["suite", "scen", "--out", "out", "--jobs", "2"], cwd);
    let rows = read_csv(&cwd.join("out/suite.csv"));
    let dirs: Vec<&str> = rows.iter().map(|r| r["dir"].as_str()).collect();
    assert_eq!(dirs, ["a/seed-1", "b/p0000/seed-5", "b/p0001/seed-5"]);
    assert!(rows.iter().all(|r| r["status"] == "completed"), "{rows:?}");
    let b1: toml::Value = toml::from_str(
        &std::fs::read_to_string(cwd.join("out/b/p0001/seed-5/scenario.toml")).unwrap(),
    )
    .unwrap();
    assert_eq!(b1["name"].as_str(), Some("tiny"));
    assert_eq!(b1["training"]["learning_rate"].as_float(), Some(0.1));
    assert!(
        b1.get("sweep").is_none(),
        "a grid point has no [sweep] table"
    );
}

/// Every run is validated before any starts; an error names the suite, the
/// entry, the grid point or seed, and the key, and nothing is written.
#[test]
fn suite_errors_name_the_entry_and_the_key_and_run_nothing() {
    let tmp = setup();
    let cwd = tmp.path();
    let cases: [(&str, &[&str]); 8] = [
        (
            "[[run]]\nid = \"bad\"\nset = [\"algorithm.inference.beta=0.5\"]\n",
            &[
                "run `bad`",
                "seed 1",
                "algorithm.inference.beta",
                "backprop",
            ],
        ),
        (
            "[[run]]\nid = \"g\"\ngrid = { \"training.learning_rate\" = [0.1, -1.0] }\n",
            &["run `g`", "grid point 1", "training.learning_rate", "> 0"],
        ),
        (
            "sede = [1]\n[[run]]\nid = \"a\"\n",
            &["t.suite.toml", "sede", "line"],
        ),
        (
            "[[run]]\nid = \"a\"\n[[run]]\nid = \"a\"\n",
            &["run `a`", "used twice"],
        ),
        (
            "[[run]]\nid = \"a\"\ngrid = { seed = [1, 2] }\n",
            &["run `a`", "grid key `seed`", "seeds"],
        ),
        (
            "[[run]]\nid = \"a\"\nscenario = \"missing.toml\"\n",
            &["run `a`", "missing.toml"],
        ),
        ("[[run]]\nid = \"../up\"\n", &["../up", "names a directory"]),
        (
            "seeds = []\n[[run]]\nid = \"a\"\n",
            &["seeds", "at least one"],
        ),
    ];
    for (body, needles) in cases {
        let text = format!("name = \"s\"\nscenario = \"tiny.toml\"\nseeds = [1]\n{body}");
        // A later `seeds` replaces the default line (TOML refuses duplicates).
        let text = if body.starts_with("seeds") {
            text.replacen("seeds = [1]\n", "", 1)
        } else {
            text
        };
        std::fs::write(cwd.join("t.suite.toml"), text).unwrap();
        fails(&["suite", "t.suite.toml", "--out", "out"], cwd, needles);
        fails(&["suite", "t.suite.toml", "--dry-run"], cwd, needles);
        assert!(!cwd.join("out").exists(), "{body}: something was written");
    }
    // The --set of the command line is checked the same way.
    std::fs::write(cwd.join("t.suite.toml"), SUITE).unwrap();
    fails(
        &[
            "suite",
            "t.suite.toml",
            "--out",
            "out",
            "--set",
            "training.epochs=0",
        ],
        cwd,
        &["run `bp`", "training.epochs"],
    );
    // An output directory that is not a suite's is refused.
    std::fs::create_dir_all(cwd.join("mine")).unwrap();
    std::fs::write(cwd.join("mine/notes.txt"), "keep").unwrap();
    fails(
        &["suite", "t.suite.toml", "--out", "mine"],
        cwd,
        &["mine", "not the output of a suite"],
    );
    assert!(cwd.join("mine/notes.txt").is_file());
    // Nor is another suite's output resumed.
    ok(
        &["suite", "t.suite.toml", "--out", "out", "--jobs", "2"],
        cwd,
    );
    std::fs::write(
        cwd.join("other.suite.toml"),
        SUITE.replace("test-suite", "other-suite"),
    )
    .unwrap();
    fails(
        &["suite", "other.suite.toml", "--out", "out"],
        cwd,
        &["holds the runs of suite `test-suite`, not of `other-suite`"],
    );
    ok(
        &["suite", "other.suite.toml", "--out", "out", "--force"],
        cwd,
    );
    let record = read_json(&cwd.join("out/suite.json"));
    assert_eq!(record["suite"], "other-suite");
    assert_eq!(record["invocations"].as_array().unwrap().len(), 1);
}

/// Every suite in scenarios/rq and the directory of example scenarios
/// expand into scenarios that `pcsim validate` accepts.
#[test]
fn every_shipped_suite_expands_into_valid_scenarios() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("none");
    let out = out.to_str().unwrap();
    for (source, runs) in [
        ("scenarios/rq/quick.suite.toml", Some(80)),
        ("scenarios/rq/mnist.suite.toml", None),
        ("scenarios", None),
    ] {
        let o = ok(&["suite", source, "--dry-run", "--out", out], root);
        let stdout = String::from_utf8_lossy(&o.stdout);
        let rows: Vec<&str> = stdout.lines().skip(1).collect();
        assert!(!rows.is_empty(), "{source}: {}", text(&o));
        assert!(
            rows.iter()
                .all(|r| r.split_whitespace().any(|c| c == "run")),
            "{source}: every run would run into an empty directory\n{stdout}"
        );
        if let Some(n) = runs {
            assert_eq!(rows.len(), n, "{source}: {stdout}");
        }
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("every one valid"),
            "{}",
            text(&o)
        );
    }
}

/// SIGINT stops the running suite: the running run is interrupted, the
/// table is written, the exit code is 130, and a later invocation would
/// redo the interrupted run but not the finished one.
#[test]
fn an_interrupted_suite_writes_its_table_and_resumes() {
    let tmp = setup();
    let cwd = tmp.path();
    std::fs::write(
        cwd.join("long.toml"),
        tiny()
            .replace("epochs = 3", "epochs = 100000")
            .replace("n_train = 240", "n_train = 2400"),
    )
    .unwrap();
    std::fs::write(
        cwd.join("t.suite.toml"),
        "name = \"s\"\nseeds = [1]\n\n[[run]]\nid = \"short\"\nscenario = \"tiny.toml\"\n\n[[run]]\nid = \"long\"\nscenario = \"long.toml\"\n",
    )
    .unwrap();
    let child = Command::new(pcsim_bin())
        .args(["suite", "t.suite.toml", "--out", "out", "--jobs", "1"])
        .current_dir(cwd)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = cwd.join("out/long/seed-1/metrics.csv");
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while !started.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the long run never started"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    rustix::process::kill_process(
        rustix::process::Pid::from_child(&child),
        rustix::process::Signal::INT,
    )
    .unwrap();
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(130), "{err}");
    assert!(err.contains("the suite was interrupted by SIGINT"), "{err}");
    let rows = read_csv(&cwd.join("out/suite.csv"));
    assert_eq!(rows[0]["status"], "completed");
    assert_eq!(rows[1]["status"], "interrupted");
    assert_eq!(
        read_json(&cwd.join("out/long/seed-1/summary.json"))["status"],
        "interrupted"
    );
    let o = ok(&["suite", "t.suite.toml", "--out", "out", "--dry-run"], cwd);
    let plan = String::from_utf8_lossy(&o.stdout).into_owned();
    let action = |id: &str| {
        plan.lines()
            .find(|l| l.split_whitespace().nth(1) == Some(id))
            .and_then(|l| l.split_whitespace().nth(3))
            .unwrap_or_else(|| panic!("{id}: {plan}"))
            .to_string()
    };
    assert_eq!(
        (action("short"), action("long")),
        ("skip".into(), "run".into())
    );
}
