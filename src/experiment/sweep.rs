//! `pcsim sweep`: runs a grid over scenario keys given in the scenario's
//! `[sweep]` table (`"runtime.jitter" = [0.0, 1.0]`), grid points in parallel
//! on the available cores, and writes `sweep.csv` (one row per grid point, one
//! column per swept key, plus `max_rel_diff`, `min_cosine`, `test_accuracy`)
//! and SVG plots. `--shard i/n` runs the points `g` with `g mod n = i`, so a
//! cluster's job array can spread a sweep over machines; `sweep-merge`
//! combines the shards' tables.

use super::{RunOptions, run};
use crate::metrics::plot::{Panel, Series};
use crate::metrics::{Recorder, Table, num};
use crate::scenario;
use anyhow::{Context, Result, bail};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Options of one sweep invocation.
#[derive(Clone, Debug)]
pub struct SweepOptions {
    pub out_dir: PathBuf,
    /// `(i, n)`: run only the grid points `g` with `g mod n = i`.
    pub shard: (usize, usize),
    /// Parallel grid points (0: available cores).
    pub jobs: usize,
    /// Extra `--set` overrides applied to every point.
    pub overrides: Vec<String>,
    pub force: bool,
}

/// Parses `i/n` (0 ≤ i < n).
pub fn parse_shard(s: &str) -> Result<(usize, usize)> {
    let (i, n) = s
        .split_once('/')
        .with_context(|| format!("--shard {s}: expected i/n, e.g. 0/4"))?;
    let (i, n): (usize, usize) = (
        i.trim()
            .parse()
            .with_context(|| format!("--shard {s}: i is not a number"))?,
        n.trim()
            .parse()
            .with_context(|| format!("--shard {s}: n is not a number"))?,
    );
    if n == 0 || i >= n {
        bail!("--shard {s}: needs 0 ≤ i < n (shards are numbered from 0)");
    }
    Ok((i, n))
}

