//! Per-layer sparsities under a FLOPs or params budget (DESIGN.md, "The method", point 5).
//!
//! The main allocator is a dynamic program over a discretised budget axis. Pruning layer `l`
//! to level `k` keeps a fraction of its cost; in *bins* of the budget axis that cost is rounded
//! **up**, so the sum of bin costs bounds the exact cost from above and a solution never exceeds
//! its budget. `G_l(b)` is the least predicted distortion of the first `l` layers that costs at
//! most `b` bins:
//!
//! ```text
//! G_0(b) = 0,   G_l(b) = min over allowed k with c_lk <= b of G_{l-1}(b - c_lk) + d_lk
//! ```
//!
//! One pass gives the answer for *every* budget at once: a [`Frontier`] keeps the argmin table,
//! and any budget is answered by an O(L) backtrack. That is what keeps the budget slider live:
//! dragging it never re-runs the DP, only changing the curves, lambdas or constraints does.
//!
//! The baselines of the paper's comparison (uniform, global magnitude, LAMP, ERK) sit behind
//! the same [`solve`] entry point and obey the same budget and constraint rules, so tables
//! compare like with like. Every method counts what it keeps exactly as masks will prune
//! ([`pruned_count`]), never from the nominal `1 - s`.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use rayon::prelude::*;

use super::allocation_file::{
    ALLOCATION_FORMAT, Allocation, Budget, BudgetKind, LayerConstraint, LayerSparsity,
};
use super::curves::{Curves, ModelInfo};
use super::{Lambdas, Ranking, pruned_count};

/// Default number of bins on the budget axis: fine enough that rounding costs up loses at
/// most `L / 4096` of the budget (2% for 80 layers), small enough to build in milliseconds.
pub const DEFAULT_BINS: usize = 4096;

/// The DP's default soft cap on layer sparsity ([`Problem::layer_cap`]): chosen on validation
/// scenes (docs/pruning-report.md, "Recovery-aware allocation"), where without it the DP at 4x
/// pruned a backbone block to 97-100% and recovery could not bring it back.
pub const DEFAULT_LAYER_CAP: f64 = 0.9;

/// The argmin table holds `u16` option indices, so a layer may offer at most this many levels.
const MAX_OPTIONS: usize = u16::MAX as usize + 1;

/// Refuse frontiers whose argmin table would exceed this, rather than exhaust memory.
const MAX_TABLE_BYTES: usize = 1 << 30;

/// Tolerance for comparing sparsities with constraint bounds (levels like 0.29 are inexact).
const LEVEL_EPS: f64 = 1e-9;

/// Budget positions are computed in `f64`; this keeps `keep * B` that is an exact multiple in
/// real numbers from landing one bin lower (or a cost one bin higher) through rounding noise.
const BIN_EPS: f64 = 1e-9;

/// Width of the blocks of the budget axis the DP fills at once: a block of `G_l`, its argmin
/// and the window of `G_{l-1}` it reads stay in L1, and blocks are the unit of parallel work.
const BLOCK: usize = 512;

/// Errors of allocation. Messages say what to change.
#[derive(Debug, thiserror::Error)]
pub enum AllocError {
    #[error(
        "a constraint names layer `{0}`, which is not in the curves; check the name (the curves' layer names are state-dict names such as `backbone_2d.blocks.0.1.weight`)"
    )]
    UnknownLayer(String),
    #[error("layer `{layer}`: {reason}")]
    BadConstraint { layer: String, reason: String },
    #[error(
        "layer `{layer}`: no sparsity level of its curve satisfies its constraint ({constraint}); the curve has levels {levels}; relax the constraint or compute curves with more levels"
    )]
    NoLevel {
        layer: String,
        constraint: String,
        levels: String,
    },
    #[error("layer `{layer}`: {reason}")]
    Invalid { layer: String, reason: String },
    #[error("nothing to allocate: the problem has no layers")]
    Empty,
    #[error("budget keep {0} is not a fraction in [0, 1]")]
    BadBudget(f64),
    #[error("the layer cap {0} is not a sparsity in [0, 1] (1 disables it)")]
    BadLayerCap(f64),
    #[error(
        "a {kind} budget keeping {keep:.4} is infeasible: {why} keep at least {least:.4}; raise the budget or relax the constraints"
    )]
    Infeasible {
        kind: KindName,
        keep: f64,
        least: f64,
        /// What keeps that much.
        why: &'static str,
    },
    #[error("the layers have no {0} to budget (their total is 0); use the other budget kind")]
    NoCost(KindName),
    #[error("bins must be between 1 and {max} for {layers} layers, got {bins}")]
    BadBins {
        bins: usize,
        max: usize,
        layers: usize,
    },
    #[error("unknown allocation method `{0}` (expected dp, uniform, global, lamp or erk)")]
    UnknownMethod(String),
    #[error("dp is prepared as a Frontier, not as a baseline")]
    NotABaseline,
    #[error("method `{0}` ranks weights across layers: it needs the model's weights")]
    NeedsWeights(&'static str),
    #[error("weights were given for {got} layers, but the problem has {expected}")]
    WeightsCount { expected: usize, got: usize },
    #[error("layer `{layer}`: {got} weights were given, but the curves say it has {expected}")]
    WeightsLen {
        layer: String,
        expected: usize,
        got: usize,
    },
    #[error("layer `{layer}`: weight {index} is {value}; only finite weights can be ranked")]
    NonFinite {
        layer: String,
        index: usize,
        value: f32,
    },
    #[error(
        "layer `{0}` has no weight shape; ERK needs every layer's shape (curves computed elsewhere must carry `shape`)"
    )]
    MissingShape(String),
}

/// Display helper so error messages say "FLOPs" / "params".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KindName(pub BudgetKind);

impl fmt::Display for KindName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.0 {
            BudgetKind::Flops => "FLOPs",
            BudgetKind::Params => "params",
        })
    }
}

/// One layer as the allocators see it: sizes, and its lambda-combined predicted curve.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerInput {
    pub name: String,
    pub params: usize,
    /// Dense FLOPs per scan.
    pub flops: f64,
    /// Weight shape; only ERK needs it.
    pub shape: Vec<usize>,
    /// Sparsity levels, ascending, in [0, 1].
    pub levels: Vec<f64>,
    /// Combined predicted distortion at `levels` (`lambda_conf * conf + lambda_loc * loc`).
    pub distortion: Vec<f64>,
}

