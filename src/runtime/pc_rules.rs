//! PROVISIONAL adapter to the PC rules (DESIGN.md §2) used by the PC actors.
//! The rules proper are written once in `algo::pc` (branch `pc`); until that
//! API lands, these are the per-layer operations on batched matrices the
//! actors call. Each is one line of the PC equations:
//! `u = f(x[l−1]) Wᵀ + b` (softmax at a CE output), `ε = x − u`,
//! `x ← x + γ(−ε + f'(x) ⊙ (ε[l+1] W[l+1]))`, `ΔW = s εᵀ f(x[l−1])`.

use crate::nn::mlp::affine_into;
use crate::nn::{Activation, LossKind, Real};
use ndarray::linalg::general_mat_mul;
use ndarray::{Array1, Array2, ArrayView1, ArrayView2, Axis, Zip};

/// `u = f(x[l−1]) Wᵀ + b`, through the output function at the output layer.
pub fn predict<T: Real>(
    fx: ArrayView2<T>,
    w: ArrayView2<T>,
    b: ArrayView1<T>,
    is_output: bool,
    out: LossKind,
) -> Array2<T> {
    let mut u = Array2::zeros((fx.nrows(), w.nrows()));
    predict_into(fx, w, b, is_output, out, &mut u);
    u
}

pub fn predict_into<T: Real>(
    fx: ArrayView2<T>,
    w: ArrayView2<T>,
    b: ArrayView1<T>,
    is_output: bool,
    out: LossKind,
    u: &mut Array2<T>,
) {
    if u.dim() != (fx.nrows(), w.nrows()) {
        *u = Array2::zeros((fx.nrows(), w.nrows()));
    }
    affine_into(fx, w, b, u.view_mut());
    if is_output {
        out.output_inplace(u.view_mut());
    }
}

/// The clamped output `x[L] = u + β (y − u)` (β = 1: the target).
pub fn clamp_output<T: Real>(u: ArrayView2<T>, y: ArrayView2<T>, beta: f64) -> Array2<T> {
    if beta == 1.0 {
        return y.to_owned();
    }
    let beta = T::of(beta);
    let mut x = u.to_owned();
    Zip::from(&mut x).and(&y).for_each(|x, &y| *x = *x + beta * (y - *x));
    x
}

/// `ε = x − u`.
pub fn error<T: Real>(x: ArrayView2<T>, u: ArrayView2<T>) -> Array2<T> {
    &x - &u
}

/// `ε W` — what this layer tells the layer below.
pub fn feedback<T: Real>(eps: ArrayView2<T>, w: ArrayView2<T>) -> Array2<T> {
    let mut out = Array2::zeros((eps.nrows(), w.ncols()));
    general_mat_mul(T::one(), &eps, &w, T::zero(), &mut out);
    out
}

/// `f(x)`.
pub fn activity<T: Real>(x: ArrayView2<T>, act: Activation) -> Array2<T> {
    let mut a = x.to_owned();
    act.apply_inplace(a.view_mut());
    a
}

/// `x ← x + γ(−ε + f'(x) ⊙ e)` with `e = ε[l+1] W[l+1]` (absent: no term).
pub fn relax<T: Real>(
    x: &mut Array2<T>,
    eps: ArrayView2<T>,
    e: Option<ArrayView2<T>>,
    gamma: T,
    act: Activation,
) {
    match e {
        Some(e) => {
            let mut g = e.to_owned();
            act.mul_derivative(x.view(), g.view_mut());
            Zip::from(x).and(&eps).and(&g).for_each(|x, &eps, &g| *x += gamma * (g - eps));
        }
        None => Zip::from(x).and(&eps).for_each(|x, &eps| *x -= gamma * eps),
    }
}

/// `ΔW = s εᵀ f(x[l−1])`, `Δb = s Σ_rows ε`.
pub fn weight_update<T: Real>(
    eps: ArrayView2<T>,
    fx: ArrayView2<T>,
    scale: T,
    dw: &mut Array2<T>,
    db: &mut Array1<T>,
) {
    if dw.dim() != (eps.ncols(), fx.ncols()) {
        *dw = Array2::zeros((eps.ncols(), fx.ncols()));
        *db = Array1::zeros(eps.ncols());
    }
    general_mat_mul(scale, &eps.t(), &fx, T::zero(), dw);
    db.fill(T::zero());
    for row in eps.axis_iter(Axis(0)) {
        db.scaled_add(scale, &row);
    }
}
