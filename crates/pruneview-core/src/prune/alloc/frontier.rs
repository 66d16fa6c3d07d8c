//! The DP over a discretised budget axis (see the module docs of [`super`]), kept as a
//! [`Frontier`] that answers any budget by a backtrack.

use rayon::prelude::*;

use super::super::allocation_file::BudgetKind;
use super::super::pruned_count;
use super::problem::{kept_fraction, ratio};
use super::{AllocError, KindName, LEVEL_EPS, Problem, Solution};

/// The argmin table holds `u16` option indices, so a layer may offer at most this many levels.
const MAX_OPTIONS: usize = u16::MAX as usize + 1;

/// Refuse frontiers whose argmin table would exceed this, rather than exhaust memory.
const MAX_TABLE_BYTES: usize = 1 << 30;

/// Budget positions are computed in `f64`; this keeps `keep * B` that is an exact multiple in
/// real numbers from landing one bin lower (or a cost one bin higher) through rounding noise.
const BIN_EPS: f64 = 1e-9;

/// Width of the blocks of the budget axis the DP fills at once: a block of `G_l`, its argmin
/// and the window of `G_{l-1}` it reads stay in L1, and blocks are the unit of parallel work.
const BLOCK: usize = 512;

/// Cost in bins of keeping fraction `q` of a layer of cost `cost` (of `total`), rounded up.
pub(super) fn bin_cost(q: f64, cost: f64, total: f64, bins: usize) -> u32 {
    let x = q * cost / total * bins as f64;
    (x - BIN_EPS).ceil().max(0.0) as u32
}

/// The budget position of `keep`: `floor(keep * B)`, exact multiples not rounded down.
pub(super) fn budget_bin(keep: f64, bins: usize) -> usize {
    ((keep * bins as f64 + BIN_EPS).floor().max(0.0) as usize).min(bins)
}

pub(super) fn check_keep(keep: f64) -> Result<(), AllocError> {
    if keep.is_finite() && (0.0..=1.0).contains(&keep) {
        Ok(())
    } else {
        Err(AllocError::BadBudget(keep))
    }
}

/// The least distortion at every budget, and how to get it: built once per (curves, lambdas,
/// constraints, budget kind), then queried at any budget in O(L).
///
/// Layers are processed in ascending order of their largest cost, and row `i` of the argmin
/// table only spans budgets up to `cap_i`, the most the first `i + 1` layers can cost: beyond
/// it nothing changes. That halves the work and memory for balanced models and does far better
/// for skewed ones (a few large layers last).
#[derive(Clone, Debug)]
pub struct Frontier {
    kind: BudgetKind,
    bins: usize,
    /// Layers in DP order (indices into the problem).
    order: Vec<usize>,
    /// Per layer (problem order): its options' range in the `opt_*` arrays.
    opt_start: Vec<usize>,
    opt_cost: Vec<u32>,
    opt_sparsity: Vec<f64>,
    opt_distortion: Vec<f64>,
    /// Per DP step `i`: where its argmin row starts in `arg`, and its cap (row = 0..=cap).
    row_start: Vec<usize>,
    row_cap: Vec<usize>,
    arg: Vec<u16>,
    /// `G_L(b)` for b in `0..=cap_L`: the DP's objective (distortion plus the layer cap's
    /// penalties), infinite where infeasible.
    best: Vec<f64>,
    /// Least bin with a feasible solution.
    min_bin: usize,
    /// Per-layer sizes, for exact kept fractions of the answers.
    params: Vec<usize>,
    flops: Vec<f64>,
}

