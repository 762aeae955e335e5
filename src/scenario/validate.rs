//! Semantic checks of a parsed scenario: sizes that must agree, ranges of
//! numbers, the run directory's name, the `[sweep]` grid, and the resource
//! bounds of `bounds`. Every error is `(dotted key, what is wrong and what is
//! allowed)`; `load` turns it into a located `ScenarioError`.

use super::bounds;
use super::schema::{AlgorithmKind, DataKind, Scenario, SnnConfig};
use crate::nn::ActivationKind;

/// `(dotted key, message)`.
pub type Invalid = (String, String);

pub(crate) fn check(ok: bool, key: &str, message: impl FnOnce() -> String) -> Result<(), Invalid> {
    if ok {
        Ok(())
    } else {
        Err((key.to_string(), message()))
    }
}

fn positive(value: f64, key: &str) -> Result<(), Invalid> {
    check(value.is_finite() && value > 0.0, key, || {
        format!("must be a finite number > 0, got {}", show(value))
    })
}

/// A number for a message: plain when short, in exponent notation when
/// Rust would print hundreds of digits (`1e300`).
pub fn show(v: f64) -> String {
    if v == 0.0 || !v.is_finite() || (1e-4..1e15).contains(&v.abs()) {
        format!("{v}")
    } else {
        format!("{v:e}")
    }
}

fn at_most(value: usize, max: usize, key: &str, why: &str) -> Result<(), Invalid> {
    check(value <= max, key, || {
        format!("must be at most {max} ({why}), got {value}")
    })
}

/// `[784, 256, 10]`, or its ends when it is long.
fn sizes_text(layers: &[usize]) -> String {
    if layers.len() <= 12 {
        return format!("{layers:?}");
    }
    format!(
        "{:?} … {:?} ({} sizes)",
        &layers[..6],
        &layers[layers.len() - 3..],
        layers.len()
    )
}

/// Longest scenario name (it becomes part of a directory name).
pub const MAX_NAME_LEN: usize = 100;
/// Most layers a network may have.
pub const MAX_DEPTH: usize = 1000;
/// Most epochs of one run.
pub const MAX_EPOCHS: usize = 100_000;
/// Most inference steps per batch (training or prediction).
pub const MAX_INFERENCE_STEPS: usize = 100_000;
/// Weakest output nudging: the update is scaled by 1/β.
pub const MIN_BETA: f64 = 1e-6;
/// Largest synthetic cluster standard deviation: the centres lie in [0, 1],
/// so beyond this the classes are pure noise (and f32 overflows near 3e38).
pub const MAX_NOISE: f64 = 1000.0;
/// Largest |initial hidden bias|; beyond it every unit saturates.
pub const MAX_BIAS_INIT: f64 = 1e6;
/// Most worker threads of the spiking evaluation.
pub const MAX_THREADS: usize = 1024;

/// The name picks the default run directory `runs/<name>-<time>`, so it must
/// not be able to choose where files go: no separators, no `..`, no hidden
/// or option-like names.
fn check_name(name: &str) -> Result<(), Invalid> {
    let ok = !name.is_empty()
        && name.chars().count() <= MAX_NAME_LEN
        && !name.starts_with(['.', '-'])
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '+' | '-'));
    check(ok, "name", || {
        format!(
            "names the run directory, so it may only contain letters, digits, '.', '_', '+' and '-', must not start with '.' or '-' and has at most {MAX_NAME_LEN} characters; got {name:?}"
        )
    })
}

/// The optimizer and schedule keys (`algo::optim` checks them against each
/// other and `[training]`), and their refusal where a rule does not apply
/// them (spiking PC's own SGD step). The actor runtimes apply them per
/// layer slice (`runtime::pc`), the schedule through the learning rate the
/// trainer hands the actors before each batch.
fn check_optimizer(s: &Scenario) -> Result<(), Invalid> {
    let t = &s.training;
    let options = t.optimizer_options();
    options.validate(t.optimizer_keys())?;
    if let Some(plan) = bounds::StepPlan::of(s) {
        options.build(t.optimizer_keys(), plan.steps_per_epoch)?;
    }
    if s.algorithm.kind == AlgorithmKind::SpikingPc
        && let Some(key) = t.optimizer_key_given()
    {
        return Err((
            key.to_string(),
            "is not supported by algorithm.kind = \"spiking_pc\": its layers apply plain SGD with training.momentum and training.lr_decay per epoch; remove the key".to_string(),
        ));
    }
    Ok(())
}

