//! `pcsim report RUN_DIRS... --out DIR`: reads finished (or failed, or
//! interrupted) run directories — single runs, sweeps (`sweep.csv` +
//! `points/pNNNN`), suites (directories of run directories) — and writes
//! `report.md`, `report.csv` and SVG figures that answer the research
//! questions of DESIGN.md §1 from whatever runs are present.
//!
//! Runs that differ only in their seeds form one row (a *group*): accuracy is
//! the mean ± sample std over the group's completed runs, with n shown; a
//! diverged, failed or interrupted run is counted and shown as such, never
//! averaged in. Nothing is invented: a quantity a run did not record is
//! printed as "—", and every RQ section lists the inputs it lacks.
//!
//! Only the files a run directory has today are read (`scenario.toml`,
//! `summary.json`, `metrics.csv`, `equivalence.csv`, `runtime_stats.json`,
//! `snn_presentation.csv`), as loose TOML / JSON / CSV, so extra fields and
//! new status values from newer versions are tolerated. Spike counts are read
//! from `summary.snn.{spikes_per_image, synaptic_events_per_image}` (shadow
//! SNN), from `summary.spiking_pc.evaluation.{spikes_per_sample,
//! synaptic_events_per_sample}` (spiking PC, the test sweep), or from those two
//! keys at the top level of `summary.json` or in a `spiking` object.

use crate::metrics::plot::{Axes, Panel, Series};
use crate::metrics::{Recorder, Table, num};
use anyhow::{Result, bail};
use serde_json::Value as Json;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Options of one `pcsim report` invocation.
#[derive(Clone, Debug, Default)]
pub struct ReportOptions {
    /// A directory (`report.md`, `report.csv` and the figures go into it),
    /// or a file `NAME.md` (the CSV and the figures go into `NAME/`).
    pub out_dir: PathBuf,
    /// Overwrite an earlier report.
    pub force: bool,
    /// The command line to name in the header (default: one rebuilt from
    /// the inputs).
    pub command: Option<String>,
}

/// Where a report's files go.
struct Target {
    /// The markdown file.
    md: PathBuf,
    /// The directory of `report.csv` and the figures.
    assets: PathBuf,
    /// How the markdown links to the assets (`""` or `"NAME/"`).
    link: String,
}

impl Target {
    fn of(out: &Path) -> Self {
        match (out.extension(), out.file_stem()) {
            (Some(ext), Some(stem)) if ext == "md" => Self {
                md: out.to_path_buf(),
                assets: out.with_extension(""),
                link: format!("{}/", stem.to_string_lossy()),
            },
            _ => Self {
                md: out.join("report.md"),
                assets: out.to_path_buf(),
                link: String::new(),
            },
        }
    }

    /// Refuses to replace a markdown file that is not an earlier report.
    fn check_md(&self, force: bool) -> Result<()> {
        if self.assets.join("report.md") == self.md || !self.md.exists() {
            return Ok(());
        }
        let earlier = std::fs::read_to_string(&self.md).is_ok_and(|t| t.starts_with(REPORT_TITLE));
        match (force, earlier) {
            (true, true) => Ok(()),
            (false, _) => bail!(
                "{} already exists; pass --force to replace it, or choose another --out",
                self.md.display()
            ),
            (true, false) => bail!(
                "{} exists and is not a pcsim report (it does not start with {REPORT_TITLE:?}); --force only replaces reports, so choose another --out",
                self.md.display()
            ),
        }
    }
}

/// The first line of every report.
const REPORT_TITLE: &str = "# pcsim report";

/// What `report` wrote.
#[derive(Debug)]
pub struct Report {
    /// The rows of `report.csv` (one per group).
    pub table: Table,
    pub markdown: String,
    /// Where the markdown was written (`report.md`, or the `--out NAME.md`).
    pub markdown_file: PathBuf,
    /// The directory of `report.csv` and the figures.
    pub assets_dir: PathBuf,
    pub runs: usize,
    pub groups: usize,
    /// Figures written (file names in the output directory).
    pub figures: Vec<String>,
}

/// Scenario keys that do not change a run's numbers (or are seeds): runs
/// that differ only in these belong to one group.
const IGNORED_KEYS: [&str; 11] = [
    "seed",
    "description",
    "network.init_seed",
    "training.seed",
    "data.synthetic.seed",
    "runtime.seed",
    "snn.seed",
    "data.path",
    "snn.threads",
    "output.plots",
    "sweep",
];

/// One run directory as read from disk.
#[derive(Clone, Debug)]
pub struct Run {
    pub dir: PathBuf,
    pub scenario: Option<toml::Value>,
    pub summary: Option<Json>,
    /// `completed`, `diverged`, `failed`, `interrupted`, or whatever newer
    /// versions write.
    pub status: String,
    /// Why the status is what it is, when the run directory says (a failed
    /// sweep point's error, an unreadable file).
    pub note: Option<String>,
    /// `(epoch, step, test_accuracy)` rows of `metrics.csv`.
    pub metrics: Vec<(f64, f64, f64)>,
    /// `(step, layer, rel_diff, cosine)` rows of `equivalence.csv`.
    pub equivalence: Vec<(f64, String, f64, f64)>,
    /// `(presentation time, spiking accuracy)` of a spiking evaluation.
    pub presentation: Vec<(f64, f64)>,
    /// Finished samples (batches) of the actor runtime, `runtime_stats.json`.
    pub runtime_samples: Option<f64>,
    /// An earlier run of the same group with the same seed: this one repeats
    /// it and is not counted again.
    pub duplicate_of: Option<PathBuf>,
}

impl Run {
    fn completed(&self) -> bool {
        self.status == "completed"
    }

    fn seed(&self) -> Option<i64> {
        self.scenario.as_ref()?.get("seed")?.as_integer()
    }

    fn summary_f64(&self, path: &str) -> Option<f64> {
        json_path(self.summary.as_ref()?, path)?
            .as_f64()
            .filter(|v| v.is_finite())
    }

    fn accuracy(&self) -> Option<f64> {
        self.summary_f64("test_accuracy")
    }

    /// Mean training seconds per epoch.
    fn seconds_per_epoch(&self) -> Option<f64> {
        let s = json_path(self.summary.as_ref()?, "seconds_per_epoch")?.as_array()?;
        let v: Vec<f64> = s.iter().filter_map(Json::as_f64).collect();
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    }

    /// Messages per batch through the actor network.
    fn messages_per_batch(&self) -> Option<f64> {
        let messages = self.summary_f64("runtime.messages")?;
        let batches = self
            .runtime_samples
            .or_else(|| self.summary_f64("steps"))
            .filter(|&b| b > 0.0)?;
        Some(messages / batches)
    }

    /// `(spikes, synaptic events)` per sample of a spiking run.
    fn spiking_work(&self) -> Option<(Option<f64>, f64)> {
        let s = self.summary.as_ref()?;
        let total = |v: &Json| match v {
            Json::Array(a) => Some(a.iter().filter_map(Json::as_f64).sum()),
            other => other.as_f64(),
        };
        if let Some(events) = json_path(s, "snn.synaptic_events_per_image").and_then(Json::as_f64) {
            let spikes = json_path(s, "snn.spikes_per_image").and_then(total);
            return Some((spikes, events));
        }
        // Spiking PC records training and evaluation separately; the test
        // sweep is the per-image cost comparable with the shadow SNN's.
        for prefix in ["spiking_pc.evaluation.", "", "spiking."] {
            if let Some(events) =
                json_path(s, &format!("{prefix}synaptic_events_per_sample")).and_then(Json::as_f64)
            {
                let spikes = json_path(s, &format!("{prefix}spikes_per_sample")).and_then(total);
                return Some((spikes, events));
            }
        }
        None
    }
}

/// Follows a dotted path into JSON.
fn json_path<'a>(v: &'a Json, path: &str) -> Option<&'a Json> {
    path.split('.').try_fold(v, |v, k| v.get(k))
}

/// Follows a dotted path into TOML.
fn toml_path<'a>(v: &'a toml::Value, path: &str) -> Option<&'a toml::Value> {
    path.split('.').try_fold(v, |v, k| v.get(k))
}

fn toml_f64(v: &toml::Value, path: &str) -> Option<f64> {
    match toml_path(v, path)? {
        toml::Value::Integer(i) => Some(*i as f64),
        toml::Value::Float(f) => Some(*f),
        _ => None,
    }
}

fn toml_str(v: &toml::Value, path: &str) -> Option<String> {
    toml_path(v, path)?.as_str().map(String::from)
}

