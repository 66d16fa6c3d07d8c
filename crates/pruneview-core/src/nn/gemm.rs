//! Cache-blocked GEMM driver over the micro-kernels in `kernel.rs`.
//!
//! `C = A * B` with `A` packed once (weights are packed when a layer is built) and `B` read in
//! place through a row-offset table (see `kernel.rs`). The driver is single-threaded: callers
//! parallelise over independent output blocks, which keeps every thread's working set in its
//! own L2 and avoids nesting thread pools. Loop order (BLIS style): K in chunks of `kc`, then
//! 48-column strips of B (a strip stays in L1 while every A panel passes over it), then A
//! panels (the A chunk stays in L2).

use rayon::prelude::*;

use super::kernel::{Epilogue, Isa, KernFn, MR, NR, kernel, tail_mask};
use super::scratch::{AlignedBuf, SendPtr, with_scratch};

/// K-chunk length: a 48-wide B strip of this many rows is 24 KiB (half of L1).
pub(crate) const KC: usize = 128;

/// A left operand packed into `MR`-row panels (rows past `m` are zero).
#[derive(Clone, Debug)]
pub(crate) struct PackedA {
    pub(crate) m: usize,
    pub(crate) k: usize,
    buf: AlignedBuf,
}

impl PackedA {
    /// Packs `A[i][kk] = f(i, kk)` for `i < m`, `kk < k`.
    pub(crate) fn from_fn(m: usize, k: usize, f: impl Fn(usize, usize) -> f32) -> PackedA {
        let panels = m.div_ceil(MR);
        let mut buf = AlignedBuf::zeros(panels * k * MR);
        let d = buf.as_mut_slice();
        for p in 0..panels {
            let rows = MR.min(m - p * MR);
            for kk in 0..k {
                let dst = &mut d[(p * k + kk) * MR..][..MR];
                for (i, x) in dst.iter_mut().enumerate().take(rows) {
                    *x = f(p * MR + i, kk);
                }
            }
        }
        PackedA { m, k, buf }
    }

    /// Packs `A[i][kk] = src[i * rs + kk * cs]`.
    pub(crate) fn from_strided(m: usize, k: usize, src: &[f32], rs: usize, cs: usize) -> PackedA {
        Self::from_fn(m, k, |i, kk| src[i * rs + kk * cs])
    }

    /// The packed panels, as the GEMM driver takes them.
    pub(crate) fn view(&self) -> Panels<'_> {
        Panels {
            m: self.m,
            k: self.k,
            data: self.buf.as_slice(),
        }
    }
}

/// Packs `A[i][kk] = src[i * rs + kk * cs]` into `dst` (at least `m.div_ceil(MR) * k * MR`
/// floats, e.g. thread-local scratch) and returns the panels.
pub(crate) fn pack_into<'a>(
    m: usize,
    k: usize,
    src: &[f32],
    rs: usize,
    cs: usize,
    dst: &'a mut [f32],
) -> Panels<'a> {
    let panels = m.div_ceil(MR);
    let d = &mut dst[..panels * k * MR];
    for p in 0..panels {
        let rows = MR.min(m - p * MR);
        for kk in 0..k {
            let o = &mut d[(p * k + kk) * MR..][..MR];
            for (i, x) in o.iter_mut().enumerate() {
                *x = if i < rows {
                    src[(p * MR + i) * rs + kk * cs]
                } else {
                    0.0
                };
            }
        }
    }
    Panels { m, k, data: d }
}

/// Packs the gathered rows `A[i][kk] = src[rows[i] * ld + kk]` (`kk < k`) into `dst` (at
/// least `rows.len().div_ceil(MR) * k * MR` floats): a sparse conv's input rows of one
/// kernel offset, without copying them out first.
pub(crate) fn pack_rows_into<'a>(
    rows: &[u32],
    src: &[f32],
    ld: usize,
    k: usize,
    dst: &'a mut [f32],
) -> Panels<'a> {
    let m = rows.len();
    let panels = m.div_ceil(MR);
    let d = &mut dst[..panels * k * MR];
    for p in 0..panels {
        let panel = &mut d[p * k * MR..][..k * MR];
        for i in 0..MR {
            match rows.get(p * MR + i) {
                Some(&r) => {
                    let row = &src[r as usize * ld..][..k];
                    for (kk, &v) in row.iter().enumerate() {
                        panel[kk * MR + i] = v;
                    }
                }
                None => (0..k).for_each(|kk| panel[kk * MR + i] = 0.0),
            }
        }
    }
    Panels { m, k, data: d }
}

