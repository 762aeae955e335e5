//! Runs one scenario end to end: loads the data, builds the network and the
//! algorithm, trains with periodic evaluation, and writes the run directory
//! through the `Recorder` (DESIGN.md §6).

pub mod bench;
pub mod export;
pub mod sweep;

use crate::algo::Trainer;
use crate::algo::bp::Backprop;
use crate::data::{self, DataError, Split, gather_rows};
use crate::metrics::plot::{Panel, Series};
use crate::metrics::{Recorder, Table, num};
use crate::nn::{Activation, Mlp, Real, Updates};
use crate::scenario::{AlgorithmKind, DataKind, Precision, Scenario};
use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use ndarray::{Array2, ArrayView2, s};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde_json::json;
use std::path::PathBuf;
use std::time::Instant;

/// How to run, beyond what the scenario says.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    pub out_dir: PathBuf,
    /// Overwrite a non-empty output directory.
    pub force: bool,
    /// Write initial parameters, the first batch and the first update as `.npy`.
    pub export_npy: Option<PathBuf>,
    /// Show a progress bar.
    pub progress: bool,
}

/// Loads the scenario's data set.
pub fn load_data(s: &Scenario) -> Result<Split, DataError> {
    let split = match s.data.kind {
        DataKind::Synthetic => data::synthetic::generate(&s.data.synthetic, s.data_seed()),
        DataKind::Mnist => data::mnist::load(&s.data.path)?,
    };
    Ok(Split {
        train: split.train.truncate(s.data.train_subset),
        test: split.test.truncate(s.data.test_subset),
    })
}

/// Builds the initial network of a scenario (deterministic in the seed).
pub fn build_network<T: Real>(s: &Scenario) -> Mlp<T> {
    let mut rng = ChaCha8Rng::seed_from_u64(s.init_seed());
    let hidden = Activation::with_lif(s.network.activation, s.network.lif);
    let mut mlp = Mlp::kaiming(&s.network.layers, hidden, s.network.output, &mut rng);
    if s.network.hidden_bias_init != 0.0 {
        let hidden_layers = mlp.b.len() - 1;
        for b in &mut mlp.b[..hidden_layers] {
            b.fill(T::of(s.network.hidden_bias_init));
        }
    }
    mlp
}

/// The trainer for the scenario's algorithm.
pub fn build_trainer<T: Real>(s: &Scenario, mlp: &Mlp<T>) -> Result<Box<dyn Trainer<T>>> {
    let t = &s.training;
    if matches!(s.algorithm.kind, AlgorithmKind::Il | AlgorithmKind::Zil)
        && s.runtime.driver != crate::scenario::Driver::Lockstep
    {
        return Ok(Box::new(async_trainer::<T>(s)));
    }
    Ok(match s.algorithm.kind {
        AlgorithmKind::Bp => Box::new(Backprop::new(
            mlp,
            t.learning_rate,
            t.momentum,
            t.batch_size,
        )),
        AlgorithmKind::Il => Box::new(crate::algo::pc::Il::new(
            mlp,
            pc_config(s),
            t.learning_rate,
            t.momentum,
        )?),
        AlgorithmKind::Zil => Box::new(crate::algo::pc::Zil::new(
            mlp,
            pc_config(s),
            t.learning_rate,
            t.momentum,
        )?),
    })
}

/// The PC trainers' settings from `[algorithm.inference]`; the feedback
/// alignment matrices are drawn from `seed + 3` (init, shuffle and data use
/// the seed itself, `+ 1` and `+ 2`).
pub fn pc_config(s: &Scenario) -> crate::algo::pc::PcConfig {
    let inf = &s.algorithm.inference;
    crate::algo::pc::PcConfig {
        gamma: inf.gamma,
        steps: inf.steps,
        beta: inf.beta,
        predict_steps: inf.predict_steps,
        feedback_seed: (inf.feedback == crate::scenario::Feedback::Random)
            .then(|| s.seed.wrapping_add(3)),
    }
}