/// A TOML value as a short text (strings without quotes).
fn value_text(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn read_csv(path: &Path) -> Option<(Vec<String>, Vec<csv::StringRecord>)> {
    let mut r = csv::Reader::from_path(path).ok()?;
    let header = r.headers().ok()?.iter().map(String::from).collect();
    Some((header, r.records().filter_map(|r| r.ok()).collect()))
}

/// Columns `names` of a CSV file as rows of strings (missing columns: skip file).
fn csv_columns(path: &Path, names: &[&str]) -> Vec<Vec<String>> {
    let Some((header, records)) = read_csv(path) else {
        return Vec::new();
    };
    let Some(idx): Option<Vec<usize>> = names
        .iter()
        .map(|n| header.iter().position(|h| h == n))
        .collect()
    else {
        return Vec::new();
    };
    records
        .iter()
        .map(|r| {
            idx.iter()
                .map(|&i| r.get(i).unwrap_or("").to_string())
                .collect()
        })
        .collect()
}

fn parse(s: &str) -> f64 {
    s.trim().parse().unwrap_or(f64::NAN)
}

/// Reads one run directory. Never fails: what cannot be read becomes the
/// run's status or note.
pub fn read_run(dir: &Path) -> Run {
    let mut notes = Vec::new();
    let scenario = match std::fs::read_to_string(dir.join("scenario.toml")) {
        Ok(text) => match toml::from_str::<toml::Value>(&text) {
            Ok(v) => Some(v),
            Err(e) => {
                notes.push(format!("scenario.toml unreadable: {}", e.message()));
                None
            }
        },
        Err(_) => None,
    };
    let (summary, status) = match std::fs::read_to_string(dir.join("summary.json")) {
        Ok(text) => match serde_json::from_str::<Json>(&text) {
            Ok(v) => {
                let status = v
                    .get("status")
                    .and_then(Json::as_str)
                    .unwrap_or("unknown")
                    .to_string();
                (Some(v), status)
            }
            Err(e) => {
                notes.push(format!("summary.json unreadable: {e}"));
                (None, "unreadable".to_string())
            }
        },
        Err(_) => {
            notes.push("no summary.json: the run stopped before it finished".into());
            (None, "interrupted".to_string())
        }
    };
    if let Some(reason) = summary
        .as_ref()
        .filter(|_| status != "completed")
        .and_then(|s| s["reason"].as_str())
    {
        notes.push(reason.to_string());
    }
    let metrics = csv_columns(
        &dir.join("metrics.csv"),
        &["epoch", "step", "test_accuracy"],
    )
    .iter()
    .map(|r| (parse(&r[0]), parse(&r[1]), parse(&r[2])))
    .collect();
    let equivalence = csv_columns(
        &dir.join("equivalence.csv"),
        &["step", "layer", "rel_diff", "cosine"],
    )
    .iter()
    .map(|r| (parse(&r[0]), r[1].clone(), parse(&r[2]), parse(&r[3])))
    .collect();
    let mut presentation: Vec<(f64, f64)> = csv_columns(
        &dir.join("snn_presentation.csv"),
        &["presentation_time", "spiking_accuracy"],
    )
    .iter()
    .map(|r| (parse(&r[0]), parse(&r[1])))
    .collect();
    if presentation.is_empty()
        && let Some(points) = summary
            .as_ref()
            .and_then(|s| json_path(s, "snn.accuracy_vs_presentation_time"))
            .and_then(Json::as_array)
    {
        presentation = points
            .iter()
            .filter_map(|p| {
                Some((
                    p.get("presentation_time")?.as_f64()?,
                    p.get("accuracy")?.as_f64()?,
                ))
            })
            .collect();
    }
    let runtime_samples = std::fs::read_to_string(dir.join("runtime_stats.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<Json>(&t).ok())
        .and_then(|v| v.get("samples").and_then(Json::as_f64));
    Run {
        dir: dir.to_path_buf(),
        scenario,
        summary,
        status,
        note: (!notes.is_empty()).then(|| notes.join("; ")),
        metrics,
        equivalence,
        presentation,
        runtime_samples,
        duplicate_of: None,
    }
}

fn is_run_dir(dir: &Path) -> bool {
    dir.join("scenario.toml").is_file() || dir.join("summary.json").is_file()
}

fn subdirs(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    v.sort();
    v
}

/// The points of a sweep directory: every `points/pNNNN` directory, plus the
/// rows of `sweep.csv` whose point left no directory (a point that failed
/// before writing anything).
fn read_sweep(dir: &Path, runs: &mut Vec<Run>) {
    let points = dir.join("points");
    let mut seen = BTreeSet::new();
    for p in subdirs(&points) {
        if is_run_dir(&p) {
            seen.insert(p.clone());
            runs.push(read_run(&p));
        }
    }
    let Some((header, records)) = read_csv(&dir.join("sweep.csv")) else {
        return;
    };
    let col = |n: &str| header.iter().position(|h| h == n);
    let (Some(pi), Some(si)) = (col("point"), col("status")) else {
        return;
    };
    for r in &records {
        let Ok(g) = r.get(pi).unwrap_or("").parse::<usize>() else {
            continue;
        };
        let pdir = points.join(format!("p{g:04}"));
        let status = r.get(si).unwrap_or("");
        if let Some(run) = runs.iter_mut().find(|run| run.dir == pdir) {
            // The sweep saw the point fail after its directory was written.
            if let Some(msg) = status.strip_prefix("failed:")
                && run.completed()
            {
                run.status = "failed".into();
                run.note = Some(msg.trim().to_string());
            }
        } else if !seen.contains(&pdir) {
            let (status, note) = match status.split_once(':') {
                Some((s, msg)) => (s.trim().to_string(), Some(msg.trim().to_string())),
                None => (status.to_string(), None),
            };
            runs.push(Run {
                dir: pdir,
                scenario: None,
                summary: None,
                status: if status.is_empty() {
                    "unknown".into()
                } else {
                    status
                },
                note: note.or(Some("sweep.csv row without a point directory".into())),
                metrics: Vec::new(),
                equivalence: Vec::new(),
                presentation: Vec::new(),
                runtime_samples: None,
                duplicate_of: None,
            });
        }
    }
}

/// Finds the runs under `path`: a run directory, a sweep, or a directory of
/// either (searched a few levels deep), skipping `skip` (the report's own
/// output directory).
fn discover(path: &Path, depth: usize, skip: &Path, runs: &mut Vec<Run>) {
    if path.canonicalize().ok().as_deref() == Some(skip) {
        return;
    }
    if is_run_dir(path) {
        runs.push(read_run(path));
    } else if path.join("sweep.csv").is_file() || path.join("points").is_dir() {
        read_sweep(path, runs);
    } else if depth < 4 {
        for d in subdirs(path) {
            discover(&d, depth + 1, skip, runs);
        }
    }
}

/// Reads every run under `inputs`. An input that does not exist, or holds
/// no run directory, is an error naming it.
pub fn collect_runs(inputs: &[PathBuf], skip: &Path) -> Result<Vec<Run>> {
    let mut runs = Vec::new();
    for input in inputs {
        if !input.is_dir() {
            bail!(
                "{}: no such directory; pass run directories, sweep directories or directories of them",
                input.display()
            );
        }
        let before = runs.len();
        discover(input, 0, skip, &mut runs);
        if runs.len() == before {
            bail!(
                "{}: no run directory found (a run directory holds scenario.toml or summary.json; a sweep holds sweep.csv and points/)",
                input.display()
            );
        }
    }
    let mut seen = BTreeSet::new();
    runs.retain(|r| seen.insert(r.dir.clone()));
    Ok(runs)
}

/// Runs that differ only in their seeds.
#[derive(Clone, Debug)]
pub struct Group {
    /// The scenario without seeds and result-neutral keys, as TOML text.
    pub key: String,
    pub label: String,
    pub scenario: Option<toml::Value>,
    pub runs: Vec<Run>,
}

impl Group {
    /// The runs that count: repeats of a seed left out.
    fn counted(&self) -> impl Iterator<Item = &Run> {
        self.runs.iter().filter(|r| r.duplicate_of.is_none())
    }
}

/// Removes the dotted `key` from a TOML value, if present.
fn remove_key(v: &mut toml::Value, key: &str) {
    let (parents, last) = key.rsplit_once('.').unwrap_or(("", key));
    let parent = parents
        .split('.')
        .filter(|p| !p.is_empty())
        .try_fold(v, |t, p| t.get_mut(p));
    if let Some(table) = parent.and_then(toml::Value::as_table_mut) {
        table.remove(last);
    }
}

fn strip(scenario: &toml::Value) -> toml::Value {
    let mut v = scenario.clone();
    for key in IGNORED_KEYS {
        remove_key(&mut v, key);
    }
    v
}

fn flatten(v: &toml::Value, prefix: &str, out: &mut BTreeMap<String, String>) {
    match v {
        toml::Value::Table(t) => {
            for (k, v) in t {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(v, &key, out);
            }
        }
        other => {
            out.insert(prefix.to_string(), value_text(other));
        }
    }
}

/// `runtime.delay_down.mean` → `delay_down.mean`, `runtime.jitter` → `jitter`.
fn short_key(key: &str) -> String {
    let parts: Vec<&str> = key.split('.').collect();
    match parts.as_slice() {
        [.., a, b] if matches!(*b, "mean" | "kind" | "spread") => format!("{a}.{b}"),
        [.., b] => b.to_string(),
        [] => key.to_string(),
    }
}

/// Groups runs by scenario-without-seeds; labels name the scenario and the
/// keys in which same-named groups differ.
pub fn group_runs(runs: Vec<Run>) -> Vec<Group> {
    let mut groups: Vec<Group> = Vec::new();
    for run in runs {
        let key = match &run.scenario {
            Some(s) => toml::to_string(&strip(s)).unwrap_or_default(),
            None => format!("dir:{}", run.dir.display()),
        };
        match groups.iter_mut().find(|g| g.key == key) {
            Some(g) => {
                let mut run = run;
                if let Some(seed) = run.seed() {
                    run.duplicate_of = g
                        .runs
                        .iter()
                        .find(|r| r.duplicate_of.is_none() && r.seed() == Some(seed))
                        .map(|r| r.dir.clone());
                }
                g.runs.push(run)
            }
            None => groups.push(Group {
                key,
                label: String::new(),
                scenario: run.scenario.as_ref().map(strip),
                runs: vec![run],
            }),
        }
    }
    let names: Vec<String> = groups
        .iter()
        .map(|g| match &g.scenario {
            Some(s) => toml_str(s, "name").unwrap_or_else(|| "scenario".into()),
            None => g.runs[0]
                .dir
                .file_name()
                .map_or_else(|| "run".into(), |n| n.to_string_lossy().into_owned()),
        })
        .collect();
    let flat: Vec<BTreeMap<String, String>> = groups
        .iter()
        .map(|g| {
            let mut m = BTreeMap::new();
            if let Some(s) = &g.scenario {
                flatten(s, "", &mut m);
            }
            m
        })
        .collect();
    let mut done = vec![false; groups.len()];
    for i in 0..groups.len() {
        if done[i] {
            continue;
        }
        let same: Vec<usize> = (0..groups.len())
            .filter(|&j| names[j] == names[i])
            .collect();
        let keys = distinguishing_keys(&same.iter().map(|&j| &flat[j]).collect::<Vec<_>>());
        for &j in &same {
            done[j] = true;
            groups[j].label = if keys.is_empty() {
                names[j].clone()
            } else {
                let parts: Vec<String> = keys
                    .iter()
                    .map(|k| {
                        format!(
                            "{}={}",
                            short_key(k),
                            flat[j].get(k).map_or("—", String::as_str)
                        )
                    })
                    .collect();
                format!("{} [{}]", names[j], parts.join(", "))
            };
        }
    }
    groups
}

/// Keys whose meaning a reader looks for first; among keys that tell
/// groups apart equally well, the earlier one labels them.
const LABEL_PREFERENCE: [&str; 9] = [
    "algorithm.kind",
    "algorithm.inference.beta",
    "algorithm.inference.steps",
    "algorithm.inference.feedback",
    "runtime.driver",
    "runtime.trigger",
    "runtime.jitter",
    "runtime.delay_down.mean",
    "algorithm.inference.gamma",
];

/// A small set of keys that tells the configurations apart (greedy: the key
/// separating the most still-confused pairs first), in a stable order.
fn distinguishing_keys(configs: &[&BTreeMap<String, String>]) -> Vec<String> {
    let n = configs.len();
    let all: BTreeSet<&String> = configs.iter().flat_map(|c| c.keys()).collect();
    let mut confused: Vec<(usize, usize)> = (0..n)
        .flat_map(|a| (a + 1..n).map(move |b| (a, b)))
        .collect();
    let rank = |k: &str| {
        LABEL_PREFERENCE
            .iter()
            .position(|p| *p == k)
            .unwrap_or(LABEL_PREFERENCE.len())
    };
    let mut chosen: Vec<String> = Vec::new();
    while !confused.is_empty() {
        let best = all
            .iter()
            .map(|k| {
                let split = confused
                    .iter()
                    .filter(|&&(a, b)| configs[a].get(*k) != configs[b].get(*k))
                    .count();
                (split, std::cmp::Reverse(rank(k)), std::cmp::Reverse(*k))
            })
            .max();
        let Some((split, _, std::cmp::Reverse(key))) = best else {
            break;
        };
        if split == 0 {
            break;
        }
        confused.retain(|&(a, b)| configs[a].get(key) == configs[b].get(key));
        chosen.push(key.clone());
    }
    chosen.sort_by_key(|k| (rank(k), k.clone()));
    chosen
}

/// Mean and sample standard deviation (n − 1; NaN for fewer than two).
pub fn mean_std(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    if xs.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let mean = xs.iter().sum::<f64>() / n;
    if xs.len() < 2 {
        return (mean, f64::NAN);
    }
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, var.sqrt())
}

/// Multiply-adds per sample of the weight products, from the network shape
/// and the algorithm as pcsim runs it (biases and activations not counted).
/// With `P = Σ n_l n_{l−1}` and `P₁ = n₂ n₁` (the input layer's weights):
/// BP trains with `3P − P₁` (forward, errors down to the first hidden layer,
/// weight gradients); IL with `2P + 2T(P − P₁)` (feedforward start, per
/// inference step the errors down and the predictions up above the clamped
/// input, one update); Z-IL with the same at `T = L − 2` steps (its last step
/// only updates). Prediction is the feedforward pass `P`, plus
/// `2(P − P₁)` per step when `predict_steps > 0`. `None` for algorithms this
/// formula does not know.
pub fn multiply_adds(
    layers: &[usize],
    algorithm: &str,
    steps: usize,
    predict_steps: usize,
) -> Option<(f64, f64)> {
    if layers.len() < 2 {
        return None;
    }
    let p: f64 = layers.windows(2).map(|w| (w[0] * w[1]) as f64).sum();
    let p1 = (layers[0] * layers[1]) as f64;
    let relax = 2.0 * (p - p1);
    let depth = layers.len();
    let train = match algorithm {
        "bp" => 3.0 * p - p1,
        "il" => 2.0 * p + steps as f64 * relax,
        "zil" => 2.0 * p + depth.saturating_sub(2) as f64 * relax,
        _ => return None,
    };
    let infer = match algorithm {
        "bp" => p,
        _ => p + predict_steps as f64 * relax,
    };
    Some((train, infer))
}

/// Everything the report says about one group.
#[derive(Clone, Debug)]
struct Row {
    label: String,
    algorithm: String,
    network: String,
    data: String,
    status: String,
    n_runs: usize,
    n_completed: usize,
    acc: Vec<f64>,
    acc_mean: f64,
    acc_std: f64,
    epochs: String,
    sec_per_epoch: Option<f64>,
    train_macs: Option<f64>,
    infer_macs: Option<f64>,
    spikes: Option<f64>,
    events: Option<f64>,
    msgs: Option<f64>,
    max_rel_diff: Option<f64>,
    min_cosine: Option<f64>,
    seeds: String,
    dirs: String,
}

fn algorithm_text(s: &toml::Value) -> String {
    let kind = toml_str(s, "algorithm.kind").unwrap_or_else(|| "?".into());
    let mut text = match kind.as_str() {
        "bp" => "BP".to_string(),
        "zil" => "Z-IL".to_string(),
        "il" => format!(
            "IL β={} T={}",
            toml_path(s, "algorithm.inference.beta").map_or("?".into(), value_text),
            toml_path(s, "algorithm.inference.steps").map_or("?".into(), value_text)
        ),
        other => other.to_string(),
    };
    if kind != "bp" && toml_str(s, "algorithm.inference.feedback").as_deref() == Some("random") {
        text.push_str(" FA");
    }
    if let Some(opt) = toml_str(s, "training.optimizer").filter(|o| o != "sgd") {
        text.push_str(&format!(" {opt}"));
    }
    let driver = toml_str(s, "runtime.driver").unwrap_or_else(|| "lockstep".into());
    if kind != "bp" && driver != "lockstep" {
        let schedule = toml_str(s, "runtime.schedule").unwrap_or_default();
        text.push_str(&format!(" async {driver}/{schedule}"));
        if kind == "zil" {
            text.push_str(&format!(
                "/{}",
                toml_str(s, "runtime.trigger").unwrap_or_default()
            ));
        }
    }
    if s.get("snn").is_some() {
        text.push_str(" + LIF spikes");
    }
    text
}

fn layers_of(s: &toml::Value) -> Vec<usize> {
    toml_path(s, "network.layers")
        .and_then(toml::Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_integer())
                .map(|v| v as usize)
                .collect()
        })
        .unwrap_or_default()
}

