//! Spiking predictive coding (DESIGN.md §4, "Spiking predictive coding") on
//! the lockstep driver: value nodes keep a graded state `x[l]`, but what
//! leaves them upward is spikes only; errors travel down graded, or as
//! signed sigma-delta error spikes (`errors = "sigma_delta"`). The batch is
//! a set of independent samples (rows) run side by side. The per-layer
//! equations (`down_message`, `relax`, `receive_quantum`, `init_hidden`,
//! `refresh_hidden`, `refresh_output`, `learn`, `quanta`) are also what the
//! actors of `runtime::spc` call, so both give the same bits.
//!
//! # The circuit
//!
//! Layer `l ≥ 2` owns `W[l]`, `b[l]` and, per sender neuron `j` of layer
//! `l − 1`, a reconstruction `r̂[l−1]_j` of the sender's activity `f(x[l−1]_j)`
//! built from the spikes it received. Its prediction `u[l] = W[l] r̂[l−1] + b[l]`
//! is kept up to date incrementally: a spike of neuron `j` carrying `q` adds
//! `q · W[l][:, j]` (a column of `W`, stored as a row of `Wᵀ`), so the cost
//! grows with spikes × fan-out, not with neurons × steps. Two forward codes:
//!
//! * `sigma_delta`: a sender remembers what it last announced; whenever
//!   `|f(x) − announced| ≥ θ` it sends `n = trunc((f(x) − announced)/θ)`
//!   signed quanta of size θ in one step (several per step), so `r̂` stays
//!   within θ of `f(x)` and θ → 0 recovers graded IL. In lockstep nothing is
//!   lost or delayed, so the sender's "announced" value and the receiver's
//!   `r̂` are the same numbers and are stored once.
//! * `lif`: `x[l]` is the input current of a LIF neuron (`snn::LifPopulation`,
//!   DESIGN.md §4 constants, one step of `dt` per relaxation step); the
//!   receiver's `r̂` is an exponential synaptic trace (τ_s) of its spikes,
//!   scaled so that its mean equals the 0.05-scaled rate `f(x)`. A LIF
//!   neuron at rest needs several ms to reach threshold and its trace is
//!   noisy (relative variance `1 / (2 τ_s rate)`), so this code continues
//!   the first sweep for `sweep_steps` steps (`x ← u` while the traces
//!   fill), reads the output as its mean over the last `learning_window`
//!   steps (the loss after the sweep, the prediction after the
//!   relaxation), and may learn from the product of the window means
//!   (`window_average = "means"`, see `WindowAverage`).
//!
//! The input is coded with sigma-delta (θ_in; a constant input is announced
//! in full in the first step) or as Poisson spikes of rate `x / t_ref`
//! through the same exponential trace.
//!
//! Errors go down graded (`ε[l+1] W[l+1]` every step), or with
//! `errors = "sigma_delta"` as signed quanta of θ_e: each error node of
//! layer `l + 1` remembers what it announced, `ε̂` (0 at the start of every
//! sample), and each relaxation step fires the quanta that bring `ε̂` within
//! θ_e of `ε` (`send_errors`). Layer `l` keeps its feedback `ε̂ W[l+1]` (or
//! `ε̂ B[l+1]`) up to date by adding `q ·` a row of the matrix per quantum,
//! and its Euler step uses that instead of the graded `ε W`. The weight
//! update stays local to layer `l + 1` (its own `ε` and `r̂`).
//!
//! # One sample
//!
//! Spikes only, from the first step: all reconstructions start at 0 and step
//! 0 is a bottom-up sweep — the input spikes, layer 2 sets `x[2] ← u[2]`
//! (the feedforward initialisation of IL, here built from spikes), layer 2
//! spikes, and so on. Then `T` relaxation steps in IL's Jacobi order (down
//! messages `ε[l+1]·W[l+1]`, graded or from error spikes, Euler steps
//! `x += γ(−ε + f'(x) ⊙ e)`, spikes bottom-up with the new predictions and
//! errors). The output is clamped or
//! nudged (β) as in IL. Learning is local: `ΔW[l] = α/(βB) · ε[l]ᵀ r̂[l−1]`,
//! `Δb[l] = α/(βB) · Σ ε[l]`, averaged over the last `learning_window`
//! relaxation steps. Prediction runs the same sweep and relaxation with the
//! output free and reads the graded output `u[L]` (softmax of the spike-driven
//! prediction); ties go to the lowest class, as in `count_correct`.

use super::PcConfig;
use super::layer::{Control, euler_step};
use crate::algo::{Momentum, Trainer};
use crate::nn::activation::LifParams;
use crate::nn::kernels::{Accum, column_sums, matmul, rank_update, transpose_into};
use crate::nn::simd::multiversion;
use crate::nn::{Activation, LossKind, Mlp, Real, Updates};
use crate::snn::encode::{PoissonEncoder, image_rng};
use crate::snn::lif::LifPopulation;
use anyhow::{Result, ensure};
use ndarray::{Array2, ArrayView2};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// How hidden value nodes send their activity up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ForwardCode {
    /// Signed quanta of size θ whenever `f(x)` moved by θ from what was sent.
    #[default]
    SigmaDelta,
    /// LIF neurons driven by `x`; the receiver filters their spikes.
    Lif,
}

/// How the clamped input is sent to layer 2.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InputCode {
    /// Sigma-delta quanta of size θ_in.
    #[default]
    SigmaDelta,
    /// Poisson spikes of rate `x / t_ref` through an exponential trace.
    Poisson,
}

/// How errors travel down to the layer below.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Graded messages `ε[l+1] W[l+1]` every step.
    #[default]
    Graded,
    /// Signed sigma-delta quanta of size θ_e: each error node remembers
    /// what it announced, `ε̂`, and the receiver keeps `ε̂ W` up to date per
    /// quantum (a row of `W`, or of the feedback matrix).
    SigmaDelta,
}

/// How the update averages over the learning window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WindowAverage {
    /// The mean of the per-step products `ε r̂ᵀ` (what IL's update is at a
    /// fixed point).
    #[default]
    Product,
    /// The product of the window means `ε̄ r̄ᵀ` (LIF code only): the noise of
    /// a spike trace enters `ε` through the prediction `W r̂`, so the mean of
    /// the products carries `−W Var(r̂)`, a weight decay set by the spike
    /// noise; the product of means divides it by the number of independent
    /// trace samples in the window.
    Means,
}

