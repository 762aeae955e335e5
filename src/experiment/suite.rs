//! `pcsim suite DIR_OR_FILE`: runs a set of scenarios — every `*.toml`
//! scenario of a directory, or a suite file listing scenarios × seeds ×
//! `--set` variants × grids (format: `scenarios/rq/README.md`) — a few at a
//! time (child processes, through `runner`), with one progress bar, into
//! `OUT/<id>/[pNNNN/]seed-<seed>/`, and writes `suite.csv`.
//!
//! Every run is resolved and validated before any starts. The suite is
//! resumable: a run whose directory holds a final `summary.json`
//! (`completed` or `diverged`, which a rerun would only repeat) and a
//! `scenario.toml` equal to the scenario it would run is skipped; any other
//! (interrupted, failed, missing, changed) is run again. `--shard i/n` runs
//! the runs `k` with `k mod n = i`, and shards may share one directory.

use super::interrupt;
use super::provenance::{self, Machine};
use super::runner::{Outcome, Runner, read_summary, run_all, status_of};
use crate::metrics::{Recorder, Table, num};
use crate::scenario::{self, Scenario, grid::grid};
use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Most runs one suite may expand to.
pub const MAX_RUNS: usize = 100_000;

/// Options of one suite invocation.
#[derive(Clone, Debug, Default)]
pub struct SuiteOptions {
    pub out_dir: PathBuf,
    /// `(i, n)`: run only the runs `k` with `k mod n = i`.
    pub shard: (usize, usize),
    /// Runs in parallel (0: available cores).
    pub jobs: usize,
    /// `--set` overrides applied to every run (after the suite's own).
    pub overrides: Vec<String>,
    /// Run every run of this shard again, even finished ones.
    pub force: bool,
    /// The command line, recorded in `suite.json` (and so in reports).
    pub command: String,
}

impl SuiteOptions {
    fn shard(&self) -> (usize, usize) {
        if self.shard.1 == 0 {
            (0, 1)
        } else {
            self.shard
        }
    }
}

/// A suite file (`*.suite.toml`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuiteFile {
    /// Names the suite (progress, reports, the default output directory).
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Default seeds of every entry.
    #[serde(default)]
    pub seeds: Option<Vec<u64>>,
    /// `--set` overrides of every run.
    #[serde(default)]
    pub set: Vec<String>,
    /// Default scenario file of the entries (relative to the suite file).
    #[serde(default)]
    pub scenario: Option<PathBuf>,
    #[serde(default, rename = "run")]
    pub runs: Vec<Entry>,
}

/// One `[[run]]` of a suite file.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// Names the run directory and becomes the scenario's `name`.
    pub id: String,
    /// The scenario file (relative to the suite file); default: the suite's.
    #[serde(default)]
    pub scenario: Option<PathBuf>,
    /// `--set` overrides of this entry.
    #[serde(default)]
    pub set: Vec<String>,
    /// Replaces the suite's seeds.
    #[serde(default)]
    pub seeds: Option<Vec<u64>>,
    /// A grid of scenario keys, like a scenario's `[sweep]` table.
    #[serde(default)]
    pub grid: BTreeMap<String, Vec<toml::Value>>,
}

/// One run of the expanded suite.
#[derive(Clone, Debug)]
pub struct PlannedRun {
    /// Position in expansion order (sharding uses it).
    pub k: usize,
    pub id: String,
    /// The grid point, `key=value, …` (empty without a grid).
    pub point: String,
    pub seed: u64,
    /// The run directory relative to the suite's output directory.
    pub dir: PathBuf,
    pub scenario: Scenario,
}

/// A suite expanded into its runs, every one validated.
#[derive(Clone, Debug)]
pub struct Plan {
    pub name: String,
    /// The suite file or scenario directory it came from.
    pub source: PathBuf,
    /// The suite file's text (kept as `suite.toml` in the output).
    pub text: Option<String>,
    pub runs: Vec<PlannedRun>,
}

/// Longest id or suite name (it names a directory).
const MAX_ID_LEN: usize = 100;