fn network_text(s: &toml::Value) -> String {
    let layers = layers_of(s)
        .iter()
        .map(|n| n.to_string())
        .collect::<Vec<_>>()
        .join("-");
    format!(
        "{layers} {}",
        toml_str(s, "network.activation").unwrap_or_default()
    )
}

fn data_text(s: &toml::Value) -> String {
    let kind = toml_str(s, "data.kind").unwrap_or_else(|| "?".into());
    let subset = |k: &str| toml_f64(s, k).map(|v| v as usize);
    let (train, test) = match kind.as_str() {
        "synthetic" => (
            subset("data.train_subset").or(subset("data.synthetic.n_train")),
            subset("data.test_subset").or(subset("data.synthetic.n_test")),
        ),
        _ => (subset("data.train_subset"), subset("data.test_subset")),
    };
    match (train, test) {
        (None, None) => kind,
        (a, b) => format!(
            "{kind} {}/{}",
            a.map_or("all".into(), |v| v.to_string()),
            b.map_or("all".into(), |v| v.to_string())
        ),
    }
}

fn status_text(runs: &[&Run]) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for r in runs {
        *counts.entry(r.status.as_str()).or_default() += 1;
    }
    if counts.len() == 1 {
        return counts.keys().next().expect("one").to_string();
    }
    counts
        .iter()
        .map(|(s, n)| format!("{n} {s}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn mean_of(xs: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    let v: Vec<f64> = xs.flatten().collect();
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

fn row(g: &Group) -> Row {
    let counted: Vec<&Run> = g.counted().collect();
    let completed: Vec<&Run> = counted.iter().copied().filter(|r| r.completed()).collect();
    let acc: Vec<f64> = completed.iter().filter_map(|r| r.accuracy()).collect();
    let (acc_mean, acc_std) = mean_std(&acc);
    let s = g.scenario.as_ref();
    let epochs: BTreeSet<u64> = g
        .counted()
        .filter_map(|r| r.summary_f64("epochs"))
        .map(|e| e as u64)
        .collect();
    let epochs = match (epochs.first(), epochs.last()) {
        (Some(a), Some(b)) if a == b => a.to_string(),
        (Some(a), Some(b)) => format!("{a}–{b}"),
        _ => "—".into(),
    };
    let (train_macs, infer_macs) = s
        .and_then(|s| {
            multiply_adds(
                &layers_of(s),
                &toml_str(s, "algorithm.kind")?,
                toml_f64(s, "algorithm.inference.steps")? as usize,
                toml_f64(s, "algorithm.inference.predict_steps").unwrap_or(0.0) as usize,
            )
        })
        .map_or((None, None), |(a, b)| (Some(a), Some(b)));
    let spiking: Vec<(Option<f64>, f64)> =
        completed.iter().filter_map(|r| r.spiking_work()).collect();
    let events = mean_of(spiking.iter().map(|w| Some(w.1)));
    let spikes = mean_of(spiking.iter().map(|w| w.0));
    let max_rel_diff = g
        .counted()
        .filter_map(|r| r.summary_f64("equivalence.max_rel_diff"))
        .reduce(f64::max);
    let min_cosine = g
        .counted()
        .filter_map(|r| r.summary_f64("equivalence.min_cosine"))
        .reduce(f64::min);
    let seeds: Vec<String> = g
        .counted()
        .map(|r| r.seed().map_or("?".into(), |s| s.to_string()))
        .collect();
    Row {
        label: g.label.clone(),
        algorithm: s.map_or("?".into(), algorithm_text),
        network: s.map_or("?".into(), network_text),
        data: s.map_or("?".into(), data_text),
        status: status_text(&counted),
        n_runs: counted.len(),
        n_completed: completed.len(),
        acc,
        acc_mean,
        acc_std,
        epochs,
        sec_per_epoch: mean_of(completed.iter().map(|r| r.seconds_per_epoch())),
        train_macs,
        infer_macs,
        spikes,
        events,
        msgs: mean_of(completed.iter().map(|r| r.messages_per_batch())),
        max_rel_diff,
        min_cosine,
        seeds: seeds.join(" "),
        dirs: g
            .counted()
            .map(|r| r.dir.display().to_string())
            .collect::<Vec<_>>()
            .join(";"),
    }
}

const CSV_HEADER: [&str; 21] = [
    "group",
    "algorithm",
    "network",
    "data",
    "status",
    "runs",
    "completed",
    "test_accuracy_mean",
    "test_accuracy_std",
    "test_accuracies",
    "epochs",
    "seconds_per_epoch",
    "train_multiply_adds_per_sample",
    "inference_multiply_adds_per_sample",
    "spikes_per_sample",
    "synaptic_events_per_sample",
    "messages_per_batch",
    "max_rel_diff",
    "min_cosine",
    "seeds",
    "dirs",
];

fn opt_num(v: Option<f64>) -> String {
    v.map_or(String::new(), num)
}

fn csv_row(r: &Row) -> Vec<String> {
    let finite = |v: f64| if v.is_finite() { num(v) } else { String::new() };
    vec![
        r.label.clone(),
        r.algorithm.clone(),
        r.network.clone(),
        r.data.clone(),
        r.status.clone(),
        r.n_runs.to_string(),
        r.n_completed.to_string(),
        finite(r.acc_mean),
        finite(r.acc_std),
        r.acc.iter().map(|&a| num(a)).collect::<Vec<_>>().join(" "),
        r.epochs.clone(),
        opt_num(r.sec_per_epoch),
        opt_num(r.train_macs),
        opt_num(r.infer_macs),
        opt_num(r.spikes),
        opt_num(r.events),
        opt_num(r.msgs),
        opt_num(r.max_rel_diff),
        opt_num(r.min_cosine),
        r.seeds.clone(),
        r.dirs.clone(),
    ]
}

/// `98.12 ± 0.05 % (n 3)`; status instead of a number when no run completed.
pub fn fmt_accuracy(mean: f64, std: f64, n: usize, status: &str) -> String {
    if n == 0 || !mean.is_finite() {
        return format!("— ({status})");
    }
    if std.is_finite() {
        format!("{:.2} ± {:.2} % (n {n})", 100.0 * mean, 100.0 * std)
    } else {
        format!("{:.2} % (n {n})", 100.0 * mean)
    }
}

/// Three significant digits, scientific past 1e5: `2.69e5`, `0.0123`.
fn fmt_sig(v: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    if v.abs() >= 1e5 || v.abs() < 1e-3 {
        let s = format!("{v:.2e}");
        return s.replace("e0", "").replace(".00e", "e");
    }
    let digits = (2 - v.abs().log10().floor() as i32).max(0) as usize;
    format!("{v:.digits$}")
}

fn fmt_opt(v: Option<f64>) -> String {
    v.map_or("—".into(), fmt_sig)
}

fn fmt_rel_diff(v: Option<f64>) -> String {
    match v {
        None => "—".into(),
        Some(0.0) => "0 (exact)".into(),
        Some(v) => format!("{v:.2e}"),
    }
}

fn fmt_cosine(v: Option<f64>) -> String {
    match v {
        None => "—".into(),
        Some(c) if c >= 1.0 => "1".into(),
        Some(c) if c > 0.9999 => format!("1 − {:.1e}", 1.0 - c),
        Some(c) => format!("{c:.6}"),
    }
}

fn md_escape(s: &str) -> String {
    s.replace('|', "\\|")
}

fn md_table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut s = format!(
        "| {} |\n|{}|\n",
        header.join(" | "),
        vec!["---"; header.len()].join("|")
    );
    for r in rows {
        s.push_str(&format!(
            "| {} |\n",
            r.iter()
                .map(|c| md_escape(c))
                .collect::<Vec<_>>()
                .join(" | ")
        ));
    }
    s
}

fn work_text(r: &Row) -> String {
    match (r.events, r.spikes) {
        (Some(e), Some(s)) => format!("{} syn. events ({} spikes)", fmt_sig(e), fmt_sig(s)),
        (Some(e), None) => format!("{} syn. events", fmt_sig(e)),
        _ => r
            .infer_macs
            .map_or("—".into(), |m| format!("{} MACs", fmt_sig(m))),
    }
}

/// The figures and RQ sections are built from these views of the groups.
struct Ctx<'a> {
    groups: &'a [Group],
    rows: &'a [Row],
}