impl LayerInput {
    /// Predicted distortion at any sparsity, for baselines whose sparsities fall between
    /// levels: linear interpolation of the curve. Below the first level the curve runs to
    /// (0, 0) (the dense layer is undistorted by definition); above the last it continues
    /// with the last segment's slope when that grows (never below the last value).
    pub fn distortion_at(&self, s: f64) -> f64 {
        let (x, y) = (&self.levels, &self.distortion);
        let n = x.len().min(y.len());
        if n == 0 {
            return 0.0;
        }
        if s <= x[0] {
            return if x[0] > 0.0 {
                y[0] * (s.max(0.0) / x[0])
            } else {
                y[0]
            };
        }
        if s >= x[n - 1] {
            if n < 2 {
                return y[0];
            }
            let slope = (y[n - 1] - y[n - 2]) / (x[n - 1] - x[n - 2]);
            return y[n - 1] + slope.max(0.0) * (s - x[n - 1]);
        }
        let i = x[..n].partition_point(|&v| v <= s); // x[i-1] <= s < x[i]
        let t = (s - x[i - 1]) / (x[i] - x[i - 1]);
        y[i - 1] + t * (y[i] - y[i - 1])
    }
}

/// What a user allows for one layer. Locked layers stay dense (sparsity 0).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Constraint {
    pub min_sparsity: f64,
    pub max_sparsity: f64,
    pub locked: bool,
}

impl Default for Constraint {
    fn default() -> Self {
        Constraint {
            min_sparsity: 0.0,
            max_sparsity: 1.0,
            locked: false,
        }
    }
}

impl Constraint {
    /// Whether sparsity `s` is allowed (with a small tolerance for inexact levels).
    pub fn allows(&self, s: f64) -> bool {
        if self.locked {
            return s.abs() <= LEVEL_EPS;
        }
        s >= self.min_sparsity - LEVEL_EPS && s <= self.max_sparsity + LEVEL_EPS
    }

    /// Moves a sparsity into the allowed range (locked: 0).
    pub fn clamp(&self, s: f64) -> f64 {
        if self.locked {
            0.0
        } else {
            s.clamp(self.min_sparsity, self.max_sparsity)
        }
    }

    fn describe(&self) -> String {
        if self.locked {
            "locked dense".into()
        } else {
            format!("sparsity in [{}, {}]", self.min_sparsity, self.max_sparsity)
        }
    }
}

/// An allocation problem: the layers (in curve order) and one constraint per layer.
#[derive(Clone, Debug, PartialEq)]
pub struct Problem {
    pub layers: Vec<LayerInput>,
    pub constraints: Vec<Constraint>,
    /// The DP's soft cap on each layer's sparsity: a level above it is chosen only when the
    /// budget cannot be met otherwise, and then with the least total excess over the cap
    /// (spread, rather than one layer cut to 100%). Recovery cannot
    /// revive a layer pruned (almost) away, and the additive model cannot see that a chain of
    /// individually cheap near-empty layers cuts a branch off. 1 disables it; the baselines
    /// ignore it (they are the published methods).
    pub layer_cap: f64,
}

impl Problem {
    /// Unconstrained problem over `layers`.
    pub fn new(layers: Vec<LayerInput>) -> Problem {
        let constraints = vec![Constraint::default(); layers.len()];
        Problem {
            layers,
            constraints,
            layer_cap: 1.0,
        }
    }

    /// The same problem with the DP's soft cap set to `cap` (see [`Problem::layer_cap`]).
    pub fn with_layer_cap(mut self, cap: f64) -> Result<Problem, AllocError> {
        if !(0.0..=1.0).contains(&cap) {
            return Err(AllocError::BadLayerCap(cap));
        }
        self.layer_cap = cap;
        Ok(self)
    }

    /// The problem of a curves file: predicted curves combined with `lambdas`, the
    /// constraints given by layer name (layers not named are unconstrained) and the default
    /// layer cap.
    pub fn from_curves(
        curves: &Curves,
        lambdas: Lambdas,
        constraints: &HashMap<String, Constraint>,
    ) -> Result<Problem, AllocError> {
        let layers: Vec<LayerInput> = curves
            .layers
            .iter()
            .map(|l| LayerInput {
                name: l.name.clone(),
                params: l.params,
                flops: l.flops,
                shape: l.shape.clone(),
                levels: l.sparsity.clone(),
                distortion: l.distortion.combined(lambdas),
            })
            .collect();
        // Sorted so that, of several unknown names, the error always names the same one.
        let mut names: Vec<&String> = constraints.keys().collect();
        names.sort();
        if let Some(unknown) = names
            .into_iter()
            .find(|n| !layers.iter().any(|l| &l.name == *n))
        {
            return Err(AllocError::UnknownLayer(unknown.clone()));
        }
        let constraints = layers
            .iter()
            .map(|l| constraints.get(&l.name).copied().unwrap_or_default())
            .collect();
        let p = Problem {
            layers,
            constraints,
            layer_cap: DEFAULT_LAYER_CAP,
        };
        p.validate()?;
        Ok(p)
    }

    /// Total dense FLOPs and params of the layers.
    pub fn totals(&self) -> (f64, usize) {
        (
            self.layers.iter().map(|l| l.flops).sum(),
            self.layers.iter().map(|l| l.params).sum(),
        )
    }

    /// Checks what every allocator relies on; the message names the layer.
    pub fn validate(&self) -> Result<(), AllocError> {
        if self.layers.is_empty() {
            return Err(AllocError::Empty);
        }
        if !(0.0..=1.0).contains(&self.layer_cap) {
            return Err(AllocError::BadLayerCap(self.layer_cap));
        }
        if self.constraints.len() != self.layers.len() {
            return Err(AllocError::Invalid {
                layer: String::new(),
                reason: format!(
                    "{} constraints for {} layers",
                    self.constraints.len(),
                    self.layers.len()
                ),
            });
        }
        for (l, c) in self.layers.iter().zip(&self.constraints) {
            let invalid = |reason: String| AllocError::Invalid {
                layer: l.name.clone(),
                reason,
            };
            if l.levels.is_empty() {
                return Err(invalid("no sparsity levels".into()));
            }
            if l.levels.len() != l.distortion.len() {
                return Err(invalid(format!(
                    "{} distortion values for {} levels",
                    l.distortion.len(),
                    l.levels.len()
                )));
            }
            if l.levels.iter().any(|s| !(0.0..=1.0).contains(s))
                || l.levels.windows(2).any(|w| w[0] >= w[1])
            {
                return Err(invalid(
                    "sparsity levels must be ascending and within [0, 1]".into(),
                ));
            }
            if l.distortion.iter().any(|d| !d.is_finite()) {
                return Err(invalid("distortion values must be finite".into()));
            }
            if !(l.flops.is_finite() && l.flops >= 0.0) {
                return Err(invalid(format!("flops {} is not finite and >= 0", l.flops)));
            }
            let ok = |v: f64| (0.0..=1.0).contains(&v);
            if !ok(c.min_sparsity) || !ok(c.max_sparsity) || c.min_sparsity > c.max_sparsity {
                return Err(AllocError::BadConstraint {
                    layer: l.name.clone(),
                    reason: format!(
                        "min sparsity {} and max sparsity {} must satisfy 0 <= min <= max <= 1",
                        c.min_sparsity, c.max_sparsity
                    ),
                });
            }
        }
        Ok(())
    }

