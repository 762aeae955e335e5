//! One run of a scenario: a `Run` owns the data, the network, the trainer
//! and the run directory, and has one method per concern — a training step,
//! an epoch, evaluation, the equivalence probe, `.npy` export, divergence,
//! and `finish`, which writes the metrics, plots and `summary.json` for every
//! ending (`completed`, `diverged`, `failed`, `interrupted`) with its reason.
//! New outputs plug into `finish` (files) and `summary` (fields).

use super::interrupt::{self, Interrupted};
use super::{build_network, build_trainer, export, load_data, spiking};
use crate::algo::Trainer;
use crate::algo::bp::Backprop;
use crate::algo::optim::{LrSchedule, Optimizer};
use crate::algo::pc::RelaxStats;
use crate::data::{Dataset, Split, gather_rows};
use crate::metrics::equivalence::EquivalenceLog;
use crate::metrics::plot::{Panel, Series};
use crate::metrics::{Recorder, Table, num};
use crate::nn::{Mlp, Real, Updates};
use crate::scenario::{AlgorithmKind, Precision, Scenario};
use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use ndarray::{Array2, ArrayView2, s};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde_json::json;
use std::ops::Range;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// How to run, beyond what the scenario says.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    pub out_dir: PathBuf,
    /// Overwrite a non-empty output directory (one pcsim wrote).
    pub force: bool,
    /// Write initial parameters, the first batch and the first update as `.npy`.
    pub export_npy: Option<PathBuf>,
    /// Show a progress bar.
    pub progress: bool,
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Status {
    Completed,
    /// The loss or the parameters stopped being finite; the reason names
    /// the epoch, the step and the layer.
    Diverged(String),
    /// An error ended the run (data, actor network, output files, a bug).
    Failed(String),
    /// A signal asked the run to stop.
    Interrupted(i32),
}

impl Status {
    pub fn name(&self) -> &'static str {
        match self {
            Status::Completed => "completed",
            Status::Diverged(_) => "diverged",
            Status::Failed(_) => "failed",
            Status::Interrupted(_) => "interrupted",
        }
    }

    pub fn reason(&self) -> Option<String> {
        match self {
            Status::Completed => None,
            Status::Diverged(r) | Status::Failed(r) => Some(r.clone()),
            Status::Interrupted(sig) => Some(format!("stopped by {}", interrupt::name(*sig))),
        }
    }
}

/// Runs a scenario into `opts.out_dir` and returns its summary (also written
/// to `summary.json`). Every ending writes `summary.json` with its `status`;
/// an ending other than `completed` is an error (an `Interrupted` for a
/// signal), and a panic — a bug — is recorded as `failed` and re-raised.
pub fn run(s: &Scenario, opts: &RunOptions) -> Result<serde_json::Value> {
    let rec = Recorder::create(&opts.out_dir, opts.force)?;
    rec.write_text("scenario.toml", &s.to_toml())?;
    let started = Instant::now();
    match panic::catch_unwind(AssertUnwindSafe(|| execute(s, opts, &rec, started))) {
        Ok(result) => result,
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            let status = Status::Failed(format!("internal error (a bug in pcsim): {what}"));
            let _ = rec.write_json("summary.json", &bare_summary(s, &status, started));
            panic::resume_unwind(payload)
        }
    }
}

fn execute(
    s: &Scenario,
    opts: &RunOptions,
    rec: &Recorder,
    started: Instant,
) -> Result<serde_json::Value> {
    let fail_early = |e: anyhow::Error| {
        let status = Status::Failed(format!("{e:#}"));
        let _ = rec.write_json("summary.json", &bare_summary(s, &status, started));
        Err(e)
    };
    let split = match load_data(s) {
        Ok(split) => split,
        Err(e) => return fail_early(e.into()),
    };
    match s.precision {
        Precision::F32 => match Run::<f32>::start(s, opts, rec, &split, started) {
            Ok(run) => run.execute(),
            Err(e) => fail_early(e),
        },
        Precision::F64 => match Run::<f64>::start(s, opts, rec, &split, started) {
            Ok(run) => run.execute(),
            Err(e) => fail_early(e),
        },
    }
}

