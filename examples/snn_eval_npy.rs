//! Re-runs the spiking evaluation of weights saved by an `[snn]` run
//! (`<run>/weights/W2.npy …`), to try simulation settings without training
//! again:
//!
//!     cargo run --release --example snn_eval_npy -- RUN_DIR MNIST_DIR \
//!         [presentation_s=1.0] [tau_s=0.00118] [alpha|exponential] \
//!         [spike_count|current] [n_images=10000] [smoothing=0.01]

use anyhow::{Context, Result};
use ndarray::{Array1, Array2};
use ndarray_npy::read_npy;
use pcsim::nn::activation::{Activation, ActivationKind, LifParams};
use pcsim::nn::{LossKind, Mlp};
use pcsim::snn::{Readout, SpikingConfig, SpikingNetwork, SynapseKind, evaluate};
use std::path::PathBuf;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    anyhow::ensure!(
        args.len() >= 2,
        "usage: RUN_DIR MNIST_DIR [presentation] [tau_s] [synapse] [readout] [n] [smoothing]"
    );
    let run = PathBuf::from(&args[0]);
    let arg = |i: usize, d: &str| args.get(i).cloned().unwrap_or_else(|| d.to_string());
    let presentation: f64 = arg(2, "1.0").parse()?;
    let tau_s: f64 = arg(3, "0.00118").parse()?;
    let synapse = match arg(4, "alpha").as_str() {
        "exponential" => SynapseKind::Exponential,
        _ => SynapseKind::Alpha,
    };
    let readout = match arg(5, "spike_count").as_str() {
        "current" => Readout::Current,
        _ => Readout::SpikeCount,
    };
    let n: usize = arg(6, "10000").parse()?;
    let smoothing: f64 = arg(7, "0.01").parse()?;
    let (mut w, mut b, mut sizes): (Vec<Vec<f32>>, Vec<Vec<f32>>, Vec<usize>) =
        (Vec::new(), Vec::new(), Vec::new());
    for l in 2.. {
        let path = run.join(format!("weights/W{l}.npy"));
        if !path.exists() {
            break;
        }
        let wl: Array2<f32> = read_npy(&path).with_context(|| path.display().to_string())?;
        let bl: Array1<f32> = read_npy(run.join(format!("weights/b{l}.npy")))?;
        if sizes.is_empty() {
            sizes.push(wl.ncols());
        }
        sizes.push(wl.nrows());
        w.push(wl.iter().copied().collect());
        b.push(bl.to_vec());
    }
    let split = pcsim::data::mnist::load(&PathBuf::from(&args[1]))?;
    let test = split.test.truncate(Some(n));
    let sweep: Vec<f64> = [0.01, 0.03, 0.1, 0.3]
        .into_iter()
        .filter(|&t| t < presentation)
        .collect();
    let cfg = SpikingConfig {
        dt: 1e-3,
        presentation_time: presentation,
        synapse,
        tau_s,
        readout,
        checkpoints: sweep,
        seed: 4,
    };
    let lif = LifParams {
        smoothing,
        ..LifParams::default()
    };
    let mlp = Mlp::<f32> {
        sizes: sizes.clone(),
        w: w.iter()
            .zip(sizes.windows(2))
            .map(|(w, s)| Array2::from_shape_vec((s[1], s[0]), w.clone()))
            .collect::<Result<_, _>>()?,
        b: b.iter().map(|b| Array1::from_vec(b.clone())).collect(),
        hidden: Activation::with_lif(ActivationKind::SoftLif, lif),
        output: LossKind::SoftmaxCe,
    };
    let (tx, ty) = test.to_real::<f32>();
    let (_, correct) = mlp.evaluate(tx.view(), ty.view());
    println!(
        "rate network (soft-LIF, smoothing {smoothing}): {:.4}",
        correct as f64 / test.len() as f64
    );
    let net = SpikingNetwork::from_parts(&sizes, &w, &b, lif, cfg)?;
    let r = evaluate(&net, test.x.view(), &test.labels, 0)?;
    println!(
        "images {} accuracy {:.4} in {:.1} s ({} threads)",
        r.images, r.accuracy, r.wall_seconds, r.threads
    );
    for (t, a) in &r.accuracy_vs_time {
        println!("  {t:>6} s: {a:.4}");
    }
    println!(
        "rates {:?} Hz, synaptic events/image {:.0}, tie-break {:.4}, {:.3e} events/s",
        r.mean_rate_hz,
        r.synaptic_events_per_image,
        r.tie_break_fraction,
        r.events_per_second()
    );
    Ok(())
}
