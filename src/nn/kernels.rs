//! The matrix kernels every learning rule runs on — BP, the PC layer rules
//! (and so the actors, which call them), the lockstep driver: one path, so
//! Z-IL equals BP bit for bit in f32 as in f64.
//!
//! One register-tiled micro-kernel computes `C (m × n) ← init + Σ_k A[i,k] ·
//! B[k,:]` with B's rows contiguous: a tile of `MR` rows of C by `NV` SIMD
//! vectors is held in registers while `k` runs. Every element of C is one
//! chain of fused multiply-adds over `k` in increasing order, started from
//! zero or from a bias, so
//! * a row of C depends only on the same row of A: any split of the batch
//!   rows over threads (or actors) gives the same bits;
//! * the orientation does not matter (`aᵀ` or `a`, `C` or `Cᵀ`): the same
//!   products are accumulated in the same order;
//! * AVX-512, AVX2 and the portable path give the same bits (see `simd`).
//!
//! Updates `C ← C + s · Σ_r a[r,:]ᵀ b[r,:]` are the same kernel with `k` =
//! batch rows, taken from one or several row blocks in order (so a batch
//! split into shards sums exactly as the whole batch). The epilogue is
//! `C + (s · acc)`, two roundings, the same as forming `ΔW = s · acc` first
//! and adding it, so fused and explicit updates agree bit for bit.
//!
//! No packing: the dominant shapes (64 × 256 by 256 × 256, k = 64 updates)
//! keep B in L1/L2, and callers keep weights in the orientation each
//! product wants (see `PcLayer`, `Backprop`).

use super::simd::{Level, level};
use ndarray::{Array2, ArrayView1, ArrayView2, ArrayViewMut1, ArrayViewMut2, Axis};

/// A SIMD vector of `T` (or one scalar), the building block of the kernels.
///
/// # Safety
/// Implementations use instructions of one target-feature level; callers
/// run them only where `simd::level()` allows. Every method is unsafe for
/// that reason, and the memory ones also read or write through raw
/// pointers that must cover the lanes they touch.
#[allow(clippy::missing_safety_doc)]
pub unsafe trait Vector<T: Copy>: Copy {
    const LANES: usize;
    unsafe fn splat(x: T) -> Self;
    unsafe fn load(p: *const T) -> Self;
    /// The first `n < LANES` lanes from `p`, zeros after (reads nothing past).
    unsafe fn load_n(p: *const T, n: usize) -> Self;
    unsafe fn store(self, p: *mut T);
    unsafe fn store_n(self, p: *mut T, n: usize);
    /// `a · b + c` with one rounding.
    unsafe fn mul_add(a: Self, b: Self, c: Self) -> Self;
    unsafe fn add(self, o: Self) -> Self;
    unsafe fn mul(self, o: Self) -> Self;
}

/// One lane: the portable path.
#[derive(Clone, Copy)]
pub struct Scalar<T>(T);

unsafe impl<T: num_traits::Float> Vector<T> for Scalar<T> {
    const LANES: usize = 1;
    #[inline(always)]
    unsafe fn splat(x: T) -> Self {
        Scalar(x)
    }
    #[inline(always)]
    unsafe fn load(p: *const T) -> Self {
        unsafe { Scalar(*p) }
    }
    #[inline(always)]
    unsafe fn load_n(p: *const T, n: usize) -> Self {
        if n > 0 {
            unsafe { Scalar(*p) }
        } else {
            Scalar(T::zero())
        }
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut T) {
        unsafe { *p = self.0 }
    }
    #[inline(always)]
    unsafe fn store_n(self, p: *mut T, n: usize) {
        if n > 0 {
            unsafe { *p = self.0 }
        }
    }
    #[inline(always)]
    unsafe fn mul_add(a: Self, b: Self, c: Self) -> Self {
        Scalar(a.0.mul_add(b.0, c.0))
    }
    #[inline(always)]
    unsafe fn add(self, o: Self) -> Self {
        Scalar(self.0 + o.0)
    }
    #[inline(always)]
    unsafe fn mul(self, o: Self) -> Self {
        Scalar(self.0 * o.0)
    }
}

#[cfg(target_arch = "x86_64")]
pub mod x86 {
    //! AVX-512 and AVX2 vectors of f32 and f64.
    use super::Vector;
    use std::arch::x86_64::*;

    /// A SIMD vector type and its `Vector` implementation from the
    /// intrinsics of one type and width.
    macro_rules! vector {
        ($name:ident, $t:ty, $raw:ty, $lanes:literal, $feat:literal,
         $set1:ident, $loadu:ident, $storeu:ident, $fmadd:ident, $add:ident, $mul:ident,
         load_n($lp:ident, $ln:ident) $load_n:block,
         store_n($sp:ident, $sv:ident, $sn:ident) $store_n:block) => {
            #[derive(Clone, Copy)]
            pub struct $name($raw);

            unsafe impl Vector<$t> for $name {
                const LANES: usize = $lanes;
                #[inline]
                #[target_feature(enable = $feat)]
                unsafe fn splat(x: $t) -> Self {
                    $name($set1(x))
                }
                #[inline]
                #[target_feature(enable = $feat)]
                unsafe fn load(p: *const $t) -> Self {
                    unsafe { $name($loadu(p)) }
                }
                #[inline]
                #[target_feature(enable = $feat)]
                unsafe fn load_n($lp: *const $t, $ln: usize) -> Self {
                    unsafe { $name($load_n) }
                }
                #[inline]
                #[target_feature(enable = $feat)]
                unsafe fn store(self, p: *mut $t) {
                    unsafe { $storeu(p, self.0) }
                }
                #[inline]
                #[target_feature(enable = $feat)]
                unsafe fn store_n(self, $sp: *mut $t, $sn: usize) {
                    let $sv = self.0;
                    unsafe { $store_n }
                }
                #[inline]
                #[target_feature(enable = $feat)]
                unsafe fn mul_add(a: Self, b: Self, c: Self) -> Self {
                    $name($fmadd(a.0, b.0, c.0))
                }
                #[inline]
                #[target_feature(enable = $feat)]
                unsafe fn add(self, o: Self) -> Self {
                    $name($add(self.0, o.0))
                }
                #[inline]
                #[target_feature(enable = $feat)]
                unsafe fn mul(self, o: Self) -> Self {
                    $name($mul(self.0, o.0))
                }
            }
        };
    }