/// The summary of a run that ended before training started.
fn bare_summary(s: &Scenario, status: &Status, started: Instant) -> serde_json::Value {
    json!({
        "name": s.name,
        "algorithm": s.algorithm.kind,
        "precision": s.precision,
        "status": status.name(),
        "reason": status.reason(),
        "epochs": 0,
        "steps": 0,
        "test_accuracy": null,
        "test_loss": null,
        "wall_seconds": started.elapsed().as_secs_f64(),
    })
}

/// The BP reference that the applied updates are compared with.
struct EquivalenceProbe {
    log: EquivalenceLog,
    reference: Backprop<f64>,
    updates: Option<Updates<f64>>,
}

/// Everything one run holds while it trains.
struct Run<'a, T: Real> {
    s: &'a Scenario,
    opts: &'a RunOptions,
    rec: &'a Recorder,
    test_set: &'a Dataset,
    started: Instant,
    train_x: Array2<T>,
    train_y: Array2<T>,
    test_x: Array2<T>,
    test_y: Array2<T>,
    /// Batch buffers: the first for one batch at a time, as many as the
    /// trainer's `chain_len` for a chain.
    batch_x: Vec<Array2<T>>,
    batch_y: Vec<Array2<T>>,
    order: Vec<usize>,
    shuffle_rng: ChaCha8Rng,
    mlp: Mlp<T>,
    trainer: Box<dyn Trainer<T>>,
    bar: ProgressBar,
    metrics: Table,
    equivalence: Option<EquivalenceProbe>,
    /// The learning rate of every step (step decay per epoch, or cosine).
    schedule: LrSchedule,
    /// The current α; the trainer is told when the schedule changes it.
    lr: f64,
    optimizer: Optimizer,
    /// Training steps done.
    step: usize,
    train_seconds: f64,
    /// Training seconds of every completed epoch.
    epoch_seconds: Vec<f64>,
    loss_sum: f64,
    loss_count: usize,
    /// `(step, test loss per sample, test accuracy)` of the last evaluation.
    last_eval: Option<(usize, f64, f64)>,
    /// The relaxation monitor (lockstep IL): counts since the last
    /// evaluation, of the current epoch, per finished epoch, of the run.
    relax: Option<RelaxWatch>,
}

#[derive(Default)]
struct RelaxWatch {
    since_eval: RelaxStats,
    epoch: RelaxStats,
    epochs: Vec<RelaxStats>,
    total: RelaxStats,
}