/// The asynchronous IL / Z-IL trainer of a scenario (`[runtime]` with
/// driver `virtual` or `wall`); Z-IL forces γ = 1, β = 1 like the lockstep `Zil`.
pub fn async_trainer<T: Real>(s: &Scenario) -> crate::runtime::trainer::AsyncTrainer<T> {
    let inf = &s.algorithm.inference;
    let zil = s.algorithm.kind == AlgorithmKind::Zil;
    let settings = crate::runtime::pc::PcSettings {
        zil,
        steps: inf.steps as u32,
        gamma: if zil { 1.0 } else { inf.gamma },
        beta: if zil { 1.0 } else { inf.beta },
        learning_rate: s.training.learning_rate,
        schedule: s.runtime.schedule,
        trigger: s.runtime.trigger,
        period: s.runtime.period,
        depth: s.network.layers.len(),
        pipeline: s.runtime.pipeline,
        momentum: s.training.momentum,
    };
    crate::runtime::trainer::AsyncTrainer::new(s.runtime.clone(), settings, s.runtime_seed())
}

/// Runs a scenario and returns its summary (also written to `summary.json`).
pub fn run(s: &Scenario, opts: &RunOptions) -> Result<serde_json::Value> {
    let split = load_data(s)?;
    match s.precision {
        Precision::F32 => run_typed::<f32>(s, &split, opts),
        Precision::F64 => run_typed::<f64>(s, &split, opts),
    }
}

/// `(summed loss, correct)` of the trainer's predictions over a data set.
fn evaluate<T: Real>(
    trainer: &mut dyn Trainer<T>,
    mlp: &Mlp<T>,
    x: ArrayView2<T>,
    y: ArrayView2<T>,
) -> (f64, usize) {
    const CHUNK: usize = 2000;
    let (mut loss, mut correct) = (0.0, 0);
    for start in (0..x.nrows()).step_by(CHUNK) {
        let end = (start + CHUNK).min(x.nrows());
        let yhat = trainer.predict(mlp, x.slice(s![start..end, ..]));
        let yc = y.slice(s![start..end, ..]);
        loss += mlp.output.loss(yhat.view(), yc).f64();
        correct += crate::nn::loss::count_correct(yhat.view(), yc);
    }
    (loss, correct)
}

struct EquivalenceLog {
    table: Table,
    reference: Backprop<f64>,
}

