//! Batch normalisation of a layer's pre-activations for the rate network,
//! and its fusion into the preceding `W` and `b` for the spiking network
//! (DESIGN.md §4: "batch norm fused into W and b first").
//!
//! Training mode normalises with the batch's statistics and updates moving
//! averages; inference mode uses the moving averages. `γ` and `β` are
//! trainable with the gradients from `backward`. A stand-alone component:
//! the backprop trainer (`algo::bp`) does not insert it yet, so an `Mlp`
//! trained by `pcsim run` has no BN; `fuse_into` is what the spiking
//! conversion applies when a network does carry BN layers.

use ndarray::{Array1, Array2, ArrayView2, ArrayViewMut1, ArrayViewMut2, Axis, Zip};

/// `y = γ (z − μ)/sqrt(σ² + ε) + β` per feature (column).
#[derive(Clone, Debug, PartialEq)]
pub struct BatchNorm {
    pub gamma: Array1<f32>,
    pub beta: Array1<f32>,
    pub running_mean: Array1<f32>,
    pub running_var: Array1<f32>,
    /// Weight of the newest batch in the moving averages.
    pub momentum: f32,
    pub eps: f32,
    /// From the last training forward pass: `ẑ` and `1/sqrt(σ² + ε)`.
    xhat: Array2<f32>,
    inv_std: Array1<f32>,
}

/// Gradients of the loss with respect to `γ` and `β`.
#[derive(Clone, Debug, PartialEq)]
pub struct BatchNormGrads {
    pub gamma: Array1<f32>,
    pub beta: Array1<f32>,
}

impl BatchNorm {
    /// `γ = 1`, `β = 0`, moving mean 0 and variance 1.
    pub fn new(n: usize) -> Self {
        Self {
            gamma: Array1::ones(n),
            beta: Array1::zeros(n),
            running_mean: Array1::zeros(n),
            running_var: Array1::ones(n),
            momentum: 0.1,
            eps: 1e-5,
            xhat: Array2::zeros((0, n)),
            inv_std: Array1::zeros(n),
        }
    }

    pub fn len(&self) -> usize {
        self.gamma.len()
    }

    pub fn is_empty(&self) -> bool {
        self.gamma.is_empty()
    }

    /// Training mode, in place on `z` (rows = batch): normalises with the
    /// batch statistics, keeps what `backward` needs, updates the moving
    /// averages (unbiased variance).
    pub fn forward_train(&mut self, mut z: ArrayViewMut2<f32>) {
        let (rows, n) = z.dim();
        assert_eq!(n, self.len(), "one BN feature per column");
        if rows == 0 {
            return;
        }
        let mean = z.mean_axis(Axis(0)).expect("rows > 0");
        let var = z.var_axis(Axis(0), 0.0);
        let m = self.momentum;
        let unbias = if rows > 1 {
            rows as f32 / (rows as f32 - 1.0)
        } else {
            1.0
        };
        Zip::from(&mut self.running_mean)
            .and(&mean)
            .for_each(|r, &v| *r = (1.0 - m) * *r + m * v);
        Zip::from(&mut self.running_var)
            .and(&var)
            .for_each(|r, &v| *r = (1.0 - m) * *r + m * v * unbias);
        let eps = self.eps;
        Zip::from(&mut self.inv_std)
            .and(&var)
            .for_each(|s, &v| *s = 1.0 / (v + eps).sqrt());
        if self.xhat.nrows() != rows {
            self.xhat = Array2::zeros((rows, n));
        }
        for (mut row, mut xh) in z.rows_mut().into_iter().zip(self.xhat.rows_mut()) {
            Zip::from(&mut row)
                .and(&mut xh)
                .and(&mean)
                .and(&self.inv_std)
                .and(&self.gamma)
                .and(&self.beta)
                .for_each(|z, xh, &mu, &is, &g, &b| {
                    *xh = (*z - mu) * is;
                    *z = g * *xh + b;
                });
        }
    }

    /// Inference mode, in place: normalises with the moving averages.
    pub fn forward_inference(&self, mut z: ArrayViewMut2<f32>) {
        let (scale, shift) = self.affine();
        for mut row in z.rows_mut() {
            Zip::from(&mut row)
                .and(&scale)
                .and(&shift)
                .for_each(|z, &s, &t| *z = s * *z + t);
        }
    }

    /// Inference mode as `y = s ⊙ z + t`: `s = γ/sqrt(var + ε)`, `t = β − s μ`.
    pub fn affine(&self) -> (Array1<f32>, Array1<f32>) {
        let scale = Zip::from(&self.gamma)
            .and(&self.running_var)
            .map_collect(|&g, &v| g / (v + self.eps).sqrt());
        let shift = Zip::from(&self.beta)
            .and(&scale)
            .and(&self.running_mean)
            .map_collect(|&b, &s, &m| b - s * m);
        (scale, shift)
    }

    /// Backward through the last `forward_train`: turns `dy` (∂loss/∂y) into
    /// ∂loss/∂z in place and returns the gradients of `γ` and `β`.
    pub fn backward(&self, mut dy: ArrayViewMut2<f32>) -> BatchNormGrads {
        let (rows, n) = dy.dim();
        assert_eq!(
            (rows, n),
            self.xhat.dim(),
            "backward follows forward_train on the same batch"
        );
        let dbeta = dy.sum_axis(Axis(0));
        let dgamma = (&dy * &self.xhat).sum_axis(Axis(0));
        let inv_b = 1.0 / rows as f32;
        for (mut d, xh) in dy.rows_mut().into_iter().zip(self.xhat.rows()) {
            Zip::from(&mut d)
                .and(&xh)
                .and(&self.gamma)
                .and(&self.inv_std)
                .and(&dbeta)
                .and(&dgamma)
                .for_each(|d, &xh, &g, &is, &db, &dg| {
                    // dx = γ/σ (dy − mean(dy) − x̂ mean(dy x̂))
                    *d = g * is * (*d - inv_b * db - xh * inv_b * dg);
                });
        }
        BatchNormGrads {
            gamma: dgamma,
            beta: dbeta,
        }
    }

    /// Plain SGD on `γ`, `β`: `θ ← θ − α g`.
    pub fn sgd(&mut self, grads: &BatchNormGrads, learning_rate: f32) {
        self.gamma.scaled_add(-learning_rate, &grads.gamma);
        self.beta.scaled_add(-learning_rate, &grads.beta);
    }

    /// Folds inference-mode BN into the preceding affine map `z = a Wᵀ + b`
    /// (`w` is `(out, in)`): `W ← diag(s) W`, `b ← s ⊙ b + t`.
    pub fn fuse_into(&self, mut w: ArrayViewMut2<f32>, mut b: ArrayViewMut1<f32>) {
        assert_eq!(w.nrows(), self.len(), "BN width equals the layer's outputs");
        let (scale, shift) = self.affine();
        for (mut row, &s) in w.rows_mut().into_iter().zip(&scale) {
            row.mapv_inplace(|v| v * s);
        }
        Zip::from(&mut b)
            .and(&scale)
            .and(&shift)
            .for_each(|b, &s, &t| *b = s * *b + t);
    }
}

/// `z = a Wᵀ + b` for a batch (test helper and reference path).
pub fn affine(a: ArrayView2<f32>, w: ArrayView2<f32>, b: &Array1<f32>) -> Array2<f32> {
    a.dot(&w.t()) + b
}
