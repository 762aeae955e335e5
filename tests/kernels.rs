//! The kernels every rule computes with (`nn::kernels`), and what they
//! promise: the right numbers (against a plain reference), the same bits at
//! every SIMD level, for any cut of the batch into row blocks, and so for any
//! thread count — for BP, IL, Z-IL and the spiking evaluation — and Z-IL
//! equal to BP bit for bit in f32.

use ndarray::{Array1, Array2, ShapeBuilder, s};
use pcsim::algo::Trainer;
use pcsim::algo::bp::Backprop;
use pcsim::algo::optim::Optimizer;
use pcsim::algo::pc::{Il, PcConfig, PcNet, Zil};
use pcsim::nn::kernels::{self, Accum};
use pcsim::nn::simd::{self, Level};
use pcsim::nn::sparse::SparseRows;
use pcsim::nn::{Activation, ActivationKind, LossKind, Mlp, Updates};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

#[path = "common/batches.rs"]
mod shared_batches;
use shared_batches::batches;

fn random(rng: &mut ChaCha8Rng, rows: usize, cols: usize, zeros: f64) -> Array2<f64> {
    Array2::from_shape_simple_fn((rows, cols), || {
        if rng.gen_bool(zeros) {
            0.0
        } else {
            rng.gen_range(-1.0..1.0)
        }
    })
}

/// Every level the CPU has, lowest first.
fn levels() -> Vec<Level> {
    [Level::Scalar, Level::Avx2, Level::Avx512]
        .into_iter()
        .filter(|&l| l <= simd::detected())
        .collect()
}

/// Runs `f` at every SIMD level and returns the results.
fn at_every_level<R>(mut f: impl FnMut() -> R) -> Vec<R> {
    let before = simd::level();
    let out = levels()
        .into_iter()
        .map(|l| {
            simd::set_level(l);
            f()
        })
        .collect();
    simd::set_level(before);
    out
}

fn max_abs(a: &Array2<f64>, b: &Array2<f64>) -> f64 {
    (a - b).mapv(f64::abs).fold(0.0, |m, &v| m.max(v))
}

#[test]
fn products_match_a_plain_reference_for_awkward_shapes_and_layouts() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    for &(m, k, n) in &[
        (1, 1, 1),
        (7, 13, 33),
        (9, 31, 17),
        (64, 40, 10),
        (3, 70, 129),
    ] {
        let a = random(&mut rng, m, k, 0.3);
        let b = random(&mut rng, k, n, 0.0);
        let bias = Array1::from_shape_fn(n, |j| j as f64 * 0.1);
        let want = a.dot(&b) + &bias;
        // B with contiguous rows, and B column-major (the copy path).
        let b_cm = {
            let mut t = Array2::zeros((k, n).f());
            t.assign(&b);
            t
        };
        for bv in [b.view(), b_cm.view()] {
            for l in at_every_level(|| {
                let mut c = Array2::zeros((m, n));
                kernels::matmul(a.view(), bv, Some(bias.view()), c.view_mut());
                c
            }) {
                assert!(max_abs(&l, &want) < 1e-12, "matmul {m}x{k}x{n}");
            }
        }
        // The update C ← C + s · aᵀ d over two row segments, both layouts of C.
        let d = random(&mut rng, m, n, 0.0);
        let c0 = random(&mut rng, k, n, 0.0);
        let want = &c0 + &(a.t().dot(&d) * 0.5);
        let cut = m / 2;
        for col_major in [false, true] {
            let got = at_every_level(|| {
                let mut c = if col_major {
                    Array2::zeros((k, n).f())
                } else {
                    Array2::zeros((k, n))
                };
                c.assign(&c0);
                let segs = [
                    (a.slice(s![..cut, ..]), d.slice(s![..cut, ..])),
                    (a.slice(s![cut.., ..]), d.slice(s![cut.., ..])),
                ];
                kernels::rank_update(0.5, &segs, Accum::Add, c.view_mut());
                c
            });
            for g in &got {
                assert!(max_abs(g, &want) < 1e-12, "rank_update {m}x{k}x{n}");
                assert_eq!(g, &got[0], "levels differ");
            }
        }
    }
}

