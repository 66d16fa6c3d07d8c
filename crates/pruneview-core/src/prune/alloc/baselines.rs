//! The baselines of the paper's comparison (uniform, global magnitude, LAMP, ERK), and
//! [`solve`], the one entry point for every method.

use std::fmt;
use std::str::FromStr;

use rayon::prelude::*;

use super::super::allocation_file::Budget;
use super::frontier::check_keep;
use super::{AllocError, Frontier, KindName, Problem, Solution};

/// Allocation methods: the DP and the baselines it is compared with. Files name them as
/// [`Method::name`] does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// Dynamic program over the predicted distortion curves (DM3D).
    Dp,
    /// The same sparsity for every layer.
    Uniform,
    /// One threshold on `|w|` across layers.
    Global,
    /// Layer-adaptive magnitude pruning (Lee et al. 2021): one threshold on LAMP scores.
    Lamp,
    /// Erdos-Renyi-Kernel densities (Evci et al. 2020): density proportional to
    /// `sum(shape) / prod(shape)`.
    Erk,
}

impl Method {
    pub const ALL: [Method; 5] = [
        Method::Dp,
        Method::Uniform,
        Method::Global,
        Method::Lamp,
        Method::Erk,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Method::Dp => "dp",
            Method::Uniform => "uniform",
            Method::Global => "global",
            Method::Lamp => "lamp",
            Method::Erk => "erk",
        }
    }

    /// Whether [`solve`] needs the layers' weights (methods that rank weights globally).
    pub fn needs_weights(self) -> bool {
        matches!(self, Method::Global | Method::Lamp)
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Method {
    type Err = AllocError;
    fn from_str(s: &str) -> Result<Method, AllocError> {
        Method::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| AllocError::UnknownMethod(s.to_string()))
    }
}

/// Solves `problem` under `budget` with `method`. `weights` (per layer, problem order, the
/// layer's flat weights) are needed by [`Method::needs_weights`] methods and ignored by the
/// others; `bins` only matters for [`Method::Dp`]. No method's solution keeps more than the
/// budget, counted as masks will prune.
pub fn solve(
    method: Method,
    problem: &Problem,
    weights: Option<&[&[f32]]>,
    budget: Budget,
    bins: usize,
) -> Result<Solution, AllocError> {
    problem.validate()?;
    check_keep(budget.keep)?;
    match method {
        Method::Dp => Frontier::build(problem, budget.kind, bins)?.query(budget.keep),
        _ => Prepared::new(method, problem, weights)?.solve(problem, budget),
    }
}

/// A baseline prepared once for a problem's layers: the weights' sorted scores (global,
/// LAMP) or ERK's spreads are computed here, so that any budget is then answered by a
/// bisection in microseconds; the app queries every baseline on every slider frame.
/// Preparation depends only on the layers and weights, so it survives constraint changes.
#[derive(Clone, Debug)]
pub struct Prepared {
    method: Method,
    data: PreparedData,
}

#[derive(Clone, Debug)]
enum PreparedData {
    Uniform,
    /// Per layer, ascending scores a global threshold cuts.
    Scores {
        scores: Vec<Vec<f64>>,
        top: f64,
    },
    /// ERK: per-layer `sum(shape) / prod(shape)` and the density scale at which all are dense.
    Erk {
        spread: Vec<f64>,
        eps_max: f64,
    },
}

impl Prepared {
    /// Prepares a baseline (not [`Method::Dp`], whose preparation is a [`Frontier`]).
    pub fn new(
        method: Method,
        problem: &Problem,
        weights: Option<&[&[f32]]>,
    ) -> Result<Prepared, AllocError> {
        let data = match method {
            Method::Dp => return Err(AllocError::NotABaseline),
            Method::Uniform => PreparedData::Uniform,
            Method::Global | Method::Lamp => {
                let w = weights.ok_or(AllocError::NeedsWeights(method.name()))?;
                let scores = sorted_scores(problem, w, method == Method::Lamp)?;
                let top = scores
                    .iter()
                    .filter_map(|v| v.last().copied())
                    .fold(0.0f64, f64::max);
                PreparedData::Scores { scores, top }
            }
            Method::Erk => {
                let mut spread = Vec::with_capacity(problem.layers.len());
                for l in &problem.layers {
                    let prod: usize = l.shape.iter().product();
                    if l.shape.is_empty() || prod == 0 {
                        return Err(AllocError::MissingShape(l.name.clone()));
                    }
                    spread.push(l.shape.iter().sum::<usize>() as f64 / prod as f64);
                }
                let eps_max = spread.iter().map(|r| 1.0 / r).fold(0.0f64, f64::max);
                PreparedData::Erk { spread, eps_max }
            }
        };
        Ok(Prepared { method, data })
    }

    pub fn method(&self) -> Method {
        self.method
    }

