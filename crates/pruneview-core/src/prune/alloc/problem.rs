//! The allocation problem: each layer's sizes and predicted curve, the user's constraints,
//! the DP's soft layer cap, and solutions with what they keep.

use std::collections::HashMap;

use super::super::allocation_file::{
    ALLOCATION_FORMAT, Allocation, Budget, BudgetKind, LayerConstraint, LayerSparsity,
};
use super::super::curves::{Curves, ModelInfo};
use super::super::{Lambdas, Ranking, pruned_count};
use super::{AllocError, DEFAULT_LAYER_CAP, KindName, LEVEL_EPS, Method};

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

    pub(super) fn describe(&self) -> String {
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
    pub(super) fn costs(&self, kind: BudgetKind) -> Vec<f64> {
        self.layers
            .iter()
            .map(|l| match kind {
                BudgetKind::Flops => l.flops,
                BudgetKind::Params => l.params as f64,
            })
            .collect()
    }

    pub(super) fn total_cost(&self, kind: BudgetKind) -> Result<f64, AllocError> {
        let total: f64 = self.costs(kind).iter().sum();
        if total > 0.0 && total.is_finite() {
            Ok(total)
        } else {
            Err(AllocError::NoCost(KindName(kind)))
        }
    }

    /// Exact kept fraction of `kind` for per-layer sparsities.
    pub(super) fn kept(&self, kind: BudgetKind, total: f64, sparsity: &[f64]) -> f64 {
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

    pub(super) fn solution_with(&self, sparsity: Vec<f64>, predicted: f64) -> Solution {
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

pub(super) fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { 1.0 }
}

/// Fraction of a layer's `n` weights (and so of its FLOPs) that sparsity `s` keeps, counted
/// as masks prune: `n - floor(s n)` of `n`, which can be a little more than `1 - s`. A layer
/// without weights is taken at its nominal `1 - s`.
pub(super) fn kept_fraction(s: f64, n: usize) -> f64 {
    if n == 0 {
        1.0 - s.clamp(0.0, 1.0)
    } else {
        (n - pruned_count(s, n)) as f64 / n as f64
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
