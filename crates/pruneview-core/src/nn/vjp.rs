//! Vector-Jacobian products (backward passes) of the layers in this module.
//!
//! The pruning core estimates second-order distortion curves from `g = J^T v` for random
//! probes `v` over the head outputs (DESIGN.md, "Second-order curves"): one backward pass per
//! probe and scan. These functions give, for a layer `y = f(x; W, b)` and an upstream gradient
//! `dy = dL/dy`, the gradients `dL/dx`, `dL/dW` and `dL/db`. They are the gradients of the
//! *linear* layer: a fused ReLU is handled by masking `dy` first with [`relu_vjp_inplace`].
//!
//! How: `dx` of a convolution is the transposed convolution of `dy` with the same weights
//! (and vice versa), so it reuses the fast forward kernels; `dW` contracts `dy` with im2col
//! blocks of the input band by band (rayon over bands, one partial sum per job, then a sum).

use rayon::prelude::*;

use super::conv::{Conv2d, Conv2dParams, ConvAlgo, Geom, channels_last, im2col_pixel_major};
use super::conv_transpose::ConvTranspose2d;
use super::gemm::{Finish, KC, View, gemm_block, matmul, pack_into};
use super::kernel::{Isa, MR};
use super::scratch::with_scratch;
use super::{NnError, Tensor, shape_err};

/// Gradients of a loss with respect to a layer's input, weight and bias.
#[derive(Clone, Debug)]
pub struct Grads {
    /// `dL/dx`, shaped like the input (`None` when not requested).
    pub dx: Option<Tensor>,
    /// `dL/dW`, shaped like the weight.
    pub dw: Tensor,
    /// `dL/db` (one value per output channel; meaningful whether or not the layer has a bias).
    pub db: Vec<f32>,
}

/// `dy *= (y > 0)`: the VJP of a ReLU whose output was `y` (a zero output passes no gradient,
/// as in PyTorch).
pub fn relu_vjp_inplace(dy: &mut [f32], y: &[f32]) {
    assert_eq!(
        dy.len(),
        y.len(),
        "relu_vjp_inplace: dy and y differ in length"
    );
    dy.par_chunks_mut(1 << 16)
        .zip(y.par_chunks(1 << 16))
        .for_each(|(d, y)| {
            for (d, &y) in d.iter_mut().zip(y) {
                if y <= 0.0 || y.is_nan() {
                    *d = 0.0;
                }
            }
        });
}

fn dims3(
    op: &'static str,
    what: &'static str,
    t: &Tensor,
    c: usize,
) -> Result<(usize, usize), NnError> {
    match t.shape[..] {
        [cc, h, w] if cc == c => Ok((h, w)),
        _ => Err(shape_err(op, what, format!("[{c}, H, W]"), &t.shape)),
    }
}

fn dims4(op: &'static str, w: &Tensor) -> Result<[usize; 4], NnError> {
    match w.shape[..] {
        [a, b, c, d] => Ok([a, b, c, d]),
        _ => Err(shape_err(op, "weight", "a 4-D tensor", &w.shape)),
    }
}

/// The input-gradient operator of a conv or transposed conv, built once per weight and
/// reused for every backward pass (building it costs as much as running it for 256-channel
/// layers: the weight is flipped and re-packed for the Winograd or GEMM kernels).
#[derive(Clone, Debug)]
pub struct ConvVjp {
    weight: Tensor,
    params: Conv2dParams,
    transposed: bool,
    /// conv: a conv with the flipped, transposed kernel (stride 1) or a transposed conv;
    /// transposed conv: the conv with the same weight.
    dx: DxOp,
}

#[derive(Clone, Debug)]
enum DxOp {
    Conv(Conv2d),
    Transposed(ConvTranspose2d),
}