    /// The baseline's solution under `budget`. `problem` must have the layers this was
    /// prepared for (its constraints may differ).
    pub fn solve(&self, problem: &Problem, budget: Budget) -> Result<Solution, AllocError> {
        problem.validate()?;
        check_keep(budget.keep)?;
        let s = match &self.data {
            PreparedData::Uniform => search(problem, budget, 0.0, 1.0, |x, s| {
                for (s, c) in s.iter_mut().zip(&problem.constraints) {
                    *s = c.clamp(x);
                }
            })?,
            PreparedData::Scores { scores, top } => {
                if scores.len() != problem.layers.len() {
                    return Err(AllocError::WeightsCount {
                        expected: problem.layers.len(),
                        got: scores.len(),
                    });
                }
                // Sparsity = share of weights scoring strictly below the threshold `x`.
                search(problem, budget, 0.0, top * 2.0 + 1.0, |x, s| {
                    for ((s, c), v) in s.iter_mut().zip(&problem.constraints).zip(scores) {
                        let below = v.partition_point(|&y| y < x);
                        *s = c.clamp(if v.is_empty() {
                            0.0
                        } else {
                            below as f64 / v.len() as f64
                        });
                    }
                })?
            }
            PreparedData::Erk { spread, eps_max } => {
                // At eps_max every layer is dense; search x = 1 - eps / eps_max in [0, 1].
                search(problem, budget, 0.0, 1.0, |x, s| {
                    let eps = (1.0 - x) * eps_max;
                    for ((s, c), r) in s.iter_mut().zip(&problem.constraints).zip(spread) {
                        *s = c.clamp(1.0 - (eps * r).min(1.0));
                    }
                })?
            }
        };
        Ok(problem.solution(s))
    }
}

/// The baselines' search: `fill(x, s)` writes per-layer sparsities that prune more as `x`
/// grows, so the kept fraction is nonincreasing in `x`. Bisection finds the smallest `x` in
/// `[lo, hi]` whose exact kept fraction fits the budget, i.e. the largest kept <= budget.
fn search(
    problem: &Problem,
    budget: Budget,
    mut lo: f64,
    mut hi: f64,
    fill: impl Fn(f64, &mut [f64]),
) -> Result<Vec<f64>, AllocError> {
    let total = problem.total_cost(budget.kind)?;
    let mut s = vec![0.0; problem.layers.len()];
    let fits = |x: f64, s: &mut [f64]| {
        fill(x, s);
        problem.kept(budget.kind, total, s) <= budget.keep
    };
    if fits(lo, &mut s) {
        return Ok(s);
    }
    if !fits(hi, &mut s) {
        return Err(AllocError::Infeasible {
            kind: KindName(budget.kind),
            keep: budget.keep,
            least: problem.kept(budget.kind, total, &s),
            why: "the constraints (locked layers, max sparsity)",
        });
    }
    for _ in 0..200 {
        let mid = lo + (hi - lo) / 2.0;
        if mid <= lo || mid >= hi {
            break;
        }
        if fits(mid, &mut s) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    fill(hi, &mut s);
    Ok(s)
}

/// Per layer, the ascending scores a global threshold cuts: `|w|` (global magnitude) or the
/// LAMP score `w_i^2 / sum_{j >= i} w_j^2` over the weights sorted by `w^2`. Both orders
/// agree with the magnitude ranking, so a count of weights below the threshold prunes
/// exactly those weights.
fn sorted_scores(
    problem: &Problem,
    weights: &[&[f32]],
    lamp: bool,
) -> Result<Vec<Vec<f64>>, AllocError> {
    if weights.len() != problem.layers.len() {
        return Err(AllocError::WeightsCount {
            expected: problem.layers.len(),
            got: weights.len(),
        });
    }
    problem
        .layers
        .par_iter()
        .zip(weights.par_iter())
        .map(|(l, w)| {
            if w.len() != l.params {
                return Err(AllocError::WeightsLen {
                    layer: l.name.clone(),
                    expected: l.params,
                    got: w.len(),
                });
            }
            if let Some((index, &value)) = w.iter().enumerate().find(|(_, v)| !v.is_finite()) {
                return Err(AllocError::NonFinite {
                    layer: l.name.clone(),
                    index,
                    value,
                });
            }
            let mut v: Vec<f64> = w.iter().map(|&x| (x as f64).abs()).collect();
            v.sort_unstable_by(f64::total_cmp);
            if lamp {
                let mut suffix = 0.0;
                for x in v.iter_mut().rev() {
                    let sq = *x * *x;
                    suffix += sq;
                    *x = if suffix > 0.0 { sq / suffix } else { 0.0 };
                }
                // Scores ascend in exact arithmetic; keep them sorted despite rounding.
                let mut run = 0.0f64;
                for x in &mut v {
                    run = run.max(*x);
                    *x = run;
                }
            }
            Ok(v)
        })
        .collect()
}
