//! The app's speed targets (issue 5): the budget slider answers from the precomputed frontier
//! on every frame (DP allocation plus one baseline to compare), and the pruned detections
//! follow the slider "within about a second" for the demo model (prune the weights, then one
//! forward pass; with the statistics repair, re-estimate BatchNorm on the preview scans
//! first). Real data: the demo model, its committed curves and bundled scans.

// Benchmark code: a failed unwrap stops the benchmark (the workspace warns of them elsewhere).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use pruneview::app::jobs::JobCtl;
use pruneview::app::work::{self, PREVIEW_SCANS, PrunedModel};
use pruneview::progress::Control;
use pruneview::prune::alloc::Method;
use pruneview::prune::curves::Curves;
use pruneview::prune::{BudgetKind, Lambdas};
use pruneview::session::model::{LoadedModel, load_model};
use pruneview::session::plan::{Planner, plan};
use pruneview::session::scans::{ScanEntry, expand_scan_paths, load_scan};
use std::hint::black_box;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn planner() -> (LoadedModel, Arc<Curves>, Planner) {
    let ctl = Control::quiet();
    let model = load_model(
        None,
        root().join("assets/demo_pointpillar.safetensors"),
        &ctl,
    )
    .expect("demo model");
    let curves = Arc::new(
        Curves::load(&root().join("docs/pruning-report/curves.json")).expect("committed curves"),
    );
    let p = plan(
        &curves,
        &model.weights,
        Lambdas::default(),
        &Default::default(),
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
            plan(
                &curves,
                &model.weights,
                Lambdas::default(),
                &Default::default(),
                BudgetKind::Flops,
                &Control::quiet(),
            )
            .unwrap()
        })
    });
}

fn pruned_forward(c: &mut Criterion) {
    let (model, _, p) = planner();
    let scan = load_scan(
        &model.det,
        &root().join("assets/scans/synthetic/velodyne/000003.bin"),
    )
    .expect("bundled scan");
    let files = expand_scan_paths(&[root().join("assets/scans/synthetic")]).expect("scans");
    let preview: Vec<_> = files
        .iter()
        .take(PREVIEW_SCANS)
        .map(|f| load_scan(&model.det, f).map(|s| ScanEntry::calibration(&s)))
        .collect::<Result<_, _>>()
        .expect("bundled scans");
    let orders: Vec<Vec<u32>> = model
        .det
        .units()
        .iter()
        .map(|u| pruneview::prune::rank::magnitude_order(&u.weight.data))
        .collect();
    let sparsity = p.solve(Method::Dp, 0.35).unwrap().sparsity;
    let mut g = c.benchmark_group("pruned_detections_demo");
    g.sample_size(10);
    let models = [
        ("prune_and_forward_35pct", PrunedModel::Masked),
        (
            "prune_stats_and_forward_35pct",
            PrunedModel::Statistics(Arc::new(preview)),
        ),
    ];
    for (name, pruned) in models {
        g.bench_function(name, |b| {
            b.iter(|| {
                work::pruned_detections(
                    &model.det,
                    &orders,
                    sparsity.clone(),
                    &pruned,
                    scan.id.clone(),
                    &scan.points,
                    &JobCtl::detached(),
                )
                .unwrap()
            })
        });
    }
    g.finish();
}

/// The UI thread's cost per frame: the whole window (all panels, both plots, the 3D view
/// with an unchanged camera, which reuses its texture) while the slider moves. This is the
/// CPU side of a frame; on a real GPU, drawing egui's meshes adds well under a millisecond.
fn ui_frame(c: &mut Criterion) {
    use pruneview::app::PruneviewApp;
    use pruneview::app::screenshots::{self, demo_subset, harness, step_until};
    let settings = pruneview::app::Settings {
        probes: 1,
        ..Default::default()
    };
    let app = PruneviewApp::new(settings, &eframe::egui::Context::default());
    let mut h = harness(app, screenshots::render_state(), screenshots::WINDOW);
    h.state_mut().state.open(demo_subset(4).expect("demo"));
    step_until(
        &mut h,
        std::time::Duration::from_secs(900),
        "the frontier",
        |a| a.state.current.is_some() && a.state.pruned_is_current(),
    )
    .expect("demo loads");
    let mut g = c.benchmark_group("ui_frame");
    g.bench_function("idle", |b| b.iter(|| h.step()));
    let mut keep = 0.2;
    g.bench_function("dragging_the_budget", |b| {
        b.iter(|| {
            keep = if keep > 0.9 { 0.2 } else { keep + 0.007 };
            let s = &mut h.state_mut().state;
            s.settings.keep = keep;
            s.budget_changed();
            h.step()
        })
    });
    g.finish();
}

criterion_group!(benches, slider, pruned_forward, ui_frame);
criterion_main!(benches);