    /// `-1` in the first `n` of 8 (4) lanes: AVX2 masked loads and stores.
    const MASK32: [i32; 16] = [-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0];
    const MASK64: [i64; 8] = [-1, -1, -1, -1, 0, 0, 0, 0];

    vector!(F32x16, f32, __m512, 16, "avx512f",
        _mm512_set1_ps, _mm512_loadu_ps, _mm512_storeu_ps, _mm512_fmadd_ps, _mm512_add_ps, _mm512_mul_ps,
        load_n(p, n) { _mm512_maskz_loadu_ps(((1u32 << n) - 1) as __mmask16, p) },
        store_n(p, v, n) { _mm512_mask_storeu_ps(p, ((1u32 << n) - 1) as __mmask16, v) });
    vector!(F64x8, f64, __m512d, 8, "avx512f",
        _mm512_set1_pd, _mm512_loadu_pd, _mm512_storeu_pd, _mm512_fmadd_pd, _mm512_add_pd, _mm512_mul_pd,
        load_n(p, n) { _mm512_maskz_loadu_pd(((1u32 << n) - 1) as __mmask8, p) },
        store_n(p, v, n) { _mm512_mask_storeu_pd(p, ((1u32 << n) - 1) as __mmask8, v) });
    vector!(F32x8, f32, __m256, 8, "avx2,fma",
    _mm256_set1_ps, _mm256_loadu_ps, _mm256_storeu_ps, _mm256_fmadd_ps, _mm256_add_ps, _mm256_mul_ps,
    load_n(p, n) {
        _mm256_maskload_ps(p, _mm256_loadu_si256(MASK32.as_ptr().add(8 - n) as *const __m256i))
    },
    store_n(p, v, n) {
        _mm256_maskstore_ps(p, _mm256_loadu_si256(MASK32.as_ptr().add(8 - n) as *const __m256i), v)
    });
    vector!(F64x4, f64, __m256d, 4, "avx2,fma",
    _mm256_set1_pd, _mm256_loadu_pd, _mm256_storeu_pd, _mm256_fmadd_pd, _mm256_add_pd, _mm256_mul_pd,
    load_n(p, n) {
        _mm256_maskload_pd(p, _mm256_loadu_si256(MASK64.as_ptr().add(4 - n) as *const __m256i))
    },
    store_n(p, v, n) {
        _mm256_maskstore_pd(p, _mm256_loadu_si256(MASK64.as_ptr().add(4 - n) as *const __m256i), v)
    });

    /// `dst ← srcᵀ` for f32 matrices with contiguous rows, 8 × 8 blocks in
    /// registers (the edges element by element).
    ///
    /// # Safety
    /// AVX2 must be available; the pointers cover `r × c` (src, row stride
    /// `s_rs`) and `c × r` (dst, row stride `d_rs`).
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn transpose_f32(
        src: *const f32,
        s_rs: usize,
        dst: *mut f32,
        d_rs: usize,
        r: usize,
        c: usize,
    ) {
        unsafe {
            let (rb, cb) = (r - r % 8, c - c % 8);
            for i0 in (0..rb).step_by(8) {
                for j0 in (0..cb).step_by(8) {
                    let ld = |k: usize| _mm256_loadu_ps(src.add((i0 + k) * s_rs + j0));
                    let (r0, r1, r2, r3) = (ld(0), ld(1), ld(2), ld(3));
                    let (r4, r5, r6, r7) = (ld(4), ld(5), ld(6), ld(7));
                    let t0 = _mm256_unpacklo_ps(r0, r1);
                    let t1 = _mm256_unpackhi_ps(r0, r1);
                    let t2 = _mm256_unpacklo_ps(r2, r3);
                    let t3 = _mm256_unpackhi_ps(r2, r3);
                    let t4 = _mm256_unpacklo_ps(r4, r5);
                    let t5 = _mm256_unpackhi_ps(r4, r5);
                    let t6 = _mm256_unpacklo_ps(r6, r7);
                    let t7 = _mm256_unpackhi_ps(r6, r7);
                    let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
                    let u1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
                    let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
                    let u3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
                    let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
                    let u5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
                    let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
                    let u7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
                    let st =
                        |k: usize, v: __m256| _mm256_storeu_ps(dst.add((j0 + k) * d_rs + i0), v);
                    st(0, _mm256_permute2f128_ps::<0x20>(u0, u4));
                    st(1, _mm256_permute2f128_ps::<0x20>(u1, u5));
                    st(2, _mm256_permute2f128_ps::<0x20>(u2, u6));
                    st(3, _mm256_permute2f128_ps::<0x20>(u3, u7));
                    st(4, _mm256_permute2f128_ps::<0x31>(u0, u4));
                    st(5, _mm256_permute2f128_ps::<0x31>(u1, u5));
                    st(6, _mm256_permute2f128_ps::<0x31>(u2, u6));
                    st(7, _mm256_permute2f128_ps::<0x31>(u3, u7));
                }
            }
            for i in 0..r {
                let from = if i < rb { cb } else { 0 };
                for j in from..c {
                    *dst.add(j * d_rs + i) = *src.add(i * s_rs + j);
                }
            }
        }
    }
}

