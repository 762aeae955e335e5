//! `pcsim bench`: how fast this machine runs pcsim, measured the way a user
//! runs it. Prints the FMA peak (a probe with 12 independent accumulators
//! per thread, at 1 thread and at all threads), then one-epoch times of BP,
//! IL (T = 20) and Z-IL on 784-256-256-10 (batch 64, f32, plain SGD, the
//! settings of the shipped MNIST scenarios) at 1 and at all threads, with
//! the rate of the matrix products in GFLOP/s and as a share of the peak,
//! the same IL epoch on the actor runtime's wall driver against lockstep IL
//! (`wall`: ratios, and whether each configuration ended with lockstep's
//! weights), and the spiking evaluation's synaptic events per second.
//!
//! Data: MNIST from `--data` when it is there, else an MNIST-shaped
//! synthetic stream (784 inputs, ≈ 19 % non-zero pixels in [0, 1], 10
//! classes) — the report says which. FLOPs count 2 per multiply-add of the
//! products the algorithm performs (the sparse first layer counts its
//! non-zero inputs only; elementwise work is not counted).

use crate::algo::Trainer;
use crate::algo::bp::Backprop;
use crate::algo::pc::PcRule;
use crate::algo::pc::{Il, PcConfig, Zil};
use crate::data::gather_rows;
use crate::nn::activation::{Activation, ActivationKind, LifParams};
use crate::nn::simd;
use crate::nn::{LossKind, Mlp};
use crate::runtime::config::{Driver, Granularity, RuntimeConfig, Schedule};
use crate::runtime::pc::PcSettings;
use crate::runtime::trainer::AsyncTrainer;
use crate::snn::{Readout, SpikingConfig, SpikingNetwork, SynapseKind};
use anyhow::{Context, Result};
use ndarray::{Array2, s};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::PathBuf;
use std::time::Instant;

/// What to measure.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// MNIST directory (IDX files); missing → synthetic stream.
    pub data: PathBuf,
    /// Repetitions of each timing (min and median are reported).
    pub rounds: usize,
    /// Threads for the "all threads" rows (default: all cores).
    pub threads: usize,
    /// Fraction of an epoch to time (1 = the full 938 batches).
    pub epoch_fraction: f64,
    /// Images for the spiking evaluation (1 s presentation each).
    pub snn_images: usize,
    /// The workloads to measure; empty = all.
    pub only: Vec<Workload>,
}

/// A workload `pcsim bench --only` can select.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Workload {
    Bp,
    Il,
    Zil,
    /// IL on the actor runtime's wall driver against lockstep IL.
    Wall,
    Snn,
}

impl BenchOptions {
    fn measures(&self, w: Workload) -> bool {
        self.only.is_empty() || self.only.contains(&w)
    }
}

const SIZES: [usize; 4] = [784, 256, 256, 10];
const BATCH: usize = 64;

/// FMA throughput of one thread running for `seconds`, in GFLOP/s.
fn fma_probe_thread(seconds: f64) -> f64 {
    let mut flops = 0.0;
    let start = Instant::now();
    while start.elapsed().as_secs_f64() < seconds {
        flops += fma_burst();
    }
    flops / start.elapsed().as_secs_f64() / 1e9
}

/// A burst of independent FMA chains (12 accumulators, enough to cover the
/// FMA latency on current cores) at the best SIMD level; returns its FLOPs.
fn fma_burst() -> f64 {
    const ITERS: usize = 200_000;
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::*;
        #[target_feature(enable = "avx512f")]
        unsafe fn v4() -> f32 {
            let mut acc = [_mm512_set1_ps(0.0); 12];
            let (a, b) = (_mm512_set1_ps(0.999_999), _mm512_set1_ps(1e-7));
            for _ in 0..ITERS {
                for x in acc.iter_mut() {
                    *x = _mm512_fmadd_ps(*x, a, b);
                }
            }
            acc.iter().map(|&v| _mm512_reduce_add_ps(v)).sum()
        }
        #[target_feature(enable = "avx2,fma")]
        unsafe fn v3() -> f32 {
            let mut acc = [_mm256_set1_ps(0.0); 12];
            let (a, b) = (_mm256_set1_ps(0.999_999), _mm256_set1_ps(1e-7));
            for _ in 0..ITERS {
                for x in acc.iter_mut() {
                    *x = _mm256_fmadd_ps(*x, a, b);
                }
            }
            let mut out = [0.0f32; 8];
            for v in acc {
                let mut lanes = [0.0f32; 8];
                unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), v) };
                out.iter_mut().zip(lanes).for_each(|(o, l)| *o += l);
            }
            out.iter().sum()
        }
        // SAFETY: each variant runs only where the CPU has its features.
        match simd::level() {
            simd::Level::Avx512 => {
                std::hint::black_box(unsafe { v4() });
                return (ITERS * 12 * 16 * 2) as f64;
            }
            simd::Level::Avx2 => {
                std::hint::black_box(unsafe { v3() });
                return (ITERS * 12 * 8 * 2) as f64;
            }
            simd::Level::Scalar => {}
        }
    }
    let mut acc = [0.0f32; 12];
    for _ in 0..ITERS {
        for x in acc.iter_mut() {
            *x = x.mul_add(0.999_999, 1e-7);
        }
    }
    std::hint::black_box(acc);
    (ITERS * 12 * 2) as f64
}