/// A suite id or name: it names a directory.
fn check_id(id: &str, what: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && !id.starts_with(['.', '-'])
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+'));
    if !ok {
        bail!(
            "{what} {id:?} names a directory, so it may only contain ASCII letters, digits, '.', '_', '+' and '-', must not start with '.' or '-' and has at most {} characters",
            MAX_ID_LEN
        );
    }
    Ok(())
}

/// Reads a suite file or a directory of scenarios into its entries.
/// `rename` says whether a run's scenario gets `name = <id>` (suite files)
/// or keeps its own name and seed (scenario directories).
fn read_source(input: &Path) -> Result<(SuiteFile, Option<String>, PathBuf, bool)> {
    if input.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(input)
            .with_context(|| format!("cannot list {}", input.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.is_file()
                    && p.extension().is_some_and(|e| e == "toml")
                    && !p.to_string_lossy().ends_with(".suite.toml")
            })
            .collect();
        files.sort();
        if files.is_empty() {
            bail!(
                "{}: no scenario files (*.toml, not *.suite.toml) in this directory",
                input.display()
            );
        }
        let name = input
            .canonicalize()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "suite".into());
        let runs = files
            .iter()
            .map(|f| Entry {
                id: f
                    .file_stem()
                    .map_or(String::new(), |s| s.to_string_lossy().into_owned()),
                scenario: f.file_name().map(PathBuf::from),
                set: Vec::new(),
                seeds: None,
                grid: BTreeMap::new(),
            })
            .collect();
        let suite = SuiteFile {
            name,
            description: format!("the scenarios of {}", input.display()),
            seeds: None,
            set: Vec::new(),
            scenario: None,
            runs,
        };
        return Ok((suite, None, input.to_path_buf(), false));
    }
    let text = std::fs::read_to_string(input)
        .with_context(|| format!("{}: cannot read the suite file", input.display()))?;
    let suite: SuiteFile = toml::from_str(&text).map_err(|e| {
        anyhow::anyhow!(
            "{}: {}",
            input.display(),
            e.to_string().trim_end().replace('\n', "\n  ")
        )
    })?;
    let base = input
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    Ok((suite, Some(text), base, true))
}

