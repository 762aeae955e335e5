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

    /// A whole step of a layer's synapses in one pass: the first stage
    /// decays, each spike `k` adds its column `columns[k·n..(k+1)·n]`, the
    /// remaining stages run, and `current ← output + bias`. The same
    /// operations in the same order as `decay`, `add` per spike and
    /// `output`, with the sums held in registers.
    pub fn step_into(
        &mut self,
        columns: &[f32],
        spikes: &[u32],
        bias: &[f32],
        current: &mut [f32],
    ) {
        let n = self.stage1.len();
        assert!(
            bias.len() == n && current.len() == n,
            "one bias and current per neuron"
        );
        assert!(
            spikes
                .iter()
                .all(|&k| (k as usize + 1) * n <= columns.len()),
            "a spike without its weight column"
        );
        let alpha = self.kind == SynapseKind::Alpha;
        filter_step(
            &mut self.stage1,
            &mut self.stage2,
            alpha,
            self.decay,
            columns,
            spikes,
            bias,
            current,
        );
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

crate::nn::simd::multiversion! {
    #[allow(clippy::too_many_arguments)]
    fn filter_step(
        stage1: &mut [f32],
        stage2: &mut [f32],
        alpha: bool,
        a: f32,
        columns: &[f32],
        spikes: &[u32],
        bias: &[f32],
        current: &mut [f32],
    ) {
        const C: usize = 64;
        let n = stage1.len();
        let mut acc = [0.0f32; C];
        for c0 in (0..n).step_by(C) {
            let len = C.min(n - c0);
            if len == C {
                // Fixed length: the sums stay in registers across spikes.
                let s1: &[f32; C] = stage1[c0..c0 + C].try_into().expect("a chunk");
                for (y, &s1) in acc.iter_mut().zip(s1) {
                    *y = s1 * a;
                }
                for &k in spikes {
                    let start = k as usize * n + c0;
                    let col: &[f32; C] = columns[start..start + C].try_into().expect("a column");
                    for (y, &w) in acc.iter_mut().zip(col) {
                        *y += w;
                    }
                }
            } else {
                for (y, &s1) in acc[..len].iter_mut().zip(&stage1[c0..c0 + len]) {
                    *y = s1 * a;
                }
                for &k in spikes {
                    let col = &columns[k as usize * n + c0..][..len];
                    for (y, &w) in acc[..len].iter_mut().zip(col) {
                        *y += w;
                    }
                }
            }
            let acc = &acc[..len];
            let s1 = &mut stage1[c0..c0 + len];
            let out = &mut current[c0..c0 + len];
            let b = &bias[c0..c0 + len];
            if alpha {
                let s2 = &mut stage2[c0..c0 + len];
                for ((((y2, y1), &y), j), &b) in s2.iter_mut().zip(s1).zip(acc).zip(out).zip(b) {
                    *y1 = y;
                    *y2 = a * *y2 + (1.0 - a) * y;
                    *j = *y2 + b;
                }
            } else {
                for (((y1, &y), j), &b) in s1.iter_mut().zip(acc).zip(out).zip(b) {
                    *y1 = y;
                    *j = y + b;
                }
            }
        }
    }
}
