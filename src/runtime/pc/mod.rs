//! Predictive-coding actors: the `algo::pc` rules driven by local messages.
//! No PC equation is written here — these files only decide *when* a rule
//! runs and assemble message payloads.
//!
//! | file | what |
//! |---|---|
//! | `input.rs` | the input actor: clamps batches, counts the layer-2 `Done` credits |
//! | `layer.rs` | a layer (slice) actor, or a layer's error nodes (`nodes`); the output is one too |
//! | `value.rs` | a layer's value nodes (`nodes` granularity) |
//! | `clocked.rs` | the clocked schedule: local-clock steps, Z-IL's error-wave trigger |
//! | `assembly.rs` | payloads assembled from several senders (groups) |
//! | `build.rs` | the network: actors and topology from the `Mlp`'s shapes, and the narrow harness interface `PcNetwork` |
//!
//! **Granularity.** `layer`: one actor per layer. `groups`: every hidden
//! layer is split into `k` slices of units; each slice is one actor holding
//! that slice's value nodes and error nodes and the rows of `W[l]`, `b[l]`
//! that predict them (the output layer stays one actor, since a softmax needs
//! the whole row). `nodes`: every hidden layer (slice) is two actors — its
//! error nodes `err{l}` (hold `ε[l]` and own `W[l]`, `b[l]`: they receive the
//! prediction input `f(x[l−1])` from below and the value nodes' steps, send
//! `ε[l]` to their value nodes and `ε[l] W[l]` down) and its value nodes
//! `val{l}` (hold `x[l]`: they receive `ε[l]` from their error nodes and
//! `ε[l+1] W[l+1]` from above, take the Euler step, send `f(x[l])` up and the
//! step Δ back); the output layer is one error-node actor whose value nodes
//! are clamped (nudged) to the target. A group assembles `f(x[l−1])` from the
//! slices below (concatenation) and `ε[l+1] W[l+1]` as the sum of the partial
//! products of the groups above.
//!
//! **W ownership.** The receiving side of an edge owns its synapses: the
//! actor (error nodes) of layer `l` owns `W[l]`, `b[l]` (its rows) and
//! `B[l]` under feedback alignment. Messages: `Up(f(x))` travels up;
//! `Down(ε W)` travels down, computed with the owner's current, not yet
//! updated, weights; `Init(x)`, `Error(ε)` and `Step(Δ)` run between a
//! layer's error and value nodes; `Done` tells the input that a layer-2 actor
//! finished a sample — the credit that lets the input clamp the next batch.
//! Every rule uses only the actor's own state and the payloads it received.
//!
//! **Shards.** With `runtime.shards = k` the network is built `k` times;
//! each copy relaxes its own share of the batch's rows (samples relax
//! independently) with no message to the other copies, and at its update
//! each layer (slice) actor sends its `ε[l]` and input to its counterparts
//! in the other shards (`Share`). Each copy then computes the update of the
//! whole batch, pooled in row order, for its own block of `W[l]`'s inputs
//! (columns) only, applies it with its optimizer state for that block, and
//! sends the updated block to the others (`Columns`), which copy it in: the
//! same bits in every copy and as one network holding the whole batch, for
//! a shard's share of the update's work. The layer-2 actors take the sparse or dense path
//! of the whole batch (its density is presented with the batch). Any cut of
//! the rows gives the same bits, so on the wall driver the shares follow
//! each shard's measured speed (`PcNetwork::rebalance`): a core the host
//! slows for a while gets fewer rows instead of holding the others up.
//!
//! **Schedules.** `event`: an actor runs inference step `t` when the
//! messages of step `t` have arrived — a dataflow that equals the lockstep
//! reference under any delays. `clocked`: step `t` of sample `s` runs at the
//! actor's local time `s·S + t0 + t·P` (phase A: new prediction from the
//! latest input, error, message down, weight update at the last step) and
//! `+ P/2` (phase B: Euler step with the latest feedback, message up), with
//! whatever has arrived by then. Z-IL updates `W[l]` at step `t = L − l`
//! (trigger `clock`), or — trigger `event` under a clocked schedule — the
//! moment the error wave (the first nonzero feedback) reaches the actor. The
//! feedforward pass (step-0 predictions) is event-driven in both schedules.

mod assembly;
mod build;
mod clocked;
mod input;
mod layer;
mod value;

pub use build::{PcNetwork, actor_names};

use super::actor::{Actor, Ctx, Envelope};
use super::config::{Schedule, Trigger};
use crate::algo::pc::{PcRule, UpdateInput};
use crate::nn::Real;
use crate::nn::sparse::SparseRows;
use input::InputActor;
use layer::LayerActor;
use ndarray::Array2;
use value::ValueActor;

/// The payloads of the PC network.
#[derive(Clone, Debug)]
pub enum PcMsg<T: Real> {
    /// `f(x)` of the sender's value nodes (the input sends `x[1]` itself).
    Up(Array2<T>),
    /// `ε W` of the sender: its errors through its own weights.
    Down(Array2<T>),
    /// Error nodes → their value nodes: the feedforward start `x[l] = u[l]`.
    Init(Array2<T>),
    /// Error nodes → their value nodes: the current `ε[l]`.
    Error(Array2<T>),
    /// Value nodes → their error nodes: the Euler step Δ they took.
    Step(Array2<T>),
    /// A layer-2 actor finished a sample (to the input).
    Done,
    /// To the same layer (slice) of the other shards: this shard's `ε[l]`
    /// and input `f(x[l−1])` at the update, for the pooled weight update.
    Share(Array2<T>, SharedInput<T>),
    /// To the same layer (slice) of the other shards: the sender's block of
    /// `W[l]`'s inputs (columns) after the pooled update.
    Columns(Array2<T>),
}

