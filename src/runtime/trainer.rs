//! `AsyncTrainer`: asynchronous IL / Z-IL on the actor runtime as a
//! `Trainer`, so `experiment` runs it like any algorithm. It talks to the
//! network only through `PcNetwork`'s narrow interface: every `train_batch`
//! loads `W[l]`, `b[l]` into the actors that own them, presents the batch at
//! the input and its target at the output, runs the network until every
//! actor is done, and stores the weights back; the applied update is read
//! afterwards for the equivalence harness (which may see everything; the
//! rules may not). Prediction with `predict_steps > 0` relaxes with the
//! lockstep rules of the same `PcRule` (evaluation is synchronous).

use super::config::RuntimeConfig;
use super::pc::{PcNetwork, PcSettings};
use super::{RuntimeError, Stats};
use crate::algo::Trainer;
use crate::algo::pc::Il;
use crate::nn::{Mlp, Real, Updates};
use ndarray::{Array2, ArrayView2};

/// Most batches `train_chain` runs in one run of the network.
pub const CHAIN: usize = 16;

pub struct AsyncTrainer<T: Real> {
    pub config: RuntimeConfig,
    pub settings: PcSettings,
    seed: u64,
    network: Option<PcNetwork<T>>,
    next_sample: u64,
    updates: Option<Updates<T>>,
    kept: bool,
    error: Option<RuntimeError>,
    /// Relaxing predictor (`predict_steps > 0`), built on first use.
    predictor: Option<Il<T>>,
    /// Test hook: the actor (by layer) that panics on the given sample.
    pub inject_panic: Option<(usize, u64)>,
}

impl<T: Real> AsyncTrainer<T> {
    pub fn new(config: RuntimeConfig, settings: PcSettings, seed: u64) -> Self {
        Self {
            config,
            settings,
            seed,
            network: None,
            next_sample: 0,
            updates: None,
            kept: false,
            error: None,
            predictor: None,
            inject_panic: None,
        }
    }

    /// Statistics of every run so far.
    pub fn stats(&self) -> Option<&Stats> {
        self.network.as_ref().map(|n| n.stats())
    }

    /// Statistics as JSON.
    pub fn stats_json(&self) -> Option<serde_json::Value> {
        self.network
            .as_ref()
            .map(|n| n.stats().to_json(n.time_unit()))
    }

    /// Trains on several batches in one run of the network (batches are
    /// pipelined through the layers when `runtime.pipeline > 1`). Returns the
    /// summed loss of the feedforward predictions.
    pub fn train_batches(
        &mut self,
        mlp: &mut Mlp<T>,
        batches: Vec<(Array2<T>, Array2<T>)>,
        keep_updates: bool,
    ) -> Result<f64, RuntimeError> {
        let views: Vec<_> = batches.iter().map(|(x, y)| (x.view(), y.view())).collect();
        Ok(self.train_views(mlp, &views, keep_updates)?.iter().sum())
    }

    /// `train_batches` on borrowed batches, with each batch's loss: each
    /// shard's rows are copied once, straight into the message that
    /// presents them.
    fn train_views(
        &mut self,
        mlp: &mut Mlp<T>,
        batches: &[(ArrayView2<T>, ArrayView2<T>)],
        keep_updates: bool,
    ) -> Result<Vec<f64>, RuntimeError> {
        self.prepare(mlp)?;
        let net = self.network.as_mut().expect("built");
        net.load_weights(mlp);
        for &(x, y) in batches {
            net.present(self.next_sample, x, y);
            self.next_sample += 1;
        }
        if let Err(e) = net.run() {
            self.network = None;
            return Err(e);
        }
        net.store_weights(mlp);
        self.kept = keep_updates;
        if keep_updates {
            let upd = self.updates.get_or_insert_with(|| Updates::zeros_like(mlp));
            net.updates_into(upd);
        }
        let losses = net.take_losses();
        if losses.len() != batches.len() {
            // Predictions that do not line up with the batches: no loss to trust.
            return Ok(vec![f64::NAN; batches.len()]);
        }
        Ok(losses)
    }

