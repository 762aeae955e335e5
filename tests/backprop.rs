//! Backprop against finite differences, the sparse-input path against the
//! dense one, and thread-count independence.

use ndarray::{Array2, ArrayView2};
use pcsim::algo::Trainer;
use pcsim::algo::bp::Backprop;
use pcsim::nn::{Activation, ActivationKind, LossKind, Mlp, Updates};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn batch(
    rng: &mut ChaCha8Rng,
    n: usize,
    inputs: usize,
    classes: usize,
    sparse: bool,
) -> (Array2<f64>, Array2<f64>) {
    let x = Array2::from_shape_simple_fn((n, inputs), || {
        if sparse && rng.gen_bool(0.8) {
            0.0
        } else {
            rng.gen_range(-1.0..1.0)
        }
    });
    let mut y = Array2::zeros((n, classes));
    for r in 0..n {
        y[(r, rng.gen_range(0..classes))] = 1.0;
    }
    (x, y)
}

fn mean_loss(mlp: &Mlp<f64>, x: ArrayView2<f64>, y: ArrayView2<f64>) -> f64 {
    let yhat = mlp.predict(x);
    mlp.output.loss(yhat.view(), y) / x.nrows() as f64
}

/// Relative error between backprop's gradient and central differences over
/// every parameter of the network.
fn gradient_error(kind: ActivationKind, output: LossKind) -> f64 {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let sizes = [6, 7, 5, 3];
    let mut mlp = Mlp::<f64>::kaiming(&sizes, Activation::new(kind), output, &mut rng);
    if matches!(kind, ActivationKind::Lif | ActivationKind::SoftLif) {
        // Put pre-activations where the rate curve is smooth and non-zero.
        for b in &mut mlp.b {
            b.fill(2.0);
        }
    }
    let (x, y) = batch(&mut rng, 4, sizes[0], 3, false);
    let mut bp = Backprop::new(&mlp, 1.0, 0.0, 4);
    let mut upd = Updates::zeros_like(&mlp);
    bp.compute_updates(&mlp, x.view(), y.view(), &mut upd);
    // With α = 1, ΔW = −∂(mean loss)/∂W.
    let h = 1e-6;
    let (mut num, mut den) = (0.0, 0.0);
    for l in 0..mlp.w.len() {
        for idx in 0..mlp.w[l].len() {
            let pos = (idx / mlp.w[l].ncols(), idx % mlp.w[l].ncols());
            let orig = mlp.w[l][pos];
            mlp.w[l][pos] = orig + h;
            let plus = mean_loss(&mlp, x.view(), y.view());
            mlp.w[l][pos] = orig - h;
            let minus = mean_loss(&mlp, x.view(), y.view());
            mlp.w[l][pos] = orig;
            let fd = (plus - minus) / (2.0 * h);
            let g = -upd.dw[l][pos];
            num += (fd - g).powi(2);
            den += g.powi(2);
        }
        for j in 0..mlp.b[l].len() {
            let orig = mlp.b[l][j];
            mlp.b[l][j] = orig + h;
            let plus = mean_loss(&mlp, x.view(), y.view());
            mlp.b[l][j] = orig - h;
            let minus = mean_loss(&mlp, x.view(), y.view());
            mlp.b[l][j] = orig;
            let fd = (plus - minus) / (2.0 * h);
            let g = -upd.db[l][j];
            num += (fd - g).powi(2);
            den += g.powi(2);
        }
    }
    assert!(den > 0.0, "gradient is identically zero");
    (num / den).sqrt()
}

#[test]
fn backprop_matches_finite_differences_for_every_activation_and_loss() {
    for kind in [
        ActivationKind::Relu,
        ActivationKind::Sigmoid,
        ActivationKind::Tanh,
        ActivationKind::Linear,
        ActivationKind::SoftLif,
        ActivationKind::Lif,
    ] {
        for output in [LossKind::Mse, LossKind::SoftmaxCe] {
            let err = gradient_error(kind, output);
            assert!(err < 1e-6, "{kind:?} / {output:?}: relative error {err:e}");
        }
    }
}