/// One block of the reduction: `A[i, k]` at `a + i·a_rs + k·a_cs`, row `k`
/// of B at `b + k·b_rs` (contiguous along `n`).
#[doc(hidden)]
#[derive(Clone, Copy, Debug)]
pub struct Seg<T> {
    a: *const T,
    a_rs: isize,
    a_cs: isize,
    b: *const T,
    b_rs: isize,
    k: usize,
}

/// How a tile's accumulators start.
#[doc(hidden)]
#[derive(Clone, Copy, Debug)]
pub enum Init<T> {
    Zero,
    /// From this vector along `n` (a bias), for every row.
    Row(*const T),
}

/// What is written to C.
#[doc(hidden)]
#[derive(Clone, Copy, Debug)]
pub enum Out<T> {
    /// `C ← acc`
    Store,
    /// `C ← s · acc`
    Scale(T),
    /// `C ← C + s · acc`
    AddScaled(T),
}

/// A product for the micro-kernel; C has contiguous rows.
#[doc(hidden)]
pub struct Job<'a, T> {
    m: usize,
    n: usize,
    segs: &'a [Seg<T>],
    c: *mut T,
    c_rs: isize,
    init: Init<T>,
    out: Out<T>,
}

/// One tile: rows `i0..i0 + MR`, columns `j0..j0 + nc` (`nc ≤ NV · LANES`;
/// `FULL` when equal).
#[inline(always)]
unsafe fn tile<T: Copy, V: Vector<T>, const MR: usize, const NV: usize, const FULL: bool>(
    job: &Job<'_, T>,
    i0: usize,
    j0: usize,
    nc: usize,
) {
    unsafe {
        let l = V::LANES;
        let mut lanes = [l; NV];
        if !FULL {
            for (v, n) in lanes.iter_mut().enumerate() {
                *n = nc.saturating_sub(v * l).min(l);
            }
        }
        let load = |p: *const T, v: usize| {
            if FULL {
                V::load(p)
            } else {
                V::load_n(p, lanes[v])
            }
        };
        let zero = V::splat(std::mem::zeroed());
        let mut acc = [[zero; NV]; MR];
        if let Init::Row(p) = job.init {
            for v in 0..NV {
                let x = load(p.add(j0 + v * l), v);
                for row in acc.iter_mut() {
                    row[v] = x;
                }
            }
        }
        for seg in job.segs {
            let mut pa = seg.a.offset(i0 as isize * seg.a_rs);
            let mut pb = seg.b.add(j0);
            for _ in 0..seg.k {
                let mut b = [zero; NV];
                for (v, bv) in b.iter_mut().enumerate() {
                    *bv = load(pb.add(v * l), v);
                }
                for (r, row) in acc.iter_mut().enumerate() {
                    let a = V::splat(*pa.offset(r as isize * seg.a_rs));
                    for v in 0..NV {
                        row[v] = V::mul_add(a, b[v], row[v]);
                    }
                }
                pa = pa.offset(seg.a_cs);
                pb = pb.offset(seg.b_rs);
            }
        }
        for (r, row) in acc.iter().enumerate() {
            let pc = job.c.offset((i0 + r) as isize * job.c_rs).add(j0);
            for v in 0..NV {
                if lanes[v] == 0 {
                    continue;
                }
                let p = pc.add(v * l);
                let val = match job.out {
                    Out::Store => row[v],
                    Out::Scale(s) => V::splat(s).mul(row[v]),
                    Out::AddScaled(s) => load(p, v).add(V::splat(s).mul(row[v])),
                };
                if FULL || lanes[v] == l {
                    val.store(p)
                } else {
                    val.store_n(p, lanes[v])
                }
            }
        }
    }
}

#[inline(always)]
unsafe fn tile_rows<T: Copy, V: Vector<T>, const NV: usize, const FULL: bool>(
    job: &Job<'_, T>,
    rows: usize,
    i0: usize,
    j0: usize,
    nc: usize,
) {
    unsafe {
        match rows {
            1 => tile::<T, V, 1, NV, FULL>(job, i0, j0, nc),
            2 => tile::<T, V, 2, NV, FULL>(job, i0, j0, nc),
            3 => tile::<T, V, 3, NV, FULL>(job, i0, j0, nc),
            4 => tile::<T, V, 4, NV, FULL>(job, i0, j0, nc),
            5 => tile::<T, V, 5, NV, FULL>(job, i0, j0, nc),
            6 => tile::<T, V, 6, NV, FULL>(job, i0, j0, nc),
            7 => tile::<T, V, 7, NV, FULL>(job, i0, j0, nc),
            _ => tile::<T, V, 8, NV, FULL>(job, i0, j0, nc),
        }
    }
}

