//! `pcsim report` over run directories made by the library: tiny synthetic
//! runs with several seeds, a diverged run, an interrupted one, an exact
//! Z-IL run and a small sweep. The report's numbers must equal the ones in
//! the runs' `summary.json` files (mean and std recomputed here), and broken
//! runs must show as broken.

use pcsim::experiment::report::{ReportOptions, report};
use pcsim::experiment::sweep::{SweepOptions, sweep};
use pcsim::experiment::{RunOptions, run};
use pcsim::scenario;
use std::path::{Path, PathBuf};

mod common;
use common::TINY;

fn run_tiny(root: &Path, dir: &str, overrides: &[&str]) -> anyhow::Result<serde_json::Value> {
    let overrides: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
    let s = scenario::parse_with_overrides(TINY, Path::new("tiny.toml"), &overrides).unwrap();
    scenario::validate(&s).unwrap();
    run(
        &s,
        &RunOptions {
            out_dir: root.join(dir),
            force: false,
            export_npy: None,
            progress: false,
        },
    )
}

fn summary(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap()
}

/// report.csv as (header, rows).
fn read_report(dir: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let mut r = csv::Reader::from_path(dir.join("report.csv")).unwrap();
    let header = r.headers().unwrap().iter().map(String::from).collect();
    let rows = r
        .records()
        .map(|r| r.unwrap().iter().map(String::from).collect())
        .collect();
    (header, rows)
}

fn cell<'a>(header: &[String], row: &'a [String], name: &str) -> &'a str {
    let i = header
        .iter()
        .position(|h| h == name)
        .unwrap_or_else(|| panic!("report.csv has no column {name}"));
    &row[i]
}

struct Suite {
    _tmp: tempfile::TempDir,
    root: PathBuf,
}

/// Three seeds of `tiny`, two seeds of a diverging variant, an interrupted
/// run (scenario.toml only), an f64 Z-IL run with equivalence, a sweep.
fn build_suite() -> Suite {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("suite");
    for seed in [1, 2, 3] {
        run_tiny(&root, &format!("tiny-s{seed}"), &[&format!("seed={seed}")]).unwrap();
    }
    for seed in [1, 2] {
        let r = run_tiny(
            &root,
            &format!("fast-s{seed}"),
            &[
                &format!("seed={seed}"),
                "name=\"too-fast\"",
                "training.learning_rate=1e30",
            ],
        );
        assert!(r.is_err(), "learning rate 1e30 should diverge");
    }
    // Interrupted: the run directory got as far as its scenario.
    let s = scenario::parse_with_overrides(
        TINY,
        Path::new("tiny.toml"),
        &["name=\"cut-short\"".to_string()],
    )
    .unwrap();
    std::fs::create_dir_all(root.join("cut")).unwrap();
    std::fs::write(root.join("cut/scenario.toml"), s.to_toml()).unwrap();
    run_tiny(
        &root,
        "zil",
        &[
            "name=\"tiny-zil\"",
            "precision=\"f64\"",
            "network.layers=[6, 8, 8, 3]",
            "algorithm.kind=\"zil\"",
            "output.equivalence_every=1",
        ],
    )
    .unwrap();
    let sweep_file = tmp.path().join("sweep.toml");
    std::fs::write(
        &sweep_file,
        format!(
            "{TINY}\n[output]\nequivalence_every = 2\nplots = false\n\n[runtime]\ndriver = \"virtual\"\nschedule = \"clocked\"\ndelay_down = {{ kind = \"exponential\", mean = 1.0 }}\n\n[sweep]\n\"runtime.jitter\" = [0.0, 2.0]\n"
        )
        .replace("name = \"tiny\"", "name = \"tiny-async\"")
        .replace("learning_rate = 0.1", "learning_rate = 0.1\n[algorithm]\nkind = \"zil\""),
    )
    .unwrap();
    sweep(
        &sweep_file,
        &SweepOptions {
            out_dir: root.join("sweep"),
            shard: (0, 1),
            jobs: 1,
            overrides: Vec::new(),
            force: false,
        },
    )
    .unwrap();
    // A repeat of seed 1 (e.g. a suite entry that duplicates another).
    let copy = root.join("tiny-s1-again");
    std::fs::create_dir_all(&copy).unwrap();
    for f in std::fs::read_dir(root.join("tiny-s1")).unwrap() {
        let f = f.unwrap().path();
        if f.is_file() {
            std::fs::copy(&f, copy.join(f.file_name().unwrap())).unwrap();
        }
    }
    Suite { _tmp: tmp, root }
}