/// Packs `A[i][kk] = src[rows[kk] * ld + i]` (`i < m`): the transpose of gathered rows, as
/// the left operand of a sparse conv's weight gradient (`dst` at least `m.div_ceil(MR) *
/// rows.len() * MR` floats).
pub(crate) fn pack_cols_into<'a>(
    rows: &[u32],
    src: &[f32],
    ld: usize,
    m: usize,
    dst: &'a mut [f32],
) -> Panels<'a> {
    let k = rows.len();
    let panels = m.div_ceil(MR);
    let d = &mut dst[..panels * k * MR];
    for p in 0..panels {
        let n = MR.min(m - p * MR);
        for (kk, &r) in rows.iter().enumerate() {
            let o = &mut d[(p * k + kk) * MR..][..MR];
            o[..n].copy_from_slice(&src[r as usize * ld + p * MR..][..n]);
            o[n..].fill(0.0);
        }
    }
    Panels { m, k, data: d }
}

/// A borrowed packed left operand: `m x k` in `MR`-row panels, panel `p` k-major.
#[derive(Clone, Copy)]
pub(crate) struct Panels<'a> {
    pub(crate) m: usize,
    pub(crate) k: usize,
    data: &'a [f32],
}

impl Panels<'_> {
    pub(crate) fn panels(&self) -> usize {
        self.m.div_ceil(MR)
    }

    fn panel_ptr(&self, p: usize, k0: usize) -> *const f32 {
        self.data[(p * self.k + k0) * MR..].as_ptr()
    }
}

/// How a GEMM finishes its output: accumulate into `C`, add a per-row or per-column bias,
/// apply ReLU.
#[derive(Clone, Copy, Default)]
pub(crate) struct Finish<'a> {
    pub accumulate: bool,
    /// One value per row of C (a conv's output channels).
    pub bias: Option<&'a [f32]>,
    /// One value per column of C (a linear layer's output features).
    pub col_bias: Option<&'a [f32]>,
    pub relu: bool,
}

/// `C[m x n] = A * B` for one block, on the calling thread.
///
/// # Safety
/// `B` row `kk` (`kk < a.k`) is `b + offs[kk] .. + n` and must be readable; `c` must be
/// writable for `a.m` rows of `n` columns with row stride `ldc`.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn gemm_block(
    isa: Isa,
    a: Panels<'_>,
    b: *const f32,
    offs: &[isize],
    n: usize,
    c: *mut f32,
    ldc: usize,
    fin: Finish<'_>,
    kc: usize,
) {
    // SAFETY: forwarded contract, all panels.
    unsafe { gemm_panels(isa, a, 0..a.panels(), b, offs, n, c, ldc, fin, kc) }
}