/// `[algorithm.spiking]`: the settings of `algorithm.kind = "spiking_pc"`
/// (the relaxation's γ, T, β and feedback are `[algorithm.inference]`'s).
/// The defaults are the MNIST settings that reached 98.2 %.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpikingPcConfig {
    pub code: ForwardCode,
    pub input: InputCode,
    /// Quantum θ of the hidden sigma-delta code.
    pub theta: f64,
    /// Quantum θ_in of the sigma-delta input code.
    pub theta_input: f64,
    /// Simulated seconds per relaxation step (LIF code, Poisson input).
    pub dt: f64,
    /// Time constant (s) of the exponential synaptic trace (LIF code,
    /// Poisson input).
    pub tau_s: f64,
    /// The update averages `ε r̂ᵀ` over this many final relaxation steps.
    pub learning_window: usize,
    /// Timing noise on the sigma-delta spike edges: every spike message is
    /// delivered after a uniformly drawn 0..=delay_jitter extra relaxation
    /// steps (messages may overtake one another; none is lost). 0: at once.
    pub delay_jitter: usize,
    /// LIF code: steps of dt after the first sweep step during which every
    /// hidden layer keeps `x ← u` (ε = 0) while its senders' spike traces
    /// fill: the feedforward initialisation, built from LIF spikes over
    /// time (one step is not enough: a LIF neuron at rest needs several ms
    /// to reach threshold). The relaxation's T steps follow.
    pub sweep_steps: usize,
    /// How `ε r̂ᵀ` is averaged over the learning window (`means`: LIF only).
    pub window_average: WindowAverage,
    /// How errors travel down: graded, or as sigma-delta error spikes.
    pub errors: ErrorCode,
    /// Quantum θ_e of the sigma-delta error code.
    pub theta_error: f64,
}

impl Default for SpikingPcConfig {
    fn default() -> Self {
        Self {
            code: ForwardCode::SigmaDelta,
            input: InputCode::SigmaDelta,
            theta: 0.001,
            theta_input: 0.004,
            dt: 0.001,
            tau_s: 0.005,
            learning_window: 1,
            delay_jitter: 0,
            sweep_steps: 0,
            window_average: WindowAverage::Product,
            errors: ErrorCode::Graded,
            theta_error: 0.001,
        }
    }
}

impl SpikingPcConfig {
    /// Whether the timing keys `dt`, `tau_s` mean anything.
    pub fn timed(&self) -> bool {
        self.code == ForwardCode::Lif || self.input == InputCode::Poisson
    }
}

/// Spike and message counts, summed over samples.
#[derive(Clone, Debug, Default)]
pub struct SpikeCounts {
    pub samples: u64,
    /// Relaxation steps summed over samples (the init sweep included).
    pub steps: u64,
    /// Per sending layer (input first): spikes (quanta) sent.
    pub spikes: Vec<u64>,
    /// Per edge: spike messages (a sample's step on which something fired).
    pub spike_messages: Vec<u64>,
    /// Graded error messages sent down (one per hidden edge and step).
    pub graded_messages: u64,
    /// Sigma-delta errors (`errors = "sigma_delta"`; empty when graded):
    /// per sending layer (layer 3 first, the output last), error spikes
    /// (quanta) sent down, and error spike messages (a sample's step on
    /// which that layer's error nodes fired something).
    pub error_spikes: Vec<u64>,
    pub error_spike_messages: Vec<u64>,
    /// Delayed spike messages delivered, and still in flight when a
    /// sample's settling ended (sent = delivered + in flight; none is lost).
    pub delivered: u64,
    pub in_flight: u64,
}

impl SpikeCounts {
    /// Counts for `edges` spike edges, and `error_edges` edges carrying
    /// error spikes down (0 when errors are graded).
    fn new(edges: usize, error_edges: usize) -> Self {
        Self {
            spikes: vec![0; edges],
            spike_messages: vec![0; edges],
            error_spikes: vec![0; error_edges],
            error_spike_messages: vec![0; error_edges],
            ..Default::default()
        }
    }

    fn add(&mut self, o: &SpikeCounts) {
        self.samples += o.samples;
        self.steps += o.steps;
        self.graded_messages += o.graded_messages;
        self.delivered += o.delivered;
        self.in_flight += o.in_flight;
        for (a, b) in self.spikes.iter_mut().zip(&o.spikes) {
            *a += b;
        }
        for (a, b) in self.spike_messages.iter_mut().zip(&o.spike_messages) {
            *a += b;
        }
        for (a, b) in self.error_spikes.iter_mut().zip(&o.error_spikes) {
            *a += b;
        }
        for (a, b) in self
            .error_spike_messages
            .iter_mut()
            .zip(&o.error_spike_messages)
        {
            *a += b;
        }
    }

    /// Per-sample digest: `sizes` are the layer sizes (input first).
    pub fn digest(&self, sizes: &[usize], dt: Option<f64>) -> serde_json::Value {
        let n = self.samples.max(1) as f64;
        let steps_per_sample = self.steps as f64 / n;
        let per_layer: Vec<f64> = self.spikes.iter().map(|&s| s as f64 / n).collect();
        let events: Vec<f64> = per_layer
            .iter()
            .enumerate()
            .map(|(i, s)| s * sizes[i + 1] as f64)
            .collect();
        let rate: Vec<f64> = per_layer
            .iter()
            .enumerate()
            .map(|(i, s)| s / (sizes[i] as f64 * steps_per_sample.max(1.0)))
            .collect();
        let mut v = json!({
            "samples": self.samples,
            "steps_per_sample": steps_per_sample,
            "spikes_per_sample": per_layer.iter().sum::<f64>(),
            "spikes_per_sample_per_layer": per_layer,
            "synaptic_events_per_sample": events.iter().sum::<f64>(),
            "synaptic_events_per_sample_per_layer": events,
            "spike_messages_per_sample": self.spike_messages.iter().sum::<u64>() as f64 / n,
            "spike_messages_per_sample_per_layer": self.spike_messages.iter().map(|&m| m as f64 / n).collect::<Vec<_>>(),
            "graded_messages_per_sample": self.graded_messages as f64 / n,
            "spike_messages_delivered": self.delivered,
            "spike_messages_in_flight_at_end": self.in_flight,
            "mean_spikes_per_neuron_per_step": rate,
        });
        if !self.error_spikes.is_empty() {
            // Error sender `k` is layer `k + 3`; its spikes reach the
            // `sizes[k + 1]` value nodes of the layer below.
            let per_layer: Vec<f64> = self.error_spikes.iter().map(|&s| s as f64 / n).collect();
            let events: Vec<f64> = per_layer
                .iter()
                .enumerate()
                .map(|(k, s)| s * sizes[k + 1] as f64)
                .collect();
            let messages: Vec<f64> = self
                .error_spike_messages
                .iter()
                .map(|&m| m as f64 / n)
                .collect();
            v["error_spikes_per_sample"] = json!(per_layer.iter().sum::<f64>());
            v["error_spikes_per_sample_per_layer"] = json!(per_layer);
            v["error_synaptic_events_per_sample"] = json!(events.iter().sum::<f64>());
            v["error_synaptic_events_per_sample_per_layer"] = json!(events);
            v["error_spike_messages_per_sample"] = json!(messages.iter().sum::<f64>());
            v["error_spike_messages_per_sample_per_layer"] = json!(messages);
        }
        if let Some(dt) = dt {
            v["mean_rate_hz"] = json!(rate.iter().map(|r| r / dt).collect::<Vec<_>>());
        }
        v
    }
}