impl ConvVjp {
    /// For [`conv2d`](super::conv2d) with `weight` `[Cout, Cin, kH, kW]`.
    pub fn conv(weight: &Tensor, params: Conv2dParams) -> Result<Self, NnError> {
        const OP: &str = "conv2d_vjp";
        let [cout, cin, kh, kw] = dims4(OP, weight)?;
        let isa = Isa::detect();
        let params = Conv2dParams::new(params.stride, params.padding);
        let dx = if params.stride == 1 && kh == kw && params.padding < kh {
            // Stride 1: dx is the "full" correlation of dy with the flipped, transposed
            // kernel, a plain conv with padding k-1-p (Winograd for 3x3 with padding 1).
            let mut flipped = vec![0f32; weight.data.len()];
            for co in 0..cout {
                for ci in 0..cin {
                    for ky in 0..kh {
                        for kx in 0..kw {
                            flipped[((ci * cout + co) * kh + ky) * kw + kx] = weight.data
                                [((co * cin + ci) * kh + (kh - 1 - ky)) * kw + (kw - 1 - kx)];
                        }
                    }
                }
            }
            let wt = Tensor::from_vec(&[cin, cout, kh, kw], flipped);
            DxOp::Conv(Conv2d::with_algo_isa(
                &wt,
                None,
                Conv2dParams::new(1, kh - 1 - params.padding),
                ConvAlgo::Auto,
                isa,
            )?)
        } else {
            // dx = conv_transpose(dy, W): the conv weight [Cout, Cin, k, k] is a transposed-conv
            // weight [Cin_t = Cout, Cout_t = Cin, k, k]. Extra rows the strided conv never read
            // (output_padding) get zero gradient.
            DxOp::Transposed(ConvTranspose2d::with_isa(weight, None, params, isa)?)
        };
        Ok(ConvVjp {
            weight: weight.clone(),
            params,
            transposed: false,
            dx,
        })
    }

    /// For [`conv_transpose2d`](super::conv_transpose2d) with `weight` `[Cin, Cout, kH, kW]`.
    pub fn conv_transpose(weight: &Tensor, params: Conv2dParams) -> Result<Self, NnError> {
        dims4("conv_transpose2d_vjp", weight)?;
        let params = Conv2dParams::new(params.stride, params.padding);
        Ok(ConvVjp {
            weight: weight.clone(),
            params,
            transposed: true,
            dx: DxOp::Conv(Conv2d::with_algo(weight, None, params, ConvAlgo::Auto)?),
        })
    }

    /// The gradients for `input` and `dy` (`params.relu` is ignored; see the module docs).
    pub fn apply(&self, input: &Tensor, dy: &Tensor, need_dx: bool) -> Result<Grads, NnError> {
        if self.transposed {
            self.apply_transposed(input, dy, need_dx)
        } else {
            self.apply_conv(input, dy, need_dx)
        }
    }

    fn apply_conv(&self, input: &Tensor, dy: &Tensor, need_dx: bool) -> Result<Grads, NnError> {
        const OP: &str = "conv2d_vjp";
        let weight = &self.weight;
        let [cout, cin, kh, kw] = dims4(OP, weight)?;
        let (h, w) = dims3(OP, "input", input, cin)?;
        let (s, p) = (self.params.stride, self.params.padding);
        let g = Geom::new(OP, cin, h, w, cout, kh, kw, s, p)?;
        let (ho, wo) = dims3(OP, "dy", dy, cout)?;
        if (ho, wo) != (g.ho, g.wo) {
            return Err(shape_err(
                OP,
                "dy",
                format!("[{cout}, {}, {}]", g.ho, g.wo),
                &dy.shape,
            ));
        }
        let dx = match (need_dx, &self.dx) {
            (false, _) => None,
            (true, DxOp::Conv(c)) => Some(c.forward(dy)?),
            (true, DxOp::Transposed(t)) => Some(t.forward_sized(&dy.data, ho, wo, h, w)?),
        };
        Ok(Grads {
            dx,
            dw: Tensor::from_vec(&weight.shape, conv_dw(&g, &input.data, &dy.data)),
            db: channel_sums(&dy.data, cout),
        })
    }

