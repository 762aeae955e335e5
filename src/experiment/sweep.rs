//! `pcsim sweep`: runs a grid over scenario keys given in the scenario's
//! `[sweep]` table (`"runtime.jitter" = [0.0, 1.0]`), grid points in parallel
//! on the available cores, and writes `sweep.csv` (one row per grid point, one
//! column per swept key, plus `max_rel_diff`, `min_cosine`, `test_accuracy`)
//! and SVG plots. `--shard i/n` runs the points `g` with `g mod n = i`, so a
//! cluster's job array can spread a sweep over machines; `sweep-merge`
//! combines the shards' tables. A point that fails, diverges, panics or (run
//! in a child process, as `pcsim sweep` does) aborts is a row with its
//! status and reason; `sweep.csv` is always written.

use super::{RunOptions, interrupt, run};
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

/// How grid points are run.
#[derive(Clone, Debug, Default)]
pub enum Runner {
    /// On threads of this process: a point that panics is caught and marked
    /// failed, but an abort (e.g. out of memory) ends the whole sweep.
    #[default]
    InProcess,
    /// Each point in a child process of this executable
    /// (`EXE run - --out DIR --force`, the point's scenario on standard
    /// input): a point that panics, aborts or is killed is marked failed
    /// with its reason and the others go on.
    Processes(PathBuf),
}

/// What one grid point ended with.
struct PointResult {
    /// `completed`, `diverged: …`, `failed: …`, `interrupted`, `not run`.
    status: String,
    summary: Option<serde_json::Value>,
    seconds: f64,
}

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
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let jobs = if opts.jobs == 0 { cores } else { opts.jobs };
    let next = AtomicUsize::new(0);
    let rows: Mutex<Vec<(usize, Vec<String>)>> = Mutex::new(Vec::new());
    eprintln!(
        "sweep: {} of {} grid point(s) (shard {}/{}), {jobs} in parallel",
        scenarios.len(),
        points.len(),
        opts.shard.0,
        opts.shard.1
    );
    let threads_per_point = (cores / jobs.max(1)).max(1);
    std::thread::scope(|scope| {
        for _ in 0..jobs.min(scenarios.len()).max(1) {
            scope.spawn(|| {
                loop {
                    let k = next.fetch_add(1, Ordering::SeqCst);
                    let Some((g, point, s)) = scenarios.get(k) else {
                        break;
                    };
                    let out = rec.dir().join("points").join(format!("p{g:04}"));
                    let result = if interrupt::requested().is_some() {
                        PointResult {
                            status: "not run".into(),
                            summary: None,
                            seconds: 0.0,
                        }
                    } else {
                        match runner {
                            Runner::InProcess => run_in_process(s, &out),
                            Runner::Processes(exe) => run_in_child(exe, s, &out, threads_per_point),
                        }
                    };
                    let row = table_row(*g, point, &result);
                    eprintln!("  point {g} ({}): {}", describe(point), result.status);
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
fn table_row(g: usize, point: &Point, r: &PointResult) -> Vec<String> {
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

/// The status cell of a run summary: `completed`, or `STATUS: reason`.
fn status_of(summary: &serde_json::Value) -> Option<String> {
    let status = summary["status"].as_str()?;
    Some(match summary["reason"].as_str() {
        Some(reason) if status != "completed" && status != "interrupted" => {
            format!("{status}: {reason}")
        }
        _ => status.to_string(),
    })
}

fn read_summary(dir: &Path) -> Option<serde_json::Value> {
    let text = std::fs::read_to_string(dir.join("summary.json")).ok()?;
    serde_json::from_str(&text).ok()
}

fn run_in_process(s: &crate::scenario::Scenario, out: &Path) -> PointResult {
    let t0 = std::time::Instant::now();
    let opts = RunOptions {
        out_dir: out.to_path_buf(),
        force: true,
        export_npy: None,
        progress: false,
    };
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(s, &opts)));
    let summary = read_summary(out);
    let status = match &result {
        Ok(Ok(_)) => "completed".to_string(),
        Ok(Err(e)) => summary
            .as_ref()
            .and_then(status_of)
            .unwrap_or_else(|| format!("failed: {e:#}")),
        Err(_) => summary
            .as_ref()
            .and_then(status_of)
            .unwrap_or_else(|| "failed: the point panicked".into()),
    };
    PointResult {
        status,
        summary,
        seconds: t0.elapsed().as_secs_f64(),
    }
}

/// Runs one point as `EXE run - --out DIR --force`, forwarding a stopping
/// signal to it, and reads what it left.
fn run_in_child(
    exe: &Path,
    s: &crate::scenario::Scenario,
    out: &Path,
    threads: usize,
) -> PointResult {
    use std::io::{Read, Write};
    use std::process::{Command, Stdio};
    let t0 = std::time::Instant::now();
    let failed = |status: String| PointResult {
        status,
        summary: None,
        seconds: t0.elapsed().as_secs_f64(),
    };
    use std::os::unix::process::CommandExt;
    let spawned = Command::new(exe)
        .args([
            "run",
            "-",
            "--force",
            "--threads",
            &threads.to_string(),
            "--out",
        ])
        .arg(out)
        .env_remove("PCSIM_THREADS")
        // Its own process group: a Ctrl-C at the terminal reaches the sweep
        // only, which passes exactly one signal on (two would make the
        // point exit at once, without its summary).
        .process_group(0)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => return failed(format!("failed: cannot start {} ({e})", exe.display())),
    };
    let text = s.to_toml();
    let fed = child
        .stdin
        .take()
        .map(|mut stdin| stdin.write_all(text.as_bytes()));
    let mut stderr = child.stderr.take();
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(e) = stderr.as_mut() {
            let _ = e.read_to_end(&mut buf);
        }
        String::from_utf8_lossy(&buf).into_owned()
    });
    let mut forwarded = false;
    let exit = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Ok(status),
            Ok(None) => {}
            Err(e) => break Err(e),
        }
        if let (false, Some(signal)) = (forwarded, interrupt::requested()) {
            let sig = if signal == interrupt::SIGTERM {
                rustix::process::Signal::TERM
            } else {
                rustix::process::Signal::INT
            };
            let _ = rustix::process::kill_process(rustix::process::Pid::from_child(&child), sig);
            forwarded = true;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let stderr = reader.join().unwrap_or_default();
    let last_lines = || {
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        lines[lines.len().saturating_sub(3)..].join(" | ")
    };
    let summary = read_summary(out);
    let exit = match exit {
        Ok(e) => e,
        Err(e) => return failed(format!("failed: cannot wait for the point's process ({e})")),
    };
    let status = match (exit.code(), summary.as_ref().and_then(status_of)) {
        (Some(0), Some(s)) => s,
        (Some(130 | 143), _) => "interrupted".into(),
        (Some(101), Some(s)) => format!("{s} (the process panicked)"),
        (Some(101), None) => format!("failed: the process panicked: {}", last_lines()),
        (Some(_), Some(s)) if s != "completed" => s,
        (Some(code), _) => match fed {
            Some(Err(e)) => format!(
                "failed: cannot pass the scenario to the process ({e}); exit code {code}: {}",
                last_lines()
            ),
            _ => format!("failed: exit code {code}: {}", last_lines()),
        },
        (None, _) => {
            use std::os::unix::process::ExitStatusExt;
            let signal = exit.signal().unwrap_or(0);
            format!(
                "failed: the process was killed by {}: {}",
                interrupt::name(signal),
                last_lines()
            )
        }
    };
    PointResult {
        status,
        summary,
        seconds: t0.elapsed().as_secs_f64(),
    }
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