fn run_typed<T: Real>(s: &Scenario, split: &Split, opts: &RunOptions) -> Result<serde_json::Value> {
    let started = Instant::now();
    let rec = Recorder::create(&opts.out_dir, opts.force)?;
    rec.write_text("scenario.toml", &s.to_toml())?;

    let (train_x, train_y) = split.train.to_real::<T>();
    let (test_x, test_y) = split.test.to_real::<T>();
    anyhow::ensure!(
        train_x.ncols() == s.network.layers[0],
        "the data has {} features but network.layers[0] = {}",
        train_x.ncols(),
        s.network.layers[0]
    );

    let mut mlp = build_network::<T>(s);
    let mut trainer = build_trainer(s, &mlp)?;
    let batch = s.training.batch_size.min(train_x.nrows());
    let mut batch_x = Array2::<T>::zeros((batch, train_x.ncols()));
    let mut batch_y = Array2::<T>::zeros((batch, train_y.ncols()));
    let mut order: Vec<usize> = (0..train_x.nrows()).collect();
    let mut shuffle_rng = ChaCha8Rng::seed_from_u64(s.shuffle_seed());

    let steps_per_epoch = train_x.nrows().div_ceil(batch);
    let total_steps = steps_per_epoch * s.training.epochs;
    let bar = if opts.progress {
        let bar = ProgressBar::new(total_steps as u64);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} epoch {msg} [{bar:30}] {pos}/{len} steps, {elapsed} elapsed, eta {eta}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        bar
    } else {
        ProgressBar::hidden()
    };

    let mut metrics = Table::new(&[
        "epoch",
        "step",
        "train_loss",
        "test_loss",
        "test_accuracy",
        "wall_seconds",
    ]);
    let layer_names: Vec<String> = (2..=mlp.depth()).map(|l| format!("W{l}")).collect();
    let mut equivalence = (s.output.equivalence_every > 0).then(|| {
        let mlp64 = to_f64(&mlp);
        EquivalenceLog {
            table: Table::new(&["step", "layer", "rel_diff", "cosine"]),
            reference: Backprop::new(&mlp64, s.training.learning_rate, 0.0, batch),
        }
    });
    let mut bp_updates: Option<Updates<f64>> = None;

    let mut lr = s.training.learning_rate;
    let mut step = 0usize;
    let mut train_seconds = 0.0;
    let mut epoch_seconds = Vec::new();
    let (mut loss_sum, mut loss_count) = (0.0, 0usize);
    let mut last_eval = (f64::NAN, f64::NAN);
    let eval_every = s.output.eval_every;

    let evaluate_now = |epoch: usize,
                        step: usize,
                        train_loss: f64,
                        trainer: &mut dyn Trainer<T>,
                        mlp: &Mlp<T>,
                        metrics: &mut Table|
     -> Result<(f64, f64)> {
        let (loss, correct) = evaluate(trainer, mlp, test_x.view(), test_y.view());
        let test_loss = loss / test_x.nrows() as f64;
        let acc = correct as f64 / test_x.nrows() as f64;
        metrics.push(vec![
            epoch.to_string(),
            step.to_string(),
            num(train_loss),
            num(test_loss),
            num(acc),
            format!("{:.3}", started.elapsed().as_secs_f64()),
        ]);
        rec.write_table("metrics.csv", metrics)?;
        Ok((test_loss, acc))
    };

    let mut diverged: Option<String> = None;
    'epochs: for epoch in 1..=s.training.epochs {
        bar.set_message(format!("{epoch}/{}", s.training.epochs));
        order.shuffle(&mut shuffle_rng);
        trainer.set_learning_rate(lr);
        let epoch_start = Instant::now();
        let mut eval_time = 0.0;
        for chunk in order.chunks(batch) {
            let n = chunk.len();
            gather_rows(train_x.view(), chunk, batch_x.view_mut());
            gather_rows(train_y.view(), chunk, batch_y.view_mut());
            let (bx, by) = (batch_x.slice(s![..n, ..]), batch_y.slice(s![..n, ..]));
            let record_eq =
                equivalence.is_some() && step.is_multiple_of(s.output.equivalence_every);
            let export_now = step == 0 && opts.export_npy.is_some();
            if record_eq {
                let log = equivalence.as_mut().expect("checked");
                let mlp64 = to_f64(&mlp);
                let upd = bp_updates.get_or_insert_with(|| Updates::zeros_like(&mlp64));
                log.reference.learning_rate = lr;
                log.reference.compute_updates(
                    &mlp64,
                    bx.mapv(|v| v.f64()).view(),
                    by.mapv(|v| v.f64()).view(),
                    upd,
                );
            }
            if export_now {
                export::initial(opts.export_npy.as_ref().expect("checked"), &mlp, bx, by)?;
            }
            let loss = trainer.train_batch(&mut mlp, bx, by, record_eq || export_now);
            if let Some(e) = trainer.take_error() {
                bar.finish_and_clear();
                return Err(e.context(format!(
                    "the actor network failed at epoch {epoch}, step {step}"
                )));
            }
            if export_now {
                let applied = trainer
                    .last_updates()
                    .context("the trainer kept no update to export")?;
                export::first_update(opts.export_npy.as_ref().expect("checked"), applied)?;
            }
            if record_eq {
                let applied = updates_f64(
                    trainer
                        .last_updates()
                        .context("the trainer kept no update to compare")?,
                );
                let reference = bp_updates.as_ref().expect("computed above");
                let log = equivalence.as_mut().expect("checked");
                for (i, (rd, cos)) in applied
                    .rel_diff(reference)
                    .into_iter()
                    .zip(applied.cosine(reference))
                    .enumerate()
                {
                    log.table.push(vec![
                        step.to_string(),
                        layer_names[i].clone(),
                        num(rd),
                        num(cos),
                    ]);
                }
            }
            step += 1;
            bar.inc(1);
            if !loss.is_finite() {
                diverged = Some(format!(
                    "training diverged at epoch {epoch}, step {step}: the batch loss is {loss}; lower training.learning_rate (now {lr})"
                ));
                break 'epochs;
            }
            loss_sum += loss;
            loss_count += n;
            if eval_every > 0 && step.is_multiple_of(eval_every) {
                let t0 = Instant::now();
                last_eval = evaluate_now(
                    epoch,
                    step,
                    loss_sum / loss_count as f64,
                    trainer.as_mut(),
                    &mlp,
                    &mut metrics,
                )?;
                (loss_sum, loss_count) = (0.0, 0);
                eval_time += t0.elapsed().as_secs_f64();
            }
        }
        let secs = epoch_start.elapsed().as_secs_f64() - eval_time;
        epoch_seconds.push(secs);
        train_seconds += secs;
        if !mlp.is_finite() {
            diverged = Some(format!(
                "training diverged in epoch {epoch}: parameters are no longer finite; lower training.learning_rate (now {lr})"
            ));
            break;
        }
        if eval_every == 0 {
            last_eval = evaluate_now(
                epoch,
                step,
                loss_sum / loss_count.max(1) as f64,
                trainer.as_mut(),
                &mlp,
                &mut metrics,
            )?;
            (loss_sum, loss_count) = (0.0, 0);
        }
        if let Some(log) = &equivalence {
            rec.write_table("equivalence.csv", &log.table)?;
        }
        lr *= s.training.lr_decay;
    }
    bar.finish_and_clear();

    let mut summary = json!({
        "name": s.name,
        "algorithm": s.algorithm.kind,
        "precision": T::NAME,
        "status": if diverged.is_some() { "diverged" } else { "completed" },
        "epochs": epoch_seconds.len(),
        "steps": step,
        "test_accuracy": last_eval.1,
        "test_loss": last_eval.0,
        "wall_seconds": started.elapsed().as_secs_f64(),
        "train_seconds": train_seconds,
        "seconds_per_epoch": epoch_seconds,
        "parameters": mlp.n_params(),
        "train_samples": train_x.nrows(),
        "test_samples": test_x.nrows(),
    });
    if let Some(log) = &equivalence {
        rec.write_table("equivalence.csv", &log.table)?;
        let rd = log.table.column("rel_diff");
        let cos = log.table.column("cosine");
        summary["equivalence"] = json!({
            "max_rel_diff": rd.iter().copied().fold(0.0, f64::max),
            "min_cosine": cos.iter().copied().fold(1.0, f64::min),
            "recorded_steps": rd.len() / layer_names.len().max(1),
        });
        if s.output.plots {
            rec.write_svg(
                "equivalence.svg",
                equivalence_plot(&log.table, &layer_names)?,
            )?;
        }
    }
    if s.output.plots {
        rec.write_svg("training.svg", training_plot(&metrics)?)?;
    }
    if let Some(cfg) = s.snn.as_ref().filter(|c| c.evaluate && diverged.is_none()) {
        crate::snn::report::run_spiking(&rec, s, cfg, &mlp, &split.test, &mut summary)?;
    }
    if let Some(stats) = trainer.runtime_stats() {
        rec.write_json("runtime_stats.json", &stats)?;
        summary["runtime"] = json!({
            "driver": s.runtime.driver,
            "messages": stats["messages"],
            "lost": stats["lost"],
            "elapsed": stats["elapsed"],
            "time_unit": stats["time_unit"],
            "time_per_sample": stats["time_per_sample"],
            "mean_queueing_delay": stats["mean_queueing_delay"],
        });
    }
    rec.write_json("summary.json", &summary)?;
    if let Some(msg) = diverged {
        anyhow::bail!("{msg} (results so far are in {})", rec.dir().display());
    }
    Ok(summary)
}