/// Like [`gemm_block`] for the row panels `panels` of `A` only; `c` points at row
/// `panels.start * MR` and `fin.bias` (if any) is indexed from row 0 of `A`.
///
/// # Safety
/// As for [`gemm_block`], for the selected rows.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn gemm_panels(
    isa: Isa,
    a: Panels<'_>,
    panels: std::ops::Range<usize>,
    b: *const f32,
    offs: &[isize],
    n: usize,
    c: *mut f32,
    ldc: usize,
    fin: Finish<'_>,
    kc: usize,
) {
    debug_assert!(offs.len() >= a.k);
    let (m, k) = (a.m, a.k);
    if n == 0 || m == 0 || panels.is_empty() {
        return;
    }
    let p_first = panels.start;
    let last_panel = a.panels() - 1;
    let tail_rows = m - last_panel * MR;
    let full_nv = kernel(isa, MR, 3);
    let kc = kc.max(1);
    if k == 0 {
        // Degenerate: no inner dimension; C = bias (or C + bias).
        let rows = (panels.end * MR).min(m) - p_first * MR;
        let fin = Finish {
            bias: fin.bias.map(|bb| &bb[p_first * MR..]),
            ..fin
        };
        // SAFETY: the caller's contract (`c` valid for this call's rows x n block at stride
        // ldc); only that block is written.
        unsafe { fill_block(c, ldc, rows, n, fin) };
        return;
    }
    let mut k0 = 0;
    while k0 < k {
        let kl = kc.min(k - k0);
        let first = k0 == 0;
        let last = k0 + kl == k;
        let mut j0 = 0;
        while j0 < n {
            let w = NR.min(n - j0);
            let (nv, mask) = tail_mask(w);
            let kf: KernFn = if nv == 3 {
                full_nv
            } else {
                kernel(isa, MR, nv)
            };
            for p in panels.clone() {
                let mr = if p == last_panel { tail_rows } else { MR };
                let kern = if mr == MR { kf } else { kernel(isa, mr, nv) };
                let bias = match (last, fin.bias) {
                    (true, Some(bb)) => bb[p * MR..].as_ptr(),
                    _ => std::ptr::null(),
                };
                let col_bias = match (last, fin.col_bias) {
                    (true, Some(cb)) => cb[j0..].as_ptr(),
                    _ => std::ptr::null(),
                };
                let epi = Epilogue {
                    accumulate: fin.accumulate || !first,
                    bias,
                    col_bias,
                    relu: last && fin.relu,
                };
                // SAFETY: the caller guarantees the B rows and the C block; `panel_ptr` holds
                // `kl * MR` floats from `k0`; `offs[k0..]` holds `kl` entries.
                unsafe {
                    kern(
                        kl,
                        a.panel_ptr(p, k0),
                        b.add(j0),
                        offs[k0..].as_ptr(),
                        c.add((p - p_first) * MR * ldc + j0),
                        ldc,
                        mask,
                        &epi,
                    );
                }
            }
            j0 += NR;
        }
        k0 += kl;
    }
}

/// Writes `bias` (or adds it, when accumulating) into an `m x n` block; used when `k == 0`.
unsafe fn fill_block(c: *mut f32, ldc: usize, m: usize, n: usize, fin: Finish<'_>) {
    for i in 0..m {
        let bias = fin.bias.map_or(0.0, |b| b[i]);
        for j in 0..n {
            let bias = bias + fin.col_bias.map_or(0.0, |b| b[j]);
            // SAFETY: the caller guarantees the block is writable.
            unsafe {
                let p = c.add(i * ldc + j);
                let mut x = if fin.accumulate { *p + bias } else { bias };
                if fin.relu {
                    x = super::kernel::relu1(x);
                }
                *p = x;
            }
        }
    }
}

/// A strided matrix view: element `(i, j)` is `data[i * rs + j * cs]`.
#[derive(Clone, Copy)]
pub(crate) struct View<'a> {
    pub data: &'a [f32],
    pub rs: usize,
    pub cs: usize,
}

impl<'a> View<'a> {
    /// A row-major `rows x cols` matrix.
    pub(crate) fn row_major(data: &'a [f32], cols: usize) -> Self {
        View {
            data,
            rs: cols,
            cs: 1,
        }
    }
    /// The transpose of a row-major `rows x cols` matrix.
    pub(crate) fn transposed(data: &'a [f32], cols: usize) -> Self {
        View {
            data,
            rs: 1,
            cs: cols,
        }
    }
}

/// B as the kernel wants it: rows contiguous along n. Copies (transposes) only when needed.
fn contiguous_b<'a>(k: usize, n: usize, b: View<'a>, copy: &'a mut Vec<f32>) -> (&'a [f32], usize) {
    if b.cs == 1 || n == 1 {
        if k > 0 {
            assert!(
                b.data.len() >= (k - 1) * b.rs + n,
                "matmul: B view out of bounds"
            );
        }
        (b.data, b.rs)
    } else {
        *copy = (0..k * n)
            .map(|i| b.data[(i / n) * b.rs + (i % n) * b.cs])
            .collect();
        (copy, n)
    }
}

