//! The budget allocator's speed targets (DESIGN.md, "The method" point 5): building the DP
//! frontier for 80 layers x 101 levels x 4096 bins <= 20 ms, and one budget query (the
//! slider's cost) <= 10 us. Curves are random but monotone, sizes log-uniform like a real
//! detector's mix of small and large layers.

// Benchmark code: a failed unwrap stops the benchmark (the workspace warns of them elsewhere).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{Criterion, criterion_group, criterion_main};
use pruneview::prune::BudgetKind;
use pruneview::prune::alloc::{DEFAULT_BINS, Frontier, LayerInput, Problem};
use pruneview::rng::Rng;
use std::hint::black_box;

/// `balanced`: every layer costs the same (the hardest case for the DP: no layer is small
/// enough for its options to collapse or its rows to end early); otherwise sizes are
/// log-uniform over three decades of params and FLOPs per weight, like a real detector.
fn problem(layers: usize, levels: usize, balanced: bool) -> Problem {
    let mut rng = Rng::new(42);
    let layers = (0..layers)
        .map(|i| {
            let (params, flops) = if balanced {
                (100_000, 1e9)
            } else {
                let p = 10f64.powf(3.0 + 3.0 * rng.f64()) as usize;
                (p, p as f64 * 10f64.powf(2.0 + 3.0 * rng.f64()))
            };
            let lv: Vec<f64> = (0..levels)
                .map(|k| k as f64 / (levels - 1) as f64)
                .collect();
            let mut d = 0.0;
            let distortion = lv
                .iter()
                .map(|&s| {
                    d += rng.f64() * s * s;
                    d
                })
                .collect();
            LayerInput {
                name: format!("layer{i}.weight"),
                params,
                flops,
                shape: vec![params],
                levels: lv,
                distortion,
            }
        })
        .collect();
    Problem::new(layers)
}

fn frontier(c: &mut Criterion) {
    let mut g = c.benchmark_group("alloc_80x101x4096");
    for (label, balanced) in [("loguniform_sizes", false), ("balanced", true)] {
        let p = problem(80, 101, balanced);
        let f = Frontier::build(&p, BudgetKind::Flops, DEFAULT_BINS).expect("frontier");
        eprintln!(
            "{label}: frontier 80 layers x 101 levels x {DEFAULT_BINS} bins holds {} bytes",
            f.memory_bytes()
        );
        g.bench_function(format!("frontier_build_{label}"), |b| {
            b.iter(|| Frontier::build(black_box(&p), BudgetKind::Flops, DEFAULT_BINS))
        });
        g.bench_function(format!("query_{label}"), |b| {
            b.iter(|| f.query(black_box(0.4)))
        });
    }
    g.finish();
}

criterion_group!(benches, frontier);
criterion_main!(benches);