impl<'a, T: Real> Run<'a, T> {
    fn start(
        s: &'a Scenario,
        opts: &'a RunOptions,
        rec: &'a Recorder,
        split: &'a Split,
        started: Instant,
    ) -> Result<Self> {
        let (train_x, train_y) = split.train.to_real::<T>();
        let (test_x, test_y) = split.test.to_real::<T>();
        anyhow::ensure!(
            train_x.ncols() == s.network.layers[0],
            "the data has {} features but network.layers[0] = {}",
            train_x.ncols(),
            s.network.layers[0]
        );
        anyhow::ensure!(
            train_x.nrows() > 0 && test_x.nrows() > 0,
            "the data has {} training and {} test samples; both need at least one",
            train_x.nrows(),
            test_x.nrows()
        );
        let mlp = build_network::<T>(s);
        // A batch is never larger than the training set; the trainer sizes
        // its buffers by the batch it will see, not by the key's value.
        let batch = s.training.batch_size.min(train_x.nrows());
        let trainer = if batch < s.training.batch_size {
            let mut capped = s.clone();
            capped.training.batch_size = batch;
            build_trainer(&capped, &mlp)?
        } else {
            build_trainer(s, &mlp)?
        };
        let mut trainer = trainer;
        let relax = trainer
            .take_relaxation_stats()
            .map(|_| RelaxWatch::default());
        let extra = trainer.metric_columns();
        let mut columns = vec!["epoch", "step", "train_loss", "test_loss", "test_accuracy"];
        columns.extend(extra.iter().map(String::as_str));
        columns.push("wall_seconds");
        if relax.is_some() {
            columns.extend([
                "unstable_relaxations",
                "limited_relaxations",
                "max_value_step",
            ]);
        }
        let equivalence = (s.output.equivalence_every > 0).then(|| EquivalenceProbe {
            log: EquivalenceLog::new(mlp.depth()),
            reference: Backprop::new(&super::to_f64(&mlp), s.training.learning_rate, 0.0, batch),
            updates: None,
        });
        let steps_per_epoch = train_x.nrows().div_ceil(batch);
        let total_steps = steps_per_epoch.saturating_mul(s.training.epochs);
        let (optimizer, schedule) = s
            .training
            .optimizer_options()
            .build(s.training.optimizer_keys(), steps_per_epoch)
            .map_err(|(key, msg)| anyhow::anyhow!("{key} {msg}"))?;
        Ok(Self {
            s,
            opts,
            rec,
            test_set: &split.test,
            started,
            batch_x: vec![Array2::zeros((batch, train_x.ncols()))],
            batch_y: vec![Array2::zeros((batch, train_y.ncols()))],
            order: (0..train_x.nrows()).collect(),
            shuffle_rng: ChaCha8Rng::seed_from_u64(s.shuffle_seed()),
            train_x,
            train_y,
            test_x,
            test_y,
            mlp,
            trainer,
            bar: progress_bar(opts.progress, total_steps),
            metrics: Table::new(&columns),
            equivalence,
            schedule,
            lr: s.training.learning_rate,
            optimizer,
            step: 0,
            train_seconds: 0.0,
            epoch_seconds: Vec::new(),
            loss_sum: 0.0,
            loss_count: 0,
            last_eval: None,
            relax,
        })
    }

    /// Trains to the end (or until something stops the run) and finishes.
    fn execute(mut self) -> Result<serde_json::Value> {
        let status = match self.train() {
            Ok(status) => status,
            Err(e) => Status::Failed(format!("{e:#}")),
        };
        self.finish(status)
    }

    fn train(&mut self) -> Result<Status> {
        for epoch in 1..=self.s.training.epochs {
            if let Some(status) = self.epoch(epoch)? {
                return Ok(status);
            }
        }
        Ok(Status::Completed)
    }

    /// One pass over the training set; `Some` when the run must stop.
    fn epoch(&mut self, epoch: usize) -> Result<Option<Status>> {
        self.bar
            .set_message(format!("{epoch}/{}", self.s.training.epochs));
        self.order.shuffle(&mut self.shuffle_rng);
        let epoch_start = Instant::now();
        let mut eval_time = 0.0;
        let (n, batch) = (self.order.len(), self.batch_x[0].nrows());
        let every = self.s.output.eval_every;
        let ranges: Vec<Range<usize>> = (0..n)
            .step_by(batch)
            .map(|start| start..(start + batch).min(n))
            .collect();
        let mut k = 0;
        while k < ranges.len() {
            if let Some(signal) = interrupt::requested() {
                self.train_seconds += epoch_start.elapsed().as_secs_f64() - eval_time;
                return Ok(Some(Status::Interrupted(signal)));
            }
            let m = self.chain_at(ranges.len() - k);
            let stopped = if m > 1 {
                self.chain(epoch, k + 1, &ranges[k..k + m])?
            } else {
                self.step(epoch, k + 1, ranges[k].clone())?
            };
            if let Some(status) = stopped {
                return Ok(Some(status));
            }
            k += m;
            if every > 0 && self.step.is_multiple_of(every) {
                let t0 = Instant::now();
                self.evaluate(epoch)?;
                eval_time += t0.elapsed().as_secs_f64();
            }
        }
        let secs = epoch_start.elapsed().as_secs_f64() - eval_time;
        self.epoch_seconds.push(secs);
        self.train_seconds += secs;
        if !self.mlp.is_finite() {
            return Ok(Some(self.diverged(epoch, None)));
        }
        if every == 0 {
            self.evaluate(epoch)?;
        }
        if let Some(eq) = &self.equivalence {
            self.rec.write_table("equivalence.csv", &eq.log.table)?;
        }
        if let Some(w) = &mut self.relax {
            let e = std::mem::take(&mut w.epoch);
            w.epochs.push(e);
            if e.unstable > 0 {
                // Once per epoch, not per batch: the run goes on, and the
                // counts are in metrics.csv and summary.json.
                let msg = format!(
                    "warning: epoch {epoch}: the relaxation energy rose in {} of {} samples (largest one-step rise {:.3e} of the energy, largest value-node step {:.3e}); the Euler step is too large for these weights: set algorithm.inference.step_control = \"local_curvature\" or lower algorithm.inference.gamma",
                    e.unstable, e.samples, e.max_rise, e.max_step
                );
                self.bar.suspend(|| eprintln!("{msg}"));
            }
        }
        Ok(None)
    }

