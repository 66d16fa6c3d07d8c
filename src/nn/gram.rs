//! Gram matrices of a layer's inputs, for layer-wise least squares (pruning recovery).
//!
//! A conv, linear or transposed-conv layer computes, per output row `w` (one output channel's
//! weights), `z_j = w . a_j` over input columns `a_j`: im2col columns for a conv, the input
//! rows for a linear layer, the input pixels for a transposed conv whose kernel equals its
//! stride. Refitting `w` so that `w . a_j` matches a target `t . a_j` in least squares needs
//! only `A A^T` and the column sums, which this module accumulates over any number of scans
//! (in f64; each band's product runs on the `gemm` crate's f32 kernels, as the weight
//! gradients do).

use rayon::prelude::*;

use super::conv::{Geom, im2col};
use super::{NnError, Tensor, shape_err};

/// Accumulated second moments of `k`-long input columns `a_j` over `n` columns.
#[derive(Clone, Debug)]
pub struct Gram {
    pub k: usize,
    /// Total weight of the columns accumulated: their number when unweighted.
    pub n: f64,
    /// Number of columns accumulated, whatever their weights.
    pub columns: f64,
    /// `sum_j a_j` (length `k`).
    pub sum: Vec<f64>,
    /// `sum_j a_j a_j^T`, `k x k` row-major.
    pub aa: Vec<f64>,
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

    /// `A A^T`, `k x k` row-major in f32.
    fn gram(&self, out: &mut [f32], parallelism: gemm::Parallelism) {
        assert!(self.fits() && out.len() == self.k * self.k);
        if self.k == 0 || self.n == 0 {
            out.fill(0.0);
            return;
        }
        // SAFETY: `out` is k x k (column stride 1, row stride k); the block is read as the
        // k x n left operand (row stride `row`, column stride `col`) and as the n x k right
        // operand A^T (column i is row i: column stride `row`, row stride `col`); `fits`
        // checked that every element addressed lies inside the slice.
        unsafe {
            gemm::gemm(
                self.k,
                self.k,
                self.n,
                out.as_mut_ptr(),
                1,
                self.k as isize,
                false,
                self.data.as_ptr(),
                self.col as isize,
                self.row as isize,
                self.data.as_ptr(),
                self.row as isize,
                self.col as isize,
                0.0,
                1.0,
                false,
                false,
                false,
                parallelism,
            );
        }
    }
}

/// Columns per band: bounds the scratch (`k x BAND` floats) and gives rayon work.
const BAND: usize = 2048;

impl Gram {
    pub fn new(k: usize) -> Self {
        Gram {
            k,
            n: 0.0,
            columns: 0.0,
            sum: vec![0.0; k],
            aa: vec![0.0; k * k],
        }
    }

    /// Adds the bands `0..bands` of columns, each written by `band(i, a)` as a compact
    /// `k x n_i` row-major buffer (returning its first column's index and `n_i`). With
    /// `weights` (one per column), column `j` counts `weights[j]` times.
    fn add_bands(
        &mut self,
        bands: usize,
        weights: Option<&[f32]>,
        band: impl Fn(usize, &mut Vec<f32>) -> (usize, usize) + Sync,
    ) {
        let k = self.k;
        let zero = || Partial::new(k);
        // One accumulator per thread, not per rayon split: each holds two k x k matrices.
        let threads = rayon::current_num_threads().max(1);
        let per_thread = bands.div_ceil(threads).max(1);
        // Fewer bands than threads (deep layers' small maps): the product itself in parallel.
        let inner = if bands < threads {
            gemm::Parallelism::Rayon(threads)
        } else {
            gemm::Parallelism::None
        };
        let total = (0..bands)
            .into_par_iter()
            .with_min_len(per_thread)
            .fold(zero, |mut p, bi| {
                let mut a = Vec::new();
                let (j0, n) = band(bi, &mut a);
                let block = Block {
                    data: &a,
                    k,
                    n,
                    row: n,
                    col: 1,
                };
                match weights {
                    None => p.add(block, inner),
                    Some(w) => p.add_weighted(&mut a, k, &w[j0..j0 + n], inner),
                }
                p
            })
            .reduce(zero, Partial::merge);
        self.absorb(total);
    }

    fn absorb(&mut self, p: Partial) {
        self.n += p.n;
        self.columns += p.columns;
        for (s, v) in self.sum.iter_mut().zip(&p.sum) {
            *s += v;
        }
        for (s, v) in self.aa.iter_mut().zip(&p.aa) {
            *s += v;
        }
    }

