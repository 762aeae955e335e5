//! The synapses a spiking-PC layer actor owns — `W[l]` (column-major),
//! `b[l]`, the momentum buffers of both, the learning rate and μ — and the
//! actor's local weight step. The step is a method of this struct alone: it
//! reads nothing but these fields and the update the actor accumulated from
//! its own errors and the spikes it received, so locality holds by
//! construction. Its arithmetic is `algo::Momentum`'s (`v ← μ v + ΔW`,
//! `W ← W + v`; with μ = 0 `W ← W + ΔW`), element by element, so the
//! actors keep the lockstep trainer's weights bit for bit.

use crate::algo::pc::momentum_step;
use crate::nn::Real;
use ndarray::{Array1, Array2, ArrayView1, ArrayView2, ArrayViewMut1, ArrayViewMut2, ShapeBuilder};

/// The matrix a layer sends its errors down through.
#[derive(Clone, Debug)]
pub(super) enum DownMatrix<T: Real> {
    /// Layer 2: nothing goes down to the input.
    None,
    /// `W` itself, in `W`'s layout (`ε W` is then one row-major product),
    /// a second copy kept equal to `Wᵀ`'s transpose by the same step.
    Tied(Array2<T>),
    /// A fixed random `B` (feedback alignment): never learns.
    Fixed(Array2<T>),
}

/// One layer's synapses and its optimizer state (see the module doc).
#[derive(Clone, Debug)]
pub struct Synapses<T: Real> {
    /// `W` (`n × n_in`) column-major — `Wᵀ` row-major: a sender's column
    /// of `W` is contiguous, so a quantum from sender `j` is one row-add
    /// into the prediction. The update, the velocity and `W` share this
    /// layout, so the step is three contiguous passes.
    w: Array2<T>,
    pub(super) b: Array1<T>,
    pub(super) down: DownMatrix<T>,
    /// Velocity of `W` (column-major, as `w` and the update) and of `b`; empty
    /// while μ = 0, where the step is plain SGD as in `algo::Momentum`.
    vw: Array2<T>,
    vb: Array1<T>,
    learning_rate: T,
    momentum: T,
}

impl<T: Real> Synapses<T> {
    /// Synapses holding `w` (`n × n_in`) and `b`, sending down through
    /// `down`, with zero velocity. The update handed to `step` must be
    /// column-major like `zeros_like_weights`.
    pub(super) fn new(
        w: ArrayView2<T>,
        b: ArrayView1<T>,
        down: DownMatrix<T>,
        learning_rate: T,
        momentum: T,
    ) -> Self {
        let (n, n_in) = w.dim();
        let mut own = Array2::zeros((n, n_in).f());
        crate::nn::kernels::copy_into(w, own.view_mut());
        let plain = momentum == T::zero();
        Self {
            w: own,
            b: b.to_owned(),
            down,
            vw: if plain {
                Array2::zeros((0, 0))
            } else {
                Array2::zeros((n, n_in).f())
            },
            vb: Array1::zeros(if plain { 0 } else { n }),
            learning_rate,
            momentum,
        }
    }

