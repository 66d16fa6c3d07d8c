//! 2-D convolution: `y[co] = b[co] + sum_{ci,ky,kx} w[co][ci][ky][kx] * x[ci][y*s+ky-p][x*s+kx-p]`
//! on `[C, H, W]` feature maps, with PyTorch's weight layout `[Cout, Cin, kH, kW]`, symmetric
//! zero padding and an optional fused ReLU.
//!
//! Algorithms (chosen by [`ConvAlgo::Auto`], each can be forced for tests and benchmarks):
//! - **Winograd F(4x4, 3x3)** for 3x3 stride-1 convs (`winograd.rs`): 4x fewer multiplies.
//! - **Direct (implicit GEMM)**: the GEMM `W[Cout x Cin*kH*kW] * im2col(x)` without
//!   materialising im2col. Each rayon job copies a band of input rows into a zero-padded,
//!   stride-phase-split scratch buffer (`s*s` phase images whose pixels are `s` apart in the
//!   input), so that every `(ci, ky, kx)` row of im2col is a contiguous window of that buffer
//!   and the micro-kernel reads it through an offset table. Output pixels are numbered in the
//!   buffer's pitch (a few junk columns per row), so strips run across rows and narrow maps
//!   keep the kernel busy; a final pass drops the junk columns and applies bias and ReLU.
//!   1x1 stride-1 convs need no copy at all: the GEMM reads the input directly.
//! - **Im2col + `gemm` crate**: portable fallback for CPUs without AVX-512.

use rayon::prelude::*;

use super::gemm::{Finish, KC, PackedA, gemm_block, gemm_parallel};
use super::kernel::{Isa, relu1};
use super::scratch::{SendPtr, with_scratch};
use super::winograd::Winograd;
use super::{NnError, Tensor, shape_err};

/// Hyper-parameters of a 2-D convolution: one stride and one zero padding for both axes (what
/// OpenPCDet's BEV backbones and heads use), plus a fused ReLU epilogue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dParams {
    pub stride: usize,
    pub padding: usize,
    /// Apply ReLU to the output (after the bias).
    pub relu: bool,
}

impl Conv2dParams {
    /// `stride`, `padding`, no ReLU.
    pub fn new(stride: usize, padding: usize) -> Self {
        Conv2dParams {
            stride,
            padding,
            relu: false,
        }
    }

    /// The same parameters with the ReLU epilogue switched on or off.
    pub fn with_relu(self, relu: bool) -> Self {
        Conv2dParams { relu, ..self }
    }
}

/// Convolution algorithm. `Auto` picks the fastest one measured for the layer's shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvAlgo {
    /// Winograd for 3x3 stride-1 convs (AVX-512 CPUs), direct otherwise; im2col + `gemm`
    /// crate on CPUs without AVX-512.
    Auto,
    /// Implicit GEMM with this crate's micro-kernels.
    Direct,
    /// Winograd F(4x4, 3x3); only for 3x3 kernels with stride 1.
    Winograd,
    /// Explicit im2col buffer + `gemm` crate (portable).
    Im2colGemm,
}

/// Shape of one convolution problem.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Geom {
    pub cin: usize,
    pub h: usize,
    pub w: usize,
    pub cout: usize,
    pub kh: usize,
    pub kw: usize,
    pub s: usize,
    pub p: usize,
    pub ho: usize,
    pub wo: usize,
}

impl Geom {
    /// Validates the hyper-parameters and derives the output size.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        op: &'static str,
        cin: usize,
        h: usize,
        w: usize,
        cout: usize,
        kh: usize,
        kw: usize,
        s: usize,
        p: usize,
    ) -> Result<Geom, NnError> {
        if s == 0 {
            return Err(NnError::Invalid {
                op,
                msg: "stride must be at least 1".into(),
            });
        }
        if kh == 0 || kw == 0 {
            return Err(NnError::Invalid {
                op,
                msg: "kernel size must be at least 1".into(),
            });
        }
        if h + 2 * p < kh || w + 2 * p < kw {
            return Err(NnError::Invalid {
                op,
                msg: format!(
                    "kernel {kh}x{kw} is larger than the padded input {}x{}",
                    h + 2 * p,
                    w + 2 * p
                ),
            });
        }
        let ho = (h + 2 * p - kh) / s + 1;
        let wo = (w + 2 * p - kw) / s + 1;
        Ok(Geom {
            cin,
            h,
            w,
            cout,
            kh,
            kw,
            s,
            p,
            ho,
            wo,
        })
    }

    /// im2col row count.
    pub(crate) fn kdim(&self) -> usize {
        self.cin * self.kh * self.kw
    }

    /// Pitch (row length) of a stride-phase image; output pixels use it too.
    pub(crate) fn pitch(&self) -> usize {
        // Each phase row must hold output columns 0..wo plus the kernel's reach.
        (self.wo + (self.kw - 1) / self.s).max((self.w + 2 * self.p).div_ceil(self.s))
    }
}