/// Semantic checks: sizes that must agree, ranges of numbers, resources.
pub fn validate(s: &Scenario) -> Result<(), Invalid> {
    check_name(&s.name)?;
    let layers = &s.network.layers;
    check(layers.len() >= 2, "network.layers", || {
        format!(
            "needs at least an input and an output size, got {}",
            sizes_text(layers)
        )
    })?;
    at_most(layers.len(), MAX_DEPTH, "network.layers", "layers")?;
    check(layers.iter().all(|&n| n > 0), "network.layers", || {
        format!(
            "every layer needs at least one unit, got {}",
            sizes_text(layers)
        )
    })?;
    let (features, classes) = s.data.shape();
    check(layers[0] == features, "network.layers", || {
        format!(
            "input layer has {} units but the {} data has {features} features; set network.layers[0] = {features}",
            layers[0],
            s.data.kind.name()
        )
    })?;
    check(*layers.last().unwrap() == classes, "network.layers", || {
        format!(
            "output layer has {} units but the data has {classes} classes; make the last size {classes}",
            layers.last().unwrap()
        )
    })?;
    let lif = &s.network.lif;
    positive(lif.tau_rc, "network.lif.tau_rc")?;
    check(
        lif.tau_ref.is_finite() && lif.tau_ref >= 0.0,
        "network.lif.tau_ref",
        || format!("must be ≥ 0, got {}", show(lif.tau_ref)),
    )?;
    positive(lif.amplitude, "network.lif.amplitude")?;
    positive(lif.smoothing, "network.lif.smoothing")?;
    let bias = s.network.hidden_bias_init;
    check(
        bias.is_finite() && bias.abs() <= MAX_BIAS_INIT,
        "network.hidden_bias_init",
        || {
            format!(
                "must be a finite number in [-{MAX_BIAS_INIT:e}, {MAX_BIAS_INIT:e}] (beyond it every unit saturates), got {}",
                show(bias)
            )
        },
    )?;

    let t = &s.training;
    check(t.epochs >= 1, "training.epochs", || "must be ≥ 1".into())?;
    at_most(t.epochs, MAX_EPOCHS, "training.epochs", "epochs per run")?;
    check(t.batch_size >= 1, "training.batch_size", || {
        "must be ≥ 1".into()
    })?;
    positive(t.learning_rate, "training.learning_rate")?;
    check(
        (0.0..1.0).contains(&t.momentum),
        "training.momentum",
        || format!("must be in [0, 1), got {}", show(t.momentum)),
    )?;
    positive(t.lr_decay, "training.lr_decay")?;
    check_optimizer(s)?;

    let inf = &s.algorithm.inference;
    positive(inf.gamma, "algorithm.inference.gamma")?;
    check(inf.steps >= 1, "algorithm.inference.steps", || {
        "must be ≥ 1".into()
    })?;
    for (key, steps) in [
        ("algorithm.inference.steps", inf.steps),
        ("algorithm.inference.predict_steps", inf.predict_steps),
    ] {
        at_most(steps, MAX_INFERENCE_STEPS, key, "inference steps per batch")?;
    }
    check(
        inf.beta.is_finite() && (MIN_BETA..=1.0).contains(&inf.beta),
        "algorithm.inference.beta",
        || {
            format!(
                "must be in [{MIN_BETA:e}, 1] (the update is scaled by 1/β), got {}",
                show(inf.beta)
            )
        },
    )?;
    if s.algorithm.kind == AlgorithmKind::Zil {
        check(inf.beta == 1.0, "algorithm.inference.beta", || {
            "Z-IL clamps the target (β = 1); remove the key or use kind = \"il\"".into()
        })?;
    }

    if s.data.kind == DataKind::Synthetic {
        let d = &s.data.synthetic;
        for (key, n) in [
            ("data.synthetic.n_train", d.n_train),
            ("data.synthetic.n_test", d.n_test),
            ("data.synthetic.n_features", d.n_features),
            ("data.synthetic.clusters_per_class", d.clusters_per_class),
        ] {
            check(n >= 1, key, || "must be ≥ 1".into())?;
        }
        check(
            (2..=255).contains(&d.n_classes),
            "data.synthetic.n_classes",
            || format!("must be in 2..=255, got {}", d.n_classes),
        )?;
        check(
            d.noise.is_finite() && (0.0..=MAX_NOISE).contains(&d.noise),
            "data.synthetic.noise",
            || {
                format!(
                    "must be in [0, {MAX_NOISE}] (the cluster centres lie in [0, 1]; more is pure noise), got {}",
                    show(d.noise)
                )
            },
        )?;
    }
    check_data_usage(s)?;
    check_lif_usage(s)?;
    let zil = crate::algo::pc::rule_kind(
        s.algorithm.kind != AlgorithmKind::Bp,
        s.algorithm.kind == AlgorithmKind::Zil,
    );
    crate::algo::pc::check_inference_usage(&s.algorithm.inference, zil)?;
    let spike_edges = s
        .snn
        .as_ref()
        .is_some_and(|c| c.evaluate && c.runtime == crate::snn::SnnRuntime::Virtual);
    crate::runtime::config::validate(&s.runtime, zil, spike_edges, &s.network.layers)?;
    check(
        s.runtime.shards <= s.training.batch_size,
        "runtime.shards",
        || {
            format!(
                "each shard relaxes a share of a batch's rows, so shards ≤ training.batch_size ({}); got {}",
                s.training.batch_size, s.runtime.shards
            )
        },
    )?;
    check_spiking_pc(s)?;
    for (key, v) in [
        ("data.train_subset", s.data.train_subset),
        ("data.test_subset", s.data.test_subset),
    ] {
        check(v != Some(0), key, || "must be ≥ 1 when given".into())?;
    }
    if let Some(snn) = &s.snn {
        validate_snn(s, snn)?;
    }
    check_eval_every(s)?;
    bounds::check(s)?;
    super::grid::validate_sweep(s)?;
    Ok(())
}

