//! A trained rate network run with spikes (shadow training, DESIGN.md §4).
//!
//! Every layer `l = 2..L` is a population of LIF neurons whose input current
//! is `j = W[l] · (filtered spikes of layer l−1) + b[l]`, with the weights and
//! biases of the rate network reused unchanged (BN fused into them first).
//! The input layer is a Poisson source of rate `x / t_ref`.
//!
//! Scaling, so the spiking network computes what the rate network computed:
//! a presynaptic spike carries `t_ref` in the input layer (a rate `x / t_ref`
//! times `t_ref` is `x`) and the activation's `amplitude` in hidden layers
//! (the rate network's activation is `amplitude · r(j)`).
//!
//! Propagation is event-driven: each layer keeps one synaptic filter state
//! per postsynaptic neuron, and a presynaptic spike adds its pre-scaled weight
//! column (stored contiguously as a row of `Wᵀ`) to it. The synaptic work is
//! one column per spike; the per-step work is one LIF update and one filter
//! decay per neuron.
//!
//! Readout: the output layer is LIF too and the class is the output neuron
//! with the most spikes (DESIGN.md §4). Ties, including the case where no
//! output neuron spiked, are broken by the output neurons' input current
//! integrated over the presentation (the non-spiking readout used in Nengo's
//! recipe); `Readout::Current` uses that integrated current alone.

use super::encode::{PoissonEncoder, image_rng};
use super::lif::LifPopulation;
use super::synapse::{SynapseKind, SynapticFilter};
use crate::nn::activation::LifParams;
use crate::nn::{ActivationKind, Mlp, Real};

/// How a spiking network's class is read from its output layer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Readout {
    /// Most output spikes; ties broken by the integrated output current.
    #[default]
    SpikeCount,
    /// Largest output current integrated over the presentation.
    Current,
}

/// Simulation settings of a spiking evaluation.
#[derive(Clone, Debug, PartialEq)]
pub struct SpikingConfig {
    /// Step in seconds.
    pub dt: f64,
    /// Presentation time per image in seconds.
    pub presentation_time: f64,
    pub synapse: SynapseKind,
    /// Synaptic time constant τ_s in seconds.
    pub tau_s: f64,
    pub readout: Readout,
    /// Times (s, ≤ `presentation_time`) at which the class is also read out;
    /// one simulation gives the whole accuracy-vs-presentation-time curve.
    pub checkpoints: Vec<f64>,
    /// Seed of the Poisson input; image `i` uses stream `i`.
    pub seed: u64,
}

impl Default for SpikingConfig {
    fn default() -> Self {
        Self {
            dt: 1e-3,
            presentation_time: 1.0,
            synapse: SynapseKind::Alpha,
            tau_s: 1.18e-3,
            readout: Readout::SpikeCount,
            checkpoints: Vec::new(),
            seed: 0,
        }
    }
}

/// Why a rate network cannot be run with spikes.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConversionError {
    #[error(
        "spiking evaluation needs LIF-rate hidden units (network.activation = \"lif\" or \"soft_lif\"), got {0:?}"
    )]
    Activation(ActivationKind),
    #[error("{0}")]
    Config(String),
}

/// The spiking version of a trained `Mlp`.
#[derive(Clone, Debug)]
pub struct SpikingNetwork {
    pub sizes: Vec<usize>,
    /// `wt[i][k·n_out ..][..n_out]`: what one spike of neuron `k` of layer
    /// `i + 1` adds to the first filter stage of layer `i + 2`
    /// (`W[:, k] · spike scale · filter impulse`).
    pub(super) wt: Vec<Vec<f32>>,
    pub(super) bias: Vec<Vec<f32>>,
    pub lif: LifParams,
    pub cfg: SpikingConfig,
    /// Steps per presentation and at each checkpoint.
    steps: usize,
    pub(super) checkpoint_steps: Vec<usize>,
}

/// What one image's simulation produced.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ImageResult {
    /// Predicted class at each checkpoint (in `SpikingConfig::checkpoints`
    /// order) and, last, at the full presentation time.
    pub predictions: Vec<u32>,
    /// Spikes per layer (input first) over the presentation.
    pub spikes: Vec<u64>,
    /// Output spike counts at the end.
    pub output_counts: Vec<u32>,
    /// The spike-count readout needed the current tie-break (final time).
    pub tie_break: bool,
}