impl Ctx<'_> {
    fn scenario(&self, i: usize) -> Option<&toml::Value> {
        self.groups[i].scenario.as_ref()
    }

    fn name(&self, i: usize) -> String {
        self.scenario(i)
            .and_then(|s| toml_str(s, "name"))
            .unwrap_or_else(|| self.groups[i].label.clone())
    }

    fn kind(&self, i: usize) -> String {
        self.scenario(i)
            .and_then(|s| toml_str(s, "algorithm.kind"))
            .unwrap_or_default()
    }

    fn driver(&self, i: usize) -> String {
        self.scenario(i)
            .and_then(|s| toml_str(s, "runtime.driver"))
            .unwrap_or_else(|| "lockstep".into())
    }

    fn f(&self, i: usize, key: &str) -> Option<f64> {
        self.scenario(i).and_then(|s| toml_f64(s, key))
    }

    /// Group `i`'s scenario without `keys`, as text: groups with equal
    /// texts differ only in those keys.
    fn without(&self, i: usize, keys: &[&str]) -> Option<String> {
        let mut s = self.scenario(i)?.clone();
        for k in keys {
            remove_key(&mut s, k);
        }
        toml::to_string(&s).ok()
    }
}

/// Points `(x, mean, std)` of a curve averaged over seeds.
type Curve = Vec<(f64, f64, f64)>;

/// `(x, mean, std)` over the group's runs of a per-run curve, at the x values
/// the runs share (each x averaged over the runs that have it).
fn mean_curve(curves: &[Vec<(f64, f64)>]) -> Vec<(f64, f64, f64)> {
    let mut at: BTreeMap<u64, (f64, Vec<f64>)> = BTreeMap::new();
    for c in curves {
        for &(x, y) in c {
            if x.is_finite() && y.is_finite() {
                // Exact x values (steps, epochs, times) shared by the runs.
                let key = (x + 0.0).to_bits();
                at.entry(key).or_insert((x, Vec::new())).1.push(y);
            }
        }
    }
    let mut v: Vec<(f64, f64, f64)> = at
        .into_values()
        .map(|(x, ys)| {
            let (m, s) = mean_std(&ys);
            (x, m, s)
        })
        .collect();
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
    v
}

/// Accuracy per epoch of one run (x = fractional epoch).
fn accuracy_curve(run: &Run) -> Vec<(f64, f64)> {
    let steps_per_epoch = match (run.summary_f64("steps"), run.summary_f64("epochs")) {
        (Some(s), Some(e)) if e > 0.0 && run.completed() => Some(s / e),
        _ => None,
    };
    let eval_every = run
        .scenario
        .as_ref()
        .and_then(|s| toml_f64(s, "output.eval_every"))
        .unwrap_or(0.0);
    run.metrics
        .iter()
        .map(|&(epoch, step, acc)| match steps_per_epoch {
            Some(spe) if eval_every > 0.0 => (step / spe, acc),
            _ => (epoch, acc),
        })
        .collect()
}

fn panel(title: &str, x: &str, y: &str, series: Vec<Series>, log_y: bool) -> Panel {
    Panel {
        title: title.into(),
        x_label: x.into(),
        y_label: y.into(),
        series,
        log_y,
    }
}

/// Accuracy-vs-epoch curves of every group (mean ± std over seeds). Groups
/// of scenarios with few variants share the first panels; a scenario with
/// many variants (a sweep) gets panels of its own; at most ten series per
/// panel.
fn accuracy_figure(ctx: &Ctx) -> Result<Option<String>> {
    const PER_PANEL: usize = 10;
    let mut families: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for i in 0..ctx.groups.len() {
        families.entry(ctx.name(i)).or_default().push(i);
    }
    let mut shared = Vec::new();
    let mut own: Vec<(String, Vec<usize>)> = Vec::new();
    for i in 0..ctx.groups.len() {
        let family = &families[&ctx.name(i)];
        if family.len() <= 3 {
            shared.push(i);
        } else if family[0] == i {
            own.push((ctx.name(i), family.clone()));
        }
    }
    let series_of = |i: usize| -> Option<Series> {
        let curves: Vec<Vec<(f64, f64)>> = ctx.groups[i]
            .counted()
            .filter(|r| r.completed())
            .map(accuracy_curve)
            .filter(|c| !c.is_empty())
            .collect();
        let m = mean_curve(&curves);
        (!m.is_empty()).then(|| {
            let pct = m
                .iter()
                .map(|&(x, a, s)| (x, 100.0 * a, 100.0 * s))
                .collect();
            Series::mean_std(ctx.groups[i].label.clone(), pct)
        })
    };
    let mut panels = Vec::new();
    let mut add = |title: String, members: &[usize]| {
        let series: Vec<Series> = members.iter().filter_map(|&i| series_of(i)).collect();
        let chunks = series.len().div_ceil(PER_PANEL);
        let mut it = series.into_iter();
        for c in 0..chunks {
            let part: Vec<Series> = it.by_ref().take(PER_PANEL).collect();
            let t = if chunks > 1 {
                format!("{title} ({} of {chunks})", c + 1)
            } else {
                title.clone()
            };
            panels.push(panel(
                &t,
                "epoch",
                "test accuracy (%), mean ± std over seeds",
                part,
                false,
            ));
        }
    };
    add("Test accuracy".into(), &shared);
    for (name, members) in &own {
        add(format!("Test accuracy: {name}"), members);
    }
    if panels.is_empty() {
        return Ok(None);
    }
    let with: Vec<(&Panel, Axes)> = panels.iter().map(|p| (p, Axes::default())).collect();
    Ok(Some(crate::metrics::plot::grid(&with, 2)?))
}

