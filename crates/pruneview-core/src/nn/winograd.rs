//! Winograd F(4x4, 3x3) convolution for 3x3 stride-1 layers (Lavin & Gray, 2016).
//!
//! Each 4x4 output tile comes from a 6x6 input tile `d`: `Y = A^T [(G g G^T) . (B^T d B)] A`.
//! The elementwise product over all channels becomes 36 independent GEMMs
//! `M_e[Cout x tiles] = U_e[Cout x Cin] * V_e[Cin x tiles]`, doing 36 multiplies per 16
//! outputs instead of 144: a 4x cut of the dominant cost. The transforms are a few adds per
//! value and run vectorised across 16 tiles (AVX-512 permutes split the stride-4 tile columns).
//!
//! Accuracy: the transforms use coefficients up to 8 (A) and 5 (B), so float32 rounding is a few
//! times larger than a direct convolution's; relative to the output's scale it stays ~1e-6 for
//! typical inputs (see `tests/it/nn_kernels.rs`). The weight transform is done in f64.
//!
//! Work is split in bands of tile rows; each rayon job copies its band of padded input into
//! scratch, transforms it, runs the 36 GEMMs and writes its output rows (bias and ReLU fused).

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use rayon::prelude::*;

use super::conv::{Geom, fill_phase_row};
use super::gemm::{Finish, KC, PackedA, gemm_block};
use super::kernel::{Isa, NR, relu1};
use super::scratch::{SendPtr, with_scratch};

/// G (6x3): the filter transform.
const G: [[f64; 3]; 6] = [
    [1.0 / 4.0, 0.0, 0.0],
    [-1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0],
    [-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0],
    [1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0],
    [1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0],
    [0.0, 0.0, 1.0],
];

/// Weights transformed and packed for the 36 GEMMs.
#[derive(Clone, Debug)]
pub(crate) struct Winograd {
    cout: usize,
    cin: usize,
    u: Vec<PackedA>,
}

impl Winograd {
    /// `w` is `[cout, cin, 3, 3]`.
    pub(crate) fn new(cout: usize, cin: usize, w: &[f32]) -> Winograd {
        let mut u = vec![0f32; 36 * cout * cin];
        let per = cout * cin;
        for f in 0..per {
            let g = &w[f * 9..][..9];
            // t = G g (6x3), then U = t G^T (6x6).
            let mut t = [[0f64; 3]; 6];
            for (i, ti) in t.iter_mut().enumerate() {
                for (j, tij) in ti.iter_mut().enumerate() {
                    *tij = (0..3).map(|k| G[i][k] * g[k * 3 + j] as f64).sum();
                }
            }
            for i in 0..6 {
                for j in 0..6 {
                    let v: f64 = (0..3).map(|k| t[i][k] * G[j][k]).sum();
                    u[(i * 6 + j) * per + f] = v as f32;
                }
            }
        }
        let u = (0..36)
            .map(|e| PackedA::from_strided(cout, cin, &u[e * per..][..per], cin, 1))
            .collect();
        Winograd { cout, cin, u }
    }