    /// Adds a linear layer's input rows: `a` is `rows x k` (one column per row).
    pub fn add_rows(&mut self, a: &Tensor) -> Result<(), NnError> {
        let k = self.k;
        if a.shape.len() != 2 || a.shape[1] != k {
            return Err(shape_err(
                "gram rows",
                "input",
                format!("[rows, {k}]"),
                &a.shape,
            ));
        }
        let rows = a.shape[0];
        let mut p = Partial::new(k);
        // PFN rows: few, long bands; the product in parallel.
        let threads = rayon::current_num_threads().max(1);
        for r0 in (0..rows).step_by(BAND) {
            let n = BAND.min(rows - r0);
            let block = Block {
                data: &a.data[r0 * k..(r0 + n) * k],
                k,
                n,
                row: 1,
                col: k,
            };
            p.add(block, gemm::Parallelism::Rayon(threads));
        }
        self.absorb(p);
        Ok(())
    }

    /// Adds a transposed conv's input pixels: `a` is a `[k, H, W]` map (one column per
    /// pixel; with kernel == stride every output pixel reads exactly one input pixel).
    /// `weights`: one per pixel (see [`Gram::add_conv`]).
    pub fn add_pixels(&mut self, a: &Tensor, weights: Option<&[f32]>) -> Result<(), NnError> {
        let k = self.k;
        if a.shape.len() != 3 || a.shape[0] != k {
            return Err(shape_err(
                "gram pixels",
                "input",
                format!("[{k}, H, W]"),
                &a.shape,
            ));
        }
        let npix = a.shape[1] * a.shape[2];
        check_weights(weights, npix)?;
        self.add_bands(npix.div_ceil(BAND), weights, |bi, buf| {
            let p0 = bi * BAND;
            let n = BAND.min(npix - p0);
            for i in 0..k {
                buf.extend_from_slice(&a.data[i * npix + p0..][..n]);
            }
            (p0, n)
        });
        Ok(())
    }

    /// Adds a conv's im2col columns (kernel `kh x kw`, `stride`, zero `padding`): `a` is a
    /// `[Cin, H, W]` map with `Cin * kh * kw == k`; one column per output pixel. `weights`
    /// (one per output pixel, row-major, non-negative) makes column `j` count `weights[j]`
    /// times, in `n` and `sum` as in `A A^T`: a weighted least-squares fit.
    pub fn add_conv(
        &mut self,
        a: &Tensor,
        kernel: (usize, usize),
        stride: usize,
        padding: usize,
        weights: Option<&[f32]>,
    ) -> Result<(), NnError> {
        if a.shape.len() != 3 {
            return Err(shape_err("gram conv", "input", "[Cin, H, W]", &a.shape));
        }
        let (cin, h, w) = (a.shape[0], a.shape[1], a.shape[2]);
        let g = Geom::new(
            "gram conv",
            cin,
            h,
            w,
            1,
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
        check_weights(weights, g.ho * g.wo)?;
        let rows = (BAND / g.wo.max(1)).clamp(1, g.ho.max(1));
        self.add_bands(g.ho.div_ceil(rows), weights, |bi, buf| {
            let oy0 = bi * rows;
            let r = rows.min(g.ho - oy0);
            let n = r * g.wo;
            buf.resize(g.kdim() * n, 0.0);
            im2col(&g, &a.data, oy0, r, buf);
            (oy0 * g.wo, n)
        });
        Ok(())
    }
}

/// Column weights must be one finite, non-negative value per column.
fn check_weights(weights: Option<&[f32]>, columns: usize) -> Result<(), NnError> {
    match weights {
        Some(w) if w.len() != columns => Err(shape_err(
            "gram",
            "column weights",
            format!("[{columns}]"),
            &[w.len()],
        )),
        Some(w) if w.iter().any(|v| !(v.is_finite() && *v >= 0.0)) => Err(NnError::Invalid {
            op: "gram",
            msg: "column weights must be finite and non-negative".into(),
        }),
        _ => Ok(()),
    }
}

/// One thread's share of a [`Gram`].
struct Partial {
    n: f64,
    columns: f64,
    sum: Vec<f64>,
    aa: Vec<f64>,
    scratch: Vec<f32>,
}

impl Partial {
    fn new(k: usize) -> Self {
        Partial {
            n: 0.0,
            columns: 0.0,
            sum: vec![0.0; k],
            aa: vec![0.0; k * k],
            scratch: vec![0.0; k * k],
        }
    }

    /// Adds one block of columns.
    fn add(&mut self, a: Block, parallelism: gemm::Parallelism) {
        self.n += a.n as f64;
        self.columns += a.n as f64;
        for (s, v) in self.sum.iter_mut().zip(a.row_sums()) {
            *s += v;
        }
        a.gram(&mut self.scratch, parallelism);
        for (s, v) in self.aa.iter_mut().zip(&self.scratch) {
            *s += *v as f64;
        }
    }

