//! The allocators against brute force, budgets, constraints and the file form.

use std::collections::HashMap;

use super::frontier::{bin_cost, budget_bin, dp_block, dp_block_impl};
use super::problem::kept_fraction;
use super::*;
use crate::prune::allocation_file::{ALLOCATION_FORMAT, Allocation, Budget, BudgetKind};
use crate::prune::curves::Curves;
use crate::prune::{Lambdas, Ranking, pruned_count};
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
            let d =
                brute_force(&p, |pick| bin_of(pick) <= b && over(pick) <= least + 1e-9).unwrap();
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
