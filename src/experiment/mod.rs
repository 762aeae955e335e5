//! Runs scenarios: the builders of one run's data, network and trainer
//! (here), the run loop and its outputs (`run`), many runs at a time in
//! child processes (`runner`) for sweeps (`sweep`) and suites (`suite`),
//! reports over run directories (`report`, `provenance`), the
//! spiking evaluation of a trained network (`spiking`), `.npy` export and
//! signal handling (`interrupt`). Writes run directories through the
//! `Recorder` (DESIGN.md §6).

pub mod bench;
pub mod export;
pub mod interrupt;
pub mod provenance;
pub mod report;
pub mod run;
pub mod runner;
pub mod spiking;
pub mod suite;
pub mod sweep;

pub use run::{RunOptions, Status, run};

use crate::algo::Trainer;
use crate::algo::bp::Backprop;
use crate::data::{self, DataError, Split};
use crate::nn::{Activation, Mlp, Real};
use crate::scenario::{AlgorithmKind, DataKind, Scenario};
use anyhow::Result;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Loads the scenario's data set.
pub fn load_data(s: &Scenario) -> Result<Split, DataError> {
    let split = match s.data.kind {
        DataKind::Synthetic => data::synthetic::try_generate(&s.data.synthetic, s.data_seed())?,
        DataKind::Mnist => data::mnist::load(&s.data.path)?,
    };
    Ok(Split {
        train: split.train.truncate(s.data.train_subset),
        test: split.test.truncate(s.data.test_subset),
    })
}

/// Builds the initial network of a scenario (deterministic in the seed).
pub fn build_network<T: Real>(s: &Scenario) -> Mlp<T> {
    let mut rng = ChaCha8Rng::seed_from_u64(s.init_seed());
    let hidden = Activation::with_lif(s.network.activation, s.network.lif);
    let mut mlp = Mlp::kaiming(&s.network.layers, hidden, s.network.output, &mut rng);
    if s.network.hidden_bias_init != 0.0 {
        let hidden_layers = mlp.b.len() - 1;
        for b in &mut mlp.b[..hidden_layers] {
            b.fill(T::of(s.network.hidden_bias_init));
        }
    }
    mlp
}

/// The trainer for the scenario's algorithm.
pub fn build_trainer<T: Real>(s: &Scenario, mlp: &Mlp<T>) -> Result<Box<dyn Trainer<T>>> {
    let t = &s.training;
    if matches!(s.algorithm.kind, AlgorithmKind::Il | AlgorithmKind::Zil)
        && s.runtime.driver != crate::scenario::Driver::Lockstep
    {
        return Ok(Box::new(async_trainer::<T>(s)));
    }
    let optimizer = t.optimizer_options().optimizer(t.momentum);
    Ok(match s.algorithm.kind {
        AlgorithmKind::Bp => Box::new(
            Backprop::new(mlp, t.learning_rate, t.momentum, t.batch_size)
                .with_optimizer(mlp, optimizer),
        ),
        AlgorithmKind::SpikingPc if s.runtime.driver != crate::scenario::Driver::Lockstep => {
            let r = pc_rule(s);
            Box::new(crate::runtime::spc::SpcTrainer::new(
                mlp,
                s.spiking_pc(),
                r.cfg,
                s.network.lif,
                r.learning_rate,
                r.momentum,
                s.spiking_pc_seed(),
                s.runtime.clone(),
                s.runtime_seed(),
            )?)
        }
        AlgorithmKind::SpikingPc => {
            let r = pc_rule(s);
            Box::new(crate::algo::pc::spiking::SpikingPc::new(
                mlp,
                s.spiking_pc(),
                r.cfg,
                s.network.lif,
                r.learning_rate,
                r.momentum,
                s.spiking_pc_seed(),
            )?)
        }
        AlgorithmKind::Il | AlgorithmKind::Zil => {
            let r = pc_rule(s);
            let (cfg, lr, mu) = (r.cfg, r.learning_rate, r.momentum);
            if r.zil {
                Box::new(
                    crate::algo::pc::Zil::new(mlp, cfg, lr, mu)?.with_optimizer(mlp, optimizer),
                )
            } else {
                Box::new(crate::algo::pc::Il::new(mlp, cfg, lr, mu)?.with_optimizer(mlp, optimizer))
            }
        }
    })
}

/// The PC trainers' settings from `[algorithm.inference]`; the feedback
/// alignment matrices are drawn from `seed + 3` (init, shuffle and data use
/// the seed itself, `+ 1` and `+ 2`).
pub fn pc_config(s: &Scenario) -> crate::algo::pc::PcConfig {
    let inf = &s.algorithm.inference;
    crate::algo::pc::PcConfig {
        gamma: inf.gamma,
        steps: inf.steps,
        beta: inf.beta,
        predict_steps: inf.predict_steps,
        feedback_seed: (inf.feedback == crate::scenario::Feedback::Random)
            .then(|| s.seed.wrapping_add(3)),
        step_control: match inf.step_control {
            crate::scenario::StepControl::Fixed => crate::algo::pc::StepControl::Fixed,
            crate::scenario::StepControl::LocalCurvature => {
                crate::algo::pc::StepControl::LocalCurvature
            }
        },
    }
}

/// The one PC rule of a scenario (IL or Z-IL with every setting), from
/// which both the lockstep trainers and the actor networks are built.
pub fn pc_rule(s: &Scenario) -> crate::algo::pc::PcRule {
    let (cfg, depth, t) = (pc_config(s), s.network.layers.len(), &s.training);
    if s.algorithm.kind == AlgorithmKind::Zil {
        crate::algo::pc::PcRule::zil(cfg, depth, t.learning_rate, t.momentum)
    } else {
        crate::algo::pc::PcRule::il(cfg, depth, t.learning_rate, t.momentum)
    }
}

/// The asynchronous IL / Z-IL trainer of a scenario (`[runtime]` with
/// driver `virtual` or `wall`), built from the same `PcRule` as the
/// lockstep `Il` / `Zil`.
pub fn async_trainer<T: Real>(s: &Scenario) -> crate::runtime::trainer::AsyncTrainer<T> {
    let t = &s.training;
    let settings = crate::runtime::pc::PcSettings {
        rule: pc_rule(s).with_optimizer(t.optimizer_options().optimizer(t.momentum)),
        schedule: s.runtime.schedule,
        trigger: s.runtime.trigger,
        period: s.runtime.period,
        pipeline: s.runtime.pipeline,
    };
    crate::runtime::trainer::AsyncTrainer::new(s.runtime.clone(), settings, s.runtime_seed())
}

pub fn to_f64<T: Real>(mlp: &Mlp<T>) -> Mlp<f64> {
    Mlp {
        sizes: mlp.sizes.clone(),
        w: mlp.w.iter().map(|w| w.mapv(|v| v.f64())).collect(),
        b: mlp.b.iter().map(|b| b.mapv(|v| v.f64())).collect(),
        hidden: mlp.hidden,
        output: mlp.output,
    }
}
