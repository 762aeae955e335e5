//! Poisson rate coding of the input layer (DESIGN.md §4): input `x ∈ [0, 1]`
//! fires as a Poisson process of rate `x / t_ref` (so `x = 1` fires at the
//! LIF's maximal rate). Spikes are generated event by event from exponential
//! inter-spike intervals, so the process is exactly Poisson for any `dt` (a
//! step may hold several spikes of one input) and the cost grows with the
//! number of spikes plus one comparison per active input per step.

use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Exp1};

/// The Poisson spike sources of one input vector.
#[derive(Clone, Debug, Default)]
pub struct PoissonEncoder {
    /// Inputs with a non-zero rate.
    active: Vec<u32>,
    /// Their rates in Hz.
    rates: Vec<f64>,
    /// Absolute time (s) of each active input's next spike.
    next: Vec<f64>,
    /// Start of the next step (s).
    t: f64,
}

impl PoissonEncoder {
    /// Loads the input `x` (values clamped to `[0, 1]`; NaN counts as 0) with
    /// rate `x · max_rate` and draws every source's first spike time.
    pub fn reset(&mut self, x: &[f32], max_rate: f64, rng: &mut ChaCha8Rng) {
        self.active.clear();
        self.rates.clear();
        self.next.clear();
        self.t = 0.0;
        for (i, &xi) in x.iter().enumerate() {
            let xi = if xi.is_nan() {
                0.0
            } else {
                xi.clamp(0.0, 1.0) as f64
            };
            let rate = xi * max_rate;
            if rate > 0.0 {
                self.active.push(i as u32);
                self.rates.push(rate);
                let first: f64 = Exp1.sample(rng);
                self.next.push(first / rate);
            }
        }
    }

    /// Number of inputs with a non-zero rate.
    pub fn n_active(&self) -> usize {
        self.active.len()
    }

    /// Emits the spikes in `[t, t + dt)` as input indices into `spikes` (an
    /// index appears once per spike; the list is not cleared).
    pub fn step(&mut self, dt: f64, rng: &mut ChaCha8Rng, spikes: &mut Vec<u32>) {
        let end = self.t + dt;
        for ((&i, &rate), next) in self.active.iter().zip(&self.rates).zip(&mut self.next) {
            while *next < end {
                spikes.push(i);
                let gap: f64 = Exp1.sample(rng);
                *next += gap / rate;
            }
        }
        self.t = end;
    }
}

/// A seeded stream for one image: the same `(seed, index)` always gives the
/// same spikes, whatever thread evaluates it.
pub fn image_rng(seed: u64, index: u64) -> ChaCha8Rng {
    use rand::SeedableRng;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(index);
    rng
}
