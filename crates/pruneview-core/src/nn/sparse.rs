//! Sparse 3-D convolution as spconv computes it (`SubMConv3d`, strided `SparseConv3d`), on
//! the CPU, for the voxel detectors' 3-D backbones.
//!
//! A sparse tensor is a set of active sites `(z, y, x)` of a grid (one scan: no batch index)
//! with one feature row per site ([`Sites`] plus an `n x C` row-major buffer). A conv's work is
//! described by its [`Rulebook`]: for every kernel offset, the (input row, output row) pairs
//! it connects. Building one is hashing; layers that share spconv's `indice_key` share it.
//! The compute ([`SparseConv3d::forward`]) runs over tiles of output rows in parallel: per
//! tile and offset, gather the input rows into packed panels, one GEMM with that offset's
//! `Cin x Cout` weights on our kernels, and add the products into the tile's rows. Tiles own
//! disjoint outputs, so nothing is locked and the result does not depend on thread timing.
//!
//! Output sites: a submanifold conv keeps its input sites (it never dilates); a strided conv
//! has every site `o` with an active input `i = o * s - p + d` for some kernel offset `d`,
//! inside the output grid `(n + 2p - k) / s + 1`. Those sites are kept sorted by `(z, y, x)`,
//! the canonical order the reference fixtures use (spconv's own order is an implementation
//! detail that no dense result depends on).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use rayon::prelude::*;

use super::gemm::{Finish, KC, gemm_block, pack_cols_into, pack_rows_into};
use super::kernel::{Isa, MR};
use super::scratch::with_scratch;
use super::{NnError, Tensor, shape_err};

/// Active sites of a 3-D grid `shape = [D, H, W]` (z, y, x), one per feature row.
#[derive(Clone, Debug, PartialEq)]
pub struct Sites {
    pub shape: [usize; 3],
    pub coords: Vec<[u32; 3]>,
}

/// Grids larger than this many cells are refused: site keys must fit comfortably in a u64
/// and a config asking for more is a mistake (KITTI SECOND has 41 x 1600 x 1408 = 9.2e7).
pub const MAX_GRID_CELLS: u64 = 1 << 40;

impl Sites {
    /// Checks that every site lies inside `shape` and that no site repeats.
    pub fn new(shape: [usize; 3], coords: Vec<[u32; 3]>) -> Result<Sites, NnError> {
        let cells = shape.iter().try_fold(1u64, |a, &n| a.checked_mul(n as u64));
        if cells.is_none_or(|c| c > MAX_GRID_CELLS) {
            return Err(invalid(format!(
                "the sparse grid {shape:?} has more than {MAX_GRID_CELLS} cells"
            )));
        }
        let sites = Sites { shape, coords };
        if let Some(c) = sites
            .coords
            .iter()
            .find(|c| (0..3).any(|d| c[d] as usize >= shape[d]))
        {
            return Err(invalid(format!(
                "site {c:?} lies outside the grid {shape:?}"
            )));
        }
        if sites.index().len() != sites.coords.len() {
            return Err(invalid("a site appears twice".into()));
        }
        Ok(sites)
    }

    pub fn len(&self) -> usize {
        self.coords.len()
    }

    pub fn is_empty(&self) -> bool {
        self.coords.is_empty()
    }

    fn key(&self, c: [u32; 3]) -> u64 {
        (c[0] as u64 * self.shape[1] as u64 + c[1] as u64) * self.shape[2] as u64 + c[2] as u64
    }

    /// Site key -> row.
    fn index(&self) -> SiteMap {
        let mut map = SiteMap::with_capacity_and_hasher(self.coords.len(), Default::default());
        for (i, &c) in self.coords.iter().enumerate() {
            map.insert(self.key(c), i as u32);
        }
        map
    }
}

/// A kernel's extent, stride and zero padding per dimension (z, y, x).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SparseGeometry {
    pub kernel: [usize; 3],
    pub stride: [usize; 3],
    pub padding: [usize; 3],
}

