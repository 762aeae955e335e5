//! Timing models resolved from the `[runtime]` table: per-edge-class delays
//! (up/down), per-actor compute times, local clocks (drift, jitter), fault
//! injection (loss, duplication) and the delivery discipline (FIFO per edge
//! or per message). All randomness comes from seeded streams owned by the
//! edge or the actor it belongs to, so a run is reproducible.

use super::actor::Direction;
use super::config::{DelayConfig, DelayKind, Delivery, RuntimeConfig};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Exp, LogNormal, Normal};

/// A sampler of non-negative durations.
#[derive(Clone, Debug)]
pub enum Delay {
    Fixed(f64),
    Uniform(f64, f64),
    Exponential(Exp<f64>),
    Lognormal(LogNormal<f64>),
}

impl Delay {
    pub fn from_config(d: &DelayConfig) -> Self {
        match d.kind {
            _ if d.mean == 0.0 && d.kind != DelayKind::Uniform => Delay::Fixed(0.0),
            DelayKind::Fixed => Delay::Fixed(d.mean),
            DelayKind::Uniform => Delay::Uniform(d.mean - d.spread, d.mean + d.spread),
            DelayKind::Exponential => {
                Delay::Exponential(Exp::new(1.0 / d.mean).expect("validated mean > 0"))
            }
            DelayKind::Lognormal => {
                // mean = exp(μ + σ²/2)
                let sigma = d.spread;
                let mu = d.mean.ln() - sigma * sigma / 2.0;
                Delay::Lognormal(LogNormal::new(mu, sigma).expect("validated σ ≥ 0"))
            }
        }
    }

    pub fn is_zero(&self) -> bool {
        matches!(self, Delay::Fixed(v) if *v == 0.0)
    }

    #[inline]
    pub fn sample(&self, rng: &mut ChaCha8Rng) -> f64 {
        match self {
            Delay::Fixed(v) => *v,
            Delay::Uniform(a, b) => {
                if a == b {
                    *a
                } else {
                    rng.gen_range(*a..*b)
                }
            }
            Delay::Exponential(d) => d.sample(rng),
            Delay::Lognormal(d) => d.sample(rng),
        }
    }
}

/// An actor's local clock: `local = (1 + drift) · virtual + offset`; timers
/// fire with Gaussian jitter.
#[derive(Clone, Debug)]
pub struct Clock {
    pub rate: f64,
    pub offset: f64,
    pub jitter: Option<Normal<f64>>,
}

impl Clock {
    pub fn local(&self, t: f64) -> f64 {
        self.rate * t + self.offset
    }
    pub fn to_virtual(&self, local: f64) -> f64 {
        (local - self.offset) / self.rate
    }
    pub fn jitter(&self, rng: &mut ChaCha8Rng) -> f64 {
        self.jitter.as_ref().map_or(0.0, |n| n.sample(rng))
    }
}

/// Everything a driver needs to time a network.
#[derive(Clone, Debug)]
pub struct Timing {
    pub up: Delay,
    pub down: Delay,
    pub compute: Vec<Delay>,
    pub clocks: Vec<Clock>,
    pub loss: f64,
    pub duplication: f64,
    pub delivery: Delivery,
    pub seed: u64,
}

impl Timing {
    /// Ideal timing: zero delays, no faults.
    pub fn ideal(n_actors: usize, seed: u64) -> Self {
        Self {
            up: Delay::Fixed(0.0),
            down: Delay::Fixed(0.0),
            compute: vec![Delay::Fixed(0.0); n_actors],
            clocks: vec![
                Clock {
                    rate: 1.0,
                    offset: 0.0,
                    jitter: None
                };
                n_actors
            ],
            loss: 0.0,
            duplication: 0.0,
            delivery: Delivery::Fifo,
            seed,
        }
    }

    /// Resolves the scenario's timing for actors named `names`; each actor's
    /// clock drift is drawn from its own stream.
    pub fn from_config(r: &RuntimeConfig, names: &[String], seed: u64) -> Self {
        let compute = names
            .iter()
            .map(|n| Delay::from_config(r.actor_compute.get(n).unwrap_or(&r.compute)))
            .collect();
        let clocks = (0..names.len())
            .map(|i| {
                let mut rng = stream(seed, 1, i as u64);
                let d = if r.drift > 0.0 {
                    rng.gen_range(-r.drift..r.drift)
                } else {
                    0.0
                };
                Clock {
                    rate: 1.0 + d,
                    offset: 0.0,
                    jitter: (r.jitter > 0.0)
                        .then(|| Normal::new(0.0, r.jitter).expect("validated jitter ≥ 0")),
                }
            })
            .collect();
        Self {
            up: Delay::from_config(&r.delay_up),
            down: Delay::from_config(&r.delay_down),
            compute,
            clocks,
            loss: r.loss,
            duplication: r.duplication,
            delivery: r.delivery,
            seed,
        }
    }

    pub fn delay(&self, direction: Direction) -> &Delay {
        match direction {
            Direction::Up => &self.up,
            Direction::Down => &self.down,
        }
    }

    pub fn faults(&self) -> super::route::Faults {
        super::route::Faults {
            loss: self.loss,
            duplication: self.duplication,
        }
    }

    /// True when nothing delays or perturbs messages.
    pub fn is_ideal(&self) -> bool {
        self.up.is_zero() && self.down.is_zero() && self.loss == 0.0 && self.duplication == 0.0
    }
}

/// The seeded random stream `index` of kind `kind` (1: clocks, 2: edges, 3: actors).
pub fn stream(seed: u64, kind: u64, index: u64) -> ChaCha8Rng {
    use rand::SeedableRng;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(kind.wrapping_mul(1 << 32).wrapping_add(index));
    rng
}
