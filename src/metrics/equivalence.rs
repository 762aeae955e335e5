//! Equivalence with backprop: a rule's applied update compared, layer by
//! layer, with BP's update on the same parameters and batch (relative L2
//! difference and cosine), logged as `equivalence.csv` (one row per recorded
//! step and layer), digested for `summary.json` and plotted.

use super::plot::{Panel, Series};
use super::{Table, num};
use crate::nn::{Real, Updates};
use anyhow::Result;
use serde_json::json;

/// A layer update further than this (relative) from BP's counts as inexact.
pub const INEXACT: f64 = 1e-9;

/// The recorded comparisons of one run.
#[derive(Clone, Debug)]
pub struct EquivalenceLog {
    pub table: Table,
    /// `W2 … WL`.
    layers: Vec<String>,
}

impl EquivalenceLog {
    /// A log for a network of `depth` layers (input included).
    pub fn new(depth: usize) -> Self {
        Self {
            table: Table::new(&["step", "layer", "rel_diff", "cosine"]),
            layers: (2..=depth).map(|l| format!("W{l}")).collect(),
        }
    }

    /// Records the comparison of the update applied at `step` with BP's.
    pub fn record<T: Real>(&mut self, step: usize, applied: &Updates<T>, reference: &Updates<f64>) {
        let applied = to_f64(applied);
        let rel = applied.rel_diff(reference);
        let cos = applied.cosine(reference);
        for ((name, rd), cos) in self.layers.iter().zip(rel).zip(cos) {
            self.table
                .push(vec![step.to_string(), name.clone(), num(rd), num(cos)]);
        }
    }

    /// `max_rel_diff`, `min_cosine`, `mean_rel_diff`, `frac_inexact` (share of
    /// recorded layer updates further than `INEXACT` from BP's), `recorded_steps`.
    pub fn summary(&self) -> serde_json::Value {
        let rd = self.table.column("rel_diff");
        let cos = self.table.column("cosine");
        let n = rd.len().max(1) as f64;
        json!({
            "max_rel_diff": rd.iter().copied().fold(0.0, f64::max),
            "min_cosine": cos.iter().copied().fold(1.0, f64::min),
            "mean_rel_diff": rd.iter().sum::<f64>() / n,
            "frac_inexact": rd.iter().filter(|v| v.is_nan() || **v > INEXACT).count() as f64 / n,
            "recorded_steps": rd.len() / self.layers.len().max(1),
        })
    }

    /// Relative difference per layer against the training step (log scale).
    pub fn plot(&self) -> Result<String> {
        let steps = self.table.column("step");
        let rd = self.table.column("rel_diff");
        let series = self
            .layers
            .iter()
            .map(|name| {
                let pts = self
                    .table
                    .rows
                    .iter()
                    .zip(steps.iter().zip(&rd))
                    .filter(|(row, _)| &row[1] == name)
                    .map(|(_, (&x, &y))| (x, y))
                    .collect();
                Series::new(name.clone(), pts)
            })
            .collect();
        super::plot::svg(&[Panel {
            title: "Update vs backprop".into(),
            x_label: "training step".into(),
            y_label: "‖ΔW − ΔW_bp‖ / ‖ΔW_bp‖".into(),
            series,
            log_y: true,
        }])
    }
}

/// An update in f64, for comparisons.
pub fn to_f64<T: Real>(u: &Updates<T>) -> Updates<f64> {
    Updates {
        dw: u.dw.iter().map(|w| w.mapv(|v| v.f64())).collect(),
        db: u.db.iter().map(|b| b.mapv(|v| v.f64())).collect(),
    }
}