/// The per-batch state of the circuit (rows = samples).
struct State<T: Real> {
    /// `Wᵀ` of every weight layer, `(n[l−1], n[l])`: a sender's column of
    /// `W` is a contiguous row here.
    wt: Vec<Array2<T>>,
    /// `rhat[i]`: layer `i + 2`'s reconstruction of its sender's activity.
    rhat: Vec<Array2<T>>,
    /// `z[i]`: the prediction of layer `i + 2` before the output
    /// non-linearity, `r̂ W[l]ᵀ + b[l]`.
    z: Vec<Array2<T>>,
    /// Value nodes, errors, `f(x)` and down-messages of layer `i + 2`
    /// (`fx`/`down` of the output layer are unused).
    x: Vec<Array2<T>>,
    eps: Vec<Array2<T>>,
    fx: Vec<Array2<T>>,
    /// Scratch for `euler_step`'s step control, which spiking PC leaves off
    /// (its γ and T were chosen for the fixed step).
    dir: Vec<Array2<T>>,
    gain: Vec<Array2<T>>,
    down: Vec<Array2<T>>,
    /// Sigma-delta errors: `ehat[k]` is what the error nodes of layer
    /// `k + 3` announced (`ε̂`, per sample and neuron); `down[k]` then holds
    /// `ε̂ W` (or `ε̂ B`), kept up to date per error spike.
    ehat: Vec<Array2<T>>,
    /// Sigma-delta errors: a row-major copy of `W[k + 3]` (or `B[k + 3]`),
    /// so an error spike's fan-out is a contiguous row (`Mlp` holds `W`
    /// column-major).
    wdown: Vec<Array2<T>>,
    /// Output prediction `u[L]`.
    u_out: Array2<T>,
    /// LIF code: the output's `z` summed over the steps it is averaged over
    /// (a rate code is read out by its mean), and the window sums of `ε`
    /// and `r̂` of every layer for `WindowAverage::Means`.
    z_acc: Array2<T>,
    eps_acc: Vec<Array2<T>>,
    rhat_acc: Vec<Array2<T>>,
    /// LIF neurons of each hidden sender (`lif[k]` for hidden layer `k + 2`),
    /// one population per row.
    lif: Vec<Vec<LifPopulation>>,
    poisson: Vec<PoissonEncoder>,
    rngs: Vec<ChaCha8Rng>,
    spikes: Vec<u32>,
    current: Vec<f32>,
    changed: Vec<bool>,
    /// Delayed edges: the sender's last announced value (the receiver's
    /// `rhat` lags it), and per edge a ring of `delay_jitter + 1` slots of
    /// quanta in flight with their message counts per row.
    announced: Vec<Array2<T>>,
    pending: Vec<Vec<Array2<T>>>,
    pending_msgs: Vec<Vec<Vec<u32>>>,
    delay_rng: Option<ChaCha8Rng>,
}

impl<T: Real> State<T> {
    fn new() -> Self {
        Self {
            wt: Vec::new(),
            rhat: Vec::new(),
            z: Vec::new(),
            x: Vec::new(),
            eps: Vec::new(),
            fx: Vec::new(),
            dir: Vec::new(),
            gain: Vec::new(),
            down: Vec::new(),
            ehat: Vec::new(),
            wdown: Vec::new(),
            u_out: Array2::zeros((0, 0)),
            z_acc: Array2::zeros((0, 0)),
            eps_acc: Vec::new(),
            rhat_acc: Vec::new(),
            lif: Vec::new(),
            poisson: Vec::new(),
            rngs: Vec::new(),
            spikes: Vec::new(),
            current: Vec::new(),
            changed: Vec::new(),
            announced: Vec::new(),
            pending: Vec::new(),
            pending_msgs: Vec::new(),
            delay_rng: None,
        }
    }

    /// Buffers for `rows` samples of a network of `sizes`.
    fn ensure(&mut self, sizes: &[usize], rows: usize, cfg: &SpikingPcConfig, lif: &LifParams) {
        let (code, dt) = (cfg.code, cfg.dt);
        let nw = sizes.len() - 1;
        let slots = cfg.delay_jitter + 1;
        if cfg.delay_jitter > 0
            && (self.pending.first().is_none_or(|p| p.len() != slots)
                || self.announced.first().is_none_or(|a| a.nrows() != rows))
        {
            self.announced = (0..nw).map(|i| Array2::zeros((rows, sizes[i]))).collect();
            self.pending = (0..nw)
                .map(|i| {
                    (0..slots)
                        .map(|_| Array2::zeros((rows, sizes[i])))
                        .collect()
                })
                .collect();
            self.pending_msgs = (0..nw).map(|_| vec![vec![0; rows]; slots]).collect();
        }
        if self.wt.len() != nw {
            self.wt = (0..nw)
                .map(|i| Array2::zeros((sizes[i], sizes[i + 1])))
                .collect();
        }
        if self.u_out.nrows() == rows && self.rhat.len() == nw {
            return;
        }
        let m = |n: usize| Array2::zeros((rows, n));
        self.rhat = (0..nw).map(|i| m(sizes[i])).collect();
        self.z = (0..nw).map(|i| m(sizes[i + 1])).collect();
        self.x = (0..nw).map(|i| m(sizes[i + 1])).collect();
        self.eps = (0..nw).map(|i| m(sizes[i + 1])).collect();
        self.fx = (0..nw).map(|i| m(sizes[i + 1])).collect();
        self.dir = (0..nw).map(|i| m(sizes[i + 1])).collect();
        self.gain = (0..nw)
            .map(|_| Array2::from_elem((rows, 1), T::one()))
            .collect();
        self.down = (0..nw).map(|i| m(sizes[i + 1])).collect();
        self.ehat = (0..nw - 1).map(|k| m(sizes[k + 2])).collect();
        self.u_out = m(sizes[nw]);
        if code == ForwardCode::Lif {
            self.z_acc = m(sizes[nw]);
            self.eps_acc = (0..nw).map(|i| m(sizes[i + 1])).collect();
            self.rhat_acc = (0..nw).map(|i| m(sizes[i])).collect();
        }
        self.lif = if code == ForwardCode::Lif {
            (0..nw - 1)
                .map(|k| {
                    (0..rows)
                        .map(|_| LifPopulation::new(sizes[k + 1], lif, dt))
                        .collect()
                })
                .collect()
        } else {
            Vec::new()
        };
        self.poisson = (0..rows).map(|_| PoissonEncoder::default()).collect();
        self.changed = vec![false; rows];
    }
}

multiversion! {
    /// `acc += q · w` (a spike's column of `W` into a prediction).
    fn axpy<T: Real>(acc: &mut [T], q: T, w: &[T]) {
        for (a, &w) in acc.iter_mut().zip(w) {
            *a += q * w;
        }
    }
}

multiversion! {
    /// `z ← b + d (z − b)`: the prediction of an exponentially decaying trace.
    fn decay_towards<T: Real>(z: &mut [T], b: &[T], d: T) {
        for (z, &b) in z.iter_mut().zip(b) {
            *z = b + d * (*z - b);
        }
    }
}