impl SparseGeometry {
    /// The output grid of a strided conv on `shape`.
    pub fn out_shape(&self, shape: [usize; 3]) -> Result<[usize; 3], NnError> {
        let mut out = [0; 3];
        for d in 0..3 {
            let (k, s, p) = (self.kernel[d], self.stride[d], self.padding[d]);
            if k == 0 || s == 0 {
                return Err(invalid(format!(
                    "kernel {self:?}: sizes and strides must be >= 1"
                )));
            }
            let span = shape[d] + 2 * p;
            if span < k {
                return Err(invalid(format!(
                    "kernel {self:?} is larger than the padded grid {shape:?}"
                )));
            }
            out[d] = (span - k) / s + 1;
        }
        Ok(out)
    }

    fn taps(&self) -> usize {
        self.kernel.iter().product()
    }
}

/// Which input row feeds which output row, per kernel offset.
#[derive(Clone, Debug)]
pub struct Rulebook {
    pub n_in: usize,
    /// The output sites (a submanifold conv's are its input sites).
    pub out: Sites,
    pub kernel: [usize; 3],
    /// `pairs[t]`: `[input row, output row]` for kernel offset `t = (kz * KY + ky) * KX + kx`,
    /// sorted by output row.
    pairs: Vec<Vec<[u32; 2]>>,
    /// The same pairs as `[output row, input row]` sorted by input row, for the input
    /// gradient; built on first use.
    by_input: std::sync::OnceLock<Vec<Vec<[u32; 2]>>>,
}

impl Rulebook {
    /// The rulebook of a submanifold conv (odd kernel, stride 1, centred): output sites are
    /// the input sites, and output `o` reads input `o + t - k / 2` for offset `t`.
    pub fn submanifold(sites: &Sites, kernel: [usize; 3]) -> Result<Rulebook, NnError> {
        if kernel.iter().any(|&k| k % 2 == 0) {
            return Err(invalid(format!(
                "a submanifold conv needs an odd kernel, got {kernel:?}"
            )));
        }
        let map = sites.index();
        let taps = kernel.iter().product::<usize>();
        let half = kernel.map(|k| (k / 2) as i64);
        let shape = sites.shape.map(|n| n as i64);
        // Chunks of output rows in parallel; each chunk's pairs come out sorted by output.
        let chunks: Vec<Vec<Vec<[u32; 2]>>> = sites
            .coords
            .par_chunks(4096)
            .enumerate()
            .map(|(ci, chunk)| {
                let mut pairs = vec![Vec::new(); taps];
                for (j, c) in chunk.iter().enumerate() {
                    let o = (ci * 4096 + j) as u32;
                    for (t, out) in pairs.iter_mut().enumerate() {
                        let off = offset(t, kernel);
                        let mut n = [0u32; 3];
                        let mut inside = true;
                        for d in 0..3 {
                            let v = c[d] as i64 + off[d] as i64 - half[d];
                            inside &= v >= 0 && v < shape[d];
                            n[d] = v.max(0) as u32;
                        }
                        if let Some(&i) = inside.then(|| map.get(&sites.key(n))).flatten() {
                            out.push([i, o]);
                        }
                    }
                }
                pairs
            })
            .collect();
        Ok(Rulebook {
            n_in: sites.len(),
            out: sites.clone(),
            kernel,
            pairs: concat_chunks(chunks, taps),
            by_input: Default::default(),
        })
    }