    fn apply_transposed(
        &self,
        input: &Tensor,
        dy: &Tensor,
        need_dx: bool,
    ) -> Result<Grads, NnError> {
        const OP: &str = "conv_transpose2d_vjp";
        let weight = &self.weight;
        let [cin, cout, kh, kw] = dims4(OP, weight)?;
        let (h, w) = dims3(OP, "input", input, cin)?;
        let (s, p) = (self.params.stride, self.params.padding);
        // The transposed conv is the input-VJP of the conv g: input = its output (cout x ho x
        // wo), output = its input (cin x h x w), weight [cin, cout, k, k] read as a conv weight.
        let out = |n: usize, k: usize| ((n.max(1) - 1) * s + k).checked_sub(2 * p);
        let (Some(ho), Some(wo)) = (out(h, kh), out(w, kw)) else {
            return Err(NnError::Invalid {
                op: OP,
                msg: format!("padding {p} crops the whole {h}x{w} output"),
            });
        };
        let (dh, dw_) = dims3(OP, "dy", dy, cout)?;
        if (dh, dw_) != (ho, wo) {
            return Err(shape_err(
                OP,
                "dy",
                format!("[{cout}, {ho}, {wo}]"),
                &dy.shape,
            ));
        }
        let g = Geom::new(OP, cout, ho, wo, cin, kh, kw, s, p)?;
        debug_assert_eq!((g.ho, g.wo), (h, w));
        let dx = match (need_dx, &self.dx) {
            (true, DxOp::Conv(c)) => Some(c.forward(dy)?),
            _ => None,
        };
        // dW[ci][co][ky][kx] = sum x[ci][iy][ix] * dy[co][iy*s+ky-p][ix*s+kx-p]: the conv-weight
        // gradient of g with "input" dy and "output gradient" x.
        Ok(Grads {
            dx,
            dw: Tensor::from_vec(&weight.shape, conv_dw(&g, &dy.data, &input.data)),
            db: channel_sums(&dy.data, cout),
        })
    }
}

/// VJP of [`conv2d`](super::conv2d) (`params.relu` is ignored; see the module docs):
/// `input` `[Cin, H, W]`, `weight` `[Cout, Cin, kH, kW]`, `dy` `[Cout, Ho, Wo]`. Repeated
/// calls with one weight should build a [`ConvVjp`] once instead.
pub fn conv2d_vjp(
    input: &Tensor,
    weight: &Tensor,
    params: Conv2dParams,
    dy: &Tensor,
    need_dx: bool,
) -> Result<Grads, NnError> {
    ConvVjp::conv(weight, params)?.apply(input, dy, need_dx)
}

/// VJP of [`conv_transpose2d`](super::conv_transpose2d) (`params.relu` ignored): `input`
/// `[Cin, H, W]`, `weight` `[Cin, Cout, kH, kW]`, `dy` `[Cout, Ho, Wo]`.
pub fn conv_transpose2d_vjp(
    input: &Tensor,
    weight: &Tensor,
    params: Conv2dParams,
    dy: &Tensor,
    need_dx: bool,
) -> Result<Grads, NnError> {
    ConvVjp::conv_transpose(weight, params)?.apply(input, dy, need_dx)
}

