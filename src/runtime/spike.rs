//! The spike message (DESIGN.md §3–§4: spikes travel forward): what one
//! population sends along one edge for one time step, and only when
//! something fired. It carries the indices of the neurons that fired and,
//! for signed codes (sigma-delta), each one's signed count of quanta. The
//! drivers are generic over the payload, so spikes get the same delay,
//! jitter, loss, duplication and delivery models as graded messages; the
//! step a spike belongs to travels in the envelope's `tick`.
//!
//! The receiver owns the synapses: it turns each spike into a column-add of
//! its weights (`add_columns`), so its work grows with spikes × fan-out, not
//! with neurons × steps.

use crate::nn::Real;

/// The spikes of one population in one step.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Spikes {
    /// Neurons that fired. Unsigned codes list a neuron once per spike (it
    /// may repeat); signed codes list it once with its count in `counts`.
    pub neurons: Vec<u32>,
    /// Signed spike count per entry of `neurons`; empty for unsigned codes.
    pub counts: Vec<i32>,
}

impl Spikes {
    /// Unsigned spikes, one per listed index.
    pub fn unsigned(neurons: &[u32]) -> Self {
        Self {
            neurons: neurons.to_vec(),
            counts: Vec::new(),
        }
    }

    /// Signed spikes: neuron `neurons[k]` fired `counts[k]` quanta (sign
    /// included). Entries with a zero count are dropped.
    pub fn signed(neurons: &[u32], counts: &[i32]) -> Self {
        assert_eq!(neurons.len(), counts.len(), "one count per neuron");
        let (neurons, counts) = neurons
            .iter()
            .zip(counts)
            .filter(|(_, c)| **c != 0)
            .map(|(&n, &c)| (n, c))
            .unzip();
        Self { neurons, counts }
    }

    pub fn is_signed(&self) -> bool {
        !self.counts.is_empty()
    }

    /// Number of spikes (quanta) carried, whatever their sign.
    pub fn spikes(&self) -> u64 {
        if self.is_signed() {
            self.counts.iter().map(|c| c.unsigned_abs() as u64).sum()
        } else {
            self.neurons.len() as u64
        }
    }

    pub fn is_empty(&self) -> bool {
        self.neurons.is_empty()
    }

    /// Every spike's `(neuron, signed count)`.
    pub fn iter(&self) -> impl Iterator<Item = (u32, i32)> + '_ {
        let signed = self.is_signed();
        self.neurons
            .iter()
            .enumerate()
            .map(move |(k, &n)| (n, if signed { self.counts[k] } else { 1 }))
    }

    /// The receiver's synaptic work: `acc += Σ_spikes count · scale ·
    /// columns[neuron]`, where `columns` holds one contiguous column of
    /// `acc.len()` weights per presynaptic neuron (a row of `Wᵀ`). Cost:
    /// spikes × fan-out.
    pub fn add_columns<T: Real>(&self, columns: &[T], scale: T, acc: &mut [T]) {
        let n = acc.len();
        for (neuron, count) in self.iter() {
            let col = &columns[neuron as usize * n..][..n];
            let q = scale * T::of(count as f64);
            for (a, &w) in acc.iter_mut().zip(col) {
                *a += q * w;
            }
        }
    }
}