/// The settings one batch runs with.
struct Run<'a, 'y, T: Real> {
    cfg: &'a SpikingPcConfig,
    hidden: Activation,
    output: LossKind,
    gamma: T,
    steps: usize,
    /// The clamp `(y, β)`, or `None` for the free output (prediction).
    target: Option<(ArrayView2<'y, T>, T)>,
    feedback: Option<&'a [Array2<T>]>,
    /// Index of the first sample, for its Poisson stream.
    sample0: u64,
    seed: u64,
    lif: LifParams,
}

/// Runs one batch through the circuit; returns the loss of the output
/// prediction after the initial sweep (as IL returns the feedforward loss).
fn run_batch<T: Real>(
    st: &mut State<T>,
    mlp: &Mlp<T>,
    x_in: ArrayView2<T>,
    r: Run<'_, '_, T>,
    mut update: Option<(T, &mut Updates<T>)>,
    counts: &mut SpikeCounts,
) -> f64 {
    let sizes = &mlp.sizes;
    let nw = sizes.len() - 1;
    let rows = x_in.nrows();
    st.ensure(sizes, rows, r.cfg, &r.lif);
    let delayed = r.cfg.delay_jitter > 0;
    if delayed {
        for i in 0..nw {
            st.announced[i].fill(T::zero());
            st.pending[i].iter_mut().for_each(|p| p.fill(T::zero()));
            st.pending_msgs[i].iter_mut().for_each(|m| m.fill(0));
        }
        st.delay_rng = Some(image_rng(r.seed.wrapping_add(0x5eed), r.sample0));
    }
    for (w, wt) in mlp.w.iter().zip(st.wt.iter_mut()) {
        transpose_into(w.view(), wt.view_mut());
    }
    for i in 0..nw {
        st.rhat[i].fill(T::zero());
        let b = &mlp.b[i];
        for mut row in st.z[i].rows_mut() {
            row.assign(b);
        }
    }
    for pops in &mut st.lif {
        pops.iter_mut().for_each(LifPopulation::reset);
    }
    let d_syn = (-r.cfg.dt / r.cfg.tau_s).exp();
    if r.cfg.input == InputCode::Poisson {
        let max_rate = 1.0 / r.lif.tau_ref;
        st.rngs.clear();
        for (k, enc) in st.poisson.iter_mut().enumerate() {
            let mut rng = image_rng(r.seed, r.sample0 + k as u64);
            let xs: Vec<f32> = x_in.row(k).iter().map(|v| v.f64() as f32).collect();
            enc.reset(&xs, max_rate, &mut rng);
            st.rngs.push(rng);
        }
    }
    let lif = r.cfg.code == ForwardCode::Lif;
    let sweep = if lif { r.cfg.sweep_steps } else { 0 };
    let means = lif && r.cfg.window_average == WindowAverage::Means;
    counts.samples += rows as u64;
    counts.steps += (rows * (r.steps + 1 + sweep)) as u64;
    let mut loss = 0.0;
    let window = r.cfg.learning_window.min(r.steps).max(1);
    // Step 0: the bottom-up sweep that builds the state from spikes; the
    // LIF code continues it for `sweep` steps of dt (x ← u every step) and
    // reads the loss from the output averaged over the sweep's last
    // `window` steps.
    if lif {
        st.z_acc.fill(T::zero());
    }
    let sweep_avg = window.min(sweep);
    for s in 0..=sweep {
        for i in 0..nw {
            send_up(st, mlp, &r, x_in, i, d_syn, s, counts);
            init_layer(st, &r, i, nw);
        }
        if s + sweep_avg > sweep && sweep > 0 {
            st.z_acc += &st.z[nw - 1];
        }
    }
    if sweep > 0 {
        mean_output(st, &r, sweep_avg);
    }
    if let Some((y, _)) = r.target {
        loss = r.output.loss(st.u_out.view(), y).f64();
    }
    if sweep > 0 {
        // Back to the spike-driven output for the relaxation.
        st.changed.fill(true);
        refresh_layer(st, &r, nw - 1, nw);
    }
    if lif {
        st.z_acc.fill(T::zero());
        if means {
            st.eps_acc.iter_mut().for_each(|a| a.fill(T::zero()));
            st.rhat_acc.iter_mut().for_each(|a| a.fill(T::zero()));
        }
    }
    let error_spikes = r.cfg.errors == ErrorCode::SigmaDelta;
    let theta_e = T::of(r.cfg.theta_error);
    if error_spikes {
        // Every sample starts with nothing announced: ε̂ = 0, so ε̂ W = 0.
        let fits = st.wdown.len() == nw - 1
            && (0..nw - 1).all(|k| st.wdown[k].dim() == (sizes[k + 2], sizes[k + 1]));
        if !fits {
            st.wdown = (0..nw - 1)
                .map(|k| Array2::zeros((sizes[k + 2], sizes[k + 1])))
                .collect();
        }
        for k in 0..nw - 1 {
            st.ehat[k].fill(T::zero());
            st.down[k].fill(T::zero());
            let m = match r.feedback {
                Some(f) => f[k + 1].view(),
                None => mlp.w[k + 1].view(),
            };
            st.wdown[k].assign(&m);
        }
    }
    for t in 1..=r.steps {
        // 1. Down-messages from the current errors: graded ε[l+1]·W[l+1],
        // or the error spikes that bring ε̂[l+1]·W[l+1] within θ_e of it.
        for k in 0..nw - 1 {
            if error_spikes {
                let (spikes, messages) = send_errors(
                    st.eps[k + 1].view(),
                    st.wdown[k].view(),
                    theta_e,
                    &mut st.ehat[k],
                    &mut st.down[k],
                );
                counts.error_spikes[k] += spikes;
                counts.error_spike_messages[k] += messages;
                continue;
            }
            let m = match r.feedback {
                Some(f) => f[k + 1].view(),
                None => mlp.w[k + 1].view(),
            };
            if down_message(st.eps[k + 1].view(), m, st.down[k].view_mut()) {
                counts.graded_messages += rows as u64;
            }
        }
        // 2. Euler steps of the hidden value nodes.
        for k in 0..nw - 1 {
            relax(
                &r.hidden,
                r.gamma,
                st.down[k].view(),
                [&mut st.x[k], &mut st.eps[k], &mut st.fx[k]],
                &mut st.dir[k],
                &mut st.gain[k],
            );
        }
        // 3. Spikes bottom-up; receivers refresh predictions and errors.
        for i in 0..nw {
            if send_up(st, mlp, &r, x_in, i, d_syn, t, counts) {
                refresh_layer(st, &r, i, nw);
            }
        }
        let in_window = t + window > r.steps;
        if lif && in_window {
            st.z_acc += &st.z[nw - 1];
        }
        if means && in_window {
            for i in 0..nw {
                st.eps_acc[i] += &st.eps[i];
                st.rhat_acc[i] += &st.rhat[i];
            }
        }
        // 4. The local update over the learning window.
        if let Some((scale, upd)) = update.as_mut()
            && !means
        {
            for i in 0..nw {
                learn(
                    *scale,
                    (t, r.steps, window),
                    st.eps[i].view(),
                    st.rhat[i].view(),
                    (&mut upd.dw[i], &mut upd.db[i]),
                );
            }
        }
    }
    if lif && r.steps > 0 {
        mean_output(st, &r, window);
    }
    if means
        && r.steps > 0
        && let Some((scale, upd)) = update.as_mut()
    {
        // ε̄ r̄ᵀ with ε̄ = Σε / window and r̄ = Σr̂ / window.
        let w = T::of(window as f64);
        for i in 0..nw {
            rank_update(
                *scale / (w * w),
                &[(st.eps_acc[i].view(), st.rhat_acc[i].view())],
                Accum::Set,
                upd.dw[i].view_mut(),
            );
            column_sums(
                *scale / w,
                &[st.eps_acc[i].view()],
                Accum::Set,
                upd.db[i].view_mut(),
            );
        }
    }
    if delayed {
        for msgs in &st.pending_msgs {
            counts.in_flight += msgs.iter().flatten().map(|&m| m as u64).sum::<u64>();
        }
    }
    if r.steps == 0
        && let Some((scale, upd)) = update
    {
        for i in 0..nw {
            learn(
                scale,
                (0, 0, 1),
                st.eps[i].view(),
                st.rhat[i].view(),
                (&mut upd.dw[i], &mut upd.db[i]),
            );
        }
    }
    loss
}

/// Sender `i` (layer `i + 1`; 0 is the input) spikes into layer `i + 2`'s
/// reconstruction and prediction. `first`: the initial sweep. Returns
/// whether any row's prediction changed (then `st.changed` marks the rows).
#[allow(clippy::too_many_arguments)]
fn send_up<T: Real>(
    st: &mut State<T>,
    mlp: &Mlp<T>,
    r: &Run<'_, '_, T>,
    x_in: ArrayView2<T>,
    i: usize,
    d_syn: f64,
    t: usize,
    counts: &mut SpikeCounts,
) -> bool {
    let first = t == 0;
    let rows = x_in.nrows();
    let timed = if i == 0 {
        r.cfg.input == InputCode::Poisson
    } else {
        r.cfg.code == ForwardCode::Lif
    };
    if !timed {
        // Sigma-delta: a constant input is fully announced in the sweep.
        if i == 0 && !first {
            return false;
        }
        let theta = T::of(if i == 0 {
            r.cfg.theta_input
        } else {
            r.cfg.theta
        });
        let inv = T::one() / theta;
        if r.cfg.delay_jitter > 0 {
            return send_delayed(st, r, x_in, i, t, theta, counts);
        }
        let wt = &st.wt[i];
        let mut any = false;
        for row in 0..rows {
            let src = if i == 0 {
                x_in.row(row)
            } else {
                st.fx[i - 1].row(row)
            };
            let mut rh = st.rhat[i].row_mut(row);
            let mut z = st.z[i].row_mut(row);
            let z = z.as_slice_mut().expect("standard layout");
            let mut fired = 0u64;
            for (j, (&a, rh)) in src.iter().zip(rh.iter_mut()).enumerate() {
                if let Some((q, spikes)) = quanta(a - *rh, theta, inv) {
                    fired += spikes;
                    receive_quantum(rh, z, q, wt.row(j));
                }
            }
            st.changed[row] = fired > 0;
            if fired > 0 {
                any = true;
                counts.spikes[i] += fired;
                counts.spike_messages[i] += 1;
            }
        }
        return any;
    }
    // Timed codes: one step of dt; the trace decays and adds c per spike,
    // c chosen so its mean equals the coded value.
    let d = T::of(d_syn);
    let c = if i == 0 {
        r.lif.tau_ref * (1.0 - d_syn) / r.cfg.dt
    } else {
        r.lif.amplitude * (1.0 - d_syn) / r.cfg.dt
    };
    let c = T::of(c);
    let b = mlp.b[i].as_slice().expect("standard layout");
    for row in 0..rows {
        st.spikes.clear();
        if i == 0 {
            st.poisson[row].step(r.cfg.dt, &mut st.rngs[row], &mut st.spikes);
        } else {
            st.current.clear();
            st.current
                .extend(st.x[i - 1].row(row).iter().map(|v| v.f64() as f32));
            st.lif[i - 1][row].step(&st.current, &mut st.spikes);
        }
        let mut rh = st.rhat[i].row_mut(row);
        rh.mapv_inplace(|v| v * d);
        let mut z = st.z[i].row_mut(row);
        let z = z.as_slice_mut().expect("standard layout");
        decay_towards(z, b, d);
        for &j in &st.spikes {
            rh[j as usize] += c;
            axpy(
                z,
                c,
                st.wt[i]
                    .row(j as usize)
                    .as_slice()
                    .expect("standard layout"),
            );
        }
        st.changed[row] = true;
        if !st.spikes.is_empty() {
            counts.spikes[i] += st.spikes.len() as u64;
            counts.spike_messages[i] += 1;
        }
    }
    true
}

/// `send_up`'s sigma-delta path with timing noise: the sender quantises
/// against what it announced, each message waits a uniform 0..=J steps in
/// the edge's ring of slots, and the receiver applies the slot due now.
fn send_delayed<T: Real>(
    st: &mut State<T>,
    r: &Run<'_, '_, T>,
    x_in: ArrayView2<T>,
    i: usize,
    t: usize,
    theta: T,
    counts: &mut SpikeCounts,
) -> bool {
    use rand::Rng;
    let rows = x_in.nrows();
    let slots = r.cfg.delay_jitter + 1;
    let inv = T::one() / theta;
    let rng = st.delay_rng.as_mut().expect("seeded with the batch");
    // A constant input is announced in full in the sweep.
    if i > 0 || t == 0 {
        for row in 0..rows {
            let src = if i == 0 {
                x_in.row(row)
            } else {
                st.fx[i - 1].row(row)
            };
            let mut ann = st.announced[i].row_mut(row);
            let slot = (t + rng.gen_range(0..slots)) % slots;
            let mut out = st.pending[i][slot].row_mut(row);
            let mut fired = 0u64;
            for ((&a, an), o) in src.iter().zip(ann.iter_mut()).zip(out.iter_mut()) {
                if let Some((q, spikes)) = quanta(a - *an, theta, inv) {
                    *an += q;
                    *o += q;
                    fired += spikes;
                }
            }
            if fired > 0 {
                counts.spikes[i] += fired;
                counts.spike_messages[i] += 1;
                st.pending_msgs[i][slot][row] += 1;
            }
        }
    }
    let slot = t % slots;
    let wt = &st.wt[i];
    let mut any = false;
    for row in 0..rows {
        let msgs = std::mem::take(&mut st.pending_msgs[i][slot][row]);
        st.changed[row] = msgs > 0;
        if msgs == 0 {
            continue;
        }
        any = true;
        counts.delivered += msgs as u64;
        let mut due = st.pending[i][slot].row_mut(row);
        let mut rh = st.rhat[i].row_mut(row);
        let mut z = st.z[i].row_mut(row);
        let z = z.as_slice_mut().expect("standard layout");
        for (j, (q, rh)) in due.iter_mut().zip(rh.iter_mut()).enumerate() {
            if *q != T::zero() {
                *rh += *q;
                axpy(z, *q, wt.row(j).as_slice().expect("standard layout"));
                *q = T::zero();
            }
        }
    }
    any
}

/// Layer `i + 2` in the initial sweep: `x ← u` (hidden, so `ε = 0`), or the
/// output's clamp.
fn init_layer<T: Real>(st: &mut State<T>, r: &Run<'_, '_, T>, i: usize, nw: usize) {
    if i + 1 < nw {
        init_hidden(
            &r.hidden,
            st.z[i].view(),
            [&mut st.x[i], &mut st.eps[i], &mut st.fx[i]],
        );
    } else {
        st.changed.fill(true);
        refresh_layer(st, r, i, nw);
    }
}

/// The LIF code's readout: `u[L] = out(mean z)` over the `n` steps summed
/// in `st.z_acc` (a rate code is read by its mean, not by one noisy step).
fn mean_output<T: Real>(st: &mut State<T>, r: &Run<'_, '_, T>, n: usize) {
    let inv = T::one() / T::of(n.max(1) as f64);
    st.u_out.assign(&st.z_acc);
    st.u_out.mapv_inplace(|v| v * inv);
    r.output.output_inplace(st.u_out.view_mut());
}

/// Layer `i + 2` after its prediction changed (rows in `st.changed`): the
/// hidden error `ε = x − u`, or the output's `u = out(z)`, `ε = β (y − u)`.
fn refresh_layer<T: Real>(st: &mut State<T>, r: &Run<'_, '_, T>, i: usize, nw: usize) {
    if i + 1 < nw {
        refresh_hidden(&st.changed, st.x[i].view(), st.z[i].view(), &mut st.eps[i]);
        return;
    }
    refresh_output(
        r.output,
        r.target,
        st.z[i].view(),
        &mut st.u_out,
        &mut st.eps[i],
    );
}

// The per-layer equations, shared by the lockstep trainer above and the
// actors of `runtime::spc`, so that both compute the same bits.

/// The graded down-message `ε[l+1] · M` (`M` = `W[l+1]`, or `B[l+1]` under
/// feedback alignment) into `out`. All-zero errors send nothing (`out` is
/// zeroed); returns whether a message was sent.
pub(crate) fn down_message<T: Real>(
    eps: ArrayView2<T>,
    m: ArrayView2<T>,
    mut out: ndarray::ArrayViewMut2<T>,
) -> bool {
    if eps.iter().all(|&e| e == T::zero()) {
        out.fill(T::zero());
        return false;
    }
    matmul(eps, m, None, out);
    true
}

/// Sigma-delta error spikes of one layer down to the one below: every
/// error node (per row, neuron `j`) sends the signed quanta of θ_e that
/// bring its announced `ε̂_j` within θ_e of `ε_j`, and the receiver adds
/// `q · M[j, :]` (a row of `M` = `W[l+1]` or `B[l+1]`) to its feedback
/// `down = ε̂ M` per quantum, so the cost grows with error spikes × fan-out.
/// Returns the spikes sent and the messages (rows on which any fired).
pub(crate) fn send_errors<T: Real>(
    eps: ArrayView2<T>,
    m: ArrayView2<T>,
    theta: T,
    ehat: &mut Array2<T>,
    down: &mut Array2<T>,
) -> (u64, u64) {
    let inv = T::one() / theta;
    let (mut spikes, mut messages) = (0u64, 0u64);
    for ((e, mut eh), mut d) in eps
        .rows()
        .into_iter()
        .zip(ehat.rows_mut())
        .zip(down.rows_mut())
    {
        let mut fired = 0u64;
        for (j, (&e, eh)) in e.iter().zip(eh.iter_mut()).enumerate() {
            if let Some((q, n)) = quanta(e - *eh, theta, inv) {
                *eh += q;
                fired += n;
                let row = m.row(j);
                if let (Some(d), Some(w)) = (d.as_slice_mut(), row.as_slice()) {
                    axpy(d, q, w);
                } else {
                    ndarray::Zip::from(&mut d)
                        .and(&row)
                        .for_each(|d, &w| *d += q * w);
                }
            }
        }
        if fired > 0 {
            spikes += fired;
            messages += 1;
        }
    }
    (spikes, messages)
}

/// The fixed Euler step of a hidden layer's value nodes `[x, ε, f(x)]`
/// with the feedback `down` from above.
pub(crate) fn relax<T: Real>(
    act: &Activation,
    gamma: T,
    down: ArrayView2<T>,
    [x, eps, fx]: [&mut Array2<T>; 3],
    dir: &mut Array2<T>,
    gain: &mut Array2<T>,
) {
    euler_step(
        act,
        gamma,
        down,
        x.view_mut(),
        eps.view_mut(),
        fx.view_mut(),
        Control {
            limit: false,
            dir: dir.view_mut(),
            gain: gain.view_mut(),
        },
        None,
    );
}

/// A sigma-delta quantum `q` of sender neuron `j` arrives: the receiver's
/// reconstruction `r̂_j` and its prediction `z += q · W[:, j]` (`wt_row` is
/// row `j` of `Wᵀ`).
#[inline(always)]
pub(crate) fn receive_quantum<T: Real>(
    rh: &mut T,
    z: &mut [T],
    q: T,
    wt_row: ndarray::ArrayView1<T>,
) {
    *rh += q;
    axpy(z, q, wt_row.as_slice().expect("standard layout"));
}

/// The feedforward start of a hidden layer: `x ← u`, `f(x)`, `ε = 0`.
pub(crate) fn init_hidden<T: Real>(
    act: &Activation,
    z: ArrayView2<T>,
    [x, eps, fx]: [&mut Array2<T>; 3],
) {
    x.assign(&z);
    act.apply_into(x.view(), fx.view_mut());
    eps.fill(T::zero());
}

/// A hidden layer's error `ε = x − u` on the rows whose prediction changed.
pub(crate) fn refresh_hidden<T: Real>(
    changed: &[bool],
    x: ArrayView2<T>,
    z: ArrayView2<T>,
    eps: &mut Array2<T>,
) {
    for (row, &ch) in changed.iter().enumerate() {
        if ch {
            let (x, z) = (x.row(row), z.row(row));
            let mut e = eps.row_mut(row);
            ndarray::Zip::from(&mut e)
                .and(&x)
                .and(&z)
                .for_each(|e, &x, &u| *e = x - u);
        }
    }
}

/// The output layer: `u = out(z)` and `ε = β (y − u)`, or `ε = 0` when the
/// output is free (`target = None`).
pub(crate) fn refresh_output<T: Real>(
    output: LossKind,
    target: Option<(ArrayView2<T>, T)>,
    z: ArrayView2<T>,
    u_out: &mut Array2<T>,
    eps: &mut Array2<T>,
) {
    u_out.assign(&z);
    output.output_inplace(u_out.view_mut());
    match target {
        Some((y, beta)) => ndarray::Zip::from(eps)
            .and(&y)
            .and(&*u_out)
            .for_each(|e, &y, &u| {
                *e = if beta == T::one() {
                    y - u
                } else {
                    beta * (y - u)
                }
            }),
        None => eps.fill(T::zero()),
    }
}

/// The local update at relaxation step `t` of `steps` (learning window
/// `window`): `ΔW += s ε r̂ᵀ`, `Δb += s Σ ε` with `s = scale / window` over
/// the last `window` steps (set on the first of them); with `steps = 0`
/// the update of the sweep itself.
pub(crate) fn learn<T: Real>(
    scale: T,
    (t, steps, window): (usize, usize, usize),
    eps: ArrayView2<T>,
    rhat: ArrayView2<T>,
    (dw, db): (&mut Array2<T>, &mut ndarray::Array1<T>),
) {
    if steps == 0 {
        rank_update(scale, &[(eps, rhat)], Accum::Set, dw.view_mut());
        column_sums(scale, &[eps], Accum::Set, db.view_mut());
        return;
    }
    if t + window <= steps {
        return;
    }
    let s = scale / T::of(window as f64);
    let mode = if t + window == steps + 1 {
        Accum::Set
    } else {
        Accum::Add
    };
    rank_update(s, &[(eps, rhat)], mode, dw.view_mut());
    column_sums(s, &[eps], mode, db.view_mut());
}

/// The spiking PC trainer (`algorithm.kind = "spiking_pc"`, lockstep).
pub struct SpikingPc<T: Real> {
    cfg: SpikingPcConfig,
    pc: PcConfig,
    lif: LifParams,
    seed: u64,
    feedback: Option<Vec<Array2<T>>>,
    learning_rate: T,
    momentum: f64,
    optimizer: Momentum<T>,
    updates: Updates<T>,
    kept: bool,
    train: State<T>,
    eval: State<T>,
    /// Training counts since the last `take_metrics`, and in total.
    recent: SpikeCounts,
    total: SpikeCounts,
    eval_counts: SpikeCounts,
    samples_seen: u64,
    eval_seen: u64,
    /// Rate-IL on the same weights and batch, for the comparison.
    il: Option<super::Il<T>>,
    /// Per probe: the per-layer relative difference and cosine from IL.
    vs_il: Vec<(Vec<f64>, Vec<f64>)>,
    vs_il_recent: Vec<Vec<f64>>,
    sizes: Vec<usize>,
}

/// What a sigma-delta neuron sends for the change `d` since its last
/// announcement: `n` signed quanta of size θ (`n = trunc(d / θ)`, `inv =
/// 1/θ`), as the value `n θ` and the spike count `|n|`; nothing below θ.
#[inline(always)]
pub(crate) fn quanta<T: Real>(d: T, theta: T, inv: T) -> Option<(T, u64)> {
    if d.abs() >= theta {
        let n = (d * inv).trunc();
        (n != T::zero()).then(|| (n * theta, n.abs().f64() as u64))
    } else {
        None
    }
}

impl<T: Real> SpikingPc<T> {
    /// `seed` draws the Poisson input (training and evaluation streams).
    pub fn new(
        mlp: &Mlp<T>,
        cfg: SpikingPcConfig,
        pc: PcConfig,
        lif: LifParams,
        learning_rate: f64,
        momentum: f64,
        seed: u64,
    ) -> Result<Self> {
        // Spiking PC relaxes with the plain Euler step (its γ and T were
        // chosen for it); its rate-IL reference must do the same.
        let pc = PcConfig {
            step_control: super::StepControl::Fixed,
            ..pc
        };
        pc.validate()?;
        ensure!(
            mlp.sizes.len() >= 2,
            "spiking PC needs at least an input and an output layer"
        );
        let feedback = pc
            .feedback_seed
            .map(|seed| super::random_feedback(mlp, seed));
        let edges = mlp.sizes.len() - 1;
        let error_edges = Self::error_edges_of(&cfg, edges);
        Ok(Self {
            cfg,
            pc,
            lif,
            seed,
            feedback,
            learning_rate: T::of(learning_rate),
            momentum,
            optimizer: Momentum::new(momentum),
            updates: Updates::zeros_like(mlp),
            kept: false,
            train: State::new(),
            eval: State::new(),
            recent: SpikeCounts::new(edges, error_edges),
            total: SpikeCounts::new(edges, error_edges),
            eval_counts: SpikeCounts::new(edges, error_edges),
            samples_seen: 0,
            eval_seen: 0,
            il: None,
            vs_il: Vec::new(),
            vs_il_recent: Vec::new(),
            sizes: mlp.sizes.clone(),
        })
    }