/// Total FMA throughput of `threads` threads probing at once.
fn fma_probe(threads: usize, seconds: f64) -> f64 {
    std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|_| s.spawn(|| fma_probe_thread(seconds)))
            .collect();
        hs.into_iter()
            .map(|h| h.join().expect("probe thread"))
            .sum()
    })
}

/// How much faster the worker team runs `threads` equal parts of pure FMA
/// work (≈ 0.3 ms each, the size of a batch's phase) on `threads` threads
/// than on one: the parallelism a training step can get right now.
fn team_probe(threads: usize) -> f64 {
    let time = |t: usize| {
        let start = Instant::now();
        for _ in 0..20 {
            crate::nn::team::run_parts(threads, t, &|_| {
                std::hint::black_box(fma_burst());
            });
        }
        start.elapsed().as_secs_f64()
    };
    let (serial, parallel) = (time(1), time(threads));
    serial / parallel
}

/// Training images in [0, 1] (rows) and one-hot targets.
struct Stream {
    x: Array2<f32>,
    y: Array2<f32>,
    what: String,
}

fn stream(opts: &BenchOptions) -> Stream {
    if let Ok(split) = crate::data::mnist::load(&opts.data) {
        let (x, y) = split.train.to_real::<f32>();
        return Stream {
            x,
            y,
            what: format!("MNIST from {}", opts.data.display()),
        };
    }
    synthetic(
        60_000,
        7,
        format!(
            "synthetic MNIST-shaped stream (no MNIST at {}): 60 000 × 784, 19 % non-zero",
            opts.data.display()
        ),
    )
}

/// `n` MNIST-shaped images (784 pixels, ≈ 19 % of them non-zero, in [0, 1])
/// with random one-hot labels.
fn synthetic(n: usize, seed: u64, what: String) -> Stream {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let x = Array2::from_shape_simple_fn((n, 784), || {
        if rng.gen_bool(0.19) {
            rng.r#gen::<f32>()
        } else {
            0.0
        }
    });
    let mut y = Array2::zeros((n, 10));
    for r in 0..n {
        y[(r, rng.gen_range(0..10))] = 1.0;
    }
    Stream { x, y, what }
}

fn network(hidden: ActivationKind) -> Mlp<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    Mlp::kaiming(
        &SIZES,
        Activation::new(hidden),
        LossKind::SoftmaxCe,
        &mut rng,
    )
}

/// The IL rows' relaxation (il-mnist's): T = 20, γ = 0.2, β = 0.1.
fn il_config() -> PcConfig {
    PcConfig {
        gamma: 0.2,
        steps: 20,
        beta: 0.1,
        ..PcConfig::default()
    }
}
const IL_LEARNING_RATE: f64 = 0.05;

/// Which algorithm an epoch row runs.
#[derive(Clone, Copy, Debug)]
enum Algo {
    Bp,
    Il,
    Zil,
}