pub fn to_f64<T: Real>(mlp: &Mlp<T>) -> Mlp<f64> {
    Mlp {
        sizes: mlp.sizes.clone(),
        w: mlp.w.iter().map(|w| w.mapv(|v| v.f64())).collect(),
        b: mlp.b.iter().map(|b| b.mapv(|v| v.f64())).collect(),
        hidden: mlp.hidden,
        output: mlp.output,
    }
}

fn updates_f64<T: Real>(u: &Updates<T>) -> Updates<f64> {
    Updates {
        dw: u.dw.iter().map(|w| w.mapv(|v| v.f64())).collect(),
        db: u.db.iter().map(|b| b.mapv(|v| v.f64())).collect(),
    }
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

fn equivalence_plot(table: &Table, layers: &[String]) -> Result<String> {
    let steps = table.column("step");
    let rd = table.column("rel_diff");
    let series = layers
        .iter()
        .map(|name| {
            let pts = table
                .rows
                .iter()
                .zip(steps.iter().zip(&rd))
                .filter(|(row, _)| &row[1] == name)
                .map(|(_, (&x, &y))| (x, y.max(1e-18)))
                .collect();
            Series::new(name.clone(), pts)
        })
        .collect();
    crate::metrics::plot::svg(&[Panel {
        title: "Update vs backprop".into(),
        x_label: "training step".into(),
        y_label: "‖ΔW − ΔW_bp‖ / ‖ΔW_bp‖".into(),
        series,
        log_y: true,
    }])
}