impl Frontier {
    /// Runs the DP over `bins` bins of the `kind` budget axis ([`DEFAULT_BINS`] is a good
    /// default). Fails when a layer has no allowed level or the sizes make no sense.
    pub fn build(problem: &Problem, kind: BudgetKind, bins: usize) -> Result<Frontier, AllocError> {
        problem.validate()?;
        let n_layers = problem.layers.len();
        let max_bins = (MAX_TABLE_BYTES / 2 / n_layers).saturating_sub(1 + n_layers);
        if bins == 0 || bins > max_bins {
            return Err(AllocError::BadBins {
                bins,
                max: max_bins,
                layers: n_layers,
            });
        }
        let costs = problem.costs(kind);
        let total = problem.total_cost(kind)?;

        // The DP minimises an objective: the distortion plus, for a level above the layer
        // cap, its excess sparsity times a weight so large that 1e-4 of excess outweighs any
        // difference in total distortion: the least total excess wins, distortion decides
        // among equals.
        let spread: f64 = problem
            .layers
            .iter()
            .map(|l| l.distortion.iter().fold(0.0f64, |m, d| m.max(d.abs())))
            .sum();
        let per_excess = (1.0 + 2.0 * spread) * 1e4;
        let objective = |s: f64, d: f64| {
            let excess = s - problem.layer_cap;
            if excess > LEVEL_EPS {
                d + per_excess * excess
            } else {
                d
            }
        };

        // Options per layer: allowed levels with their bin costs, Pareto-filtered (an option
        // that costs at least as much as another and scores at least as badly never wins).
        let mut opt_start = Vec::with_capacity(n_layers + 1);
        let (mut opt_cost, mut opt_sparsity, mut opt_distortion) = (vec![], vec![], vec![]);
        let mut opt_objective = vec![];
        let mut max_cost = Vec::with_capacity(n_layers);
        let mut min_cost_sum = 0usize;
        for ((l, c), &cost) in problem.layers.iter().zip(&problem.constraints).zip(&costs) {
            let mut opts: Vec<(u32, f64, f64, f64)> = l
                .levels
                .iter()
                .zip(&l.distortion)
                .filter(|&(&s, _)| c.allows(s))
                .map(|(&s, &d)| {
                    (
                        bin_cost(kept_fraction(s, l.params), cost, total, bins),
                        objective(s, d),
                        s,
                        d,
                    )
                })
                .collect();
            if opts.is_empty() {
                return Err(AllocError::NoLevel {
                    layer: l.name.clone(),
                    constraint: c.describe(),
                    levels: format_levels(&l.levels),
                });
            }
            // Cheapest first; among equal costs the least distortion, then the least sparsity.
            opts.sort_by(|a, b| {
                a.0.cmp(&b.0)
                    .then(a.1.total_cmp(&b.1))
                    .then(a.2.total_cmp(&b.2))
            });
            opt_start.push(opt_cost.len());
            let mut best = f64::INFINITY;
            for (c, o, s, d) in opts {
                if o < best {
                    best = o;
                    opt_cost.push(c);
                    opt_objective.push(o);
                    opt_distortion.push(d);
                    opt_sparsity.push(s);
                }
            }
            let n = opt_cost.len() - opt_start[opt_start.len() - 1];
            if n > MAX_OPTIONS {
                return Err(AllocError::Invalid {
                    layer: l.name.clone(),
                    reason: format!("{n} distinct levels; at most {MAX_OPTIONS} are supported"),
                });
            }
            let first = opt_start[opt_start.len() - 1];
            min_cost_sum += opt_cost[first] as usize;
            max_cost.push(opt_cost[opt_cost.len() - 1] as usize);
        }
        opt_start.push(opt_cost.len());

        let mut order: Vec<usize> = (0..n_layers).collect();
        order.sort_by_key(|&l| (max_cost[l], l));
        let mut row_cap = Vec::with_capacity(n_layers);
        let mut row_start = Vec::with_capacity(n_layers);
        let (mut cap, mut cells) = (0usize, 0usize);
        for &l in &order {
            cap += max_cost[l];
            row_start.push(cells);
            row_cap.push(cap);
            cells += cap + 1;
        }
        let width = cap + 1;
        let mut arg = vec![0u16; cells];
        let mut prev = vec![0.0f64; width];
        let mut next = vec![f64::INFINITY; width];
        let mut argf = vec![0.0f64; width];
        for (i, &l) in order.iter().enumerate() {
            let r = opt_start[l]..opt_start[l + 1];
            let (oc, od) = (&opt_cost[r.clone()], &opt_objective[r]);
            let row = row_cap[i] + 1;
            dp_row(&prev, &mut next[..row], &mut argf[..row], oc, od);
            // Past the cap nothing changes: extend G_l flat so the next row can read it.
            let last = next[row - 1];
            next[row..].fill(last);
            for (a, &f) in arg[row_start[i]..row_start[i] + row]
                .iter_mut()
                .zip(&argf[..row])
            {
                *a = f as u16;
            }
            std::mem::swap(&mut prev, &mut next);
        }
        let best = prev;
        let min_bin = best
            .iter()
            .position(|v| v.is_finite())
            .unwrap_or(min_cost_sum);
        Ok(Frontier {
            kind,
            bins,
            order,
            opt_start,
            opt_cost,
            opt_sparsity,
            opt_distortion,
            row_start,
            row_cap,
            arg,
            best,
            min_bin,
            params: problem.layers.iter().map(|l| l.params).collect(),
            flops: problem.layers.iter().map(|l| l.flops).collect(),
        })
    }