impl Algo {
    fn name(self) -> &'static str {
        match self {
            Algo::Bp => "BP",
            Algo::Il => "IL (T = 20)",
            Algo::Zil => "Z-IL",
        }
    }

    fn trainer(self, mlp: &Mlp<f32>) -> Box<dyn Trainer<f32>> {
        match self {
            Algo::Bp => Box::new(Backprop::new(mlp, 0.3, 0.0, BATCH)),
            Algo::Il => {
                Box::new(Il::new(mlp, il_config(), IL_LEARNING_RATE, 0.0).expect("valid settings"))
            }
            Algo::Zil => {
                Box::new(Zil::new(mlp, PcConfig::default(), 0.3, 0.0).expect("valid settings"))
            }
        }
    }

    /// FLOPs of one batch of `rows` samples with `nnz` non-zero inputs.
    fn flops(self, rows: usize, nnz: usize) -> f64 {
        let (n1, n2, n3) = (SIZES[1], SIZES[2], SIZES[3]);
        let (b, nnz) = (rows as f64, nnz as f64);
        let dense = |i: usize, o: usize| 2.0 * b * (i * o) as f64;
        let sparse = 2.0 * nnz * n1 as f64;
        let forward = sparse + dense(n1, n2) + dense(n2, n3);
        let updates = sparse + dense(n1, n2) + dense(n2, n3);
        let backward = dense(n3, n2) + dense(n2, n1);
        match self {
            Algo::Bp | Algo::Zil => forward + backward + updates,
            // Each step: ε·W down and the new prediction up for layers 3
            // and 4; at the first step layer 3's ε is 0 (no product).
            Algo::Il => {
                let step = 2.0 * (dense(n2, n1) + dense(n3, n2));
                forward + 20.0 * step - dense(n2, n1) + updates
            }
        }
    }
}

/// The batches of a (partial) epoch: the bench's fixed shuffle, cut into
/// batches of 64, the first `fraction` of them.
fn batches(data: &Stream, fraction: f64) -> Vec<Vec<usize>> {
    let n = data.x.nrows();
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(2));
    let steps = ((n.div_ceil(BATCH) as f64 * fraction).ceil() as usize).max(1);
    order
        .chunks(BATCH)
        .take(steps)
        .map(|c| c.to_vec())
        .collect()
}

/// Trains `trainer` on `batches` of `data`; the seconds it took, scaled to
/// a whole epoch when `fraction < 1`. Fails with the trainer's error (an
/// actor network that stalled or failed).
fn train_epoch(
    trainer: &mut dyn Trainer<f32>,
    mlp: &mut Mlp<f32>,
    data: &Stream,
    batches: &[Vec<usize>],
    fraction: f64,
) -> Result<f64> {
    // As `pcsim run` trains: in chains when the trainer takes them.
    let chain = trainer.chain_len().max(1);
    let mut bx = vec![Array2::<f32>::zeros((BATCH, 784)); chain];
    let mut by = vec![Array2::<f32>::zeros((BATCH, 10)); chain];
    let start = Instant::now();
    for group in batches.chunks(chain) {
        for ((rows, x), y) in group.iter().zip(&mut bx).zip(&mut by) {
            gather_rows(data.x.view(), rows, x.view_mut());
            gather_rows(data.y.view(), rows, y.view_mut());
        }
        let views: Vec<_> = group
            .iter()
            .zip(bx.iter().zip(&by))
            .map(|(r, (x, y))| (x.slice(s![..r.len(), ..]), y.slice(s![..r.len(), ..])))
            .collect();
        // A chain of one batch trains as `train_batch` would.
        trainer.train_chain(mlp, &views);
        if let Some(e) = trainer.take_error() {
            return Err(e);
        }
    }
    Ok(start.elapsed().as_secs_f64() / fraction.min(1.0))
}

/// Seconds of one (partial) epoch and its FLOPs.
fn epoch(algo: Algo, data: &Stream, fraction: f64, threads: usize) -> Result<(f64, f64)> {
    crate::nn::linalg::set_threads(threads);
    let mut mlp = network(ActivationKind::Relu);
    let mut trainer = algo.trainer(&mlp);
    let batches = batches(data, fraction);
    // Counted before the clock starts: the count is the bench's, not the epoch's.
    let flops: f64 = batches
        .iter()
        .map(|chunk| {
            let nnz: usize = chunk
                .iter()
                .map(|&r| data.x.row(r).iter().filter(|&&v| v != 0.0).count())
                .sum();
            algo.flops(chunk.len(), nnz)
        })
        .sum();
    let seconds = train_epoch(trainer.as_mut(), &mut mlp, data, &batches, fraction)?;
    Ok((seconds, flops / fraction.min(1.0)))
}

/// One configuration of the actor-runtime comparison.
struct WallRow {
    label: String,
    threads: usize,
    /// The wall driver's configuration (`None`: lockstep IL).
    runtime: Option<RuntimeConfig>,
    /// The lockstep row this one is compared with.
    baseline: usize,
}