/// Column panels outermost (a panel of B stays in cache while every row
/// block uses it), `MR`-row tiles inside.
#[inline(always)]
unsafe fn drive<T: Copy, V: Vector<T>, const MR: usize, const NV: usize>(job: &Job<'_, T>) {
    unsafe {
        let w = NV * V::LANES;
        let mut j0 = 0;
        while j0 < job.n {
            let nc = w.min(job.n - j0);
            let mut i0 = 0;
            while i0 < job.m {
                let rows = MR.min(job.m - i0);
                match (rows == MR, nc == w) {
                    (true, true) => tile::<T, V, MR, NV, true>(job, i0, j0, nc),
                    (true, false) => tile::<T, V, MR, NV, false>(job, i0, j0, nc),
                    (false, true) => tile_rows::<T, V, NV, true>(job, rows, i0, j0, nc),
                    (false, false) => tile_rows::<T, V, NV, false>(job, rows, i0, j0, nc),
                }
                i0 += rows;
            }
            j0 += w;
        }
    }
}

/// Sparse rows times a dense matrix: `out[r, :] ← bias + Σ_(k,v) v · B[k, :]`
/// over the non-zeros of row `first + r`, chunks of `NV` vectors of outputs
/// held in registers.
#[doc(hidden)]
pub struct SparseJob<'a, T> {
    sp: &'a super::sparse::SparseRows<T>,
    first: usize,
    rows: usize,
    n: usize,
    b: *const T,
    b_rs: isize,
    bias: *const T,
    out: *mut T,
    out_rs: isize,
}

#[inline(always)]
unsafe fn sparse_chunk<T: Copy, V: Vector<T>, const NV: usize, const FULL: bool>(
    job: &SparseJob<'_, T>,
    j0: usize,
    nc: usize,
) {
    unsafe {
        let l = V::LANES;
        let mut lanes = [l; NV];
        if !FULL {
            for (v, n) in lanes.iter_mut().enumerate() {
                *n = nc.saturating_sub(v * l).min(l);
            }
        }
        let load = |p: *const T, v: usize| {
            if FULL {
                V::load(p)
            } else {
                V::load_n(p, lanes[v])
            }
        };
        for r in 0..job.rows {
            let mut acc = [V::splat(std::mem::zeroed()); NV];
            for (v, a) in acc.iter_mut().enumerate() {
                *a = load(job.bias.add(j0 + v * l), v);
            }
            let (idx, val) = job.sp.row_slices(job.first + r);
            for (&k, &x) in idx.iter().zip(val) {
                let x = V::splat(x);
                let pb = job.b.offset(k as isize * job.b_rs).add(j0);
                for (v, a) in acc.iter_mut().enumerate() {
                    *a = V::mul_add(x, load(pb.add(v * l), v), *a);
                }
            }
            let po = job.out.offset(r as isize * job.out_rs).add(j0);
            for (v, a) in acc.iter().enumerate() {
                if FULL || lanes[v] == l {
                    a.store(po.add(v * l))
                } else if lanes[v] > 0 {
                    a.store_n(po.add(v * l), lanes[v])
                }
            }
        }
    }
}

#[inline(always)]
unsafe fn sparse_drive<T: Copy, V: Vector<T>, const NV: usize>(job: &SparseJob<'_, T>) {
    unsafe {
        let w = NV * V::LANES;
        let mut j0 = 0;
        while j0 < job.n {
            let nc = w.min(job.n - j0);
            if nc == w {
                sparse_chunk::<T, V, NV, true>(job, j0, nc)
            } else {
                sparse_chunk::<T, V, NV, false>(job, j0, nc)
            }
            j0 += w;
        }
    }
}

/// The sparse update `C[k, :] ← C[k, :] + s · Σ_seg Σ_(r,v) v · B_seg[r, :]`
/// over the non-zeros `(r, v)` of column `k` of each segment's sparse input,
/// rows in order (a dense update's order, its zero terms skipped).
#[doc(hidden)]
pub struct SparseUpdateJob<'a, T> {
    segs: &'a [(&'a super::sparse::SparseRows<T>, *const T, isize)],
    /// The sparse inputs' column that row 0 of `c` updates.
    k0: usize,
    k: usize,
    n: usize,
    c: *mut T,
    c_rs: isize,
    out: Out<T>,
}

#[inline(always)]
unsafe fn sparse_update_chunk<T: Copy, V: Vector<T>, const NV: usize, const FULL: bool>(
    job: &SparseUpdateJob<'_, T>,
    j0: usize,
    nc: usize,
) {
    unsafe {
        let l = V::LANES;
        let mut lanes = [l; NV];
        if !FULL {
            for (v, n) in lanes.iter_mut().enumerate() {
                *n = nc.saturating_sub(v * l).min(l);
            }
        }
        let load = |p: *const T, v: usize| {
            if FULL {
                V::load(p)
            } else {
                V::load_n(p, lanes[v])
            }
        };
        for k in 0..job.k {
            let active = job
                .segs
                .iter()
                .any(|(sp, _, _)| !sp.col_slices(job.k0 + k).0.is_empty());
            if !active && matches!(job.out, Out::AddScaled(_)) {
                continue;
            }
            let mut acc = [V::splat(std::mem::zeroed()); NV];
            for &(sp, b, b_rs) in job.segs {
                let (rows, vals) = sp.col_slices(job.k0 + k);
                for (&r, &x) in rows.iter().zip(vals) {
                    let x = V::splat(x);
                    let pb = b.offset(r as isize * b_rs).add(j0);
                    for (v, a) in acc.iter_mut().enumerate() {
                        *a = V::mul_add(x, load(pb.add(v * l), v), *a);
                    }
                }
            }
            let pc = job.c.offset(k as isize * job.c_rs).add(j0);
            for (v, a) in acc.iter().enumerate() {
                if lanes[v] == 0 {
                    continue;
                }
                let p = pc.add(v * l);
                let val = match job.out {
                    Out::Store => *a,
                    Out::Scale(s) => V::splat(s).mul(*a),
                    Out::AddScaled(s) => load(p, v).add(V::splat(s).mul(*a)),
                };
                if FULL || lanes[v] == l {
                    val.store(p)
                } else {
                    val.store_n(p, lanes[v])
                }
            }
        }
    }
}

