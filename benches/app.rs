//! The app's speed targets (issues 5 and 15): the budget slider answers from the precomputed
//! frontier on every frame (DP allocation plus one baseline to compare), and the pruned
//! detections show within half a second of letting go of the slider for the demo model
//! (prune the weights, then one forward pass; with the statistics repair, re-estimate
//! BatchNorm on the preview scans first). Real data: the demo model, its committed curves
//! and bundled scans.

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

/// The demo app in a harness with the curves, the frontier and the pruned detections ready.
fn demo_app() -> egui_kittest::Harness<'static, pruneview::app::PruneviewApp> {
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
    h
}

/// Median and worst of `v`.
fn median_worst(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    (
        v.get(v.len() / 2).copied().unwrap_or(f64::NAN),
        v.last().copied().unwrap_or(f64::NAN),
    )
}

/// The UI thread's cost per frame: the whole window (all panels, both plots, the 3D view
/// with an unchanged camera, which reuses its texture) while the slider moves. This is the
/// CPU side of a frame; on a real GPU, drawing egui's meshes adds well under a millisecond.
/// Also prints the debug overlay's figures over the frames run (its "ui code" and "3D
/// render"; the harness has no eframe frame time).
fn ui_frame(c: &mut Criterion) {
    let mut h = demo_app();
    let mut figures = Vec::new();
    let mut g = c.benchmark_group("ui_frame");
    g.bench_function("idle", |b| {
        b.iter(|| {
            h.step();
            figures.push(("idle", h.state().debug_figures()));
        })
    });
    let mut keep = 0.2;
    g.bench_function("dragging_the_budget", |b| {
        b.iter(|| {
            keep = if keep > 0.9 { 0.2 } else { keep + 0.007 };
            let s = &mut h.state_mut().state;
            s.settings.keep = keep;
            s.budget_changed();
            h.step();
            figures.push(("dragging", h.state().debug_figures()));
        })
    });
    g.finish();
    for what in ["idle", "dragging"] {
        if !figures.iter().any(|(w, _)| *w == what) {
            continue;
        }
        let of = || figures.iter().filter(|(w, _)| *w == what).map(|(_, f)| f);
        let (ui, ui_worst) = median_worst(of().map(|f| f.ui_ms as f64).collect());
        let (r, r_worst) = median_worst(of().filter_map(|f| f.render_ms).collect());
        eprintln!(
            "debug overlay, {what}: ui code {ui:.1} ms median, {ui_worst:.1} ms worst; \
             3D render {r:.1} ms median, {r_worst:.1} ms worst ({} frames)",
            of().count()
        );
    }
}

/// What the user waits for after letting go of the budget slider: from the frame the pointer
/// releases it (dragged alternately to 35% and 45% kept) to the first frame that shows the
/// pruned detections of the new allocation (statistics repair on the preview scans and one
/// forward, with the default recovery).
fn slider_release_to_pruned(c: &mut Criterion) {
    use pruneview::app::screenshots::drag_slider;
    use std::time::{Duration, Instant};
    let mut h = demo_app();
    let fraction = |pct: f32| (pct - 1.0) / 99.0;
    let mut flip = false;
    let mut g = c.benchmark_group("app_latency");
    g.sample_size(10);
    g.sampling_mode(criterion::SamplingMode::Flat);
    g.bench_function("slider_release_to_pruned_detections", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                flip = !flip;
                let to = if flip { 35.0 } else { 45.0 };
                let from = h.state().state.settings.keep as f32 * 100.0;
                drag_slider(&mut h, "kept", fraction(from), fraction(to), &[]);
                let t = Instant::now();
                // Polls the jobs every 2 ms without drawing (a window sleeps until a job
                // wakes it), then draws the frame that shows the detections.
                while !h.state().state.pruned_is_current() {
                    assert!(
                        t.elapsed() < Duration::from_secs(60),
                        "no pruned detections"
                    );
                    std::thread::sleep(Duration::from_millis(2));
                    h.state_mut().state.tick();
                }
                h.step();
                total += t.elapsed();
            }
            total
        })
    });
    g.finish();
}

criterion_group!(
    benches,
    slider,
    pruned_forward,
    ui_frame,
    slider_release_to_pruned
);
criterion_main!(benches);
