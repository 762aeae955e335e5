//! The `[snn]` part of a run: after training, convert the trained rate
//! network to spikes, evaluate the test set, and write
//! `snn_presentation.csv` (accuracy vs presentation time),
//! `snn_layers.csv` (firing rates, spikes per image), `snn_presentation.svg`,
//! the trained weights (`weights/W2.npy`, `b2.npy`, …) and the spiking fields of `summary.json` (`test_accuracy` becomes the
//! spiking accuracy, `rate_test_accuracy` the rate network's). With
//! `snn.runtime = "virtual"` the layers run as actors exchanging spike
//! messages, and the spike edges' statistics go to `snn_runtime_stats.json`
//! and `snn_runtime_edges.csv`.

use crate::data::Dataset;
use crate::metrics::plot::{Panel, Series};
use crate::metrics::{Recorder, Table, num};
use crate::nn::{Mlp, Real};
use crate::scenario::{Scenario, SnnConfig};
use crate::snn::{SnnRuntime, SpikingConfig, SpikingNetwork, evaluate, evaluate_on_actors};
use anyhow::{Context, Result};
use serde_json::json;

/// The simulation settings a scenario asks for.
pub fn spiking_config(s: &Scenario, c: &SnnConfig) -> SpikingConfig {
    let mut checkpoints: Vec<f64> = c
        .presentation_sweep
        .iter()
        .copied()
        .filter(|&t| t < c.presentation_time)
        .collect();
    checkpoints.sort_by(f64::total_cmp);
    checkpoints.dedup();
    SpikingConfig {
        dt: c.dt,
        presentation_time: c.presentation_time,
        synapse: c.synapse,
        tau_s: c.tau_s,
        readout: c.readout,
        checkpoints,
        seed: s.snn_seed(),
    }
}

/// Runs the spiking evaluation of `mlp` on `test` and records it.
pub fn run_spiking<T: Real>(
    rec: &Recorder,
    s: &Scenario,
    c: &SnnConfig,
    mlp: &Mlp<T>,
    test: &Dataset,
    summary: &mut serde_json::Value,
) -> Result<()> {
    let net = SpikingNetwork::from_mlp(mlp, spiking_config(s, c))
        .context("cannot run the trained network with spikes")?;
    // The trained weights the spiking network reuses, for numpy users and
    // for re-running the spiking evaluation (`examples/snn_eval_npy.rs`).
    let wdir = rec.path("weights");
    std::fs::create_dir_all(&wdir).with_context(|| format!("cannot create {}", wdir.display()))?;
    for (i, (w, b)) in mlp.w.iter().zip(&mlp.b).enumerate() {
        crate::metrics::write_npy(&wdir.join(format!("W{}.npy", i + 2)), w)?;
        crate::metrics::write_npy(&wdir.join(format!("b{}.npy", i + 2)), b)?;
    }
    let test = test.clone().truncate(c.test_subset);
    let clamped = test.x.iter().filter(|v| !(0.0..=1.0).contains(*v)).count() as f64
        / test.x.len().max(1) as f64;
    let (tx, ty) = test.to_real::<T>();
    let (_, rate_correct) = mlp.evaluate(tx.view(), ty.view());
    let rate_subset_acc = rate_correct as f64 / test.len().max(1) as f64;

    // `snn.threads = 0` follows `--threads` (every core unless limited).
    let threads = match c.threads {
        0 => crate::nn::linalg::threads(),
        n => n,
    };
    let (report, actors) = match c.runtime {
        SnnRuntime::Loop => (evaluate(&net, test.x.view(), &test.labels, threads)?, None),
        SnnRuntime::Virtual => {
            let (r, a) = evaluate_on_actors(
                &net,
                test.x.view(),
                &test.labels,
                threads,
                &s.runtime,
                s.runtime_seed(),
            )?;
            (r, Some(a))
        }
    };

    let mut table = Table::new(&["presentation_time", "spiking_accuracy", "rate_accuracy"]);
    for &(t, acc) in &report.accuracy_vs_time {
        table.push(vec![num(t), num(acc), num(rate_subset_acc)]);
    }
    rec.write_table("snn_presentation.csv", &table)?;
    let mut layers = Table::new(&["layer", "size", "mean_rate_hz", "spikes_per_image"]);
    for (l, ((&size, &rate), &spikes)) in net
        .sizes
        .iter()
        .zip(&report.mean_rate_hz)
        .zip(&report.spikes_per_image)
        .enumerate()
    {
        layers.push(vec![
            (l + 1).to_string(),
            size.to_string(),
            num(rate),
            num(spikes),
        ]);
    }
    rec.write_table("snn_layers.csv", &layers)?;
    if s.output.plots {
        let times: Vec<f64> = report.accuracy_vs_time.iter().map(|p| p.0).collect();
        rec.write_svg(
            "snn_presentation.svg",
            crate::metrics::plot::svg(&[Panel {
                title: "Spiking accuracy vs presentation time".into(),
                x_label: "presentation time (s)".into(),
                y_label: "test accuracy".into(),
                series: vec![
                    Series::new("spiking", report.accuracy_vs_time.clone()),
                    Series::new(
                        "rate network",
                        times.iter().map(|&t| (t, rate_subset_acc)).collect(),
                    ),
                ],
                log_y: false,
            }])?,
        )?;
    }

    summary["rate_test_accuracy"] = summary["test_accuracy"].clone();
    summary["test_accuracy"] = json!(report.accuracy);
    summary["snn"] = json!({
        "test_images": report.images,
        "presentation_time": c.presentation_time,
        "dt": c.dt,
        "synapse": c.synapse,
        "tau_s": c.tau_s,
        "readout": c.readout,
        "seed": s.snn_seed(),
        "spiking_accuracy": report.accuracy,
        "rate_accuracy_same_images": rate_subset_acc,
        "accuracy_vs_presentation_time": report.accuracy_vs_time
            .iter()
            .map(|&(t, a)| json!({"presentation_time": t, "accuracy": a}))
            .collect::<Vec<_>>(),
        "mean_rate_hz": report.mean_rate_hz,
        "spikes_per_image": report.spikes_per_image,
        "synaptic_events_per_image": report.synaptic_events_per_image,
        "synaptic_events_per_second": report.events_per_second(),
        "tie_break_fraction": report.tie_break_fraction,
        "input_clamped_fraction": clamped,
        "eval_seconds": report.wall_seconds,
        "threads": report.threads,
        "runtime": c.runtime,
    });
    if let Some(a) = actors {
        // Virtual time is simulated seconds here (see snn::actors).
        let stats = a.stats.to_json("simulated seconds");
        rec.write_json("snn_runtime_stats.json", &stats)?;
        rec.write_table("snn_runtime_edges.csv", &a.stats.edge_table())?;
        let images = report.images.max(1) as f64;
        summary["snn"]["actors"] = json!({
            "spike_messages_per_image": a.stats.messages() as f64 / images,
            "lost": a.stats.lost(),
            "in_flight": a.stats.in_flight(),
            "late_spikes_per_image": a.late_spikes_per_image,
            "mean_latency": stats["mean_latency"],
        });
    }
    Ok(())
}
