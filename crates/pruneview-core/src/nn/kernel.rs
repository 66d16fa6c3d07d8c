//! Register-blocked f32 micro-kernels: the inner loop of every GEMM-shaped computation here.
//!
//! A kernel computes one `mr x (16 * nv)` tile of `C = A * B` over `k` steps:
//! - `A` is *packed*: panel rows are interleaved, element `(i, kk)` at `a[kk * MR + i]`, so one
//!   step broadcasts `mr` consecutive floats;
//! - `B` is addressed through an offset table: step `kk` reads the contiguous row segment
//!   `b[offs[kk] ..][.. 16 * nv]`. A plain row-major matrix has `offs[kk] = kk * ldb`; a
//!   convolution passes the shifted windows of its (padded) input, so no im2col buffer is built
//!   (an "implicit GEMM");
//! - `C` is row-major with stride `ldc`; lanes past `mask` in the last vector are not touched.
//!
//! The AVX-512 kernel (8 x 48 tile: 24 accumulators, 3 B vectors) reaches ~145 GFLOP/s per core
//! when its operands are in L1, which is the machine's FMA peak; callers block for cache (see
//! `gemm.rs`). A portable kernel with the same contract serves other CPUs and the tests.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// Rows of A per packed panel (and the largest kernel height).
pub(crate) const MR: usize = 8;
/// Columns per kernel call (three 16-lane vectors).
pub(crate) const NR: usize = 48;

/// What a kernel does with its result tile before storing it.
#[derive(Clone, Copy)]
pub(crate) struct Epilogue {
    /// Add the tile to what `C` already holds (instead of overwriting it).
    pub accumulate: bool,
    /// Per-row bias (`mr` values), added last; null for none.
    pub bias: *const f32,
    /// Per-column bias (the tile's `16 * nv` columns, e.g. a linear layer's), null for none.
    pub col_bias: *const f32,
    /// Clamp negatives to zero after the bias (NaN passes through, as in PyTorch).
    pub relu: bool,
}

/// Kernel signature: `(k, a_panel, b, offs, c, ldc, mask, epilogue)`.
pub(crate) type KernFn =
    unsafe fn(usize, *const f32, *const f32, *const isize, *mut f32, usize, u16, &Epilogue);

/// Which instruction set the kernels use. Chosen once at run time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    /// AVX-512F kernels (x86-64 with AVX-512).
    Avx512,
    /// Portable Rust kernels (any CPU; slower).
    Generic,
}

impl Isa {
    /// The best instruction set this CPU supports.
    pub fn detect() -> Isa {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                return Isa::Avx512;
            }
        }
        Isa::Generic
    }
}

/// Scalar ReLU that lets NaN through (like `torch.relu`).
#[inline(always)]
pub(crate) fn relu1(x: f32) -> f32 {
    if x < 0.0 { 0.0 } else { x }
}

/// The kernel for an `mr x (16 * nv)` tile (`1 <= mr <= MR`, `1 <= nv <= 3`).
pub(crate) fn kernel(isa: Isa, mr: usize, nv: usize) -> KernFn {
    macro_rules! table {
        ($f:ident) => {
            match (mr, nv) {
                (1, 1) => $f::<1, 1>,
                (1, 2) => $f::<1, 2>,
                (1, _) => $f::<1, 3>,
                (2, 1) => $f::<2, 1>,
                (2, 2) => $f::<2, 2>,
                (2, _) => $f::<2, 3>,
                (3, 1) => $f::<3, 1>,
                (3, 2) => $f::<3, 2>,
                (3, _) => $f::<3, 3>,
                (4, 1) => $f::<4, 1>,
                (4, 2) => $f::<4, 2>,
                (4, _) => $f::<4, 3>,
                (5, 1) => $f::<5, 1>,
                (5, 2) => $f::<5, 2>,
                (5, _) => $f::<5, 3>,
                (6, 1) => $f::<6, 1>,
                (6, 2) => $f::<6, 2>,
                (6, _) => $f::<6, 3>,
                (7, 1) => $f::<7, 1>,
                (7, 2) => $f::<7, 2>,
                (7, _) => $f::<7, 3>,
                (_, 1) => $f::<8, 1>,
                (_, 2) => $f::<8, 2>,
                (_, _) => $f::<8, 3>,
            }
        };
    }
    debug_assert!((1..=MR).contains(&mr) && (1..=3).contains(&nv));
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => table!(kern_avx512),
        _ => table!(kern_generic),
    }
}

/// Lane mask for the last vector of a strip that is `width` columns wide (`1..=48`).
#[inline]
pub(crate) fn tail_mask(width: usize) -> (usize, u16) {
    let nv = width.div_ceil(16);
    let rem = width - (nv - 1) * 16;
    let mask = if rem == 16 { 0xffff } else { (1u16 << rem) - 1 };
    (nv, mask)
}