#[test]
fn every_level_and_every_row_split_gives_the_same_bits() {
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let a = random(&mut rng, 37, 50, 0.8).mapv(|v| v as f32);
    let w = random(&mut rng, 50, 45, 0.0).mapv(|v| v as f32);
    let bias = Array1::from_shape_fn(45, |j| j as f32 * 0.01);
    let full = at_every_level(|| {
        let mut c = Array2::zeros((37, 45));
        kernels::matmul(a.view(), w.view(), Some(bias.view()), c.view_mut());
        c
    });
    assert!(full.iter().all(|c| *c == full[0]), "levels differ");
    for cut in [1, 8, 20, 36] {
        let mut c = Array2::zeros((37, 45));
        let (top, bottom) = c.view_mut().split_at(ndarray::Axis(0), cut);
        kernels::matmul(a.slice(s![..cut, ..]), w.view(), Some(bias.view()), top);
        kernels::matmul(a.slice(s![cut.., ..]), w.view(), Some(bias.view()), bottom);
        assert_eq!(c, full[0], "row split at {cut}");
    }
    // The sparse kernels: per-row forward, and the update over row blocks,
    // equal the dense kernels (the skipped terms are exact zeros).
    let mut sp = SparseRows::new();
    sp.fill(a.view());
    let dense_wt = w.clone();
    let sparse = at_every_level(|| {
        let mut c = Array2::zeros((37, 45));
        kernels::sparse_matmul(&sp, 0, dense_wt.view(), bias.view(), c.view_mut());
        c
    });
    for c in &sparse {
        assert_eq!(c, &full[0], "sparse forward");
    }
    let d = random(&mut rng, 37, 45, 0.0).mapv(|v| v as f32);
    let mut dense = Array2::<f32>::zeros((50, 45));
    kernels::rank_update(0.25, &[(a.view(), d.view())], Accum::Set, dense.view_mut());
    let (mut s1, mut s2) = (SparseRows::new(), SparseRows::new());
    s1.fill(a.slice(s![..10, ..]));
    s2.fill(a.slice(s![10.., ..]));
    for got in at_every_level(|| {
        let mut c = Array2::<f32>::from_elem((50, 45), 7.0);
        let segs = [(&s1, d.slice(s![..10, ..])), (&s2, d.slice(s![10.., ..]))];
        kernels::sparse_rank_update(0.25, &segs, 0, Accum::Set, c.view_mut());
        c
    }) {
        assert_eq!(got, dense, "sparse update over row blocks");
    }
    // A shard updates a block of W's inputs (`runtime.shards`): each entry
    // is the same sum, whichever block computes it.
    for got in at_every_level(|| {
        let mut c = Array2::<f32>::from_elem((50, 45), 7.0);
        let segs = [(&s1, d.slice(s![..10, ..])), (&s2, d.slice(s![10.., ..]))];
        for (k0, k1) in [(0, 23), (23, 23), (23, 50)] {
            let block = c.slice_mut(s![k0..k1, ..]);
            kernels::sparse_rank_update(0.25, &segs, k0, Accum::Set, block);
        }
        c
    }) {
        assert_eq!(got, dense, "sparse update by blocks of inputs");
    }
    for got in at_every_level(|| {
        let mut c = Array2::<f32>::from_elem((45, 50), 7.0);
        for (k0, k1) in [(0, 17), (17, 50)] {
            let segs = [(d.view(), a.slice(s![.., k0..k1]))];
            kernels::rank_update(0.25, &segs, Accum::Set, c.slice_mut(s![.., k0..k1]));
        }
        c
    }) {
        let mut whole = Array2::<f32>::zeros((45, 50));
        kernels::rank_update(0.25, &[(d.view(), a.view())], Accum::Set, whole.view_mut());
        assert_eq!(got, whole, "dense update by blocks of inputs");
    }
}

fn mlp() -> Mlp<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    Mlp::kaiming(
        &[64, 48, 40, 4],
        Activation::new(ActivationKind::Relu),
        LossKind::SoftmaxCe,
        &mut rng,
    )
}

/// Builds a trainer for a network.
type Maker = dyn Fn(&Mlp<f32>) -> Box<dyn Trainer<f32>>;

fn train(make: &Maker, threads: usize) -> Mlp<f32> {
    pcsim::nn::linalg::set_threads(threads);
    let mut m = mlp();
    let mut t = make(&m);
    for (x, y) in batches(12, 33) {
        t.train_batch(&mut m, x.view(), y.view(), false);
    }
    pcsim::nn::linalg::set_threads(1);
    m
}