/// Expands a suite file or scenario directory into its runs, resolving and
/// validating every one; an error names the suite, the entry, the grid
/// point and seed, and the key.
pub fn plan(input: &Path, overrides: &[String]) -> Result<Plan> {
    let (suite, text, base_dir, rename) = read_source(input)?;
    let at = |id: &str| format!("{}: run `{id}`", input.display());
    check_id(&suite.name, "the suite's name").with_context(|| input.display().to_string())?;
    if suite.runs.is_empty() {
        bail!(
            "{}: no runs; add [[run]] entries with an id and a scenario",
            input.display()
        );
    }
    if let Some(seeds) = &suite.seeds
        && seeds.is_empty()
    {
        bail!(
            "{}: key `seeds`: is empty; give at least one seed, e.g. seeds = [1, 2, 3]",
            input.display()
        );
    }
    let mut ids = BTreeSet::new();
    let mut runs = Vec::new();
    for entry in &suite.runs {
        let id = &entry.id;
        check_id(id, "the id").with_context(|| at(id))?;
        if !ids.insert(id.clone()) {
            bail!(
                "{}: the id is used twice; ids name the run directories",
                at(id)
            );
        }
        let Some(file) = entry.scenario.as_ref().or(suite.scenario.as_ref()) else {
            bail!(
                "{}: no scenario; give the entry (or the suite) a `scenario = \"file.toml\"`",
                at(id)
            );
        };
        let file = base_dir.join(file);
        let seeds: Option<&Vec<u64>> = entry.seeds.as_ref().or(suite.seeds.as_ref());
        if let Some(s) = seeds {
            let distinct: BTreeSet<_> = s.iter().collect();
            if s.is_empty() || distinct.len() != s.len() {
                bail!(
                    "{}: key `seeds`: needs distinct seeds, at least one; got {s:?}",
                    at(id)
                );
            }
        }
        // The scenario file alone: its own errors point into its text, and
        // its [sweep] table joins the entry's grid.
        let base_text = std::fs::read_to_string(&file)
            .with_context(|| format!("{}: cannot read {}", at(id), file.display()))?;
        let base =
            scenario::parse(&base_text, &file).map_err(|e| anyhow::anyhow!("{}: {e}", at(id)))?;
        let mut grid_keys = base.sweep.clone();
        for (key, values) in &entry.grid {
            grid_keys.insert(key.clone(), values.clone());
        }
        for (key, values) in &grid_keys {
            if values.is_empty() {
                bail!(
                    "{}: grid key `{key}`: has no values; give a list such as [0.0, 1.0]",
                    at(id)
                );
            }
            if rename && matches!(key.as_str(), "seed" | "name") {
                bail!(
                    "{}: grid key `{key}`: a suite sets each run's {key} itself (seeds from `seeds`, the name from `id`); remove it from the grid",
                    at(id)
                );
            }
        }
        let points = grid(&grid_keys);
        if runs.len() + points.len() * seeds.map_or(1, Vec::len) > MAX_RUNS {
            bail!(
                "{}: the suite expands to more than {MAX_RUNS} runs; split it",
                input.display()
            );
        }
        for (g, point) in points.iter().enumerate() {
            let mut ov: Vec<String> = suite.set.clone();
            ov.extend(entry.set.iter().cloned());
            ov.extend(point.iter().map(|(k, v)| format!("{k}={v}")));
            ov.extend(overrides.iter().cloned());
            if !base.sweep.is_empty() {
                ov.push("sweep={}".into());
            }
            if rename {
                ov.push(format!("name={}", toml::Value::String(id.clone())));
            }
            let described = scenario::grid::describe(point);
            let seed_list: Vec<Option<u64>> = match seeds {
                Some(s) => s.iter().copied().map(Some).collect(),
                None => vec![None],
            };
            for seed in seed_list {
                let mut ov = ov.clone();
                if let Some(seed) = seed {
                    ov.push(format!("seed={seed}"));
                }
                let s = scenario::load(&file, &ov).map_err(|e| {
                    let mut what = at(id);
                    if !points[0].is_empty() {
                        what.push_str(&format!(", grid point {g} ({described})"));
                    }
                    if let Some(seed) = seed {
                        what.push_str(&format!(", seed {seed}"));
                    }
                    anyhow::anyhow!("{what}: {e}")
                })?;
                let mut dir = PathBuf::from(id);
                if !points[0].is_empty() {
                    dir.push(format!("p{g:04}"));
                }
                dir.push(format!("seed-{}", s.seed));
                runs.push(PlannedRun {
                    k: runs.len(),
                    id: id.clone(),
                    point: described.clone(),
                    seed: s.seed,
                    dir,
                    scenario: s,
                });
            }
        }
    }
    let mut dirs = BTreeMap::new();
    for r in &runs {
        if let Some(first) = dirs.insert(r.dir.clone(), r.id.clone()) {
            bail!(
                "{}: runs `{first}` and `{}` both write {} (the same seed twice?)",
                input.display(),
                r.id,
                r.dir.display()
            );
        }
    }
    Ok(Plan {
        name: suite.name,
        source: input.to_path_buf(),
        text,
        runs,
    })
}

/// What a suite did.
#[derive(Debug)]
pub struct SuiteResult {
    /// The rows of `suite.csv` (this shard's runs).
    pub table: Table,
    /// Runs of this shard that ran now / were skipped as finished.
    pub ran: usize,
    pub skipped: usize,
    /// Runs of this shard that are not completed now.
    pub not_completed: usize,
    /// The table's file name (`suite.csv`, or per shard).
    pub table_file: String,
}

/// Columns of `suite.csv`.
pub const COLUMNS: [&str; 9] = [
    "run",
    "id",
    "grid",
    "seed",
    "status",
    "test_accuracy",
    "seconds",
    "action",
    "dir",
];

/// The status of a finished run directory that needs no rerun: its
/// `summary.json` is final and its `scenario.toml` is `s`.
pub fn finished(dir: &Path, s: &Scenario) -> Option<serde_json::Value> {
    let summary = read_summary(dir)?;
    if !matches!(summary["status"].as_str(), Some("completed" | "diverged")) {
        return None;
    }
    let file = dir.join("scenario.toml");
    let text = std::fs::read_to_string(&file).ok()?;
    let recorded = scenario::parse(&text, &file).ok()?;
    (recorded == *s).then_some(summary)
}