/// A convolution layer with its weights prepared for the chosen algorithm (packed for the
/// micro-kernels, or Winograd-transformed), so repeated forward passes pay that cost once.
#[derive(Clone, Debug)]
pub struct Conv2d {
    cout: usize,
    cin: usize,
    kh: usize,
    kw: usize,
    params: Conv2dParams,
    isa: Isa,
    weight: Vec<f32>,
    bias: Option<Vec<f32>>,
    prepared: Prepared,
}

/// The algorithm a layer runs, with the weights prepared for it.
#[derive(Clone, Debug)]
enum Prepared {
    Im2colGemm,
    Direct(PackedA),
    Winograd(Winograd),
}

impl Conv2d {
    /// Prepares a layer. `weight` is `[Cout, Cin, kH, kW]`; `bias`, if any, has `Cout` values.
    pub fn new(
        weight: &Tensor,
        bias: Option<&[f32]>,
        params: Conv2dParams,
    ) -> Result<Self, NnError> {
        Self::with_algo(weight, bias, params, ConvAlgo::Auto)
    }

    /// Prepares a layer that uses `algo` (an error if the algorithm cannot run this shape).
    pub fn with_algo(
        weight: &Tensor,
        bias: Option<&[f32]>,
        params: Conv2dParams,
        algo: ConvAlgo,
    ) -> Result<Self, NnError> {
        Self::with_algo_isa(weight, bias, params, algo, Isa::detect())
    }