/// Reusable per-thread buffers: the simulation of an image allocates nothing.
#[derive(Clone, Debug)]
pub struct Workspace {
    encoder: PoissonEncoder,
    filters: Vec<SynapticFilter>,
    neurons: Vec<LifPopulation>,
    current: Vec<Vec<f32>>,
    /// Spike lists per layer (input first) for the current step.
    spikes: Vec<Vec<u32>>,
    out_counts: Vec<u32>,
    out_integral: Vec<f64>,
}

impl SpikingNetwork {
    /// Converts a trained rate network: the weights are reused (as `f32`).
    pub fn from_mlp<T: Real>(mlp: &Mlp<T>, cfg: SpikingConfig) -> Result<Self, ConversionError> {
        match mlp.hidden.kind {
            ActivationKind::Lif | ActivationKind::SoftLif => {}
            other => return Err(ConversionError::Activation(other)),
        }
        let w: Vec<Vec<f32>> = mlp
            .w
            .iter()
            .map(|w| w.iter().map(|v| v.f64() as f32).collect())
            .collect();
        let b: Vec<Vec<f32>> = mlp
            .b
            .iter()
            .map(|b| b.iter().map(|v| v.f64() as f32).collect())
            .collect();
        Self::from_parts(&mlp.sizes, &w, &b, mlp.hidden.lif, cfg)
    }

    /// From row-major `(out, in)` weights and biases per layer.
    pub fn from_parts(
        sizes: &[usize],
        w: &[Vec<f32>],
        b: &[Vec<f32>],
        lif: LifParams,
        cfg: SpikingConfig,
    ) -> Result<Self, ConversionError> {
        let bad = |m: String| Err(ConversionError::Config(m));
        if !(cfg.dt.is_finite() && cfg.dt > 0.0) {
            return bad(format!("dt must be > 0, got {}", cfg.dt));
        }
        if !(cfg.presentation_time.is_finite() && cfg.presentation_time >= cfg.dt) {
            return bad(format!(
                "presentation_time must be ≥ dt ({}), got {}",
                cfg.dt, cfg.presentation_time
            ));
        }
        if !(cfg.tau_s.is_finite() && cfg.tau_s > 0.0) {
            return bad(format!("tau_s must be > 0, got {}", cfg.tau_s));
        }
        if !(lif.tau_ref.is_finite() && lif.tau_ref > 0.0 && lif.tau_rc > 0.0) {
            return bad(format!(
                "the Poisson input rate x / t_ref needs t_ref > 0, got {}",
                lif.tau_ref
            ));
        }
        if let Some(t) = cfg
            .checkpoints
            .iter()
            .find(|&&t| !(t.is_finite() && t >= cfg.dt && t <= cfg.presentation_time))
        {
            return bad(format!(
                "presentation sweep time {t} must lie in [dt, presentation_time] = [{}, {}]",
                cfg.dt, cfg.presentation_time
            ));
        }
        if sizes.len() < 2 || w.len() != sizes.len() - 1 || b.len() != w.len() {
            return bad(format!(
                "{} weight matrices for layer sizes {sizes:?}",
                w.len()
            ));
        }
        let probe = SynapticFilter::new(1, cfg.synapse, cfg.tau_s, cfg.dt);
        let mut wt = Vec::with_capacity(w.len());
        for (i, (wi, bi)) in w.iter().zip(b).enumerate() {
            let (n_in, n_out) = (sizes[i], sizes[i + 1]);
            if wi.len() != n_in * n_out || bi.len() != n_out {
                return bad(format!("layer {} has the wrong shape", i + 2));
            }
            let spike_scale = if i == 0 { lif.tau_ref } else { lif.amplitude };
            let s = (spike_scale * probe.impulse() as f64) as f32;
            let mut t = vec![0.0f32; n_in * n_out];
            for o in 0..n_out {
                for k in 0..n_in {
                    t[k * n_out + o] = wi[o * n_in + k] * s;
                }
            }
            wt.push(t);
        }
        let steps = (cfg.presentation_time / cfg.dt).round() as usize;
        let checkpoint_steps = cfg
            .checkpoints
            .iter()
            .map(|t| ((t / cfg.dt).round() as usize).clamp(1, steps))
            .collect();
        Ok(Self {
            sizes: sizes.to_vec(),
            wt,
            bias: b.to_vec(),
            lif,
            cfg,
            steps,
            checkpoint_steps,
        })
    }

    /// Steps per presentation.
    pub fn steps(&self) -> usize {
        self.steps
    }

