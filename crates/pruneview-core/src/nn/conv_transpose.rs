//! Transposed 2-D convolution (PyTorch `ConvTranspose2d`, weight `[Cin, Cout, kH, kW]`):
//! `y[co][iy*s + ky - p][ix*s + kx - p] += w[ci][co][ky][kx] * x[ci][iy][ix]`.
//!
//! As a GEMM: `cols[(co,ky,kx)][pixel] = W^T[(co,ky,kx)][ci] * x[ci][pixel]`, then every column
//! is added into the output (col2im). OpenPCDet's upsampling deblocks have kernel == stride
//! and no padding, so the output patches do not overlap: col2im becomes a "pixel shuffle" that
//! each rayon job (a band of input rows) writes straight to its own output rows, fused with
//! bias and ReLU. A 1x1 stride-1 transposed conv is a plain GEMM into the output. Other
//! shapes accumulate bands in two passes (even bands, then odd ones) so that parallel bands
//! never add into the same output rows.

use rayon::prelude::*;

use super::conv::{Conv2dParams, Geom, col2im_add};
use super::gemm::{Finish, KC, PackedA, gemm_block, gemm_panels, gemm_parallel, padded_ld};
use super::kernel::{Isa, MR, relu1};
use super::scratch::{SendPtr, with_scratch};
use super::{NnError, Tensor, shape_err};

/// A transposed-convolution layer with its weights packed for the micro-kernels.
#[derive(Clone, Debug)]
pub struct ConvTranspose2d {
    cin: usize,
    cout: usize,
    kh: usize,
    kw: usize,
    params: Conv2dParams,
    isa: Isa,
    bias: Option<Vec<f32>>,
    packed: PackedA,
}

impl ConvTranspose2d {
    /// Prepares a layer: `weight` `[Cin, Cout, kH, kW]`, `bias` `Cout` values; `params.padding`
    /// crops the output like PyTorch's `padding` (no `output_padding`).
    pub fn new(
        weight: &Tensor,
        bias: Option<&[f32]>,
        params: Conv2dParams,
    ) -> Result<Self, NnError> {
        Self::with_isa(weight, bias, params, Isa::detect())
    }

    /// As [`ConvTranspose2d::new`] with an explicit instruction set (for tests).
    pub fn with_isa(
        weight: &Tensor,
        bias: Option<&[f32]>,
        params: Conv2dParams,
        isa: Isa,
    ) -> Result<Self, NnError> {
        const OP: &str = "conv_transpose2d";
        let [cin, cout, kh, kw] = match weight.shape[..] {
            [a, b, c, d] => [a, b, c, d],
            _ => {
                return Err(shape_err(
                    OP,
                    "weight",
                    "[Cin, Cout, kH, kW]",
                    &weight.shape,
                ));
            }
        };
        if kh == 0 || kw == 0 || params.stride == 0 {
            return Err(NnError::Invalid {
                op: OP,
                msg: format!(
                    "kernel {kh}x{kw} with stride {} is not a convolution",
                    params.stride
                ),
            });
        }
        if let Some(b) = bias
            && b.len() != cout
        {
            return Err(shape_err(OP, "bias", format!("[{cout}]"), &[b.len()]));
        }
        let kt = cout * kh * kw;
        let packed = PackedA::from_strided(kt, cin, &weight.data, 1, kt);
        Ok(ConvTranspose2d {
            cin,
            cout,
            kh,
            kw,
            params,
            isa,
            bias: bias.map(<[f32]>::to_vec),
            packed,
        })
    }