/// `[algorithm.spiking]` belongs to `spiking_pc` alone, and within it a key
/// counts only for the code that reads it (θ for sigma-delta, θ_e for
/// sigma-delta errors, dt and τ_s for the timed codes); spiking PC predicts with its own relaxation, so
/// `predict_steps` is refused; the drivers it runs on are checked by
/// `check_spiking_pc_driver`.
fn check_spiking_pc(s: &Scenario) -> Result<(), Invalid> {
    use crate::algo::pc::spiking::{ErrorCode, ForwardCode, InputCode, SpikingPcConfig};
    check(
        s.algorithm.kind != AlgorithmKind::SpikingPc
            || s.algorithm.inference.step_control == super::schema::StepControl::default(),
        "algorithm.inference.step_control",
        || {
            "spiking PC relaxes with the plain Euler step (its reconstructions are updated by spikes, not by a controlled step); remove the key".into()
        },
    )?;
    if s.algorithm.kind == AlgorithmKind::SpikingPc {
        check_spiking_pc_driver(s)?;
    }
    let Some(c) = &s.algorithm.spiking else {
        return Ok(());
    };
    if s.algorithm.kind != AlgorithmKind::SpikingPc {
        return Err((
            "algorithm.spiking".into(),
            format!(
                "sets the spike codes of algorithm.kind = \"spiking_pc\", and the kind is \"{}\"; remove the table or set the kind",
                format!("{:?}", s.algorithm.kind).to_lowercase()
            ),
        ));
    }
    check(
        s.algorithm.inference.predict_steps == 0,
        "algorithm.inference.predict_steps",
        || {
            "spiking_pc predicts by its own spiking sweep and T relaxation steps with the output free; remove the key".into()
        },
    )?;
    if c.code == ForwardCode::Lif {
        check(
            matches!(
                s.network.activation,
                ActivationKind::Lif | ActivationKind::SoftLif
            ),
            "algorithm.spiking.code",
            || {
                format!(
                    "\"lif\" drives LIF neurons whose 0.05-scaled rate is f, so network.activation must be \"lif\" or \"soft_lif\", got {:?}",
                    s.network.activation
                )
            },
        )?;
    }
    let d = SpikingPcConfig::default();
    let unused =
        |key: &str, why: &str| -> Invalid { (format!("algorithm.spiking.{key}"), why.into()) };
    if c.code == ForwardCode::SigmaDelta {
        positive(c.theta, "algorithm.spiking.theta")?;
    } else if c.theta != d.theta {
        return Err(unused(
            "theta",
            "is the quantum of the sigma-delta code and algorithm.spiking.code is \"lif\"; remove the key or set code = \"sigma_delta\"",
        ));
    }
    if c.input == InputCode::SigmaDelta {
        positive(c.theta_input, "algorithm.spiking.theta_input")?;
    } else if c.theta_input != d.theta_input {
        return Err(unused(
            "theta_input",
            "is the quantum of the sigma-delta input code and algorithm.spiking.input is \"poisson\"; remove the key or set input = \"sigma_delta\"",
        ));
    }
    if c.timed() {
        positive(c.dt, "algorithm.spiking.dt")?;
        check(c.dt <= 0.01, "algorithm.spiking.dt", || {
            format!(
                "must be ≤ 0.01 s (a LIF neuron spikes at most once per step), got {}",
                show(c.dt)
            )
        })?;
        positive(c.tau_s, "algorithm.spiking.tau_s")?;
    } else {
        for (key, same) in [("dt", c.dt == d.dt), ("tau_s", c.tau_s == d.tau_s)] {
            if !same {
                return Err(unused(
                    key,
                    "is a time setting of the LIF code and the Poisson input, and both codes are sigma-delta (untimed); remove the key or set code = \"lif\" or input = \"poisson\"",
                ));
            }
        }
    }
    if c.errors == ErrorCode::SigmaDelta {
        positive(c.theta_error, "algorithm.spiking.theta_error")?;
    } else if c.theta_error != d.theta_error {
        return Err(unused(
            "theta_error",
            "is the quantum of the sigma-delta error code and algorithm.spiking.errors is \"graded\"; remove the key or set errors = \"sigma_delta\"",
        ));
    }
    if c.input == InputCode::Poisson {
        check(s.network.lif.tau_ref > 0.0, "network.lif.tau_ref", || {
            "the Poisson input fires at rate x / t_ref, so t_ref must be > 0".into()
        })?;
    }
    if c.code != ForwardCode::Lif {
        for (key, same) in [
            ("sweep_steps", c.sweep_steps == d.sweep_steps),
            ("window_average", c.window_average == d.window_average),
        ] {
            if !same {
                return Err(unused(
                    key,
                    "applies to the LIF code (a LIF trace needs time to fill and is noisy) and algorithm.spiking.code is \"sigma_delta\"; remove the key or set code = \"lif\"",
                ));
            }
        }
    }
    check(
        c.sweep_steps <= 100_000,
        "algorithm.spiking.sweep_steps",
        || format!("must be at most 100000 steps, got {}", c.sweep_steps),
    )?;
    check(
        c.sweep_steps == 0 || c.delay_jitter == 0,
        "algorithm.spiking.sweep_steps",
        || {
            "is not built with algorithm.spiking.delay_jitter (the delayed input's slots count the relaxation steps); remove one of the keys".into()
        },
    )?;
    let steps = s.algorithm.inference.steps;
    if c.delay_jitter > 0 {
        check(
            c.code == ForwardCode::SigmaDelta || c.input == InputCode::SigmaDelta,
            "algorithm.spiking.delay_jitter",
            || {
                "delays the sigma-delta spike messages, and both codes are timed (code = \"lif\", input = \"poisson\"); remove the key or use a sigma-delta code".into()
            },
        )?;
        check(
            c.delay_jitter <= steps,
            "algorithm.spiking.delay_jitter",
            || {
                format!(
                    "must be at most algorithm.inference.steps ({steps}): a longer delay only keeps spikes in flight past the settling time, got {}",
                    c.delay_jitter
                )
            },
        )?;
    }
    check(
        (1..=steps).contains(&c.learning_window),
        "algorithm.spiking.learning_window",
        || {
            format!(
                "must be in 1..=algorithm.inference.steps ({steps}), got {}",
                c.learning_window
            )
        },
    )?;
    Ok(())
}