#[test]
fn bp_il_and_zil_do_not_depend_on_the_thread_count() {
    let il_cfg = PcConfig {
        gamma: 0.2,
        steps: 7,
        beta: 0.1,
        ..PcConfig::default()
    };
    let makers: Vec<(&str, Box<Maker>)> = vec![
        ("bp", Box::new(|m| Box::new(Backprop::new(m, 0.1, 0.0, 33)))),
        // The optimizers' element steps run on the team too.
        (
            "bp momentum",
            Box::new(|m| Box::new(Backprop::new(m, 0.1, 0.9, 33))),
        ),
        (
            "bp adamw",
            Box::new(|m| {
                Box::new(Backprop::new(m, 0.01, 0.0, 33).with_optimizer(m, Optimizer::adamw(0.01)))
            }),
        ),
        (
            "il",
            Box::new(move |m| Box::new(Il::new(m, il_cfg.clone(), 0.05, 0.0).unwrap())),
        ),
        (
            "il momentum",
            Box::new(|m| Box::new(Il::new(m, PcConfig::default(), 0.05, 0.9).unwrap())),
        ),
        (
            "zil",
            Box::new(|m| Box::new(Zil::new(m, PcConfig::default(), 0.1, 0.0).unwrap())),
        ),
    ];
    for (name, make) in &makers {
        let one = train(make.as_ref(), 1);
        for threads in [2, 3] {
            let many = train(make.as_ref(), threads);
            assert_eq!(one.w, many.w, "{name}: weights differ at {threads} threads");
            assert_eq!(one.b, many.b, "{name}: biases differ at {threads} threads");
        }
        assert_ne!(one.w, mlp().w, "{name} trained");
    }
}

#[test]
fn zil_equals_bp_bit_for_bit_in_f32() {
    let mut bp_net = mlp();
    let mut zil_net = mlp();
    let mut bp = Backprop::new(&bp_net, 0.3, 0.0, 33);
    let mut zil = Zil::new(&zil_net, PcConfig::default(), 0.3, 0.0).unwrap();
    for (step, (x, y)) in batches(30, 33).into_iter().enumerate() {
        let a = bp.train_batch(&mut bp_net, x.view(), y.view(), false);
        let b = zil.train_batch(&mut zil_net, x.view(), y.view(), false);
        assert_eq!(a, b, "loss at step {step}");
        assert_eq!(bp_net.w, zil_net.w, "weights at step {step}");
        assert_eq!(bp_net.b, zil_net.b, "biases at step {step}");
    }
}

#[test]
fn zil_sweep_equals_the_step_by_step_reference() {
    // Z-IL's fast sweep (lent weights, frozen layers, deferred updates)
    // against `PcNet::step` in the reference order, in f32.
    let m = mlp();
    let (x, y) = batches(1, 33).remove(0);
    let scale = 0.1f32 / 33.0;
    let mut net = PcNet::new(&m, None).unwrap();
    net.start(x.view(), Some((y.view(), 1.0)), false);
    let mut want = Updates::zeros_like(&m);
    let depth = m.depth();
    for t in 0..depth - 1 {
        net.step(1.0, |i| depth - (i + 2) == t, scale, &mut want);
    }
    let mut zil = Zil::new(&m, PcConfig::default(), 0.1, 0.0).unwrap();
    let mut m2 = m.clone();
    zil.train_batch(&mut m2, x.view(), y.view(), true);
    assert_eq!(zil.last_updates().unwrap(), &want);
}

#[test]
fn spiking_evaluation_gives_the_same_bits_at_every_level_and_thread_count() {
    use pcsim::nn::activation::LifParams;
    use pcsim::snn::{Readout, SpikingConfig, SpikingNetwork, SynapseKind, evaluate};
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let mut m = Mlp::<f32>::kaiming(
        &[64, 40, 30, 4],
        Activation::with_lif(ActivationKind::SoftLif, LifParams::default()),
        LossKind::SoftmaxCe,
        &mut rng,
    );
    for b in &mut m.b[..2] {
        b.fill(1.2);
    }
    let cfg = SpikingConfig {
        dt: 1e-3,
        presentation_time: 0.2,
        synapse: SynapseKind::Alpha,
        tau_s: 5e-3,
        readout: Readout::SpikeCount,
        checkpoints: vec![0.05],
        seed: 3,
    };
    let net = SpikingNetwork::from_mlp(&m, cfg).unwrap();
    let (x, _) = batches(1, 24).remove(0);
    let labels: Vec<u8> = (0..24).map(|i| (i % 4) as u8).collect();
    let runs = at_every_level(|| {
        [1, 3]
            .map(|t| evaluate(&net, x.view(), &labels, t).unwrap())
            .map(|r| (r.predictions, r.spikes_per_image, r.accuracy_vs_time))
    });
    assert!(
        runs[0][0].1.iter().skip(1).all(|&s| s > 0.0),
        "every layer spiked"
    );
    for r in &runs {
        for t in r {
            assert_eq!(t, &runs[0][0]);
        }
    }
}

