//! Synaptic filters that turn spike trains into currents (DESIGN.md §4).
//!
//! A spike is a unit-area impulse (`1/dt` for one step). Each filter stage is
//! the exact discretisation of `τ_s dy/dt = u − y` for an input held over the
//! step, `y ← a·y + (1 − a)·u` with `a = e^{−dt/τ_s}`; every stage has unit DC
//! gain, so a train of rate `r` filters to a mean of `r`. The exponential
//! filter is one stage, the alpha filter `t/τ_s² e^{−t/τ_s}` two stages in
//! cascade.
//!
//! The filters are linear, so a layer keeps one filter state per
//! *postsynaptic* neuron and a presynaptic spike adds its weight column
//! (scaled by `(1 − a)/dt`) to the first stage: the synaptic work is
//! proportional to the number of spikes, not to neurons × steps.

/// Shape of the synaptic kernel of a spiking network.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SynapseKind {
    /// First-order low-pass `e^{−t/τ_s}/τ_s`.
    Exponential,
    /// Alpha function `t e^{−t/τ_s}/τ_s²` (two first-order stages).
    #[default]
    Alpha,
}

/// Filter state of a group of postsynaptic neurons.
#[derive(Clone, Debug)]
pub struct SynapticFilter {
    kind: SynapseKind,
    /// Decay per step `a = e^{−dt/τ_s}`.
    decay: f32,
    /// First stage; spikes are added here (already scaled by `impulse`).
    stage1: Vec<f32>,
    /// Second stage (alpha only).
    stage2: Vec<f32>,
    /// `(1 − a)/dt`: what one spike adds to the first stage, per unit weight.
    impulse: f32,
}

impl SynapticFilter {
    pub fn new(n: usize, kind: SynapseKind, tau_s: f64, dt: f64) -> Self {
        let decay = (-dt / tau_s).exp();
        Self {
            kind,
            decay: decay as f32,
            stage1: vec![0.0; n],
            stage2: vec![0.0; if kind == SynapseKind::Alpha { n } else { 0 }],
            impulse: ((1.0 - decay) / dt) as f32,
        }
    }

    /// What a spike of unit weight adds to the first stage.
    pub fn impulse(&self) -> f32 {
        self.impulse
    }

    pub fn reset(&mut self) {
        self.stage1.fill(0.0);
        self.stage2.fill(0.0);
    }

    /// Start of a step: the first stage decays, after which the step's
    /// spikes are added with `add`.
    pub fn decay(&mut self) {
        let a = self.decay;
        self.stage1.iter_mut().for_each(|y| *y *= a);
    }

    /// Adds one spike carrying the (pre-scaled) weight column `w`.
    #[inline]
    pub fn add(&mut self, w: &[f32]) {
        for (y, &w) in self.stage1.iter_mut().zip(w) {
            *y += w;
        }
    }

    /// End of a step: runs the remaining stages and returns the filtered
    /// current.
    pub fn output(&mut self) -> &[f32] {
        match self.kind {
            SynapseKind::Exponential => &self.stage1,
            SynapseKind::Alpha => {
                let a = self.decay;
                for (y2, &y1) in self.stage2.iter_mut().zip(&self.stage1) {
                    *y2 = a * *y2 + (1.0 - a) * y1;
                }
                &self.stage2
            }
        }
    }

    /// Filters a single spike train (given as spike counts per step) and
    /// returns the output per step: a reference path for tests and plots.
    pub fn filter_counts(&mut self, counts: &[u32]) -> Vec<f32> {
        let mut out = Vec::with_capacity(counts.len());
        for &c in counts {
            self.decay();
            let imp = self.impulse * c as f32;
            self.stage1.iter_mut().for_each(|y| *y += imp);
            out.push(self.output()[0]);
        }
        out
    }
}
