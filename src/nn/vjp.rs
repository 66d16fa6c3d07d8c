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

use super::conv::{Conv2d, Conv2dParams, ConvAlgo, Geom, fill_band};
use super::conv_transpose::ConvTranspose2d;
use super::gemm::{Finish, View, matmul};
use super::kernel::{DOT_MI, DOT_NJ, DotArgs, Isa, dot_kernel};
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

/// VJP of [`conv2d`](super::conv2d) (`params.relu` is ignored; see the module docs):
/// `input` `[Cin, H, W]`, `weight` `[Cout, Cin, kH, kW]`, `dy` `[Cout, Ho, Wo]`.
pub fn conv2d_vjp(
    input: &Tensor,
    weight: &Tensor,
    params: Conv2dParams,
    dy: &Tensor,
    need_dx: bool,
) -> Result<Grads, NnError> {
    const OP: &str = "conv2d_vjp";
    let [cout, cin, kh, kw] = dims4(OP, weight)?;
    let (h, w) = dims3(OP, "input", input, cin)?;
    let g = Geom::new(OP, cin, h, w, cout, kh, kw, params.stride, params.padding)?;
    let (ho, wo) = dims3(OP, "dy", dy, cout)?;
    if (ho, wo) != (g.ho, g.wo) {
        return Err(shape_err(
            OP,
            "dy",
            format!("[{cout}, {}, {}]", g.ho, g.wo),
            &dy.shape,
        ));
    }
    let isa = Isa::detect();
    let dx = if !need_dx {
        None
    } else if params.stride == 1 && kh == kw && params.padding < kh {
        // Stride 1: dx is the "full" correlation of dy with the flipped, transposed kernel, a
        // plain conv with padding k-1-p (Winograd for 3x3 with padding 1).
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
        let conv = Conv2d::with_algo_isa(
            &wt,
            None,
            Conv2dParams::new(1, kh - 1 - params.padding),
            ConvAlgo::Auto,
            isa,
        )?;
        Some(conv.forward(dy)?)
    } else {
        // dx = conv_transpose(dy, W): the conv weight [Cout, Cin, k, k] is a transposed-conv
        // weight [Cin_t = Cout, Cout_t = Cin, k, k]. Extra rows the strided conv never read
        // (output_padding) get zero gradient.
        let p = Conv2dParams::new(params.stride, params.padding);
        let t = ConvTranspose2d::with_isa(weight, None, p, isa)?;
        Some(t.forward_sized(&dy.data, ho, wo, h, w))
    };
    let dw = conv_dw(isa, &g, &input.data, &dy.data);
    let db = channel_sums(&dy.data, cout);
    Ok(Grads {
        dx,
        dw: Tensor::from_vec(&weight.shape, dw),
        db,
    })
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
    const OP: &str = "conv_transpose2d_vjp";
    let [cin, cout, kh, kw] = dims4(OP, weight)?;
    let (h, w) = dims3(OP, "input", input, cin)?;
    let p = Conv2dParams::new(params.stride, params.padding);
    let t = ConvTranspose2d::with_isa(weight, None, p, Isa::detect())?;
    let (ho, wo) = t.out_hw(h, w)?;
    let (dh, dw_) = dims3(OP, "dy", dy, cout)?;
    if (dh, dw_) != (ho, wo) {
        return Err(shape_err(
            OP,
            "dy",
            format!("[{cout}, {ho}, {wo}]"),
            &dy.shape,
        ));
    }
    // The transposed conv is the input-VJP of the conv g: input = its output (cout x ho x wo),
    // output = its input (cin x h x w), weight [cin, cout, k, k] read as a conv weight.
    let g = Geom::new(OP, cout, ho, wo, cin, kh, kw, params.stride, params.padding)?;
    debug_assert_eq!((g.ho, g.wo), (h, w));
    let dx = if need_dx {
        let conv = Conv2d::with_algo(weight, None, p, ConvAlgo::Auto)?;
        Some(conv.forward(dy)?)
    } else {
        None
    };
    // dW[ci][co][ky][kx] = sum x[ci][iy][ix] * dy[co][iy*s+ky-p][ix*s+kx-p]: the conv-weight
    // gradient of g with "input" dy and "output gradient" x.
    let dwv = conv_dw(Isa::detect(), &g, &dy.data, &input.data);
    Ok(Grads {
        dx,
        dw: Tensor::from_vec(&weight.shape, dwv),
        db: channel_sums(&dy.data, cout),
    })
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
            Finish::default(),
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
                    Finish::default(),
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
/// `g`. Band by band, like the forward implicit GEMM: each rayon job copies a zero-padded,
/// stride-phase-split band of `x` into scratch, and the dot kernel contracts `dy` rows with
/// shifted windows of it (no im2col buffer). Jobs keep partial sums that are added at the end.
pub(crate) fn conv_dw(isa: Isa, g: &Geom, x: &[f32], dy: &[f32]) -> Vec<f32> {
    let k = g.kdim();
    let s = g.s;
    let pitch = g.pitch();
    let reach = (g.kh - 1) / s;
    let per_row_bytes = s * s * g.cin * pitch * 4;
    let mut rows = 16usize.min(g.ho.max(1));
    while rows > 1 && (rows + reach) * per_row_bytes > 1 << 20 {
        rows -= 1;
    }
    let threads = rayon::current_num_threads().max(1);
    while rows > 1 && g.ho.div_ceil(rows) < 2 * threads {
        rows = rows.div_ceil(2);
    }
    let bands = g.ho.div_ceil(rows);
    let band_rows = rows + reach;
    let plane = band_rows * pitch;
    let band_len = s * s * g.cin * plane + pitch;
    let b_offs: Vec<isize> = (0..g.cin)
        .flat_map(|ci| (0..g.kh).flat_map(move |ky| (0..g.kw).map(move |kx| (ci, ky, kx))))
        .map(|(ci, ky, kx)| {
            let phase = (ky % s) * s + kx % s;
            ((phase * g.cin + ci) * plane + (ky / s) * pitch + kx / s) as isize
        })
        .collect();
    let npix = g.ho * g.wo;
    let a_offs: Vec<isize> = (0..g.cout).map(|co| (co * npix) as isize).collect();
    // Each band's partial sum is added into f64 totals: a weight's gradient sums tens of
    // thousands of pixels that largely cancel.
    let total = (0..bands)
        .into_par_iter()
        .fold(
            || (vec![0f64; g.cout * k], vec![0f32; g.cout * k]),
            |(mut total, mut acc), bi| {
                acc.fill(0.0);
                let oy0 = bi * rows;
                let r = rows.min(g.ho - oy0);
                with_scratch(band_len, |band| {
                    fill_band(g, x, oy0, band_rows, pitch, band);
                    for j0 in (0..k).step_by(DOT_NJ) {
                        // Im2col rows outermost: the windows of one group overlap (shifts of
                        // the same input rows) and stay in L1 while every dy row block streams.
                        let nj = DOT_NJ.min(k - j0);
                        for i0 in (0..g.cout).step_by(DOT_MI) {
                            let mi = DOT_MI.min(g.cout - i0);
                            let args = DotArgs {
                                rows: r,
                                len: g.wo,
                                a: dy[oy0 * g.wo..].as_ptr(),
                                lda: g.wo,
                                a_offs: a_offs[i0..].as_ptr(),
                                b: band.as_ptr(),
                                ldb: pitch,
                                b_offs: b_offs[j0..].as_ptr(),
                                out: acc[i0 * k + j0..].as_mut_ptr(),
                                ldo: k,
                            };
                            // SAFETY: dy rows co*npix + (oy0 + r')*wo .. + wo are inside dy; band
                            // windows stay inside the band (as in the forward pass); the block
                            // mi x nj of acc (row stride k) is inside acc.
                            unsafe { dot_kernel(isa, mi, nj)(&args) };
                        }
                    }
                });
                for (t, a) in total.iter_mut().zip(&acc) {
                    *t += *a as f64;
                }
                (total, acc)
            },
        )
        .map(|(total, _)| total)
        .reduce(|| vec![0f64; g.cout * k], add_vec);
    total.iter().map(|&v| v as f32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The portable dot kernel and the detected one agree with a naive weight gradient.
    #[test]
    fn conv_dw_kernels_match_naive() {
        let mut seed = 7u64;
        let mut rnd = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((seed >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        };
        for &(cin, cout, h, w, k, s, p) in &[
            (5, 7, 23, 37, 3, 1, 1),
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
            for isa in [Isa::Generic, Isa::detect()] {
                let got = conv_dw(isa, &g, &x, &dy);
                for (i, (&a, &b)) in got.iter().zip(&want).enumerate() {
                    assert!(
                        (a as f64 - b).abs() < 1e-4,
                        "{isa:?} {cin}->{cout} k{k} s{s}: dW[{i}] {a} vs {b}"
                    );
                }
            }
        }
    }
}