/// Writes the report of the runs under `inputs` into `opts.out_dir`.
pub fn report(inputs: &[PathBuf], opts: &ReportOptions) -> Result<Report> {
    // The output directory is skipped if it lies among the inputs; it is
    // created only once there is something to report.
    let target = Target::of(&opts.out_dir);
    let skip = target
        .assets
        .canonicalize()
        .unwrap_or_else(|_| target.assets.clone());
    let runs = collect_runs(inputs, &skip)?;
    target.check_md(opts.force)?;
    let rec = Recorder::create(&target.assets, opts.force)?;
    let suites = find_suites(inputs, &skip);
    let n_runs = runs.len();
    let groups = group_runs(runs);
    let rows: Vec<Row> = groups.iter().map(row).collect();
    let ctx = Ctx {
        groups: &groups,
        rows: &rows,
    };

    let mut table = Table::new(&CSV_HEADER);
    for r in &rows {
        table.push(csv_row(r));
    }
    rec.write_table("report.csv", &table)?;
    // Files written under the assets directory are linked from the markdown.

    let command = opts.command.clone().unwrap_or_else(|| {
        std::iter::once("pcsim report".to_string())
            .chain(
                inputs
                    .iter()
                    .map(|p| super::provenance::shell_quote(&p.display().to_string())),
            )
            .chain([
                "--out".into(),
                super::provenance::shell_quote(&opts.out_dir.display().to_string()),
            ])
            .collect::<Vec<_>>()
            .join(" ")
    });
    let mut md = format!("{REPORT_TITLE}\n\n");
    md.push_str(&provenance_text(&suites, &command));
    md.push_str(&format!(
        "{n_runs} run(s) in {} group(s). \
         A group is the set of runs whose scenarios differ only in their seeds; accuracy is the \
         mean ± sample standard deviation over the group's completed runs (n shown). \
         \"—\" marks a quantity the runs did not record.\n\n",
        groups.len()
    ));

    md.push_str("## Results\n\n");
    let main_rows: Vec<Vec<String>> = rows
        .iter()
        .enumerate()
        .map(|(i, r)| {
            vec![
                (i + 1).to_string(),
                r.label.clone(),
                r.algorithm.clone(),
                r.network.clone(),
                r.data.clone(),
                r.status.clone(),
                fmt_accuracy(r.acc_mean, r.acc_std, r.n_completed, &r.status),
                r.epochs.clone(),
                fmt_opt(r.sec_per_epoch),
                fmt_opt(r.train_macs),
                work_text(r),
                fmt_opt(r.msgs),
                fmt_rel_diff(r.max_rel_diff),
                fmt_cosine(r.min_cosine),
            ]
        })
        .collect();
    md.push_str(&md_table(
        &[
            "#",
            "run",
            "algorithm",
            "network",
            "data (train/test)",
            "status",
            "test accuracy",
            "epochs",
            "s / epoch",
            "train MACs / sample",
            "inference work / sample",
            "messages / batch",
            "max rel. diff vs BP",
            "min cosine vs BP",
        ],
        &main_rows,
    ));
    md.push_str(
        "\nMACs: multiply-adds of the weight products per sample as pcsim computes them \
         (BP 3P − P₁, IL 2P + 2T(P − P₁), Z-IL the same at T = L − 2; P = Σ n_l n_{l−1}, P₁ the input layer's). \
         Spiking rows show synaptic events (spikes × fan-out) and spikes per test image instead. \
         Messages per batch: actor runtimes only (a message carries a batch). \
         Deviation from BP: worst over the group's runs and recorded steps (`output.equivalence_every`).\n\n",
    );

    let mut doc = Doc {
        md,
        rec: &rec,
        link: &target.link,
        figures: Vec::new(),
    };
    if let Some(fig) = accuracy_figure(&ctx)? {
        doc.figure(
            "accuracy.svg",
            fig,
            "Test accuracy per epoch, mean ± std over seeds",
        )?;
    }
    rq1(&ctx, &mut doc)?;
    rq2(&ctx, &mut doc)?;
    rq3(&ctx, &mut doc)?;
    let Doc {
        mut md, figures, ..
    } = doc;
    md.push_str("## Runs\n\n");
    let run_rows: Vec<Vec<String>> = groups
        .iter()
        .enumerate()
        .flat_map(|(i, g)| {
            g.runs.iter().map(move |r| {
                vec![
                    (i + 1).to_string(),
                    format!("`{}`", r.dir.display()),
                    r.seed().map_or("?".into(), |s| s.to_string()),
                    r.status.clone(),
                    r.accuracy()
                        .map_or("—".into(), |a| format!("{:.2} %", 100.0 * a)),
                    match &r.duplicate_of {
                        Some(d) => format!(
                            "same scenario and seed as `{}`: not counted twice",
                            d.display()
                        ),
                        None => r.note.clone().unwrap_or_default(),
                    },
                ]
            })
        })
        .collect();
    md.push_str(&md_table(
        &["#", "directory", "seed", "status", "test accuracy", "note"],
        &run_rows,
    ));
    crate::metrics::write_atomic(&target.md, md.as_bytes())?;
    Ok(Report {
        table,
        markdown: md,
        markdown_file: target.md.clone(),
        assets_dir: target.assets.clone(),
        runs: n_runs,
        groups: groups.len(),
        figures,
    })
}

/// The `suite*.json` records of the suites under (or above) the inputs:
/// `(file, contents)`.
fn find_suites(inputs: &[PathBuf], skip: &Path) -> Vec<(PathBuf, Json)> {
    fn records(dir: &Path, out: &mut Vec<(PathBuf, Json)>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        let mut files: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name().is_some_and(|n| {
                    let n = n.to_string_lossy();
                    n.starts_with("suite") && n.ends_with(".json")
                })
            })
            .collect();
        files.sort();
        for f in files {
            if out.iter().any(|(g, _)| *g == f) {
                continue;
            }
            if let Some(v) = std::fs::read_to_string(&f)
                .ok()
                .and_then(|t| serde_json::from_str::<Json>(&t).ok())
                .filter(|v| v["invocations"].is_array())
            {
                out.push((f, v));
            }
        }
    }
    fn walk(dir: &Path, depth: usize, skip: &Path, out: &mut Vec<(PathBuf, Json)>) {
        if dir.canonicalize().ok().as_deref() == Some(skip) || is_run_dir(dir) {
            return;
        }
        records(dir, out);
        if depth < 2 {
            for d in subdirs(dir) {
                walk(&d, depth + 1, skip, out);
            }
        }
    }
    let mut out = Vec::new();
    for input in inputs {
        // A run or entry directory inside a suite: the suite's record.
        for up in input.ancestors().skip(1).take(3) {
            records(up, &mut out);
        }
        walk(input, 0, skip, &mut out);
    }
    out
}

/// The header lines naming the commands, pcsim versions and machines.
fn provenance_text(suites: &[(PathBuf, Json)], command: &str) -> String {
    let mut md = format!(
        "**Report:** `{command}` — pcsim {}, {}.\n\n",
        super::provenance::version(),
        super::provenance::now()
    );
    if suites.is_empty() {
        md.push_str(
            "**Runs:** not written by `pcsim suite`, so the commands, pcsim version and \
             machine that produced them are not recorded.\n\n",
        );
        return md;
    }
    md.push_str("**Runs:**\n\n");
    for (file, v) in suites {
        let text = |v: &Json, k: &str| v[k].as_str().unwrap_or("?").to_string();
        md.push_str(&format!(
            "* suite `{}` ({} runs; record `{}`):\n",
            text(v, "suite"),
            v["runs"].as_u64().map_or("?".into(), |n| n.to_string()),
            file.display()
        ));
        let invocations = v["invocations"].as_array().cloned().unwrap_or_default();
        let idle = invocations
            .iter()
            .filter(|i| i["ran"].as_u64() == Some(0))
            .count();
        for i in invocations.iter().filter(|i| i["ran"].as_u64() != Some(0)) {
            let ending = match (i["finished"].as_str(), i["wall_seconds"].as_f64()) {
                (Some(end), Some(secs)) => format!(
                    "to {end} ({secs:.0} s): {} ran, {} skipped as finished, {} not completed",
                    i["ran"], i["skipped"], i["not_completed"]
                ),
                _ => "— it did not finish (killed?)".to_string(),
            };
            md.push_str(&format!(
                "  * `{}` — pcsim {}, on {}, {} in parallel, shard {}/{}; {} {ending}\n",
                text(i, "command"),
                text(i, "pcsim"),
                text(i, "machine_text"),
                i["jobs"],
                i["shard"][0],
                i["shard"][1],
                text(i, "started"),
            ));
        }
        if idle > 0 {
            md.push_str(&format!(
                "  * and {idle} later invocation(s) that found every run finished\n"
            ));
        }
    }
    md.push('\n');
    md
}

/// The markdown being written and the figures beside it.
struct Doc<'a> {
    md: String,
    rec: &'a Recorder,
    /// Prefix of the figures' links (`Target::link`).
    link: &'a str,
    figures: Vec<String>,
}