/// `C[m x n] (+)= A[m x k] * B[k x n]` for arbitrary strided views, parallel over output
/// blocks. `c` is row-major with row stride `n`.
///
/// Tall products (a linear layer over many points) run over row chunks that pack their rows
/// of `A` into thread-local scratch, so no `m x k` copy is allocated per call (fresh memory
/// costs ~2.5 us per 4 KiB page in page faults on the reference VM).
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul(
    isa: Isa,
    m: usize,
    n: usize,
    k: usize,
    a: View<'_>,
    b: View<'_>,
    c: &mut [f32],
    fin: Finish<'_>,
) {
    assert!(c.len() >= m * n, "matmul: output too small");
    if m == 0 || n == 0 {
        return;
    }
    let mut copy = Vec::new();
    let (bdata, ldb) = contiguous_b(k, n, b, &mut copy);
    let offs: Vec<isize> = (0..k).map(|kk| (kk * ldb) as isize).collect();
    let threads = rayon::current_num_threads().max(1);
    let strips = n.div_ceil(NR);
    if m >= 8 * threads * MR && strips < 4 * threads {
        // Row chunks of whole panels; each packs its own rows of A.
        let rows = (m.div_ceil(8 * threads))
            .next_multiple_of(MR)
            .clamp(MR, 4096);
        let cptr = SendPtr(c.as_mut_ptr());
        (0..m.div_ceil(rows)).into_par_iter().for_each(|ci| {
            let cp = cptr;
            let r0 = ci * rows;
            let r = rows.min(m - r0);
            with_scratch(r.div_ceil(MR) * MR * k, |buf| {
                let pa = pack_into(r, k, &a.data[r0 * a.rs..], a.rs, a.cs, buf);
                let f = Finish {
                    bias: fin.bias.map(|bb| &bb[r0..]),
                    ..fin
                };
                // SAFETY: chunks write disjoint rows r0..r0+r of C (row stride n).
                unsafe {
                    gemm_block(
                        isa,
                        pa,
                        bdata.as_ptr(),
                        &offs,
                        n,
                        cp.get().add(r0 * n),
                        n,
                        f,
                        KC,
                    )
                };
            });
        });
    } else {
        let pa = PackedA::from_strided(m, k, a.data, a.rs, a.cs);
        gemm_parallel(isa, pa.view(), bdata.as_ptr(), &offs, n, c, n, fin);
    }
}

