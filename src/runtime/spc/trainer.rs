//! `SpcTrainer`: spiking PC on the actor network as a `Trainer`, so
//! `experiment` runs it like the lockstep `SpikingPc` (whose SGD with
//! momentum and prediction it reuses).

use super::actors::{SentCounts, SpcNetwork, SpcRule};
use crate::algo::pc::PcConfig;
use crate::algo::pc::spiking::{SpikingPc, SpikingPcConfig};
use crate::algo::{Momentum, Trainer};
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
    feedback: Option<Vec<Array2<T>>>,
    learning_rate: T,
    optimizer: Momentum<T>,
    updates: Updates<T>,
    kept: bool,
    network: Option<SpcNetwork<T>>,
    /// Counts of the networks replaced (a batch of another size rebuilds
    /// the network): per sender, graded messages, duplicates dropped.
    earlier: (Vec<SentCounts>, u64, u64),
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
            optimizer: Momentum::new(momentum),
            updates: Updates::zeros_like(mlp),
            kept: false,
            network: None,
            earlier: (Vec::new(), 0, 0),
            batches: 0,
            error: None,
            predictor,
        })
    }

    /// The actor network (after the first batch).
    pub fn network(&self) -> Option<&SpcNetwork<T>> {
        self.network.as_ref()
    }

    /// What every network so far sent: the replaced ones and `net`.
    fn counts_with(&self, net: &SpcNetwork<T>) -> (Vec<SentCounts>, u64, u64) {
        let mut sent = net.sent();
        for (a, b) in sent.iter_mut().zip(&self.earlier.0) {
            a.spikes += b.spikes;
            a.spike_messages += b.spike_messages;
            a.markers += b.markers;
        }
        (
            sent,
            net.graded() + self.earlier.1,
            net.duplicates() + self.earlier.2,
        )
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

    fn run(
        &mut self,
        mlp: &Mlp<T>,
        x: ArrayView2<T>,
        y: ArrayView2<T>,
    ) -> Result<f64, RuntimeError> {
        if self.network.as_ref().is_none_or(|n| n.rows() != x.nrows()) {
            let old = self.network.take();
            if let Some(n) = &old {
                self.earlier = self.counts_with(n);
            }
            let stats = old.and_then(|n| n.stats);
            let mut net = SpcNetwork::new(mlp, self.rule(mlp), x.nrows());
            net.stats = stats;
            self.network = Some(net);
        }
        let net = self.network.as_mut().expect("built");
        let beta = T::of(self.pc.beta);
        let scale = crate::algo::pc::update_scale(self.learning_rate, beta, x.nrows());
        net.load(mlp, self.feedback.as_deref(), (x, y), self.batches, scale);
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
        Ok(net.updates_into(&mut self.updates))
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
        match self.run(mlp, x, y) {
            Ok(loss) => {
                self.optimizer.apply(mlp, &self.updates);
                self.kept = keep_updates;
                loss
            }
            Err(e) => {
                self.network = None;
                self.error = Some(e);
                f64::NAN
            }
        }
    }

    fn set_learning_rate(&mut self, learning_rate: f64) {
        self.learning_rate = T::of(learning_rate);
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
        let (sent, graded, duplicates) = self.counts_with(net);
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
