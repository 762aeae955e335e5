//! Everything a run writes goes through the `Recorder`: CSV tables, JSON,
//! the resolved scenario, `.npy` arrays and SVG plots, each written to a
//! temporary file and renamed, so an interrupted run never leaves a
//! half-written file.

pub mod plot;

use anyhow::{Context, Result};
use ndarray::{ArrayBase, Data, Dimension};
use std::path::{Path, PathBuf};

/// A CSV table kept in memory and rewritten whole on every flush.
#[derive(Clone, Debug, Default)]
pub struct Table {
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Self {
        Self {
            header: header.iter().map(|s| s.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn push(&mut self, row: Vec<String>) {
        debug_assert_eq!(row.len(), self.header.len());
        self.rows.push(row);
    }

    /// The column `name` parsed as numbers (NaN where a cell is not a number).
    pub fn column(&self, name: &str) -> Vec<f64> {
        let Some(i) = self.header.iter().position(|h| h == name) else {
            return Vec::new();
        };
        self.rows
            .iter()
            .map(|r| r[i].parse().unwrap_or(f64::NAN))
            .collect()
    }

    pub fn to_csv(&self) -> Result<Vec<u8>> {
        let mut w = csv::Writer::from_writer(Vec::new());
        w.write_record(&self.header)?;
        for row in &self.rows {
            w.write_record(row)?;
        }
        w.into_inner().map_err(|e| anyhow::anyhow!("{e}"))
    }
}

/// Formats a number for a CSV cell: full precision, round-trippable.
pub fn num(v: f64) -> String {
    format!("{v}")
}

/// Writes the files of one run directory.
#[derive(Debug)]
pub struct Recorder {
    dir: PathBuf,
}

impl Recorder {
    /// Creates the run directory. An existing non-empty directory is refused
    /// unless `overwrite`, so earlier results are never clobbered by accident.
    pub fn create(dir: &Path, overwrite: bool) -> Result<Self> {
        if dir.exists() && !overwrite && std::fs::read_dir(dir)?.next().is_some() {
            anyhow::bail!(
                "output directory {} already exists and is not empty; choose another --out or pass --force to overwrite",
                dir.display()
            );
        }
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create output directory {}", dir.display()))?;
        Ok(Self {
            dir: dir.to_path_buf(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Atomic write: temporary file in the same directory, then rename.
    pub fn write_bytes(&self, name: &str, bytes: &[u8]) -> Result<()> {
        write_atomic(&self.path(name), bytes)
    }

    pub fn write_text(&self, name: &str, text: &str) -> Result<()> {
        self.write_bytes(name, text.as_bytes())
    }

    pub fn write_table(&self, name: &str, table: &Table) -> Result<()> {
        self.write_bytes(name, &table.to_csv()?)
    }

    pub fn write_json(&self, name: &str, value: &serde_json::Value) -> Result<()> {
        let mut text = serde_json::to_string_pretty(value)?;
        text.push('\n');
        self.write_text(name, &text)
    }

    /// Writes an SVG plot produced by `draw` (see `plot`).
    pub fn write_svg(&self, name: &str, svg: String) -> Result<()> {
        self.write_text(name, &svg)
    }
}

/// Temporary file beside `path`, then rename: readers see the old file or
/// the new one, never a half-written one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".partial");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("cannot move {} into place", path.display()))?;
    Ok(())
}

/// Writes an array as `.npy` (atomically) for numpy users.
pub fn write_npy<A, S, D>(path: &Path, array: &ArrayBase<S, D>) -> Result<()>
where
    A: ndarray_npy::WritableElement,
    S: Data<Elem = A>,
    D: Dimension,
{
    let mut bytes = Vec::new();
    ndarray_npy::WriteNpyExt::write_npy(array, &mut bytes)
        .with_context(|| format!("cannot encode {}", path.display()))?;
    write_atomic(path, &bytes)
}