    /// Spike counts of all training batches so far.
    pub fn counts(&self) -> &SpikeCounts {
        &self.total
    }

    /// Per-layer `(relative difference, cosine)` from the rate-IL update of
    /// every compared batch.
    pub fn vs_il(&self) -> &[(Vec<f64>, Vec<f64>)] {
        &self.vs_il
    }

    /// The update this rule computes on `(x, y)` with `mlp`'s parameters,
    /// without applying it (its spikes are counted as training spikes).
    pub fn compute_update(
        &mut self,
        mlp: &Mlp<T>,
        x: ArrayView2<T>,
        y: ArrayView2<T>,
    ) -> &Updates<T> {
        self.run_train(mlp, x, y);
        &self.updates
    }

    /// One training batch into `self.updates`; returns the loss after the
    /// initial sweep.
    fn run_train(&mut self, mlp: &Mlp<T>, x: ArrayView2<T>, y: ArrayView2<T>) -> f64 {
        let beta = T::of(self.pc.beta);
        let scale = super::update_scale(self.learning_rate, beta, x.nrows());
        let edges = mlp.sizes.len() - 1;
        let mut counts = SpikeCounts::new(edges, Self::error_edges_of(&self.cfg, edges));
        let run = Run {
            cfg: &self.cfg,
            hidden: mlp.hidden,
            output: mlp.output,
            gamma: T::of(self.pc.gamma),
            steps: self.pc.steps,
            target: Some((y, beta)),
            feedback: self.feedback.as_deref(),
            sample0: self.samples_seen,
            seed: self.seed,
            lif: self.lif,
        };
        let update = Some((scale, &mut self.updates));
        let loss = run_batch(&mut self.train, mlp, x, run, update, &mut counts);
        self.samples_seen += x.nrows() as u64;
        self.recent.add(&counts);
        self.total.add(&counts);
        loss
    }