    /// Whether chaining batches in one run computes what one run per batch
    /// does, bit for bit: the event schedule relaxes each sample on its
    /// messages alone, so only timing that could reorder work across the
    /// batches (delays, compute times, drift, faults, batches in flight) or
    /// change with a run's random streams rules it out.
    fn chain_is_exact(&self) -> bool {
        let r = &self.config;
        self.settings.schedule == super::config::Schedule::Event
            && r.pipeline == 1
            && r.delay_up.is_zero()
            && r.delay_down.is_zero()
            && r.compute.is_zero()
            && r.actor_compute.values().all(|d| d.is_zero())
            && r.drift == 0.0
            && r.jitter == 0.0
            && r.loss == 0.0
            && r.duplication == 0.0
    }

    /// Builds the actor network for `mlp` now, so the first batch does not
    /// (a timing then measures training only).
    pub fn prepare(&mut self, mlp: &Mlp<T>) -> Result<(), RuntimeError> {
        if self.network.is_none() {
            let mut net = PcNetwork::build(mlp, self.settings.clone(), &self.config, self.seed)?;
            if let Some((l, s)) = self.inject_panic {
                net.inject_panic(l, s);
            }
            self.network = Some(net);
        }
        Ok(())
    }

    /// The runtime error that ended the last `train_batch`, if any.
    pub fn error(&self) -> Option<&RuntimeError> {
        self.error.as_ref()
    }
}

impl<T: Real> Trainer<T> for AsyncTrainer<T> {
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
        match self.train_views(mlp, &[(x, y)], keep_updates) {
            Ok(losses) => losses.iter().sum(),
            Err(e) => {
                self.error = Some(e);
                f64::NAN
            }
        }
    }

    /// Up to `CHAIN` batches in one run when that is exact: the weights are
    /// loaded and stored, and the driver set up, once per chain instead of
    /// once per batch (on the wall driver the cores otherwise idle while
    /// the harness works between batches).
    fn chain_len(&self) -> usize {
        if self.chain_is_exact() { CHAIN } else { 1 }
    }

    fn train_chain(
        &mut self,
        mlp: &mut Mlp<T>,
        batches: &[(ArrayView2<T>, ArrayView2<T>)],
    ) -> Vec<f64> {
        if self.error.is_some() {
            return vec![f64::NAN; batches.len()];
        }
        match self.train_views(mlp, batches, false) {
            Ok(losses) => losses,
            Err(e) => {
                self.error = Some(e);
                vec![f64::NAN; batches.len()]
            }
        }
    }

    fn set_learning_rate(&mut self, learning_rate: f64) {
        self.settings.rule.learning_rate = learning_rate;
        if let Some(n) = self.network.as_mut() {
            n.set_learning_rate(learning_rate);
        }
    }

    fn last_updates(&self) -> Option<&Updates<T>> {
        if self.kept {
            self.updates.as_ref()
        } else {
            None
        }
    }

    fn take_error(&mut self) -> Option<anyhow::Error> {
        self.error.take().map(anyhow::Error::from)
    }

    fn runtime_stats(&self) -> Option<serde_json::Value> {
        self.stats_json()
    }

    fn predict(&mut self, mlp: &Mlp<T>, x: ArrayView2<T>) -> Array2<T> {
        let rule = &self.settings.rule;
        if rule.cfg.predict_steps == 0 {
            return mlp.predict(x);
        }
        if self.predictor.is_none() {
            match Il::new(mlp, rule.cfg.clone(), rule.learning_rate, rule.momentum) {
                Ok(il) => self.predictor = Some(il),
                Err(_) => return mlp.predict(x),
            }
        }
        self.predictor.as_mut().expect("built").predict(mlp, x)
    }
}
