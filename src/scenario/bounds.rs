//! Resource bounds checked before a run starts: the estimated memory of the
//! data sets, the network (with its optimizer and comparison state) and the
//! batch buffers against the machine's memory, and the estimated number of
//! multiply-adds against a work limit, so that a scenario that would abort
//! allocating or run for months is refused with the estimate, the limit and
//! the key to change. The estimates are deliberately generous upper bounds
//! of what the run allocates, not measurements.

use super::schema::{AlgorithmKind, DataKind, Precision, Scenario};
use super::validate::Invalid;
use crate::runtime::config::Driver;

/// Environment variable overriding the memory limit (bytes; `K`, `M`, `G`,
/// `T` suffixes are binary multiples).
pub const MEMORY_LIMIT_ENV: &str = "PCSIM_MEMORY_LIMIT";
/// Environment variable overriding the work limit (multiply-adds).
pub const WORK_LIMIT_ENV: &str = "PCSIM_WORK_LIMIT";
/// Share of the machine's physical memory one run may plan to use.
pub const MEMORY_SHARE: f64 = 0.75;
/// Default work limit: about 12 days at 10^11 multiply-adds per second.
pub const DEFAULT_WORK_LIMIT: f64 = 1e17;
/// Multiply-adds per second assumed when a work estimate is put in days.
const MADDS_PER_SECOND: f64 = 1e11;

/// The training steps a scenario asks for, known without loading the data.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepPlan {
    pub epochs: usize,
    pub train_samples: usize,
    pub test_samples: usize,
    /// The batch actually used (never more than the training set).
    pub batch: usize,
    pub steps_per_epoch: usize,
}

impl StepPlan {
    /// `None` when the sizes are not valid (checked elsewhere).
    pub fn of(s: &Scenario) -> Option<Self> {
        let (train, test) = match s.data.kind {
            DataKind::Synthetic => (s.data.synthetic.n_train, s.data.synthetic.n_test),
            DataKind::Mnist => (
                crate::data::mnist::TRAIN_SAMPLES,
                crate::data::mnist::TEST_SAMPLES,
            ),
        };
        let train = s.data.train_subset.map_or(train, |n| n.min(train));
        let test = s.data.test_subset.map_or(test, |n| n.min(test));
        let batch = s.training.batch_size.min(train);
        if batch == 0 {
            return None;
        }
        Some(Self {
            epochs: s.training.epochs,
            train_samples: train,
            test_samples: test,
            batch,
            steps_per_epoch: train.div_ceil(batch),
        })
    }

    pub fn total_steps(&self) -> usize {
        self.epochs.saturating_mul(self.steps_per_epoch)
    }
}

/// What a run is estimated to need.
#[derive(Clone, Debug, PartialEq)]
pub struct Estimate {
    /// Bytes of the data sets (stored, converted to the run's precision, one-hot targets).
    pub data: f64,
    /// Bytes of the parameters, updates, optimizer and comparison state.
    pub network: f64,
    /// Bytes of batch, pipeline and evaluation buffers.
    pub buffers: f64,
    /// The key whose value contributes most memory.
    pub memory_key: &'static str,
    /// Multiply-adds of training, evaluation and spiking evaluation.
    pub training_work: f64,
    pub evaluation_work: f64,
    pub spiking_work: f64,
    /// The key whose value contributes most work.
    pub work_key: &'static str,
}

impl Estimate {
    pub fn memory(&self) -> f64 {
        // Code, the thread pools and small state.
        const BASE: f64 = 64.0 * 1024.0 * 1024.0;
        BASE + self.data + self.network + self.buffers
    }

    pub fn work(&self) -> f64 {
        self.training_work + self.evaluation_work + self.spiking_work
    }
}

