//! Spiking networks of LIF neurons (DESIGN.md §4): the neuron model, Poisson
//! input coding, synaptic filters, batch normalisation and its fusion, and
//! shadow training's second half — running a trained rate network (soft-LIF
//! activation) with spikes, event-driven, and scoring it.
//!
//! Units: time in seconds, rates in Hz, currents normalised to threshold 1.

pub mod actors;
pub mod batchnorm;
pub mod encode;
pub mod eval;
pub mod lif;
pub mod network;
pub mod synapse;

pub use actors::{ActorNetwork, ActorReport, SnnRuntime, evaluate_on_actors};
pub use eval::{SpikingReport, evaluate};
pub use network::{Readout, SpikingConfig, SpikingNetwork};
pub use synapse::SynapseKind;