/// The configurations `pcsim bench --only wall` times: lockstep IL and the
/// wall driver (event schedule, zero delay) at 1 thread, and at `threads`
/// the wall driver's shards and its layer slices (`groups`), each on
/// `threads` workers. The targets: 1 worker and the shards within
/// 1.15× of lockstep at the same thread count, the groups faster than
/// lockstep on 1 thread.
fn wall_rows(threads: usize) -> Vec<WallRow> {
    let wall = |workers: usize| RuntimeConfig {
        driver: Driver::Wall,
        schedule: Schedule::Event,
        workers,
        ..RuntimeConfig::default()
    };
    let mut rows = vec![
        WallRow {
            label: "lockstep".into(),
            threads: 1,
            runtime: None,
            baseline: 0,
        },
        WallRow {
            label: "wall, 1 worker".into(),
            threads: 1,
            runtime: Some(wall(1)),
            baseline: 0,
        },
    ];
    if threads > 1 {
        rows.push(WallRow {
            label: "lockstep".into(),
            threads,
            runtime: None,
            baseline: 2,
        });
        rows.push(WallRow {
            label: format!("wall, {threads} shards"),
            threads,
            runtime: Some(RuntimeConfig {
                shards: threads,
                ..wall(threads)
            }),
            baseline: 2,
        });
        rows.push(WallRow {
            label: format!("wall, {threads} groups"),
            threads,
            runtime: Some(RuntimeConfig {
                granularity: Granularity::Groups,
                groups: threads,
                ..wall(threads)
            }),
            baseline: 0,
        });
    }
    rows
}

/// One (partial) IL epoch of `row`: its seconds and the trained network.
fn wall_epoch(row: &WallRow, data: &Stream, fraction: f64) -> Result<(f64, Mlp<f32>)> {
    crate::nn::linalg::set_threads(row.threads);
    let mut mlp = network(ActivationKind::Relu);
    let mut trainer: Box<dyn Trainer<f32>> = match &row.runtime {
        None => Algo::Il.trainer(&mlp),
        Some(runtime) => {
            let settings = PcSettings {
                rule: PcRule::il(il_config(), SIZES.len(), IL_LEARNING_RATE, 0.0),
                schedule: runtime.schedule,
                trigger: runtime.trigger,
                period: runtime.period,
                pipeline: runtime.pipeline,
            };
            let mut trainer = AsyncTrainer::<f32>::new(runtime.clone(), settings, 0);
            // Lockstep builds its state before the clock starts; so do the actors.
            trainer
                .prepare(&mlp)
                .with_context(|| format!("pcsim bench: building {}", row.label))?;
            Box::new(trainer)
        }
    };
    let batches = batches(data, fraction);
    let seconds = train_epoch(trainer.as_mut(), &mut mlp, data, &batches, fraction)
        .with_context(|| format!("pcsim bench, IL on the actor runtime: {}", row.label))?;
    Ok((seconds, mlp))
}

/// IL on the wall driver against lockstep IL, every configuration of
/// `wall_rows` alternating within each round, and whether each ended with
/// the lockstep weights bit for bit (zero delay and the event schedule
/// make them the same computation; `groups` slices limit their Euler
/// steps on their own slice, so they may not).
fn wall(opts: &BenchOptions, data: &Stream, threads: usize) -> Result<()> {
    let rows = wall_rows(threads);
    println!(
        "IL (T = 20) on the actor runtime: wall driver, event schedule, zero delay, against lockstep IL; configurations alternate within each round"
    );
    println!(
        "{:<20} {:>7} {:>20} {:>14} {:>18} {:>14}",
        "", "threads", "s/epoch min / med", "against", "ratio min / med", "same weights"
    );
    let mut secs = vec![Vec::new(); rows.len()];
    let mut same = vec![true; rows.len()];
    let mut reference: Option<Mlp<f32>> = None;
    for _ in 0..opts.rounds.max(1) {
        for (k, row) in rows.iter().enumerate() {
            let (s, mlp) = wall_epoch(row, data, opts.epoch_fraction)?;
            secs[k].push(s);
            match &reference {
                None => reference = Some(mlp),
                Some(r) => same[k] &= r.w == mlp.w && r.b == mlp.b,
            }
        }
    }
    let stats: Vec<(f64, f64)> = secs.into_iter().map(min_median).collect();
    for (k, row) in rows.iter().enumerate() {
        let (min, med) = stats[k];
        let (against, ratio) = if row.baseline == k {
            (String::new(), String::new())
        } else {
            let (bmin, bmed) = stats[row.baseline];
            (
                format!("lockstep, {} t", rows[row.baseline].threads),
                format!("{:.2}x / {:.2}x", min / bmin, med / bmed),
            )
        };
        println!(
            "{:<20} {:>7} {:>9.3} / {:<8.3} {:>14} {:>18} {:>14}",
            row.label,
            row.threads,
            min,
            med,
            against,
            ratio,
            if k == 0 {
                "(reference)"
            } else if same[k] {
                "yes"
            } else {
                "no"
            }
        );
    }
    Ok(())
}