    /// Buffers for `run_image`.
    pub fn workspace(&self) -> Workspace {
        let layers = &self.sizes[1..];
        Workspace {
            encoder: PoissonEncoder::default(),
            filters: layers
                .iter()
                .map(|&n| SynapticFilter::new(n, self.cfg.synapse, self.cfg.tau_s, self.cfg.dt))
                .collect(),
            neurons: layers
                .iter()
                .map(|&n| LifPopulation::new(n, &self.lif, self.cfg.dt))
                .collect(),
            current: layers.iter().map(|&n| vec![0.0; n]).collect(),
            spikes: self
                .sizes
                .iter()
                .map(|&n| Vec::with_capacity(4 * n))
                .collect(),
            out_counts: vec![0; *self.sizes.last().expect("≥ 2 layers")],
            out_integral: vec![0.0; *self.sizes.last().expect("≥ 2 layers")],
        }
    }

    /// Simulates one image (`x` in `[0, 1]`, one value per input) from rest;
    /// `index` selects the Poisson stream, so results do not depend on which
    /// thread runs the image or in what order.
    pub fn run_image(&self, ws: &mut Workspace, x: &[f32], index: u64, out: &mut ImageResult) {
        assert_eq!(x.len(), self.sizes[0], "one value per input neuron");
        let mut rng = image_rng(self.cfg.seed, index);
        let n_layers = self.wt.len();
        let Workspace {
            encoder,
            filters,
            neurons,
            current,
            spikes,
            out_counts,
            out_integral,
        } = ws;
        encoder.reset(x, 1.0 / self.lif.tau_ref, &mut rng);
        filters.iter_mut().for_each(|f| f.reset());
        neurons.iter_mut().for_each(|n| n.reset());
        out_counts.fill(0);
        out_integral.fill(0.0);
        out.predictions.clear();
        out.spikes.clear();
        out.spikes.resize(self.sizes.len(), 0);
        let mut next_checkpoint = 0;
        let dt = self.cfg.dt;
        for step in 1..=self.steps {
            spikes[0].clear();
            encoder.step(dt, &mut rng, &mut spikes[0]);
            out.spikes[0] += spikes[0].len() as u64;
            for i in 0..n_layers {
                let (below, above) = spikes.split_at_mut(i + 1);
                filters[i].step_into(&self.wt[i], &below[i], &self.bias[i], &mut current[i]);
                let fired = &mut above[0];
                fired.clear();
                neurons[i].step(&current[i], fired);
                out.spikes[i + 1] += fired.len() as u64;
            }
            let last = n_layers - 1;
            for &k in &spikes[n_layers] {
                out_counts[k as usize] += 1;
            }
            for (acc, &j) in out_integral.iter_mut().zip(&current[last]) {
                *acc += j as f64;
            }
            while next_checkpoint < self.checkpoint_steps.len()
                && self.checkpoint_steps[next_checkpoint] == step
            {
                out.predictions
                    .push(self.decide(out_counts, out_integral).0 as u32);
                next_checkpoint += 1;
            }
        }
        let (class, tie) = self.decide(out_counts, out_integral);
        out.predictions.push(class as u32);
        out.tie_break = tie;
        out.output_counts.clear();
        out.output_counts.extend_from_slice(out_counts);
    }

    /// The class and whether the spike counts alone were ambiguous.
    fn decide(&self, counts: &[u32], integral: &[f64]) -> (usize, bool) {
        decide(self.cfg.readout, counts, integral)
    }
}

/// The class read from the output layer's spike `counts` and integrated
/// current, and whether the spike counts alone were ambiguous (see the
/// module doc); shared by the per-image loop and the output actor.
pub(super) fn decide(readout: Readout, counts: &[u32], integral: &[f64]) -> (usize, bool) {
    let best_current = |candidates: &mut dyn Iterator<Item = usize>| {
        candidates
            .max_by(|&a, &b| integral[a].total_cmp(&integral[b]).then(b.cmp(&a)))
            .unwrap_or(0)
    };
    match readout {
        Readout::Current => (best_current(&mut (0..integral.len())), false),
        Readout::SpikeCount => {
            let top = counts.iter().copied().max().unwrap_or(0);
            let n_top = counts.iter().filter(|&&c| c == top).count();
            let class = best_current(&mut (0..counts.len()).filter(|&k| counts[k] == top));
            (class, n_top > 1)
        }
    }
}