#[test]
fn report_numbers_equal_the_runs_summaries_and_broken_runs_show() {
    let suite = build_suite();
    let out = suite.root.parent().unwrap().join("report");
    let r = report(
        std::slice::from_ref(&suite.root),
        &ReportOptions {
            out_dir: out.clone(),
            force: false,
            command: None,
        },
    )
    .unwrap();
    // 3 tiny (+ a repeat) + 2 diverged + 1 interrupted + 1 zil + 2 sweep points.
    assert_eq!(r.runs, 10);
    assert_eq!(r.groups, 6, "seeds must share a row, sweep points must not");

    let (h, rows) = read_report(&out);
    let row = |name: &str| -> Vec<String> {
        rows.iter()
            .find(|r| cell(&h, r, "group") == name)
            .unwrap_or_else(|| panic!("no row {name}: {rows:?}"))
            .clone()
    };

    // Mean and sample std over the three seeds, from their summary.json.
    let tiny = row("tiny");
    let acc: Vec<f64> = (1..=3)
        .map(|s| {
            summary(&suite.root.join(format!("tiny-s{s}")))["test_accuracy"]
                .as_f64()
                .unwrap()
        })
        .collect();
    let mean = acc.iter().sum::<f64>() / 3.0;
    let std = (acc.iter().map(|a| (a - mean).powi(2)).sum::<f64>() / 2.0).sqrt();
    let got_mean: f64 = cell(&h, &tiny, "test_accuracy_mean").parse().unwrap();
    let got_std: f64 = cell(&h, &tiny, "test_accuracy_std").parse().unwrap();
    assert!((got_mean - mean).abs() <= 1e-12, "{got_mean} vs {mean}");
    assert!((got_std - std).abs() <= 1e-12, "{got_std} vs {std}");
    assert_eq!(
        cell(&h, &tiny, "completed"),
        "3",
        "a repeated seed counts once"
    );
    assert!(r.markdown.contains("not counted twice"));
    assert_eq!(cell(&h, &tiny, "status"), "completed");
    assert_eq!(cell(&h, &tiny, "seeds"), "1 2 3");
    let s1 = summary(&suite.root.join("tiny-s1"));
    assert_eq!(cell(&h, &tiny, "epochs"), s1["epochs"].to_string());
    let spe: Vec<f64> = (1..=3)
        .map(|s| {
            let v = summary(&suite.root.join(format!("tiny-s{s}")))["seconds_per_epoch"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect::<Vec<_>>();
            v.iter().sum::<f64>() / v.len() as f64
        })
        .collect();
    let got_spe: f64 = cell(&h, &tiny, "seconds_per_epoch").parse().unwrap();
    assert!((got_spe - spe.iter().sum::<f64>() / 3.0).abs() < 1e-12);
    // 6-12-3 BP: P = 72 + 36 = 108, 3P − 72 = 252 multiply-adds to train.
    assert_eq!(cell(&h, &tiny, "train_multiply_adds_per_sample"), "252");
    assert_eq!(cell(&h, &tiny, "inference_multiply_adds_per_sample"), "108");

    // The diverged group: counted, shown as diverged, no accuracy invented.
    let fast = row("too-fast");
    assert_eq!(cell(&h, &fast, "status"), "diverged");
    assert_eq!(cell(&h, &fast, "completed"), "0");
    assert_eq!(cell(&h, &fast, "test_accuracy_mean"), "");
    assert!(r.markdown.contains("— (diverged)"), "{}", r.markdown);
    assert_eq!(summary(&suite.root.join("fast-s1"))["status"], "diverged");

    let cut = row("cut-short");
    assert_eq!(cell(&h, &cut, "status"), "interrupted");
    assert!(r.markdown.contains("— (interrupted)"));

    // Z-IL equals BP to rounding; the report carries summary.json's number.
    let zil = row("tiny-zil");
    let zs = summary(&suite.root.join("zil"));
    assert_eq!(
        cell(&h, &zil, "max_rel_diff").parse::<f64>().unwrap(),
        zs["equivalence"]["max_rel_diff"].as_f64().unwrap()
    );
    assert!(zs["equivalence"]["max_rel_diff"].as_f64().unwrap() < 1e-12);

    // Sweep points are rows of their own, labelled by the swept key, with
    // the actor runtime's messages per batch.
    let labels: Vec<&str> = rows.iter().map(|r| cell(&h, r, "group")).collect();
    assert!(labels.contains(&"tiny-async [jitter=0.0]"), "{labels:?}");
    assert!(labels.contains(&"tiny-async [jitter=2.0]"), "{labels:?}");
    let p0 = suite.root.join("sweep/points/p0000");
    let ps = summary(&p0);
    let stats: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(p0.join("runtime_stats.json")).unwrap())
            .unwrap();
    let want = ps["runtime"]["messages"].as_f64().unwrap() / stats["samples"].as_f64().unwrap();
    let got: f64 = cell(&h, &row("tiny-async [jitter=0.0]"), "messages_per_batch")
        .parse()
        .unwrap();
    assert_eq!(got, want);

    // RQ sections report what is missing instead of inventing it.
    assert!(r.markdown.contains("**Missing:** no spiking runs"));
    assert!(r.markdown.contains("**Missing:** no synchronous IL runs"));
    assert!(
        r.markdown
            .contains("**Missing:** no feedback-alignment runs")
    );
    for f in ["accuracy.svg", "rq3_timing.svg", "rq3_energy.svg"] {
        assert!(
            r.figures.iter().any(|x| x == f),
            "{f} not written: {:?}",
            r.figures
        );
        let svg = std::fs::read_to_string(out.join(f)).unwrap();
        assert!(svg.starts_with("<svg"), "{f}");
    }
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert_eq!(md, r.markdown);

    // A second report into the same directory is refused without --force.
    let again = report(
        std::slice::from_ref(&suite.root),
        &ReportOptions {
            out_dir: out.clone(),
            force: false,
            command: None,
        },
    );
    assert!(format!("{:#}", again.unwrap_err()).contains("--force"));
    // The report directory itself is never read as a run.
    let r2 = report(
        &[suite.root.parent().unwrap().to_path_buf()],
        &ReportOptions {
            out_dir: out,
            force: true,
            command: None,
        },
    )
    .unwrap();
    assert_eq!(r2.runs, 10);
}