    /// Whether step `step` (0-based) compares its update with BP's.
    fn compares(&self, step: usize) -> bool {
        self.equivalence
            .as_ref()
            .is_some_and(|_| step.is_multiple_of(self.s.output.equivalence_every))
    }

    /// How many of the next `left` batches train as one chain: up to the
    /// trainer's `chain_len`, each at the current α, none kept for the
    /// equivalence probe or the `.npy` export, and ending at an evaluation
    /// point — what one batch at a time would see.
    fn chain_at(&self, left: usize) -> usize {
        let most = self.trainer.chain_len().min(left);
        let every = self.s.output.eval_every;
        let lr = self.schedule.lr(self.step).to_bits();
        let mut m = 0;
        while m < most {
            let step = self.step + m;
            let alone = self.compares(step) || (self.opts.export_npy.is_some() && step == 0);
            if alone || self.schedule.lr(step).to_bits() != lr {
                break;
            }
            m += 1;
            if every > 0 && (step + 1).is_multiple_of(every) {
                break;
            }
        }
        m.max(1)
    }

    /// Batches `k`, `k + 1`, … of `epoch` (the samples `order[range]` of
    /// each) trained as one chain (`Trainer::train_chain`); per batch the
    /// same bookkeeping as `step`.
    fn chain(&mut self, epoch: usize, k: usize, ranges: &[Range<usize>]) -> Result<Option<Status>> {
        self.follow_schedule();
        while self.batch_x.len() < ranges.len() {
            self.batch_x.push(self.batch_x[0].clone());
            self.batch_y.push(self.batch_y[0].clone());
        }
        for (j, range) in ranges.iter().enumerate() {
            self.gather(j, range.clone());
            injected_fault(&self.opts.out_dir);
        }
        let views: Vec<_> = ranges
            .iter()
            .zip(self.batch_x.iter().zip(&self.batch_y))
            .map(|(r, (x, y))| (x.slice(s![..r.len(), ..]), y.slice(s![..r.len(), ..])))
            .collect();
        let losses = self.trainer.train_chain(&mut self.mlp, &views);
        drop(views);
        self.add_relaxation_stats();
        if let Some(e) = self.trainer.take_error() {
            let last = k + ranges.len() - 1;
            return Ok(Some(Status::Failed(format!(
                "{:#}",
                e.context(format!(
                    "the actor network failed at epoch {epoch}, in steps {}–{} (batches {k}–{last}, trained in one run)",
                    self.step + 1,
                    self.step + ranges.len()
                ))
            ))));
        }
        for (j, (range, &loss)) in ranges.iter().zip(&losses).enumerate() {
            self.step += 1;
            self.bar.inc(1);
            let last = j + 1 == ranges.len();
            // A batch's loss is measured before its update: parameters made
            // infinite by a batch inside the chain show in the next loss.
            if !loss.is_finite() || (last && !self.biases_finite()) {
                return Ok(Some(self.diverged(epoch, Some((k + j, loss)))));
            }
            self.loss_sum += loss;
            self.loss_count += range.len();
        }
        Ok(None)
    }