    /// Adds the compact `k x n` row-major columns `a` with column weights `w`: the sums
    /// weighted, the product of the columns scaled by `sqrt(w)` (`a` is scaled in place).
    fn add_weighted(&mut self, a: &mut [f32], k: usize, w: &[f32], parallelism: gemm::Parallelism) {
        let n = w.len();
        self.n += w.iter().map(|&v| v as f64).sum::<f64>();
        self.columns += n as f64;
        let root: Vec<f32> = w.iter().map(|v| v.sqrt()).collect();
        for (s, row) in self.sum.iter_mut().zip(a.chunks_exact_mut(n.max(1))) {
            *s += row
                .iter()
                .zip(w)
                .map(|(&x, &v)| (x * v) as f64)
                .sum::<f64>();
            for (x, r) in row.iter_mut().zip(&root) {
                *x *= r;
            }
        }
        let block = Block {
            data: a,
            k,
            n,
            row: n,
            col: 1,
        };
        block.gram(&mut self.scratch, parallelism);
        for (s, v) in self.aa.iter_mut().zip(&self.scratch) {
            *s += *v as f64;
        }
    }

    fn merge(mut self, o: Partial) -> Partial {
        self.n += o.n;
        self.columns += o.columns;
        for (x, y) in self.sum.iter_mut().zip(&o.sum) {
            *x += y;
        }
        for (x, y) in self.aa.iter_mut().zip(&o.aa) {
            *x += y;
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

    fn naive_gram(a: &[Vec<f32>]) -> Vec<f64> {
        let k = a[0].len();
        let mut aa = vec![0f64; k * k];
        for ca in a {
            for i in 0..k {
                for j in 0..k {
                    aa[i * k + j] += ca[i] as f64 * ca[j] as f64;
                }
            }
        }
        aa
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
            let mut g = Gram::new(3 * k * k);
            g.add_conv(&a, (k, k), s, p, None).unwrap();
            let ca = naive_cols(&a, k, s, p);
            close(&g.aa, &naive_gram(&ca));
            assert_eq!(g.n as usize, ca.len());
            let sa: Vec<f64> = (0..3 * k * k)
                .map(|i| ca.iter().map(|c| c[i] as f64).sum())
                .collect();
            close(&g.sum, &sa);
        }
    }

    /// A column of weight `w` counts as `w` copies of it (integer weights checked against
    /// repeated columns), in `n`, `sum` and `A A^T`; bad weights are refused.
    #[test]
    fn weighted_columns_count_as_repeated_columns() {
        let a = Tensor::from_vec(&[2, 7, 6], Rng::new(5).values(2 * 42, -0.5, 0.5));
        let ca = naive_cols(&a, 3, 2, 1);
        let weights: Vec<f32> = (0..ca.len()).map(|j| (j % 4) as f32).collect();
        let repeated: Vec<Vec<f32>> = ca
            .iter()
            .zip(&weights)
            .flat_map(|(c, &w)| std::iter::repeat_n(c.clone(), w as usize))
            .collect();
        let mut g = Gram::new(18);
        g.add_conv(&a, (3, 3), 2, 1, Some(&weights)).unwrap();
        close(&g.aa, &naive_gram(&repeated));
        assert_eq!(g.n as usize, repeated.len());
        assert_eq!(g.columns as usize, ca.len());
        let sa: Vec<f64> = (0..18)
            .map(|i| repeated.iter().map(|c| c[i] as f64).sum())
            .collect();
        close(&g.sum, &sa);
        assert!(g.add_conv(&a, (3, 3), 2, 1, Some(&weights[1..])).is_err());
        let mut bad = weights.clone();
        bad[0] = -1.0;
        assert!(g.add_conv(&a, (3, 3), 2, 1, Some(&bad)).is_err());
        let mut p = Gram::new(2);
        p.add_pixels(&a, Some(&[2.0; 42])).unwrap();
        let mut q = Gram::new(2);
        q.add_pixels(&a, None).unwrap();
        close(&p.aa, &q.aa.iter().map(|v| 2.0 * v).collect::<Vec<_>>());
    }

    #[test]
    fn rows_and_pixels_grams() {
        let a = Tensor::from_vec(&[50, 4], Rng::new(3).values(200, -0.5, 0.5));
        let mut g = Gram::new(4);
        g.add_rows(&a).unwrap();
        let ca: Vec<Vec<f32>> = a.data.chunks(4).map(<[f32]>::to_vec).collect();
        let aa = naive_gram(&ca);
        close(&g.aa, &aa);
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
        h.add_pixels(&planes(&a), None).unwrap();
        close(&h.aa, &aa);
    }
}