fn min_median(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[0], v[v.len() / 2])
}

/// The header of the BP / IL / Z-IL epoch rows.
fn epoch_header(threads: usize) {
    println!(
        "{:<12} {:>7} {:>20} {:>12} {:>9} {:>10} {:>18}",
        "",
        "threads",
        "s/epoch min / med",
        "GFLOP/epoch",
        "GFLOP/s",
        "% of peak",
        "speed-up min / med"
    );
    if threads > 1 {
        println!(
            "(cores available: speed-up of the worker team on {threads} fixed FMA parts of ≈ 0.3 ms, {threads} threads vs 1, just before each round; min / med)"
        );
    }
}

/// Runs the benchmark and prints the report.
pub fn run(opts: &BenchOptions) -> Result<()> {
    let threads = opts.threads.max(1);
    let rounds = opts.rounds.max(1);
    println!(
        "pcsim bench: {} thread(s), SIMD {} (CPU has {})",
        threads,
        simd::level().name(),
        simd::detected().name()
    );
    let peak1 = fma_probe(1, 0.5);
    let peak_all = fma_probe(threads, 0.5);
    println!(
        "FMA peak probe (12 independent accumulators per thread, f32): 1 thread {peak1:.1} GFLOP/s, {threads} threads {peak_all:.1} GFLOP/s"
    );
    let data = stream(opts);
    println!("data: {}", data.what);
    println!(
        "784-256-256-10, ReLU, softmax CE, batch 64, f32, plain SGD; one epoch = 938 batches{}; min / median of {rounds}",
        if opts.epoch_fraction < 1.0 {
            format!(
                " (timed on {:.0} % of it, scaled)",
                100.0 * opts.epoch_fraction
            )
        } else {
            String::new()
        }
    );
    let epochs = [
        (Algo::Bp, Workload::Bp),
        (Algo::Il, Workload::Il),
        (Algo::Zil, Workload::Zil),
    ];
    if epochs.iter().any(|&(_, w)| opts.measures(w)) {
        epoch_header(threads);
    }
    let thread_counts: Vec<usize> = if threads > 1 {
        vec![1, threads]
    } else {
        vec![1]
    };
    for (algo, workload) in epochs {
        if !opts.measures(workload) {
            continue;
        }
        // Thread counts alternate within each round, so a noisy minute
        // hits both sides of the speed-up alike.
        let mut secs = vec![Vec::new(); thread_counts.len()];
        let mut flops = 0.0;
        // On a shared or virtual machine the second core is not always
        // there: a short probe before every round shows how many cores'
        // worth of throughput the worker team had available.
        let mut cores = Vec::new();
        for _ in 0..rounds {
            if threads > 1 {
                cores.push(team_probe(threads));
            }
            for (k, &t) in thread_counts.iter().enumerate() {
                let (s, f) = epoch(algo, &data, opts.epoch_fraction, t)?;
                secs[k].push(s);
                flops = f;
            }
        }
        let stats: Vec<(f64, f64)> = secs.into_iter().map(min_median).collect();
        for (k, &t) in thread_counts.iter().enumerate() {
            let (min, med) = stats[k];
            let rate = flops / min / 1e9;
            let peak = if t == 1 { peak1 } else { peak_all };
            let speedup = if k == 0 {
                String::new()
            } else {
                let (lo, mid) = min_median(cores.clone());
                format!(
                    "{:.2}x / {:.2}x   (cores available {lo:.2} / {mid:.2})",
                    stats[0].0 / min,
                    stats[0].1 / med
                )
            };
            println!(
                "{:<12} {:>7} {:>9.3} / {:<8.3} {:>12.1} {:>9.1} {:>9.0} % {:>18}",
                algo.name(),
                t,
                min,
                med,
                flops / 1e9,
                rate,
                100.0 * rate / peak,
                speedup
            );
        }
    }
    if opts.measures(Workload::Wall) {
        wall(opts, &data, threads)?;
    }
    crate::nn::linalg::set_threads(threads);
    if !opts.measures(Workload::Snn) {
        return Ok(());
    }
    snn(opts, &data, &thread_counts)
}