fn value_text(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The grid: every combination of the swept values, keys in sorted order.
pub fn grid(sweep: &BTreeMap<String, Vec<toml::Value>>) -> Vec<Vec<(String, toml::Value)>> {
    let mut points = vec![Vec::new()];
    for (key, values) in sweep {
        let mut next = Vec::new();
        for p in &points {
            for v in values {
                let mut q: Vec<(String, toml::Value)> = p.clone();
                q.push((key.clone(), v.clone()));
                next.push(q);
            }
        }
        points = next;
    }
    points
}

const RESULT_COLUMNS: [&str; 7] = [
    "max_rel_diff",
    "min_cosine",
    "mean_rel_diff",
    "frac_inexact",
    "test_accuracy",
    "status",
    "seconds",
];

/// Mean relative difference over all recorded (step, layer) updates and the
/// fraction of them further than 1e-9 from BP, from a run's equivalence.csv.
fn equivalence_profile(dir: &Path) -> Option<(f64, f64)> {
    let mut r = csv::Reader::from_path(dir.join("equivalence.csv")).ok()?;
    let h = r.headers().ok()?.clone();
    let i = h.iter().position(|c| c == "rel_diff")?;
    let (mut sum, mut n, mut bad) = (0.0, 0usize, 0usize);
    for rec in r.records().flatten() {
        let v: f64 = rec.get(i)?.parse().ok()?;
        sum += v;
        n += 1;
        bad += usize::from(v.is_nan() || v > 1e-9);
    }
    (n > 0).then(|| (sum / n as f64, bad as f64 / n as f64))
}

/// Runs the scenario's sweep (this shard of it) and writes the table and plots.
pub fn sweep(file: &Path, opts: &SweepOptions) -> Result<Table> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read the scenario file {}", file.display()))?;
    let base = scenario::load(file, &opts.overrides)?;
    if base.sweep.is_empty() {
        bail!(
            "{}: no [sweep] table; add one, e.g.\n  [sweep]\n  \"runtime.jitter\" = [0.0, 1.0, 2.0]",
            file.display()
        );
    }
    for (key, values) in &base.sweep {
        if values.is_empty() {
            bail!("{}: key `sweep.\"{key}\"` has no values", file.display());
        }
    }
    let keys: Vec<String> = base.sweep.keys().cloned().collect();
    let points = grid(&base.sweep);
    // Check every point's scenario before running any.
    let mut scenarios = Vec::new();
    for (g, point) in points.iter().enumerate() {
        if g % opts.shard.1 != opts.shard.0 {
            continue;
        }
        let mut overrides = opts.overrides.clone();
        for (k, v) in point {
            overrides.push(format!("{k}={v}"));
        }
        let s = scenario::parse_with_overrides(&text, file, &overrides)
            .and_then(|s| {
                scenario::validate(&s).map_err(|(key, message)| scenario::ScenarioError {
                    file: file.to_path_buf(),
                    position: None,
                    key: Some(key),
                    message,
                })?;
                Ok(s)
            })
            .with_context(|| format!("grid point {g} ({})", describe(point)))?;
        scenarios.push((g, point.clone(), s));
    }
    let rec = Recorder::create(&opts.out_dir, opts.force)?;
    let jobs = if opts.jobs == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        opts.jobs
    };
    let next = AtomicUsize::new(0);
    let rows: Mutex<Vec<(usize, Vec<String>)>> = Mutex::new(Vec::new());
    eprintln!(
        "sweep: {} of {} grid point(s) (shard {}/{}), {jobs} in parallel",
        scenarios.len(),
        points.len(),
        opts.shard.0,
        opts.shard.1
    );
    std::thread::scope(|scope| {
        for _ in 0..jobs.min(scenarios.len()).max(1) {
            scope.spawn(|| {
                loop {
                    let k = next.fetch_add(1, Ordering::SeqCst);
                    let Some((g, point, s)) = scenarios.get(k) else {
                        break;
                    };
                    let t0 = std::time::Instant::now();
                    let out = rec.dir().join("points").join(format!("p{g:04}"));
                    let result = run(
                        s,
                        &RunOptions {
                            out_dir: out.clone(),
                            force: true,
                            export_npy: None,
                            progress: false,
                        },
                    );
                    let mut row: Vec<String> = vec![g.to_string()];
                    row.extend(point.iter().map(|(_, v)| value_text(v)));
                    let get = |sum: &serde_json::Value, path: &[&str]| {
                        let mut v = sum;
                        for p in path {
                            v = &v[*p];
                        }
                        v.as_f64().map_or(String::new(), num)
                    };
                    match &result {
                        Ok(sum) => {
                            row.push(get(sum, &["equivalence", "max_rel_diff"]));
                            row.push(get(sum, &["equivalence", "min_cosine"]));
                            match equivalence_profile(&out) {
                                Some((mean, frac)) => row.extend([num(mean), num(frac)]),
                                None => row.extend([String::new(), String::new()]),
                            }
                            row.push(get(sum, &["test_accuracy"]));
                            row.push("completed".into());
                        }
                        Err(e) => {
                            row.extend((0..5).map(|_| String::new()));
                            row.push(format!("failed: {}", format!("{e:#}").replace('\n', " ")));
                        }
                    }
                    row.push(format!("{:.3}", t0.elapsed().as_secs_f64()));
                    eprintln!("  point {g} ({}): {}", describe(point), row[row.len() - 2]);
                    rows.lock().expect("no poisoning").push((*g, row));
                }
            });
        }
    });
    let mut rows = rows.into_inner().expect("no poisoning");
    rows.sort_by_key(|r| r.0);
    let mut header = vec!["point".to_string()];
    header.extend(keys.iter().cloned());
    header.extend(RESULT_COLUMNS.iter().map(|s| s.to_string()));
    let table = Table {
        header,
        rows: rows.into_iter().map(|r| r.1).collect(),
    };
    write_outputs(&rec, &table)?;
    Ok(table)
}