#[test]
fn lif_step_equals_the_one_neuron_rule() {
    use pcsim::nn::activation::LifParams;
    use pcsim::snn::lif::LifPopulation;
    // The rule of DESIGN.md §4 for one neuron, written out plainly.
    fn reference(v: &mut f32, r: &mut f32, j: f32, p: &LifParams, dt: f32) -> bool {
        let (tau_rc, tau_ref) = (p.tau_rc as f32, p.tau_ref as f32);
        let full = (-(-(dt as f64) / p.tau_rc).exp_m1()) as f32;
        let k = if *r <= 0.0 {
            full
        } else if *r >= dt {
            *r -= dt;
            return false;
        } else {
            let active = dt - *r;
            *r = 0.0;
            -(-active / tau_rc).exp_m1()
        };
        *v += (j - *v) * k;
        if *v > 1.0 {
            let since = -tau_rc * (-(*v - 1.0) / (j - 1.0)).ln_1p();
            let since = if since.is_finite() {
                since.clamp(0.0, dt)
            } else {
                0.0
            };
            *v = 0.0;
            *r = (tau_ref - since).max(0.0);
            return true;
        }
        if *v < 0.0 {
            *v = 0.0;
        }
        false
    }
    let p = LifParams::default();
    let dt = 1e-3f32;
    let rng = ChaCha8Rng::seed_from_u64(8);
    let n = 37;
    for level_run in at_every_level(|| {
        let mut pop = LifPopulation::new(n, &p, dt as f64);
        let (mut v, mut r) = (vec![0.0f32; n], vec![0.0f32; n]);
        let mut spikes = Vec::new();
        let mut total = 0;
        let mut rng = rng.clone();
        for _ in 0..3000 {
            let j: Vec<f32> = (0..n).map(|_| rng.gen_range(-1.0f32..4.0)).collect();
            spikes.clear();
            pop.step(&j, &mut spikes);
            let want: Vec<u32> = (0..n)
                .filter(|&i| reference(&mut v[i], &mut r[i], j[i], &p, dt))
                .map(|i| i as u32)
                .collect();
            assert_eq!(spikes, want);
            assert_eq!(pop.v, v);
            assert_eq!(pop.refractory, r);
            total += spikes.len();
        }
        total
    }) {
        assert!(level_run > 1000, "neurons spiked ({level_run})");
    }
}

/// The lane copy and compare that hand weights between `Mlp` and the layer
/// actors: the same values as ndarray's element walk for every mix of
/// layouts, including a row slice of a column-major matrix.
#[test]
fn lane_copy_and_compare_match_the_element_walk() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let src_c = random(&mut rng, 40, 30, 0.0);
    let mut src_f = Array2::zeros((40, 30).f());
    src_f.assign(&src_c);
    for src in [src_c.view(), src_f.view()] {
        for (r0, r1) in [(0, 40), (7, 23)] {
            let part = src.slice(s![r0..r1, ..]);
            for fortran in [false, true] {
                let mut dst = if fortran {
                    Array2::zeros((r1 - r0, 30).f())
                } else {
                    Array2::zeros((r1 - r0, 30))
                };
                kernels::copy_into(part, dst.view_mut());
                assert_eq!(dst, part);
                assert!(kernels::equal(dst.view(), part));
                dst[[r1 - r0 - 1, 29]] += 1e-12;
                assert!(!kernels::equal(dst.view(), part), "a changed last element");
                assert!(!kernels::equal(dst.slice(s![.., ..29]), part));
            }
        }
    }
    let mut nan = src_c.clone();
    nan[[0, 0]] = f64::NAN;
    assert!(
        !kernels::equal(nan.view(), nan.view()),
        "NaN is never equal"
    );
}