/// Spiking evaluation: a soft-LIF network (random Kaiming weights, hidden
/// biases at the threshold as in snn-shadow-mnist) run with LIF spikes for
/// 1 s per image at dt = 1 ms, alpha synapse τ_s = 5 ms.
fn snn(opts: &BenchOptions, data: &Stream, counts: &[usize]) -> Result<()> {
    let mut mlp = network(ActivationKind::SoftLif);
    mlp.hidden = Activation::with_lif(
        ActivationKind::SoftLif,
        LifParams {
            smoothing: 0.1,
            ..LifParams::default()
        },
    );
    let hidden = mlp.b.len() - 1;
    for b in &mut mlp.b[..hidden] {
        b.fill(1.0);
    }
    let cfg = SpikingConfig {
        dt: 1e-3,
        presentation_time: 1.0,
        synapse: SynapseKind::Alpha,
        tau_s: 5e-3,
        readout: Readout::SpikeCount,
        checkpoints: Vec::new(),
        seed: 4,
    };
    let net = SpikingNetwork::from_mlp(&mlp, cfg)?;
    let n = opts.snn_images.min(data.x.nrows()).max(1);
    let x = data.x.slice(s![..n, ..]);
    let labels: Vec<u8> = data
        .y
        .slice(s![..n, ..])
        .rows()
        .into_iter()
        .map(|r| crate::nn::loss::argmax(r.iter().copied()) as u8)
        .collect();
    println!(
        "spiking evaluation: {n} images × 1 s at dt = 1 ms (784-256-256-10 LIF, random weights, alpha synapse 5 ms)"
    );
    for &t in counts {
        let mut secs = Vec::new();
        let mut events = 0.0;
        for _ in 0..opts.rounds.max(1) {
            let r = crate::snn::evaluate(&net, x, &labels, t)?;
            secs.push(r.wall_seconds);
            events = r.synaptic_events_per_image;
        }
        let (min, med) = min_median(secs);
        println!(
            "  {t} thread(s): {min:.3} / {med:.3} s (min / med), {:.2e} synaptic events/image, {:.2e} events/s, {:.1} s per 10 000 images",
            events,
            events * n as f64 / min,
            min / n as f64 * 10_000.0
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wall_rows_time_the_lockstep_computation() {
        // Zero delay and the event schedule make the wall driver's IL the
        // lockstep IL bit for bit (its 1 worker and its shards), so the
        // bench's ratios compare the same arithmetic; the `groups` slices
        // limit their steps per slice and only have to train.
        let _threads = crate::nn::linalg::threads_for_test(1);
        let rows = wall_rows(2);
        let shape: Vec<(usize, bool, usize)> = rows
            .iter()
            .map(|r| (r.threads, r.runtime.is_some(), r.baseline))
            .collect();
        assert_eq!(
            shape,
            [
                (1, false, 0),
                (1, true, 0),
                (2, false, 2),
                (2, true, 2),
                (2, true, 0)
            ]
        );
        assert_eq!(wall_rows(1).len(), 2);
        // 4 batches, the last of 8 rows.
        let data = synthetic(200, 11, "test".into());
        let initial = network(ActivationKind::Relu);
        let (_, reference) = wall_epoch(&rows[0], &data, 1.0).unwrap();
        assert_ne!(reference.w, initial.w, "lockstep trained");
        for row in &rows[1..] {
            let (seconds, mlp) = wall_epoch(row, &data, 1.0).unwrap();
            assert!(seconds.is_finite() && seconds > 0.0, "{}", row.label);
            let groups = matches!(&row.runtime, Some(r) if r.granularity == Granularity::Groups);
            if groups {
                assert_ne!(mlp.w, initial.w, "{} trained", row.label);
                assert!(mlp.w.iter().all(|w| w.iter().all(|v| v.is_finite())));
            } else {
                assert_eq!(mlp.w, reference.w, "{}", row.label);
                assert_eq!(mlp.b, reference.b, "{}", row.label);
            }
        }
        crate::nn::linalg::set_threads(1);
    }
}
