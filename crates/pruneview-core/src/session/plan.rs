//! From curves to allocations: the DP frontier and the baselines it is compared with, and
//! one allocation for a method and budget.

use std::collections::HashMap;

use crate::model::Weights;
use crate::progress::Control;
use crate::prune::alloc::{
    self, Constraint, DEFAULT_BINS, Frontier, Method, Prepared, Problem, Solution,
};
use crate::prune::curves::Curves;
use crate::prune::{Allocation, Budget, BudgetKind, Lambdas};

use super::{Result, fail};

/// The baselines compared with the DP, in display order.
pub const BASELINES: [Method; 4] = [Method::Uniform, Method::Global, Method::Lamp, Method::Erk];

/// The dense weights of the curves' layers, in curve order (what the magnitude baselines rank).
pub fn layer_weights(curves: &Curves, weights: &Weights) -> Result<Vec<Vec<f32>>> {
    curves
        .layers
        .iter()
        .map(|l| {
            weights
                .tensor_any_shape(&l.name)
                .map(|t| t.data)
                .map_err(fail)
        })
        .collect()
}

/// One allocation of `method` at `budget` (the baselines that rank weights need `weights`;
/// the DP obeys `layer_cap`, see [`Problem::layer_cap`]), and what the user should be warned
/// of ([`Problem::warnings`]).
#[allow(clippy::too_many_arguments)]
pub fn solve_allocation(
    curves: &Curves,
    weights: Option<&Weights>,
    method: Method,
    budget: Budget,
    lambdas: Lambdas,
    constraints: &HashMap<String, Constraint>,
    layer_cap: f64,
    bins: usize,
) -> Result<(Allocation, Vec<String>)> {
    let problem = Problem::from_curves(curves, lambdas, constraints)
        .and_then(|p| p.with_layer_cap(layer_cap))
        .map_err(fail)?;
    let layer_weights = match weights {
        Some(w) => Some(layer_weights(curves, w)?),
        None if method.needs_weights() => {
            return Err(format!("--method {} needs --weights", method.name()).into());
        }
        None => None,
    };
    let refs: Option<Vec<&[f32]>> = layer_weights
        .as_ref()
        .map(|v| v.iter().map(Vec::as_slice).collect());
    let sol = alloc::solve(method, &problem, refs.as_deref(), budget, bins).map_err(fail)?;
    let record = sol.to_allocation(
        &problem,
        method,
        budget,
        curves.model.clone(),
        curves.calibration.ranking,
        lambdas,
    );
    Ok((record, problem.warnings(&sol)))
}

/// Everything the app's budget slider queries on every frame: the DP frontier and the
/// prepared baselines, for one (curves, lambdas, constraints, budget kind).
pub struct Planner {
    pub problem: Problem,
    pub kind: BudgetKind,
    pub lambdas: Lambdas,
    pub frontier: Frontier,
    pub baselines: Vec<Prepared>,
    /// Per method (dp first), `(keep, predicted distortion)` for the frontier plot.
    pub series: Vec<(Method, Vec<(f64, f64)>)>,
}

impl Planner {
    /// The allocation of `method` at `keep`.
    pub fn solve(&self, method: Method, keep: f64) -> std::result::Result<Solution, String> {
        let r = match method {
            Method::Dp => self.frontier.query(keep),
            m => match self.baselines.iter().find(|b| b.method() == m) {
                Some(b) => b.solve(
                    &self.problem,
                    Budget {
                        kind: self.kind,
                        keep,
                    },
                ),
                None => return Err(format!("{m} is not prepared")),
            },
        };
        r.map_err(|e| e.to_string())
    }

    /// The allocation record of `solution` (what `allocation.json` holds).
    pub fn record(
        &self,
        solution: &Solution,
        method: Method,
        keep: f64,
        curves: &Curves,
    ) -> Allocation {
        solution.to_allocation(
            &self.problem,
            method,
            Budget {
                kind: self.kind,
                keep,
            },
            curves.model.clone(),
            curves.calibration.ranking,
            self.lambdas,
        )
    }
}

/// Builds the frontier and prepares the baselines. Baselines that cannot run (e.g. a
/// constraint they cannot meet) are left out of the comparison rather than failing it all.
pub fn plan(
    curves: &Curves,
    weights: &Weights,
    lambdas: Lambdas,
    constraints: &HashMap<String, Constraint>,
    kind: BudgetKind,
    ctl: &Control,
) -> Result<Planner> {
    let problem = Problem::from_curves(curves, lambdas, constraints).map_err(fail)?;
    let steps = 2 + BASELINES.len();
    ctl.step(0, steps, "dynamic program");
    let frontier = Frontier::build(&problem, kind, DEFAULT_BINS).map_err(fail)?;
    let mut series = vec![(Method::Dp, frontier.points())];
    let layer_weights = layer_weights(curves, weights)?;
    let refs: Vec<&[f32]> = layer_weights.iter().map(Vec::as_slice).collect();
    let mut baselines = Vec::new();
    for (i, m) in BASELINES.into_iter().enumerate() {
        ctl.check()?;
        ctl.step(1 + i, steps, m.name());
        let Ok(p) = Prepared::new(m, &problem, Some(&refs)) else {
            continue;
        };
        let pts: Vec<(f64, f64)> = (1..=100)
            .filter_map(|k| {
                let keep = k as f64 / 100.0;
                p.solve(&problem, Budget { kind, keep })
                    .ok()
                    .map(|s| (keep, s.predicted))
            })
            .collect();
        series.push((m, pts));
        baselines.push(p);
    }
    ctl.step(steps, steps, "done");
    Ok(Planner {
        problem,
        kind,
        lambdas,
        frontier,
        baselines,
        series,
    })
}