/// Spiking PC runs on the lockstep driver, or on the virtual or wall one as
/// one actor per layer (`runtime::spc`) with sigma-delta codes and graded
/// errors under the event schedule; the combinations not built are refused by key.
fn check_spiking_pc_driver(s: &Scenario) -> Result<(), Invalid> {
    use crate::algo::pc::spiking::{ErrorCode, ForwardCode, InputCode};
    use crate::runtime::config::{Driver, Granularity, Schedule};
    let r = &s.runtime;
    if r.driver == Driver::Lockstep {
        return Ok(());
    }
    let c = s.spiking_pc();
    check(
        c.code == ForwardCode::SigmaDelta,
        "algorithm.spiking.code",
        || {
            "spiking_pc on the actors sends sigma-delta spikes only; set code = \"sigma_delta\" or runtime.driver = \"lockstep\"".into()
        },
    )?;
    check(
        c.input == InputCode::SigmaDelta,
        "algorithm.spiking.input",
        || {
            "spiking_pc on the actors codes the input with sigma-delta only; set input = \"sigma_delta\" or runtime.driver = \"lockstep\"".into()
        },
    )?;
    check(
        c.errors == ErrorCode::Graded,
        "algorithm.spiking.errors",
        || {
            "spiking_pc on the actors sends errors down graded only; set errors = \"graded\" or runtime.driver = \"lockstep\"".into()
        },
    )?;
    check(
        c.delay_jitter == 0,
        "algorithm.spiking.delay_jitter",
        || {
            "is the lockstep driver's timing noise; on the actors runtime.delay_up times the spike edges; remove the key".into()
        },
    )?;
    check(
        r.granularity == Granularity::Layer,
        "runtime.granularity",
        || "spiking_pc on the actors runs one actor per layer; set granularity = \"layer\"".into(),
    )?;
    check(r.shards == 1, "runtime.shards", || {
        "spiking_pc on the actors runs one network (no shards); remove the key".into()
    })?;
    check(r.schedule == Schedule::Event, "runtime.schedule", || {
        "spiking_pc on the actors runs the event schedule only (a step runs when its messages arrived); set schedule = \"event\"".into()
    })?;
    check(r.loss == 0.0, "runtime.loss", || {
        "spiking_pc's event schedule waits for every step's message, so a lost one would stall the run; remove the key".into()
    })
}