/// VJP of [`linear`](super::linear): `x` `[..., in]`, `weight` `[out, in]`, `dy` `[..., out]`.
pub fn linear_vjp(
    x: &Tensor,
    weight: &Tensor,
    dy: &Tensor,
    need_dx: bool,
) -> Result<Grads, NnError> {
    const OP: &str = "linear_vjp";
    let (out_f, in_f) = match weight.shape[..] {
        [o, i] => (o, i),
        _ => return Err(shape_err(OP, "weight", "[out, in]", &weight.shape)),
    };
    let rows = match x.shape.split_last() {
        Some((&last, lead)) if last == in_f => lead.iter().product::<usize>(),
        _ => return Err(shape_err(OP, "input", format!("[..., {in_f}]"), &x.shape)),
    };
    let mut want = x.shape.clone();
    if let Some(l) = want.last_mut() {
        *l = out_f;
    }
    if dy.shape != want {
        return Err(shape_err(OP, "dy", format!("{want:?}"), &dy.shape));
    }
    let isa = Isa::detect();
    let dx = need_dx.then(|| {
        let mut d = vec![0f32; rows * in_f];
        matmul(
            isa,
            rows,
            in_f,
            out_f,
            View::row_major(&dy.data, out_f),
            View::row_major(&weight.data, in_f),
            &mut d,
            Finish {
                accumulate: false,
                bias: None,
                col_bias: None,
                relu: false,
            },
        );
        Tensor::from_vec(&x.shape, d)
    });
    // dW = dy^T x over row chunks in parallel (K = rows can be millions of points). Each
    // chunk's product is summed into f64 partials: these sums cancel heavily, and summing
    // hundreds of chunks in f32 would lose ~1e-3 of the result.
    const CHUNK: usize = 2048;
    let dw64 = (0..rows.div_ceil(CHUNK))
        .into_par_iter()
        .fold(
            || (vec![0f64; out_f * in_f], vec![0f32; out_f * in_f]),
            |(mut acc, mut part), ci| {
                let r0 = ci * CHUNK;
                let r = CHUNK.min(rows - r0);
                let a = View::transposed(&dy.data[r0 * out_f..][..r * out_f], out_f);
                let b = View::row_major(&x.data[r0 * in_f..][..r * in_f], in_f);
                crate::nn::gemm::matmul_serial(
                    isa,
                    out_f,
                    in_f,
                    r,
                    a,
                    b,
                    &mut part,
                    Finish {
                        accumulate: false,
                        bias: None,
                        col_bias: None,
                        relu: false,
                    },
                );
                for (s, p) in acc.iter_mut().zip(&part) {
                    *s += *p as f64;
                }
                (acc, part)
            },
        )
        .map(|(acc, _)| acc)
        .reduce(|| vec![0f64; out_f * in_f], add_vec);
    let dwv: Vec<f32> = dw64.iter().map(|&v| v as f32).collect();
    let mut db64 = vec![0f64; out_f];
    for row in dy.data.chunks_exact(out_f.max(1)) {
        for (d, v) in db64.iter_mut().zip(row) {
            *d += *v as f64;
        }
    }
    let db = db64.iter().map(|&v| v as f32).collect();
    Ok(Grads {
        dx,
        dw: Tensor::from_vec(&weight.shape, dwv),
        db,
    })
}

fn add_vec(mut a: Vec<f64>, b: Vec<f64>) -> Vec<f64> {
    for (x, y) in a.iter_mut().zip(&b) {
        *x += y;
    }
    a
}

/// Per-channel sums of a `[C, ...]` buffer (accumulated in f64).
fn channel_sums(dy: &[f32], c: usize) -> Vec<f32> {
    if c == 0 {
        return Vec::new();
    }
    let per = dy.len() / c;
    dy.par_chunks(per.max(1))
        .take(c)
        .map(|p| p.iter().map(|&v| v as f64).sum::<f64>() as f32)
        .collect()
}