    /// Training step on the samples `order[range]` (batch `k` of `epoch`).
    fn step(&mut self, epoch: usize, k: usize, range: Range<usize>) -> Result<Option<Status>> {
        let rows = range.len();
        self.follow_schedule();
        self.gather(0, range);
        let bx = self.batch_x[0].slice(s![..rows, ..]);
        let by = self.batch_y[0].slice(s![..rows, ..]);
        let compare = self.compares(self.step);
        let export_dir = self.opts.export_npy.as_deref().filter(|_| self.step == 0);
        if let Some(probe) = self.equivalence.as_mut().filter(|_| compare) {
            // The rule hands the optimizer its update at α (SGD) or at 1
            // (Adam applies α itself); BP's reference is scaled alike, so
            // the directions are compared.
            let scale = self.optimizer.update_scale(self.lr);
            reference_update(probe, &self.mlp, scale, bx, by);
        }
        if let Some(dir) = export_dir {
            export::initial(dir, &self.mlp, bx, by)?;
        }
        injected_fault(&self.opts.out_dir);
        let loss = self
            .trainer
            .train_batch(&mut self.mlp, bx, by, compare || export_dir.is_some());
        self.add_relaxation_stats();
        if let Some(e) = self.trainer.take_error() {
            return Ok(Some(Status::Failed(format!(
                "{:#}",
                e.context(format!(
                    "the actor network failed at epoch {epoch}, step {} (batch {k})",
                    self.step + 1
                ))
            ))));
        }
        if let Some(dir) = export_dir {
            let applied = self
                .trainer
                .last_updates()
                .context("the trainer kept no update to export")?;
            export::first_update(dir, applied)?;
        }
        if compare {
            self.record_equivalence()?;
        }
        self.step += 1;
        self.bar.inc(1);
        if !loss.is_finite() || !self.biases_finite() {
            return Ok(Some(self.diverged(epoch, Some((k, loss)))));
        }
        self.loss_sum += loss;
        self.loss_count += rows;
        Ok(None)
    }

    /// Tells the trainer α when the schedule changed it for this step.
    fn follow_schedule(&mut self) {
        let lr = self.schedule.lr(self.step);
        if lr.to_bits() != self.lr.to_bits() {
            self.lr = lr;
            self.trainer.set_learning_rate(lr);
        }
    }

    /// The samples `order[range]` into batch buffer `j`.
    fn gather(&mut self, j: usize, range: Range<usize>) {
        let chunk = &self.order[range];
        gather_rows(self.train_x.view(), chunk, self.batch_x[j].view_mut());
        gather_rows(self.train_y.view(), chunk, self.batch_y[j].view_mut());
    }

    /// What the trainer's energy monitor counted, into every tally.
    fn add_relaxation_stats(&mut self) {
        if let (Some(w), Some(st)) = (&mut self.relax, self.trainer.take_relaxation_stats()) {
            w.since_eval.add(&st);
            w.epoch.add(&st);
            w.total.add(&st);
        }
    }

    /// The biases move with the weights (same errors) and are cheap to
    /// scan, so a step that made the parameters infinite is caught even
    /// when the loss, computed before the update, is still finite.
    fn biases_finite(&self) -> bool {
        self.mlp.b.iter().all(|b| b.iter().all(|v| v.is_finite()))
    }

    fn record_equivalence(&mut self) -> Result<()> {
        let applied = self
            .trainer
            .last_updates()
            .context("the trainer kept no update to compare")?;
        let probe = self.equivalence.as_mut().expect("probing");
        let reference = probe.updates.as_ref().expect("computed before the step");
        probe.log.record(self.step, applied, reference);
        Ok(())
    }