/// AVX-512 kernel. Safety: the CPU must support AVX-512F; `a` must hold `k * MR` floats,
/// every `b + offs[kk] + 16 * v` (v < nv, masked lanes excluded) must be readable, and the
/// `mr` rows of `c` writable.
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f")]
unsafe fn kern_avx512<const M: usize, const NV: usize>(
    k: usize,
    a: *const f32,
    b: *const f32,
    offs: *const isize,
    c: *mut f32,
    ldc: usize,
    mask: u16,
    epi: &Epilogue,
) {
    // SAFETY: the caller upholds the pointer contract above.
    unsafe {
        let mut r = [[_mm512_setzero_ps(); NV]; M];
        if epi.accumulate {
            for (i, row) in r.iter_mut().enumerate() {
                for (v, acc) in row.iter_mut().enumerate() {
                    let p = c.add(i * ldc + 16 * v);
                    *acc = if v + 1 == NV {
                        _mm512_maskz_loadu_ps(mask, p)
                    } else {
                        _mm512_loadu_ps(p)
                    };
                }
            }
        }
        for kk in 0..k {
            let bp = b.offset(*offs.add(kk));
            let mut bv = [_mm512_setzero_ps(); NV];
            for (v, x) in bv.iter_mut().enumerate() {
                *x = if v + 1 == NV {
                    _mm512_maskz_loadu_ps(mask, bp.add(16 * v))
                } else {
                    _mm512_loadu_ps(bp.add(16 * v))
                };
            }
            let ap = a.add(kk * MR);
            for (i, row) in r.iter_mut().enumerate() {
                let ai = _mm512_set1_ps(*ap.add(i));
                for v in 0..NV {
                    row[v] = _mm512_fmadd_ps(ai, bv[v], row[v]);
                }
            }
        }
        let zero = _mm512_setzero_ps();
        let mut cb = [zero; NV];
        if !epi.col_bias.is_null() {
            for (v, x) in cb.iter_mut().enumerate() {
                *x = if v + 1 == NV {
                    _mm512_maskz_loadu_ps(mask, epi.col_bias.add(16 * v))
                } else {
                    _mm512_loadu_ps(epi.col_bias.add(16 * v))
                };
            }
        }
        for (i, row) in r.iter_mut().enumerate() {
            let bias = if epi.bias.is_null() {
                None
            } else {
                Some(_mm512_set1_ps(*epi.bias.add(i)))
            };
            for (v, acc) in row.iter_mut().enumerate() {
                let mut x = *acc;
                if !epi.col_bias.is_null() {
                    x = _mm512_add_ps(x, cb[v]);
                }
                if let Some(bb) = bias {
                    x = _mm512_add_ps(x, bb);
                }
                if epi.relu {
                    // max(0, x) returns x when x is NaN.
                    x = _mm512_max_ps(zero, x);
                }
                let p = c.add(i * ldc + 16 * v);
                if v + 1 == NV {
                    _mm512_mask_storeu_ps(p, mask, x);
                } else {
                    _mm512_storeu_ps(p, x);
                }
            }
        }
    }
}

/// Portable kernel with the same contract as the AVX-512 one.
#[allow(clippy::too_many_arguments)]
unsafe fn kern_generic<const M: usize, const NV: usize>(
    k: usize,
    a: *const f32,
    b: *const f32,
    offs: *const isize,
    c: *mut f32,
    ldc: usize,
    mask: u16,
    epi: &Epilogue,
) {
    let width = (NV - 1) * 16 + mask.count_ones() as usize;
    let mut r = [[[0f32; 16]; NV]; M];
    // SAFETY: the caller upholds the pointer contract (only `width` columns are touched).
    unsafe {
        if epi.accumulate {
            for (i, row) in r.iter_mut().enumerate() {
                for j in 0..width {
                    row[j / 16][j % 16] = *c.add(i * ldc + j);
                }
            }
        }
        let mut bv = [[0f32; 16]; NV];
        for kk in 0..k {
            let bp = b.offset(*offs.add(kk));
            for j in 0..width {
                bv[j / 16][j % 16] = *bp.add(j);
            }
            let ap = a.add(kk * MR);
            for (i, row) in r.iter_mut().enumerate() {
                let ai = *ap.add(i);
                for v in 0..NV {
                    for l in 0..16 {
                        row[v][l] += ai * bv[v][l];
                    }
                }
            }
        }
        for (i, row) in r.iter().enumerate() {
            let bias = if epi.bias.is_null() {
                0.0
            } else {
                *epi.bias.add(i)
            };
            for j in 0..width {
                let cb = if epi.col_bias.is_null() {
                    0.0
                } else {
                    *epi.col_bias.add(j)
                };
                let mut x = row[j / 16][j % 16] + cb + bias;
                if epi.relu {
                    x = relu1(x);
                }
                *c.add(i * ldc + j) = x;
            }
        }
    }
}
