//! The app's speed targets (issue 5): the budget slider answers from the precomputed frontier
//! on every frame (DP allocation plus one baseline to compare), and the pruned detections
//! follow the slider "within about a second" for the demo model (prune the weights, then one
//! forward pass). Real data: the demo model, its committed curves and a bundled scan.

use std::path::Path;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use pruneview::app::jobs::JobCtl;
use pruneview::app::work;
use pruneview::prune::alloc::Method;
use pruneview::prune::curves::Curves;
use pruneview::prune::{BudgetKind, Lambdas};
use std::hint::black_box;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn planner() -> (work::LoadedModel, Arc<Curves>, work::Planner) {
    let ctl = JobCtl::detached();
    let model = work::load_model(
        None,
        root().join("assets/demo_pointpillar.safetensors"),
        &ctl,
    )
    .expect("demo model");
    let curves = Arc::new(
        Curves::load(&root().join("docs/pruning-report/curves.json")).expect("committed curves"),
    );
    let p = work::plan(
        curves.clone(),
        model.weights.clone(),
        Lambdas::default(),
        Default::default(),
        BudgetKind::Flops,
        &ctl,
    )
    .expect("planner");
    (model, curves, p)
}

fn slider(c: &mut Criterion) {
    let (_, _, p) = planner();
    let mut keep = 0.2;
    c.bench_function("slider_frame_dp_plus_lamp", |b| {
        b.iter(|| {
            keep = if keep > 0.9 { 0.2 } else { keep + 0.013 };
            let dp = p.solve(Method::Dp, black_box(keep)).unwrap();
            let lamp = p.solve(Method::Lamp, black_box(keep)).unwrap();
            black_box((dp, lamp))
        })
    });
    c.bench_function("plan_frontier_and_baselines", |b| {
        let (model, curves, _) = planner();
        b.iter(|| {
            work::plan(
                curves.clone(),
                model.weights.clone(),
                Lambdas::default(),
                Default::default(),
                BudgetKind::Flops,
                &JobCtl::detached(),
            )
            .unwrap()
        })
    });
}

fn pruned_forward(c: &mut Criterion) {
    let (model, _, p) = planner();
    let scan = work::load_scan(
        &model.det,
        &root().join("assets/scans/synthetic/velodyne/000003.bin"),
    )
    .expect("bundled scan");
    let orders: Arc<Vec<Vec<u32>>> = Arc::new(
        model
            .det
            .units()
            .iter()
            .map(|u| pruneview::prune::rank::magnitude_order(&u.weight.data))
            .collect(),
    );
    let sparsity = p.solve(Method::Dp, 0.35).unwrap().sparsity;
    let mut g = c.benchmark_group("pruned_detections_demo");
    g.sample_size(20);
    g.bench_function("prune_and_forward_35pct", |b| {
        b.iter(|| {
            work::pruned_detections(
                model.det.clone(),
                orders.clone(),
                sparsity.clone(),
                scan.id.clone(),
                scan.points.clone(),
                &JobCtl::detached(),
            )
            .unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, slider, pruned_forward);
criterion_main!(benches);