    /// Runs the convolution (`g` must be 3x3, stride 1).
    pub(crate) fn forward(
        &self,
        isa: Isa,
        g: &Geom,
        x: &[f32],
        bias: Option<&[f32]>,
        relu: bool,
        y: &mut [f32],
    ) {
        debug_assert!(
            g.kh == 3 && g.kw == 3 && g.s == 1 && g.cin == self.cin && g.cout == self.cout
        );
        let th = g.ho.div_ceil(4);
        let tw = g.wo.div_ceil(4);
        let rows = band_rows(th, tw, rayon::current_num_threads().max(1));
        let bands = th.div_ceil(rows);
        // Band buffer: 4*rows+2 padded input rows; the pitch covers whole 16-tile groups plus
        // the vector loads' overhang.
        let pitch = 4 * tw.next_multiple_of(16) + 16;
        let band_h = 4 * rows + 2;
        let band_len = self.cin * band_h * pitch;
        // Row stride of V and M: whole 16-lane groups plus overhang, and an odd number of cache
        // lines so that the GEMM's 128 B rows do not all map to the same L1 sets.
        let mut ldv = (rows * tw + 16).next_multiple_of(16);
        if (ldv / 16).is_multiple_of(2) {
            ldv += 16;
        }
        let v_len = 36 * self.cin * ldv;
        let m_len = 36 * self.cout * ldv;
        let offs: Vec<isize> = (0..self.cin).map(|c| (c * ldv) as isize).collect();
        let yp = SendPtr(y.as_mut_ptr());
        (0..bands).into_par_iter().for_each(|bi| {
            let ty0 = bi * rows;
            let t_rows = rows.min(th - ty0);
            let nt = t_rows * tw;
            with_scratch(band_len + v_len + m_len, |buf| {
                let (band, rest) = buf.split_at_mut(band_len);
                let (v, m) = rest.split_at_mut(v_len);
                // Padded input rows 4*ty0 .. 4*ty0 + band_h (row Y of the padded map is y = Y - p).
                for ci in 0..self.cin {
                    let src_plane = &x[ci * g.h * g.w..][..g.h * g.w];
                    for r in 0..band_h {
                        let dst = &mut band[(ci * band_h + r) * pitch..][..pitch];
                        let yy = (4 * ty0 + r) as isize - g.p as isize;
                        if yy < 0 || yy >= g.h as isize {
                            dst.fill(0.0);
                        } else {
                            fill_phase_row(&src_plane[yy as usize * g.w..][..g.w], dst, 1, 0, g.p);
                        }
                    }
                }
                let geo = TileGeom {
                    tw,
                    t_rows,
                    pitch,
                    band_h,
                    ldv,
                };
                input_transform(isa, &geo, self.cin, band, v);
                for e in 0..36 {
                    // SAFETY: V_e rows ci*ldv .. + nt and M_e (cout x ldv) lie in the scratch.
                    unsafe {
                        gemm_block(
                            isa,
                            self.u[e].view(),
                            v[e * self.cin * ldv..].as_ptr(),
                            &offs,
                            nt,
                            m[e * self.cout * ldv..].as_mut_ptr(),
                            ldv,
                            Finish::default(),
                            KC,
                        );
                    }
                }
                // SAFETY: band `bi` writes only output rows 4*ty0 .. 4*(ty0 + t_rows).
                unsafe { output_transform(isa, &geo, g, self.cout, m, ty0, bias, relu, yp.get()) };
            });
        });
    }
}

/// Band height in tile rows. A band's tiles are the N of its 36 GEMMs, which run in 48-column
/// strips: pick the height that wastes the fewest kernel lanes on the last strip and keeps the
/// threads evenly loaded (bands handed out greedily), among bands of about 96..=140 tiles.
/// Measured on the PointPillars shapes (2 threads): 108 tiles best at 64 channels, 135 at 128,
/// 112 at 256; 160+ tiles spill the band's V and M buffers out of L2, under ~100 the per-band
/// overheads show.
fn band_rows(th: usize, tw: usize, threads: usize) -> usize {
    let score = |rows: usize| {
        let tb = rows * tw;
        let lanes = tb.div_ceil(NR) * NR;
        let mut load = vec![0usize; threads];
        for b in 0..th.div_ceil(rows) {
            let r = rows.min(th - b * rows);
            if let Some(min) = load.iter_mut().min() {
                *min += r;
            }
        }
        let makespan = load.iter().copied().max().unwrap_or(1).max(1);
        (tb as f64 / lanes as f64) * (th as f64 / (threads * makespan) as f64)
    };
    // Small maps: every thread still gets a band.
    let lo = 96usize.div_ceil(tw).min(th.div_ceil(threads)).max(1);
    let hi = (140 / tw).clamp(lo, th);
    (lo..=hi).fold(lo, |best, r| {
        if score(r) > score(best) + 1e-9 {
            r
        } else {
            best
        }
    })
}

/// Tile layout of one band.
struct TileGeom {
    tw: usize,
    t_rows: usize,
    pitch: usize,
    band_h: usize,
    ldv: usize,
}