impl Doc<'_> {
    fn push(&mut self, text: &str) {
        self.md.push_str(text);
    }

    /// Draws `panels` on a grid of `columns` into `name` (see `figure`).
    fn panels(
        &mut self,
        name: &str,
        panels: &[Panel],
        log_x: bool,
        columns: usize,
        caption: &str,
    ) -> Result<()> {
        let with: Vec<(&Panel, Axes)> = panels.iter().map(|p| (p, Axes { log_x })).collect();
        self.figure(name, crate::metrics::plot::grid(&with, columns)?, caption)
    }

    /// Writes `name` and shows it at this point of the report.
    fn figure(&mut self, name: &str, svg: String, caption: &str) -> Result<()> {
        self.rec.write_svg(name, svg)?;
        self.figures.push(name.to_string());
        self.md
            .push_str(&format!("![{caption}]({}{name})\n\n", self.link));
        Ok(())
    }
}

/// RQ1: spiking rows against BP, accuracy against presentation time.
fn rq1(ctx: &Ctx, doc: &mut Doc) -> Result<()> {
    doc.push(
        "## RQ1: spiking networks against backprop\n\n\
         Does PC with spiking neurons learn, and how well against BP? Spiking rows (shadow-trained \
         LIF networks, spiking PC) next to the BP rows of the same network.\n\n",
    );
    let spiking: Vec<usize> = (0..ctx.rows.len())
        .filter(|&i| {
            ctx.rows[i].events.is_some()
                || !ctx.groups[i].counted().all(|r| r.presentation.is_empty())
        })
        .collect();
    if spiking.is_empty() {
        doc.push(
            "**Missing:** no spiking runs (a scenario with an `[snn]` table, or spiking PC runs \
             reporting spike counts).\n\n",
        );
        return Ok(());
    }
    let layers = |i: usize| ctx.scenario(i).map(layers_of).unwrap_or_default();
    // A BP row trained as long as the spiking row, when the inputs have
    // one: a 2-epoch BP row says little about a 10-epoch spiking one.
    let bp_of = |i: usize| {
        let bp: Vec<usize> = (0..ctx.rows.len())
            .filter(|&j| {
                ctx.kind(j) == "bp"
                    && ctx.rows[j].events.is_none()
                    && ctx.scenario(j).is_some_and(|s| s.get("snn").is_none())
                    && layers(j) == layers(i)
            })
            .collect();
        bp.iter()
            .copied()
            .find(|&j| ctx.rows[j].epochs == ctx.rows[i].epochs)
            .or_else(|| bp.first().copied())
    };
    let rows: Vec<Vec<String>> = spiking
        .iter()
        .map(|&i| {
            let r = &ctx.rows[i];
            let rate: Vec<f64> = ctx.groups[i]
                .counted()
                .filter(|r| r.completed())
                .filter_map(|r| r.summary_f64("rate_test_accuracy"))
                .collect();
            let (rm, rs) = mean_std(&rate);
            vec![
                r.label.clone(),
                fmt_accuracy(r.acc_mean, r.acc_std, r.n_completed, &r.status),
                fmt_accuracy(rm, rs, rate.len(), "not recorded"),
                fmt_opt(r.spikes),
                fmt_opt(r.events),
                r.infer_macs.map_or("—".into(), fmt_sig),
                match bp_of(i) {
                    Some(j) => {
                        let b = &ctx.rows[j];
                        format!(
                            "{} ({})",
                            fmt_accuracy(b.acc_mean, b.acc_std, b.n_completed, &b.status),
                            b.label
                        )
                    }
                    None => "missing: no BP run of this network".into(),
                },
            ]
        })
        .collect();
    doc.push(&md_table(
        &[
            "run",
            "spiking accuracy",
            "rate-network accuracy",
            "spikes / image",
            "synaptic events / image",
            "graded MACs / image",
            "BP, same network",
        ],
        &rows,
    ));
    doc.push("\n");
    if !(0..ctx.rows.len()).any(|i| ctx.kind(i).contains("spiking")) {
        doc.push("**Missing:** spiking PC runs (none among the inputs).\n\n");
    }
    let mut series = Vec::new();
    let mut bp_levels = BTreeMap::new();
    let mut t_range = (f64::INFINITY, f64::NEG_INFINITY);
    for &i in &spiking {
        let curves: Vec<Vec<(f64, f64)>> = ctx.groups[i]
            .counted()
            .filter(|r| r.completed())
            .map(|r| r.presentation.clone())
            .filter(|c| !c.is_empty())
            .collect();
        let m = mean_curve(&curves);
        for p in &m {
            t_range = (t_range.0.min(p.0), t_range.1.max(p.0));
        }
        if !m.is_empty() {
            series.push(Series::mean_std(
                ctx.rows[i].label.clone(),
                m.iter()
                    .map(|&(t, a, s)| (t, 100.0 * a, 100.0 * s))
                    .collect(),
            ));
            // Only rows with a curve get their BP level drawn beside it.
            if let Some(j) = bp_of(i) {
                bp_levels.insert(j, ctx.rows[j].acc_mean);
            }
        }
    }
    if series.is_empty() {
        return Ok(());
    }
    for (j, acc) in bp_levels {
        if acc.is_finite() {
            series.push(
                Series::new(
                    format!("BP (graded): {}", ctx.rows[j].label),
                    vec![(t_range.0, 100.0 * acc), (t_range.1, 100.0 * acc)],
                )
                .dashed(),
            );
        }
    }
    let p = panel(
        "Spiking accuracy vs presentation time",
        "presentation time per image (s)",
        "test accuracy (%)",
        series,
        false,
    );
    let fig = crate::metrics::plot::grid(&[(&p, Axes { log_x: true })], 1)?;
    doc.figure("rq1_presentation.svg", fig, "Spiking accuracy against presentation time (mean ± std over seeds); dashed: BP on the same network")
}

const RQ2_BETAS: [f64; 3] = [1.0, 0.1, 0.01];
const RQ2_STEPS: [usize; 3] = [5, 20, 100];

/// Per-layer `(step, mean rel_diff, mean cosine)` over the group's runs.
fn layer_curves(g: &Group) -> BTreeMap<String, (Curve, Curve)> {
    let layers: BTreeSet<String> = g
        .counted()
        .flat_map(|r| r.equivalence.iter().map(|e| e.1.clone()))
        .collect();
    layers
        .into_iter()
        .map(|layer| {
            let per_run = |pick: fn(&(f64, String, f64, f64)) -> f64| -> Vec<(f64, f64, f64)> {
                let curves: Vec<Vec<(f64, f64)>> = g
                    .counted()
                    .map(|r| {
                        r.equivalence
                            .iter()
                            .filter(|e| e.1 == layer)
                            .map(|e| (e.0, pick(e)))
                            .collect()
                    })
                    .collect();
                mean_curve(&curves)
            };
            let rd = per_run(|e| e.2);
            let cos = per_run(|e| e.3);
            (layer.clone(), (rd, cos))
        })
        .collect()
}