/// Estimates the memory and work of a (size-valid) scenario. All arithmetic
/// is in f64, so absurd sizes give large numbers, never an overflow.
pub fn estimate(s: &Scenario) -> Option<Estimate> {
    let plan = StepPlan::of(s)?;
    let real = match s.precision {
        Precision::F32 => 4.0,
        Precision::F64 => 8.0,
    };
    let layers: Vec<f64> = s.network.layers.iter().map(|&n| n as f64).collect();
    let features = *layers.first()?;
    let classes = *layers.last()?;
    let units: f64 = layers.iter().sum();
    let weights: f64 = layers.windows(2).map(|w| w[0] * w[1]).sum();
    let params: f64 = layers.windows(2).map(|w| (w[0] + 1.0) * w[1]).sum();
    let equivalence = s.output.equivalence_every > 0;
    let spiking = s.snn.as_ref().filter(|c| c.evaluate);

    // A sample is stored as f32 (plus its raw byte while MNIST loads),
    // converted to the run's precision, with a one-hot target.
    let per_sample = features * (4.0 + 1.0 + real) + classes * real + 8.0;
    let (train, test) = (plan.train_samples as f64, plan.test_samples as f64);
    let train_bytes = train * per_sample;
    let mut test_bytes = test * per_sample;
    if spiking.is_some() {
        test_bytes += test * features * (4.0 + real);
    }
    let centres = match s.data.kind {
        DataKind::Synthetic => {
            let d = &s.data.synthetic;
            d.n_classes as f64 * d.clusters_per_class as f64 * d.n_features as f64 * 4.0
        }
        DataKind::Mnist => 0.0,
    };
    // The full synthetic set is generated before a subset is taken.
    let (gen_train, gen_test) = match s.data.kind {
        DataKind::Synthetic => (
            s.data.synthetic.n_train as f64 * features * 4.0,
            s.data.synthetic.n_test as f64 * features * 4.0,
        ),
        DataKind::Mnist => (0.0, 0.0),
    };
    let data = train_bytes.max(gen_train) + test_bytes.max(gen_test) + centres;

    // Weights, the kept update, the trainer's buffers, momentum, feedback
    // matrices; an f64 copy and a backprop reference for equivalence; the
    // transposed weights of the spiking network.
    let mut network = params * real * 6.0;
    if s.training.optimizer != crate::algo::optim::OptimizerKind::Sgd {
        // Adam's second moment (the first takes momentum's place above).
        network += params * real;
    }
    if equivalence {
        network += params * 8.0 * 5.0;
    }
    if spiking.is_some() {
        network += params * 4.0 * 2.0;
    }

    let pipeline = match s.runtime.driver {
        Driver::Lockstep => 1.0,
        _ => s.runtime.pipeline as f64,
    };
    let batch = plan.batch as f64;
    let mut buffers = batch * units * real * 12.0 * pipeline;
    buffers += test.min(2000.0) * units * real * 4.0;
    if equivalence {
        buffers += batch * units * 8.0 * 6.0;
    }

    let synthetic = s.data.kind == DataKind::Synthetic;
    let memory_key = [
        (
            train_bytes.max(gen_train),
            "data.synthetic.n_train",
            synthetic,
        ),
        (test_bytes.max(gen_test), "data.synthetic.n_test", synthetic),
        (centres, "data.synthetic.clusters_per_class", synthetic),
        (network, "network.layers", true),
        (buffers, "training.batch_size", true),
    ]
    .into_iter()
    .filter(|c| c.2)
    .max_by(|a, b| a.0.total_cmp(&b.0))
    .map_or("network.layers", |c| c.1);

    // Multiply-adds per training sample: backprop's forward, backward and
    // update products; PC's feedforward pass, two products per layer and
    // inference step, and the update.
    let depth = layers.len() as f64;
    let per_sample = match s.algorithm.kind {
        AlgorithmKind::Bp => 3.0 * weights,
        AlgorithmKind::Il | AlgorithmKind::SpikingPc => {
            (2.0 + 2.0 * s.algorithm.inference.steps as f64) * weights
        }
        AlgorithmKind::Zil => (2.0 + 2.0 * (depth - 1.0)) * weights,
    };
    let steps = plan.total_steps() as f64;
    let mut training_work = plan.epochs as f64 * train * per_sample;
    if equivalence {
        training_work += (steps / s.output.equivalence_every as f64).ceil() * batch * 3.0 * weights;
    }
    let evaluations = if s.output.eval_every == 0 {
        plan.epochs as f64
    } else {
        (steps / s.output.eval_every as f64).floor() + 1.0
    };
    let predict_steps = match s.algorithm.kind {
        AlgorithmKind::Bp => 0.0,
        _ => s.algorithm.inference.predict_steps as f64,
    };
    let evaluation_work = evaluations * test * weights * (1.0 + 2.0 * predict_steps);
    // A spiking step updates every neuron and delivers the spikes (a few
    // per cent of the presynaptic neurons fire in a step) to their fan-out.
    let spiking_work = spiking.map_or(0.0, |c| {
        let images = c.test_subset.map_or(test, |n| (n as f64).min(test));
        images * (c.presentation_time / c.dt).ceil() * (units + 0.05 * weights)
    });
    let work_key = if spiking_work > training_work.max(evaluation_work) {
        "snn.presentation_time"
    } else if evaluation_work > training_work {
        if predict_steps > 0.0 {
            "algorithm.inference.predict_steps"
        } else {
            "output.eval_every"
        }
    } else if s.algorithm.kind == AlgorithmKind::Il
        && s.algorithm.inference.steps as f64 > plan.epochs as f64
    {
        "algorithm.inference.steps"
    } else {
        "training.epochs"
    };
    Some(Estimate {
        data,
        network,
        buffers,
        memory_key,
        training_work,
        evaluation_work,
        spiking_work,
        work_key,
    })
}

