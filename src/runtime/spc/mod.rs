//! Spiking predictive coding (`algo::pc::spiking`) on the actor runtime: one
//! actor per layer (`input`, `layer2` … `layerL`), sigma-delta spikes up as
//! `runtime::Spikes`, graded errors `ε W` down, under the event schedule —
//! an actor runs relaxation step `t` once step `t`'s messages arrived, so
//! any delay gives the lockstep result. No equation is written here: the
//! per-layer math is `algo::pc::spiking`'s (`quanta`, `receive_quantum`,
//! `init_hidden`, `relax`, `refresh_*`, `down_message`, `learn`).
//!
//! * A message is one step of the whole batch: spike `k` of an up-message
//!   is sender neuron `k mod n` of sample `k div n` (`n` the sender's width),
//!   with its signed count of quanta. The sender remembers what it
//!   announced; the receiver owns `W` (column-major, so a sender's column
//!   is contiguous), `b` and `r̂` and turns every quantum into a column-add
//!   of its prediction.
//! * "No spikes this step" vs "not arrived yet": every actor sends its
//!   up-message every step; an empty one is a step marker. Actors count
//!   spike messages (sample-steps on which something fired, as the lockstep
//!   trainer counts them) and markers separately. A down-message of all-zero
//!   errors is a marker too (`Down(None)`).
//! * Step `t ≥ 1` of a hidden layer: Euler step with `Down(t)` from above,
//!   send `Up(t)` from the new `f(x)`, apply `Up(t)` from below and refresh
//!   `ε`, learn, send `Down(t + 1)` below. Step 0 is the bottom-up sweep.
//!   The output has no Euler step. The input sends all its steps at start.
//! * Payloads are not allocated per message: a message is a read-only
//!   `Arc` handle to the sender's own outgoing buffer, which the sender
//!   refills in place once the receiver has dropped the last message
//!   (`Outbox`; a fresh buffer only while a delayed or duplicated copy is
//!   still held). The receiver reads the errors from above in place.
//! * Each step's message is stored by its tick, and a second copy of a tick
//!   is dropped, so duplication is harmless; a lost message would stall the
//!   schedule, so validation refuses `runtime.loss` for this algorithm.
//! * Learning is local: layer actor `l` owns `W[l]`, `b[l]`, the
//!   momentum buffers of both, the learning rate and μ (`Synapses`). It
//!   accumulates `ΔW` over its learning window from its own `ε` and the
//!   `r̂` it decoded from the spikes it received, and at the end of the
//!   sample's settling (after its last step, when every down-message of
//!   the batch has left with the old weights) steps its own synapses with
//!   the lockstep trainer's SGD-with-momentum arithmetic, element by
//!   element — so the actors still equal lockstep bit for bit.
//!
//! `SpcTrainer` builds the network from the `Mlp` once (the weights then
//! live in the actors, across batches; a batch of another size rebuilds
//! the per-batch state and the actors carry their synapses over), presents
//! each batch, runs it on the virtual or the wall-clock driver, and stores
//! the weights back into the `Mlp` for evaluation, checkpoints and export;
//! it applies no update itself. Prediction runs the lockstep spiking
//! trainer (evaluation is synchronous).

mod actors;
mod synapses;
mod trainer;

pub use actors::{SpcActor, SpcMsg, SpcNetwork};
pub use synapses::Synapses;
pub use trainer::SpcTrainer;