/// Keys of the data source the scenario does not read are refused, so none
/// is silently ignored: `data.path` belongs to MNIST, `[data.synthetic]` to
/// the generated set.
fn check_data_usage(s: &Scenario) -> Result<(), Invalid> {
    let default = super::schema::DataConfig::default();
    match s.data.kind {
        DataKind::Synthetic => check(s.data.path == default.path, "data.path", || {
            "the synthetic data is generated in code and reads no files; remove the key or set data.kind = \"mnist\"".into()
        }),
        DataKind::Mnist => {
            match crate::algo::pc::changed_keys(
                &s.data.synthetic,
                &default.synthetic,
                "data.synthetic",
            )
            .into_iter()
            .next()
            {
                Some(key) => Err((
                    key,
                    "describes the generated data set; data.kind = \"mnist\" reads the IDX files instead (remove the key or set data.kind = \"synthetic\")".into(),
                )),
                None => Ok(()),
            }
        }
    }
}

/// The LIF constants shape only the `lif` / `soft_lif` activations (and the
/// spiking evaluation, which requires one of them).
fn check_lif_usage(s: &Scenario) -> Result<(), Invalid> {
    if matches!(
        s.network.activation,
        ActivationKind::Lif | ActivationKind::SoftLif
    ) {
        return Ok(());
    }
    match crate::algo::pc::changed_keys(
        &s.network.lif,
        &crate::nn::activation::LifParams::default(),
        "network.lif",
    )
    .into_iter()
    .next()
    {
        Some(key) => Err((
            key,
            format!(
                "shapes only the \"lif\" and \"soft_lif\" activations, and network.activation is {:?}; remove the key or change the activation",
                s.network.activation
            ),
        )),
        None => Ok(()),
    }
}