    pub fn kind(&self) -> BudgetKind {
        self.kind
    }

    pub fn bins(&self) -> usize {
        self.bins
    }

    /// The least budget (fraction kept) this frontier can answer.
    pub fn least_keep(&self) -> f64 {
        (self.min_bin as f64 / self.bins as f64).min(1.0)
    }

    /// Bytes held by the frontier (argmin table, options and the final row).
    pub fn memory_bytes(&self) -> usize {
        use std::mem::size_of;
        self.arg.len() * size_of::<u16>()
            + self.best.len() * size_of::<f64>()
            + self.opt_cost.len() * size_of::<u32>()
            + (self.opt_sparsity.len() + self.opt_distortion.len() + self.flops.len())
                * size_of::<f64>()
            + (self.order.len()
                + self.opt_start.len()
                + self.row_start.len()
                + self.row_cap.len()
                + self.params.len())
                * size_of::<usize>()
    }

    /// The least-distortion solution keeping at most `keep` of the budget kind: an O(L)
    /// backtrack through the argmin table that allocates only the result.
    pub fn query(&self, keep: f64) -> Result<Solution, AllocError> {
        check_keep(keep)?;
        // A budget of 1 allows everything, including the dense model whose rounded-up bin
        // cost can exceed B by up to L bins; below 1 the bins bound the exact cost.
        // Beyond the last cap (every layer at its costliest option) nothing changes.
        let top = self.best.len() - 1;
        let b = if keep >= 1.0 {
            top
        } else {
            budget_bin(keep, self.bins).min(top)
        };
        if !self.best[b].is_finite() {
            return Err(AllocError::Infeasible {
                kind: KindName(self.kind),
                keep,
                least: self.least_keep(),
                why: "the layers' highest curve levels and the constraints (locked layers, max \
                      sparsity), with costs rounded up to this frontier's bins,",
            });
        }
        let (sparsity, predicted) = self.backtrack(b);
        let (mut flops, mut params, mut flops_dense, mut params_dense) = (0.0, 0usize, 0.0, 0);
        for ((&s, &n), &f) in sparsity.iter().zip(&self.params).zip(&self.flops) {
            flops += kept_fraction(s, n) * f;
            params += n - pruned_count(s, n);
            flops_dense += f;
            params_dense += n;
        }
        Ok(Solution {
            sparsity,
            flops_kept: ratio(flops, flops_dense),
            params_kept: ratio(params as f64, params_dense as f64),
            flops,
            predicted,
        })
    }

    /// Per-layer sparsities (problem order) and predicted distortion of the DP's answer
    /// for budget bin `b` (feasible).
    fn backtrack(&self, mut b: usize) -> (Vec<f64>, f64) {
        let mut sparsity = vec![0.0; self.order.len()];
        let mut predicted = 0.0;
        for i in (0..self.order.len()).rev() {
            let l = self.order[i];
            b = b.min(self.row_cap[i]);
            let o = self.opt_start[l] + self.arg[self.row_start[i] + b] as usize;
            sparsity[l] = self.opt_sparsity[o];
            predicted += self.opt_distortion[o];
            b -= self.opt_cost[o] as usize;
        }
        (sparsity, predicted)
    }