/// A `suite.csv` row.
fn row(
    r: &PlannedRun,
    status: &str,
    summary: Option<&serde_json::Value>,
    seconds: f64,
    action: &str,
) -> Vec<String> {
    let get = |key: &str| summary.and_then(|s| s[key].as_f64());
    vec![
        r.k.to_string(),
        r.id.clone(),
        r.point.clone(),
        r.seed.to_string(),
        status.replace(['\n', '\r'], " "),
        get("test_accuracy").map_or(String::new(), num),
        get("wall_seconds").map_or(format!("{seconds:.3}"), |s| format!("{s:.3}")),
        action.to_string(),
        r.dir.display().to_string(),
    ]
}

/// Estimated cost of a run for the progress bar: its multiply-adds plus a
/// start-up allowance (process, data).
fn cost(s: &Scenario) -> u64 {
    let work = scenario::bounds::estimate(s).map_or(0.0, |e| e.work());
    let start = match s.data.kind {
        scenario::DataKind::Mnist => 3e10,
        scenario::DataKind::Synthetic => 3e8,
    };
    ((work + start) / 1e6).clamp(1.0, 1e15) as u64
}

/// The names of the suites whose records (`suite*.json`) are in `out`.
fn recorded_suites(out: &Path) -> BTreeSet<String> {
    let Ok(entries) = std::fs::read_dir(out) else {
        return BTreeSet::new();
    };
    entries
        .flatten()
        .filter(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.starts_with("suite") && n.ends_with(".json")
        })
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .filter_map(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .filter_map(|v| v["suite"].as_str().map(str::to_string))
        .collect()
}

/// Prepares the output directory: a new or empty one is created; one an
/// earlier invocation of the same suite wrote is resumed; any other is
/// refused (or, with `force`, emptied when pcsim wrote it).
fn prepare(out: &Path, name: &str, force: bool) -> Result<Recorder> {
    let suites = recorded_suites(out);
    if out.join(crate::metrics::MARKER).is_file() && suites.iter().any(|s| s == name) {
        return Recorder::open(out);
    }
    let empty = std::fs::read_dir(out).map_or(true, |mut d| d.next().is_none());
    if !empty && !force {
        let what = match suites.iter().next() {
            Some(other) => format!("holds the runs of suite `{other}`, not of `{name}`"),
            None => "is not the output of a suite (it has no suite.json)".into(),
        };
        bail!(
            "output directory {} is not empty and {what}, so it cannot be resumed; choose another --out, or pass --force to replace it",
            out.display()
        );
    }
    Recorder::create(out, force)
}

/// `suite` for an unsharded run, `suite.shard-i-of-n` for a shard: the
/// stem of its table and metadata, so shards can share a directory.
fn stem(shard: (usize, usize)) -> String {
    if shard.1 <= 1 {
        "suite".into()
    } else {
        format!("suite.shard-{}-of-{}", shard.0, shard.1)
    }
}

/// `suite.json` (per shard: `suite.shard-i-of-n.json`): the suite's name
/// and source, and every invocation — command, pcsim version, machine,
/// jobs, start, end and what it did — so a report can name what produced
/// the runs, not only the last (perhaps all-skipping) invocation.
struct Record<'a> {
    rec: &'a Recorder,
    file: String,
    head: serde_json::Value,
    invocations: Vec<serde_json::Value>,
}

impl<'a> Record<'a> {
    /// Appends this invocation to the record (started, not finished).
    fn start(rec: &'a Recorder, file: &str, plan: &Plan, opts: &SuiteOptions) -> Result<Self> {
        let mut invocations: Vec<serde_json::Value> = std::fs::read_to_string(rec.path(file))
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v["invocations"].as_array().cloned())
            .unwrap_or_default();
        let machine = Machine::this();
        let shard = opts.shard();
        invocations.push(serde_json::json!({
            "command": opts.command,
            "pcsim": provenance::version(),
            "machine": machine,
            "machine_text": machine.describe(),
            "jobs": super::runner::jobs_or_cores(opts.jobs),
            "shard": [shard.0, shard.1],
            "started": provenance::now(),
            "finished": null,
        }));
        let record = Self {
            rec,
            file: file.to_string(),
            head: serde_json::json!({
                "suite": plan.name,
                "source": plan.source.display().to_string(),
                "runs": plan.runs.len(),
            }),
            invocations,
        };
        record.write()?;
        Ok(record)
    }

    fn finish(
        &mut self,
        seconds: f64,
        ran: usize,
        skipped: usize,
        not_completed: usize,
    ) -> Result<()> {
        if let Some(last) = self.invocations.last_mut() {
            last["finished"] = provenance::now().into();
            last["wall_seconds"] = seconds.into();
            last["ran"] = ran.into();
            last["skipped"] = skipped.into();
            last["not_completed"] = not_completed.into();
        }
        self.write()
    }

    fn write(&self) -> Result<()> {
        let mut v = self.head.clone();
        v["invocations"] = self.invocations.clone().into();
        self.rec.write_json(&self.file, &v)
    }
}

