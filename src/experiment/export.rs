//! `--export-npy DIR`: the initial parameters, the first batch and the first
//! applied update as `.npy` files, for checking pcsim against outside code.
//! Names follow DESIGN.md's numbering: `W2.npy … WL.npy` (shape `(out, in)`),
//! `b2.npy … bL.npy`, `batch_x.npy`, `batch_y.npy` (one-hot),
//! `dW2.npy … dWL.npy`, `db2.npy … dbL.npy` (learning rate included).

use crate::metrics::write_npy;
use crate::nn::{Mlp, Real, Updates};
use anyhow::{Context, Result};
use ndarray::ArrayView2;
use std::path::Path;

pub fn initial<T: Real>(
    dir: &Path,
    mlp: &Mlp<T>,
    x: ArrayView2<T>,
    y: ArrayView2<T>,
) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for (i, (w, b)) in mlp.w.iter().zip(&mlp.b).enumerate() {
        write_npy(&dir.join(format!("W{}.npy", i + 2)), w)?;
        write_npy(&dir.join(format!("b{}.npy", i + 2)), b)?;
    }
    write_npy(&dir.join("batch_x.npy"), &x)?;
    write_npy(&dir.join("batch_y.npy"), &y)
}

pub fn first_update<T: Real>(dir: &Path, u: &Updates<T>) -> Result<()> {
    for (i, (dw, db)) in u.dw.iter().zip(&u.db).enumerate() {
        write_npy(&dir.join(format!("dW{}.npy", i + 2)), dw)?;
        write_npy(&dir.join(format!("db{}.npy", i + 2)), db)?;
    }
    Ok(())
}
