//! Gram matrices of a layer's inputs, for layer-wise least squares (pruning recovery).
//!
//! A conv, linear or transposed-conv layer computes, per output row `w` (one output channel's
//! weights), `z_j = w . a_j` over input columns `a_j`: im2col columns for a conv, the input
//! rows for a linear layer, the input pixels for a transposed conv whose kernel equals its
//! stride. Refitting `w` so that `w . a_j` matches a target `t . b_j` (the dense layer on
//! the dense network's columns `b_j`) in least squares needs only `A A^T`, `A B^T` and the
//! column sums, which this module accumulates over any number of scans (in f64; each band's
//! product runs on the `gemm` crate's f32 kernels, as the weight gradients do).

use rayon::prelude::*;

use super::conv::{Geom, im2col};
use super::{NnError, Tensor, shape_err};

/// Accumulated second moments of `k`-long input columns `a_j` (the network being refitted)
/// and `b_j` (the reference network), over `n` columns.
#[derive(Clone, Debug)]
pub struct Gram {
    pub k: usize,
    /// Number of columns accumulated.
    pub n: f64,
    /// `sum_j a_j`, `sum_j b_j` (length `k`).
    pub sum_a: Vec<f64>,
    pub sum_b: Vec<f64>,
    /// `sum_j a_j a_j^T` and `sum_j a_j b_j^T`, `k x k` row-major.
    pub aa: Vec<f64>,
    pub ab: Vec<f64>,
}

/// A `k x n` block of columns inside a buffer: element `(i, j)` at `i * row + j * col`.
#[derive(Clone, Copy)]
struct Block<'a> {
    data: &'a [f32],
    k: usize,
    n: usize,
    row: usize,
    col: usize,
}

impl Block<'_> {
    fn fits(&self) -> bool {
        self.k == 0
            || self.n == 0
            || (self.k - 1) * self.row + (self.n - 1) * self.col < self.data.len()
    }

    fn row_sums(&self) -> Vec<f64> {
        (0..self.k)
            .map(|i| {
                (0..self.n)
                    .map(|j| self.data[i * self.row + j * self.col] as f64)
                    .sum()
            })
            .collect()
    }
}

