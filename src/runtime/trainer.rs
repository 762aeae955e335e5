//! `AsyncTrainer`: asynchronous IL / Z-IL on the actor runtime as a
//! `Trainer`, so `experiment` runs it like any algorithm. Every
//! `train_batch` moves `W[l]`, `b[l]` out of the `Mlp` into the actors that
//! own them (no copy), lets the input actor clamp the batch and the output
//! actor its target, runs the network until every actor is done, and moves
//! the weights back. The applied update is read from the actors afterwards
//! for the equivalence harness (which may see everything; the rules may not).

use super::config::{Driver as DriverKind, RuntimeConfig};
use super::pc::{PcActor, PcSettings, load_weights, network, store_weights};
use super::timing::Timing;
use super::{Driver, RuntimeError, Stats, VirtualDriver, WallDriver, WallOptions};
use crate::algo::Trainer;
use crate::nn::{Mlp, Real, Updates};
use ndarray::{Array2, ArrayView2};

use std::time::Duration;

pub struct AsyncTrainer<T: Real> {
    pub config: RuntimeConfig,
    pub settings: PcSettings,
    seed: u64,
    driver: Option<Driver<PcActor<T>>>,
    next_sample: u64,
    updates: Option<Updates<T>>,
    kept: bool,
    error: Option<RuntimeError>,
    /// Test hook: the actor (by layer) that panics on the given sample.
    pub inject_panic: Option<(usize, u64)>,
}

impl<T: Real> AsyncTrainer<T> {
    pub fn new(config: RuntimeConfig, settings: PcSettings, seed: u64) -> Self {
        Self {
            config,
            settings,
            seed,
            driver: None,
            next_sample: 0,
            updates: None,
            kept: false,
            error: None,
            inject_panic: None,
        }
    }

    fn build(&mut self, mlp: &Mlp<T>) -> Result<(), RuntimeError> {
        let groups = match self.config.granularity {
            super::config::Granularity::Layer => 1,
            super::config::Granularity::Groups => self.config.groups,
        };
        let (mut actors, topo) = network::<T>(mlp, self.settings, groups)
            .map_err(|e| RuntimeError::Setup(e.to_string()))?;
        if let Some((l, s)) = self.inject_panic {
            for a in actors.iter_mut().filter(|a| a.l == l) {
                a.panic_on_sample = Some(s);
            }
        }
        let names: Vec<String> = actors.iter().map(crate::runtime::Actor::name).collect();
        let timing = Timing::from_config(&self.config, &names, self.seed);
        self.driver = Some(match self.config.driver {
            DriverKind::Wall => Driver::Wall(WallDriver::new(
                actors,
                topo,
                timing,
                WallOptions {
                    workers: self.config.workers,
                    capacity: self.config.channel_capacity,
                    idle_timeout: Duration::from_millis(self.config.idle_timeout_ms),
                },
            )?),
            _ => Driver::Virtual(VirtualDriver::new(
                actors,
                topo,
                timing,
                self.config.watchdog,
            )),
        });
        Ok(())
    }

    /// Statistics of every run so far.
    pub fn stats(&self) -> Option<&Stats> {
        self.driver.as_ref().map(|d| d.stats())
    }

    /// Statistics as JSON.
    pub fn stats_json(&self) -> Option<serde_json::Value> {
        self.driver
            .as_ref()
            .map(|d| d.stats().to_json(d.time_unit()))
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
        if self.driver.is_none() {
            self.build(mlp)?;
        }
        let driver = self.driver.as_mut().expect("built");
        let actors = driver.actors_mut();
        let n = actors.len();
        load_weights(actors, mlp);
        for (x, y) in batches {
            let s = self.next_sample;
            self.next_sample += 1;
            actors[0].inputs.push_back((s, x));
            actors[n - 1].targets.insert(s, y);
        }
        if let Err(e) = driver.run() {
            self.driver = None;
            return Err(e);
        }
        let actors = driver.actors_mut();
        store_weights(actors, mlp);
        let loss = actors[n - 1].losses.drain(..).map(|(_, l)| l).sum();
        self.kept = keep_updates;
        if keep_updates {
            let upd = self.updates.get_or_insert_with(|| Updates::zeros_like(mlp));
            for a in actors.iter().filter(|a| !a.is_input()) {
                let (r0, r1) = a.rows;
                upd.dw[a.l - 2]
                    .slice_mut(ndarray::s![r0..r1, ..])
                    .assign(&a.dw);
                upd.db[a.l - 2].slice_mut(ndarray::s![r0..r1]).assign(&a.db);
            }
        }
        Ok(loss)
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
        match self.train_batches(mlp, vec![(x.to_owned(), y.to_owned())], keep_updates) {
            Ok(loss) => loss,
            Err(e) => {
                self.error = Some(e);
                f64::NAN
            }
        }
    }

    fn set_learning_rate(&mut self, learning_rate: f64) {
        self.settings.learning_rate = learning_rate;
        if let Some(d) = self.driver.as_mut() {
            for a in d.actors_mut() {
                a.settings.learning_rate = learning_rate;
            }
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
}