    /// Dense cost of each layer under a budget kind.
    fn costs(&self, kind: BudgetKind) -> Vec<f64> {
        self.layers
            .iter()
            .map(|l| match kind {
                BudgetKind::Flops => l.flops,
                BudgetKind::Params => l.params as f64,
            })
            .collect()
    }

    fn total_cost(&self, kind: BudgetKind) -> Result<f64, AllocError> {
        let total: f64 = self.costs(kind).iter().sum();
        if total > 0.0 && total.is_finite() {
            Ok(total)
        } else {
            Err(AllocError::NoCost(KindName(kind)))
        }
    }

    /// Exact kept fraction of `kind` for per-layer sparsities.
    fn kept(&self, kind: BudgetKind, total: f64, sparsity: &[f64]) -> f64 {
        let kept: f64 = self
            .layers
            .iter()
            .zip(sparsity)
            .map(|(l, &s)| {
                let q = kept_fraction(s, l.params);
                match kind {
                    BudgetKind::Flops => q * l.flops,
                    BudgetKind::Params => (l.params - pruned_count(s, l.params)) as f64,
                }
            })
            .sum();
        kept / total
    }

    /// What a user should know about `solution` before trusting it: layers pruned entirely
    /// (the network is cut there), and curves that cannot tell layers apart.
    pub fn warnings(&self, solution: &Solution) -> Vec<String> {
        let mut w = Vec::new();
        let cut: Vec<&str> = self
            .layers
            .iter()
            .zip(&solution.sparsity)
            .filter(|&(l, &s)| l.params > 0 && pruned_count(s, l.params) == l.params)
            .map(|(l, _)| l.name.as_str())
            .collect();
        if !cut.is_empty() {
            w.push(format!(
                "{} layer(s) pruned entirely ({}): the network is cut there, nothing passes \
                 through them; raise the budget or cap them (a max-sparsity constraint; `--layer-cap` in the CLI)",
                cut.len(),
                cut.join(", ")
            ));
        }
        let flat = |l: &LayerInput| l.distortion.windows(2).all(|w| w[0] == w[1]);
        if self.layers.iter().all(flat) {
            w.push(
                "every layer's curve is flat with these group weights (the same distortion at \
                 every sparsity): nothing tells the levels apart, so this allocation is \
                 arbitrary; check the curves and the lambdas"
                    .into(),
            );
        }
        w
    }

    /// The [`Solution`] of per-layer sparsities: what it keeps, exactly, and its predicted
    /// distortion (interpolated between levels).
    pub fn solution(&self, sparsity: Vec<f64>) -> Solution {
        let predicted = self
            .layers
            .iter()
            .zip(&sparsity)
            .map(|(l, &s)| l.distortion_at(s))
            .sum();
        self.solution_with(sparsity, predicted)
    }

    fn solution_with(&self, sparsity: Vec<f64>, predicted: f64) -> Solution {
        let (mut flops, mut params, mut flops_dense, mut params_dense) = (0.0, 0usize, 0.0, 0);
        for (l, &s) in self.layers.iter().zip(&sparsity) {
            flops += kept_fraction(s, l.params) * l.flops;
            params += l.params - pruned_count(s, l.params);
            flops_dense += l.flops;
            params_dense += l.params;
        }
        Solution {
            sparsity,
            flops_kept: ratio(flops, flops_dense),
            params_kept: ratio(params as f64, params_dense as f64),
            flops,
            predicted,
        }
    }
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { 1.0 }
}

/// Fraction of a layer's `n` weights (and so of its FLOPs) that sparsity `s` keeps, counted
/// as masks prune: `n - floor(s n)` of `n`, which can be a little more than `1 - s`. A layer
/// without weights is taken at its nominal `1 - s`.
fn kept_fraction(s: f64, n: usize) -> f64 {
    if n == 0 {
        1.0 - s.clamp(0.0, 1.0)
    } else {
        (n - pruned_count(s, n)) as f64 / n as f64
    }
}

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

/// Per-layer sparsities and what they keep.
#[derive(Clone, Debug, PartialEq)]
pub struct Solution {
    /// One sparsity per layer, in problem order.
    pub sparsity: Vec<f64>,
    /// Fractions of the layers' dense FLOPs and params kept, counted as masks prune.
    pub flops_kept: f64,
    pub params_kept: f64,
    /// Kept FLOPs per scan (absolute).
    pub flops: f64,
    /// Sum of the layers' predicted distortions (additivity).
    pub predicted: f64,
}

impl Solution {
    /// The `pruneview-allocation/1` record of this solution.
    pub fn to_allocation(
        &self,
        problem: &Problem,
        method: Method,
        budget: Budget,
        model: ModelInfo,
        ranking: Ranking,
        lambdas: Lambdas,
    ) -> Allocation {
        Allocation {
            format: ALLOCATION_FORMAT.to_string(),
            method,
            budget,
            model,
            ranking,
            lambda: lambdas,
            flops_kept: self.flops_kept,
            params_kept: self.params_kept,
            flops_dense: problem.totals().0,
            flops: self.flops,
            predicted_distortion: self.predicted,
            layers: problem
                .layers
                .iter()
                .zip(&self.sparsity)
                .map(|(l, &s)| LayerSparsity {
                    name: l.name.clone(),
                    sparsity: s,
                })
                .collect(),
            layer_cap: (method == Method::Dp && problem.layer_cap < 1.0)
                .then_some(problem.layer_cap),
            constraints: problem
                .layers
                .iter()
                .zip(&problem.constraints)
                .filter(|(_, c)| **c != Constraint::default())
                .map(|(l, &c)| LayerConstraint {
                    name: l.name.clone(),
                    constraint: c,
                })
                .collect(),
        }
    }
}

/// Cost in bins of keeping fraction `q` of a layer of cost `cost` (of `total`), rounded up.
fn bin_cost(q: f64, cost: f64, total: f64, bins: usize) -> u32 {
    let x = q * cost / total * bins as f64;
    (x - BIN_EPS).ceil().max(0.0) as u32
}

