//! `SpcTrainer`: spiking PC on the actor network as a `Trainer`, so
//! `experiment` runs it like the lockstep `SpikingPc` (whose prediction it
//! reuses). It applies no update: the layer actors own their weights and
//! momentum across batches and step them themselves; after every batch the
//! trainer stores the weights back into the `Mlp` (evaluation, checkpoints,
//! `.npy` export) and, when asked to keep it, the batch's update (the
//! equivalence harness, which may see everything; the rules may not).

use super::actors::{SpcNetwork, SpcRule};
use crate::algo::Trainer;
use crate::algo::pc::PcConfig;
use crate::algo::pc::spiking::{SpikingPc, SpikingPcConfig};
use crate::nn::activation::LifParams;
use crate::nn::{Mlp, Real, Updates};
use crate::runtime::config::RuntimeConfig;
use crate::runtime::{RuntimeError, Timing};
use anyhow::Result;
use ndarray::{Array2, ArrayView2};
use serde_json::json;

pub struct SpcTrainer<T: Real> {
    cfg: SpikingPcConfig,
    pc: PcConfig,
    runtime: RuntimeConfig,
    /// Seed of the timing streams; batch `k` draws from its own.
    timing_seed: u64,
    /// The down-message matrices under feedback alignment, handed to the
    /// actors when the network is built.
    feedback: Option<Vec<Array2<T>>>,
    /// Learning rate and μ the actors start with (a later
    /// `set_learning_rate` also reaches the actors that exist).
    learning_rate: T,
    momentum: T,
    updates: Updates<T>,
    kept: bool,
    network: Option<SpcNetwork<T>>,
    batches: u64,
    error: Option<RuntimeError>,
    /// The lockstep trainer: prediction (evaluation is synchronous).
    predictor: SpikingPc<T>,
}

impl<T: Real> SpcTrainer<T> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        mlp: &Mlp<T>,
        cfg: SpikingPcConfig,
        pc: PcConfig,
        lif: LifParams,
        learning_rate: f64,
        momentum: f64,
        seed: u64,
        runtime: RuntimeConfig,
        timing_seed: u64,
    ) -> Result<Self> {
        let predictor = SpikingPc::new(
            mlp,
            cfg.clone(),
            pc.clone(),
            lif,
            learning_rate,
            momentum,
            seed,
        )?;
        let feedback = pc
            .feedback_seed
            .map(|seed| crate::algo::pc::random_feedback(mlp, seed));
        Ok(Self {
            cfg,
            pc,
            runtime,
            timing_seed,
            feedback,
            learning_rate: T::of(learning_rate),
            momentum: T::of(momentum),
            updates: Updates::zeros_like(mlp),
            kept: false,
            network: None,
            batches: 0,
            error: None,
            predictor,
        })
    }

    /// The actor network (after the first batch).
    pub fn network(&self) -> Option<&SpcNetwork<T>> {
        self.network.as_ref()
    }

    /// The actor network, writable: a harness hook (the locality tests
    /// perturb one actor's optimizer state through it).
    pub fn network_mut(&mut self) -> Option<&mut SpcNetwork<T>> {
        self.network.as_mut()
    }

    fn rule(&self, mlp: &Mlp<T>) -> SpcRule<T> {
        SpcRule {
            hidden: mlp.hidden,
            output: mlp.output,
            gamma: T::of(self.pc.gamma),
            steps: self.pc.steps,
            window: self.cfg.learning_window,
            beta: T::of(self.pc.beta),
            theta_input: T::of(self.cfg.theta_input),
            theta: T::of(self.cfg.theta),
        }
    }

    /// Runs batch `(x, y)` on the actors; the weights they end with are
    /// stored into `mlp`. Returns the loss of the sweep.
    fn run(
        &mut self,
        mlp: &mut Mlp<T>,
        x: ArrayView2<T>,
        y: ArrayView2<T>,
        keep_updates: bool,
    ) -> Result<f64, RuntimeError> {
        // The weights are read from `mlp` when the network is first built;
        // a batch of another size rebuilds the per-batch state and the
        // actors carry their synapses (weights and momentum) over. Before
        // every batch `sync_from` checks that `mlp` still holds what the
        // actors stored (nothing else writes it during a run) and reloads
        // a layer if not.
        self.network = Some(match self.network.take() {
            None => SpcNetwork::new(
                mlp,
                self.feedback.as_deref(),
                self.rule(mlp),
                x.nrows(),
                (self.learning_rate, self.momentum),
            ),
            Some(n) if n.rows() != x.nrows() => n.resized(x.nrows()),
            Some(n) => n,
        });
        let net = self.network.as_mut().expect("built");
        net.sync_from(mlp);
        net.present((x, y), self.batches);
        let names = net.names();
        let seed = self.timing_seed
            ^ self
                .batches
                .wrapping_add(1)
                .wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let timing = Timing::from_config(&self.runtime, &names, seed);
        match self.runtime.driver {
            crate::runtime::config::Driver::Wall => net.run_wall(
                timing,
                crate::runtime::WallOptions::from_config(&self.runtime),
            )?,
            _ => net.run_virtual(timing, self.runtime.watchdog)?,
        }
        self.batches += 1;
        net.store_weights(mlp);
        self.kept = keep_updates;
        if keep_updates {
            net.updates_into(&mut self.updates);
        }
        Ok(net.loss())
    }
}

impl<T: Real> Trainer<T> for SpcTrainer<T> {
    fn train_batch(
        &mut self,
        mlp: &mut Mlp<T>,
        x: ArrayView2<T>,
        y: ArrayView2<T>,
        keep_updates: bool,
    ) -> f64 {
        if self.error.is_some() {
            return f64::NAN;
        }
        match self.run(mlp, x, y, keep_updates) {
            Ok(loss) => loss,
            Err(e) => {
                self.network = None;
                self.error = Some(e);
                f64::NAN
            }
        }
    }

    fn set_learning_rate(&mut self, learning_rate: f64) {
        self.learning_rate = T::of(learning_rate);
        if let Some(n) = self.network.as_mut() {
            n.set_learning_rate(self.learning_rate);
        }
    }

    fn last_updates(&self) -> Option<&Updates<T>> {
        self.kept.then_some(&self.updates)
    }

    fn take_error(&mut self) -> Option<anyhow::Error> {
        self.error.take().map(anyhow::Error::from)
    }

    fn runtime_stats(&self) -> Option<serde_json::Value> {
        let net = self.network.as_ref()?;
        let mut v = net.stats.as_ref()?.to_json("virtual time units");
        let (sent, graded, duplicates) = (net.sent(), net.graded(), net.duplicates());
        v["spiking_pc"] = json!({
            "spikes_per_sender": sent.iter().map(|s| s.spikes).collect::<Vec<_>>(),
            "spike_messages_per_sender": sent.iter().map(|s| s.spike_messages).collect::<Vec<_>>(),
            "step_markers_per_sender": sent.iter().map(|s| s.markers).collect::<Vec<_>>(),
            "graded_messages": graded,
            "duplicates_dropped": duplicates,
        });
        Some(v)
    }

    fn predict(&mut self, mlp: &Mlp<T>, x: ArrayView2<T>) -> Array2<T> {
        self.predictor.predict(mlp, x)
    }
}