#[test]
fn inputs_without_runs_are_errors_naming_them() {
    let tmp = tempfile::tempdir().unwrap();
    let opts = ReportOptions {
        out_dir: tmp.path().join("out"),
        force: false,
        command: None,
    };
    let missing = tmp.path().join("nope");
    let e = format!("{:#}", report(&[missing], &opts).unwrap_err());
    assert!(e.contains("nope") && e.contains("no such directory"), "{e}");
    assert!(!opts.out_dir.exists(), "nothing is written for bad inputs");
    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(empty.join("sub")).unwrap();
    let opts = ReportOptions {
        force: true,
        ..opts
    };
    let e = format!("{:#}", report(&[empty], &opts).unwrap_err());
    assert!(e.contains("empty") && e.contains("no run directory"), "{e}");
}

#[test]
fn unreadable_and_newer_files_are_tolerated() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("runs");
    run_tiny(&root, "a", &[]).unwrap();
    // A newer pcsim: extra fields and a status this version does not know.
    let mut s = summary(&root.join("a"));
    s["status"] = "failed".into();
    s["spiking"] =
        serde_json::json!({"synaptic_events_per_sample": 1234.0, "spikes_per_sample": [10.0, 5.0]});
    s["something_new"] = serde_json::json!({"x": 1});
    std::fs::write(root.join("a/summary.json"), s.to_string()).unwrap();
    // A broken one.
    std::fs::create_dir_all(root.join("b")).unwrap();
    std::fs::write(root.join("b/scenario.toml"), "this is = = not toml").unwrap();
    std::fs::write(root.join("b/summary.json"), "{ truncated").unwrap();
    let r = report(
        &[root],
        &ReportOptions {
            out_dir: tmp.path().join("out"),
            force: false,
            command: None,
        },
    )
    .unwrap();
    assert_eq!(r.runs, 2);
    let (h, rows) = read_report(&tmp.path().join("out"));
    let a = rows
        .iter()
        .find(|r| cell(&h, r, "group") == "tiny")
        .unwrap();
    assert_eq!(cell(&h, a, "status"), "failed");
    assert_eq!(cell(&h, a, "test_accuracy_mean"), "");
    let b = rows.iter().find(|r| cell(&h, r, "status") == "unreadable");
    assert!(b.is_some(), "{rows:?}");
    assert!(r.markdown.contains("summary.json unreadable"));
}