    /// The edges that carry error spikes down (layer 3 … L to the one
    /// below) among `edges` weight layers; none when errors are graded.
    fn error_edges_of(cfg: &SpikingPcConfig, edges: usize) -> usize {
        match cfg.errors {
            ErrorCode::Graded => 0,
            ErrorCode::SigmaDelta => edges - 1,
        }
    }

    /// The LIF code's feedforward steps after the first sweep step.
    fn sweep_steps(&self) -> usize {
        if self.cfg.code == ForwardCode::Lif {
            self.cfg.sweep_steps
        } else {
            0
        }
    }

    fn timed_dt(&self) -> Option<f64> {
        self.cfg.timed().then_some(self.cfg.dt)
    }
}

impl<T: Real> Trainer<T> for SpikingPc<T> {
    fn train_batch(
        &mut self,
        mlp: &mut Mlp<T>,
        x: ArrayView2<T>,
        y: ArrayView2<T>,
        keep_updates: bool,
    ) -> f64 {
        let loss = self.run_train(mlp, x, y);
        if keep_updates {
            // Rate IL (graded, same γ, T, β, feedback) on the same weights
            // and batch: how far the spikes move the update.
            let mut copy = mlp.clone();
            let il = match &mut self.il {
                Some(il) => il,
                None => match super::Il::new(mlp, self.pc.clone(), self.learning_rate.f64(), 0.0) {
                    Ok(il) => self.il.insert(il),
                    Err(_) => return loss,
                },
            };
            il.set_learning_rate(self.learning_rate.f64());
            il.train_batch(&mut copy, x, y, true);
            if let Some(reference) = il.last_updates() {
                let rd = self.updates.rel_diff(reference);
                let cos = self.updates.cosine(reference);
                self.vs_il_recent.push(rd.clone());
                self.vs_il.push((rd, cos));
            }
        }
        self.optimizer.apply(mlp, &self.updates);
        self.kept = keep_updates;
        loss
    }