    /// The rulebook of a strided sparse conv: input `i` feeds output `o = (i + p - t) / s`
    /// where that divides exactly and lies in the output grid.
    pub fn strided(sites: &Sites, geom: SparseGeometry) -> Result<Rulebook, NnError> {
        let out_shape = geom.out_shape(sites.shape)?;
        let taps = geom.taps();
        let target = |c: [u32; 3], t: usize| -> Option<[u32; 3]> {
            let off = offset(t, geom.kernel);
            let mut o = [0u32; 3];
            for d in 0..3 {
                let v = c[d] as i64 + geom.padding[d] as i64 - off[d] as i64;
                let s = geom.stride[d] as i64;
                if v < 0 || v % s != 0 || v / s >= out_shape[d] as i64 {
                    return None;
                }
                o[d] = (v / s) as u32;
            }
            Some(o)
        };
        let mut outs: Vec<[u32; 3]> = sites
            .coords
            .par_iter()
            .flat_map_iter(|&c| (0..taps).filter_map(move |t| target(c, t)))
            .collect();
        outs.par_sort_unstable();
        outs.dedup();
        let out = Sites {
            shape: out_shape,
            coords: outs,
        };
        let map = out.index();
        let chunks: Vec<Vec<Vec<[u32; 2]>>> = sites
            .coords
            .par_chunks(4096)
            .enumerate()
            .map(|(ci, chunk)| {
                let mut pairs = vec![Vec::new(); taps];
                for (j, &c) in chunk.iter().enumerate() {
                    let i = (ci * 4096 + j) as u32;
                    for (t, p) in pairs.iter_mut().enumerate() {
                        if let Some(o) = target(c, t) {
                            p.push([i, map[&out.key(o)]]);
                        }
                    }
                }
                pairs
            })
            .collect();
        let mut pairs = concat_chunks(chunks, taps);
        pairs
            .par_iter_mut()
            .for_each(|p| p.sort_unstable_by_key(|&[i, o]| (o, i)));
        Ok(Rulebook {
            n_in: sites.len(),
            out,
            kernel: geom.kernel,
            pairs,
            by_input: Default::default(),
        })
    }

    /// (input, output) pairs over all offsets: a conv's multiply-adds are this times
    /// `Cin x Cout`.
    pub fn pair_count(&self) -> usize {
        self.pairs.iter().map(Vec::len).sum()
    }

    /// The pairs of kernel offset `t`, sorted by output row.
    pub fn pairs(&self, t: usize) -> &[[u32; 2]] {
        &self.pairs[t]
    }

    fn by_input(&self) -> &[Vec<[u32; 2]>] {
        self.by_input.get_or_init(|| {
            self.pairs
                .par_iter()
                .map(|p| {
                    let mut t: Vec<[u32; 2]> = p.iter().map(|&[i, o]| [o, i]).collect();
                    t.sort_unstable_by_key(|&[o, i]| (i, o));
                    t
                })
                .collect()
        })
    }
}

/// Kernel offset `t` as `[kz, ky, kx]`.
fn offset(t: usize, k: [usize; 3]) -> [usize; 3] {
    [t / (k[1] * k[2]), (t / k[2]) % k[1], t % k[2]]
}

fn concat_chunks(chunks: Vec<Vec<Vec<[u32; 2]>>>, taps: usize) -> Vec<Vec<[u32; 2]>> {
    let mut pairs: Vec<Vec<[u32; 2]>> = (0..taps)
        .map(|t| Vec::with_capacity(chunks.iter().map(|c| c[t].len()).sum()))
        .collect();
    for chunk in chunks {
        for (p, c) in pairs.iter_mut().zip(chunk) {
            p.extend_from_slice(&c);
        }
    }
    pairs
}

/// Output rows per parallel task of [`SparseConv3d::forward`].
const TILE: usize = 512;
/// Pairs per GEMM call (bounds the scratch).
const CHUNK: usize = 256;

/// A sparse conv layer with its weights laid out per kernel offset (`[tap][Cin][Cout]`).
#[derive(Clone, Debug)]
pub struct SparseConv3d {
    pub cin: usize,
    pub cout: usize,
    pub kernel: [usize; 3],
    weight: Vec<f32>,
    bias: Option<Vec<f32>>,
}

