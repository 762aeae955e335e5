//! The products one MNIST training step is made of (batch 64, f32), through
//! `nn::kernels` at every SIMD level the CPU has; criterion's "elem/s" is
//! FLOP/s (2 per multiply-add; the sparse products count only the non-zero
//! inputs' work). `PCSIM_SIMD` caps the level for the whole run.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ndarray::{Array1, Array2, ShapeBuilder};
use pcsim::nn::kernels::{self, Accum};
use pcsim::nn::simd::{self, Level};
use pcsim::nn::sparse::SparseRows;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

mod common;

fn bench(c: &mut Criterion) {
    let (m, k, n) = (64usize, 256usize, 256usize);
    let a = Array2::<f32>::from_shape_fn((m, k), |(i, j)| ((i * 7 + j * 3) % 11) as f32 * 0.01);
    // Column-major W (as `Mlp` keeps it): `wᵀ` has contiguous rows.
    let w = Array2::<f32>::from_shape_fn((n, k).f(), |(i, j)| ((i * 5 + j) % 13) as f32 * 0.01);
    let w_rows = w.as_standard_layout().into_owned();
    let b = Array1::<f32>::zeros(n);
    let mut out = Array2::<f32>::zeros((m, n));
    let mut dw = Array2::<f32>::zeros((n, k).f());
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let (x, _) = common::mnist_like_batch(m, &mut rng);
    let w1 = Array2::<f32>::from_shape_fn((n, 784).f(), |(i, j)| ((i + j) % 7) as f32 * 0.01);
    let mut dw1 = w1.clone();
    let mut sp = SparseRows::new();
    sp.fill(x.view());
    let nnz = x.iter().filter(|&&v| v != 0.0).count() as u64;
    let best = simd::detected();
    for level in [Level::Scalar, Level::Avx2, Level::Avx512] {
        if level > best {
            continue;
        }
        simd::set_level(level);
        let name = level.name();
        let mut g = c.benchmark_group(name);
        g.throughput(Throughput::Elements(2 * (m * k * n) as u64));
        g.bench_function("fwd 64x256 . (256x256)T + b", |bch| {
            bch.iter(|| kernels::matmul(a.view(), w.t(), Some(b.view()), out.view_mut()))
        });
        g.bench_function("bwd 64x256 . 256x256", |bch| {
            bch.iter(|| kernels::matmul(a.view(), w_rows.view(), None, out.view_mut()))
        });
        g.bench_function("update W += s (64x256)T . 64x256", |bch| {
            bch.iter(|| {
                kernels::rank_update(1e-9, &[(out.view(), a.view())], Accum::Add, dw.view_mut())
            })
        });
        g.throughput(Throughput::Elements(2 * nnz * n as u64));
        g.bench_function("sparse fwd 64x784 (19%) . (256x784)T", |bch| {
            bch.iter(|| {
                kernels::sparse_matmul(&sp, 0, w1.t(), b.view(), out.view_mut());
            })
        });
        g.bench_function("sparse update W += s (64x256)T . x", |bch| {
            bch.iter(|| {
                kernels::sparse_rank_update(
                    1e-9,
                    &[(&sp, out.view())],
                    0,
                    Accum::Add,
                    dw1.view_mut().reversed_axes(),
                )
            })
        });
        g.finish();
    }
    simd::set_level(best);
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(std::time::Duration::from_millis(300))
        .measurement_time(std::time::Duration::from_secs(1));
    targets = bench
}
criterion_main!(benches);