/// An evaluation interval longer than the run would never evaluate.
fn check_eval_every(s: &Scenario) -> Result<(), Invalid> {
    let every = s.output.eval_every;
    let Some(plan) = bounds::StepPlan::of(s) else {
        return Ok(());
    };
    check(every <= plan.total_steps(), "output.eval_every", || {
        format!(
            "is {every} but the run has only {} training step(s) ({} epoch(s) × {} step(s) of batch {} over {} samples); use 0 (after every epoch) or at most {}",
            plan.total_steps(),
            plan.epochs,
            plan.steps_per_epoch,
            plan.batch,
            plan.train_samples,
            plan.total_steps()
        )
    })
}

/// Checks of the `[snn]` table.
fn validate_snn(s: &Scenario, c: &SnnConfig) -> Result<(), Invalid> {
    check(
        matches!(
            s.network.activation,
            ActivationKind::Lif | ActivationKind::SoftLif
        ),
        "network.activation",
        || {
            format!(
                "[snn] runs the network with LIF spikes, so the hidden activation must be \"lif\" or \"soft_lif\", got {:?}",
                s.network.activation
            )
        },
    )?;
    check(
        s.network.lif.tau_ref.is_finite() && s.network.lif.tau_ref > 0.0,
        "network.lif.tau_ref",
        || {
            format!(
                "[snn] codes inputs as Poisson rates x / t_ref, so t_ref must be > 0, got {}",
                show(s.network.lif.tau_ref)
            )
        },
    )?;
    positive(c.dt, "snn.dt")?;
    check(c.dt <= 0.01, "snn.dt", || {
        format!(
            "must be ≤ 0.01 s (a LIF neuron spikes at most once per step), got {}",
            show(c.dt)
        )
    })?;
    check(
        c.presentation_time.is_finite() && c.presentation_time >= c.dt,
        "snn.presentation_time",
        || {
            format!(
                "must be ≥ snn.dt ({}), got {}",
                show(c.dt),
                show(c.presentation_time)
            )
        },
    )?;
    check(
        c.presentation_time / c.dt <= 1e7,
        "snn.presentation_time",
        || {
            format!(
                "{} s at dt = {} is more than 10^7 steps per image",
                show(c.presentation_time),
                show(c.dt)
            )
        },
    )?;
    positive(c.tau_s, "snn.tau_s")?;
    if let Some(t) = c
        .presentation_sweep
        .iter()
        .find(|&&t| !(t.is_finite() && t >= c.dt && t <= c.presentation_time))
    {
        return Err((
            "snn.presentation_sweep".into(),
            format!(
                "every time must lie in [snn.dt, snn.presentation_time] = [{}, {}], got {}",
                show(c.dt),
                show(c.presentation_time),
                show(*t)
            ),
        ));
    }
    check(c.test_subset != Some(0), "snn.test_subset", || {
        "must be ≥ 1 when given".into()
    })?;
    at_most(c.threads, MAX_THREADS, "snn.threads", "worker threads")?;
    check(
        c.runtime == crate::snn::SnnRuntime::Loop
            || s.runtime.driver == crate::scenario::Driver::Lockstep,
        "snn.runtime",
        || {
            "\"virtual\" times the spike edges with [runtime], which here already times the actors of training (runtime.driver is not \"lockstep\"); use snn.runtime = \"loop\" or train on the lockstep driver".into()
        },
    )?;
    check(
        c.runtime == crate::snn::SnnRuntime::Loop || c.evaluate,
        "snn.runtime",
        || {
            "chooses where the spiking evaluation runs, and snn.evaluate = false skips it; remove the key".into()
        },
    )?;
    Ok(())
}