/// A shard's input rows `f(x[l−1])` in a `Share`: dense, or — when the
/// layer takes the sparse path — the sparse index its layer already built of
/// them (the update reads only the non-zeros, so the receiver need not index
/// the rows again), with each block's rows.
#[derive(Clone, Debug)]
pub enum SharedInput<T: Real> {
    Dense(Array2<T>),
    Sparse(Vec<(SparseRows<T>, std::ops::Range<usize>)>),
}

impl<T: Real> SharedInput<T> {
    /// The owned copy of a layer's update input that goes into a `Share`.
    fn of(input: &UpdateInput<'_, T>) -> Self {
        match input {
            UpdateInput::Dense(x) => Self::Dense(x.to_owned()),
            UpdateInput::Sparse(blocks) => Self::Sparse(
                blocks
                    .iter()
                    .map(|(sp, r)| (sp.compact_copy(), r.clone()))
                    .collect(),
            ),
        }
    }

    /// The received input as a part of the pooled update.
    fn as_update_input(&self) -> UpdateInput<'_, T> {
        match self {
            Self::Dense(x) => UpdateInput::Dense(x.view()),
            Self::Sparse(blocks) => {
                UpdateInput::Sparse(blocks.iter().map(|(sp, r)| (sp, r.clone())).collect())
            }
        }
    }
}

/// What every actor knows about the algorithm and the schedule (no runtime
/// state): the one `PcRule` the lockstep trainers are built from too.
#[derive(Clone, Debug)]
pub struct PcSettings {
    pub rule: PcRule,
    pub schedule: Schedule,
    pub trigger: Trigger,
    /// Local-clock period of one inference step.
    pub period: f64,
    /// Batches in flight (1: the input clamps the next batch when the last
    /// one is finished; more pipelines batches through the layers).
    pub pipeline: usize,
}

impl PcSettings {
    /// The step at which layer `l` (1-based, ≥ 2) updates its weights.
    pub fn last_tick(&self, l: usize) -> u32 {
        self.rule.update_step(l) as u32
    }
    /// Feedforward budget before step 0 (clocked schedule).
    pub fn t0(&self) -> f64 {
        self.rule.depth as f64 * self.period
    }
    /// Local time between two samples (clocked schedule).
    pub fn sample_period(&self) -> f64 {
        self.t0() + (self.last_tick(2) as f64 + 2.0) * self.period
    }
    fn clocked(&self) -> bool {
        self.schedule == Schedule::Clocked
    }
    /// Z-IL updates when the error wave arrives (clocked schedule, event trigger).
    fn wave(&self) -> bool {
        self.rule.zil && self.clocked() && self.trigger == Trigger::Event
    }
}

/// One actor of the PC network.
pub enum PcActor<T: Real> {
    Input(InputActor<T>),
    /// A layer (slice), or the error nodes of one (`nodes` granularity).
    Layer(Box<LayerActor<T>>),
    /// The value nodes of a hidden layer (slice), `nodes` granularity.
    Value(ValueActor<T>),
}

impl<T: Real> Actor for PcActor<T> {
    type Msg = PcMsg<T>;

    fn name(&self) -> String {
        match self {
            PcActor::Input(a) => a.name.clone(),
            PcActor::Layer(a) => a.name.clone(),
            PcActor::Value(a) => a.name.clone(),
        }
    }

    fn start(&mut self, ctx: &mut Ctx<PcMsg<T>>) {
        if let PcActor::Input(a) = self {
            a.start(ctx);
        }
    }

    fn handle(&mut self, env: Envelope<PcMsg<T>>, ctx: &mut Ctx<PcMsg<T>>) {
        match self {
            PcActor::Input(a) => a.handle(env, ctx),
            PcActor::Layer(a) => a.handle(env, ctx),
            PcActor::Value(a) => a.handle(env, ctx),
        }
    }

    fn timer(&mut self, tag: u64, ctx: &mut Ctx<PcMsg<T>>) {
        match self {
            PcActor::Input(a) => a.timer(tag, ctx),
            PcActor::Layer(a) => a.timer(tag, ctx),
            PcActor::Value(a) => a.timer(tag, ctx),
        }
    }

    fn is_done(&self) -> bool {
        match self {
            PcActor::Input(a) => a.is_done(),
            PcActor::Layer(a) => a.is_done(),
            PcActor::Value(a) => a.is_done(),
        }
    }

    fn waiting_for(&self) -> String {
        match self {
            PcActor::Input(a) => a.waiting_for(),
            PcActor::Layer(a) => a.waiting_for(),
            PcActor::Value(a) => a.waiting_for(),
        }
    }
}

/// Timer tag of step `t` (phase B: the half step) of sample `s`.
fn tag(s: u64, t: u32, phase_b: bool) -> u64 {
    (s << 24) | ((t as u64) << 1) | phase_b as u64
}

/// `(sample, step, phase B)` of a timer tag.
fn untag(tag: u64) -> (u64, u32, bool) {
    (tag >> 24, ((tag >> 1) & 0x7f_ffff) as u32, tag & 1 == 1)
}

/// Sends `payload` on every link (moved on the last, copied on the others).
fn broadcast<T: Real>(
    ctx: &mut Ctx<PcMsg<T>>,
    links: &[super::actor::Link],
    s: u64,
    t: u32,
    payload: Array2<T>,
    wrap: fn(Array2<T>) -> PcMsg<T>,
) {
    let Some((&last, rest)) = links.split_last() else {
        return;
    };
    for &l in rest {
        ctx.send(l, s, t, wrap(payload.clone()));
    }
    ctx.send(last, s, t, wrap(payload));
}