/// Physical memory of this machine in bytes (`MemTotal` of /proc/meminfo).
pub fn machine_memory() -> Option<f64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024.0)
}

/// Parses `123`, `512M`, `4G`, `1.5GiB` into bytes.
pub fn parse_bytes(text: &str) -> Option<f64> {
    let t = text.trim();
    let t = t
        .strip_suffix("iB")
        .or_else(|| t.strip_suffix('B'))
        .unwrap_or(t);
    let (number, unit) = match t.char_indices().last()? {
        (i, c) if c.is_ascii_alphabetic() => (&t[..i], c.to_ascii_uppercase()),
        _ => (t, ' '),
    };
    let scale = match unit {
        ' ' => 1.0,
        'K' => 1024.0,
        'M' => 1024.0f64.powi(2),
        'G' => 1024.0f64.powi(3),
        'T' => 1024.0f64.powi(4),
        _ => return None,
    };
    let v: f64 = number.trim().parse().ok()?;
    (v.is_finite() && v > 0.0).then_some(v * scale)
}

/// `12.3 GiB`.
pub fn human_bytes(bytes: f64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut v = bytes;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == units.len() - 1 && v >= 1024.0 {
        return format!("{bytes:.2e} B");
    }
    format!("{v:.1} {}", units[u])
}

/// The memory limit and where it comes from.
fn memory_limit() -> Result<(f64, String), Invalid> {
    if let Ok(text) = std::env::var(MEMORY_LIMIT_ENV) {
        let bytes = parse_bytes(&text).ok_or_else(|| {
            (
                format!("(environment) {MEMORY_LIMIT_ENV}"),
                format!("must be a size such as 8G or 512M, got {text:?}"),
            )
        })?;
        return Ok((bytes, format!("set by {MEMORY_LIMIT_ENV}")));
    }
    Ok(match machine_memory() {
        Some(total) => (
            MEMORY_SHARE * total,
            format!(
                "{:.0}% of this machine's {}; {MEMORY_LIMIT_ENV} changes it",
                MEMORY_SHARE * 100.0,
                human_bytes(total)
            ),
        ),
        None => (
            16.0 * 1024.0f64.powi(3),
            format!("this machine's memory is unknown; {MEMORY_LIMIT_ENV} changes it"),
        ),
    })
}