impl SparseConv3d {
    /// From a weight in spconv 2.3's layout `[Cout, kz, ky, kx, Cin]` and an optional bias.
    pub fn new(weight: &Tensor, bias: Option<&[f32]>) -> Result<SparseConv3d, NnError> {
        const OP: &str = "sparse conv";
        let [cout, kz, ky, kx, cin] = match weight.shape[..] {
            [a, b, c, d, e] => [a, b, c, d, e],
            _ => {
                return Err(shape_err(
                    OP,
                    "weight",
                    "[Cout, kz, ky, kx, Cin]",
                    &weight.shape,
                ));
            }
        };
        if let Some(b) = bias.filter(|b| b.len() != cout) {
            return Err(shape_err(OP, "bias", format!("[{cout}]"), &[b.len()]));
        }
        let taps = kz * ky * kx;
        let mut w = vec![0f32; taps * cin * cout];
        for co in 0..cout {
            for t in 0..taps {
                for ci in 0..cin {
                    w[(t * cin + ci) * cout + co] = weight.data[(co * taps + t) * cin + ci];
                }
            }
        }
        Ok(SparseConv3d {
            cin,
            cout,
            kernel: [kz, ky, kx],
            weight: w,
            bias: bias.map(<[f32]>::to_vec),
        })
    }

    /// `out[o] = bias + sum over pairs (i, o) of offset t of W_t^T x[i]`: `x` is `n_in x Cin`
    /// row-major, the result `n_out x Cout`.
    pub fn forward(&self, x: &[f32], rb: &Rulebook) -> Result<Vec<f32>, NnError> {
        self.check(rb)?;
        if x.len() != rb.n_in * self.cin {
            return Err(shape_err(
                "sparse conv",
                "input",
                format!("[{}, {}]", rb.n_in, self.cin),
                &[x.len()],
            ));
        }
        Ok(gather_gemm_scatter(
            x,
            self.cin,
            &rb.pairs,
            &self.weight,
            self.bias.as_deref(),
            rb.out.len(),
            self.cout,
        ))
    }

    /// The vector-Jacobian product for `x` (the forward's input) and `dy = dL/d(output)`
    /// (`n_out x Cout`): `dL/dx` when `need_dx`, `dL/dW` in spconv 2.3's layout and `dL/db`.
    pub fn backward(
        &self,
        x: &[f32],
        rb: &Rulebook,
        dy: &[f32],
        need_dx: bool,
    ) -> Result<SparseGrads, NnError> {
        const OP: &str = "sparse conv vjp";
        self.check(rb)?;
        let (cin, cout) = (self.cin, self.cout);
        let taps = self.kernel.iter().product::<usize>();
        if x.len() != rb.n_in * cin {
            return Err(shape_err(
                OP,
                "input",
                format!("[{}, {cin}]", rb.n_in),
                &[x.len()],
            ));
        }
        if dy.len() != rb.out.len() * cout {
            return Err(shape_err(
                OP,
                "dy",
                format!("[{}, {cout}]", rb.out.len()),
                &[dy.len()],
            ));
        }
        // dx = the conv with every W_t transposed over the pairs reversed.
        let dx = need_dx.then(|| {
            let mut wt = vec![0f32; self.weight.len()];
            for t in 0..taps {
                for ci in 0..cin {
                    for co in 0..cout {
                        wt[(t * cout + co) * cin + ci] = self.weight[(t * cin + ci) * cout + co];
                    }
                }
            }
            gather_gemm_scatter(dy, cout, rb.by_input(), &wt, None, rb.n_in, cin)
        });
        // dW_t = sum over the pairs of offset t of x[i] dy[o]^T, offsets in parallel.
        let isa = Isa::detect();
        let dw_taps: Vec<Vec<f64>> = rb
            .pairs
            .par_iter()
            .map(|pairs| {
                let mut total = vec![0f64; cin * cout];
                let mut acc = vec![0f32; cin * cout];
                let mut rows = Vec::with_capacity(CHUNK);
                let mut offs = Vec::with_capacity(CHUNK);
                with_scratch(cin.div_ceil(MR) * MR * CHUNK, |pack| {
                    for chunk in pairs.chunks(CHUNK) {
                        rows.clear();
                        rows.extend(chunk.iter().map(|p| p[0]));
                        offs.clear();
                        offs.extend(chunk.iter().map(|p| (p[1] as usize * cout) as isize));
                        let a = pack_cols_into(&rows, x, cin, cin, pack);
                        // SAFETY: B row j is dy[o_j * cout ..][..cout] (offs); acc is
                        // cin x cout.
                        unsafe {
                            gemm_block(
                                isa,
                                a,
                                dy.as_ptr(),
                                &offs,
                                cout,
                                acc.as_mut_ptr(),
                                cout,
                                Finish::default(),
                                KC,
                            );
                        }
                        for (t, &v) in total.iter_mut().zip(&acc) {
                            *t += v as f64;
                        }
                    }
                });
                total
            })
            .collect();
        let mut dw = vec![0f32; taps * cin * cout];
        for (t, g) in dw_taps.iter().enumerate() {
            for ci in 0..cin {
                for co in 0..cout {
                    dw[(co * taps + t) * cin + ci] = g[ci * cout + co] as f32;
                }
            }
        }
        let mut db = vec![0f64; cout];
        for row in dy.chunks_exact(cout.max(1)) {
            for (b, &v) in db.iter_mut().zip(row) {
                *b += v as f64;
            }
        }
        let [kz, ky, kx] = self.kernel;
        Ok(SparseGrads {
            dx,
            dw: Tensor::from_vec(&[cout, kz, ky, kx, cin], dw),
            db: db.into_iter().map(|v| v as f32).collect(),
        })
    }