/// Runs a whole `m x n` GEMM (B given by `b`/`offs`, row stride of C `ldc`) with rayon,
/// splitting over columns when there are enough of them, else over row panels.
///
/// Column blocks first copy their slice of every B row into contiguous scratch: when B rows
/// are far apart (a 1x1 conv's input planes are 214 KB apart), reading a 48-column strip
/// straight from hundreds of rows defeats the hardware prefetcher and the kernel waits on
/// DRAM latency; row-by-row copies are sequential streams.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_parallel(
    isa: Isa,
    a: Panels<'_>,
    b: *const f32,
    offs: &[isize],
    n: usize,
    c: &mut [f32],
    ldc: usize,
    fin: Finish<'_>,
) {
    let m = a.m;
    if m == 0 || n == 0 {
        return;
    }
    assert!(c.len() >= (m - 1) * ldc + n, "gemm: output too small");
    let threads = rayon::current_num_threads().max(1);
    let cptr = SendPtr(c.as_mut_ptr());
    let bptr = SendPtr(b as *mut f32);
    let k = a.k;
    let flops = m * n * k.max(1);
    let strips = n.div_ceil(NR);
    if flops < 1 << 18 || (threads == 1 && k * n <= 1 << 18) {
        // SAFETY: the whole output is owned by this call.
        unsafe { gemm_block(isa, a, b, offs, n, c.as_mut_ptr(), ldc, fin, KC) };
    } else if strips >= 4 * threads || strips >= a.panels() {
        // Column blocks: a multiple of NR whose packed B (k x block) is about 768 KiB.
        let per = ((768 << 10) / (4 * k.max(1))).clamp(2 * NR, 4096) / NR * NR;
        let per = per.min(strips.div_ceil(4 * threads) * NR).max(NR);
        let blocks = n.div_ceil(per);
        let ldp = padded_ld(per);
        let local: Vec<isize> = (0..k).map(|kk| (kk * ldp) as isize).collect();
        // Many C rows far apart get the same treatment on the way out: the block is computed
        // into scratch and copied row by row (measured: 20% faster for 128 rows, slower for
        // the heads' 12-42 rows or when C fits in cache).
        let stage_c = m >= 64 && m * ldc * 4 > 4 << 20 && !fin.accumulate;
        let c_len = if stage_c { m * ldp } else { 0 };
        (0..blocks).into_par_iter().for_each(|bi| {
            let (cp, bp) = (cptr, bptr);
            let j0 = bi * per;
            let w = per.min(n - j0);
            let fin = Finish {
                col_bias: fin.col_bias.map(|cb| &cb[j0..]),
                ..fin
            };
            with_scratch(k * ldp + c_len, |buf| {
                let (pack, cbuf) = buf.split_at_mut(k * ldp);
                for (kk, &o) in offs[..k].iter().enumerate() {
                    // SAFETY: B row kk is readable for n columns (caller contract of `b`).
                    let src = unsafe { std::slice::from_raw_parts(bp.0.offset(o).add(j0), w) };
                    pack[kk * ldp..][..w].copy_from_slice(src);
                }
                if stage_c {
                    // SAFETY: `pack` holds k rows of w; `cbuf` holds m rows of ldp >= w.
                    unsafe {
                        gemm_block(
                            isa,
                            a,
                            pack.as_ptr(),
                            &local,
                            w,
                            cbuf.as_mut_ptr(),
                            ldp,
                            fin,
                            KC,
                        )
                    };
                    for i in 0..m {
                        // SAFETY: blocks write disjoint column ranges of C.
                        let dst =
                            unsafe { std::slice::from_raw_parts_mut(cp.0.add(i * ldc + j0), w) };
                        dst.copy_from_slice(&cbuf[i * ldp..][..w]);
                    }
                } else {
                    // SAFETY: blocks write disjoint column ranges of C; `pack` holds k rows of w.
                    unsafe {
                        gemm_block(isa, a, pack.as_ptr(), &local, w, cp.0.add(j0), ldc, fin, KC)
                    };
                }
            });
        });
    } else {
        // Row blocks: split the packed panels.
        let panels = a.panels();
        let per = panels.div_ceil(4 * threads).max(1);
        let chunks = panels.div_ceil(per);
        (0..chunks).into_par_iter().for_each(|ci| {
            let (cp, bp) = (cptr, bptr);
            let p0 = ci * per;
            let p1 = (p0 + per).min(panels);
            // SAFETY: chunks write disjoint row ranges of C.
            unsafe {
                gemm_panels(
                    isa,
                    a,
                    p0..p1,
                    bp.0,
                    offs,
                    n,
                    cp.0.add(p0 * MR * ldc),
                    ldc,
                    fin,
                    KC,
                )
            };
        });
    }
}

/// A row stride of at least `n` floats that is a whole number of cache lines and not a
/// multiple of 4 KiB (rows a power of two apart would all map to the same L1 sets).
pub(crate) fn padded_ld(n: usize) -> usize {
    let mut ld = n.next_multiple_of(16);
    if (ld * 4).is_multiple_of(4096) {
        ld += 16;
    }
    ld
}

/// [`matmul`] on the calling thread (for callers that already run in parallel).
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul_serial(
    isa: Isa,
    m: usize,
    n: usize,
    k: usize,
    a: View<'_>,
    b: View<'_>,
    c: &mut [f32],
    fin: Finish<'_>,
) {
    assert!(c.len() >= m * n, "matmul: output too small");
    if m == 0 || n == 0 {
        return;
    }
    let mut copy = Vec::new();
    let (bdata, ldb) = contiguous_b(k, n, b, &mut copy);
    let offs: Vec<isize> = (0..k).map(|kk| (kk * ldb) as isize).collect();
    with_scratch(m.div_ceil(MR) * MR * k, |buf| {
        let pa = pack_into(m, k, a.data, a.rs, a.cs, buf);
        // SAFETY: B rows checked by `contiguous_b`; C is m x n.
        unsafe {
            gemm_block(
                isa,
                pa,
                bdata.as_ptr(),
                &offs,
                n,
                c.as_mut_ptr(),
                n,
                fin,
                KC,
            )
        };
    });
}