    fn set_learning_rate(&mut self, learning_rate: f64) {
        self.learning_rate = T::of(learning_rate);
    }

    fn last_updates(&self) -> Option<&Updates<T>> {
        self.kept.then_some(&self.updates)
    }

    fn predict(&mut self, mlp: &Mlp<T>, x: ArrayView2<T>) -> Array2<T> {
        let run = Run {
            cfg: &self.cfg,
            hidden: mlp.hidden,
            output: mlp.output,
            gamma: T::of(self.pc.gamma),
            steps: self.pc.steps,
            target: None,
            feedback: self.feedback.as_deref(),
            sample0: self.eval_seen,
            seed: self.seed.wrapping_add(1),
            lif: self.lif,
        };
        run_batch(&mut self.eval, mlp, x, run, None, &mut self.eval_counts);
        self.eval_seen += x.nrows() as u64;
        self.eval.u_out.clone()
    }

    fn metric_columns(&self) -> Vec<String> {
        let mut c = vec![
            "spikes_per_sample".to_string(),
            "synaptic_events_per_sample".to_string(),
            "spike_messages_per_sample".to_string(),
        ];
        c.extend((1..self.sizes.len()).map(|l| format!("spikes_per_sample_l{l}")));
        if self.cfg.errors == ErrorCode::SigmaDelta {
            c.extend(
                [
                    "error_spikes_per_sample",
                    "error_synaptic_events_per_sample",
                    "error_spike_messages_per_sample",
                ]
                .map(String::from),
            );
            c.extend((3..=self.sizes.len()).map(|l| format!("error_spikes_per_sample_l{l}")));
        }
        c.extend((2..=self.sizes.len()).map(|l| format!("rel_diff_il_W{l}")));
        c
    }