    fn check(&self, rb: &Rulebook) -> Result<(), NnError> {
        if rb.kernel != self.kernel {
            return Err(invalid(format!(
                "the rulebook is for a {:?} kernel, the weight is {:?}",
                rb.kernel, self.kernel
            )));
        }
        Ok(())
    }
}

/// Gradients of a sparse conv (see [`SparseConv3d::backward`]).
#[derive(Clone, Debug)]
pub struct SparseGrads {
    /// `n_in x Cin`, when requested.
    pub dx: Option<Vec<f32>>,
    /// `[Cout, kz, ky, kx, Cin]`.
    pub dw: Tensor,
    pub db: Vec<f32>,
}

/// `out[dst] = bias + sum over offsets t and pairs (src, dst) of W_t^T x[src]`, with
/// `pairs[t]` sorted by `dst` and `weight` laid out `[t][Cin][Cout]`: tiles of output rows in
/// parallel, one packed gather and GEMM per tile, offset and chunk of pairs.
fn gather_gemm_scatter(
    x: &[f32],
    cin: usize,
    pairs: &[Vec<[u32; 2]>],
    weight: &[f32],
    bias: Option<&[f32]>,
    n_out: usize,
    cout: usize,
) -> Vec<f32> {
    let mut out = vec![0f32; n_out * cout];
    if cout == 0 || n_out == 0 {
        return out;
    }
    let isa = Isa::detect();
    let offs: Vec<isize> = (0..cin).map(|ci| (ci * cout) as isize).collect();
    let packed = CHUNK.div_ceil(MR) * MR * cin;
    out.par_chunks_mut(TILE * cout)
        .enumerate()
        .for_each(|(ti, tile)| {
            let o0 = (ti * TILE) as u32;
            let o1 = o0 + (tile.len() / cout) as u32;
            if let Some(b) = bias {
                for row in tile.chunks_exact_mut(cout) {
                    row.copy_from_slice(b);
                }
            }
            with_scratch(packed + CHUNK * cout, |buf| {
                let (pack, prod) = buf.split_at_mut(packed);
                let mut rows = Vec::with_capacity(CHUNK);
                for (t, pairs) in pairs.iter().enumerate() {
                    let a = pairs.partition_point(|p| p[1] < o0);
                    let b = pairs.partition_point(|p| p[1] < o1);
                    let w = &weight[t * cin * cout..][..cin * cout];
                    for chunk in pairs[a..b].chunks(CHUNK) {
                        rows.clear();
                        rows.extend(chunk.iter().map(|p| p[0]));
                        let panels = pack_rows_into(&rows, x, cin, cin, pack);
                        // SAFETY: B row ci is w[ci * cout ..][..cout]; prod holds
                        // chunk.len() rows of cout.
                        unsafe {
                            gemm_block(
                                isa,
                                panels,
                                w.as_ptr(),
                                &offs,
                                cout,
                                prod.as_mut_ptr(),
                                cout,
                                Finish::default(),
                                KC,
                            );
                        }
                        for (p, v) in chunk.iter().zip(prod.chunks_exact(cout)) {
                            let row = &mut tile[(p[1] - o0) as usize * cout..][..cout];
                            for (r, &x) in row.iter_mut().zip(v) {
                                *r += x;
                            }
                        }
                    }
                }
            });
        });
    out
}