    /// As [`Conv2d::with_algo`] with an explicit instruction set (tests use
    /// [`Isa::Generic`] to check the portable kernels on any machine).
    pub fn with_algo_isa(
        weight: &Tensor,
        bias: Option<&[f32]>,
        params: Conv2dParams,
        algo: ConvAlgo,
        isa: Isa,
    ) -> Result<Self, NnError> {
        const OP: &str = "conv2d";
        let [cout, cin, kh, kw] = match weight.shape[..] {
            [a, b, c, d] => [a, b, c, d],
            _ => {
                return Err(shape_err(
                    OP,
                    "weight",
                    "[Cout, Cin, kH, kW]",
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
        let wino_ok = kh == 3 && kw == 3 && params.stride == 1;
        let algo = match algo {
            ConvAlgo::Auto => match isa {
                Isa::Avx512 if wino_ok => ConvAlgo::Winograd,
                Isa::Avx512 => ConvAlgo::Direct,
                Isa::Generic => ConvAlgo::Im2colGemm,
            },
            ConvAlgo::Winograd if !wino_ok => {
                return Err(NnError::Invalid {
                    op: OP,
                    msg: format!(
                        "Winograd needs a 3x3 kernel with stride 1, not {kh}x{kw} stride {}",
                        params.stride
                    ),
                });
            }
            a => a,
        };
        let k = cin * kh * kw;
        let prepared = match algo {
            ConvAlgo::Direct => {
                Prepared::Direct(PackedA::from_strided(cout, k, &weight.data, k, 1))
            }
            ConvAlgo::Winograd => Prepared::Winograd(Winograd::new(cout, cin, &weight.data)),
            ConvAlgo::Im2colGemm | ConvAlgo::Auto => Prepared::Im2colGemm,
        };
        Ok(Conv2d {
            cout,
            cin,
            kh,
            kw,
            params,
            isa,
            weight: weight.data.clone(),
            bias: bias.map(<[f32]>::to_vec),
            prepared,
        })
    }

    /// The algorithm this layer runs (never `Auto`).
    pub fn algo(&self) -> ConvAlgo {
        match self.prepared {
            Prepared::Im2colGemm => ConvAlgo::Im2colGemm,
            Prepared::Direct(_) => ConvAlgo::Direct,
            Prepared::Winograd(_) => ConvAlgo::Winograd,
        }
    }

    /// The layer's hyper-parameters.
    pub fn params(&self) -> Conv2dParams {
        self.params
    }

    /// Output `(H, W)` for an `H x W` input, or an error if the kernel does not fit.
    pub fn out_hw(&self, h: usize, w: usize) -> Result<(usize, usize), NnError> {
        let g = self.geom(h, w)?;
        Ok((g.ho, g.wo))
    }

    fn geom(&self, h: usize, w: usize) -> Result<Geom, NnError> {
        let p = self.params;
        Geom::new(
            "conv2d", self.cin, h, w, self.cout, self.kh, self.kw, p.stride, p.padding,
        )
    }

    fn check_input(&self, input: &Tensor) -> Result<Geom, NnError> {
        match input.shape[..] {
            [c, h, w] if c == self.cin => self.geom(h, w),
            _ => Err(shape_err(
                "conv2d",
                "input",
                format!("[{}, H, W]", self.cin),
                &input.shape,
            )),
        }
    }

    /// Runs the layer on a `[Cin, H, W]` map, returning `[Cout, Ho, Wo]`.
    pub fn forward(&self, input: &Tensor) -> Result<Tensor, NnError> {
        let g = self.check_input(input)?;
        let mut out = Tensor {
            shape: vec![g.cout, g.ho, g.wo],
            data: Vec::new(),
        };
        out.data.resize(g.cout * g.ho * g.wo, 0.0);
        self.run(&g, &input.data, &mut out.data);
        Ok(out)
    }

    /// Like [`Conv2d::forward`], writing into `out` (reshaped and reused when large enough).
    pub fn forward_into(&self, input: &Tensor, out: &mut Tensor) -> Result<(), NnError> {
        let g = self.check_input(input)?;
        out.shape.clear();
        out.shape.extend_from_slice(&[g.cout, g.ho, g.wo]);
        out.data.resize(g.cout * g.ho * g.wo, 0.0);
        self.run(&g, &input.data, &mut out.data);
        Ok(())
    }

    fn run(&self, g: &Geom, x: &[f32], y: &mut [f32]) {
        let bias = self.bias.as_deref();
        let relu = self.params.relu;
        match &self.prepared {
            Prepared::Winograd(wino) => wino.forward(self.isa, g, x, bias, relu, y),
            Prepared::Direct(a) => direct(self.isa, a, g, x, bias, relu, y),
            Prepared::Im2colGemm => im2col_gemm(g, &self.weight, x, bias, relu, y),
        }
    }
}

/// One-shot convolution: `input` `[Cin, H, W]`, `weight` `[Cout, Cin, kH, kW]`, `bias` `Cout`
/// values. Prepares the weights on every call; build a [`Conv2d`] to run a layer repeatedly.
pub fn conv2d(
    input: &Tensor,
    weight: &Tensor,
    bias: Option<&[f32]>,
    params: Conv2dParams,
) -> Result<Tensor, NnError> {
    Conv2d::new(weight, bias, params)?.forward(input)
}

/// Implicit-GEMM convolution (see the module docs).
pub(crate) fn direct(
    isa: Isa,
    a: &PackedA,
    g: &Geom,
    x: &[f32],
    bias: Option<&[f32]>,
    relu: bool,
    y: &mut [f32],
) {
    let fin = Finish {
        bias,
        relu,
        ..Finish::default()
    };
    if g.kh == 1 && g.kw == 1 && g.s == 1 && g.p == 0 {
        // Plain GEMM: row ci of "im2col" is input plane ci.
        let hw = g.h * g.w;
        let offs: Vec<isize> = (0..g.cin).map(|c| (c * hw) as isize).collect();
        gemm_parallel(isa, a.view(), x.as_ptr(), &offs, hw, y, hw, fin);
        return;
    }
    let s = g.s;
    let pitch = g.pitch();
    let reach = (g.kh - 1) / s; // extra phase rows a band needs
    // Band height: about 512 output pixels per band, and a band buffer of at most ~1 MiB.
    let per_row_bytes = s * s * g.cin * pitch * 4;
    let mut rows = 512usize.div_ceil(pitch).max(1);
    while rows > 1 && (rows + reach) * per_row_bytes > 1 << 20 {
        rows -= 1;
    }
    // Enough bands for load balance on all threads.
    let threads = rayon::current_num_threads().max(1);
    while rows > 1 && g.ho.div_ceil(rows) < 4 * threads {
        rows = rows.div_ceil(2);
    }
    let bands = g.ho.div_ceil(rows);
    let band_rows = rows + reach;
    let plane = band_rows * pitch;
    // + pitch: the junk columns of the last plane's last row read past it.
    let band_len = s * s * g.cin * plane + pitch;
    let n_max = rows * pitch;
    let offs: Vec<isize> = (0..g.cin)
        .flat_map(|ci| (0..g.kh).flat_map(move |ky| (0..g.kw).map(move |kx| (ci, ky, kx))))
        .map(|(ci, ky, kx)| {
            let phase = (ky % s) * s + kx % s;
            ((phase * g.cin + ci) * plane + (ky / s) * pitch + kx / s) as isize
        })
        .collect();
    let yp = SendPtr(y.as_mut_ptr());
    (0..bands).into_par_iter().for_each(|bi| {
        let oy0 = bi * rows;
        let r = rows.min(g.ho - oy0);
        with_scratch(band_len + g.cout * n_max, |buf| {
            let (band, cblk) = buf.split_at_mut(band_len);
            fill_band(g, x, oy0, band_rows, pitch, band);
            let n = r * pitch;
            // SAFETY: every offset plus `n` stays inside `band` (band_rows includes the reach
            // of the kernel; junk columns spill at most `pitch` floats past a plane, into the
            // next plane or the zeroed tail); `cblk` holds cout x n_max.
            unsafe {
                gemm_block(
                    isa,
                    a.view(),
                    band.as_ptr(),
                    &offs,
                    n,
                    cblk.as_mut_ptr(),
                    n_max,
                    Finish::default(),
                    KC,
                );
            }
            for co in 0..g.cout {
                let b = bias.map_or(0.0, |b| b[co]);
                for oy in 0..r {
                    let src = &cblk[co * n_max + oy * pitch..][..g.wo];
                    // SAFETY: band `bi` owns output rows oy0..oy0+r of every channel.
                    let dst = unsafe {
                        std::slice::from_raw_parts_mut(
                            yp.get().add((co * g.ho + oy0 + oy) * g.wo),
                            g.wo,
                        )
                    };
                    finish_row(src, dst, b, relu);
                }
            }
        });
    });
}

/// `dst = relu?(src + b)`.
#[inline]
pub(crate) fn finish_row(src: &[f32], dst: &mut [f32], b: f32, relu: bool) {
    if relu {
        for (d, &s) in dst.iter_mut().zip(src) {
            *d = relu1(s + b);
        }
    } else {
        for (d, &s) in dst.iter_mut().zip(src) {
            *d = s + b;
        }
    }
}

/// Fills `band` with the zero-padded, stride-phase-split input rows that output rows
/// `oy0 ..` need: phase `(py, px)`, channel `ci`, row `r`, column `j` holds padded input pixel
/// `((oy0 + r) * s + py, j * s + px)`. The buffer's last `pitch` floats (slack for the junk
/// columns of the last row) are zeroed.
pub(crate) fn fill_band(
    g: &Geom,
    x: &[f32],
    oy0: usize,
    band_rows: usize,
    pitch: usize,
    band: &mut [f32],
) {
    let s = g.s;
    let plane = band_rows * pitch;
    let len = s * s * g.cin * plane;
    band[len..].fill(0.0);
    for ci in 0..g.cin {
        let src_plane = &x[ci * g.h * g.w..][..g.h * g.w];
        for py in 0..s {
            for r in 0..band_rows {
                let yy = ((oy0 + r) * s + py) as isize - g.p as isize;
                let src =
                    (yy >= 0 && yy < g.h as isize).then(|| &src_plane[yy as usize * g.w..][..g.w]);
                let at = |px: usize| ((py * s + px) * g.cin + ci) * plane + r * pitch;
                match (s, src) {
                    (_, None) => {
                        for px in 0..s {
                            band[at(px)..][..pitch].fill(0.0);
                        }
                    }
                    (2, Some(src)) => {
                        let (a, b) = band.split_at_mut(at(1));
                        fill_two_phases(src, &mut a[at(0)..][..pitch], &mut b[..pitch], g.p);
                    }
                    (_, Some(src)) => {
                        for px in 0..s {
                            fill_phase_row(src, &mut band[at(px)..][..pitch], s, px, g.p);
                        }
                    }
                }
            }
        }
    }
}

/// Stride 2: `d0[j] = src[2j - p]`, `d1[j] = src[2j + 1 - p]` (zero outside), in one pass whose
/// core loop the compiler vectorises as an interleaved load.
fn fill_two_phases(src: &[f32], d0: &mut [f32], d1: &mut [f32], p: usize) {
    let w = src.len() as isize;
    let n = d0.len();
    let a = -(p as isize);
    // Core range: 0 <= 2j + a and 2j + a + 1 < w.
    let j0 = ((-a).max(0) as usize).div_ceil(2).min(n);
    let j1 = (((w - a) / 2).max(0) as usize).clamp(j0, n);
    let at = |q: isize| {
        if q >= 0 && q < w {
            src[q as usize]
        } else {
            0.0
        }
    };
    for j in (0..j0).chain(j1..n) {
        d0[j] = at(2 * j as isize + a);
        d1[j] = at(2 * j as isize + a + 1);
    }
    if j1 > j0 {
        let base = (2 * j0 as isize + a) as usize;
        let core = &src[base..base + 2 * (j1 - j0)];
        for ((pair, x0), x1) in core
            .chunks_exact(2)
            .zip(&mut d0[j0..j1])
            .zip(&mut d1[j0..j1])
        {
            *x0 = pair[0];
            *x1 = pair[1];
        }
    }
}

/// `dst[j] = src[j * s + px - p]`, zero outside `src`.
#[inline]
pub(crate) fn fill_phase_row(src: &[f32], dst: &mut [f32], s: usize, px: usize, p: usize) {
    let w = src.len();
    // First j with j*s + px >= p, and first j with j*s + px - p >= w.
    let j0 = (p.saturating_sub(px)).div_ceil(s).min(dst.len());
    let j1 = (w + p).saturating_sub(px).div_ceil(s).clamp(j0, dst.len());
    dst[..j0].fill(0.0);
    dst[j1..].fill(0.0);
    if j1 == j0 {
        return;
    }
    let x0 = j0 * s + px - p;
    let d = &mut dst[j0..j1];
    if s == 1 {
        d.copy_from_slice(&src[x0..x0 + d.len()]);
    } else {
        for (jj, v) in d.iter_mut().enumerate() {
            *v = src[x0 + jj * s];
        }
    }
}

/// Portable path: explicit im2col of a few output rows at a time, then `gemm::gemm`.
pub(crate) fn im2col_gemm(
    g: &Geom,
    weight: &[f32],
    x: &[f32],
    bias: Option<&[f32]>,
    relu: bool,
    y: &mut [f32],
) {
    let k = g.kdim();
    let npix = g.ho * g.wo;
    let rows = (4096 / g.wo.max(1)).clamp(1, g.ho.max(1));
    let bands = g.ho.div_ceil(rows);
    let yp = SendPtr(y.as_mut_ptr());
    (0..bands).into_par_iter().for_each(|bi| {
        let oy0 = bi * rows;
        let r = rows.min(g.ho - oy0);
        let n = r * g.wo;
        with_scratch(k * n, |cols| {
            im2col(g, x, oy0, r, cols);
            // SAFETY: band `bi` owns output columns oy0*wo .. oy0*wo+n of every channel row;
            // `cols` is k x n row-major; `weight` is cout x k row-major.
            unsafe {
                gemm::gemm(
                    g.cout,
                    n,
                    k,
                    yp.get().add(oy0 * g.wo),
                    1,
                    npix as isize,
                    false,
                    weight.as_ptr(),
                    1,
                    k as isize,
                    cols.as_ptr(),
                    1,
                    n as isize,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                );
            }
            for co in 0..g.cout {
                // SAFETY: as above, this band's slice of channel co.
                let dst = unsafe {
                    std::slice::from_raw_parts_mut(yp.get().add(co * npix + oy0 * g.wo), n)
                };
                let b = bias.map_or(0.0, |b| b[co]);
                if b != 0.0 || relu {
                    for v in dst.iter_mut() {
                        let t = *v + b;
                        *v = if relu { relu1(t) } else { t };
                    }
                }
            }
        });
    });
}

/// im2col of output rows `oy0 .. oy0 + r`: `cols[(ci*kh + ky)*kw + kx][(oy - oy0)*wo + ox]`.
pub(crate) fn im2col(g: &Geom, x: &[f32], oy0: usize, r: usize, cols: &mut [f32]) {
    let n = r * g.wo;
    for ci in 0..g.cin {
        let plane = &x[ci * g.h * g.w..][..g.h * g.w];
        for ky in 0..g.kh {
            for kx in 0..g.kw {
                let row = &mut cols[((ci * g.kh + ky) * g.kw + kx) * n..][..n];
                for oy in 0..r {
                    let yy = ((oy0 + oy) * g.s + ky) as isize - g.p as isize;
                    let dst = &mut row[oy * g.wo..][..g.wo];
                    if yy < 0 || yy >= g.h as isize {
                        dst.fill(0.0);
                        continue;
                    }
                    let src = &plane[yy as usize * g.w..][..g.w];
                    fill_phase_row(src, dst, g.s, kx, g.p);
                }
            }
        }
    }
}

/// `[C][P]` to `[P][C]`.
pub(crate) fn channels_last(x: &[f32], c: usize, p: usize) -> Vec<f32> {
    const TILE: usize = 256;
    let mut out = vec![0f32; c * p];
    // Tiles of pixels; each channel's run read contiguously (a channel at a time keeps the
    // pages touched few).
    out.par_chunks_mut(c.max(1) * TILE)
        .enumerate()
        .for_each(|(bi, chunk)| {
            let p0 = bi * TILE;
            let np = chunk.len() / c.max(1);
            for ci in 0..c {
                let src = &x[ci * p + p0..][..np];
                for (j, &v) in src.iter().enumerate() {
                    chunk[j * c + ci] = v;
                }
            }
        });
    out
}

/// The im2col block of output rows `oy0 .. oy0 + r` in pixel-major order: `cols[pixel][(ky,
/// kx, ci)]` (zero where the kernel reaches into the padding), from a `[pixel][channel]` input.
pub(crate) fn im2col_pixel_major(g: &Geom, x_hwc: &[f32], oy0: usize, r: usize, cols: &mut [f32]) {
    let (cin, k) = (g.cin, g.kdim());
    for oy in 0..r {
        for ox in 0..g.wo {
            let dst = &mut cols[(oy * g.wo + ox) * k..][..k];
            for ky in 0..g.kh {
                let iy = ((oy0 + oy) * g.s + ky) as isize - g.p as isize;
                for kx in 0..g.kw {
                    let ix = (ox * g.s + kx) as isize - g.p as isize;
                    let run = &mut dst[(ky * g.kw + kx) * cin..][..cin];
                    if iy < 0 || ix < 0 || iy as usize >= g.h || ix as usize >= g.w {
                        run.fill(0.0);
                    } else {
                        let at = (iy as usize * g.w + ix as usize) * cin;
                        run.copy_from_slice(&x_hwc[at..][..cin]);
                    }
                }
            }
        }
    }
}

/// Adds `cols` (im2col layout of output rows `oy0 .. oy0 + r`, row stride `ldc`) back into the
/// input-shaped `dx`: the adjoint of [`im2col`] (transposed convs and vector-Jacobian products).
pub(crate) fn col2im_add(g: &Geom, cols: &[f32], ldc: usize, oy0: usize, r: usize, dx: &mut [f32]) {
    let n = ldc;
    for ci in 0..g.cin {
        let plane = &mut dx[ci * g.h * g.w..][..g.h * g.w];
        for ky in 0..g.kh {
            for kx in 0..g.kw {
                let row = &cols[((ci * g.kh + ky) * g.kw + kx) * n..][..n];
                for oy in 0..r {
                    let yy = ((oy0 + oy) * g.s + ky) as isize - g.p as isize;
                    if yy < 0 || yy >= g.h as isize {
                        continue;
                    }
                    let dst = &mut plane[yy as usize * g.w..][..g.w];
                    let src = &row[oy * g.wo..][..g.wo];
                    // Output columns ox with 0 <= ox*s + kx - p < w.
                    let ox0 = g.p.saturating_sub(kx).div_ceil(g.s).min(g.wo);
                    let ox1 = (g.w + g.p)
                        .saturating_sub(kx)
                        .div_ceil(g.s)
                        .clamp(ox0, g.wo);
                    for ox in ox0..ox1 {
                        dst[ox * g.s + kx - g.p] += src[ox];
                    }
                }
            }
        }
    }
}