    /// Evaluates on the test set, appends a row to `metrics.csv` and rewrites it.
    fn evaluate(&mut self, epoch: usize) -> Result<()> {
        const CHUNK: usize = 2000;
        let (mut loss, mut correct) = (0.0, 0);
        let n = self.test_x.nrows();
        for start in (0..n).step_by(CHUNK) {
            let end = (start + CHUNK).min(n);
            let yhat = self
                .trainer
                .predict(&self.mlp, self.test_x.slice(s![start..end, ..]));
            let yc = self.test_y.slice(s![start..end, ..]);
            loss += self.mlp.output.loss(yhat.view(), yc).f64();
            correct += crate::nn::loss::count_correct(yhat.view(), yc);
        }
        let (test_loss, acc) = (loss / n as f64, correct as f64 / n as f64);
        let train_loss = if self.loss_count > 0 {
            self.loss_sum / self.loss_count as f64
        } else {
            f64::NAN
        };
        let mut row = vec![
            epoch.to_string(),
            self.step.to_string(),
            num(train_loss),
            num(test_loss),
            num(acc),
        ];
        row.extend(self.trainer.take_metrics().into_iter().map(num));
        row.push(format!("{:.3}", self.started.elapsed().as_secs_f64()));
        if let Some(w) = &mut self.relax {
            let st = std::mem::take(&mut w.since_eval);
            row.extend([
                st.unstable.to_string(),
                st.limited.to_string(),
                num(st.max_step),
            ]);
        }
        self.metrics.push(row);
        self.rec.write_table("metrics.csv", &self.metrics)?;
        (self.loss_sum, self.loss_count) = (0.0, 0);
        self.last_eval = Some((self.step, test_loss, acc));
        Ok(())
    }

    /// The divergence status, naming the epoch, the step and the layer.
    /// `at`: the batch within the epoch and its non-finite loss, or `None`
    /// when the parameters were found non-finite at the end of the epoch.
    fn diverged(&self, epoch: usize, at: Option<(usize, f64)>) -> Status {
        let layer = match nonfinite_layer(&self.mlp) {
            Some(l) => {
                format!("W{l}/b{l} is the first layer whose parameters are no longer finite")
            }
            None => {
                let (l, max) = largest_weight(&self.mlp);
                format!("the parameters are still finite, the largest |W| is {max:.3e} in W{l}")
            }
        };
        let show = crate::scenario::show;
        let inf = &self.s.algorithm.inference;
        let lower = match self.s.algorithm.kind {
            // IL's Euler relaxation is only conditionally stable, and β < 1
            // scales the update by 1/β.
            AlgorithmKind::Il | AlgorithmKind::SpikingPc => format!(
                "lower training.learning_rate (now {}) or algorithm.inference.gamma (now {}){}",
                show(self.lr),
                show(inf.gamma),
                if inf.beta < 1.0 {
                    format!(
                        ", or raise algorithm.inference.beta (now {})",
                        show(inf.beta)
                    )
                } else {
                    String::new()
                }
            ),
            _ => format!("lower training.learning_rate (now {})", show(self.lr)),
        };
        Status::Diverged(match at {
            Some((1, loss)) if self.step == 1 && !loss.is_finite() => format!(
                "the loss of the first batch is {loss} before any update: the initial network or the data is not finite in {} ({layer}); check network.hidden_bias_init, network.lif and the data",
                T::NAME
            ),
            Some((k, loss)) => format!(
                "training diverged at epoch {epoch}, step {} (batch {k} of the epoch): {}; {layer}; {lower}",
                self.step,
                if loss.is_finite() {
                    format!("the parameters stopped being finite (batch loss {loss})")
                } else {
                    format!("the batch loss is {loss}")
                }
            ),
            None => format!(
                "training diverged in epoch {epoch} (by step {}): {layer}; {lower}",
                self.step
            ),
        })
    }