fn invalid(msg: String) -> NnError {
    NnError::Invalid {
        op: "sparse conv",
        msg,
    }
}

/// Hashes site keys (already well spread integers) with one multiply.
#[derive(Default)]
struct SiteHasher(u64);

impl Hasher for SiteHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ b as u64).wrapping_mul(0x100_0000_01b3);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (v ^ (v >> 29)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type SiteMap = HashMap<u64, u32, BuildHasherDefault<SiteHasher>>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    /// Random sites at density `p` of `shape`, in a shuffled order.
    fn random_sites(shape: [usize; 3], p: f32, seed: u64) -> Sites {
        let mut rng = Rng::new(seed);
        let mut coords = Vec::new();
        for z in 0..shape[0] {
            for y in 0..shape[1] {
                for x in 0..shape[2] {
                    if rng.values(1, 0.0, 1.0)[0] < p {
                        coords.push([z as u32, y as u32, x as u32]);
                    }
                }
            }
        }
        for i in (1..coords.len()).rev() {
            let j = (rng.next_u64() % (i as u64 + 1)) as usize;
            coords.swap(i, j);
        }
        Sites::new(shape, coords).unwrap()
    }

    /// The dense conv (zeros at inactive sites) at output position `o`.
    #[allow(clippy::too_many_arguments)]
    fn dense_at(
        sites: &Sites,
        x: &[f32],
        w: &Tensor,
        bias: Option<&[f32]>,
        g: SparseGeometry,
        o: [usize; 3],
        cin: usize,
        cout: usize,
    ) -> Vec<f64> {
        let k = g.kernel;
        let taps = k.iter().product::<usize>();
        let at: HashMap<[u32; 3], usize> = sites
            .coords
            .iter()
            .enumerate()
            .map(|(i, &c)| (c, i))
            .collect();
        let mut out: Vec<f64> = (0..cout)
            .map(|co| bias.map_or(0.0, |b| b[co] as f64))
            .collect();
        for t in 0..taps {
            let off = offset(t, k);
            let mut c = [0u32; 3];
            let mut inside = true;
            for d in 0..3 {
                let v = (o[d] * g.stride[d] + off[d]) as i64 - g.padding[d] as i64;
                inside &= v >= 0 && (v as usize) < sites.shape[d];
                c[d] = v.max(0) as u32;
            }
            if let Some(&i) = inside.then(|| at.get(&c)).flatten() {
                for (co, o) in out.iter_mut().enumerate() {
                    for ci in 0..cin {
                        *o += w.data[(co * taps + t) * cin + ci] as f64 * x[i * cin + ci] as f64;
                    }
                }
            }
        }
        out
    }

    fn close(got: &[f32], want: &[f64], what: &str) {
        for (a, b) in got.iter().zip(want) {
            assert!(
                (*a as f64 - b).abs() < 1e-4 * (1.0 + b.abs()),
                "{what}: {a} vs {b}"
            );
        }
    }

    fn layer(cin: usize, cout: usize, k: [usize; 3], seed: u64) -> (Tensor, Vec<f32>) {
        let n = cout * k.iter().product::<usize>() * cin;
        let w = Tensor::from_vec(
            &[cout, k[0], k[1], k[2], cin],
            Rng::new(seed).values(n, -0.5, 0.5),
        );
        (w, Rng::new(seed + 1).values(cout, -0.5, 0.5))
    }

    /// A submanifold conv equals the dense conv (padding k/2) at the input sites; more sites
    /// than one output tile.
    #[test]
    fn submanifold_conv_matches_the_dense_conv_at_the_active_sites() {
        let sites = random_sites([6, 17, 19], 0.4, 1);
        assert!(sites.len() > TILE);
        let (cin, cout) = (5, 7);
        let x = Rng::new(3).values(sites.len() * cin, -1.0, 1.0);
        for k in [[3, 3, 3], [1, 1, 1], [3, 1, 3]] {
            let (w, b) = layer(cin, cout, k, 5);
            let rb = Rulebook::submanifold(&sites, k).unwrap();
            assert_eq!(rb.out, sites);
            let y = SparseConv3d::new(&w, Some(&b))
                .unwrap()
                .forward(&x, &rb)
                .unwrap();
            let g = SparseGeometry {
                kernel: k,
                stride: [1; 3],
                padding: k.map(|k| k / 2),
            };
            for (o, c) in sites.coords.iter().enumerate() {
                let want = dense_at(
                    &sites,
                    &x,
                    &w,
                    Some(&b),
                    g,
                    c.map(|v| v as usize),
                    cin,
                    cout,
                );
                close(
                    &y[o * cout..][..cout],
                    &want,
                    &format!("subm {k:?} site {c:?}"),
                );
            }
        }
        assert!(Rulebook::submanifold(&sites, [2, 3, 3]).is_err());
    }

    /// A strided conv's output sites are exactly the dense outputs that see an active input,
    /// sorted, and their values are the dense conv's (SECOND's stage convs, its (0, 1, 1)
    /// padding and conv_out's (3, 1, 1) / (2, 1, 1)).
    #[test]
    fn strided_conv_matches_the_dense_conv_and_its_sites() {
        let sites = random_sites([9, 20, 18], 0.15, 2);
        let (cin, cout) = (4, 6);
        let x = Rng::new(4).values(sites.len() * cin, -1.0, 1.0);
        for g in [
            SparseGeometry {
                kernel: [3; 3],
                stride: [2; 3],
                padding: [1; 3],
            },
            SparseGeometry {
                kernel: [3; 3],
                stride: [2; 3],
                padding: [0, 1, 1],
            },
            SparseGeometry {
                kernel: [3, 1, 1],
                stride: [2, 1, 1],
                padding: [0; 3],
            },
        ] {
            let (w, _) = layer(cin, cout, g.kernel, 9);
            let rb = Rulebook::strided(&sites, g).unwrap();
            let shape = g.out_shape(sites.shape).unwrap();
            assert_eq!(rb.out.shape, shape);
            let y = SparseConv3d::new(&w, None)
                .unwrap()
                .forward(&x, &rb)
                .unwrap();
            let at: HashMap<[u32; 3], usize> = rb
                .out
                .coords
                .iter()
                .enumerate()
                .map(|(i, &c)| (c, i))
                .collect();
            let mut expected_sites = Vec::new();
            for z in 0..shape[0] {
                for yy in 0..shape[1] {
                    for xx in 0..shape[2] {
                        let o = [z, yy, xx];
                        let seen = (0..g.taps()).any(|t| {
                            let off = offset(t, g.kernel);
                            (0..3).all(|d| {
                                let v = (o[d] * g.stride[d] + off[d]) as i64 - g.padding[d] as i64;
                                v >= 0 && (v as usize) < sites.shape[d]
                            }) && {
                                let c: [u32; 3] = std::array::from_fn(|d| {
                                    (o[d] * g.stride[d] + off[d] - g.padding[d]) as u32
                                });
                                sites.coords.contains(&c)
                            }
                        });
                        if seen {
                            expected_sites.push(o.map(|v| v as u32));
                            let want = dense_at(&sites, &x, &w, None, g, o, cin, cout);
                            let i = at[&o.map(|v| v as u32)];
                            close(&y[i * cout..][..cout], &want, &format!("{g:?} at {o:?}"));
                        }
                    }
                }
            }
            assert_eq!(rb.out.coords, expected_sites, "{g:?}");
            assert_eq!(
                rb.pair_count(),
                (0..g.taps()).map(|t| rb.pairs(t).len()).sum::<usize>()
            );
        }
    }

    /// The VJP is the adjoint of the (linear) conv: `<dy, conv_W(x)> = <dx, x> = <dW, W>`,
    /// and `db` sums `dy`; submanifold and strided, more pairs than one chunk per offset.
    #[test]
    fn backward_is_the_adjoint_of_the_forward() {
        let sites = random_sites([7, 18, 20], 0.35, 3);
        let (cin, cout) = (6, 9);
        let x = Rng::new(5).values(sites.len() * cin, -1.0, 1.0);
        let books = [
            Rulebook::submanifold(&sites, [3; 3]).unwrap(),
            Rulebook::strided(
                &sites,
                SparseGeometry {
                    kernel: [3; 3],
                    stride: [2; 3],
                    padding: [0, 1, 1],
                },
            )
            .unwrap(),
        ];
        for rb in &books {
            assert!(rb.pair_count() > 4 * CHUNK, "{}", rb.pair_count());
            let (w, _) = layer(cin, cout, rb.kernel, 7);
            let conv = SparseConv3d::new(&w, None).unwrap();
            let dy = Rng::new(8).values(rb.out.len() * cout, -1.0, 1.0);
            let y = conv.forward(&x, rb).unwrap();
            let dot = |a: &[f32], b: &[f32]| {
                a.iter()
                    .zip(b)
                    .map(|(p, q)| *p as f64 * *q as f64)
                    .sum::<f64>()
            };
            let lhs = dot(&dy, &y);
            let g = conv.backward(&x, rb, &dy, true).unwrap();
            let dx = g.dx.as_ref().unwrap();
            assert_eq!(dx.len(), x.len());
            let tol = 1e-4 * lhs.abs().max(1.0);
            assert!(
                (dot(dx, &x) - lhs).abs() < tol,
                "dx: {} vs {lhs}",
                dot(dx, &x)
            );
            assert!(
                (dot(&g.dw.data, &w.data) - lhs).abs() < tol,
                "dW: {} vs {lhs}",
                dot(&g.dw.data, &w.data)
            );
            for co in 0..cout {
                let want: f64 = dy.iter().skip(co).step_by(cout).map(|&v| v as f64).sum();
                assert!((g.db[co] as f64 - want).abs() < 1e-3);
            }
            assert!(conv.backward(&x, rb, &dy[1..], false).is_err());
            assert!(conv.backward(&x, rb, &dy, false).unwrap().dx.is_none());
        }
    }

    #[test]
    fn bad_sites_and_layers_are_refused() {
        assert!(Sites::new([2, 2, 2], vec![[0, 0, 2]]).is_err());
        assert!(Sites::new([2, 2, 2], vec![[0, 0, 1], [0, 0, 1]]).is_err());
        assert!(Sites::new([1 << 20, 1 << 20, 1 << 20], vec![]).is_err());
        let sites = Sites::new([2, 2, 2], vec![[0, 0, 1]]).unwrap();
        let g = SparseGeometry {
            kernel: [3; 3],
            stride: [1; 3],
            padding: [0; 3],
        };
        assert!(Rulebook::strided(&sites, g).is_err());
        let (w, _) = layer(2, 3, [3; 3], 1);
        let rb = Rulebook::submanifold(&sites, [3; 3]).unwrap();
        let conv = SparseConv3d::new(&w, None).unwrap();
        assert!(conv.forward(&[0.0; 3], &rb).is_err());
        assert!(
            conv.forward(&[0.0; 2], &Rulebook::submanifold(&sites, [1; 3]).unwrap())
                .is_err()
        );
        assert!(SparseConv3d::new(&Tensor::from_vec(&[2, 3], vec![0.0; 6]), None).is_err());
    }
}