/// Runs this shard of the suite with `runner` (see the module doc) and
/// writes `suite.csv` (rewritten as runs end) and `suite.json`. A suite
/// stopped by a signal returns `Interrupted` after writing them.
pub fn suite_with(input: &Path, opts: &SuiteOptions, runner: &Runner) -> Result<SuiteResult> {
    let started = std::time::Instant::now();
    let plan = plan(input, &opts.overrides)?;
    let shard = opts.shard();
    let rec = prepare(&opts.out_dir, &plan.name, opts.force)?;
    let stem = stem(shard);
    if let Some(text) = &plan.text {
        rec.write_text("suite.toml", text)?;
    }
    let mut record = Record::start(&rec, &format!("{stem}.json"), &plan, opts)?;

    let mine: Vec<&PlannedRun> = plan
        .runs
        .iter()
        .filter(|r| r.k % shard.1 == shard.0)
        .collect();
    let mut rows: Vec<Vec<String>> = Vec::with_capacity(mine.len());
    let mut todo: Vec<usize> = Vec::new();
    for (i, r) in mine.iter().enumerate() {
        let dir = rec.dir().join(&r.dir);
        match (!opts.force).then(|| finished(&dir, &r.scenario)).flatten() {
            Some(summary) => {
                let status = status_of(&summary).unwrap_or_default();
                rows.push(row(r, &status, Some(&summary), 0.0, "skipped"));
            }
            None => {
                rows.push(row(r, "pending", None, 0.0, "pending"));
                todo.push(i);
            }
        }
    }
    let skipped = mine.len() - todo.len();
    warn_strays(rec.dir(), &plan);
    let jobs = super::runner::jobs_or_cores(opts.jobs);
    eprintln!(
        "suite {}: {} run(s){}; {} to run, {skipped} already finished (skipped), {jobs} in parallel",
        plan.name,
        mine.len(),
        if shard.1 > 1 {
            format!(" in shard {}/{} of {}", shard.0, shard.1, plan.runs.len())
        } else {
            String::new()
        },
        todo.len(),
    );
    let table_file = format!("{stem}.csv");
    let header: Vec<String> = COLUMNS.iter().map(|s| s.to_string()).collect();
    let write_table = |rows: &[Vec<String>]| {
        rec.write_table(
            &table_file,
            &Table {
                header: header.clone(),
                rows: rows.to_vec(),
            },
        )
    };
    write_table(&rows)?;

    let work: Vec<(Scenario, PathBuf)> = todo
        .iter()
        .map(|&i| (mine[i].scenario.clone(), rec.dir().join(&mine[i].dir)))
        .collect();
    let costs: Vec<u64> = work.iter().map(|(s, _)| cost(s)).collect();
    let bar = ProgressBar::new(costs.iter().sum::<u64>().max(1));
    bar.set_style(
        ProgressStyle::with_template(
            "{elapsed_precise} [{wide_bar}] {percent:>3}% (work) ETA {eta} {msg}",
        )
        .expect("a valid template")
        .progress_chars("=> "),
    );
    bar.set_message(format!("0/{} runs", work.len()));
    let shared = Mutex::new((rows, 0usize));
    let outcomes = run_all(runner, opts.jobs, &work, |w, outcome: &Outcome| {
        let r = mine[todo[w]];
        let mut guard = shared.lock().expect("no poisoning");
        let (rows, done) = &mut *guard;
        *done += 1;
        let action = if outcome.status == "not run" {
            "not run"
        } else {
            "ran"
        };
        rows[todo[w]] = row(
            r,
            &outcome.status,
            outcome.summary.as_ref(),
            outcome.seconds,
            action,
        );
        let acc = outcome
            .summary
            .as_ref()
            .and_then(|s| s["test_accuracy"].as_f64())
            .map_or(String::new(), |a| {
                format!(", test accuracy {:.2} %", 100.0 * a)
            });
        bar.suspend(|| {
            eprintln!(
                "  [{done}/{}] {}: {}{acc} ({:.1} s)",
                work.len(),
                r.dir.display(),
                outcome.status,
                outcome.seconds
            )
        });
        bar.inc(costs[w]);
        bar.set_message(format!("{done}/{} runs", work.len()));
        if let Err(e) = write_table(rows) {
            bar.suspend(|| eprintln!("warning: {e:#}"));
        }
    });
    bar.finish_and_clear();
    let (rows, _) = shared.into_inner().expect("no poisoning");
    write_table(&rows)?;
    let not_completed = rows.iter().filter(|r| r[4] != "completed").count();
    let ran = outcomes.iter().filter(|o| o.status != "not run").count();
    record.finish(started.elapsed().as_secs_f64(), ran, skipped, not_completed)?;
    let table = Table { header, rows };
    if let Some(signal) = interrupt::requested() {
        return Err(interrupt::Interrupted {
            signal,
            what: "the suite",
            progress: format!(
                "{} of {} run(s) completed",
                mine.len() - not_completed,
                mine.len()
            ),
            dir: rec.dir().display().to_string(),
        }
        .into());
    }
    Ok(SuiteResult {
        table,
        ran,
        skipped,
        not_completed,
        table_file,
    })
}

