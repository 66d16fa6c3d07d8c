//! Gram matrices of a layer's inputs, for layer-wise least squares (pruning recovery).
//!
//! A conv, linear or transposed-conv layer computes, per output row `w` (one output channel's
//! weights), `z_j = w . a_j` over input columns `a_j`: im2col columns for a conv, the input
//! rows for a linear layer, the input pixels for a transposed conv whose kernel equals its
//! stride. Refitting `w` so that `w . a_j` matches a target `t . a_j` in least squares needs
//! only `A A^T` and the column sums, which this module accumulates over any number of scans
//! (in f64; each band's product runs on our f32 GEMM kernels, upper triangle only).
//!
//! Columns are held pixel-major (`n x k` row-major: column `j` is `k` contiguous values), the
//! layout the kernels stream their right operand in; a conv's im2col columns are built in
//! `(ky, kx, ci)` order from a channels-last copy of the input and permuted back to the
//! weight's `(ci, ky, kx)` order once per call.

use rayon::prelude::*;

use super::conv::{Geom, channels_last, im2col_pixel_major};
use super::gemm::{Finish, KC, gemm_panels, pack_into};
use super::kernel::{Isa, MR};
use super::scratch::SendPtr;
use super::sparse::Rulebook;
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

/// `n` columns of length `k`, pixel-major: column `j` is `data[j * k .. (j + 1) * k]`.
#[derive(Clone, Copy)]
struct Block<'a> {
    data: &'a [f32],
    k: usize,
    n: usize,
}

/// Row panels per task of the symmetric product (48 rows: one kernel strip wide).
const GROUP: usize = 6;