    /// `(keep, predicted distortion of the DP's answer)` for every feasible bin, for plotting
    /// (nonincreasing without a layer cap). The last point is at keep 1.
    pub fn points(&self) -> Vec<(f64, f64)> {
        let bins = self.bins;
        let top = self.best.len() - 1;
        let mut pts: Vec<(f64, f64)> = (self.min_bin..bins)
            .filter(|&b| self.best[b.min(top)].is_finite())
            .map(|b| (b as f64 / bins as f64, self.backtrack(b.min(top)).1))
            .collect();
        if self.best[top].is_finite() {
            pts.push((1.0, self.backtrack(top).1));
        }
        pts
    }
}

/// One DP row: `next[b] = min_k prev[b - c_k] + d_k` over options with `c_k <= b`, and the
/// argmin in `argf` (as `f64`, so the select in the inner loop is one vector mask). Blocks of
/// the row run in parallel when the row is long enough to pay for it.
fn dp_row(prev: &[f64], next: &mut [f64], argf: &mut [f64], costs: &[u32], dist: &[f64]) {
    let work = next.len() * costs.len();
    if work >= 1 << 16 && next.len() >= 2 * BLOCK {
        next.par_chunks_mut(BLOCK)
            .zip(argf.par_chunks_mut(BLOCK))
            .enumerate()
            .for_each(|(j, (n, a))| dp_block(prev, j * BLOCK, n, a, costs, dist));
    } else {
        for (j, (n, a)) in next
            .chunks_mut(BLOCK)
            .zip(argf.chunks_mut(BLOCK))
            .enumerate()
        {
            dp_block(prev, j * BLOCK, n, a, costs, dist);
        }
    }
}

/// `dp_row` on the budgets `start..start + next.len()`. The same loop, compiled for AVX2
/// where the CPU has it (the default x86-64 target only assumes SSE2): 4 lanes instead of 2
/// and one blend per select, about twice as fast.
pub(super) fn dp_block(
    prev: &[f64],
    start: usize,
    next: &mut [f64],
    argf: &mut [f64],
    costs: &[u32],
    dist: &[f64],
) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2, the only requirement of `dp_block_avx2`.
        unsafe { dp_block_avx2(prev, start, next, argf, costs, dist) };
        return;
    }
    dp_block_impl(prev, start, next, argf, costs, dist)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn dp_block_avx2(
    prev: &[f64],
    start: usize,
    next: &mut [f64],
    argf: &mut [f64],
    costs: &[u32],
    dist: &[f64],
) {
    dp_block_impl(prev, start, next, argf, costs, dist)
}

#[inline(always)]
pub(super) fn dp_block_impl(
    prev: &[f64],
    start: usize,
    next: &mut [f64],
    argf: &mut [f64],
    costs: &[u32],
    dist: &[f64],
) {
    next.fill(f64::INFINITY);
    let end = start + next.len();
    for (k, (&c, &d)) in costs.iter().zip(dist).enumerate() {
        let c = c as usize;
        let lo = start.max(c);
        if lo >= end {
            continue;
        }
        let kf = k as f64;
        let src = &prev[lo - c..end - c];
        let dst = &mut next[lo - start..];
        let am = &mut argf[lo - start..];
        for ((n, a), &p) in dst.iter_mut().zip(am.iter_mut()).zip(src) {
            // Both selects read their old values and store unconditionally, written so the
            // first is one `min` instruction: the loop stays a straight run of vector ops.
            let (old_n, old_a) = (*n, *a);
            let cand = p + d;
            let better = cand < old_n;
            *n = if old_n < cand { old_n } else { cand };
            *a = if better { kf } else { old_a };
        }
    }
}

fn format_levels(levels: &[f64]) -> String {
    match levels {
        [] => "[]".into(),
        [a] => format!("[{a}]"),
        [a, b] => format!("[{a}, {b}]"),
        [a, .., z] => format!("[{a} .. {z}] ({} levels)", levels.len()),
    }
}