/// RQ2: IL's update against BP's for β × T, next to the accuracy reached.
fn rq2(ctx: &Ctx, doc: &mut Doc) -> Result<()> {
    doc.push(
        "## RQ2: inference-learning updates against backprop\n\n\
         How close is IL's weight update to BP's, per layer over training, for output nudging β \
         and inference steps T, and what accuracy does it reach? (Z-IL is exact by construction; \
         its rows above show the deviation it actually had.)\n\n",
    );
    let il: Vec<usize> = (0..ctx.rows.len())
        .filter(|&i| {
            // Synchronous IL with exact feedback; asynchrony and feedback
            // alignment are RQ3's.
            ctx.kind(i) == "il"
                && ctx.driver(i) == "lockstep"
                && ctx
                    .scenario(i)
                    .and_then(|s| toml_str(s, "algorithm.inference.feedback"))
                    .as_deref()
                    != Some("random")
                && ctx.groups[i].counted().any(|r| !r.equivalence.is_empty())
        })
        .collect();
    let present: BTreeSet<(u64, usize)> = il
        .iter()
        .filter_map(|&i| {
            Some((
                ctx.f(i, "algorithm.inference.beta")?.to_bits(),
                ctx.f(i, "algorithm.inference.steps")? as usize,
            ))
        })
        .collect();
    let missing: Vec<String> = RQ2_BETAS
        .iter()
        .flat_map(|&b| RQ2_STEPS.iter().map(move |&t| (b, t)))
        .filter(|&(b, t)| !present.contains(&(b.to_bits(), t)))
        .map(|(b, t)| format!("β {b} T {t}"))
        .collect();
    if il.is_empty() {
        doc.push(
            "**Missing:** no synchronous IL runs with the update compared against BP's (run IL \
             with `output.equivalence_every > 0`).\n\n",
        );
        return Ok(());
    }
    if !missing.is_empty() {
        doc.push(&format!(
            "**Missing** from the β ∈ {{1, 0.1, 0.01}} × T ∈ {{5, 20, 100}} grid: {}.\n\n",
            missing.join(", ")
        ));
    }
    let mut rows = Vec::new();
    let mut layer_panels = Vec::new();
    // (series label) → points (T, value, std) for the summary figure.
    let mut by_beta: BTreeMap<String, [Curve; 3]> = BTreeMap::new();
    let mut curves_by_config: Vec<Option<String>> = Vec::new();
    for &i in &il {
        let r = &ctx.rows[i];
        let curves = layer_curves(&ctx.groups[i]);
        let mean_over =
            |v: &[(f64, f64, f64)]| mean_std(&v.iter().map(|p| p.1).collect::<Vec<_>>()).0;
        let per_layer: Vec<String> = curves
            .iter()
            .map(|(l, (rd, cos))| {
                format!(
                    "{l}: {:.2e} / {}",
                    mean_over(rd),
                    fmt_cosine(Some(mean_over(cos)))
                )
            })
            .collect();
        let beta = ctx.f(i, "algorithm.inference.beta").unwrap_or(f64::NAN);
        let steps = ctx.f(i, "algorithm.inference.steps").unwrap_or(f64::NAN);
        rows.push(vec![
            r.label.clone(),
            format!("{beta}"),
            format!("{steps}"),
            fmt_accuracy(r.acc_mean, r.acc_std, r.n_completed, &r.status),
            per_layer.join("; "),
            fmt_rel_diff(r.max_rel_diff),
            fmt_cosine(r.min_cosine),
        ]);
        // Per-run means over training and layers, then mean ± std over seeds.
        let run_means = |pick: fn(&(f64, String, f64, f64)) -> f64| -> Vec<f64> {
            ctx.groups[i]
                .counted()
                .filter(|r| !r.equivalence.is_empty())
                .map(|r| mean_std(&r.equivalence.iter().map(pick).collect::<Vec<_>>()).0)
                .collect()
        };
        let (rd_m, rd_s) = mean_std(&run_means(|e| e.2));
        let (cos_m, cos_s) = mean_std(&run_means(|e| e.3));
        // One curve over T per configuration that differs in more than T.
        let without_t = ctx.without(i, &["algorithm.inference.steps"]);
        let series_index = match curves_by_config.iter().position(|c| *c == without_t) {
            Some(k) => k,
            None => {
                curves_by_config.push(without_t);
                curves_by_config.len() - 1
            }
        };
        let fa = if r.algorithm.contains(" FA") {
            " FA"
        } else {
            ""
        };
        let name = format!("{:02} β={beta}{fa} ({})", series_index, ctx.name(i));
        let entry = by_beta.entry(name).or_default();
        entry[0].push((steps, rd_m, rd_s));
        entry[1].push((steps, cos_m, cos_s));
        if r.acc_mean.is_finite() {
            entry[2].push((steps, 100.0 * r.acc_mean, 100.0 * r.acc_std));
        }
        layer_panels.push(panel(
            &r.label,
            "training step",
            "‖ΔW − ΔW_bp‖ / ‖ΔW_bp‖",
            curves
                .into_iter()
                .map(|(l, (rd, _))| Series::mean_std(l, rd))
                .collect(),
            true,
        ));
    }
    doc.push(&md_table(
        &[
            "run",
            "β",
            "T",
            "test accuracy",
            "per layer: mean rel. diff / mean cosine over training",
            "max rel. diff",
            "min cosine",
        ],
        &rows,
    ));
    doc.push("\n");
    doc.panels(
        "rq2_layers.svg",
        &layer_panels,
        false,
        3,
        "Relative difference of IL's update from BP's per layer over training, for each β and T",
    )?;
    let mut panels = Vec::new();
    for (k, (title, y, log_y)) in [
        ("Update deviation vs T", "mean ‖ΔW − ΔW_bp‖ / ‖ΔW_bp‖", true),
        ("Update alignment vs T", "mean cosine(ΔW, ΔW_bp)", false),
        ("Accuracy vs T", "test accuracy (%)", false),
    ]
    .into_iter()
    .enumerate()
    {
        let series = by_beta
            .iter()
            .map(|(name, v)| {
                let mut pts = v[k].clone();
                pts.sort_by(|a, b| a.0.total_cmp(&b.0));
                // Drop the ordering prefix ("00 ") from the legend.
                Series::mean_std(name.split_once(' ').map_or(name.as_str(), |n| n.1), pts)
            })
            .collect();
        panels.push(panel(title, "inference steps T", y, series, log_y));
    }
    doc.panels(
        "rq2_beta_T.svg",
        &panels,
        true,
        3,
        "IL against BP over the β × T grid: deviation, alignment, accuracy (mean ± std over seeds)",
    )?;
    Ok(())
}

/// Keys of the timing-noise model, in the order the figures use them.
const NOISE_KEYS: [(&str, &str); 3] = [
    ("runtime.jitter", "clock jitter (time units)"),
    ("runtime.delay_down.mean", "mean error delay (time units)"),
    (
        "runtime.delay_up.mean",
        "mean prediction delay (time units)",
    ),
];

