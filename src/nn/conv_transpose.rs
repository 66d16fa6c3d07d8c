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
use super::gemm::{Finish, KC, PackedA, gemm_block, gemm_parallel};
use super::kernel::{Isa, relu1};
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
    pub fn new(weight: &Tensor, bias: Option<&[f32]>, params: Conv2dParams) -> Result<Self, NnError> {
        Self::with_isa(weight, bias, params, Isa::detect())
    }

    /// As [`ConvTranspose2d::new`] with an explicit instruction set (for tests).
    pub fn with_isa(weight: &Tensor, bias: Option<&[f32]>, params: Conv2dParams, isa: Isa) -> Result<Self, NnError> {
        const OP: &str = "conv_transpose2d";
        let [cin, cout, kh, kw] = match weight.shape[..] {
            [a, b, c, d] => [a, b, c, d],
            _ => return Err(shape_err(OP, "weight", "[Cin, Cout, kH, kW]", &weight.shape)),
        };
        if kh == 0 || kw == 0 || params.stride == 0 {
            return Err(NnError::Invalid {
                op: OP,
                msg: format!("kernel {kh}x{kw} with stride {} is not a convolution", params.stride),
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
        Ok(self.forward_sized(&input.data, h, w, ho, wo))
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
        self.run(&input.data, h, w, ho, wo, &mut out.data);
        Ok(())
    }

    /// Forward pass with an explicit output size (`out_hw` plus up to `stride - 1` extra rows
    /// and columns, PyTorch's `output_padding`); used for the conv VJP.
    pub(crate) fn forward_sized(&self, x: &[f32], h: usize, w: usize, ho: usize, wo: usize) -> Tensor {
        let mut y = vec![0f32; self.cout * ho * wo];
        self.run(x, h, w, ho, wo, &mut y);
        Tensor {
            shape: vec![self.cout, ho, wo],
            data: y,
        }
    }

    /// Computes the output into `y` (`cout * ho * wo` values; any prior contents are ignored).
    fn run(&self, x: &[f32], h: usize, w: usize, ho: usize, wo: usize, y: &mut [f32]) {
        let (s, p) = (self.params.stride, self.params.padding);
        let bias = self.bias.as_deref();
        let relu = self.params.relu;
        let (oh, ow) = self.out_hw(h, w).unwrap_or((0, 0));
        let exact = oh == ho && ow == wo;
        if exact && p == 0 && s == 1 && self.kh == 1 && self.kw == 1 {
            let offs: Vec<isize> = (0..self.cin).map(|c| (c * h * w) as isize).collect();
            let fin = Finish {
                accumulate: false,
                bias,
                relu,
            };
            gemm_parallel(self.isa, &self.packed, x.as_ptr(), &offs, h * w, y, h * w, fin);
        } else if exact && p == 0 && self.kh == s && self.kw == s {
            self.shuffle_path(x, h, w, y);
        } else {
            y.par_chunks_mut(1 << 16).for_each(|c| c.fill(0.0));
            self.col2im_path(x, h, w, ho, wo, y);
        }
    }

    /// kernel == stride, no padding: bands of input rows, GEMM, pixel shuffle into the output.
    fn shuffle_path(&self, x: &[f32], h: usize, w: usize, y: &mut [f32]) {
        let s = self.params.stride;
        let kt = self.cout * s * s;
        let (ho, wo) = (h * s, w * s);
        let threads = rayon::current_num_threads().max(1);
        let mut rows = 512usize.div_ceil(w).clamp(1, h);
        while rows > 1 && h.div_ceil(rows) < 4 * threads {
            rows = rows.div_ceil(2);
        }
        let bands = h.div_ceil(rows);
        let ldc = rows * w;
        let bias = self.bias.as_deref();
        let relu = self.params.relu;
        let yp = SendPtr(y.as_mut_ptr());
        let offs: Vec<isize> = (0..self.cin).map(|c| (c * h * w) as isize).collect();
        (0..bands).into_par_iter().for_each(|bi| {
            let yp = yp;
            let iy0 = bi * rows;
            let r = rows.min(h - iy0);
            with_scratch(kt * ldc, |cblk| {
                // SAFETY: B rows ci*h*w + iy0*w .. + r*w lie in x; cblk holds kt x ldc.
                unsafe {
                    gemm_block(
                        self.isa,
                        &self.packed,
                        x[iy0 * w..].as_ptr(),
                        &offs,
                        r * w,
                        cblk.as_mut_ptr(),
                        ldc,
                        Finish::default(),
                        KC,
                    );
                }
                for co in 0..self.cout {
                    let b = bias.map_or(0.0, |b| b[co]);
                    for ky in 0..s {
                        for il in 0..r {
                            let oy = (iy0 + il) * s + ky;
                            // SAFETY: band bi owns output rows iy0*s .. (iy0+r)*s.
                            let dst = unsafe { std::slice::from_raw_parts_mut(yp.0.add((co * ho + oy) * wo), wo) };
                            let src = |kx: usize| &cblk[((co * s + ky) * s + kx) * ldc + il * w..][..w];
                            match s {
                                2 => shuffle_row::<2>([src(0), src(1)], dst, b, relu),
                                4 => shuffle_row::<4>([src(0), src(1), src(2), src(3)], dst, b, relu),
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
            });
        });
    }

    /// General shapes: GEMM per band of input rows, then col2im-add (even bands, odd bands).
    fn col2im_path(&self, x: &[f32], h: usize, w: usize, ho: usize, wo: usize, y: &mut [f32]) {
        let (s, p) = (self.params.stride, self.params.padding);
        // The conv whose input-gradient this is: input ho x wo with cout channels.
        let g = Geom::new("conv_transpose2d", self.cout, ho, wo, self.cin, self.kh, self.kw, s, p)
            .expect("the output size was derived from this geometry");
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
        let offs: Vec<isize> = (0..self.cin).map(|c| (c * h * w) as isize).collect();
        let ylen = y.len();
        for parity in 0..2 {
            (0..bands).into_par_iter().filter(|b| b % 2 == parity).for_each(|bi| {
                let yp = yp;
                let iy0 = bi * rows;
                let r = rows.min(h - iy0);
                with_scratch(kt * ldc, |cblk| {
                    // SAFETY: as in the shuffle path.
                    unsafe {
                        gemm_block(
                            self.isa,
                            &self.packed,
                            x[iy0 * w..].as_ptr(),
                            &offs,
                            r * w,
                            cblk.as_mut_ptr(),
                            ldc,
                            Finish::default(),
                            KC,
                        );
                    }
                    // SAFETY: bands of one parity add into disjoint output rows (rows*s >= kh).
                    let out = unsafe { std::slice::from_raw_parts_mut(yp.0, ylen) };
                    col2im_add(&g, cblk, ldc, iy0, r, out);
                });
            });
        }
        let bias = self.bias.as_deref();
        let relu = self.params.relu;
        if bias.is_some() || relu {
            y.par_chunks_mut(ho * wo).enumerate().for_each(|(co, plane)| {
                let b = bias.map_or(0.0, |b| b[co]);
                for v in plane {
                    let t = *v + b;
                    *v = if relu { relu1(t) } else { t };
                }
            });
        }
    }
}

/// `dst[ix * S + kx] = relu?(src[kx][ix] + b)`.
#[inline]
fn shuffle_row<const S: usize>(src: [&[f32]; S], dst: &mut [f32], b: f32, relu: bool) {
    let w = src[0].len();
    let dst = &mut dst[..w * S];
    for (ix, d) in dst.chunks_exact_mut(S).enumerate() {
        for kx in 0..S {
            let t = src[kx][ix] + b;
            d[kx] = if relu { relu1(t) } else { t };
        }
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
