//! Spiking evaluation of a data set: every image is simulated independently
//! (from rest, with its own Poisson stream), spread over threads, and the
//! per-image results are combined in image order, so the report is the same
//! for any number of threads.

use super::network::{ConversionError, ImageResult, SpikingNetwork};
use ndarray::ArrayView2;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

/// Accuracy, activity and cost of a spiking evaluation.
#[derive(Clone, Debug, PartialEq)]
pub struct SpikingReport {
    pub images: usize,
    /// `(presentation time in s, accuracy)` for every checkpoint, then the
    /// full presentation time.
    pub accuracy_vs_time: Vec<(f64, f64)>,
    /// Accuracy at the full presentation time.
    pub accuracy: f64,
    /// Mean firing rate per layer (input first), Hz per neuron.
    pub mean_rate_hz: Vec<f64>,
    /// Spikes per image, per layer (input first).
    pub spikes_per_image: Vec<f64>,
    /// Synaptic events per image: every spike of layers 1..L−1 times its
    /// fan-out (the energy proxy).
    pub synaptic_events_per_image: f64,
    /// Fraction of images whose spike-count readout needed the tie-break.
    pub tie_break_fraction: f64,
    /// Predicted class per image at the full presentation time.
    pub predictions: Vec<u32>,
    pub wall_seconds: f64,
    pub threads: usize,
}

impl SpikingReport {
    /// Synaptic events per second of wall time.
    pub fn events_per_second(&self) -> f64 {
        self.synaptic_events_per_image * self.images as f64 / self.wall_seconds.max(1e-12)
    }
}

/// Images handed to a thread at a time.
const CHUNK: usize = 8;

/// Refuses images that do not fit the network or their labels.
pub(crate) fn check_images(
    net: &SpikingNetwork,
    x: ArrayView2<f32>,
    labels: &[u8],
) -> Result<(), ConversionError> {
    if x.ncols() != net.sizes[0] || x.nrows() != labels.len() {
        return Err(ConversionError::Config(format!(
            "{} images of {} values with {} labels for a network with {} inputs",
            x.nrows(),
            x.ncols(),
            labels.len(),
            net.sizes[0]
        )));
    }
    Ok(())
}

/// Threads for `n` images: `threads`, or every core for 0, at most one per image.
pub(crate) fn eval_threads(threads: usize, n: usize) -> usize {
    if threads == 0 {
        std::thread::available_parallelism().map_or(1, |p| p.get())
    } else {
        threads
    }
    .clamp(1, n.max(1))
}

/// Runs every row of `x` (values in `[0, 1]`) with spikes and scores the
/// predictions against `labels`. `threads = 0` uses all available cores.
/// Fails (instead of panicking) when `x` does not fit the network.
pub fn evaluate(
    net: &SpikingNetwork,
    x: ArrayView2<f32>,
    labels: &[u8],
    threads: usize,
) -> Result<SpikingReport, ConversionError> {
    check_images(net, x, labels)?;
    let started = Instant::now();
    let n = x.nrows().min(labels.len());
    let threads = eval_threads(threads, n);
    let next = AtomicUsize::new(0);
    let worker = || {
        let mut ws = net.workspace();
        let mut row = vec![0.0f32; x.ncols()];
        let mut done: Vec<(usize, ImageResult)> = Vec::new();
        loop {
            let start = next.fetch_add(CHUNK, Ordering::Relaxed);
            if start >= n {
                break;
            }
            for i in start..(start + CHUNK).min(n) {
                for (r, &v) in row.iter_mut().zip(x.row(i)) {
                    *r = v;
                }
                let mut res = ImageResult::default();
                net.run_image(&mut ws, &row, i as u64, &mut res);
                done.push((i, res));
            }
        }
        done
    };
    let mut results: Vec<Option<ImageResult>> = vec![None; n];
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads).map(|_| scope.spawn(worker)).collect();
        for h in handles {
            for (i, r) in h.join().expect("a spiking worker panicked") {
                results[i] = Some(r);
            }
        }
    });
    let results: Vec<ImageResult> = results
        .into_iter()
        .map(|r| r.expect("every image was simulated"))
        .collect();
    Ok(summarise(
        net,
        &results,
        labels,
        started.elapsed().as_secs_f64(),
        threads,
    ))
}

pub(super) fn summarise(
    net: &SpikingNetwork,
    results: &[ImageResult],
    labels: &[u8],
    wall_seconds: f64,
    threads: usize,
) -> SpikingReport {
    let n = results.len();
    let nf = n.max(1) as f64;
    let mut times = net.cfg.checkpoints.clone();
    times.push(net.cfg.presentation_time);
    let accuracy_vs_time: Vec<(f64, f64)> = times
        .iter()
        .enumerate()
        .map(|(c, &t)| {
            let correct = results
                .iter()
                .zip(labels)
                .filter(|(r, y)| r.predictions[c] == u32::from(**y))
                .count();
            (t, correct as f64 / nf)
        })
        .collect();
    let layers = net.sizes.len();
    let totals: Vec<u64> = (0..layers)
        .map(|l| results.iter().map(|r| r.spikes[l]).sum())
        .collect();
    let spikes_per_image: Vec<f64> = totals.iter().map(|&t| t as f64 / nf).collect();
    let mean_rate_hz = spikes_per_image
        .iter()
        .zip(&net.sizes)
        .map(|(&s, &size)| s / (size as f64 * net.cfg.presentation_time))
        .collect();
    let synaptic_events_per_image = (0..layers - 1)
        .map(|l| spikes_per_image[l] * net.sizes[l + 1] as f64)
        .sum();
    SpikingReport {
        images: n,
        accuracy: accuracy_vs_time.last().map_or(f64::NAN, |p| p.1),
        accuracy_vs_time,
        mean_rate_hz,
        spikes_per_image,
        synaptic_events_per_image,
        tie_break_fraction: results.iter().filter(|r| r.tie_break).count() as f64 / nf,
        predictions: results
            .iter()
            .map(|r| *r.predictions.last().expect("final prediction"))
            .collect(),
        wall_seconds,
        threads,
    }
}