    /// Writes what the run has — metrics, equivalence, plots, spiking
    /// results, runtime statistics — and `summary.json` with the status.
    fn finish(mut self, status: Status) -> Result<serde_json::Value> {
        self.bar.finish_and_clear();
        let mut status = match self.write_outputs(&status) {
            Ok(()) => status,
            Err(e) if status == Status::Completed => Status::Failed(format!("{e:#}")),
            // The first reason to stop is the one to report.
            Err(_) => status,
        };
        let mut summary = self.summary(&status);
        if status == Status::Completed
            && let Some(cfg) = self.s.snn.as_ref().filter(|c| c.evaluate)
            && let Err(e) = spiking::run_spiking(
                self.rec,
                self.s,
                cfg,
                &self.mlp,
                self.test_set,
                &mut summary,
            )
        {
            status = Status::Failed(format!("the spiking evaluation failed: {e:#}"));
            summary["status"] = json!(status.name());
            summary["reason"] = json!(status.reason());
        }
        self.rec.write_json("summary.json", &summary)?;
        let dir = self.rec.dir().display().to_string();
        match status {
            Status::Completed => Ok(summary),
            Status::Interrupted(signal) => Err(Interrupted {
                signal,
                what: "the run",
                progress: format!(
                    "{} epoch(s) and {} step(s) done",
                    self.epoch_seconds.len(),
                    self.step
                ),
                dir,
            }
            .into()),
            Status::Diverged(reason) | Status::Failed(reason) => {
                anyhow::bail!("{reason} (results so far are in {dir})")
            }
        }
    }

    fn write_outputs(&mut self, status: &Status) -> Result<()> {
        // The summary's accuracy is that of the final parameters: evaluate
        // them unless the last evaluation was at this step (not after a
        // divergence or failure, whose parameters mean nothing).
        let evaluated_now = self.last_eval.is_some_and(|e| e.0 == self.step);
        if matches!(status, Status::Completed | Status::Interrupted(_))
            && !evaluated_now
            && self.step > 0
        {
            self.evaluate(
                self.epoch_seconds.len() + usize::from(matches!(status, Status::Interrupted(_))),
            )?;
        }
        self.rec.write_table("metrics.csv", &self.metrics)?;
        if let Some(eq) = &self.equivalence {
            self.rec.write_table("equivalence.csv", &eq.log.table)?;
            if self.s.output.plots {
                self.rec.write_svg("equivalence.svg", eq.log.plot()?)?;
            }
        }
        if self.s.output.plots && !self.metrics.rows.is_empty() {
            self.rec
                .write_svg("training.svg", training_plot(&self.metrics)?)?;
        }
        if let Some(stats) = self.trainer.runtime_stats() {
            self.rec.write_json("runtime_stats.json", &stats)?;
        }
        Ok(())
    }

    fn summary(&self, status: &Status) -> serde_json::Value {
        let (test_loss, acc) = self
            .last_eval
            .map_or((None, None), |e| (Some(e.1), Some(e.2)));
        let mut summary = json!({
            "name": self.s.name,
            "algorithm": self.s.algorithm.kind,
            "precision": T::NAME,
            "status": status.name(),
            "reason": status.reason(),
            "epochs": self.epoch_seconds.len(),
            "steps": self.step,
            "test_accuracy": acc,
            "test_loss": test_loss,
            "wall_seconds": self.started.elapsed().as_secs_f64(),
            "train_seconds": self.train_seconds,
            "seconds_per_epoch": self.epoch_seconds,
            "parameters": self.mlp.n_params(),
            "train_samples": self.train_x.nrows(),
            "test_samples": self.test_x.nrows(),
        });
        if let Some(eq) = &self.equivalence {
            summary["equivalence"] = eq.log.summary();
        }
        if let Some((key, value)) = self.trainer.summary_fields() {
            summary[key] = value;
        }
        if let Some(w) = &self.relax {
            let t = &w.total;
            summary["relaxation"] = json!({
                "samples": t.samples,
                "unstable": t.unstable,
                "limited": t.limited,
                "max_value_step": t.max_step,
                "max_energy_rise": t.max_rise,
                "unstable_per_epoch": w.epochs.iter().map(|e| e.unstable).collect::<Vec<_>>(),
                "limited_per_epoch": w.epochs.iter().map(|e| e.limited).collect::<Vec<_>>(),
            });
        }
        if let Some(stats) = self.trainer.runtime_stats() {
            summary["runtime"] = json!({
                "driver": self.s.runtime.driver,
                "messages": stats["messages"],
                "lost": stats["lost"],
                "elapsed": stats["elapsed"],
                "time_unit": stats["time_unit"],
                "time_per_sample": stats["time_per_sample"],
                "mean_queueing_delay": stats["mean_queueing_delay"],
            });
        }
        summary
    }
}