/// `A B^T` of two `k x n` blocks, `k x k` row-major in f32.
fn product(a: Block, b: Block, out: &mut [f32]) {
    assert!(a.fits() && b.fits() && a.k == b.k && a.n == b.n && out.len() == a.k * a.k);
    if a.k == 0 || a.n == 0 {
        out.fill(0.0);
        return;
    }
    // SAFETY: `out` is k x k (column stride 1, row stride k); `a` is read as the k x n left
    // operand (row stride a.row, column stride a.col) and `b` as the n x k right operand
    // B^T (its column i is b's row i: column stride b.row, row stride b.col); `fits` checked
    // that every element addressed lies inside the slices.
    unsafe {
        gemm::gemm(
            a.k,
            a.k,
            a.n,
            out.as_mut_ptr(),
            1,
            a.k as isize,
            false,
            a.data.as_ptr(),
            a.col as isize,
            a.row as isize,
            b.data.as_ptr(),
            b.row as isize,
            b.col as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// Columns per band: bounds the scratch (`k x BAND` floats per operand) and gives rayon work.
const BAND: usize = 2048;

impl Gram {
    pub fn new(k: usize) -> Self {
        Gram {
            k,
            n: 0.0,
            sum_a: vec![0.0; k],
            sum_b: vec![0.0; k],
            aa: vec![0.0; k * k],
            ab: vec![0.0; k * k],
        }
    }

    /// Adds the bands `0..bands` of columns, each written by `band(i, a, b)` as two compact
    /// `k x n_i` row-major buffers (returning `n_i`; `b` is left empty when `same`: the two
    /// networks' columns are equal and `A B^T` is `A A^T`).
    fn add_bands(
        &mut self,
        bands: usize,
        same: bool,
        band: impl Fn(usize, &mut Vec<f32>, &mut Vec<f32>) -> usize + Sync,
    ) {
        let k = self.k;
        let zero = || Partial::new(k);
        // One accumulator per thread, not per rayon split: each holds several k x k matrices.
        let per_thread = bands.div_ceil(rayon::current_num_threads().max(1)).max(1);
        let total = (0..bands)
            .into_par_iter()
            .with_min_len(per_thread)
            .fold(zero, |mut p, bi| {
                let (mut a, mut b) = (Vec::new(), Vec::new());
                let n = band(bi, &mut a, &mut b);
                let ba = Block {
                    data: &a,
                    k,
                    n,
                    row: n,
                    col: 1,
                };
                p.add(ba, (!same).then_some(Block { data: &b, ..ba }));
                p
            })
            .reduce(zero, Partial::merge);
        self.absorb(total, same);
    }

    fn absorb(&mut self, p: Partial, same: bool) {
        self.n += p.n;
        for (s, v) in self.sum_a.iter_mut().zip(&p.sum_a) {
            *s += v;
        }
        for (s, v) in self.aa.iter_mut().zip(&p.aa) {
            *s += v;
        }
        let (sum_b, ab) = if same {
            (&p.sum_a, &p.aa)
        } else {
            (&p.sum_b, &p.ab)
        };
        for (s, v) in self.sum_b.iter_mut().zip(sum_b) {
            *s += v;
        }
        for (s, v) in self.ab.iter_mut().zip(ab) {
            *s += v;
        }
    }

    /// Adds a linear layer's input rows: `a`, `b` are `rows x k` (one column per row).
    pub fn add_rows(&mut self, a: &Tensor, b: &Tensor) -> Result<(), NnError> {
        let k = self.k;
        check_same("gram rows", a, b)?;
        if a.shape.len() != 2 || a.shape[1] != k {
            return Err(shape_err(
                "gram rows",
                "input",
                format!("[rows, {k}]"),
                &a.shape,
            ));
        }
        let rows = a.shape[0];
        let same = std::ptr::eq(a, b) || a.data == b.data;
        let mut p = Partial::new(k);
        for r0 in (0..rows).step_by(BAND) {
            let n = BAND.min(rows - r0);
            let ba = Block {
                data: &a.data[r0 * k..(r0 + n) * k],
                k,
                n,
                row: 1,
                col: k,
            };
            let bb = Block {
                data: &b.data[r0 * k..(r0 + n) * k],
                ..ba
            };
            p.add(ba, (!same).then_some(bb));
        }
        self.absorb(p, same);
        Ok(())
    }

    /// Adds a transposed conv's input pixels: `a`, `b` are `[k, H, W]` maps (one column per
    /// pixel; with kernel == stride every output pixel reads exactly one input pixel).
    pub fn add_pixels(&mut self, a: &Tensor, b: &Tensor) -> Result<(), NnError> {
        let k = self.k;
        check_same("gram pixels", a, b)?;
        if a.shape.len() != 3 || a.shape[0] != k {
            return Err(shape_err(
                "gram pixels",
                "input",
                format!("[{k}, H, W]"),
                &a.shape,
            ));
        }
        let npix = a.shape[1] * a.shape[2];
        let same = std::ptr::eq(a, b) || a.data == b.data;
        let bands = npix.div_ceil(BAND);
        self.add_bands(bands, same, |bi, ba, bb| {
            let p0 = bi * BAND;
            let n = BAND.min(npix - p0);
            for i in 0..k {
                ba.extend_from_slice(&a.data[i * npix + p0..][..n]);
                if !same {
                    bb.extend_from_slice(&b.data[i * npix + p0..][..n]);
                }
            }
            n
        });
        Ok(())
    }

    /// Adds a conv's im2col columns (kernel `kh x kw`, `stride`, zero `padding`): `a`, `b`
    /// are `[Cin, H, W]` maps with `Cin * kh * kw == k`; one column per output pixel.
    pub fn add_conv(
        &mut self,
        a: &Tensor,
        b: &Tensor,
        kernel: (usize, usize),
        stride: usize,
        padding: usize,
    ) -> Result<(), NnError> {
        check_same("gram conv", a, b)?;
        if a.shape.len() != 3 {
            return Err(shape_err("gram conv", "input", "[Cin, H, W]", &a.shape));
        }
        let (cin, h, w) = (a.shape[0], a.shape[1], a.shape[2]);
        let cout = 1;
        let g = Geom::new(
            "gram conv",
            cin,
            h,
            w,
            cout,
            kernel.0,
            kernel.1,
            stride,
            padding,
        )?;
        if g.kdim() != self.k {
            return Err(shape_err(
                "gram conv",
                "input",
                format!("{} im2col rows", self.k),
                &a.shape,
            ));
        }
        let same = std::ptr::eq(a, b) || a.data == b.data;
        let rows = (BAND / g.wo.max(1)).clamp(1, g.ho.max(1));
        let bands = g.ho.div_ceil(rows);
        self.add_bands(bands, same, |bi, ba, bb| {
            let oy0 = bi * rows;
            let r = rows.min(g.ho - oy0);
            let n = r * g.wo;
            ba.resize(g.kdim() * n, 0.0);
            im2col(&g, &a.data, oy0, r, ba);
            if !same {
                bb.resize(g.kdim() * n, 0.0);
                im2col(&g, &b.data, oy0, r, bb);
            }
            n
        });
        Ok(())
    }
}

fn check_same(op: &'static str, a: &Tensor, b: &Tensor) -> Result<(), NnError> {
    if a.shape != b.shape {
        return Err(shape_err(
            op,
            "reference input",
            format!("{:?}", a.shape),
            &b.shape,
        ));
    }
    Ok(())
}

/// One thread's share of a [`Gram`].
struct Partial {
    n: f64,
    sum_a: Vec<f64>,
    sum_b: Vec<f64>,
    aa: Vec<f64>,
    ab: Vec<f64>,
    scratch: Vec<f32>,
}

impl Partial {
    fn new(k: usize) -> Self {
        Partial {
            n: 0.0,
            sum_a: vec![0.0; k],
            sum_b: vec![0.0; k],
            aa: vec![0.0; k * k],
            ab: vec![0.0; k * k],
            scratch: vec![0.0; k * k],
        }
    }

    /// Adds one block of columns (`b`: the reference's, `None` when equal to `a`).
    fn add(&mut self, a: Block, b: Option<Block>) {
        self.n += a.n as f64;
        for (s, v) in self.sum_a.iter_mut().zip(a.row_sums()) {
            *s += v;
        }
        product(a, a, &mut self.scratch);
        for (s, v) in self.aa.iter_mut().zip(&self.scratch) {
            *s += *v as f64;
        }
        if let Some(b) = b {
            for (s, v) in self.sum_b.iter_mut().zip(b.row_sums()) {
                *s += v;
            }
            product(a, b, &mut self.scratch);
            for (s, v) in self.ab.iter_mut().zip(&self.scratch) {
                *s += *v as f64;
            }
        }
    }

    fn merge(mut self, o: Partial) -> Partial {
        self.n += o.n;
        for (a, b) in [
            (&mut self.sum_a, &o.sum_a),
            (&mut self.sum_b, &o.sum_b),
            (&mut self.aa, &o.aa),
            (&mut self.ab, &o.ab),
        ] {
            for (x, y) in a.iter_mut().zip(b) {
                *x += y;
            }
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::rng::Rng;

    /// Explicit im2col columns of a conv, for checking.
    fn naive_cols(x: &Tensor, k: usize, s: usize, p: usize) -> Vec<Vec<f32>> {
        let (c, h, w) = (x.shape[0], x.shape[1], x.shape[2]);
        let ho = (h + 2 * p - k) / s + 1;
        let wo = (w + 2 * p - k) / s + 1;
        let mut cols = Vec::new();
        for oy in 0..ho {
            for ox in 0..wo {
                let mut col = Vec::new();
                for ci in 0..c {
                    for ky in 0..k {
                        for kx in 0..k {
                            let (y, xx) = (
                                (oy * s + ky) as isize - p as isize,
                                (ox * s + kx) as isize - p as isize,
                            );
                            let v = if y < 0 || xx < 0 || y >= h as isize || xx >= w as isize {
                                0.0
                            } else {
                                x.data[(ci * h + y as usize) * w + xx as usize]
                            };
                            col.push(v);
                        }
                    }
                }
                cols.push(col);
            }
        }
        cols
    }

    fn naive_gram(a: &[Vec<f32>], b: &[Vec<f32>]) -> (Vec<f64>, Vec<f64>) {
        let k = a[0].len();
        let (mut aa, mut ab) = (vec![0f64; k * k], vec![0f64; k * k]);
        for (ca, cb) in a.iter().zip(b) {
            for i in 0..k {
                for j in 0..k {
                    aa[i * k + j] += ca[i] as f64 * ca[j] as f64;
                    ab[i * k + j] += ca[i] as f64 * cb[j] as f64;
                }
            }
        }
        (aa, ab)
    }

    fn close(x: &[f64], y: &[f64]) {
        for (a, b) in x.iter().zip(y) {
            assert!((a - b).abs() <= 1e-4 * (1.0 + b.abs()), "{a} vs {b}");
        }
    }

    #[test]
    fn conv_gram_matches_explicit_im2col() {
        for (k, s, p) in [(3, 1, 1), (3, 2, 1), (2, 2, 0), (1, 1, 0)] {
            let a = Tensor::from_vec(&[3, 9, 11], Rng::new(1).values(3 * 99, -0.5, 0.5));
            let b = Tensor::from_vec(&[3, 9, 11], Rng::new(2).values(3 * 99, -0.5, 0.5));
            let mut g = Gram::new(3 * k * k);
            g.add_conv(&a, &b, (k, k), s, p).unwrap();
            let (ca, cb) = (naive_cols(&a, k, s, p), naive_cols(&b, k, s, p));
            let (aa, ab) = naive_gram(&ca, &cb);
            close(&g.aa, &aa);
            close(&g.ab, &ab);
            assert_eq!(g.n as usize, ca.len());
            let sa: Vec<f64> = (0..3 * k * k)
                .map(|i| ca.iter().map(|c| c[i] as f64).sum())
                .collect();
            close(&g.sum_a, &sa);
        }
    }

    #[test]
    fn rows_and_pixels_grams() {
        let a = Tensor::from_vec(&[50, 4], Rng::new(3).values(200, -0.5, 0.5));
        let b = Tensor::from_vec(&[50, 4], Rng::new(4).values(200, -0.5, 0.5));
        let mut g = Gram::new(4);
        g.add_rows(&a, &b).unwrap();
        let ca: Vec<Vec<f32>> = a.data.chunks(4).map(<[f32]>::to_vec).collect();
        let cb: Vec<Vec<f32>> = b.data.chunks(4).map(<[f32]>::to_vec).collect();
        let (aa, ab) = naive_gram(&ca, &cb);
        close(&g.aa, &aa);
        close(&g.ab, &ab);
        // The same data as [4, 5, 10] planes: one column per pixel.
        let planes = |t: &Tensor| {
            let mut d = vec![0f32; 200];
            for r in 0..50 {
                for c in 0..4 {
                    d[c * 50 + r] = t.data[r * 4 + c];
                }
            }
            Tensor::from_vec(&[4, 5, 10], d)
        };
        let mut h = Gram::new(4);
        h.add_pixels(&planes(&a), &planes(&b)).unwrap();
        close(&h.aa, &aa);
        close(&h.ab, &ab);
    }
}