/// Runs this shard of the suite on threads of this process.
pub fn suite(input: &Path, opts: &SuiteOptions) -> Result<SuiteResult> {
    suite_with(input, opts, &Runner::InProcess)
}

/// Warns about run directories under the output that are no run of this
/// suite (an earlier version of it?): `pcsim report` would include them.
fn warn_strays(out: &Path, plan: &Plan) {
    let expected: BTreeSet<PathBuf> = plan.runs.iter().map(|r| out.join(&r.dir)).collect();
    let mut strays = Vec::new();
    fn walk(dir: &Path, depth: usize, expected: &BTreeSet<PathBuf>, strays: &mut Vec<PathBuf>) {
        if dir.join("scenario.toml").is_file() || dir.join("summary.json").is_file() {
            if !expected.contains(dir) {
                strays.push(dir.to_path_buf());
            }
            return;
        }
        if depth >= 3 {
            return;
        }
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        let mut subdirs: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect();
        subdirs.sort();
        for d in subdirs {
            walk(&d, depth + 1, expected, strays);
        }
    }
    walk(out, 0, &expected, &mut strays);
    if let Some(first) = strays.first() {
        eprintln!(
            "note: {} run directorie(s) under {} belong to no run of this suite (e.g. {}); `pcsim report` on the directory would include them",
            strays.len(),
            out.display(),
            first.display()
        );
    }
}

/// Expands and validates the suite without running anything: one row per
/// run (`run`, `id`, `grid`, `seed`, `action`, `dir`), where `action` is
/// what `suite_with` would do with it given `opts.out_dir` as it is now
/// (`run`, `skip` when finished, `other shard`).
pub fn dry_run(input: &Path, opts: &SuiteOptions) -> Result<Table> {
    let plan = plan(input, &opts.overrides)?;
    let shard = opts.shard();
    let mut table = Table::new(&["run", "id", "grid", "seed", "action", "dir"]);
    for r in &plan.runs {
        let action = if r.k % shard.1 != shard.0 {
            "other shard"
        } else if !opts.force && finished(&opts.out_dir.join(&r.dir), &r.scenario).is_some() {
            "skip"
        } else {
            "run"
        };
        table.push(vec![
            r.k.to_string(),
            r.id.clone(),
            r.point.clone(),
            r.seed.to_string(),
            action.into(),
            r.dir.display().to_string(),
        ]);
    }
    Ok(table)
}
