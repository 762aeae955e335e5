//! Run-time SIMD dispatch: one portable binary that uses AVX-512 or AVX2+FMA
//! where the CPU has them (the build itself targets plain x86-64).
//!
//! Every vectorised path computes each number with the same IEEE operations
//! in the same order as the scalar path (no horizontal reductions, no
//! contraction of `a * b + c` except where the scalar code calls `mul_add`),
//! so results are bit-identical whichever level runs; only speed differs.
//! `PCSIM_SIMD=scalar|avx2|avx512` caps the level (for checking exactly that,
//! and for measuring what each level is worth).

use std::sync::atomic::{AtomicU8, Ordering};

/// Instruction-set levels, lowest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Portable code (SSE2 on x86-64; `mul_add` may be a library call).
    Scalar = 1,
    /// AVX2 + FMA (x86-64-v3).
    Avx2 = 2,
    /// AVX-512 F/VL/BW/DQ + AVX2 + FMA (x86-64-v4).
    Avx512 = 3,
}

impl Level {
    pub fn name(self) -> &'static str {
        match self {
            Level::Scalar => "scalar",
            Level::Avx2 => "avx2",
            Level::Avx512 => "avx512",
        }
    }

    fn from_u8(v: u8) -> Option<Level> {
        match v {
            1 => Some(Level::Scalar),
            2 => Some(Level::Avx2),
            3 => Some(Level::Avx512),
            _ => None,
        }
    }

    fn parse(s: &str) -> Option<Level> {
        match s.trim().to_ascii_lowercase().as_str() {
            "scalar" => Some(Level::Scalar),
            "avx2" => Some(Level::Avx2),
            "avx512" => Some(Level::Avx512),
            _ => None,
        }
    }
}

static LEVEL: AtomicU8 = AtomicU8::new(0);

/// The best level this CPU supports.
pub fn detected() -> Level {
    #[cfg(target_arch = "x86_64")]
    {
        let v3 = std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma");
        let v4 = v3
            && std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512vl")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512dq");
        if v4 {
            return Level::Avx512;
        }
        if v3 {
            return Level::Avx2;
        }
    }
    Level::Scalar
}

/// The level the kernels use: the detected one, capped by `PCSIM_SIMD` or
/// by `set_level`.
#[inline]
pub fn level() -> Level {
    if let Some(l) = Level::from_u8(LEVEL.load(Ordering::Relaxed)) {
        return l;
    }
    let best = detected();
    let l = match std::env::var("PCSIM_SIMD") {
        Ok(v) => Level::parse(&v).map_or(best, |want| want.min(best)),
        Err(_) => best,
    };
    LEVEL.store(l as u8, Ordering::Relaxed);
    l
}

/// Caps the level at `want` (never above what the CPU has) and returns the
/// level now in use. Results do not depend on it, only speed.
pub fn set_level(want: Level) -> Level {
    let l = want.min(detected());
    LEVEL.store(l as u8, Ordering::Relaxed);
    l
}

/// Compiles a free function three times — for AVX-512, for AVX2+FMA and
/// portable — and picks one at run time by `level()`. The body is written
/// once, as plain (auto-vectorisable) Rust; arguments are plain identifiers.
macro_rules! multiversion {
    (
        $(#[$attr:meta])*
        $vis:vis fn $name:ident $(<$($g:ident : $bound:path),+>)?
        ($($arg:ident : $ty:ty),* $(,)?) $(-> $ret:ty)?
        $body:block
    ) => {
        $(#[$attr])*
        $vis fn $name $(<$($g: $bound),+>)? ($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn body $(<$($g: $bound),+>)? ($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx512f,avx512vl,avx512bw,avx512dq,avx2,fma,bmi1,bmi2,lzcnt,popcnt")]
            unsafe fn v4 $(<$($g: $bound),+>)? ($($arg: $ty),*) $(-> $ret)? {
                body $(::<$($g),+>)? ($($arg),*)
            }
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,fma,bmi1,bmi2,lzcnt,popcnt")]
            unsafe fn v3 $(<$($g: $bound),+>)? ($($arg: $ty),*) $(-> $ret)? {
                body $(::<$($g),+>)? ($($arg),*)
            }
            match $crate::nn::simd::level() {
                // SAFETY: `level()` never exceeds what the CPU supports.
                #[cfg(target_arch = "x86_64")]
                $crate::nn::simd::Level::Avx512 => unsafe { v4 $(::<$($g),+>)? ($($arg),*) },
                #[cfg(target_arch = "x86_64")]
                $crate::nn::simd::Level::Avx2 => unsafe { v3 $(::<$($g),+>)? ($($arg),*) },
                _ => body $(::<$($g),+>)? ($($arg),*),
            }
        }
    };
}
pub(crate) use multiversion;

#[cfg(test)]
mod tests {
    use super::*;

    multiversion! {
        fn sum_of_squares(v: &[f32]) -> f32 {
            v.iter().map(|x| x * x).fold(0.0, |a, b| a + b)
        }
    }

    #[test]
    fn every_level_computes_the_same_bits() {
        let v: Vec<f32> = (0..1000).map(|i| (i as f32 * 0.37).sin()).collect();
        let before = level();
        let mut seen = Vec::new();
        for l in [Level::Scalar, Level::Avx2, Level::Avx512] {
            set_level(l);
            seen.push(sum_of_squares(&v).to_bits());
        }
        set_level(before);
        assert!(seen.windows(2).all(|w| w[0] == w[1]), "{seen:?}");
    }
}
