//! The scenario file: its schema and defaults (`schema`), reading it with
//! `--set` overrides (`parse`), semantic checks (`validate`) with resource
//! bounds (`bounds`), and the `[sweep]` grid (`grid`). Every error names the
//! file, the line and column, the key path and what is allowed.

pub mod bounds;
pub mod grid;
mod parse;
mod schema;
mod validate;

pub use parse::{ScenarioError, parse, parse_with_overrides};
pub use schema::*;
pub use validate::{Invalid, show, validate};

pub use crate::snn::{Readout, SynapseKind};

use std::path::Path;

/// Reads (`-`: standard input), parses (with overrides) and validates a
/// scenario file. A validation error is located at the key in the file, or
/// attributed to the `--set` override that gave the key its value.
pub fn load(file: &Path, overrides: &[String]) -> Result<Scenario, ScenarioError> {
    let text = parse::read(file)?;
    let scenario = parse_with_overrides(&text, file, overrides)?;
    validate(&scenario).map_err(|(key, message)| {
        let from_set = overrides.iter().rev().find(|ov| {
            ov.split_once('=').is_some_and(|(k, _)| {
                let k = k.trim();
                key == k || key.starts_with(&format!("{k}.")) || k.starts_with(&format!("{key}."))
            })
        });
        match from_set {
            Some(ov) => ScenarioError {
                file: file.to_path_buf(),
                position: None,
                key: Some(key),
                message: format!("{message} (from --set {})", ov.escape_debug()),
            },
            None => ScenarioError {
                file: file.to_path_buf(),
                position: parse::key_span(&text, &key).map(|s| parse::line_col(&text, s.start)),
                key: Some(key),
                message,
            },
        }
    })?;
    Ok(scenario)
}
