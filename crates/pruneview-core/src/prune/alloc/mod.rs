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
//!
//! Files: [`problem`] (layers, constraints, the soft layer cap, solutions and their checks),
//! [`frontier`] (the DP), [`baselines`] (uniform, global magnitude, LAMP, ERK and the
//! [`solve`] entry point).

mod baselines;
mod frontier;
mod problem;
#[cfg(test)]
mod tests;

use std::fmt;

use super::allocation_file::BudgetKind;

pub use baselines::{Method, Prepared, solve};
pub use frontier::Frontier;
pub use problem::{Constraint, LayerInput, Problem, Solution};

/// Default number of bins on the budget axis: fine enough that rounding costs up loses at
/// most `L / 4096` of the budget (2% for 80 layers), small enough to build in milliseconds.
pub const DEFAULT_BINS: usize = 4096;

/// The DP's default soft cap on layer sparsity ([`Problem::layer_cap`]): chosen on validation
/// scenes (docs/pruning-report.md, "Recovery-aware allocation"), where without it the DP at 4x
/// pruned a backbone block to 97-100% and recovery could not bring it back.
pub const DEFAULT_LAYER_CAP: f64 = 0.9;

/// Tolerance for comparing sparsities with constraint bounds (levels like 0.29 are inexact).
const LEVEL_EPS: f64 = 1e-9;

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
