//! Runs many resolved scenarios into their run directories, a few at a time,
//! for `sweep` and `suite`: on threads of this process, or each in a child
//! process of the pcsim binary so that a run that panics, aborts or is killed
//! is one failed run rather than the end of the whole batch. A stopping
//! signal is passed on to the running children once; runs not yet started
//! are `not run`. A run that died without writing its `summary.json` gets
//! one (status `failed`, with the reason), so its directory describes it.

use super::{RunOptions, interrupt, run};
use crate::metrics::Recorder;
use crate::scenario::Scenario;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

/// How runs are executed.
#[derive(Clone, Debug, Default)]
pub enum Runner {
    /// On threads of this process: a run that panics is caught and marked
    /// failed, but an abort (e.g. out of memory) ends the whole batch.
    #[default]
    InProcess,
    /// Each run in a child process of this executable
    /// (`EXE run - --out DIR --force`, the scenario on standard input): a
    /// run that panics, aborts or is killed is marked failed with its reason
    /// and the others go on.
    Processes(PathBuf),
}

/// What one run ended with.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// `completed`, `diverged: …`, `failed: …`, `interrupted`, `not run`.
    pub status: String,
    /// The run's `summary.json`, when it has one.
    pub summary: Option<serde_json::Value>,
    /// Wall-clock seconds, measured around the run.
    pub seconds: f64,
}

impl Outcome {
    pub fn completed(&self) -> bool {
        self.status == "completed"
    }
}

/// The status cell of a run summary: `completed`, or `STATUS: reason`.
pub fn status_of(summary: &serde_json::Value) -> Option<String> {
    let status = summary["status"].as_str()?;
    Some(match summary["reason"].as_str() {
        Some(reason) if status != "completed" && status != "interrupted" => {
            format!("{status}: {reason}")
        }
        _ => status.to_string(),
    })
}

/// The `summary.json` of a run directory, if it has a readable one.
pub fn read_summary(dir: &Path) -> Option<serde_json::Value> {
    let text = std::fs::read_to_string(dir.join("summary.json")).ok()?;
    serde_json::from_str(&text).ok()
}

/// Parallel runs when `jobs` is 0: the available cores.
pub fn jobs_or_cores(jobs: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if jobs == 0 { cores } else { jobs }
}

/// Runs `work` (`(scenario, run directory)`), `jobs` at a time, in order of
/// the list, and returns the outcomes in the same order. `done(i, outcome)`
/// is called as each run ends (one call at a time). Once a stopping signal
/// has arrived, the runs not started are `not run`.
pub fn run_all(
    runner: &Runner,
    jobs: usize,
    work: &[(Scenario, PathBuf)],
    done: impl Fn(usize, &Outcome) + Sync,
) -> Vec<Outcome> {
    let jobs = jobs_or_cores(jobs).max(1);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = (cores / jobs).max(1);
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Outcome>>> = Mutex::new(vec![None; work.len()]);
    let report = Mutex::new(());
    std::thread::scope(|scope| {
        for _ in 0..jobs.min(work.len()) {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some((s, out)) = work.get(i) else {
                        break;
                    };
                    let outcome = if interrupt::requested().is_some() {
                        Outcome {
                            status: "not run".into(),
                            summary: None,
                            seconds: 0.0,
                        }
                    } else {
                        runner.run(s, out, threads)
                    };
                    {
                        let _one_at_a_time = report.lock().expect("no poisoning");
                        done(i, &outcome);
                    }
                    results.lock().expect("no poisoning")[i] = Some(outcome);
                }
            });
        }
    });
    results
        .into_inner()
        .expect("no poisoning")
        .into_iter()
        .map(|o| o.expect("every run has an outcome"))
        .collect()
}

impl Runner {
    /// Runs `s` into `out` with `threads` kernel threads (child processes
    /// only; in-process runs share the pool). What an earlier run left in
    /// `out` is removed first, so nothing stale is read back as this run's.
    pub fn run(&self, s: &Scenario, out: &Path, threads: usize) -> Outcome {
        let t0 = Instant::now();
        if let Err(e) = Recorder::create(out, true) {
            return Outcome {
                status: format!("failed: {e:#}"),
                summary: None,
                seconds: t0.elapsed().as_secs_f64(),
            };
        }
        let outcome = match self {
            Runner::InProcess => run_in_process(s, out),
            Runner::Processes(exe) => run_in_child(exe, s, out, threads),
        };
        if outcome.summary.is_none() && outcome.status.starts_with("failed") {
            record_failure(s, out, &outcome);
        }
        outcome
    }
}

/// Writes the `summary.json` that a run which died could not write, so its
/// directory says `failed` and why.
fn record_failure(s: &Scenario, out: &Path, outcome: &Outcome) {
    let write =
        |name: &str, text: String| crate::metrics::write_atomic(&out.join(name), text.as_bytes());
    if !out.join("scenario.toml").exists() {
        let _ = write("scenario.toml", s.to_toml());
    }
    let reason = outcome
        .status
        .strip_prefix("failed: ")
        .unwrap_or(&outcome.status);
    let summary = json!({
        "name": s.name,
        "algorithm": s.algorithm.kind,
        "precision": s.precision,
        "status": "failed",
        "reason": reason,
        "epochs": null,
        "steps": null,
        "test_accuracy": null,
        "test_loss": null,
        "wall_seconds": outcome.seconds,
    });
    if let Ok(text) = serde_json::to_string_pretty(&summary) {
        let _ = write("summary.json", text + "\n");
    }
}

fn run_in_process(s: &Scenario, out: &Path) -> Outcome {
    let t0 = Instant::now();
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
            .unwrap_or_else(|| "failed: the run panicked".into()),
    };
    Outcome {
        status,
        summary,
        seconds: t0.elapsed().as_secs_f64(),
    }
}

/// Runs one scenario as `EXE run - --out DIR --force`, forwarding a
/// stopping signal to it, and reads what it left.
fn run_in_child(exe: &Path, s: &Scenario, out: &Path, threads: usize) -> Outcome {
    use std::io::{Read, Write};
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};
    let t0 = Instant::now();
    let failed = |status: String| Outcome {
        status,
        summary: None,
        seconds: t0.elapsed().as_secs_f64(),
    };
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
        // Its own process group: a Ctrl-C at the terminal reaches the parent
        // only, which passes exactly one signal on (two would make the run
        // exit at once, without its summary).
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
        Err(e) => return failed(format!("failed: cannot wait for the run's process ({e})")),
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
    Outcome {
        status,
        summary,
        seconds: t0.elapsed().as_secs_f64(),
    }
}