/// `dW[co][(ci,ky,kx)] = sum_pixels dy[co][pixel] * im2col(x)[(ci,ky,kx)][pixel]` for the conv
/// `g`, band by band (rayon over bands of ~2048 output pixels), on our GEMM kernels.
///
/// The im2col operand is built pixel-major, `[pixel][(ky,kx,ci)]`, from runs of `cin`
/// contiguous values of an input transposed once to `[pixel][channel]`: that is the layout
/// the kernels stream B in, so only the small `dy` band is packed. (Channel-major im2col fed
/// to the `gemm` crate made it gather every packed element with a stride: about a fifth of a
/// distillation step.) Each band's product is added into f64 totals: a weight's gradient sums
/// tens of thousands of pixels that largely cancel.
pub(crate) fn conv_dw(g: &Geom, x: &[f32], dy: &[f32]) -> Vec<f32> {
    let (cin, cout, taps) = (g.cin, g.cout, g.kh * g.kw);
    let k = g.kdim();
    let npix = g.ho * g.wo;
    if k == 0 || cout == 0 || npix == 0 {
        return vec![0.0; cout * k];
    }
    let isa = Isa::detect();
    let x_hwc = channels_last(x, cin, g.h * g.w);
    // Bands of whole output rows whose im2col block (~1 MiB) stays in L2 while it is used.
    let rows = ((1 << 18) / (k * g.wo)).clamp(1, g.ho);
    let bands = g.ho.div_ceil(rows);
    // Row `p` of a band's im2col block starts at `p * k`.
    let offs: Vec<isize> = (0..rows * g.wo).map(|p| (p * k) as isize).collect();
    let packed_len = cout.div_ceil(MR) * MR;
    // total[co * k + tap * cin + ci], summed over bands.
    let total = (0..bands)
        .into_par_iter()
        .fold(
            || (vec![0f64; cout * k], vec![0f32; cout * k]),
            |(mut total, mut acc), bi| {
                let oy0 = bi * rows;
                let r = rows.min(g.ho - oy0);
                let n = r * g.wo;
                with_scratch(n * (k + packed_len), |buf| {
                    let (cols, packed) = buf.split_at_mut(n * k);
                    im2col_pixel_major(g, &x_hwc, oy0, r, cols);
                    let a = pack_into(cout, n, &dy[oy0 * g.wo..], npix, 1, packed);
                    // SAFETY: B row p (p < n) is cols[p * k .. p * k + k]; acc is cout x k.
                    unsafe {
                        gemm_block(
                            isa,
                            a,
                            cols.as_ptr(),
                            &offs[..n],
                            k,
                            acc.as_mut_ptr(),
                            k,
                            Finish::default(),
                            KC,
                        );
                    }
                });
                for (t, a) in total.iter_mut().zip(&acc) {
                    *t += *a as f64;
                }
                (total, acc)
            },
        )
        .map(|(total, _)| total)
        .reduce(|| vec![0f64; cout * k], add_vec);
    // From (tap, ci) to the weight's (ci, ky, kx) order.
    let mut dw = vec![0f32; cout * k];
    for (out, row) in dw.chunks_exact_mut(k).zip(total.chunks_exact(k)) {
        for tap in 0..taps {
            for ci in 0..cin {
                out[ci * taps + tap] = row[tap * cin + ci] as f32;
            }
        }
    }
    dw
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The weight gradient agrees with a naive one (strides 1, 2 and a 4x4 stride-4 kernel).
    #[test]
    fn conv_dw_matches_naive() {
        let mut seed = 7u64;
        let mut rnd = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((seed >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        };
        for &(cin, cout, h, w, k, s, p) in &[
            (5, 7, 23, 37, 3, 1, 1),
            (4, 3, 10, 13, 1, 1, 0),
            (3, 5, 11, 9, 3, 1, 0),
            (2, 3, 70, 40, 3, 1, 1),
            (3, 9, 20, 19, 3, 2, 1),
            (6, 5, 9, 12, 4, 4, 0),
        ] {
            let g = Geom::new("test", cin, h, w, cout, k, k, s, p).unwrap();
            let x: Vec<f32> = (0..cin * h * w).map(|_| rnd()).collect();
            let dy: Vec<f32> = (0..cout * g.ho * g.wo).map(|_| rnd()).collect();
            let kd = g.kdim();
            let mut want = vec![0f64; cout * kd];
            for co in 0..cout {
                for ci in 0..cin {
                    for ky in 0..k {
                        for kx in 0..k {
                            let mut acc = 0f64;
                            for oy in 0..g.ho {
                                for ox in 0..g.wo {
                                    let iy = (oy * s + ky) as isize - p as isize;
                                    let ix = (ox * s + kx) as isize - p as isize;
                                    if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w
                                    {
                                        acc += dy[(co * g.ho + oy) * g.wo + ox] as f64
                                            * x[(ci * h + iy as usize) * w + ix as usize] as f64;
                                    }
                                }
                            }
                            want[co * kd + (ci * k + ky) * k + kx] = acc;
                        }
                    }
                }
            }
            let got = conv_dw(&g, &x, &dy);
            for (i, (&a, &b)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (a as f64 - b).abs() < 1e-4,
                    "{cin}->{cout} k{k} s{s}: dW[{i}] {a} vs {b}"
                );
            }
        }
    }
}