#[inline(always)]
unsafe fn sparse_update_drive<T: Copy, V: Vector<T>, const NV: usize>(
    job: &SparseUpdateJob<'_, T>,
) {
    unsafe {
        let w = NV * V::LANES;
        let mut j0 = 0;
        while j0 < job.n {
            let nc = w.min(job.n - j0);
            if nc == w {
                sparse_update_chunk::<T, V, NV, true>(job, j0, nc)
            } else {
                sparse_update_chunk::<T, V, NV, false>(job, j0, nc)
            }
            j0 += w;
        }
    }
}

/// The element types the kernels are compiled for, each with its
/// instruction-set variants; `simd::level()` picks one per call.
pub trait Element: Copy + Send + Sync + 'static {
    #[doc(hidden)]
    fn run_job(job: &Job<'_, Self>);
    #[doc(hidden)]
    fn run_sparse(job: &SparseJob<'_, Self>);
    #[doc(hidden)]
    fn run_sparse_update(job: &SparseUpdateJob<'_, Self>);
}

macro_rules! element {
    ($t:ty, $v4:ty, $v3:ty, $mr4:literal, $mr3:literal) => {
        impl Element for $t {
            fn run_job(job: &Job<'_, $t>) {
                #[cfg(target_arch = "x86_64")]
                #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
                unsafe fn v4(job: &Job<'_, $t>) {
                    unsafe { drive::<$t, $v4, $mr4, 2>(job) }
                }
                #[cfg(target_arch = "x86_64")]
                #[target_feature(enable = "avx2,fma")]
                unsafe fn v3(job: &Job<'_, $t>) {
                    unsafe { drive::<$t, $v3, $mr3, 2>(job) }
                }
                // SAFETY: the level never exceeds what the CPU supports;
                // the job's pointers were checked by its builder.
                match level() {
                    #[cfg(target_arch = "x86_64")]
                    Level::Avx512 => unsafe { v4(job) },
                    #[cfg(target_arch = "x86_64")]
                    Level::Avx2 => unsafe { v3(job) },
                    _ => unsafe { drive::<$t, Scalar<$t>, 4, 4>(job) },
                }
            }
            fn run_sparse(job: &SparseJob<'_, $t>) {
                #[cfg(target_arch = "x86_64")]
                #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
                unsafe fn v4(job: &SparseJob<'_, $t>) {
                    unsafe { sparse_drive::<$t, $v4, 8>(job) }
                }
                #[cfg(target_arch = "x86_64")]
                #[target_feature(enable = "avx2,fma")]
                unsafe fn v3(job: &SparseJob<'_, $t>) {
                    unsafe { sparse_drive::<$t, $v3, 8>(job) }
                }
                match level() {
                    #[cfg(target_arch = "x86_64")]
                    Level::Avx512 => unsafe { v4(job) },
                    #[cfg(target_arch = "x86_64")]
                    Level::Avx2 => unsafe { v3(job) },
                    _ => unsafe { sparse_drive::<$t, Scalar<$t>, 8>(job) },
                }
            }
            fn run_sparse_update(job: &SparseUpdateJob<'_, $t>) {
                #[cfg(target_arch = "x86_64")]
                #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
                unsafe fn v4(job: &SparseUpdateJob<'_, $t>) {
                    unsafe { sparse_update_drive::<$t, $v4, 8>(job) }
                }
                #[cfg(target_arch = "x86_64")]
                #[target_feature(enable = "avx2,fma")]
                unsafe fn v3(job: &SparseUpdateJob<'_, $t>) {
                    unsafe { sparse_update_drive::<$t, $v3, 8>(job) }
                }
                match level() {
                    #[cfg(target_arch = "x86_64")]
                    Level::Avx512 => unsafe { v4(job) },
                    #[cfg(target_arch = "x86_64")]
                    Level::Avx2 => unsafe { v3(job) },
                    _ => unsafe { sparse_update_drive::<$t, Scalar<$t>, 8>(job) },
                }
            }
        }
    };
}

#[cfg(target_arch = "x86_64")]
element!(f32, x86::F32x16, x86::F32x8, 8, 6);
#[cfg(target_arch = "x86_64")]
element!(f64, x86::F64x8, x86::F64x4, 8, 6);
#[cfg(not(target_arch = "x86_64"))]
element!(f32, Scalar<f32>, Scalar<f32>, 4, 4);
#[cfg(not(target_arch = "x86_64"))]
element!(f64, Scalar<f64>, Scalar<f64>, 4, 4);

/// Strides along an axis are "unit" when it has at most one element.
fn unit(len: usize, stride: isize) -> bool {
    len <= 1 || stride == 1
}

/// A copy with contiguous rows, for operands in an unusual layout (a slow
/// path: callers keep their hot operands in the right orientation).
fn rows_contiguous<T: super::Real>(a: ArrayView2<'_, T>) -> Array2<T> {
    a.as_standard_layout().into_owned()
}

/// `c ← a · b`, or `c ← bias + a · b` with the bias broadcast over rows
/// (the accumulation starts from the bias).
pub fn matmul<T: super::Real>(
    a: ArrayView2<'_, T>,
    b: ArrayView2<'_, T>,
    bias: Option<ArrayView1<'_, T>>,
    mut c: ArrayViewMut2<'_, T>,
) {
    let (m, k) = a.dim();
    let (k2, n) = b.dim();
    assert!(
        k == k2 && c.dim() == (m, n) && bias.as_ref().is_none_or(|b| b.len() == n),
        "matmul shapes {:?} x {:?} -> {:?}",
        a.dim(),
        b.dim(),
        c.dim()
    );
    if m == 0 || n == 0 {
        return;
    }
    if !unit(n, c.strides()[1]) {
        let mut tmp = Array2::zeros((m, n));
        matmul(a, b, bias, tmp.view_mut());
        c.assign(&tmp);
        return;
    }
    let b_owned;
    let b = if unit(n, b.strides()[1]) {
        b.view()
    } else {
        b_owned = rows_contiguous(b);
        b_owned.view()
    };
    let bias_owned;
    let init = match bias {
        None => Init::Zero,
        Some(v) if unit(n, v.strides()[0]) => Init::Row(v.as_ptr()),
        Some(v) => {
            bias_owned = v.to_owned();
            Init::Row(bias_owned.as_ptr())
        }
    };
    let seg = [Seg {
        a: a.as_ptr(),
        a_rs: a.strides()[0],
        a_cs: a.strides()[1],
        b: b.as_ptr(),
        b_rs: b.strides()[0],
        k,
    }];
    let job = Job {
        m,
        n,
        segs: &seg,
        c: c.as_mut_ptr(),
        c_rs: c.strides()[0],
        init,
        out: Out::Store,
    };
    T::run_job(&job);
}

/// Set or accumulate, for updates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accum {
    /// `c ← s · Σ`
    Set,
    /// `c ← c + s · Σ`
    Add,
}

/// `c (m × n) ← [c +] s · Σ_seg aᵀ b` for segments `(a: (r, m), b: (r, n))`:
/// the batch rows of all segments are summed in order, as if stacked.
/// `c` may be row- or column-major (the result is the same either way).
pub fn rank_update<T: super::Real>(
    scale: T,
    segs: &[(ArrayView2<'_, T>, ArrayView2<'_, T>)],
    mode: Accum,
    mut c: ArrayViewMut2<'_, T>,
) {
    let (m, n) = c.dim();
    for (a, b) in segs {
        assert!(
            a.ncols() == m && b.ncols() == n && a.nrows() == b.nrows(),
            "rank_update shapes {:?}ᵀ x {:?} -> {:?}",
            a.dim(),
            b.dim(),
            c.dim()
        );
    }
    if m == 0 || n == 0 {
        return;
    }
    let out = match mode {
        Accum::Set => Out::Scale(scale),
        Accum::Add => Out::AddScaled(scale),
    };
    // C[i, j] = Σ_r a[r, i] b[r, j]: vectorise along C's contiguous axis;
    // the operand on that axis needs contiguous rows.
    let row_major = unit(n, c.strides()[1]);
    let col_major = !row_major && unit(m, c.strides()[0]);
    if !row_major && !col_major {
        let mut tmp = c.as_standard_layout().into_owned();
        rank_update(scale, segs, mode, tmp.view_mut());
        c.assign(&tmp);
        return;
    }
    let owned: Vec<Array2<T>>;
    let mut operands: Vec<(ArrayView2<'_, T>, ArrayView2<'_, T>)> = Vec::with_capacity(segs.len());
    // (broadcast operand, vector operand), the latter with contiguous rows.
    let needs_copy = segs.iter().any(|(a, b)| {
        let v = if row_major { b.view() } else { a.view() };
        !unit(v.ncols(), v.strides()[1])
    });
    if needs_copy {
        owned = segs
            .iter()
            .map(|(a, b)| rows_contiguous(if row_major { b.view() } else { a.view() }))
            .collect();
        for ((a, b), o) in segs.iter().zip(&owned) {
            operands.push(if row_major {
                (a.view(), o.view())
            } else {
                (b.view(), o.view())
            });
        }
    } else {
        for (a, b) in segs {
            operands.push(if row_major {
                (a.view(), b.view())
            } else {
                (b.view(), a.view())
            });
        }
    }
    let seg: Vec<Seg<T>> = operands
        .iter()
        .map(|(bc, vec)| Seg {
            // Broadcast operand read transposed: A'[i, r] = bc[r, i].
            a: bc.as_ptr(),
            a_rs: bc.strides()[1],
            a_cs: bc.strides()[0],
            b: vec.as_ptr(),
            b_rs: vec.strides()[0],
            k: bc.nrows(),
        })
        .collect();
    let (jm, jn, c_rs) = if row_major {
        (m, n, c.strides()[0])
    } else {
        (n, m, c.strides()[1])
    };
    let job = Job {
        m: jm,
        n: jn,
        segs: &seg,
        c: c.as_mut_ptr(),
        c_rs,
        init: Init::Zero,
        out,
    };
    T::run_job(&job);
}

/// `out ← [out +] s · Σ_seg Σ_r a[r, :]` (the bias update), rows in order.
pub fn column_sums<T: super::Real>(
    scale: T,
    segs: &[ArrayView2<'_, T>],
    mode: Accum,
    mut out: ArrayViewMut1<'_, T>,
) {
    const CHUNK: usize = 64;
    let n = out.len();
    for j0 in (0..n).step_by(CHUNK) {
        let len = CHUNK.min(n - j0);
        let mut acc = [T::zero(); CHUNK];
        for a in segs {
            assert_eq!(a.ncols(), n, "column_sums shapes");
            for row in a.rows() {
                let row = row.slice_move(ndarray::s![j0..j0 + len]);
                match row.as_slice() {
                    Some(v) => add_rows(&mut acc[..len], v),
                    None => acc.iter_mut().zip(row).for_each(|(s, &v)| *s += v),
                }
            }
        }
        for (o, &s) in out
            .slice_mut(ndarray::s![j0..j0 + len])
            .iter_mut()
            .zip(&acc)
        {
            *o = match mode {
                Accum::Set => scale * s,
                Accum::Add => *o + scale * s,
            };
        }
    }
}

super::simd::multiversion! {
    fn add_rows<T: super::Real>(acc: &mut [T], v: &[T]) {
        for (s, &v) in acc.iter_mut().zip(v) {
            *s += v;
        }
    }
}

/// `out[r, :] ← bias + Σ_k x[first + r, k] · wt[k, :]` for the sparse rows
/// `first..first + out.nrows()`; equal to `matmul` on the dense rows (the
/// skipped terms are exact zeros).
pub fn sparse_matmul<T: super::Real>(
    sp: &super::sparse::SparseRows<T>,
    first: usize,
    wt: ArrayView2<'_, T>,
    bias: ArrayView1<'_, T>,
    mut out: ArrayViewMut2<'_, T>,
) {
    let (rows, n) = out.dim();
    assert!(
        wt.ncols() == n
            && bias.len() == n
            && first + rows <= sp.nrows()
            && wt.nrows() == sp.ncols(),
        "sparse_matmul shapes"
    );
    if rows == 0 || n == 0 {
        return;
    }
    if !unit(n, out.strides()[1]) || !unit(n, wt.strides()[1]) || !unit(n, bias.strides()[0]) {
        let (wt, bias) = (rows_contiguous(wt), bias.to_owned());
        let mut tmp = Array2::zeros((rows, n));
        sparse_matmul(sp, first, wt.view(), bias.view(), tmp.view_mut());
        out.assign(&tmp);
        return;
    }
    let job = SparseJob {
        sp,
        first,
        rows,
        n,
        b: wt.as_ptr(),
        b_rs: wt.strides()[0],
        bias: bias.as_ptr(),
        out: out.as_mut_ptr(),
        out_rs: out.strides()[0],
    };
    T::run_sparse(&job);
}

/// `ct[k, :] ← [ct[k, :] +] s · Σ_seg Σ_r x_seg[r, k0 + k] · b_seg[r, :]`
/// with the sparse inputs `x_seg` (their rows in order): the transposed
/// weight update `Wᵀ += s · xᵀ δ` of the inputs `k0 .. k0 + ct.nrows()`.
/// `ct` is `(inputs, outputs)` with contiguous rows (the column-major `W`, a
/// slice of its output units, or a block of its inputs). Each entry is the
/// same sum in the same order whatever block it is computed in.
pub fn sparse_rank_update<T: super::Real>(
    scale: T,
    segs: &[(&super::sparse::SparseRows<T>, ArrayView2<'_, T>)],
    k0: usize,
    mode: Accum,
    mut ct: ArrayViewMut2<'_, T>,
) {
    let (k, n) = ct.dim();
    for (sp, b) in segs {
        assert!(
            k0 + k <= sp.ncols() && b.ncols() == n && b.nrows() == sp.nrows(),
            "sparse_rank_update shapes: {}x{} sparse, {:?} dense, {:?} out",
            sp.nrows(),
            sp.ncols(),
            b.dim(),
            (k, n)
        );
    }
    if k == 0 || n == 0 {
        return;
    }
    let owned: Vec<Array2<T>>;
    let views: Vec<ArrayView2<'_, T>> = if segs.iter().all(|(_, b)| unit(n, b.strides()[1])) {
        segs.iter().map(|(_, b)| b.view()).collect()
    } else {
        owned = segs
            .iter()
            .map(|(_, b)| rows_contiguous(b.view()))
            .collect();
        owned.iter().map(|b| b.view()).collect()
    };
    if !unit(n, ct.strides()[1]) {
        let mut tmp = ct.as_standard_layout().into_owned();
        let segs2: Vec<_> = segs
            .iter()
            .zip(&views)
            .map(|((sp, _), b)| (*sp, b.view()))
            .collect();
        sparse_rank_update(scale, &segs2, k0, mode, tmp.view_mut());
        ct.assign(&tmp);
        return;
    }
    let segs: Vec<(&super::sparse::SparseRows<T>, *const T, isize)> = segs
        .iter()
        .zip(&views)
        .map(|((sp, _), b)| (*sp, b.as_ptr(), b.strides()[0]))
        .collect();
    let job = SparseUpdateJob {
        segs: &segs,
        k0,
        k,
        n,
        c: ct.as_mut_ptr(),
        c_rs: ct.strides()[0],
        out: match mode {
            Accum::Set => Out::Scale(scale),
            Accum::Add => Out::AddScaled(scale),
        },
    };
    T::run_sparse_update(&job);
}

/// `dst ← srcᵀ`, in 8 × 8 blocks (the weight mirrors are refreshed with it).
pub fn transpose_into<T: super::Real>(src: ArrayView2<'_, T>, mut dst: ArrayViewMut2<'_, T>) {
    let (r, c) = src.dim();
    assert_eq!(dst.dim(), (c, r), "transpose shapes");
    if r == 0 || c == 0 {
        return;
    }
    let (s_rs, s_cs) = (src.strides()[0], src.strides()[1]);
    let (d_rs, d_cs) = (dst.strides()[0], dst.strides()[1]);
    #[cfg(target_arch = "x86_64")]
    if std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>()
        && s_cs == 1
        && d_cs == 1
        && s_rs > 0
        && d_rs > 0
        && level() >= Level::Avx2
    {
        // SAFETY: T is f32 (same layout); AVX2 is available; the shapes and
        // row strides were checked above.
        unsafe {
            x86::transpose_f32(
                src.as_ptr() as *const f32,
                s_rs as usize,
                dst.as_mut_ptr() as *mut f32,
                d_rs as usize,
                r,
                c,
            )
        };
        return;
    }
    // SAFETY: every index below is inside the checked shapes.
    unsafe { transpose_blocks(src.as_ptr(), s_rs, s_cs, dst.as_mut_ptr(), d_rs, d_cs, r, c) }
}

super::simd::multiversion! {
    #[allow(clippy::too_many_arguments)]
    fn transpose_blocks_impl<T: super::Real>(
        src: *const T,
        s_rs: isize,
        s_cs: isize,
        dst: *mut T,
        d_rs: isize,
        d_cs: isize,
        r: usize,
        c: usize,
    ) {
        // Eight source rows at a time: each column of that strip becomes eight
        // contiguous elements of a destination row.
        const B: usize = 8;
        let rb = r - r % B;
        unsafe {
            for i0 in (0..rb).step_by(B) {
                let rows: [*const T; B] =
                    std::array::from_fn(|di| src.offset((i0 + di) as isize * s_rs));
                for j in 0..c {
                    let d = dst.offset(j as isize * d_rs + i0 as isize * d_cs);
                    let o = j as isize * s_cs;
                    for (di, row) in rows.iter().enumerate() {
                        *d.offset(di as isize * d_cs) = *row.offset(o);
                    }
                }
            }
            for i in rb..r {
                for j in 0..c {
                    *dst.offset(j as isize * d_rs + i as isize * d_cs) =
                        *src.offset(i as isize * s_rs + j as isize * s_cs);
                }
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
unsafe fn transpose_blocks<T: super::Real>(
    src: *const T,
    s_rs: isize,
    s_cs: isize,
    dst: *mut T,
    d_rs: isize,
    d_cs: isize,
    r: usize,
    c: usize,
) {
    transpose_blocks_impl(src, s_rs, s_cs, dst, d_rs, d_cs, r, c)
}

/// The axis along which both arrays are contiguous (stride 1), preferring
/// the last: a row slice of a column-major `W` is contiguous down its
/// columns only.
fn shared_unit_axis<T>(a: &ArrayView2<'_, T>, b: &ArrayView2<'_, T>) -> Option<Axis> {
    (0..2)
        .rev()
        .find(|&k| a.strides()[k] == 1 && b.strides()[k] == 1)
        .map(Axis)
}

/// `dst ← src` as one `memcpy` per contiguous lane. ndarray's `assign`
/// walks mixed or strided layouts element by element in row-major order,
/// which for a row slice of a column-major matrix is a strided, scalar
/// walk (it dominated the actors' weight hand-over).
pub fn copy_into<T: Copy>(src: ArrayView2<'_, T>, mut dst: ArrayViewMut2<'_, T>) {
    assert_eq!(src.dim(), dst.dim(), "copy shapes");
    let Some(axis) = shared_unit_axis(&src, &dst.view()) else {
        dst.assign(&src);
        return;
    };
    for (mut d, s) in dst.lanes_mut(axis).into_iter().zip(src.lanes(axis)) {
        if let (Some(ds), Some(ss)) = (d.as_slice_mut(), s.as_slice()) {
            ds.copy_from_slice(ss);
        } else {
            d.assign(&s);
        }
    }
}

/// Whether `a == b` element by element, one slice compare per contiguous
/// lane (see `copy_into`).
pub fn equal<T: PartialEq>(a: ArrayView2<'_, T>, b: ArrayView2<'_, T>) -> bool {
    if a.dim() != b.dim() {
        return false;
    }
    let Some(axis) = shared_unit_axis(&a, &b) else {
        return a == b;
    };
    a.lanes(axis)
        .into_iter()
        .zip(b.lanes(axis))
        .all(|(x, y)| match (x.as_slice(), y.as_slice()) {
            (Some(x), Some(y)) => slices_equal(x, y),
            _ => x == y,
        })
}

/// `x == y` in blocks without an early exit inside a block, so that the
/// compare vectorises (a plain slice `==` on floats goes element by element).
fn slices_equal<T: PartialEq>(x: &[T], y: &[T]) -> bool {
    x.len() == y.len()
        && x.chunks(64)
            .zip(y.chunks(64))
            .all(|(p, q)| p.iter().zip(q).fold(true, |all, (a, b)| all & (a == b)))
}