/// B^T x for one 6-vector (any lane type with the needed arithmetic is handled by the
/// scalar and SIMD versions below, which follow the same formulas).
#[inline(always)]
fn bt6(x: [f32; 6]) -> [f32; 6] {
    let a = x[4] - 4.0 * x[2];
    let b = x[3] - 4.0 * x[1];
    let c = x[4] - x[2];
    let d = 2.0 * (x[3] - x[1]);
    [
        4.0 * x[0] - 5.0 * x[2] + x[4],
        a + b,
        a - b,
        c + d,
        c - d,
        4.0 * x[1] - 5.0 * x[3] + x[5],
    ]
}

/// A^T m for one 6-vector.
#[inline(always)]
fn at6(m: [f32; 6]) -> [f32; 4] {
    let s12 = m[1] + m[2];
    let d12 = m[1] - m[2];
    let s34 = m[3] + m[4];
    let d34 = m[3] - m[4];
    [
        m[0] + s12 + s34,
        d12 + 2.0 * d34,
        s12 + 4.0 * s34,
        d12 + 8.0 * d34 + m[5],
    ]
}

fn input_transform(isa: Isa, geo: &TileGeom, cin: usize, band: &[f32], v: &mut [f32]) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: Avx512 is only selected when the CPU supports it; buffer sizes follow TileGeom.
        Isa::Avx512 => unsafe { input_transform_avx512(geo, cin, band, v) },
        _ => input_transform_scalar(geo, cin, band, v),
    }
}

