//! `pcsim sweep`: runs a grid over scenario keys given in the scenario's
//! `[sweep]` table (`"runtime.jitter" = [0.0, 1.0]`), grid points in parallel
//! on the available cores, and writes `sweep.csv` (one row per grid point, one
//! column per swept key, plus `max_rel_diff`, `min_cosine`, `test_accuracy`)
//! and SVG plots. `--shard i/n` runs the points `g` with `g mod n = i`, so a
//! cluster's job array can spread a sweep over machines; `sweep-merge`
//! combines the shards' tables. A point that fails, diverges, panics or (run
//! in a child process, as `pcsim sweep` does) aborts is a row with its
//! status and reason; `sweep.csv` is always written.

use super::interrupt;
use super::runner::{Outcome, run_all};
use crate::metrics::plot::{Panel, Series};
use crate::metrics::{Recorder, Table, num};
use crate::scenario;
use anyhow::{Context, Result, bail};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use super::runner::Runner;

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

pub use crate::scenario::grid::grid;
use crate::scenario::grid::{Point, describe, point_scenario, value_text};

const RESULT_COLUMNS: [&str; 7] = [
    "max_rel_diff",
    "min_cosine",
    "mean_rel_diff",
    "frac_inexact",
    "test_accuracy",
    "status",
    "seconds",
];

/// Runs the scenario's sweep (this shard of it) on threads of this process
/// and writes the table and plots.
pub fn sweep(file: &Path, opts: &SweepOptions) -> Result<Table> {
    sweep_with(file, opts, &Runner::InProcess)
}

/// Runs the scenario's sweep (this shard of it) with `runner` and writes the
/// table and plots. `sweep.csv` is written whatever the points did; a sweep
/// stopped by a signal returns `Interrupted` after writing it.
pub fn sweep_with(file: &Path, opts: &SweepOptions, runner: &Runner) -> Result<Table> {
    let base = scenario::load(file, &opts.overrides)?;
    if base.sweep.is_empty() {
        bail!(
            "{}: no [sweep] table; add one, e.g.\n  [sweep]\n  \"runtime.jitter\" = [0.0, 1.0, 2.0]",
            file.display()
        );
    }
    let keys: Vec<String> = base.sweep.keys().cloned().collect();
    let points = grid(&base.sweep);
    let mut scenarios = Vec::new();
    for (g, point) in points.iter().enumerate() {
        if g % opts.shard.1 != opts.shard.0 {
            continue;
        }
        let s = point_scenario(&base, point).map_err(|(key, message)| {
            anyhow::anyhow!(
                "{}: grid point {g} ({}): key `{key}`: {message}",
                file.display(),
                describe(point)
            )
        })?;
        scenarios.push((g, point.clone(), s));
    }
    let rec = Recorder::create(&opts.out_dir, opts.force)?;
    let jobs = super::runner::jobs_or_cores(opts.jobs);
    eprintln!(
        "sweep: {} of {} grid point(s) (shard {}/{}), {jobs} in parallel",
        scenarios.len(),
        points.len(),
        opts.shard.0,
        opts.shard.1
    );
    let work: Vec<_> = scenarios
        .iter()
        .map(|(g, _, s)| (s.clone(), rec.dir().join("points").join(format!("p{g:04}"))))
        .collect();
    let outcomes = run_all(runner, jobs, &work, |i, outcome| {
        let (g, point, _) = &scenarios[i];
        eprintln!("  point {g} ({}): {}", describe(point), outcome.status);
    });
    let rows: Vec<Vec<String>> = scenarios
        .iter()
        .zip(&outcomes)
        .map(|((g, point, _), outcome)| table_row(*g, point, outcome))
        .collect();
    let mut header = vec!["point".to_string()];
    header.extend(keys.iter().cloned());
    header.extend(RESULT_COLUMNS.iter().map(|s| s.to_string()));
    let table = Table { header, rows };
    write_outputs(&rec, &table)?;
    let status_col = table.header.len() - 2;
    let done = table
        .rows
        .iter()
        .filter(|r| r[status_col] == "completed")
        .count();
    if let Some(signal) = interrupt::requested() {
        return Err(interrupt::Interrupted {
            signal,
            what: "the sweep",
            progress: format!("{done} of {} point(s) completed", table.rows.len()),
            dir: rec.dir().display().to_string(),
        }
        .into());
    }
    if done < table.rows.len() {
        eprintln!(
            "sweep: {} of {} point(s) did not complete (see the status column)",
            table.rows.len() - done,
            table.rows.len()
        );
    }
    Ok(table)
}

/// One row of `sweep.csv`.
fn table_row(g: usize, point: &Point, r: &Outcome) -> Vec<String> {
    let mut row: Vec<String> = vec![g.to_string()];
    row.extend(point.iter().map(|(_, v)| value_text(v)));
    let get = |path: &[&str]| {
        let Some(mut v) = r.summary.as_ref() else {
            return String::new();
        };
        for p in path {
            v = &v[*p];
        }
        v.as_f64().map_or(String::new(), num)
    };
    for (section, key) in [
        ("equivalence", "max_rel_diff"),
        ("equivalence", "min_cosine"),
        ("equivalence", "mean_rel_diff"),
        ("equivalence", "frac_inexact"),
    ] {
        row.push(get(&[section, key]));
    }
    row.push(get(&["test_accuracy"]));
    row.push(r.status.replace(['\n', '\r'], " "));
    row.push(format!("{:.3}", r.seconds));
    row
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
