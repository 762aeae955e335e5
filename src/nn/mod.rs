//! Dense networks on ndarray: the scalar type, activations, losses, the
//! multilayer perceptron's parameters and their initialisation, and the
//! kernels every learning rule computes with (`kernels`, `sparse`, with
//! run-time SIMD dispatch in `simd`).
//!
//! Indexing convention (DESIGN.md §2): layers are numbered `l = 1..L`, layer 1
//! is the input. `Mlp::w[i]` is `W[i + 2]`, the `(out, in)` matrix that maps
//! layer `i + 1` to layer `i + 2`; `Mlp::b[i]` is `b[i + 2]`.

pub mod activation;
pub mod kernels;
pub mod linalg;
pub mod loss;
pub mod mlp;
pub mod simd;
pub mod sparse;
pub mod team;

pub use activation::{Activation, ActivationKind};
pub use loss::LossKind;
pub use mlp::{Mlp, Updates};

use std::fmt::{Debug, Display};

/// The floating-point type a run computes in (`f32` for speed, `f64` for
/// equivalence work).
pub trait Real:
    kernels::Element
    + ndarray::LinalgScalar
    + ndarray::ScalarOperand
    + num_traits::Float
    + num_traits::FromPrimitive
    + num_traits::ToPrimitive
    + std::ops::AddAssign
    + std::ops::SubAssign
    + std::ops::MulAssign
    + std::iter::Sum
    + ndarray_npy::WritableElement
    + ndarray_npy::ReadableElement
    + Debug
    + Display
    + Send
    + Sync
    + 'static
{
    /// `"f32"` or `"f64"`, as the scenario spells it.
    const NAME: &'static str;
    fn of(x: f64) -> Self;
    fn f64(self) -> f64;
}

impl Real for f32 {
    const NAME: &'static str = "f32";
    #[inline]
    fn of(x: f64) -> Self {
        x as f32
    }
    #[inline]
    fn f64(self) -> f64 {
        self as f64
    }
}

impl Real for f64 {
    const NAME: &'static str = "f64";
    #[inline]
    fn of(x: f64) -> Self {
        x
    }
    #[inline]
    fn f64(self) -> f64 {
        self
    }
}