#[test]
fn finite_difference_check_can_fail() {
    // A deliberately wrong gradient (activation derivative ignored) must be caught.
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let mlp = Mlp::<f64>::kaiming(
        &[4, 6, 3],
        Activation::new(ActivationKind::Tanh),
        LossKind::Mse,
        &mut rng,
    );
    let (x, y) = batch(&mut rng, 5, 4, 3, false);
    let mut linear = mlp.clone();
    linear.hidden = Activation::new(ActivationKind::Linear);
    let mut bp = Backprop::new(&mlp, 1.0, 0.0, 5);
    let (mut right, mut wrong) = (Updates::zeros_like(&mlp), Updates::zeros_like(&mlp));
    bp.compute_updates(&mlp, x.view(), y.view(), &mut right);
    // Same weights, the tanh forward pass but a linear derivative.
    let mut bp_wrong = Backprop::new(&linear, 1.0, 0.0, 5);
    bp_wrong.compute_updates(&linear, x.view(), y.view(), &mut wrong);
    let diff = wrong.rel_diff(&right);
    assert!(diff.iter().any(|&d| d > 1e-3), "{diff:?}");
}

fn train_steps(sparse_input: bool, threads: usize, steps: usize) -> Mlp<f64> {
    pcsim::nn::linalg::set_threads(threads);
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let mut mlp = Mlp::<f64>::kaiming(
        &[40, 32, 16, 5],
        Activation::new(ActivationKind::Relu),
        LossKind::SoftmaxCe,
        &mut rng,
    );
    let mut bp = Backprop::new(&mlp, 0.05, 0.0, 33);
    for _ in 0..steps {
        let (x, y) = batch(&mut rng, 33, 40, 5, sparse_input);
        bp.train_batch(&mut mlp, x.view(), y.view(), false);
    }
    pcsim::nn::linalg::set_threads(1);
    mlp
}

#[test]
fn sparse_input_path_equals_dense_update() {
    // Sparse batches take the sparse kernels in the fused step; the
    // explicit update (`compute_updates`) always uses dense products.
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let mlp = Mlp::<f64>::kaiming(
        &[40, 32, 5],
        Activation::new(ActivationKind::Relu),
        LossKind::SoftmaxCe,
        &mut rng,
    );
    let (x, y) = batch(&mut rng, 17, 40, 5, true);
    let mut reference = mlp.clone();
    let mut upd = Updates::zeros_like(&mlp);
    Backprop::new(&mlp, 0.1, 0.0, 17).compute_updates(&mlp, x.view(), y.view(), &mut upd);
    reference.apply(&upd);
    let mut fused = mlp.clone();
    Backprop::new(&mlp, 0.1, 0.0, 17).train_batch(&mut fused, x.view(), y.view(), false);
    for (a, b) in fused.w.iter().zip(&reference.w) {
        let err = (a - b).mapv(f64::abs).fold(0.0f64, |m, &v| m.max(v));
        assert!(err < 1e-12, "sparse and dense updates differ by {err:e}");
    }
}

#[test]
fn results_do_not_depend_on_thread_count() {
    for sparse in [false, true] {
        let one = train_steps(sparse, 1, 20);
        let two = train_steps(sparse, 2, 20);
        assert_eq!(
            one.w, two.w,
            "weights differ between 1 and 2 threads (sparse = {sparse})"
        );
        assert_eq!(one.b, two.b);
    }
}

#[test]
fn bp_learns_the_synthetic_task_and_needs_its_hidden_layer() {
    use pcsim::data::synthetic::{SyntheticConfig, generate};
    let split = generate(&SyntheticConfig::default(), 3);
    let (x, y) = split.train.to_real::<f64>();
    let (tx, ty) = split.test.to_real::<f64>();
    let accuracy = |sizes: &[usize]| {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut mlp = Mlp::<f64>::kaiming(
            sizes,
            Activation::new(ActivationKind::Relu),
            LossKind::SoftmaxCe,
            &mut rng,
        );
        let mut bp = Backprop::new(&mlp, 0.1, 0.0, 32);
        for _ in 0..20 {
            for start in (0..x.nrows()).step_by(32) {
                let end = (start + 32).min(x.nrows());
                bp.train_batch(
                    &mut mlp,
                    x.slice(ndarray::s![start..end, ..]),
                    y.slice(ndarray::s![start..end, ..]),
                    false,
                );
            }
        }
        mlp.evaluate(tx.view(), ty.view()).1 as f64 / tx.nrows() as f64
    };
    let linear = accuracy(&[10, 4]);
    let mlp = accuracy(&[10, 64, 64, 4]);
    assert!(mlp > 0.85, "MLP accuracy {mlp}");
    assert!(
        mlp - linear > 0.15,
        "hidden layer should matter: linear {linear}, MLP {mlp}"
    );
}
