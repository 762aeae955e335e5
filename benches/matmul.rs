//! The products one MNIST training step is made of (batch 64), with ndarray's
//! built-in kernel and with `nn::linalg::gemm`, side by side.

use criterion::{Criterion, criterion_group, criterion_main};
use ndarray::Array2;
use ndarray::linalg::general_mat_mul;
use pcsim::nn::linalg;

fn bench(c: &mut Criterion) {
    // (label, m, k, n, transpose b): a (m×k) · b (k×n) into c (m×n).
    let shapes = [
        ("fwd 64x784.784x256", 64, 784, 256),
        ("fwd 64x256.256x256", 64, 256, 256),
        ("dW 256x64.64x256", 256, 64, 256),
    ];
    for (label, m, k, n) in shapes {
        let a = Array2::<f32>::from_shape_fn((m, k), |(i, j)| ((i * 7 + j * 3) % 11) as f32 * 0.01);
        let w = Array2::<f32>::from_shape_fn((n, k), |(i, j)| ((i * 5 + j) % 13) as f32 * 0.01);
        let mut out = Array2::<f32>::zeros((m, n));
        c.bench_function(&format!("ndarray {label}"), |bch| {
            bch.iter(|| general_mat_mul(1.0, &a, &w.t(), 0.0, &mut out))
        });
        c.bench_function(&format!("gemm {label}"), |bch| {
            bch.iter(|| linalg::gemm(1.0, &a.view(), &w.t(), 0.0, &mut out.view_mut()))
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
