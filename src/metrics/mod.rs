//! Everything a run writes goes through the `Recorder`: CSV tables, JSON,
//! the resolved scenario, `.npy` arrays and SVG plots, each written
//! atomically (`fsio`), so a run killed at any moment never leaves a
//! half-written file; and the directory describes one run: `--force` empties
//! an earlier pcsim directory before reusing it. `equivalence` measures and
//! logs how far a rule's updates are from backprop's.

pub mod equivalence;
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

/// The file that marks a directory as pcsim's output, so `--force` may
/// empty it.
pub const MARKER: &str = ".pcsim-output";

/// A directory pcsim wrote: it has the marker, or (written before the
/// marker existed) the files of a run or a sweep.
fn written_by_pcsim(dir: &Path) -> bool {
    let has = |name: &str| dir.join(name).exists();
    has(MARKER)
        || has("sweep.csv")
        || (has("scenario.toml") && (has("summary.json") || has("metrics.csv")))
}

impl Recorder {
    /// Creates the output directory. An existing non-empty directory is
    /// refused unless `overwrite`, so earlier results are never clobbered by
    /// accident; with `overwrite`, a directory pcsim wrote is emptied first
    /// (the directory describes one run), and any other is refused.
    pub fn create(dir: &Path, overwrite: bool) -> Result<Self> {
        if dir.exists() && !dir.is_dir() {
            anyhow::bail!(
                "output directory {} exists and is not a directory; choose another --out",
                dir.display()
            );
        }
        let entries = |dir: &Path| {
            std::fs::read_dir(dir)
                .with_context(|| format!("cannot list the output directory {}", dir.display()))
        };
        if dir.is_dir() && entries(dir)?.next().is_some() {
            if !overwrite {
                anyhow::bail!(
                    "output directory {} already exists and is not empty; choose another --out or pass --force to overwrite",
                    dir.display()
                );
            }
            if !written_by_pcsim(dir) {
                anyhow::bail!(
                    "output directory {} is not empty and was not written by pcsim (it has no {MARKER}, scenario.toml or sweep.csv); --force only replaces pcsim output, so choose another --out",
                    dir.display()
                );
            }
            for entry in entries(dir)? {
                let path = entry
                    .with_context(|| format!("cannot list {}", dir.display()))?
                    .path();
                let removed = if path.is_dir() && !path.is_symlink() {
                    std::fs::remove_dir_all(&path)
                } else {
                    std::fs::remove_file(&path)
                };
                removed.with_context(|| {
                    format!(
                        "--force: cannot remove {} of the earlier run",
                        path.display()
                    )
                })?;
            }
        }
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create output directory {}", dir.display()))?;
        let rec = Self {
            dir: dir.to_path_buf(),
        };
        rec.write_text(
            MARKER,
            "This directory was written by pcsim; `--force` empties it before reusing it.\n",
        )?;
        Ok(rec)
    }

    /// An existing directory pcsim wrote, kept as it is (a suite resuming).
    pub fn open(dir: &Path) -> Result<Self> {
        anyhow::ensure!(
            dir.is_dir() && written_by_pcsim(dir),
            "{} is not a directory pcsim wrote",
            dir.display()
        );
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

/// Writes `bytes` to `path` atomically (`fsio::write_atomic`).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    crate::fsio::write_atomic(path, bytes)
        .with_context(|| format!("cannot write {}", path.display()))
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