/// BP's update on the current parameters and batch, in f64.
fn reference_update<T: Real>(
    probe: &mut EquivalenceProbe,
    mlp: &Mlp<T>,
    lr: f64,
    x: ArrayView2<T>,
    y: ArrayView2<T>,
) {
    let mlp64 = super::to_f64(mlp);
    let upd = probe
        .updates
        .get_or_insert_with(|| Updates::zeros_like(&mlp64));
    probe.reference.learning_rate = lr;
    probe.reference.compute_updates(
        &mlp64,
        x.mapv(|v| v.f64()).view(),
        y.mapv(|v| v.f64()).view(),
        upd,
    );
}

/// `W[l]`'s number `l` (DESIGN.md numbering) of the first layer whose
/// weights or biases are not finite.
fn nonfinite_layer<T: Real>(mlp: &Mlp<T>) -> Option<usize> {
    mlp.w
        .iter()
        .zip(&mlp.b)
        .position(|(w, b)| !(w.iter().all(|v| v.is_finite()) && b.iter().all(|v| v.is_finite())))
        .map(|i| i + 2)
}

/// `(l, max |W[l]|)` of the layer with the largest weight.
fn largest_weight<T: Real>(mlp: &Mlp<T>) -> (usize, f64) {
    mlp.w
        .iter()
        .enumerate()
        .map(|(i, w)| (i + 2, w.iter().fold(0.0f64, |m, v| m.max(v.f64().abs()))))
        .fold((2, 0.0), |best, c| if c.1 > best.1 { c } else { best })
}

fn progress_bar(show: bool, total_steps: usize) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total_steps as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} epoch {msg} [{bar:30}] {pos}/{len} steps, {elapsed} elapsed, eta {eta}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar
}

fn training_plot(metrics: &Table) -> Result<String> {
    let step = metrics.column("step");
    let pair = |col: &str| {
        step.iter()
            .copied()
            .zip(metrics.column(col))
            .collect::<Vec<_>>()
    };
    crate::metrics::plot::svg(&[
        Panel {
            title: "Loss".into(),
            x_label: "training step".into(),
            y_label: "loss per sample".into(),
            series: vec![
                Series::new("train", pair("train_loss")),
                Series::new("test", pair("test_loss")),
            ],
            log_y: true,
        },
        Panel {
            title: "Test accuracy".into(),
            x_label: "training step".into(),
            y_label: "accuracy".into(),
            series: vec![Series::new("test", pair("test_accuracy"))],
            log_y: false,
        },
    ])
}

/// Environment variable of the crash-isolation tests (`tests/robustness.rs`):
/// `panic` or `abort`, optionally `@NAME`, makes a run whose output
/// directory is called NAME (every run without `@`) panic or abort at its
/// first training step. It exists so the tests can prove that one crashing
/// sweep point leaves the others and `sweep.csv` intact.
pub const FAULT_ENV: &str = "PCSIM_TEST_FAULT";

fn injected_fault(out_dir: &Path) {
    let Ok(spec) = std::env::var(FAULT_ENV) else {
        return;
    };
    let (kind, target) = spec.split_once('@').unwrap_or((spec.as_str(), ""));
    if !target.is_empty() && out_dir.file_name().and_then(|n| n.to_str()) != Some(target) {
        return;
    }
    match kind {
        "panic" => panic!("{FAULT_ENV}={spec}: injected panic"),
        "abort" => {
            eprintln!("{FAULT_ENV}={spec}: injected abort");
            std::process::abort()
        }
        _ => {}
    }
}