/// The budget position of `keep`: `floor(keep * B)`, exact multiples not rounded down.
fn budget_bin(keep: f64, bins: usize) -> usize {
    ((keep * bins as f64 + BIN_EPS).floor().max(0.0) as usize).min(bins)
}

fn check_keep(keep: f64) -> Result<(), AllocError> {
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
fn dp_block(
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
fn dp_block_impl(
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

#[cfg(test)]
mod tests {
    use super::*;

    use crate::rng::Rng;

    /// Uniform integer in `[lo, hi]`.
    fn range(rng: &mut Rng, lo: usize, hi: usize) -> usize {
        rng.int(lo as i64, hi as i64) as usize
    }

    /// Standard normal (Box-Muller) with f64 precision.
    fn normal(rng: &mut Rng) -> f64 {
        let (u, v) = (rng.f64().max(1e-300), rng.f64());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }

    /// A layer with random sizes and a random increasing curve over `levels`.
    fn layer(rng: &mut Rng, i: usize, levels: Vec<f64>) -> LayerInput {
        let (a, b) = (range(rng, 2, 24), range(rng, 2, 24));
        let shape = vec![a, b, 3, 3];
        let params = shape.iter().product();
        let flops = params as f64 * range(rng, 1, 400) as f64 * 2.0;
        let scale = 10f64.powf(rng.f64() * 4.0 - 2.0);
        let mut d = 0.0;
        let distortion = levels
            .iter()
            .enumerate()
            .map(|(k, &s)| {
                if k > 0 {
                    d += scale * rng.f64() * s;
                }
                d
            })
            .collect();
        LayerInput {
            name: format!("layer{i}.weight"),
            params,
            flops,
            shape,
            levels,
            distortion,
        }
    }

    fn random_levels(rng: &mut Rng, k: usize) -> Vec<f64> {
        let mut v: Vec<f64> = (1..k)
            .map(|_| (rng.f64() * 100.0).round() / 100.0)
            .collect();
        v.push(0.0);
        v.sort_by(f64::total_cmp);
        v.dedup();
        v
    }

    fn random_constraint(rng: &mut Rng) -> Constraint {
        match range(rng, 0, 5) {
            0 => Constraint {
                locked: true,
                ..Default::default()
            },
            1 => Constraint {
                min_sparsity: 0.0,
                max_sparsity: 0.5,
                locked: false,
            },
            2 => Constraint {
                min_sparsity: 0.2,
                max_sparsity: 1.0,
                locked: false,
            },
            _ => Constraint::default(),
        }
    }

    fn small_problem(rng: &mut Rng, constrained: bool) -> Problem {
        let n = range(rng, 3, 4);
        let layers: Vec<LayerInput> = (0..n)
            .map(|i| {
                let k = range(rng, 4, 6);
                let lv = random_levels(rng, k);
                layer(rng, i, lv)
            })
            .collect();
        let mut p = Problem::new(layers);
        if constrained {
            for c in &mut p.constraints {
                *c = random_constraint(rng);
            }
        }
        p
    }

    fn weights_for(rng: &mut Rng, p: &Problem) -> Vec<Vec<f32>> {
        p.layers
            .iter()
            .map(|l| {
                let scale = 10f64.powf(rng.f64() * 2.0 - 1.0);
                (0..l.params)
                    .map(|_| (normal(rng) * scale) as f32)
                    .collect()
            })
            .collect()
    }

    /// Exact kept fraction of a solution, recomputed independently of the allocators.
    fn exact_kept(p: &Problem, kind: BudgetKind, s: &[f64]) -> f64 {
        let (mut kept, mut total) = (0.0, 0.0);
        for (l, &s) in p.layers.iter().zip(s) {
            let n = l.params;
            let pruned = pruned_count(s, n);
            let (c, k) = match kind {
                BudgetKind::Flops => (l.flops, l.flops * (n - pruned) as f64 / n as f64),
                BudgetKind::Params => (n as f64, (n - pruned) as f64),
            };
            kept += k;
            total += c;
        }
        kept / total
    }

    /// The DP's bin cost of one level per layer (`pick[l]` indexes layer l's levels).
    fn picked_bins(p: &Problem, kind: BudgetKind, bins: usize, pick: &[usize]) -> usize {
        let costs = p.costs(kind);
        let total: f64 = costs.iter().sum();
        pick.iter()
            .zip(&p.layers)
            .zip(&costs)
            .map(|((&k, l), &c)| {
                bin_cost(kept_fraction(l.levels[k], l.params), c, total, bins) as usize
            })
            .sum()
    }

    /// Least distortion over every combination of allowed levels that `fits`.
    fn brute_force(p: &Problem, fits: impl Fn(&[usize]) -> bool) -> Option<f64> {
        let allowed: Vec<Vec<usize>> = p
            .layers
            .iter()
            .zip(&p.constraints)
            .map(|(l, c)| {
                (0..l.levels.len())
                    .filter(|&k| c.allows(l.levels[k]))
                    .collect()
            })
            .collect();
        let mut idx = vec![0usize; p.layers.len()];
        let mut best: Option<f64> = None;
        loop {
            if allowed.iter().all(|a| !a.is_empty()) {
                let pick: Vec<usize> = idx.iter().zip(&allowed).map(|(&i, a)| a[i]).collect();
                if fits(&pick) {
                    let d: f64 = pick
                        .iter()
                        .zip(&p.layers)
                        .map(|(&k, l)| l.distortion[k])
                        .sum();
                    best = Some(best.map_or(d, |b: f64| b.min(d)));
                }
            } else {
                return None;
            }
            let mut i = 0;
            loop {
                if i == idx.len() {
                    return best;
                }
                idx[i] += 1;
                if idx[i] < allowed[i].len() {
                    break;
                }
                idx[i] = 0;
                i += 1;
            }
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * (1.0 + a.abs().max(b.abs()))
    }

    #[test]
    fn dp_equals_brute_force_on_small_instances() {
        let mut rng = Rng::new(7);
        let mut checked = 0;
        for case in 0..150 {
            let p = small_problem(&mut rng, case % 2 == 1);
            let kind = if case % 3 == 0 {
                BudgetKind::Params
            } else {
                BudgetKind::Flops
            };
            let bins = if case % 2 == 0 { 64 } else { 256 };
            let f = match Frontier::build(&p, kind, bins) {
                Ok(f) => f,
                Err(AllocError::NoLevel { .. }) => continue,
                Err(e) => panic!("case {case}: {e}"),
            };
            checked += 1;
            let bin_of = |pick: &[usize]| picked_bins(&p, kind, bins, pick);
            let nl = p.layers.len() as f64;
            for step in 0..=40 {
                let keep = step as f64 / 40.0;
                let b = budget_bin(keep, bins);
                let bf = if keep >= 1.0 {
                    brute_force(&p, |_| true)
                } else {
                    brute_force(&p, |pick| bin_of(pick) <= b)
                };
                match (f.query(keep), bf) {
                    (Ok(sol), Some(v)) => {
                        assert!(
                            close(sol.predicted, v),
                            "case {case} keep {keep}: dp {} brute force {v}",
                            sol.predicted
                        );
                        let kept = exact_kept(&p, kind, &sol.sparsity);
                        assert!(kept <= keep + 1e-12, "case {case}: kept {kept} > {keep}");
                        let again: f64 = p
                            .layers
                            .iter()
                            .zip(&sol.sparsity)
                            .map(|(l, &s)| l.distortion_at(s))
                            .sum();
                        assert!(close(again, sol.predicted));
                        // Rounding costs up loses at most L bins against the exact problem.
                        let slack = keep - nl / bins as f64;
                        let exact = brute_force(&p, |pick| {
                            let s: Vec<f64> = pick
                                .iter()
                                .zip(&p.layers)
                                .map(|(&k, l)| l.levels[k])
                                .collect();
                            exact_kept(&p, kind, &s) <= slack
                        });
                        if let Some(e) = exact {
                            assert!(sol.predicted <= e + 1e-9 * (1.0 + e), "case {case}");
                        }
                    }
                    (Err(AllocError::Infeasible { least, .. }), None) => {
                        assert!(least > keep, "case {case}: least {least} keep {keep}");
                    }
                    (r, bf) => panic!("case {case} keep {keep}: dp {r:?}, brute force {bf:?}"),
                }
            }
        }
        assert!(checked > 100, "only {checked} instances had allowed levels");
    }

    /// With a layer cap the DP first minimises the total sparsity above it, then distortion
    /// (brute force over every combination, the same bins); its predicted distortion is the
    /// curves' own, without the penalty, and any budget feasible without the cap stays so.
    #[test]
    fn layer_cap_is_exceeded_only_as_the_budget_needs() {
        let mut rng = Rng::new(11);
        let mut exceeded = 0;
        for case in 0..80 {
            let cap = [0.3, 0.5, 0.7][case % 3];
            let p = small_problem(&mut rng, false).with_layer_cap(cap).unwrap();
            let kind = BudgetKind::Flops;
            let bins = 128;
            let f = Frontier::build(&p, kind, bins).unwrap();
            let uncapped = Frontier::build(
                &Problem {
                    layer_cap: 1.0,
                    ..p.clone()
                },
                kind,
                bins,
            )
            .unwrap();
            let bin_of = |pick: &[usize]| picked_bins(&p, kind, bins, pick);
            let excess = |s: f64| (s - cap).max(0.0);
            // The same problem with each level's excess as its distortion.
            let mut by_excess = p.clone();
            for l in &mut by_excess.layers {
                l.distortion = l.levels.iter().map(|&s| excess(s)).collect();
            }
            let over = |pick: &[usize]| -> f64 {
                pick.iter()
                    .zip(&p.layers)
                    .map(|(&k, l)| excess(l.levels[k]))
                    .sum()
            };
            for step in 1..40 {
                let keep = step as f64 / 40.0;
                let b = budget_bin(keep, bins);
                let Ok(sol) = f.query(keep) else {
                    assert!(uncapped.query(keep).is_err(), "case {case} keep {keep}");
                    continue;
                };
                let ours: f64 = sol.sparsity.iter().map(|&s| excess(s)).sum();
                exceeded += usize::from(ours > 0.0);
                let least = brute_force(&by_excess, |pick| bin_of(pick) <= b).unwrap();
                assert!(
                    (ours - least).abs() < 1e-9,
                    "case {case} keep {keep}: {ours} {least}"
                );
                let d = brute_force(&p, |pick| bin_of(pick) <= b && over(pick) <= least + 1e-9)
                    .unwrap();
                assert!(
                    close(sol.predicted, d),
                    "case {case} keep {keep}: dp {} brute force {d}",
                    sol.predicted
                );
            }
            for (keep, d) in f.points() {
                let q = f.query(keep).unwrap();
                assert!(close(d, q.predicted), "case {case}: point at {keep}");
            }
        }
        assert!(exceeded > 0, "no budget needed a layer past its cap");
    }

    #[test]
    fn warns_of_cut_layers_and_flat_curves() {
        let mut rng = Rng::new(5);
        let mut p = small_problem(&mut rng, false).with_layer_cap(1.0).unwrap();
        let mut s = vec![0.0; p.layers.len()];
        assert!(p.warnings(&p.solution(s.clone())).is_empty());
        s[1] = 1.0;
        let w = p.warnings(&p.solution(s.clone()));
        assert_eq!(w.len(), 1);
        assert!(
            w[0].contains("pruned entirely") && w[0].contains(&p.layers[1].name),
            "{w:?}"
        );
        for l in &mut p.layers {
            l.distortion.iter_mut().for_each(|d| *d = 0.5);
        }
        let w = p.warnings(&p.solution(vec![0.0; p.layers.len()]));
        assert!(w.len() == 1 && w[0].contains("flat"), "{w:?}");
    }

    #[test]
    fn dispatched_kernel_matches_the_portable_one() {
        let mut rng = Rng::new(17);
        let prev: Vec<f64> = (0..700)
            .map(|i| if i < 5 { f64::INFINITY } else { rng.f64() })
            .collect();
        let costs: Vec<u32> = vec![0, 3, 3, 40, 650, 800];
        let dist: Vec<f64> = (0..costs.len()).map(|_| rng.f64()).collect();
        for (start, len) in [(0, 700), (100, 37), (650, 50)] {
            let (mut n1, mut a1) = (vec![0.0; len], vec![0.0; len]);
            let (mut n2, mut a2) = (vec![0.0; len], vec![0.0; len]);
            dp_block(&prev, start, &mut n1, &mut a1, &costs, &dist);
            dp_block_impl(&prev, start, &mut n2, &mut a2, &costs, &dist);
            assert_eq!((n1, a1), (n2, a2));
        }
    }

    #[test]
    fn exact_multiples_do_not_round_up() {
        // Four equal layers of 100 weights: sparsity 0.5 everywhere keeps exactly half.
        let layers = (0..4)
            .map(|i| LayerInput {
                name: format!("l{i}"),
                params: 100,
                flops: 1000.0,
                shape: vec![10, 10],
                levels: vec![0.0, 0.5, 1.0],
                distortion: vec![0.0, 1.0, 5.0],
            })
            .collect();
        let p = Problem::new(layers);
        for kind in [BudgetKind::Flops, BudgetKind::Params] {
            let f = Frontier::build(&p, kind, 4096).unwrap();
            let s = f.query(0.5).unwrap();
            assert_eq!(s.sparsity, vec![0.5; 4]);
            assert_eq!(s.predicted, 4.0);
            assert_eq!(s.flops_kept, 0.5);
            assert_eq!(s.params_kept, 0.5);
            assert_eq!(s.flops, 2000.0);
            assert_eq!(f.query(1.0).unwrap().sparsity, vec![0.0; 4]);
            assert_eq!(f.query(0.0).unwrap().sparsity, vec![1.0; 4]);
        }
    }

    #[test]
    fn frontier_is_monotone_and_points_match_queries() {
        let mut rng = Rng::new(11);
        for case in 0..10 {
            let layers = (0..20)
                .map(|i| layer(&mut rng, i, (0..=20).map(|k| k as f64 / 20.0).collect()))
                .collect();
            let mut p = Problem::new(layers);
            if case % 2 == 1 {
                for c in &mut p.constraints {
                    *c = random_constraint(&mut rng);
                }
            }
            let f = Frontier::build(&p, BudgetKind::Flops, 1024).unwrap();
            let pts = f.points();
            assert!(!pts.is_empty());
            assert!((pts[0].0 - f.least_keep()).abs() < 1e-12);
            assert_eq!(pts.last().unwrap().0, 1.0);
            for w in pts.windows(2) {
                assert!(w[0].0 < w[1].0);
                assert!(w[1].1 <= w[0].1, "case {case}: frontier rises at {w:?}");
            }
            for &(keep, d) in pts.iter().step_by(37) {
                let s = f.query(keep).unwrap();
                assert!(close(s.predicted, d), "case {case} keep {keep}");
                assert!(s.flops_kept <= keep + 1e-12);
            }
            if f.least_keep() > 0.0 {
                let e = f.query(f.least_keep() / 2.0).unwrap_err();
                assert!(matches!(e, AllocError::Infeasible { .. }), "{e}");
            }
        }
    }

    #[test]
    fn no_method_exceeds_its_budget_and_constraints_hold() {
        let mut rng = Rng::new(23);
        for case in 0..12 {
            let layers: Vec<LayerInput> = (0..8)
                .map(|i| layer(&mut rng, i, (0..=10).map(|k| k as f64 / 10.0).collect()))
                .collect();
            let mut p = Problem::new(layers);
            if case % 2 == 1 {
                for c in &mut p.constraints {
                    *c = random_constraint(&mut rng);
                }
            }
            let w = weights_for(&mut rng, &p);
            let wr: Vec<&[f32]> = w.iter().map(|v| v.as_slice()).collect();
            for kind in [BudgetKind::Flops, BudgetKind::Params] {
                for keep in [0.0, 0.05, 0.2, 0.37, 0.5, 0.8, 0.99, 1.0] {
                    let budget = Budget { kind, keep };
                    for m in Method::ALL {
                        match solve(m, &p, Some(&wr), budget, 512) {
                            Ok(s) => {
                                let kept = exact_kept(&p, kind, &s.sparsity);
                                assert!(kept <= keep + 1e-12, "{m} {kind:?} {keep}: {kept}");
                                let reported = match kind {
                                    BudgetKind::Flops => s.flops_kept,
                                    BudgetKind::Params => s.params_kept,
                                };
                                assert!((reported - kept).abs() < 1e-12);
                                for (c, &sp) in p.constraints.iter().zip(&s.sparsity) {
                                    assert!(c.allows(sp), "{m}: {sp} breaks {c:?}");
                                }
                            }
                            Err(AllocError::Infeasible { least, .. }) => {
                                assert!(least > keep, "{m} {kind:?} {keep}: least {least}");
                                assert!(case % 2 == 1 || keep < 0.05 || m == Method::Dp);
                            }
                            Err(e) => panic!("{m}: {e}"),
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn baselines_hit_the_budget() {
        let mut rng = Rng::new(5);
        let layers: Vec<LayerInput> = (0..10)
            .map(|i| layer(&mut rng, i, (0..=10).map(|k| k as f64 / 10.0).collect()))
            .collect();
        let mut p = Problem::new(layers);
        p.constraints[3].locked = true;
        p.constraints[5].max_sparsity = 0.3;
        let w = weights_for(&mut rng, &p);
        let wr: Vec<&[f32]> = w.iter().map(|v| v.as_slice()).collect();
        for kind in [BudgetKind::Flops, BudgetKind::Params] {
            for keep in [0.3, 0.5, 0.7, 0.9] {
                for m in [Method::Uniform, Method::Global, Method::Lamp, Method::Erk] {
                    let s = solve(m, &p, Some(&wr), Budget { kind, keep }, 0).unwrap();
                    let kept = exact_kept(&p, kind, &s.sparsity);
                    // One weight of the largest layer is the finest step of these searches.
                    assert!(
                        kept <= keep + 1e-12 && kept > keep - 0.005,
                        "{m} {kind:?} {keep}: {kept}"
                    );
                    assert_eq!(s.sparsity[3], 0.0);
                    assert!(s.sparsity[5] <= 0.3);
                }
            }
        }
    }

    #[test]
    fn uniform_prunes_one_minus_keep_everywhere() {
        let mut rng = Rng::new(3);
        let layers: Vec<LayerInput> = (0..6)
            .map(|i| layer(&mut rng, i, vec![0.0, 0.5, 1.0]))
            .collect();
        let p = Problem::new(layers);
        for keep in [0.1, 0.25, 0.5, 0.75] {
            let budget = Budget {
                kind: BudgetKind::Params,
                keep,
            };
            let s = solve(Method::Uniform, &p, None, budget, 0).unwrap();
            let first = s.sparsity[0];
            assert!(s.sparsity.iter().all(|&x| x == first));
            // Masks keep n - floor(s n) >= (1 - s) n weights, so s may sit a step above 1 - k.
            let n_min = p.layers.iter().map(|l| l.params).min().unwrap() as f64;
            assert!(first >= 1.0 - keep - 1e-12 && first <= 1.0 - keep + 1.0 / n_min);
        }
    }

    #[test]
    fn erk_keeps_small_layers_denser() {
        let mk = |name: &str, shape: Vec<usize>| LayerInput {
            name: name.into(),
            params: shape.iter().product(),
            flops: shape.iter().product::<usize>() as f64 * 100.0,
            shape,
            levels: vec![0.0, 1.0],
            distortion: vec![0.0, 1.0],
        };
        let p = Problem::new(vec![
            mk("small", vec![16, 8, 3, 3]),
            mk("mid", vec![64, 64, 3, 3]),
            mk("large", vec![256, 256, 3, 3]),
        ]);
        let budget = Budget {
            kind: BudgetKind::Params,
            keep: 0.2,
        };
        let s = solve(Method::Erk, &p, None, budget, 0).unwrap();
        assert!(s.sparsity[0] < s.sparsity[1] && s.sparsity[1] < s.sparsity[2]);
        assert!(s.params_kept <= 0.2 && s.params_kept > 0.199);
        // Densities follow sum(shape) / prod(shape) where no layer saturates.
        let d = |i: usize| 1.0 - s.sparsity[i];
        let r = |i: usize| {
            let sh = &p.layers[i].shape;
            sh.iter().sum::<usize>() as f64 / sh.iter().product::<usize>() as f64
        };
        if d(0) < 1.0 {
            assert!((d(0) / d(2) - r(0) / r(2)).abs() / (r(0) / r(2)) < 0.01);
        }
        let mut q = p.clone();
        q.layers[1].shape.clear();
        let e = solve(Method::Erk, &q, None, budget, 0).unwrap_err();
        assert!(e.to_string().contains("`mid`"), "{e}");
    }

    #[test]
    fn magnitude_methods_prune_small_weights_first() {
        let mut rng = Rng::new(9);
        let mk = |name: &str| LayerInput {
            name: name.into(),
            params: 2000,
            flops: 2000.0,
            shape: vec![2000],
            levels: vec![0.0, 1.0],
            distortion: vec![0.0, 1.0],
        };
        let p = Problem::new(vec![mk("big"), mk("tiny")]);
        let big: Vec<f32> = (0..2000).map(|_| normal(&mut rng) as f32).collect();
        let tiny: Vec<f32> = (0..2000).map(|_| 0.05 * normal(&mut rng) as f32).collect();
        let budget = Budget {
            kind: BudgetKind::Params,
            keep: 0.6,
        };
        let g = solve(Method::Global, &p, Some(&[&big, &tiny]), budget, 0).unwrap();
        assert!(
            g.sparsity[1] > 0.75 && g.sparsity[0] < 0.05,
            "{:?}",
            g.sparsity
        );

        // LAMP is scale-invariant per layer: it prunes more where weights are small relative
        // to the layer's own large ones (a heavy-tailed layer), not merely where they are small.
        let flat: Vec<f32> = (0..2000).map(|_| 1.0 + 0.1 * rng.f64() as f32).collect();
        let tailed: Vec<f32> = (0..2000)
            .map(|i| {
                if i % 20 == 0 {
                    5.0
                } else {
                    0.05 * normal(&mut rng) as f32
                }
            })
            .collect();
        let l = solve(Method::Lamp, &p, Some(&[&flat, &tailed]), budget, 0).unwrap();
        assert!(l.sparsity[1] > l.sparsity[0] + 0.2, "{:?}", l.sparsity);
        let tailed_scaled: Vec<f32> = tailed.iter().map(|w| w * 1000.0).collect();
        let l2 = solve(Method::Lamp, &p, Some(&[&flat, &tailed_scaled]), budget, 0).unwrap();
        assert!((l2.sparsity[1] - l.sparsity[1]).abs() < 0.01);

        let e = solve(Method::Lamp, &p, None, budget, 0).unwrap_err();
        assert!(matches!(e, AllocError::NeedsWeights("lamp")));
        let e = solve(Method::Global, &p, Some(&[&big]), budget, 0).unwrap_err();
        assert!(matches!(e, AllocError::WeightsCount { .. }));
        let mut bad = big.clone();
        bad[7] = f32::NAN;
        let e = solve(Method::Global, &p, Some(&[&bad, &tiny]), budget, 0).unwrap_err();
        assert!(e.to_string().contains("`big`") && e.to_string().contains("weight 7"));
    }

    #[test]
    fn constraints_restrict_levels_and_report_clearly() {
        let mk = |name: &str, levels: Vec<f64>| LayerInput {
            name: name.into(),
            params: 100,
            flops: 100.0,
            shape: vec![100],
            distortion: levels.iter().map(|s| s * s).collect(),
            levels,
        };
        let p = Problem::new(vec![
            mk("a", vec![0.0, 0.3, 0.6, 0.9]),
            mk("b", vec![0.1, 0.5, 0.9]),
        ]);
        // Locking a layer whose curve has no dense level is impossible.
        let mut q = p.clone();
        q.constraints[1].locked = true;
        let e = Frontier::build(&q, BudgetKind::Flops, 64).unwrap_err();
        assert!(
            matches!(&e, AllocError::NoLevel { layer, .. } if layer == "b"),
            "{e}"
        );

        let mut q = p.clone();
        q.constraints[0] = Constraint {
            min_sparsity: 0.3,
            max_sparsity: 0.6,
            locked: false,
        };
        let f = Frontier::build(&q, BudgetKind::Flops, 4096).unwrap();
        for keep in [0.3, 0.5, 0.8, 1.0] {
            let s = f.query(keep).unwrap();
            assert!(
                (0.3..=0.6).contains(&s.sparsity[0]),
                "{keep}: {:?}",
                s.sparsity
            );
        }
        // Least feasible: layer a at 0.6 keeps 40, layer b at 0.9 keeps 10 of 200.
        let e = f.query(0.1).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("0.25"), "{msg}");
        assert!((f.least_keep() - 0.25).abs() < 1e-3);

        let mut q = p.clone();
        q.constraints[0].locked = true;
        for m in [Method::Dp, Method::Uniform, Method::Erk] {
            let budget = Budget {
                kind: BudgetKind::Params,
                keep: 0.6,
            };
            let s = solve(m, &q, None, budget, 256).unwrap();
            assert_eq!(s.sparsity[0], 0.0, "{m}");
        }
        let budget = Budget {
            kind: BudgetKind::Params,
            keep: 0.4,
        };
        let e = solve(Method::Uniform, &q, None, budget, 0).unwrap_err();
        assert!(e.to_string().contains("at least 0.5000"), "{e}");

        let mut q = p.clone();
        q.constraints[0].min_sparsity = 0.8;
        q.constraints[0].max_sparsity = 0.2;
        let e = q.validate().unwrap_err();
        assert!(e.to_string().contains("`a`"), "{e}");
        let e = solve(
            Method::Dp,
            &p,
            None,
            Budget {
                kind: BudgetKind::Flops,
                keep: 1.5,
            },
            64,
        );
        assert!(matches!(e, Err(AllocError::BadBudget(_))));
        let e = Frontier::build(&p, BudgetKind::Flops, 0).unwrap_err();
        assert!(matches!(e, AllocError::BadBins { .. }));
    }

    fn curves_file() -> Curves {
        let json = r#"{"format": "pruneview-curves/1",
            "model": {"name": "m", "weights_sha256": "00"},
            "calibration": {"scans": 1, "probes": 1},
            "layers": [
              {"name": "a.weight", "params": 8, "flops": 80.0, "shape": [2, 4],
               "sparsity": [0.0, 0.5, 1.0],
               "distortion": {"confidence": [0.0, 1.0, 4.0], "locality": [0.0, 2.0, 3.0]}},
              {"name": "b.weight", "params": 4, "flops": 20.0,
               "sparsity": [0.0, 0.25, 0.5],
               "distortion": {"confidence": [0.0, 0.5, 1.0], "locality": [0.0, 0.0, 1.0]}}]}"#;
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn problem_from_curves_combines_lambdas_and_checks_names() {
        let c = curves_file();
        let lambdas = Lambdas {
            confidence: 2.0,
            locality: 0.5,
        };
        let p = Problem::from_curves(&c, lambdas, &HashMap::new()).unwrap();
        assert_eq!(p.layers[0].distortion, vec![0.0, 3.0, 9.5]);
        assert_eq!(p.layers[1].distortion, vec![0.0, 1.0, 2.5]);
        assert_eq!(p.totals(), (100.0, 12));
        assert!(p.layers[1].shape.is_empty());

        let mut cons = HashMap::new();
        cons.insert(
            "b.weight".to_string(),
            Constraint {
                locked: true,
                ..Default::default()
            },
        );
        let p = Problem::from_curves(&c, lambdas, &cons).unwrap();
        assert!(p.constraints[1].locked && !p.constraints[0].locked);
        cons.insert("backbone.nope".into(), Constraint::default());
        let e = Problem::from_curves(&c, lambdas, &cons).unwrap_err();
        assert!(e.to_string().contains("`backbone.nope`"), "{e}");

        let e = solve(
            Method::Erk,
            &p,
            None,
            Budget {
                kind: BudgetKind::Flops,
                keep: 0.5,
            },
            0,
        );
        assert!(matches!(e, Err(AllocError::MissingShape(n)) if n == "b.weight"));
    }

    #[test]
    fn solution_to_allocation() {
        let c = curves_file();
        let p = Problem::from_curves(&c, Lambdas::default(), &HashMap::new()).unwrap();
        // Options: a keeps 80/40/0 FLOPs (d 0/3/7), b keeps 20/15/10 (d 0/0.5/2).
        // At keep 0.6 the exact optimum (a 0.5, b dense: 60 FLOPs, d 3) costs 1639 + 820
        // bins > floor(0.6 * 4096) = 2457 once rounded up, so the DP settles for b at 0.25.
        let at = |keep: f64| {
            let budget = Budget {
                kind: BudgetKind::Flops,
                keep,
            };
            (
                budget,
                solve(Method::Dp, &p, None, budget, DEFAULT_BINS).unwrap(),
            )
        };
        let (_, s) = at(0.6);
        assert_eq!(s.sparsity, vec![0.5, 0.25]);
        assert_eq!(s.predicted, 3.5);
        let (budget, s) = at(0.65);
        assert_eq!(s.sparsity, vec![0.5, 0.0]);
        assert_eq!(s.predicted, 3.0);
        assert!((s.flops - 60.0).abs() < 1e-12 && (s.flops_kept - 0.6).abs() < 1e-12);
        assert!((s.params_kept - 8.0 / 12.0).abs() < 1e-12);
        let a = s.to_allocation(
            &p,
            Method::Dp,
            budget,
            c.model.clone(),
            Ranking::Magnitude,
            Lambdas::default(),
        );
        assert_eq!(a.format, ALLOCATION_FORMAT);
        assert_eq!(a.method, Method::Dp);
        assert_eq!(a.flops_dense, 100.0);
        assert_eq!(a.sparsity_of("a.weight"), Some(0.5));
        assert_eq!(a.predicted_distortion, 3.0);
        assert_eq!(a.budget, budget);
        // The record says which cap and constraints the DP obeyed.
        assert_eq!(a.layer_cap, Some(DEFAULT_LAYER_CAP));
        assert!(a.constraints.is_empty());
        let lock_b = HashMap::from([(
            "b.weight".to_string(),
            Constraint {
                locked: true,
                ..Constraint::default()
            },
        )]);
        let q = Problem::from_curves(&c, Lambdas::default(), &lock_b)
            .unwrap()
            .with_layer_cap(1.0)
            .unwrap();
        let s = solve(Method::Dp, &q, None, budget, DEFAULT_BINS).unwrap();
        let a = s.to_allocation(
            &q,
            Method::Dp,
            budget,
            c.model.clone(),
            Ranking::Magnitude,
            Lambdas::default(),
        );
        assert_eq!(a.layer_cap, None);
        assert_eq!(a.constraints.len(), 1);
        assert_eq!(a.constraints[0].name, "b.weight");
        assert!(a.constraints[0].constraint.locked);
        let json = serde_json::to_string(&a).unwrap();
        assert!(json.contains("\"locked\":true"), "{json}");
        assert_eq!(serde_json::from_str::<Allocation>(&json).unwrap(), a);
    }

    #[test]
    fn methods_parse_and_interpolation() {
        for m in Method::ALL {
            assert_eq!(m.name().parse::<Method>().unwrap(), m);
        }
        assert!("magnitude".parse::<Method>().is_err());
        assert!(Method::Global.needs_weights() && Method::Lamp.needs_weights());
        assert!(!Method::Dp.needs_weights() && !Method::Erk.needs_weights());

        let l = LayerInput {
            name: "x".into(),
            params: 10,
            flops: 1.0,
            shape: vec![],
            levels: vec![0.2, 0.4, 0.8],
            distortion: vec![1.0, 2.0, 6.0],
        };
        assert!(close(l.distortion_at(0.0), 0.0));
        assert!(close(l.distortion_at(0.1), 0.5));
        assert!(close(l.distortion_at(0.4), 2.0));
        assert!(close(l.distortion_at(0.6), 4.0));
        assert!(close(l.distortion_at(0.9), 7.0));
    }
}