/// RQ3: timing noise, weight transport, energy proxy, runtime speed-up.
fn rq3(ctx: &Ctx, doc: &mut Doc) -> Result<()> {
    doc.push("## RQ3: what deep learning gains from biologically plausible learning\n\n");

    // (a) Timing noise.
    doc.push("### Accuracy and equivalence under timing noise\n\n");
    let asyn: Vec<usize> = (0..ctx.rows.len())
        .filter(|&i| ctx.driver(i) != "lockstep" && matches!(ctx.kind(i).as_str(), "il" | "zil"))
        .collect();
    if asyn.is_empty() {
        doc.push(
            "**Missing:** no asynchronous IL / Z-IL runs (`runtime.driver = \"virtual\"` or `\"wall\"`).\n\n",
        );
    } else {
        let mut want = vec![("zil", "event"), ("zil", "clock")];
        want.retain(|(k, t)| {
            !asyn.iter().any(|&i| {
                ctx.kind(i) == *k
                    && ctx
                        .scenario(i)
                        .and_then(|s| toml_str(s, "runtime.trigger"))
                        .as_deref()
                        == Some(*t)
            })
        });
        let mut missing: Vec<String> = want
            .iter()
            .map(|(k, t)| format!("{k} with trigger = \"{t}\""))
            .collect();
        if !asyn.iter().any(|&i| ctx.kind(i) == "il") {
            missing.push("async IL".into());
        }
        if !missing.is_empty() {
            doc.push(&format!("**Missing:** {}.\n\n", missing.join(", ")));
        }
        let rows: Vec<Vec<String>> = asyn
            .iter()
            .map(|&i| {
                let r = &ctx.rows[i];
                let mut v = vec![r.label.clone(), r.algorithm.clone()];
                v.extend(
                    NOISE_KEYS
                        .iter()
                        .map(|(k, _)| ctx.f(i, k).map_or("—".into(), |x| format!("{x}"))),
                );
                v.extend([
                    fmt_accuracy(r.acc_mean, r.acc_std, r.n_completed, &r.status),
                    fmt_rel_diff(r.max_rel_diff),
                    fmt_cosine(r.min_cosine),
                ]);
                v
            })
            .collect();
        doc.push(&md_table(
            &[
                "run",
                "algorithm",
                "jitter",
                "error delay",
                "prediction delay",
                "test accuracy",
                "max rel. diff vs BP",
                "min cosine",
            ],
            &rows,
        ));
        doc.push("\n");
        let mut panels = Vec::new();
        for (xk, xlabel) in NOISE_KEYS {
            // A curve is a family of groups that differ only in `xk`.
            let family_key = |i: usize| ctx.without(i, &[xk]);
            let mut families: BTreeMap<String, Vec<usize>> = BTreeMap::new();
            for &i in &asyn {
                if let (Some(k), Some(_)) = (family_key(i), ctx.f(i, xk)) {
                    families.entry(k).or_default().push(i);
                }
            }
            families.retain(|_, members| {
                members
                    .iter()
                    .filter_map(|&i| ctx.f(i, xk))
                    .map(f64::to_bits)
                    .collect::<BTreeSet<_>>()
                    .len()
                    > 1
            });
            if families.is_empty() {
                continue;
            }
            let firsts: Vec<usize> = families.values().map(|m| m[0]).collect();
            let names: Vec<String> = firsts
                .iter()
                .map(|&i| {
                    let mut name = format!("{}: {}", ctx.name(i), ctx.rows[i].algorithm);
                    for (ok, _) in NOISE_KEYS.iter().filter(|(k, _)| *k != xk) {
                        let values: BTreeSet<u64> = firsts
                            .iter()
                            .filter_map(|&j| ctx.f(j, ok))
                            .map(f64::to_bits)
                            .collect();
                        if values.len() > 1 {
                            name.push_str(&format!(
                                ", {}={}",
                                short_key(ok),
                                ctx.f(i, ok).map_or("—".into(), |v| format!("{v}"))
                            ));
                        }
                    }
                    name
                })
                .collect();
            for (ylabel, log_y, accuracy) in [
                ("test accuracy (%)", false, true),
                ("max ‖ΔW − ΔW_bp‖ / ‖ΔW_bp‖", true, false),
            ] {
                let mut series = Vec::new();
                for (members, name) in families.values().zip(&names) {
                    let mut pts: Vec<(f64, f64, f64)> = members
                        .iter()
                        .filter_map(|&i| {
                            let x = ctx.f(i, xk)?;
                            let r = &ctx.rows[i];
                            if accuracy {
                                r.acc_mean.is_finite().then_some((
                                    x,
                                    100.0 * r.acc_mean,
                                    100.0 * r.acc_std,
                                ))
                            } else {
                                r.max_rel_diff.map(|d| (x, d, f64::NAN))
                            }
                        })
                        .collect();
                    pts.sort_by(|a, b| a.0.total_cmp(&b.0));
                    if !pts.is_empty() {
                        series.push(Series::mean_std(name.clone(), pts));
                    }
                }
                if series.is_empty() {
                    continue;
                }
                panels.push(panel(
                    &format!(
                        "{} vs {}",
                        if accuracy {
                            "Accuracy"
                        } else {
                            "Deviation from BP"
                        },
                        short_key(xk)
                    ),
                    xlabel,
                    ylabel,
                    series,
                    log_y,
                ));
            }
        }
        if panels.is_empty() {
            doc.push(
                "(No timing-noise key takes two or more values among these runs, so there is no curve to draw.)\n\n",
            );
        } else {
            doc.panels(
                "rq3_timing.svg",
                &panels,
                false,
                2,
                "Accuracy and deviation from BP against timing noise (mean ± std over seeds)",
            )?;
        }
    }

    // (b) Weight transport.
    doc.push("### The cost of dropping weight transport\n\n");
    let fa: Vec<usize> = (0..ctx.rows.len())
        .filter(|&i| {
            ctx.scenario(i)
                .and_then(|s| toml_str(s, "algorithm.inference.feedback"))
                .as_deref()
                == Some("random")
                && ctx.kind(i) != "bp"
        })
        .collect();
    if fa.is_empty() {
        doc.push(
            "**Missing:** no feedback-alignment runs (`algorithm.inference.feedback = \"random\"`).\n\n",
        );
    } else {
        let partner_key = |i: usize| ctx.without(i, &["name", "algorithm.inference.feedback"]);
        let rows: Vec<Vec<String>> = fa
            .iter()
            .map(|&i| {
                let key = partner_key(i);
                let partner = (0..ctx.rows.len()).find(|&j| {
                    j != i && !fa.contains(&j) && key.is_some() && partner_key(j) == key
                });
                let r = &ctx.rows[i];
                let (tp, diff) = match partner {
                    Some(j) => {
                        let t = &ctx.rows[j];
                        (
                            format!(
                                "{} ({})",
                                fmt_accuracy(t.acc_mean, t.acc_std, t.n_completed, &t.status),
                                t.label
                            ),
                            if r.acc_mean.is_finite() && t.acc_mean.is_finite() {
                                format!("{:+.2} points", 100.0 * (r.acc_mean - t.acc_mean))
                            } else {
                                "—".into()
                            },
                        )
                    }
                    None => (
                        "missing: no run that differs only in feedback".into(),
                        "—".into(),
                    ),
                };
                vec![
                    r.label.clone(),
                    fmt_accuracy(r.acc_mean, r.acc_std, r.n_completed, &r.status),
                    tp,
                    diff,
                ]
            })
            .collect();
        doc.push(&md_table(
            &[
                "feedback alignment run",
                "accuracy (random B)",
                "accuracy (Wᵀ)",
                "FA − Wᵀ",
            ],
            &rows,
        ));
        doc.push("\n");
    }

    // (c) Energy proxy.
    doc.push("### Energy proxy: synaptic events against multiply-adds\n\n");
    let mut graded = Vec::new();
    let mut inference = Vec::new();
    let mut training = Vec::new();
    let mut skipped_async = 0;
    for (i, r) in ctx.rows.iter().enumerate() {
        if !r.acc_mean.is_finite() {
            continue;
        }
        if ctx.driver(i) != "lockstep" && r.events.is_none() {
            skipped_async += 1;
            continue;
        }
        let (work, unit) = match (r.events, r.infer_macs) {
            (Some(e), _) => (e, "synaptic events"),
            (None, Some(m)) => (m, "MACs"),
            _ => continue,
        };
        graded.push(vec![
            r.label.clone(),
            fmt_accuracy(r.acc_mean, r.acc_std, r.n_completed, &r.status),
            format!("{} {unit}", fmt_sig(work)),
            fmt_opt(r.train_macs),
        ]);
        inference.push(
            Series::new(
                format!("{} ({unit})", r.label),
                vec![(work, 100.0 * r.acc_mean)],
            )
            .with_band(vec![(
                work,
                100.0 * (r.acc_mean - r.acc_std),
                100.0 * (r.acc_mean + r.acc_std),
            )])
            .scatter(),
        );
        if let Some(t) = r.train_macs {
            training.push(
                Series::new(ctx.rows[i].label.clone(), vec![(t, 100.0 * r.acc_mean)])
                    .with_band(vec![(
                        t,
                        100.0 * (r.acc_mean - r.acc_std),
                        100.0 * (r.acc_mean + r.acc_std),
                    )])
                    .scatter(),
            );
        }
    }
    if graded.is_empty() {
        doc.push("**Missing:** no completed run with a work count.\n\n");
    } else {
        if !ctx.rows.iter().any(|r| r.events.is_some()) {
            doc.push("**Missing:** spiking runs (no synaptic-event counts to compare).\n\n");
        }
        doc.push(&md_table(
            &[
                "run",
                "test accuracy",
                "inference work / image",
                "training MACs / sample",
            ],
            &graded,
        ));
        doc.push("\n");
        if skipped_async > 0 {
            doc.push(&format!(
                "({skipped_async} asynchronous group(s) left out: the actors compute the same products as the lockstep rule; their accuracy is in the timing section.)\n\n"
            ));
        }
        let panels = [
            panel(
                "Inference: accuracy vs work",
                "work per test image (MACs or synaptic events)",
                "test accuracy (%)",
                inference,
                false,
            ),
            panel(
                "Training: accuracy vs work",
                "multiply-adds per training sample",
                "test accuracy (%)",
                training,
                false,
            ),
        ];
        doc.panels(
            "rq3_energy.svg",
            &panels,
            true,
            2,
            "Accuracy against work per sample (energy proxy), mean ± std over seeds",
        )?;
    }

    // (d) Speed-up of the actor runtime per core.
    doc.push("### Speed-up of the actor runtime per core\n\n");
    let wall: Vec<usize> = (0..ctx.rows.len())
        .filter(|&i| ctx.driver(i) == "wall")
        .collect();
    let base_key = |i: usize| ctx.without(i, &["runtime.workers"]);
    let mut families: BTreeMap<String, Vec<(f64, usize)>> = BTreeMap::new();
    for &i in &wall {
        if let (Some(k), Some(w)) = (base_key(i), ctx.f(i, "runtime.workers")) {
            families.entry(k).or_default().push((w, i));
        }
    }
    families.retain(|_, v| v.len() > 1 && v.iter().any(|(w, _)| *w == 1.0));
    if families.is_empty() {
        doc.push(
            "**Missing:** wall-clock runs of one scenario at `runtime.workers = 1` and at more workers \
             (the speed-up needs both).\n\n",
        );
    } else {
        let mut rows = Vec::new();
        for v in families.values_mut() {
            v.sort_by(|a, b| a.0.total_cmp(&b.0));
            let base = v
                .iter()
                .find(|(w, _)| *w == 1.0)
                .and_then(|(_, i)| ctx.rows[*i].sec_per_epoch);
            for &(w, i) in v.iter() {
                let s = ctx.rows[i].sec_per_epoch;
                rows.push(vec![
                    ctx.rows[i].label.clone(),
                    if w == 0.0 {
                        "0 (all cores)".into()
                    } else {
                        format!("{w}")
                    },
                    fmt_opt(s),
                    match (base, s) {
                        (Some(b), Some(s)) if s > 0.0 => format!("{:.2}×", b / s),
                        _ => "—".into(),
                    },
                ]);
            }
        }
        doc.push(&md_table(
            &["run", "workers", "s / epoch", "speed-up vs 1 worker"],
            &rows,
        ));
        doc.push("\n");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multiply_adds_match_hand_counts() {
        // 784-256-256-10: P = 200704 + 65536 + 2560 = 268800, P1 = 200704.
        let l = [784, 256, 256, 10];
        assert_eq!(multiply_adds(&l, "bp", 20, 0), Some((605_696.0, 268_800.0)));
        // IL T = 20: 2P + 40 (P − P1) = 537600 + 40 · 68096.
        assert_eq!(
            multiply_adds(&l, "il", 20, 0),
            Some((537_600.0 + 40.0 * 68_096.0, 268_800.0))
        );
        // Z-IL: T = L − 2 = 2 relaxation steps.
        assert_eq!(
            multiply_adds(&l, "zil", 99, 3),
            Some((537_600.0 + 4.0 * 68_096.0, 268_800.0 + 6.0 * 68_096.0))
        );
        assert_eq!(multiply_adds(&l, "spiking_pc", 20, 0), None);
    }

    #[test]
    fn sample_std_and_formatting() {
        let (m, s) = mean_std(&[0.9, 0.92, 0.94]);
        assert!((m - 0.92).abs() < 1e-15);
        assert!((s - 0.02).abs() < 1e-12);
        assert!(mean_std(&[0.5]).1.is_nan());
        assert_eq!(
            fmt_accuracy(0.92, 0.02, 3, "completed"),
            "92.00 ± 2.00 % (n 3)"
        );
        assert_eq!(
            fmt_accuracy(f64::NAN, f64::NAN, 0, "diverged"),
            "— (diverged)"
        );
        assert_eq!(fmt_sig(268_800.0), "2.69e5");
        assert_eq!(fmt_sig(12.345), "12.3");
        assert_eq!(fmt_cosine(Some(0.9999999999999998)), "1 − 2.2e-16");
        assert_eq!(fmt_rel_diff(Some(0.0)), "0 (exact)");
    }

    #[test]
    fn labels_use_few_keys_that_tell_groups_apart() {
        let cfg = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        // `runtime.delay_up.kind` changes together with the driver; the
        // driver (preferred) is enough, and beta separates the rest.
        let a = cfg(&[
            ("runtime.driver", "lockstep"),
            ("runtime.delay_up.kind", "fixed"),
            ("algorithm.inference.beta", "1"),
        ]);
        let b = cfg(&[
            ("runtime.driver", "virtual"),
            ("runtime.delay_up.kind", "lognormal"),
            ("algorithm.inference.beta", "1"),
        ]);
        let c = cfg(&[
            ("runtime.driver", "lockstep"),
            ("runtime.delay_up.kind", "fixed"),
            ("algorithm.inference.beta", "0.1"),
        ]);
        let keys = distinguishing_keys(&[&a, &b, &c]);
        assert_eq!(keys, vec!["algorithm.inference.beta", "runtime.driver"]);
        assert!(distinguishing_keys(&[&a]).is_empty());
    }

    #[test]
    fn short_keys_keep_the_delay_name() {
        assert_eq!(short_key("runtime.delay_down.mean"), "delay_down.mean");
        assert_eq!(short_key("runtime.jitter"), "jitter");
    }
}