    /// The local weight step with this sample's accumulated update
    /// `(dw, db)` (learning rate already in): SGD with momentum, exactly
    /// as `algo::Momentum::apply` does it for the whole network.
    pub(super) fn step<'a>(&'a mut self, dw: ArrayView2<'a, T>, db: ArrayView1<'a, T>) {
        let (sw, sb) = if self.momentum == T::zero() {
            (dw, db)
        } else {
            momentum_step(self.momentum, self.vw.view_mut(), dw);
            momentum_step(self.momentum, self.vb.view_mut(), db);
            (self.vw.view(), self.vb.view())
        };
        self.w.zip_mut_with(&sw, |w, &d| *w += d);
        if let DownMatrix::Tied(m) = &mut self.down {
            // The row-major copy for the down product: the same values as
            // adding `sw` to it, as one blocked transpose instead of a
            // strided element walk.
            crate::nn::kernels::transpose_into(self.w.t(), m.view_mut());
        }
        self.b.zip_mut_with(&sb, |b, &d| *b += d);
    }

    /// The down-message matrix (`W` or `B`; empty for layer 2).
    pub(super) fn down_matrix(&self) -> ArrayView2<'_, T> {
        match &self.down {
            DownMatrix::None => ArrayView2::from_shape((0, 0), &[]).expect("empty"),
            DownMatrix::Tied(m) | DownMatrix::Fixed(m) => m.view(),
        }
    }

    /// A zero update in the layout `step` takes (column-major `n × n_in`).
    pub(super) fn zeros_like_weights(&self) -> Array2<T> {
        Array2::zeros(self.w.dim().f())
    }

    /// Sender `j`'s column of `W`, contiguous.
    pub(super) fn column(&self, j: usize) -> ArrayView1<'_, T> {
        self.w.column(j)
    }

    /// Whether these synapses hold exactly `w`, `b` (one contiguous
    /// compare per column).
    pub(super) fn holds(&self, w: ArrayView2<T>, b: ArrayView1<T>) -> bool {
        b == self.b.view() && crate::nn::kernels::equal(w, self.w.view())
    }

    /// Overwrites `W` (and the tied down matrix) and `b`; the velocity is
    /// kept, as the IL layer actors keep theirs when they reload.
    pub(super) fn load(&mut self, w: ArrayView2<T>, b: ArrayView1<T>) {
        crate::nn::kernels::copy_into(w, self.w.view_mut());
        if let DownMatrix::Tied(m) = &mut self.down {
            crate::nn::kernels::transpose_into(self.w.t(), m.view_mut());
        }
        self.b.assign(&b);
    }

    /// `W` (`n × n_in`).
    pub fn weights(&self) -> ArrayView2<'_, T> {
        self.w.view()
    }

    /// Writes `W` into `dst` (`n × n_in`; a copy of memory when `dst` is
    /// column-major too, as `Mlp`'s weights are).
    pub(super) fn store_weights(&self, mut dst: ndarray::ArrayViewMut2<T>) {
        dst.assign(&self.w);
    }

    pub fn bias(&self) -> ArrayView1<'_, T> {
        self.b.view()
    }

    /// The velocities of `W` and `b` (`None` while μ = 0).
    pub fn velocity(&self) -> Option<(ArrayView2<'_, T>, ArrayView1<'_, T>)> {
        (self.momentum != T::zero()).then(|| (self.vw.view(), self.vb.view()))
    }

    /// The velocities, writable: a harness hook (the locality test perturbs
    /// one layer's optimizer state and checks the others do not see it).
    pub fn velocity_mut(&mut self) -> Option<(ArrayViewMut2<'_, T>, ArrayViewMut1<'_, T>)> {
        (self.momentum != T::zero()).then(|| (self.vw.view_mut(), self.vb.view_mut()))
    }

    pub fn learning_rate(&self) -> T {
        self.learning_rate
    }

    pub(super) fn set_learning_rate(&mut self, learning_rate: T) {
        self.learning_rate = learning_rate;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::algo::Momentum;
    use crate::nn::{Activation, ActivationKind, LossKind, Mlp, Updates};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// The actor's step, layer by layer, gives `algo::Momentum`'s weights
    /// bit for bit over several steps, with and without momentum, and the
    /// tied down matrix stays `Wᵀ`'s transpose.
    #[test]
    fn step_is_the_lockstep_optimizer_bit_for_bit() {
        for mu in [0.0, 0.9] {
            let mut rng = ChaCha8Rng::seed_from_u64(4);
            let mut mlp = Mlp::<f64>::kaiming(
                &[5, 7, 3],
                Activation::new(ActivationKind::Relu),
                LossKind::SoftmaxCe,
                &mut rng,
            );
            let mut syn: Vec<Synapses<f64>> = (0..2)
                .map(|i| {
                    let down = if i == 0 {
                        DownMatrix::None
                    } else {
                        DownMatrix::Tied(mlp.w[i].clone())
                    };
                    Synapses::new(mlp.w[i].view(), mlp.b[i].view(), down, 0.1, mu)
                })
                .collect();
            let mut opt = Momentum::<f64>::new(mu);
            for _ in 0..4 {
                let mut upd = Updates::zeros_like(&mlp);
                for d in upd.dw.iter_mut() {
                    d.mapv_inplace(|_| rng.gen_range(-0.1..0.1));
                }
                for d in upd.db.iter_mut() {
                    d.mapv_inplace(|_| rng.gen_range(-0.1..0.1));
                }
                opt.apply(&mut mlp, &upd);
                for (i, s) in syn.iter_mut().enumerate() {
                    let mut dw = s.zeros_like_weights();
                    dw.assign(&upd.dw[i]);
                    s.step(dw.view(), upd.db[i].view());
                }
            }
            for (i, s) in syn.iter().enumerate() {
                let bits = |a: ArrayView2<f64>, b: ArrayView2<f64>| {
                    a.iter()
                        .zip(b.iter())
                        .all(|(p, q)| p.to_bits() == q.to_bits())
                };
                assert!(bits(s.weights(), mlp.w[i].view()), "mu {mu}: W{}", i + 2);
                assert!(
                    s.bias()
                        .iter()
                        .zip(&mlp.b[i])
                        .all(|(p, q)| p.to_bits() == q.to_bits()),
                    "mu {mu}: b{}",
                    i + 2
                );
                if i > 0 {
                    assert!(bits(s.down_matrix(), s.weights()), "tied W drifted");
                }
                assert_eq!(s.velocity().is_some(), mu != 0.0);
            }
        }
    }
}