    fn take_metrics(&mut self) -> Vec<f64> {
        let d = self.recent.digest(&self.sizes, None);
        let mut v = vec![
            d["spikes_per_sample"].as_f64().unwrap_or(f64::NAN),
            d["synaptic_events_per_sample"].as_f64().unwrap_or(f64::NAN),
            d["spike_messages_per_sample"].as_f64().unwrap_or(f64::NAN),
        ];
        let n = self.recent.samples.max(1) as f64;
        v.extend(self.recent.spikes.iter().map(|&s| s as f64 / n));
        if self.cfg.errors == ErrorCode::SigmaDelta {
            for key in [
                "error_spikes_per_sample",
                "error_synaptic_events_per_sample",
                "error_spike_messages_per_sample",
            ] {
                v.push(d[key].as_f64().unwrap_or(f64::NAN));
            }
            v.extend(self.recent.error_spikes.iter().map(|&s| s as f64 / n));
        }
        let layers = self.sizes.len() - 1;
        for l in 0..layers {
            let vals: Vec<f64> = self.vs_il_recent.iter().map(|r| r[l]).collect();
            v.push(if vals.is_empty() {
                f64::NAN
            } else {
                vals.iter().sum::<f64>() / vals.len() as f64
            });
        }
        self.recent = SpikeCounts::new(layers, Self::error_edges_of(&self.cfg, layers));
        self.vs_il_recent.clear();
        v
    }

    fn summary_fields(&self) -> Option<(&'static str, serde_json::Value)> {
        let layers = self.sizes.len() - 1;
        // `cos`: the cosine (else the relative difference).
        let per_layer = |cos: bool, max: bool| {
            (0..layers)
                .map(|l| {
                    let vals = self.vs_il.iter().map(|p| if cos { p.1[l] } else { p.0[l] });
                    if max {
                        vals.fold(f64::NAN, f64::max)
                    } else {
                        let n = self.vs_il.len().max(1) as f64;
                        vals.sum::<f64>() / n
                    }
                })
                .collect::<Vec<_>>()
        };
        Some((
            "spiking_pc",
            json!({
                "code": self.cfg.code,
                "input": self.cfg.input,
                "theta": (self.cfg.code == ForwardCode::SigmaDelta).then_some(self.cfg.theta),
                "theta_input": (self.cfg.input == InputCode::SigmaDelta).then_some(self.cfg.theta_input),
                "dt": self.timed_dt(),
                "presentation_time": self.timed_dt().map(|dt| dt * (self.pc.steps + 1 + self.sweep_steps()) as f64),
                "relaxation_steps": self.pc.steps,
                "sweep_steps": (self.cfg.code == ForwardCode::Lif).then_some(self.cfg.sweep_steps),
                "learning_window": self.cfg.learning_window,
                "window_average": (self.cfg.code == ForwardCode::Lif).then_some(self.cfg.window_average),
                "errors": self.cfg.errors,
                "theta_error": (self.cfg.errors == ErrorCode::SigmaDelta).then_some(self.cfg.theta_error),
                "momentum": self.momentum,
                "readout": "graded output u[L] of the spike-driven prediction (ties: lowest class)",
                "training": self.total.digest(&self.sizes, self.timed_dt()),
                "evaluation": self.eval_counts.digest(&self.sizes, self.timed_dt()),
                "vs_il": {
                    "compared_batches": self.vs_il.len(),
                    "mean_rel_diff_per_layer": per_layer(false, false),
                    "max_rel_diff_per_layer": per_layer(false, true),
                    "mean_cosine_per_layer": per_layer(true, false),
                },
            }),
        ))
    }
}

/// Relative L2 difference of two updates, all layers (weights) together.
pub fn total_rel_diff<T: Real>(a: &Updates<T>, b: &Updates<T>) -> f64 {
    let (mut num, mut den) = (0.0, 0.0);
    for (wa, wb) in a.dw.iter().zip(&b.dw) {
        for (&p, &q) in wa.iter().zip(wb.iter()) {
            num += (p.f64() - q.f64()).powi(2);
            den += q.f64().powi(2);
        }
    }
    (num / den.max(f64::MIN_POSITIVE)).sqrt()
}
