//! The `[sweep]` table: the grid of scenario keys that `pcsim sweep` runs
//! (`"runtime.jitter" = [0.0, 1.0]`), the resolved scenario of each grid
//! point, and the check that every value and every point is a valid
//! scenario, so a sweep is refused before it starts rather than failing
//! point by point.

use super::parse::{apply_overrides, parse};
use super::schema::Scenario;
use super::validate::{Invalid, check, validate};
use std::collections::BTreeMap;
use std::path::Path;

/// One grid point: `(dotted key, value)` per swept key, keys in sorted order.
pub type Point = Vec<(String, toml::Value)>;

/// Most grid points one sweep may have.
pub const MAX_GRID_POINTS: usize = 10_000;

/// Every combination of the swept values, keys in sorted order.
pub fn grid(sweep: &BTreeMap<String, Vec<toml::Value>>) -> Vec<Point> {
    let mut points = vec![Vec::new()];
    for (key, values) in sweep {
        let mut next = Vec::with_capacity(points.len() * values.len());
        for p in &points {
            for v in values {
                let mut q: Point = p.clone();
                q.push((key.clone(), v.clone()));
                next.push(q);
            }
        }
        points = next;
    }
    points
}

/// Number of grid points (saturating).
pub fn grid_size(sweep: &BTreeMap<String, Vec<toml::Value>>) -> usize {
    sweep
        .values()
        .fold(1usize, |n, v| n.saturating_mul(v.len()))
}

/// A value as a table cell: strings unquoted.
pub fn value_text(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `key=value, key=value`.
pub fn describe(point: &Point) -> String {
    point
        .iter()
        .map(|(k, v)| format!("{k}={}", value_text(v)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The scenario of one grid point: `base` (its `[sweep]` table dropped) with
/// the point's keys set, validated.
pub fn point_scenario(base: &Scenario, point: &Point) -> Result<Scenario, Invalid> {
    let mut plain = base.clone();
    plain.sweep.clear();
    let overrides: Vec<String> = point.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let file = Path::new("[sweep]");
    let s = apply_overrides(&plain.to_toml(), file, &overrides, "sweep")
        .and_then(|text| parse(&text, file))
        .map_err(|e| (e.key.unwrap_or_else(|| "sweep".into()), e.message))?;
    validate(&s)?;
    Ok(s)
}

fn label(key: &str) -> String {
    format!("sweep.\"{}\"", key.escape_default())
}

/// Every swept key names a scenario key, every value alone and every grid
/// point gives a valid scenario, and the grid is not absurdly large.
pub(crate) fn validate_sweep(s: &Scenario) -> Result<(), Invalid> {
    if s.sweep.is_empty() {
        return Ok(());
    }
    for (key, values) in &s.sweep {
        let parts = toml_edit::Key::parse(key).unwrap_or_default();
        check(
            !parts.is_empty() && parts[0].get() != "sweep",
            &label(key),
            || format!("`{key}` is not a dotted scenario key such as \"runtime.jitter\""),
        )?;
        check(!values.is_empty(), &label(key), || {
            "has no values; give a list such as [0.0, 1.0]".into()
        })?;
        for v in values {
            point_scenario(s, &vec![(key.clone(), v.clone())]).map_err(|(k, m)| {
                (
                    label(key),
                    format!("the value {} is not valid: key `{k}`: {m}", value_text(v)),
                )
            })?;
        }
    }
    let n = grid_size(&s.sweep);
    check(n <= MAX_GRID_POINTS, "sweep", || {
        format!(
            "the grid has {n} points, more than {MAX_GRID_POINTS}; split it into several sweeps"
        )
    })?;
    for (g, point) in grid(&s.sweep).iter().enumerate() {
        point_scenario(s, point).map_err(|(k, m)| {
            (
                "sweep".to_string(),
                format!(
                    "grid point {g} ({}) is not valid: key `{k}`: {m}",
                    describe(point)
                ),
            )
        })?;
    }
    Ok(())
}