    /// Output `(H, W)` for an `H x W` input: `(H - 1) * stride - 2 * padding + kH`.
    pub fn out_hw(&self, h: usize, w: usize) -> Result<(usize, usize), NnError> {
        let (s, p) = (self.params.stride, self.params.padding);
        let ho = ((h.max(1) - 1) * s + self.kh).checked_sub(2 * p);
        let wo = ((w.max(1) - 1) * s + self.kw).checked_sub(2 * p);
        match (ho, wo) {
            (Some(ho), Some(wo)) if ho > 0 && wo > 0 && h > 0 && w > 0 => Ok((ho, wo)),
            _ => Err(NnError::Invalid {
                op: "conv_transpose2d",
                msg: format!("padding {p} crops the whole {h}x{w} output"),
            }),
        }
    }

    /// Runs the layer on a `[Cin, H, W]` map.
    pub fn forward(&self, input: &Tensor) -> Result<Tensor, NnError> {
        let (h, w) = match input.shape[..] {
            [c, h, w] if c == self.cin => (h, w),
            _ => {
                return Err(shape_err(
                    "conv_transpose2d",
                    "input",
                    format!("[{}, H, W]", self.cin),
                    &input.shape,
                ));
            }
        };
        let (ho, wo) = self.out_hw(h, w)?;
        self.forward_sized(&input.data, h, w, ho, wo)
    }

    /// Like [`ConvTranspose2d::forward`], writing into `out` (reshaped; its allocation is
    /// reused when large enough, which saves the page faults of a fresh 27 MB map per call).
    pub fn forward_into(&self, input: &Tensor, out: &mut Tensor) -> Result<(), NnError> {
        let (h, w) = match input.shape[..] {
            [c, h, w] if c == self.cin => (h, w),
            _ => {
                return Err(shape_err(
                    "conv_transpose2d",
                    "input",
                    format!("[{}, H, W]", self.cin),
                    &input.shape,
                ));
            }
        };
        let (ho, wo) = self.out_hw(h, w)?;
        out.shape.clear();
        out.shape.extend_from_slice(&[self.cout, ho, wo]);
        out.data.resize(self.cout * ho * wo, 0.0);
        self.run(&input.data, h, w, ho, wo, &mut out.data)
    }

    /// Forward pass with an explicit output size (`out_hw` plus up to `stride - 1` extra rows
    /// and columns, PyTorch's `output_padding`); used for the conv VJP.
    pub(crate) fn forward_sized(
        &self,
        x: &[f32],
        h: usize,
        w: usize,
        ho: usize,
        wo: usize,
    ) -> Result<Tensor, NnError> {
        let mut y = vec![0f32; self.cout * ho * wo];
        self.run(x, h, w, ho, wo, &mut y)?;
        Ok(Tensor {
            shape: vec![self.cout, ho, wo],
            data: y,
        })
    }

    /// Computes the output into `y` (`cout * ho * wo` values; any prior contents are ignored).
    fn run(
        &self,
        x: &[f32],
        h: usize,
        w: usize,
        ho: usize,
        wo: usize,
        y: &mut [f32],
    ) -> Result<(), NnError> {
        let (s, p) = (self.params.stride, self.params.padding);
        let bias = self.bias.as_deref();
        let relu = self.params.relu;
        let (oh, ow) = self.out_hw(h, w).unwrap_or((0, 0));
        let exact = oh == ho && ow == wo;
        if exact && p == 0 && s == 1 && self.kh == 1 && self.kw == 1 {
            let offs: Vec<isize> = (0..self.cin).map(|c| (c * h * w) as isize).collect();
            let fin = Finish {
                bias,
                relu,
                ..Finish::default()
            };
            gemm_parallel(
                self.isa,
                self.packed.view(),
                x.as_ptr(),
                &offs,
                h * w,
                y,
                h * w,
                fin,
            );
        } else if exact && p == 0 && self.kh == s && self.kw == s {
            self.shuffle_path(x, h, w, y);
        } else {
            y.par_chunks_mut(1 << 16).for_each(|c| c.fill(0.0));
            self.col2im_path(x, h, w, ho, wo, y)?;
        }
        Ok(())
    }