impl Block<'_> {
    fn row_sums(&self) -> Vec<f64> {
        let mut sums = vec![0f64; self.k];
        for col in self.data.chunks_exact(self.k.max(1)).take(self.n) {
            for (s, &v) in sums.iter_mut().zip(col) {
                *s += v as f64;
            }
        }
        sums
    }

    /// `A A^T` (`k x k` row-major in f32) into `out`, with `pack` as packing scratch: only
    /// the blocks on or above the diagonal are multiplied (in groups of 48 rows, in parallel
    /// when `parallel`), then mirrored.
    fn gram(&self, out: &mut [f32], pack: &mut Vec<f32>, parallel: bool) {
        let (k, n) = (self.k, self.n);
        assert!(self.data.len() >= k * n && out.len() == k * k);
        if k == 0 || n == 0 {
            out.fill(0.0);
            return;
        }
        pack.resize(k.div_ceil(MR) * MR * n, 0.0);
        // The left operand A (k x n): A[i][j] = data[j * k + i].
        let a = pack_into(k, n, self.data, 1, k, pack);
        // Right operand A^T: row j (column j of A) starts at j * k.
        let offs: Vec<isize> = (0..n).map(|j| (j * k) as isize).collect();
        let isa = Isa::detect();
        let panels = a.panels();
        let cp = SendPtr(out.as_mut_ptr());
        let group = |g: usize| {
            let p0 = g * GROUP;
            let p1 = (p0 + GROUP).min(panels);
            let j0 = p0 * MR;
            // SAFETY: rows p0*MR.. of `out` belong to this group alone; B row j, columns
            // j0..k, is data[j*k + j0 .. j*k + k]; C starts at row p0*MR, column j0 (ldc k).
            unsafe {
                gemm_panels(
                    isa,
                    a,
                    p0..p1,
                    self.data.as_ptr().add(j0),
                    &offs,
                    k - j0,
                    cp.get().add(j0 * k + j0),
                    k,
                    Finish::default(),
                    KC,
                );
            }
        };
        let groups = panels.div_ceil(GROUP);
        if parallel {
            (0..groups).into_par_iter().for_each(group);
        } else {
            (0..groups).for_each(group);
        }
        for i in 0..k {
            for j in 0..i {
                out[i * k + j] = out[j * k + i];
            }
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
    /// pixel-major `n_i x k` buffer (returning its first column's index and `n_i`). With
    /// `weights` (one per column), column `j` counts `weights[j]` times. `order[i]`: where
    /// the bands hold this Gram's index `i` (`None`: the same place).
    fn add_bands(
        &mut self,
        bands: usize,
        weights: Option<&[f32]>,
        order: Option<&[usize]>,
        band: impl Fn(usize, &mut Vec<f32>) -> (usize, usize) + Sync,
    ) {
        let k = self.k;
        let zero = || Partial::new(k);
        // One accumulator per thread, not per rayon split: each holds two k x k matrices.
        let threads = rayon::current_num_threads().max(1);
        let per_thread = bands.div_ceil(threads).max(1);
        // Fewer bands than threads (deep layers' small maps): the product itself in parallel.
        let inner = bands < threads;
        let total = (0..bands)
            .into_par_iter()
            .with_min_len(per_thread)
            .fold(zero, |mut p, bi| {
                let mut a = std::mem::take(&mut p.columns_buf);
                a.clear();
                let (j0, n) = band(bi, &mut a);
                match weights {
                    None => p.add(Block { data: &a, k, n }, inner),
                    Some(w) => p.add_weighted(&mut a, k, &w[j0..j0 + n], inner),
                }
                p.columns_buf = a;
                p
            })
            .reduce(zero, Partial::merge);
        self.absorb(total, order);
    }

    fn absorb(&mut self, p: Partial, order: Option<&[usize]>) {
        self.n += p.n;
        self.columns += p.columns;
        let k = self.k;
        let at = |i: usize| order.map_or(i, |o| o[i]);
        for (i, s) in self.sum.iter_mut().enumerate() {
            *s += p.sum[at(i)];
        }
        for i in 0..k {
            let src = &p.aa[at(i) * k..][..k];
            for (j, s) in self.aa[i * k..][..k].iter_mut().enumerate() {
                *s += src[at(j)];
            }
        }
    }

    /// Adds a sparse conv's input columns: one per output site of `rb`, holding at
    /// `t * cin + c` the feature `c` of the input site paired with it at kernel offset `t`
    /// (0 where there is none), the order of a `[Cout, kz, ky, kx, Cin]` weight row. `x` is
    /// the active sites' features, `n_in x cin`.
    pub fn add_sparse(&mut self, x: &Tensor, rb: &Rulebook) -> Result<(), NnError> {
        let k = self.k;
        let taps: usize = rb.kernel.iter().product();
        let cin = x.shape.get(1).copied().unwrap_or(0);
        if x.shape.len() != 2 || x.shape[0] != rb.n_in || taps * cin != k {
            return Err(shape_err(
                "gram sparse",
                "input",
                format!("[{}, {}]", rb.n_in, k / taps.max(1)),
                &x.shape,
            ));
        }
        let n_out = rb.out.len();
        let mut p = Partial::new(k);
        let mut buf = vec![0f32; BAND.min(n_out.max(1)) * k];
        for r0 in (0..n_out).step_by(BAND) {
            let n = BAND.min(n_out - r0);
            let band = &mut buf[..n * k];
            band.fill(0.0);
            for t in 0..taps {
                // Pairs are sorted by output row: this band's are one run.
                let pairs = rb.pairs(t);
                let start = pairs.partition_point(|q| (q[1] as usize) < r0);
                for &[i, o] in &pairs[start..] {
                    let o = o as usize;
                    if o >= r0 + n {
                        break;
                    }
                    let (i, at) = (i as usize, (o - r0) * k + t * cin);
                    band[at..at + cin].copy_from_slice(&x.data[i * cin..(i + 1) * cin]);
                }
            }
            p.add(Block { data: band, k, n }, true);
        }
        self.absorb(p, None);
        Ok(())
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
        for r0 in (0..rows).step_by(BAND) {
            let n = BAND.min(rows - r0);
            let block = Block {
                data: &a.data[r0 * k..(r0 + n) * k],
                k,
                n,
            };
            p.add(block, true);
        }
        self.absorb(p, None);
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
        let pixels = channels_last(&a.data, k, npix);
        self.add_bands(npix.div_ceil(BAND), weights, None, |bi, buf| {
            let p0 = bi * BAND;
            let n = BAND.min(npix - p0);
            buf.extend_from_slice(&pixels[p0 * k..(p0 + n) * k]);
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
        let x_hwc = channels_last(&a.data, cin, h * w);
        // The bands hold index (ci, tap) at tap * cin + ci.
        let taps = g.kh * g.kw;
        let order: Vec<usize> = (0..self.k).map(|i| (i % taps) * cin + i / taps).collect();
        let rows = (BAND / g.wo.max(1)).clamp(1, g.ho.max(1));
        self.add_bands(g.ho.div_ceil(rows), weights, Some(&order), |bi, buf| {
            let oy0 = bi * rows;
            let r = rows.min(g.ho - oy0);
            let n = r * g.wo;
            buf.resize(g.kdim() * n, 0.0);
            im2col_pixel_major(&g, &x_hwc, oy0, r, buf);
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

/// One thread's share of a [`Gram`], with its reusable buffers.
struct Partial {
    n: f64,
    columns: f64,
    sum: Vec<f64>,
    aa: Vec<f64>,
    product: Vec<f32>,
    pack: Vec<f32>,
    columns_buf: Vec<f32>,
}

impl Partial {
    fn new(k: usize) -> Self {
        Partial {
            n: 0.0,
            columns: 0.0,
            sum: vec![0.0; k],
            aa: vec![0.0; k * k],
            product: vec![0.0; k * k],
            pack: Vec::new(),
            columns_buf: Vec::new(),
        }
    }

    /// Adds one block of columns.
    fn add(&mut self, a: Block, parallel: bool) {
        self.n += a.n as f64;
        self.columns += a.n as f64;
        for (s, v) in self.sum.iter_mut().zip(a.row_sums()) {
            *s += v;
        }
        a.gram(&mut self.product, &mut self.pack, parallel);
        for (s, v) in self.aa.iter_mut().zip(&self.product) {
            *s += *v as f64;
        }
    }

    /// Adds the pixel-major `n x k` columns `a` with column weights `w`: the sums weighted,
    /// the product of the columns scaled by `sqrt(w)` (`a` is scaled in place).
    fn add_weighted(&mut self, a: &mut [f32], k: usize, w: &[f32], parallel: bool) {
        let n = w.len();
        self.n += w.iter().map(|&v| v as f64).sum::<f64>();
        self.columns += n as f64;
        for (col, &wj) in a.chunks_exact_mut(k.max(1)).zip(w) {
            let root = wj.sqrt();
            for (s, x) in self.sum.iter_mut().zip(col.iter_mut()) {
                *s += (*x * wj) as f64;
                *x *= root;
            }
        }
        let block = Block { data: a, k, n };
        block.gram(&mut self.product, &mut self.pack, parallel);
        for (s, v) in self.aa.iter_mut().zip(&self.product) {
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
    use crate::rng::Rng;

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

    /// A sparse conv's columns against explicit ones: every output site of a strided
    /// rulebook, each kernel offset's paired input features in weight-row order.
    #[test]
    fn sparse_columns_match_explicit_gathering() {
        use crate::nn::sparse::{Rulebook, Sites, SparseGeometry};
        let mut rng = Rng::new(3);
        let shape = [5, 9, 8];
        let mut coords = Vec::new();
        for z in 0..5u32 {
            for y in 0..9u32 {
                for x in 0..8u32 {
                    if rng.chance(0.3) {
                        coords.push([z, y, x]);
                    }
                }
            }
        }
        let sites = Sites::new(shape, coords).unwrap();
        let geom = SparseGeometry {
            kernel: [3, 3, 3],
            stride: [2, 2, 2],
            padding: [1, 1, 1],
        };
        let rb = Rulebook::strided(&sites, geom).unwrap();
        let cin = 3;
        let x = Tensor::from_vec(
            &[sites.len(), cin],
            rng.values(sites.len() * cin, -1.0, 1.0),
        );
        let k = 27 * cin;
        let mut cols = vec![vec![0f32; k]; rb.out.len()];
        for t in 0..27 {
            for &[i, o] in rb.pairs(t) {
                for c in 0..cin {
                    cols[o as usize][t * cin + c] = x.data[i as usize * cin + c];
                }
            }
        }
        let mut g = Gram::new(k);
        g.add_sparse(&x, &rb).unwrap();
        assert_eq!(g.columns as usize, rb.out.len());
        close(&g.aa, &naive_gram(&cols));
        let wrong = Tensor::zeros(&[sites.len(), cin + 1]);
        assert!(g.add_sparse(&wrong, &rb).is_err());
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
        // 7 channels with a 3x3 kernel: 63 rows, more than one 48-row group and a tail panel.
        for (c, k, s, p) in [
            (3, 3, 1, 1),
            (3, 3, 2, 1),
            (3, 2, 2, 0),
            (3, 1, 1, 0),
            (7, 3, 1, 1),
        ] {
            let a = Tensor::from_vec(&[c, 9, 11], Rng::new(1).values(c * 99, -0.5, 0.5));
            let mut g = Gram::new(c * k * k);
            g.add_conv(&a, (k, k), s, p, None).unwrap();
            let ca = naive_cols(&a, k, s, p);
            close(&g.aa, &naive_gram(&ca));
            assert_eq!(g.n as usize, ca.len());
            let sa: Vec<f64> = (0..c * k * k)
                .map(|i| ca.iter().map(|col| col[i] as f64).sum())
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