fn describe(point: &[(String, toml::Value)]) -> String {
    point
        .iter()
        .map(|(k, v)| format!("{k}={}", value_text(v)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Merges the `sweep.csv` of several shard directories into `out`.
pub fn merge(dirs: &[PathBuf], out: &Path, force: bool) -> Result<Table> {
    let mut header: Option<Vec<String>> = None;
    let mut rows: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for d in dirs {
        let path = d.join("sweep.csv");
        let mut r = csv::Reader::from_path(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let h: Vec<String> = r.headers()?.iter().map(String::from).collect();
        match &header {
            Some(h0) if *h0 != h => bail!(
                "{}: columns differ from the first shard's ({:?} vs {:?}); shards of different sweeps?",
                path.display(),
                h,
                h0
            ),
            _ => header = Some(h),
        }
        for rec in r.records() {
            let rec = rec.with_context(|| format!("{}: bad row", path.display()))?;
            let row: Vec<String> = rec.iter().map(String::from).collect();
            let g: usize = row[0]
                .parse()
                .with_context(|| format!("{}: bad point id {}", path.display(), row[0]))?;
            rows.insert(g, row);
        }
    }
    let header = header.context("no shard directories given")?;
    let table = Table {
        header,
        rows: rows.into_values().collect(),
    };
    let rec = Recorder::create(out, force)?;
    write_outputs(&rec, &table)?;
    Ok(table)
}

fn write_outputs(rec: &Recorder, table: &Table) -> Result<()> {
    rec.write_table("sweep.csv", table)?;
    if let Some(svg) = plots(table)? {
        rec.write_svg("sweep.svg", svg)?;
    }
    Ok(())
}

/// Equivalence deviation vs jitter (one curve per value of the other swept
/// keys, e.g. per trigger) and accuracy vs delay, when those keys are swept.
fn plots(table: &Table) -> Result<Option<String>> {
    let n_keys = table.header.len() - 1 - RESULT_COLUMNS.len();
    let keys = &table.header[1..1 + n_keys];
    let col = |name: &str| table.header.iter().position(|h| h == name);
    let mut panels = Vec::new();
    let panel =
        |panels: &mut Vec<Panel>, x_key: &str, y: &str, title: &str, y_label: &str, log_y: bool| {
            let (Some(xi), Some(yi)) = (col(x_key), col(y)) else {
                return;
            };
            let mut series: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
            for row in &table.rows {
                let label = keys
                    .iter()
                    .enumerate()
                    .filter(|(_, k)| k.as_str() != x_key)
                    .map(|(i, k)| format!("{}={}", k.rsplit('.').next().unwrap_or(k), row[1 + i]))
                    .collect::<Vec<_>>()
                    .join(", ");
                if let (Ok(x), Ok(y)) = (row[xi].parse::<f64>(), row[yi].parse::<f64>()) {
                    series.entry(label).or_default().push((x, y));
                }
            }
            let series = series
                .into_iter()
                .map(|(name, mut pts)| {
                    pts.sort_by(|a, b| a.0.total_cmp(&b.0));
                    Series::new(if name.is_empty() { "all".into() } else { name }, pts)
                })
                .collect();
            panels.push(Panel {
                title: title.into(),
                x_label: x_key.into(),
                y_label: y_label.into(),
                series,
                log_y,
            });
        };
    if let Some(jitter) = keys.iter().find(|k| k.contains("jitter")) {
        panel(
            &mut panels,
            jitter,
            "max_rel_diff",
            "Equivalence deviation vs jitter",
            "max ‖ΔW − ΔW_bp‖ / ‖ΔW_bp‖",
            true,
        );
        panel(
            &mut panels,
            jitter,
            "mean_rel_diff",
            "Mean deviation vs jitter",
            "mean ‖ΔW − ΔW_bp‖ / ‖ΔW_bp‖",
            true,
        );
    }
    if let Some(delay) = keys.iter().find(|k| k.contains("delay")) {
        panel(
            &mut panels,
            delay,
            "test_accuracy",
            "Accuracy vs delay",
            "test accuracy",
            false,
        );
    }
    if let (true, Some(first)) = (panels.is_empty(), keys.first()) {
        {
            panel(
                &mut panels,
                first,
                "test_accuracy",
                "Accuracy",
                "test accuracy",
                false,
            );
        }
    }
    if panels.is_empty() {
        return Ok(None);
    }
    Ok(Some(crate::metrics::plot::svg(&panels)?))
}