#[test]
fn spiking_pc_rows_show_the_test_sweeps_spikes_and_events() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("runs");
    let spc = [
        "algorithm.kind=\"spiking_pc\"",
        "algorithm.inference.gamma=0.1",
        "algorithm.inference.steps=10",
        "algorithm.inference.beta=0.1",
        "training.epochs=1",
    ];
    for seed in [1, 2] {
        let seed = format!("seed={seed}");
        let mut o = spc.to_vec();
        o.push(&seed);
        run_tiny(&root, &seed, &o).unwrap();
    }
    // Two BP rows of the same network: RQ1 must pick the one trained as
    // long as the spiking row (1 epoch), not the first one.
    run_tiny(&root, "bp-a", &["name=\"bp-a\""]).unwrap();
    run_tiny(&root, "bp-b", &["name=\"bp-b\"", "training.epochs=1"]).unwrap();
    let r = report(
        std::slice::from_ref(&root),
        &ReportOptions {
            out_dir: tmp.path().join("out"),
            force: false,
            command: None,
        },
    )
    .unwrap();
    assert_eq!(r.runs, 4);
    let (h, rows) = read_report(&tmp.path().join("out"));
    let rows: Vec<Vec<String>> = rows
        .into_iter()
        .filter(|r| cell(&h, r, "algorithm") != "BP")
        .collect();
    assert_eq!(rows.len(), 1, "{rows:?}");
    let mean = |key: &str| {
        let v: Vec<f64> = ["seed=1", "seed=2"]
            .iter()
            .map(|d| {
                summary(&root.join(d))["spiking_pc"]["evaluation"][key]
                    .as_f64()
                    .unwrap()
            })
            .collect();
        (v[0] + v[1]) / 2.0
    };
    for key in ["synaptic_events_per_sample", "spikes_per_sample"] {
        let got: f64 = cell(&h, &rows[0], key).parse().unwrap();
        let want = mean(key);
        assert!(want > 0.0, "{key}: the tiny run spiked");
        assert!((got - want).abs() <= 1e-9 * want, "{key}: {got} vs {want}");
    }
    assert!(
        r.markdown.contains("syn. events"),
        "the results row names its unit"
    );
    assert!(!r.markdown.contains("**Missing:** spiking PC runs"));
    let rq1 = &r.markdown[r.markdown.find("## RQ1").unwrap()..];
    let rq1 = &rq1[..rq1.find("\n## ").unwrap_or(rq1.len())];
    assert!(
        rq1.contains("(bp-b)") && !rq1.contains("(bp-a)"),
        "RQ1 compares with the BP row of equal epochs:\n{rq1}"
    );
}