fn input_transform_scalar(geo: &TileGeom, cin: usize, band: &[f32], v: &mut [f32]) {
    let (tw, ldv, pitch) = (geo.tw, geo.ldv, geo.pitch);
    for ci in 0..cin {
        let plane = &band[ci * geo.band_h * pitch..][..geo.band_h * pitch];
        for tyl in 0..geo.t_rows {
            for tx in 0..tw {
                let t = tyl * tw + tx;
                let mut h = [[0f32; 6]; 6];
                for (r, hr) in h.iter_mut().enumerate() {
                    let row = &plane[(4 * tyl + r) * pitch + 4 * tx..][..6];
                    *hr = bt6([row[0], row[1], row[2], row[3], row[4], row[5]]);
                }
                for k in 0..6 {
                    let col = bt6([h[0][k], h[1][k], h[2][k], h[3][k], h[4][k], h[5][k]]);
                    for (i, &val) in col.iter().enumerate() {
                        v[((i * 6 + k) * cin + ci) * ldv + t] = val;
                    }
                }
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
unsafe fn output_transform(
    isa: Isa,
    geo: &TileGeom,
    g: &Geom,
    cout: usize,
    m: &[f32],
    ty0: usize,
    bias: Option<&[f32]>,
    relu: bool,
    y: *mut f32,
) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as for the input transform; the caller owns the band's output rows.
        Isa::Avx512 => unsafe { output_transform_avx512(geo, g, cout, m, ty0, bias, relu, y) },
        // SAFETY: the caller owns the band's output rows.
        _ => unsafe { output_transform_scalar(geo, g, cout, m, ty0, bias, relu, y) },
    }
}

#[allow(clippy::too_many_arguments, clippy::needless_range_loop)]
unsafe fn output_transform_scalar(
    geo: &TileGeom,
    g: &Geom,
    cout: usize,
    m: &[f32],
    ty0: usize,
    bias: Option<&[f32]>,
    relu: bool,
    y: *mut f32,
) {
    let (tw, ldv) = (geo.tw, geo.ldv);
    for co in 0..cout {
        let b = bias.map_or(0.0, |b| b[co]);
        for tyl in 0..geo.t_rows {
            for tx in 0..tw {
                let t = tyl * tw + tx;
                let at = |e: usize| m[(e * cout + co) * ldv + t];
                let mut o = [[0f32; 6]; 4];
                for k in 0..6 {
                    let col = at6([
                        at(k),
                        at(6 + k),
                        at(12 + k),
                        at(18 + k),
                        at(24 + k),
                        at(30 + k),
                    ]);
                    for i in 0..4 {
                        o[i][k] = col[i];
                    }
                }
                for (i, oi) in o.iter().enumerate() {
                    let oy = 4 * (ty0 + tyl) + i;
                    if oy >= g.ho {
                        break;
                    }
                    let row = at6(*oi);
                    for (j, &val) in row.iter().enumerate() {
                        let ox = 4 * tx + j;
                        if ox < g.wo {
                            let mut val = val + b;
                            if relu {
                                val = relu1(val);
                            }
                            // SAFETY: (co, oy, ox) is inside the output; this band owns row oy.
                            unsafe { *y.add((co * g.ho + oy) * g.wo + ox) = val };
                        }
                    }
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod simd {
    use super::*;

    /// Index vectors for the stride-4 split (see `deinterleave4`) and its inverse.
    pub(super) struct Idx {
        pub pair01: __m512i,
        pub pair23: __m512i,
        pub even: __m512i,
        pub odd: __m512i,
        pub zip_lo: __m512i,
        pub zip_hi: __m512i,
        pub quad0: __m512i,
        pub quad1: __m512i,
    }

    #[target_feature(enable = "avx512f")]
    pub(super) fn idx() -> Idx {
        let mk = |f: &dyn Fn(i32) -> i32| {
            let mut a = [0i32; 16];
            for (i, x) in a.iter_mut().enumerate() {
                *x = f(i as i32);
            }
            // SAFETY: `a` is 16 i32s.
            unsafe { _mm512_loadu_si512(a.as_ptr().cast()) }
        };
        Idx {
            // Phases 0,1 (resp. 2,3) of 8 tiles from 32 consecutive floats.
            pair01: mk(&|i| 4 * (i / 2) + i % 2),
            pair23: mk(&|i| 4 * (i / 2) + i % 2 + 2),
            // Even (odd) elements of 32 floats.
            even: mk(&|i| 2 * i),
            odd: mk(&|i| 2 * i + 1),
            // Interleave two 16-vectors, low (high) 8 lanes of each.
            zip_lo: mk(&|i| if i % 2 == 0 { i / 2 } else { 16 + i / 2 }),
            zip_hi: mk(&|i| if i % 2 == 0 { 8 + i / 2 } else { 24 + i / 2 }),
            // Pairs (2 floats) from two zipped vectors, alternating: tiles 0-3 (4-7).
            quad0: mk(&|i| {
                let t = i / 4;
                let q = i % 4;
                if q < 2 { 2 * t + q } else { 16 + 2 * t + q - 2 }
            }),
            quad1: mk(&|i| {
                let t = i / 4 + 4;
                let q = i % 4;
                if q < 2 { 2 * t + q } else { 16 + 2 * t + q - 2 }
            }),
        }
    }

    /// Splits `p[4*i + j]` (i < 16, j < 6) into six vectors `x_j[i]`.
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn deinterleave6(p: *const f32, ix: &Idx) -> [__m512; 6] {
        // SAFETY: the caller guarantees 68 readable floats at `p`.
        unsafe {
            let v0 = _mm512_loadu_ps(p);
            let v1 = _mm512_loadu_ps(p.add(16));
            let v2 = _mm512_loadu_ps(p.add(32));
            let v3 = _mm512_loadu_ps(p.add(48));
            let a01 = _mm512_permutex2var_ps(v0, ix.pair01, v1);
            let a23 = _mm512_permutex2var_ps(v0, ix.pair23, v1);
            let b01 = _mm512_permutex2var_ps(v2, ix.pair01, v3);
            let b23 = _mm512_permutex2var_ps(v2, ix.pair23, v3);
            let x0 = _mm512_permutex2var_ps(a01, ix.even, b01);
            let x1 = _mm512_permutex2var_ps(a01, ix.odd, b01);
            let x2 = _mm512_permutex2var_ps(a23, ix.even, b23);
            let x3 = _mm512_permutex2var_ps(a23, ix.odd, b23);
            let u0 = _mm512_loadu_ps(p.add(4));
            let u1 = _mm512_loadu_ps(p.add(20));
            let u2 = _mm512_loadu_ps(p.add(36));
            let u3 = _mm512_loadu_ps(p.add(52));
            let c01 = _mm512_permutex2var_ps(u0, ix.pair01, u1);
            let d01 = _mm512_permutex2var_ps(u2, ix.pair01, u3);
            let x4 = _mm512_permutex2var_ps(c01, ix.even, d01);
            let x5 = _mm512_permutex2var_ps(c01, ix.odd, d01);
            [x0, x1, x2, x3, x4, x5]
        }
    }

    #[inline(always)]
    pub(super) unsafe fn bt6v(x: [__m512; 6]) -> [__m512; 6] {
        // SAFETY: plain AVX-512F arithmetic; callers are avx512f functions.
        unsafe {
            let four = _mm512_set1_ps(4.0);
            let five = _mm512_set1_ps(5.0);
            let two = _mm512_set1_ps(2.0);
            let a = _mm512_fnmadd_ps(four, x[2], x[4]);
            let b = _mm512_fnmadd_ps(four, x[1], x[3]);
            let c = _mm512_sub_ps(x[4], x[2]);
            let d = _mm512_mul_ps(two, _mm512_sub_ps(x[3], x[1]));
            [
                _mm512_fnmadd_ps(five, x[2], _mm512_fmadd_ps(four, x[0], x[4])),
                _mm512_add_ps(a, b),
                _mm512_sub_ps(a, b),
                _mm512_add_ps(c, d),
                _mm512_sub_ps(c, d),
                _mm512_fnmadd_ps(five, x[3], _mm512_fmadd_ps(four, x[1], x[5])),
            ]
        }
    }

    #[inline(always)]
    pub(super) unsafe fn at6v(m: [__m512; 6]) -> [__m512; 4] {
        // SAFETY: plain AVX-512F arithmetic; callers are avx512f functions.
        unsafe {
            let s12 = _mm512_add_ps(m[1], m[2]);
            let d12 = _mm512_sub_ps(m[1], m[2]);
            let s34 = _mm512_add_ps(m[3], m[4]);
            let d34 = _mm512_sub_ps(m[3], m[4]);
            [
                _mm512_add_ps(_mm512_add_ps(m[0], s12), s34),
                _mm512_fmadd_ps(_mm512_set1_ps(2.0), d34, d12),
                _mm512_fmadd_ps(_mm512_set1_ps(4.0), s34, s12),
                _mm512_add_ps(_mm512_fmadd_ps(_mm512_set1_ps(8.0), d34, d12), m[5]),
            ]
        }
    }
}

/// Two passes per channel: every padded input row is split into tile columns and transformed
/// horizontally once (rows shared by two tile rows are not redone) into a small L1 buffer, then
/// each tile row's six buffered rows are combined vertically and stored to V. Keeping the passes
/// apart keeps the live values within the 32 vector registers.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn input_transform_avx512(geo: &TileGeom, cin: usize, band: &[f32], v: &mut [f32]) {
    use simd::*;
    let ix = idx();
    let (tw, ldv, pitch) = (geo.tw, geo.ldv, geo.pitch);
    let twr = tw.next_multiple_of(16);
    let rows = 4 * geo.t_rows + 2;
    let mut hb = vec![0f32; rows * 6 * twr];
    let hp = hb.as_mut_ptr();
    let vp = v.as_mut_ptr();
    for ci in 0..cin {
        let plane = band[ci * geo.band_h * pitch..].as_ptr();
        // SAFETY: rows < band_h; reads 4*tx0 .. 4*tx0+68 < pitch; hb holds rows x 6 x twr.
        unsafe {
            for y in 0..rows {
                let mut tx0 = 0;
                while tx0 < tw {
                    let h = bt6v(deinterleave6(plane.add(y * pitch + 4 * tx0), &ix));
                    for (k, &hk) in h.iter().enumerate() {
                        _mm512_storeu_ps(hp.add((y * 6 + k) * twr + tx0), hk);
                    }
                    tx0 += 16;
                }
            }
        }
        for tyl in 0..geo.t_rows {
            let mut tx0 = 0;
            while tx0 < tw {
                let lanes = 16.min(tw - tx0);
                let mask: u16 = if lanes == 16 {
                    0xffff
                } else {
                    (1u16 << lanes) - 1
                };
                let t0 = tyl * tw + tx0;
                // SAFETY: hb rows 4*tyl .. 4*tyl+6 < rows. Stores go to V[e][ci][t0 .. t0+lanes]
                // with t0 + lanes <= rows*tw < ldv.
                unsafe {
                    for k in 0..6 {
                        let at =
                            |r: usize| _mm512_loadu_ps(hp.add(((4 * tyl + r) * 6 + k) * twr + tx0));
                        let col = bt6v([at(0), at(1), at(2), at(3), at(4), at(5)]);
                        for (i, &val) in col.iter().enumerate() {
                            _mm512_mask_storeu_ps(
                                vp.add(((i * 6 + k) * cin + ci) * ldv + t0),
                                mask,
                                val,
                            );
                        }
                    }
                }
                tx0 += 16;
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f")]
unsafe fn output_transform_avx512(
    geo: &TileGeom,
    g: &Geom,
    cout: usize,
    m: &[f32],
    ty0: usize,
    bias: Option<&[f32]>,
    relu: bool,
    y: *mut f32,
) {
    use simd::*;
    let ix = idx();
    let (tw, ldv) = (geo.tw, geo.ldv);
    let mp = m.as_ptr();
    let zero = _mm512_setzero_ps();
    for co in 0..cout {
        let b = _mm512_set1_ps(bias.map_or(0.0, |b| b[co]));
        for tyl in 0..geo.t_rows {
            let oy_base = 4 * (ty0 + tyl);
            let mut tx0 = 0;
            while tx0 < tw {
                let t0 = tyl * tw + tx0;
                // SAFETY: M reads t0 .. t0+16 <= rows*tw + 16 <= ldv per row; output writes are
                // masked to columns < wo and rows < ho, inside this band's rows.
                unsafe {
                    let mut mv = [zero; 36];
                    for (e, x) in mv.iter_mut().enumerate() {
                        *x = _mm512_loadu_ps(mp.add((e * cout + co) * ldv + t0));
                    }
                    let mut o = [[zero; 6]; 4];
                    for k in 0..6 {
                        let col = at6v([
                            mv[k],
                            mv[6 + k],
                            mv[12 + k],
                            mv[18 + k],
                            mv[24 + k],
                            mv[30 + k],
                        ]);
                        for i in 0..4 {
                            o[i][k] = col[i];
                        }
                    }
                    let col0 = 4 * tx0;
                    for (i, oi) in o.iter().enumerate() {
                        let oy = oy_base + i;
                        if oy >= g.ho {
                            break;
                        }
                        let mut r = at6v(*oi);
                        for x in r.iter_mut() {
                            *x = _mm512_add_ps(*x, b);
                            if relu {
                                *x = _mm512_max_ps(zero, *x);
                            }
                        }
                        let lo01 = _mm512_permutex2var_ps(r[0], ix.zip_lo, r[1]);
                        let hi01 = _mm512_permutex2var_ps(r[0], ix.zip_hi, r[1]);
                        let lo23 = _mm512_permutex2var_ps(r[2], ix.zip_lo, r[3]);
                        let hi23 = _mm512_permutex2var_ps(r[2], ix.zip_hi, r[3]);
                        let outv = [
                            _mm512_permutex2var_ps(lo01, ix.quad0, lo23),
                            _mm512_permutex2var_ps(lo01, ix.quad1, lo23),
                            _mm512_permutex2var_ps(hi01, ix.quad0, hi23),
                            _mm512_permutex2var_ps(hi01, ix.quad1, hi23),
                        ];
                        let row = y.add((co * g.ho + oy) * g.wo);
                        for (q, &val) in outv.iter().enumerate() {
                            let c0 = col0 + 16 * q;
                            if c0 >= g.wo {
                                break;
                            }
                            let valid = (g.wo - c0).min(16);
                            let mask: u16 = if valid == 16 {
                                0xffff
                            } else {
                                (1u16 << valid) - 1
                            };
                            _mm512_mask_storeu_ps(row.add(c0), mask, val);
                        }
                    }
                }
                tx0 += 16;
            }
        }
    }
}