    /// Copies input rows `iy0 .. iy0 + r` of every channel into `xb` (row stride `ldb`), so the
    /// GEMM reads one contiguous block instead of `cin` far-apart ones (see `gemm_parallel`).
    #[allow(clippy::too_many_arguments)]
    fn copy_band(
        &self,
        x: &[f32],
        h: usize,
        w: usize,
        iy0: usize,
        r: usize,
        ldb: usize,
        xb: &mut [f32],
    ) {
        for ci in 0..self.cin {
            xb[ci * ldb..][..r * w].copy_from_slice(&x[(ci * h + iy0) * w..][..r * w]);
        }
    }

    /// kernel == stride, no padding: bands of input rows, GEMM, pixel shuffle into the output.
    fn shuffle_path(&self, x: &[f32], h: usize, w: usize, y: &mut [f32]) {
        let s = self.params.stride;
        let (ho, wo) = (h * s, w * s);
        let threads = rayon::current_num_threads().max(1);
        let mut rows = 512usize.div_ceil(w).clamp(1, h);
        while rows > 1 && h.div_ceil(rows) < 4 * threads {
            rows = rows.div_ceil(2);
        }
        let bands = h.div_ceil(rows);
        let ldc = rows * w;
        // Output channels per GEMM: their s*s*ldc results (~256 KiB) stay in L2 until shuffled.
        // A group must cover whole MR-row panels of the packed W^T (rows ordered co, ky, kx).
        let unit = MR / gcd(MR, s * s);
        let group = ((256 << 10) / (4 * s * s * ldc))
            .max(1)
            .next_multiple_of(unit)
            .min(self.cout.next_multiple_of(unit));
        let g_rows = group * s * s;
        let panels_total = self.packed.view().panels();
        let bias = self.bias.as_deref();
        let relu = self.params.relu;
        let yp = SendPtr(y.as_mut_ptr());
        let ldb = padded_ld(ldc);
        let offs: Vec<isize> = (0..self.cin).map(|c| (c * ldb) as isize).collect();
        (0..bands).into_par_iter().for_each(|bi| {
            let iy0 = bi * rows;
            let r = rows.min(h - iy0);
            with_scratch(g_rows * ldc + self.cin * ldb, |buf| {
                let (cblk, xb) = buf.split_at_mut(g_rows * ldc);
                self.copy_band(x, h, w, iy0, r, ldb, xb);
                for co0 in (0..self.cout).step_by(group) {
                    let p0 = co0 * s * s / MR;
                    let p1 = ((co0 + group) * s * s / MR).min(panels_total);
                    // SAFETY: B rows ci*ldb .. + r*w lie in xb; cblk holds the group's rows.
                    unsafe {
                        gemm_panels(
                            self.isa,
                            self.packed.view(),
                            p0..p1,
                            xb.as_ptr(),
                            &offs,
                            r * w,
                            cblk.as_mut_ptr(),
                            ldc,
                            Finish::default(),
                            KC,
                        );
                    }
                    for co in co0..(co0 + group).min(self.cout) {
                        let b = bias.map_or(0.0, |b| b[co]);
                        let cl = co - co0;
                        for il in 0..r {
                            for ky in 0..s {
                                let oy = (iy0 + il) * s + ky;
                                // SAFETY: band bi owns output rows iy0*s .. (iy0+r)*s.
                                let dst = unsafe {
                                    std::slice::from_raw_parts_mut(
                                        yp.get().add((co * ho + oy) * wo),
                                        wo,
                                    )
                                };
                                let src = |kx: usize| {
                                    &cblk[((cl * s + ky) * s + kx) * ldc + il * w..][..w]
                                };
                                match s {
                                    2 => shuffle_row::<2>(self.isa, [src(0), src(1)], dst, b, relu),
                                    4 => shuffle_row::<4>(
                                        self.isa,
                                        [src(0), src(1), src(2), src(3)],
                                        dst,
                                        b,
                                        relu,
                                    ),
                                    _ => {
                                        for kx in 0..s {
                                            for (ix, &v) in src(kx).iter().enumerate() {
                                                let t = v + b;
                                                dst[ix * s + kx] = if relu { relu1(t) } else { t };
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            });
        });
    }

    /// General shapes: GEMM per band of input rows, then col2im-add (even bands, odd bands).
    fn col2im_path(
        &self,
        x: &[f32],
        h: usize,
        w: usize,
        ho: usize,
        wo: usize,
        y: &mut [f32],
    ) -> Result<(), NnError> {
        let (s, p) = (self.params.stride, self.params.padding);
        // The conv whose input-gradient this is: input ho x wo with cout channels.
        let g = Geom::new(
            "conv_transpose2d",
            self.cout,
            ho,
            wo,
            self.cin,
            self.kh,
            self.kw,
            s,
            p,
        )?;
        debug_assert_eq!((g.ho, g.wo), (h, w));
        let kt = self.cout * self.kh * self.kw;
        let threads = rayon::current_num_threads().max(1);
        // Bands two apart must not touch the same output rows: rows * s >= kh.
        let min_rows = self.kh.div_ceil(s).max(1);
        let mut rows = 512usize.div_ceil(w).clamp(min_rows, h.max(min_rows));
        while rows > min_rows && h.div_ceil(rows) < 4 * threads {
            rows = rows.div_ceil(2).max(min_rows);
        }
        let bands = h.div_ceil(rows);
        let ldc = rows * w;
        let yp = SendPtr(y.as_mut_ptr());
        let ldb = padded_ld(ldc);
        let offs: Vec<isize> = (0..self.cin).map(|c| (c * ldb) as isize).collect();
        let ylen = y.len();
        for parity in 0..2 {
            (0..bands)
                .into_par_iter()
                .filter(|b| b % 2 == parity)
                .for_each(|bi| {
                    let iy0 = bi * rows;
                    let r = rows.min(h - iy0);
                    with_scratch(kt * ldc + self.cin * ldb, |buf| {
                        let (cblk, xb) = buf.split_at_mut(kt * ldc);
                        self.copy_band(x, h, w, iy0, r, ldb, xb);
                        // SAFETY: as in the shuffle path.
                        unsafe {
                            gemm_block(
                                self.isa,
                                self.packed.view(),
                                xb.as_ptr(),
                                &offs,
                                r * w,
                                cblk.as_mut_ptr(),
                                ldc,
                                Finish::default(),
                                KC,
                            );
                        }
                        // SAFETY: bands of one parity add into disjoint output rows (rows*s >= kh).
                        let out = unsafe { std::slice::from_raw_parts_mut(yp.get(), ylen) };
                        col2im_add(&g, cblk, ldc, iy0, r, out);
                    });
                });
        }
        let bias = self.bias.as_deref();
        let relu = self.params.relu;
        if bias.is_some() || relu {
            y.par_chunks_mut(ho * wo)
                .enumerate()
                .for_each(|(co, plane)| {
                    let b = bias.map_or(0.0, |b| b[co]);
                    for v in plane {
                        let t = *v + b;
                        *v = if relu { relu1(t) } else { t };
                    }
                });
        }
        Ok(())
    }
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// `dst[ix * S + kx] = relu?(src[kx][ix] + b)`.
#[inline]
fn shuffle_row<const S: usize>(isa: Isa, src: [&[f32]; S], dst: &mut [f32], b: f32, relu: bool) {
    let w = src[0].len();
    let dst = &mut dst[..w * S];
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Avx512 && (S == 2 || S == 4) {
        // SAFETY: AVX-512 is available; all slices hold w (resp. w * S) floats.
        unsafe { shuffle_row_avx512::<S>(src, dst, b, relu) };
        return;
    }
    let _ = isa;
    for (ix, d) in dst.chunks_exact_mut(S).enumerate() {
        for kx in 0..S {
            let t = src[kx][ix] + b;
            d[kx] = if relu { relu1(t) } else { t };
        }
    }
}

/// AVX-512 interleave of 2 or 4 rows (16 pixels per step, masked tail).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn shuffle_row_avx512<const S: usize>(
    src: [&[f32]; S],
    dst: &mut [f32],
    b: f32,
    relu: bool,
) {
    use std::arch::x86_64::*;
    let mk = |f: &dyn Fn(i32) -> i32| {
        let mut a = [0i32; 16];
        for (i, x) in a.iter_mut().enumerate() {
            *x = f(i as i32);
        }
        // SAFETY: `a` is 16 i32s.
        unsafe { _mm512_loadu_si512(a.as_ptr().cast()) }
    };
    let zip_lo = mk(&|i| if i % 2 == 0 { i / 2 } else { 16 + i / 2 });
    let zip_hi = mk(&|i| if i % 2 == 0 { 8 + i / 2 } else { 24 + i / 2 });
    let quad = |t0: i32| {
        mk(&move |i| {
            let (t, q) = (i / 4 + t0, i % 4);
            if q < 2 { 2 * t + q } else { 16 + 2 * t + q - 2 }
        })
    };
    let (quad0, quad1) = (quad(0), quad(4));
    let w = src[0].len();
    let bv = _mm512_set1_ps(b);
    let zero = _mm512_setzero_ps();
    let dp = dst.as_mut_ptr();
    let mut i = 0;
    while i < w {
        let n = 16.min(w - i);
        let m: u16 = if n == 16 { 0xffff } else { (1u16 << n) - 1 };
        // SAFETY: loads are masked to the n valid pixels; stores to the n * S valid outputs.
        unsafe {
            let mut v = [zero; S];
            for (k, x) in v.iter_mut().enumerate() {
                let mut t = _mm512_add_ps(_mm512_maskz_loadu_ps(m, src[k].as_ptr().add(i)), bv);
                if relu {
                    t = _mm512_max_ps(zero, t);
                }
                *x = t;
            }
            let out: [__m512; 4];
            let nout;
            if S == 2 {
                out = [
                    _mm512_permutex2var_ps(v[0], zip_lo, v[1]),
                    _mm512_permutex2var_ps(v[0], zip_hi, v[1]),
                    zero,
                    zero,
                ];
                nout = 2;
            } else {
                let lo01 = _mm512_permutex2var_ps(v[0], zip_lo, v[1]);
                let hi01 = _mm512_permutex2var_ps(v[0], zip_hi, v[1]);
                let lo23 = _mm512_permutex2var_ps(v[2], zip_lo, v[3]);
                let hi23 = _mm512_permutex2var_ps(v[2], zip_hi, v[3]);
                out = [
                    _mm512_permutex2var_ps(lo01, quad0, lo23),
                    _mm512_permutex2var_ps(lo01, quad1, lo23),
                    _mm512_permutex2var_ps(hi01, quad0, hi23),
                    _mm512_permutex2var_ps(hi01, quad1, hi23),
                ];
                nout = 4;
            }
            let total = n * S;
            for (q, &o) in out.iter().enumerate().take(nout) {
                let c0 = 16 * q;
                if c0 >= total {
                    break;
                }
                let valid = (total - c0).min(16);
                let mask: u16 = if valid == 16 {
                    0xffff
                } else {
                    (1u16 << valid) - 1
                };
                _mm512_mask_storeu_ps(dp.add(i * S + c0), mask, o);
            }
        }
        i += 16;
    }
}

/// One-shot transposed convolution: `input` `[Cin, H, W]`, `weight` `[Cin, Cout, kH, kW]`.
pub fn conv_transpose2d(
    input: &Tensor,
    weight: &Tensor,
    bias: Option<&[f32]>,
    params: Conv2dParams,
) -> Result<Tensor, NnError> {
    ConvTranspose2d::new(weight, bias, params)?.forward(input)
}
