//! pcsim — a simulator of networks of locally-communicating neurons.
//!
//! Dependencies point one way, down this list (DESIGN.md §7):
//! `cli` → `experiment` → `scenario` → `snn` / `runtime` → `algo` →
//! `metrics` → `nn` → `data` → `fsio` (atomic file writes).

pub mod algo;
pub mod cli;
pub mod data;
pub mod experiment;
pub mod fsio;
pub mod metrics;
pub mod nn;
pub mod runtime;
pub mod scenario;
pub mod snn;