fn work_limit() -> Result<f64, Invalid> {
    match std::env::var(WORK_LIMIT_ENV) {
        Ok(text) => text
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && *v > 0.0)
            .ok_or_else(|| {
                (
                    format!("(environment) {WORK_LIMIT_ENV}"),
                    format!("must be a number of multiply-adds such as 1e18, got {text:?}"),
                )
            }),
        Err(_) => Ok(DEFAULT_WORK_LIMIT),
    }
}

/// Refuses a scenario whose estimated memory or work exceeds the limits.
pub fn check(s: &Scenario) -> Result<(), Invalid> {
    let Some(e) = estimate(s) else {
        return Ok(());
    };
    let (limit, origin) = memory_limit()?;
    if e.memory() > limit {
        return Err((
            e.memory_key.to_string(),
            format!(
                "the run would need an estimated {} of memory (data sets {}, network and optimizer state {}, batch and evaluation buffers {}), more than the limit of {} ({origin}); make this smaller",
                human_bytes(e.memory()),
                human_bytes(e.data),
                human_bytes(e.network),
                human_bytes(e.buffers),
                human_bytes(limit),
            ),
        ));
    }
    let limit = work_limit()?;
    if e.work() > limit {
        return Err((
            e.work_key.to_string(),
            format!(
                "the run would need an estimated {:.2e} multiply-adds (training {:.2e}, evaluation {:.2e}, spiking {:.2e}; about {:.0} days at {MADDS_PER_SECOND:.0e} per second), more than the limit of {limit:.2e} ({WORK_LIMIT_ENV} changes it); make this smaller",
                e.work(),
                e.training_work,
                e.evaluation_work,
                e.spiking_work,
                e.work() / MADDS_PER_SECOND / 86400.0,
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_and_print() {
        assert_eq!(parse_bytes("512"), Some(512.0));
        assert_eq!(parse_bytes("4G"), Some(4.0 * 1024.0 * 1024.0 * 1024.0));
        assert_eq!(parse_bytes("1.5MiB"), Some(1.5 * 1024.0 * 1024.0));
        assert_eq!(parse_bytes("2k"), Some(2048.0));
        for bad in ["", "G", "-1", "1X", "nan", "0"] {
            assert_eq!(parse_bytes(bad), None, "{bad}");
        }
        assert_eq!(human_bytes(1536.0), "1.5 KiB");
        assert_eq!(human_bytes(3.0 * 1024f64.powi(3)), "3.0 GiB");
        assert!(human_bytes(1e300).contains("e300"));
    }

    #[test]
    fn the_estimate_grows_with_the_data_and_the_network() {
        let text = "[network]\nlayers = [10, 64, 4]\n";
        let s = crate::scenario::parse(text, std::path::Path::new("t.toml")).unwrap();
        let e = estimate(&s).unwrap();
        // 4000 + 1000 samples of 10 f32 features (stored, converted, raw).
        assert!(
            e.data > 5000.0 * 10.0 * 8.0 && e.data < 5000.0 * 10.0 * 20.0,
            "{e:?}"
        );
        // (10 + 1) · 64 + (64 + 1) · 4 parameters, a few copies.
        assert!(e.network >= 964.0 * 4.0 * 4.0, "{e:?}");
        // BP: 3 products per sample per weight, 4000 samples, one epoch.
        let weights = 10.0 * 64.0 + 64.0 * 4.0;
        assert!(
            (e.training_work - 3.0 * weights * 4000.0).abs() < 1e-6,
            "{e:?}"
        );
        let mut big = s.clone();
        big.data.synthetic.n_train *= 1000;
        let eb = estimate(&big).unwrap();
        assert_eq!(eb.memory_key, "data.synthetic.n_train");
        // The training set is 80 % of the data and grows 1000-fold.
        assert!(eb.data > 700.0 * e.data, "{eb:?}");
    }
}
