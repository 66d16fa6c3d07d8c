//! The desktop app, driven headlessly with egui_kittest on Mesa's software Vulkan: the real
//! demo model and scans, real jobs, real files.

use std::path::PathBuf;
use std::time::Duration;

use eframe::egui;
use egui_kittest::kittest::{NodeT, Queryable};
use egui_kittest::{Harness, SnapshotOptions};

use super::util::TempDir;
use pruneview::app::PruneviewApp;
use pruneview::app::jobs::JobKind;
use pruneview::app::screenshots::{
    self, demo_subset, drag_slider, harness, slider_point, step_until,
};
use pruneview::app::state::{Level, Settings};
use pruneview::app::view3d::Projection;
use pruneview::model::Weights;
use pruneview::prune::Allocation;
use pruneview::session::evaluate::EvalSource;

const LONG: Duration = Duration::from_secs(240);

fn settings() -> Settings {
    Settings {
        probes: 1,
        keep: 0.5,
        ..Settings::default()
    }
}

/// The demo (4 synthetic scans + KITTI 000008) with curves and the frontier ready.
fn loaded(size: egui::Vec2) -> Harness<'static, PruneviewApp> {
    let app = PruneviewApp::new(settings(), &egui::Context::default());
    let mut h = harness(app, screenshots::render_state(), size);
    h.state_mut().state.open(demo_subset(4).unwrap());
    step_until(&mut h, LONG, "the frontier", |a| a.state.current.is_some()).unwrap();
    h
}

/// With `PRUNEVIEW_SAVE=DIR`, writes the window as DIR/NAME.png (to look at a test's view).
fn save_if_asked(h: &mut Harness<'_, PruneviewApp>, name: &str) {
    if let Some(dir) = std::env::var_os("PRUNEVIEW_SAVE") {
        let img = h.render().unwrap();
        img.save(PathBuf::from(dir).join(format!("{name}.png")))
            .unwrap();
    }
}

fn errors(h: &Harness<'_, PruneviewApp>) -> Vec<String> {
    h.state()
        .state
        .messages
        .iter()
        .filter(|m| m.level == Level::Error)
        .map(|m| m.text.clone())
        .collect()
}

#[test]
fn demo_loads_budget_moves_allocation_and_exports() {
    let mut h = loaded(screenshots::WINDOW);
    assert!(errors(&h).is_empty(), "{:?}", errors(&h));
    let s = &h.state().state;
    assert_eq!(s.scans.len(), 5);
    assert!(s.scans.iter().all(|s| s.pillars > 0));
    // The KITTI frame has its labels and calibration: ground truth to draw, and evaluable.
    let kitti = s.scans.last().unwrap();
    assert!(kitti.gt.as_ref().is_some_and(|g| !g.is_empty()));
    assert!(kitti.kitti.is_some());
    let before = s.current.clone().unwrap().dp.unwrap();
    assert!(before.flops_kept <= 0.5 + 1e-9);
    h.get_by_label_contains("architecture");
    h.get_by_label("2.00x fewer FLOPs");

    // Drag the budget down with the keyboard on the slider (as a user would).
    let slider = h.get_by_role_and_label(egui::accesskit::Role::Slider, "kept");
    slider.focus();
    h.run_steps(2);
    for _ in 0..20 {
        h.key_press(egui::Key::ArrowLeft);
        h.step();
    }
    let keep = h.state().state.settings.keep;
    assert!(keep < 0.5, "the slider did not move: keep {keep}");
    h.run_steps(2);
    let after = h.state().state.current.clone().unwrap().dp.unwrap();
    assert!(after.flops_kept < before.flops_kept);
    assert!(after.flops_kept <= keep + 1e-9);
    assert!(after.predicted > before.predicted);
    assert_ne!(after.sparsity, before.sparsity);
    h.get_by_label(&format!("{:.2}x fewer FLOPs", 1.0 / keep));
    h.get_by_label(&format!("{:.1}%", 100.0 * after.flops_kept));

    // The pruned detections follow once the slider settles.
    step_until(&mut h, LONG, "pruned detections", |a| {
        a.state.pruned_is_current()
    })
    .unwrap();

    // Export through the dialog.
    let dir = TempDir::new("export");
    h.state_mut().state.settings.export.dir = dir.to_path_buf();
    h.get_by_label("Export...").click();
    h.run_steps(2);
    h.get_by_label_contains("NOT faster by itself");
    h.get_by_role_and_label(egui::accesskit::Role::Button, "Export")
        .click();
    step_until(&mut h, LONG, "the export", |a| {
        a.state.messages.iter().any(|m| m.text.starts_with("wrote"))
    })
    .unwrap();
    for f in [
        "masks.safetensors",
        "pruned.safetensors",
        "allocation.json",
        "report.csv",
        "curves.json",
    ] {
        assert!(dir.join(f).is_file(), "{f} missing");
    }
    let alloc = Allocation::load(&dir.join("allocation.json")).unwrap();
    assert_eq!(alloc.method.name(), "dp");
    assert!((alloc.flops_kept - after.flops_kept).abs() < 1e-9);
    let masks = Weights::open(&dir.join("masks.safetensors")).unwrap();
    assert_eq!(masks.keys().len(), after.sparsity.len());
    assert!(errors(&h).is_empty(), "{:?}", errors(&h));

    // At 2% kept layers must go entirely: the budget panel says so.
    h.state_mut().state.settings.keep = 0.02;
    h.state_mut().state.budget_changed();
    h.run_steps(3);
    h.get_by_label_contains("pruned entirely");
}

#[test]
fn bad_files_show_errors_and_the_app_keeps_running() {
    let dir = TempDir::new("bad");
    let app = PruneviewApp::new(
        Settings {
            auto_curves: false,
            ..settings()
        },
        &egui::Context::default(),
    );
    let mut h = harness(app, screenshots::render_state(), egui::vec2(1200.0, 800.0));

    // A scan with NaN points only and an empty scan are named; the good scan still loads.
    let mut req = demo_subset(1).unwrap();
    let empty = dir.join("empty.bin");
    std::fs::write(&empty, b"").unwrap();
    let nan = dir.join("nan.bin");
    let v: Vec<u8> = [f32::NAN; 8].iter().flat_map(|x| x.to_le_bytes()).collect();
    std::fs::write(&nan, v).unwrap();
    req.scans = vec![req.scans[0].clone(), empty, nan];
    h.state_mut().state.open(req.clone());
    step_until(&mut h, LONG, "the scans", |a| {
        a.state.jobs.is_idle() && !a.state.scans.is_empty()
    })
    .unwrap();
    let e = errors(&h);
    assert!(e.iter().any(|m| m.contains("empty.bin")), "{e:?}");
    assert!(e.iter().any(|m| m.contains("nan.bin")), "{e:?}");
    assert_eq!(h.state().state.scans.len(), 1);

    // A truncated model is named, and what was open stays open.
    let truncated = dir.join("truncated.safetensors");
    let good = std::fs::read(&req.weights).unwrap();
    std::fs::write(&truncated, &good[..good.len() / 2]).unwrap();
    h.state_mut().state.dropped(vec![truncated]);
    step_until(&mut h, LONG, "the error", |a| a.state.jobs.is_idle()).unwrap();
    h.run_steps(2);
    let e = errors(&h);
    assert!(
        e.iter().any(|m| m.contains("truncated.safetensors")),
        "{e:?}"
    );
    h.get_by_label_contains("truncated.safetensors");
    let s = &h.state().state;
    assert_eq!(s.model.as_ref().unwrap().weights_path, req.weights);
    assert_eq!(s.scans.len(), 1);
    assert_eq!(s.settings.open.as_ref().unwrap().weights, req.weights);

    // Configs get the CLI's checks: a voxel cap that would allocate without bound and a
    // base config outside the cfgs/ folder are named; the open model stays.
    let yaml = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tools/demo_pointpillar.yaml"),
    )
    .unwrap();
    let models = dir.join("cfgs/kitti_models");
    std::fs::create_dir_all(&models).unwrap();
    for (name, from, to, says) in [
        (
            "huge.yaml",
            "MAX_POINTS_PER_VOXEL: 32",
            "MAX_POINTS_PER_VOXEL: 1000000000",
            "1000000000",
        ),
        (
            "outside.yaml",
            "CLASS_NAMES:",
            "_BASE_CONFIG_: /etc/passwd\nCLASS_NAMES:",
            "relative to the folder",
        ),
    ] {
        let path = models.join(name);
        std::fs::write(&path, yaml.replacen(from, to, 1)).unwrap();
        h.state_mut().state.dropped(vec![path]);
        step_until(&mut h, LONG, "the error", |a| a.state.jobs.is_idle()).unwrap();
        h.run_steps(2);
        let e = errors(&h);
        assert!(
            e.iter().any(|m| m.contains(name) && m.contains(says)),
            "{name}: {e:?}"
        );
        assert_eq!(
            h.state().state.model.as_ref().unwrap().weights_path,
            req.weights
        );
    }

    // A file that is nothing the app knows.
    h.state_mut().state.dropped(vec![dir.join("notes.txt")]);
    h.run_steps(2);
    assert!(errors(&h).iter().any(|m| m.contains("notes.txt")));
}

#[test]
fn curves_cancel_then_measured_curves_and_evaluation() {
    let app = PruneviewApp::new(
        Settings {
            auto_curves: false,
            eval_source: EvalSource::Calibration,
            ..settings()
        },
        &egui::Context::default(),
    );
    let mut h = harness(app, screenshots::render_state(), screenshots::WINDOW);
    // One labelled synthetic scan: it can be evaluated.
    let mut req = demo_subset(1).unwrap();
    req.scans.truncate(1);
    h.state_mut().state.open(req);
    step_until(&mut h, LONG, "the scan", |a| !a.state.scans.is_empty()).unwrap();

    // Start the curves from the button (many probes: slow enough to catch) and cancel them
    // from the jobs panel.
    h.state_mut().state.settings.probes = 32;
    h.get_by_label("Compute curves").click();
    step_until(&mut h, LONG, "the curves job", |a| {
        a.state
            .jobs
            .is_running(pruneview::app::jobs::JobKind::Curves)
    })
    .unwrap();
    h.step(); // the jobs panel lists the job from the next frame on
    h.get_by_label("cancel").click();
    step_until(&mut h, LONG, "the cancellation", |a| a.state.jobs.is_idle()).unwrap();
    assert!(h.state().state.curves.is_none());
    assert!(
        errors(&h).is_empty(),
        "a cancel is not an error: {:?}",
        errors(&h)
    );

    h.state_mut().state.settings.probes = 1;
    h.get_by_label("Compute curves").click();
    step_until(&mut h, LONG, "the frontier", |a| a.state.current.is_some()).unwrap();
    h.get_by_label("Measure curves").click();
    step_until(&mut h, LONG, "measured curves", |a| {
        a.state
            .curves
            .as_ref()
            .is_some_and(|c| c.layers.iter().all(|l| l.measured.confidence.len() == 9))
    })
    .unwrap();

    h.get_by_label("Evaluate").click();
    step_until(&mut h, LONG, "the evaluation", |a| {
        !a.state.eval_points.is_empty()
    })
    .unwrap();
    // Evaluating on the calibration scans is said to be optimistic.
    h.run_steps(2);
    h.get_by_label_contains("Optimistic: the curves and the statistics repair");
    let p = &h.state().state.eval_points[0];
    assert_eq!(p.source, EvalSource::Calibration);
    assert_eq!(p.accuracy.frames, 1);
    assert!((p.keep - 0.5).abs() < 1e-9);
    assert!(p.accuracy.dense.mean_bev > 0.0, "{p:?}");
    assert!(p.accuracy.pruned.mean_bev <= 100.0, "{p:?}");
    assert!(errors(&h).is_empty(), "{:?}", errors(&h));
}

#[test]
fn snapshots_of_the_main_views() {
    let mut h = loaded(screenshots::WINDOW);
    let s = &mut h.state_mut().state;
    s.settings.keep = 0.35;
    s.budget_changed();
    // The KITTI frame, with its ground truth.
    s.selected_scan = s.scans.len() - 1;
    step_until(&mut h, LONG, "pruned detections", |a| {
        a.state.pruned_is_current()
    })
    .unwrap();
    // Messages and timings differ run to run: clear the messages, mask the timing line.
    h.state_mut().state.messages.clear();
    let opts = SnapshotOptions::new()
        .threshold(2.0)
        .max_failed_pixels(4000);
    let snapshot = |h: &mut Harness<'_, PruneviewApp>, name: &str| {
        h.run_steps(3);
        let timing = h.get_by_label_contains("points | boxes with score").rect();
        h.mask(timing);
        h.snapshot_options(name, &opts);
    };
    snapshot(&mut h, "app_overview");

    h.state_mut().view.set_projection(Projection::BirdsEye);
    h.state_mut().state.settings.projection = Projection::BirdsEye;
    snapshot(&mut h, "app_birds_eye");

    h.state_mut().open_export_dialog();
    snapshot(&mut h, "app_export_dialog");
}

/// The Recovery control: the statistics repair changes what the shown pruned model detects,
/// a full recovery runs as a background job and is then what the view shows and Export
/// writes (its report in the weights' metadata).
#[test]
fn recovery_control_repairs_the_shown_model_and_exports_the_recovered_one() {
    use pruneview::session::recover::Recovery;
    let mut h = loaded(screenshots::WINDOW);
    let shown = |h: &mut Harness<'_, PruneviewApp>, r: Recovery| {
        let s = &mut h.state_mut().state;
        s.settings.recovery = r;
        s.recovery_changed();
        step_until(h, LONG, "pruned detections", |a| {
            a.state.pruned_is_current()
        })
        .unwrap();
        let p = h.state().state.pruned.as_ref().unwrap();
        let scores: Vec<f32> = p.detections.iter().map(|d| d.score).collect();
        (p.recovery, scores)
    };
    h.state_mut().state.settings.keep = 0.3;
    h.state_mut().state.budget_changed();
    let (r, masked) = shown(&mut h, Recovery::None);
    assert_eq!(r, Recovery::None);
    let (r, repaired) = shown(&mut h, Recovery::Statistics);
    assert_eq!(r, Recovery::Statistics);
    assert_ne!(masked, repaired, "the statistics repair changed nothing");

    // Full: shown as statistics until Recover has run, then the recovered model.
    let (r, _) = shown(&mut h, Recovery::Full);
    assert_eq!(r, Recovery::Statistics);
    h.state_mut().state.settings.distill_steps = 2;
    h.run_steps(2);
    h.get_by_label("Recover").click();
    step_until(&mut h, LONG, "the recovery", |a| {
        a.state.recovered.is_some()
    })
    .unwrap();
    step_until(&mut h, LONG, "recovered detections", |a| {
        a.state.pruned_is_current()
    })
    .unwrap();
    assert_eq!(
        h.state().state.pruned.as_ref().unwrap().recovery,
        Recovery::Full
    );
    h.get_by_label_contains("recovered: shown");

    let dir = TempDir::new("recovered");
    let s = &mut h.state_mut().state;
    s.settings.export.dir = dir.to_path_buf();
    s.export();
    step_until(&mut h, LONG, "the export", |a| {
        a.state.messages.iter().any(|m| m.text.starts_with("wrote"))
    })
    .unwrap();
    let w = Weights::open(&dir.join("pruned.safetensors")).unwrap();
    let recovery = w
        .metadata()
        .get("pruneview.recovery")
        .expect("recovery metadata");
    assert!(recovery.contains("\"stages\":\"all\""), "{recovery}");
    assert!(errors(&h).is_empty(), "{:?}", errors(&h));
}

/// A voxel model (SECOND, its sparse 3-D backbone) in the app on the two real KITTI frames:
/// curves and the frontier for its sparse convs, the pruned detections after a budget change,
/// and an export whose masks cover the sparse convs.
#[test]
fn voxel_model_prunes_and_exports_in_the_app() {
    let shared = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared");
    let kitti = shared.join("data/kitti/training/velodyne");
    let req = pruneview::app::work::OpenRequest {
        config: Some(shared.join("reference/cfgs/kitti_models/second.yaml")),
        weights: shared.join("reference/second_kitti_000008/weights.safetensors"),
        scans: vec![kitti.join("000000.bin"), kitti.join("000008.bin")],
    };
    let app = PruneviewApp::new(settings(), &egui::Context::default());
    let mut h = harness(app, screenshots::render_state(), screenshots::WINDOW);
    h.state_mut().state.open(req);
    step_until(&mut h, LONG, "the frontier", |a| a.state.current.is_some()).unwrap();
    assert!(errors(&h).is_empty(), "{:?}", errors(&h));
    let s = &h.state().state;
    assert_eq!(s.scans.len(), 2);
    let curves = s.curves.clone().unwrap();
    let sparse: Vec<_> = curves
        .layers
        .iter()
        .filter(|l| l.name.starts_with("backbone_3d."))
        .collect();
    assert_eq!(sparse.len(), 12);
    assert!(sparse.iter().all(|l| l.flops > 0.0));
    let dp = s.current.clone().unwrap().dp.unwrap();
    assert!(dp.flops_kept <= 0.5 + 1e-9);
    assert!(
        h.query_all_by_label_contains("backbone_3d.conv")
            .next()
            .is_some(),
        "the layer table lists the sparse convs"
    );

    h.state_mut().state.settings.keep = 0.4;
    h.state_mut().state.budget_changed();
    step_until(&mut h, LONG, "pruned detections", |a| {
        a.state.pruned_is_current()
    })
    .unwrap();

    let dir = TempDir::new("export-second");
    h.state_mut().state.settings.export.dir = dir.to_path_buf();
    h.get_by_label("Export...").click();
    h.run_steps(2);
    h.get_by_role_and_label(egui::accesskit::Role::Button, "Export")
        .click();
    step_until(&mut h, LONG, "the export", |a| {
        a.state.messages.iter().any(|m| m.text.starts_with("wrote"))
    })
    .unwrap();
    let masks = Weights::open(&dir.join("masks.safetensors")).unwrap();
    assert!(
        masks
            .keys()
            .iter()
            .any(|k| k.starts_with("backbone_3d.conv"))
    );
    assert!(errors(&h).is_empty(), "{:?}", errors(&h));
}

/// Side by side: the dense detections on the left, the pruned ones on the right, one camera
/// for both, each box marked matched, missed or new, score changes in the labels and a table.
#[test]
fn side_by_side_marks_matched_missed_and_new_with_one_camera() {
    use pruneview::app::ui::{MATCHED_COLOR, MISSED_COLOR, NEW_COLOR};
    let mut h = loaded(screenshots::WINDOW);
    let s = &mut h.state_mut().state;
    s.settings.keep = 0.25;
    s.budget_changed();
    s.selected_scan = 2;
    step_until(&mut h, LONG, "pruned detections", |a| {
        a.state.pruned_is_current()
    })
    .unwrap();
    h.get_by_label("side by side").click();
    h.run_steps(3);
    let app = h.state();
    let diff = app.state.detection_diff().unwrap();
    let scan = app.state.selected().unwrap();
    let threshold = app.state.settings.score_threshold;
    let shown =
        |d: &[pruneview::detect::Detection]| d.iter().filter(|d| d.score >= threshold).count();
    let pruned = &app.state.pruned.as_ref().unwrap().detections;
    assert_eq!(diff.matched.len() + diff.missed.len(), shown(&scan.dense));
    assert_eq!(diff.matched.len() + diff.new.len(), shown(pruned));
    assert!(!diff.matched.is_empty(), "{diff:?}");
    let count =
        |boxes: &[pruneview::app::view3d::Box3d], c| boxes.iter().filter(|b| b.color == c).count();
    let (left, right) = (app.view.boxes(), app.pruned_view.boxes());
    assert_eq!(count(left, MATCHED_COLOR), diff.matched.len());
    assert_eq!(count(left, MISSED_COLOR), diff.missed.len());
    assert_eq!(count(right, MATCHED_COLOR), diff.matched.len());
    assert_eq!(count(right, NEW_COLOR), diff.new.len());
    // Matched pruned boxes carry their score change.
    let p = diff.matched[0];
    let label = format!("({:+.2})", p.score_delta);
    assert!(right.iter().any(|b| b.label.ends_with(&label)), "{right:?}");
    assert_eq!(app.pruned_view.upload_count(), 1);
    h.get_by_label_contains(&format!("matched {}", diff.matched.len()));
    h.get_by_label_contains(&format!("missed (dense only) {}", diff.missed.len()));
    h.get_by_label_contains(&format!("new (pruned only) {}", diff.new.len()));

    // Orbiting the right view moves the left one with it.
    let at = h.get_by_label("pruned").rect().center() + egui::vec2(0.0, 150.0);
    h.hover_at(at);
    h.drag_at(at);
    h.step();
    h.hover_at(at + egui::vec2(80.0, 10.0));
    h.step();
    h.drop_at(at + egui::vec2(80.0, 10.0));
    h.run_steps(2);
    let app = h.state();
    let fresh = pruneview::app::view3d::View3d::new().camera_state();
    assert_ne!(
        app.pruned_view.camera_state(),
        fresh,
        "the drag did not orbit"
    );
    assert_eq!(app.view.camera_state(), app.pruned_view.camera_state());

    // The score table lists every compared box.
    h.get_by_label("score table").click();
    h.run_steps(2);
    h.get_by_label("BEV IoU");
    save_if_asked(&mut h, "side_by_side");
    assert_eq!(
        h.query_all_by_label("matched").count(),
        diff.matched.len(),
        "one table row per matched pair"
    );
    assert!(errors(&h).is_empty(), "{:?}", errors(&h));
}

/// Evaluation on held-out sets: frames generated by the simulator (the default, never the
/// calibration scans) and a labelled folder; per-class AP and the AP-vs-budget plot in the
/// Evaluation window; the app's dense AP equals `pruneview eval`'s on the same folder; a
/// folder that is no dataset is named.
#[test]
fn evaluation_runs_on_held_out_sets_with_per_class_ap() {
    let mut h = loaded(screenshots::WINDOW);
    assert!(matches!(
        h.state().state.settings.eval_source,
        EvalSource::Synthetic { .. }
    ));
    let synthetic = EvalSource::Synthetic { seed: 7, frames: 3 };
    h.state_mut().state.set_eval_source(synthetic.clone());
    h.get_by_label("Evaluate").click();
    step_until(&mut h, LONG, "the evaluation", |a| {
        !a.state.eval_points.is_empty()
    })
    .unwrap();
    h.run_steps(3);
    let p = h.state().state.eval_points[0].clone();
    assert_eq!(p.source, synthetic);
    assert_eq!(p.accuracy.frames, 3);
    assert_eq!(p.accuracy.dense.classes.len(), 3);
    // The window: the set, a row per class and the mean, the plot.
    h.get_by_label("moderate difficulty, R40, on 3 frames of 3 synthetic frames (seed 7)");
    for c in ["Car", "Pedestrian", "Cyclist", "mean"] {
        h.get_by_label(c);
    }
    h.get_by_label("pruned BEV");
    h.get_by_label("AP vs budget");
    assert!(h.query_by_label_contains("Optimistic").is_none());
    save_if_asked(&mut h, "evaluation");

    // A labelled folder (written by the simulator with another seed).
    let dir = TempDir::new("heldout");
    pruneview::synth::synth_frames(
        &dir,
        0..2,
        5,
        &pruneview::synth::Lidar::hdl64e(),
        &pruneview::progress::Control::quiet(),
    )
    .unwrap();
    let folder = EvalSource::Folder(dir.to_path_buf());
    h.state_mut().state.set_eval_source(folder.clone());
    h.run_steps(2);
    h.get_by_label("No evaluation on this set yet: press Evaluate.");
    h.get_by_label("Evaluate at this budget").click();
    step_until(&mut h, LONG, "the evaluation", |a| {
        a.state.eval_points.len() == 2
    })
    .unwrap();
    let s = &h.state().state;
    let q = s.eval_points_of_source();
    assert_eq!(q.len(), 1, "only the folder's evaluation is shown");
    assert_eq!(q[0].accuracy.frames, 2);
    // The CLI's dense AP on the same folder.
    let out = super::util::pruneview(&[
        "eval",
        "--weights",
        &super::util::demo().to_string_lossy(),
        "--dataset",
        &dir.to_string_lossy(),
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report =
        pruneview::eval::EvalReport::from_json(&String::from_utf8_lossy(&out.stdout)).unwrap();
    let classes = pruneview::eval::model_classes(&s.model.as_ref().unwrap().det).unwrap();
    let cli = pruneview::report::Accuracy::of(&report, &classes);
    assert_eq!(q[0].accuracy.dense, cli);

    // A folder that is no labelled dataset: named, and the app keeps running.
    let empty = TempDir::new("not-a-dataset");
    h.state_mut()
        .state
        .set_eval_source(EvalSource::Folder(empty.to_path_buf()));
    h.state_mut().state.evaluate();
    step_until(&mut h, LONG, "the error", |a| !a.state.is_evaluating()).unwrap();
    h.run_steps(2);
    let e = errors(&h);
    assert!(
        e.iter()
            .any(|m| m.contains(&empty.to_string_lossy().to_string()) && m.contains("label_2")),
        "{e:?}"
    );
    assert_eq!(h.state().state.eval_points.len(), 2);
}

/// Help > How to use and About open their windows; the lambda sliders warn when a group's
/// weight is nearly 0 next to the other's.
#[test]
fn help_about_and_the_lambda_warning() {
    let mut h = loaded(screenshots::WINDOW);
    h.get_by_label("Help").click();
    h.run_steps(2);
    h.get_by_label("How to use pruneview").click();
    h.run_steps(2);
    h.get_by_label_contains("Predicted distortion D: how much");
    h.get_by_label_contains("Only their ratio matters");
    h.get_by_label_contains("Raw (the paper's form)");
    h.get_by_label_contains("dashed lines with dots are measured");
    h.get_by_label("Help").click();
    h.run_steps(2);
    h.get_by_label("About pruneview").click();
    h.run_steps(2);
    h.get_by_label(&format!("pruneview {}", env!("CARGO_PKG_VERSION")));

    assert!(h.query_by_label_contains("weight is nearly 0").is_none());
    h.state_mut().state.settings.lambdas.confidence = 0.001;
    h.run_steps(2);
    h.get_by_label_contains("the confidence weight is nearly 0");
    // Only the ratio matters: both small is no warning.
    h.state_mut().state.settings.lambdas.locality = 0.001;
    h.run_steps(2);
    assert!(h.query_by_label_contains("weight is nearly 0").is_none());
    // The legends of the curves and the 3D view.
    h.get_by_label_contains("solid: predicted");
    assert_eq!(
        h.query_all_by_label("ground truth").count(),
        2,
        "the checkbox and the legend"
    );
    h.get_by_label("-2.5 m");
}

/// Constraints set in the layer table go into the exported allocation.json; "reset
/// constraints" clears them all and rebuilds the frontier.
#[test]
fn constraints_are_exported_and_reset() {
    use pruneview::prune::alloc::Constraint;
    let mut h = loaded(screenshots::WINDOW);
    let names: Vec<String> = h.state().state.curves.as_ref().unwrap().layers[..2]
        .iter()
        .map(|l| l.name.clone())
        .collect();
    let locked = Constraint {
        locked: true,
        ..Constraint::default()
    };
    let bounded = Constraint {
        min_sparsity: 0.2,
        max_sparsity: 0.6,
        locked: false,
    };
    let s = &mut h.state_mut().state;
    s.settings.constraints.insert(names[0].clone(), locked);
    s.settings.constraints.insert(names[1].clone(), bounded);
    s.planning_inputs_changed();
    step_until(&mut h, LONG, "the new frontier", |a| {
        !a.state.is_planning() && a.state.current.is_some()
    })
    .unwrap();
    h.run_steps(2);
    h.get_by_label("2 layer(s) constrained");
    let dir = TempDir::new("constraints");
    let s = &mut h.state_mut().state;
    s.settings.export.dir = dir.to_path_buf();
    s.export();
    step_until(&mut h, LONG, "the export", |a| {
        a.state.messages.iter().any(|m| m.text.starts_with("wrote"))
    })
    .unwrap();
    let alloc = Allocation::load(&dir.join("allocation.json")).unwrap();
    let recorded: std::collections::HashMap<_, _> = alloc
        .constraints
        .iter()
        .map(|c| (c.name.clone(), c.constraint))
        .collect();
    assert_eq!(recorded.len(), 2, "{:?}", alloc.constraints);
    assert_eq!(recorded[&names[0]], locked);
    assert_eq!(recorded[&names[1]], bounded);
    assert_eq!(
        alloc.layers[0].sparsity, 0.0,
        "the locked layer stays dense"
    );

    h.get_by_label("reset constraints").click();
    step_until(&mut h, LONG, "the new frontier", |a| {
        !a.state.is_planning() && a.state.current.is_some()
    })
    .unwrap();
    h.run_steps(2);
    h.get_by_label("0 layer(s) constrained");
    let s = &h.state().state;
    assert!(s.settings.constraints.is_empty());
    let p = s.planner.as_ref().unwrap();
    assert!(
        p.problem
            .constraints
            .iter()
            .all(|c| *c == Constraint::default())
    );
    assert!(errors(&h).is_empty(), "{:?}", errors(&h));
}

/// Curves and evaluations are cached: a restart on the same files shows them without
/// recomputing; damaged cache files are misses (recomputed, with a note), never errors.
#[test]
fn curves_and_evaluations_survive_a_restart_and_damage_is_a_miss() {
    use pruneview::app::cache::Cache;
    let dir = TempDir::new("cache");
    let cache = std::sync::Arc::new(Cache::new(dir.join("cache")));
    let start = |cache: &std::sync::Arc<Cache>| {
        let app = PruneviewApp::new(settings(), &egui::Context::default());
        let mut h = harness(app, screenshots::render_state(), screenshots::WINDOW);
        h.state_mut().state.cache = Some(cache.clone());
        h.state_mut().state.open(demo_subset(2).unwrap());
        step_until(&mut h, LONG, "the frontier", |a| a.state.current.is_some()).unwrap();
        h
    };
    let said = |h: &Harness<'_, PruneviewApp>, what: &str| {
        h.state()
            .state
            .messages
            .iter()
            .any(|m| m.text.contains(what))
    };
    let mut h = start(&cache);
    assert!(!said(&h, "from the cache"));
    let source = EvalSource::Synthetic { seed: 7, frames: 2 };
    h.state_mut().state.set_eval_source(source.clone());
    h.state_mut().state.evaluate();
    step_until(&mut h, LONG, "the evaluation", |a| {
        !a.state.eval_points.is_empty()
    })
    .unwrap();
    let curves = h.state().state.curves.clone().unwrap();
    let point = h.state().state.eval_points[0].clone();
    drop(h);

    // A restart: the same curves and the evaluation, read back.
    let mut h = start(&cache);
    assert!(said(&h, "from the cache"), "{:?}", h.state().state.messages);
    assert_eq!(*h.state().state.curves.clone().unwrap(), *curves);
    assert_eq!(h.state().state.eval_points, vec![point.clone()]);
    // (Settings persist the chosen set; a fresh harness has the default one.)
    h.state_mut().state.set_eval_source(source);
    h.run_steps(2);
    h.get_by_label_contains(&format!(
        "AP_BEV {:.2} (dense {:.2})",
        point.accuracy.pruned.mean_bev, point.accuracy.dense.mean_bev
    ));
    assert!(errors(&h).is_empty(), "{:?}", errors(&h));
    drop(h);

    // Damaged files: recomputed or dropped, said, and no error.
    for e in std::fs::read_dir(cache.root()).unwrap() {
        let e = e.unwrap().path();
        std::fs::write(e.join("curves.json"), "{\"format\": 3").unwrap();
        for f in std::fs::read_dir(&e).unwrap() {
            let f = f.unwrap().path();
            if f.to_string_lossy().contains("eval-") {
                std::fs::write(&f, [0xff, 0xfe]).unwrap();
            }
        }
    }
    let h = start(&cache);
    assert!(said(&h, "cached curves ignored, recomputing"));
    assert!(said(&h, "cached evaluation ignored"));
    assert!(!said(&h, "from the cache"));
    assert_eq!(*h.state().state.curves.clone().unwrap(), *curves);
    assert!(h.state().state.eval_points.is_empty());
    assert!(errors(&h).is_empty(), "{:?}", errors(&h));
}

/// The debug overlay's frame times while the budget slider moves and while the camera
/// orbits, printed for the record (tests never assert timings). Run with
/// `cargo test --test it app::frame_times -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement, not a check"]
fn frame_times() {
    let mut h = loaded(screenshots::WINDOW);
    h.state_mut().state.settings.debug_overlay = true;
    h.run_steps(3);
    let overlay = |h: &Harness<'_, PruneviewApp>, what: &str| -> Option<f64> {
        let label = h.query_by_label_contains(what)?.accesskit_node().value()?;
        label
            .trim_start_matches(what)
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    };
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
    };
    // The slider: a new budget every frame.
    let mut ui = Vec::new();
    for k in 0..40 {
        let s = &mut h.state_mut().state;
        s.settings.keep = 0.3 + 0.005 * k as f64;
        s.budget_changed();
        h.step();
        ui.extend(overlay(&h, "ui code"));
    }
    eprintln!(
        "slider: ui code {:.1} ms median over {} frames",
        median(ui.clone()),
        ui.len()
    );
    // Orbiting: a drag across the 3D view, a new camera every frame.
    let view = h.get_by_label_contains("points, dense").rect();
    let from = egui::pos2(view.center().x, view.bottom() + 150.0);
    h.hover_at(from);
    h.drag_at(from);
    let (mut ui, mut render) = (Vec::new(), Vec::new());
    for k in 1..=40 {
        h.hover_at(from + egui::vec2(4.0 * k as f32, 0.0));
        h.step();
        ui.extend(overlay(&h, "ui code"));
        render.extend(overlay(&h, "3D render"));
    }
    h.drop_at(from + egui::vec2(164.0, 0.0));
    h.step();
    eprintln!(
        "orbit: ui code {:.1} ms, 3D render {:.1} ms median over {} frames",
        median(ui.clone()),
        median(render),
        ui.len()
    );
    // Side by side (where the app has it): both views render every frame of the orbit.
    let side = h.query_by_label("side by side");
    let Some(side) = side else { return };
    side.click();
    h.run_steps(3);
    h.hover_at(from);
    h.drag_at(from);
    let (mut ui, mut render, mut pruned) = (Vec::new(), Vec::new(), Vec::new());
    for k in 1..=40 {
        h.hover_at(from + egui::vec2(-3.0 * k as f32, 0.0));
        h.step();
        ui.extend(overlay(&h, "ui code"));
        render.extend(overlay(&h, "3D render"));
        pruned.extend(overlay(&h, "pruned view render"));
    }
    h.drop_at(from + egui::vec2(-120.0, 0.0));
    eprintln!(
        "side by side orbit: ui code {:.1} ms, 3D render {:.1} + {:.1} ms median over {} frames",
        median(ui.clone()),
        median(render),
        median(pruned),
        ui.len()
    );
}

/// A fast release (the pointer moving on past the slider's end in the frame that lets go)
/// leaves the budget where the pointer let go, not at 100%; letting go starts the pruned
/// forward at once.
#[test]
fn budget_slider_release_lands_where_the_pointer_let_go() {
    let mut h = loaded(screenshots::WINDOW);
    let fraction = |pct: f32| (pct - 1.0) / 99.0;
    for (from, to) in [(50.0, 30.0), (30.0, 42.0)] {
        let past_the_end = slider_point(&h, "kept", 1.0) + egui::vec2(300.0, 0.0);
        drag_slider(
            &mut h,
            "kept",
            fraction(from),
            fraction(to),
            &[egui::Event::PointerMoved(past_the_end)],
        );
        let s = &h.state().state;
        let keep = s.settings.keep;
        assert!(
            (keep - f64::from(to) / 100.0).abs() < 0.02,
            "let go at {to}%, the budget is {keep}"
        );
        assert!(
            s.jobs.is_running(JobKind::PrunedForward) || s.pruned_is_current(),
            "the pruned forward waits although the slider was let go"
        );
        h.run_steps(3);
        assert_eq!(h.state().state.settings.keep, keep, "the moves after it");
        step_until(&mut h, LONG, "pruned detections", |a| {
            a.state.pruned_is_current()
        })
        .unwrap();
    }
    assert!(errors(&h).is_empty(), "{:?}", errors(&h));
}

/// Every control in view at 1600x1000 and 1280x800 (the score slider of the 3D view's
/// toolbar, the selected layer's constraints, the budget slider next to the debug overlay),
/// side panels that can be dragged narrower and wider, and a layout that holds still while
/// jobs and messages come and go.
#[test]
fn every_control_is_reachable_and_the_layout_holds_still() {
    use egui::accesskit::Role;
    let mut h = loaded(screenshots::WINDOW);
    h.state_mut().state.settings.debug_overlay = true;
    for size in [screenshots::WINDOW, egui::vec2(1280.0, 800.0)] {
        h.set_size(size);
        h.run_steps(4);
        let window = egui::Rect::from_min_size(egui::Pos2::ZERO, size);
        let p = h.state().panel_rects();
        let score = h.get_by_role_and_label(Role::Slider, "score").rect();
        assert!(
            p.central.contains_rect(score) && window.contains_rect(score),
            "{size:?}: the score slider {score:?} is outside the 3D view's panel {:?}",
            p.central
        );
        let kept = h.get_by_role_and_label(Role::Slider, "kept").rect();
        assert!(p.right.contains_rect(kept), "{size:?}: {kept:?}");
        let overlay = h.get_by_label_contains("ui code").rect();
        assert!(
            p.central.contains_rect(overlay) && !overlay.intersects(p.right),
            "{size:?}: the debug overlay {overlay:?} covers a panel"
        );
        let legend = h.get_by_label("dense model").rect();
        assert!(!overlay.intersects(legend), "{size:?}: over the legend");

        // The last layer's constraints, selected from the bottom of the table.
        let last = h.state().state.model.as_ref().unwrap().layers.len() - 1;
        let name = h.state().state.model.as_ref().unwrap().layers[last]
            .name
            .clone();
        if h.query_by_role_and_label(Role::Slider, "min sparsity")
            .is_none()
        {
            h.get_by_label(name.trim_end_matches(".weight"))
                .click_accesskit();
            h.run_steps(3);
        }
        let min = h.get_by_role_and_label(Role::Slider, "min sparsity").rect();
        assert!(
            p.left.contains_rect(min) && window.contains_rect(min),
            "{size:?}: the constraint editor {min:?} is out of view of {:?}",
            p.left
        );
    }

    // The side panels follow their edges when dragged.
    let button = |pos, pressed| egui::Event::PointerButton {
        pos,
        button: egui::PointerButton::Primary,
        pressed,
        modifiers: egui::Modifiers::default(),
    };
    let drag = |h: &mut Harness<'_, PruneviewApp>, from: egui::Pos2, dx: f32| {
        h.input_mut().events.push(egui::Event::PointerMoved(from));
        h.step();
        h.input_mut().events.push(button(from, true));
        h.step();
        for i in 1..=5 {
            let at = from + egui::vec2(dx * i as f32 / 5.0, 0.0);
            h.input_mut().events.push(egui::Event::PointerMoved(at));
            h.step();
        }
        h.input_mut()
            .events
            .push(button(from + egui::vec2(dx, 0.0), false));
        h.run_steps(3);
    };
    for (dx, side) in [
        (-120.0, "left"),
        (150.0, "left"),
        (120.0, "right"),
        (-150.0, "right"),
    ] {
        let before = h.state().panel_rects();
        let (edge, width) = match side {
            "left" => (before.left.right(), before.left.width()),
            _ => (before.right.left(), before.right.width()),
        };
        let y = before.left.center().y;
        drag(&mut h, egui::pos2(edge, y), dx);
        let after = h.state().panel_rects();
        let (new_width, want) = match side {
            "left" => (after.left.width(), width + dx),
            _ => (after.right.width(), width - dx),
        };
        assert!(
            (new_width - want).abs() < 4.0,
            "the {side} panel: {width} dragged by {dx} is {new_width}"
        );
    }

    // Jobs and messages come and go: nothing else moves.
    h.state_mut().state.messages.clear();
    h.run_steps(3);
    let still = |h: &Harness<'_, PruneviewApp>| {
        (
            h.state().panel_rects(),
            h.get_by_role_and_label(Role::Slider, "kept").rect(),
        )
    };
    let before = still(&h);
    let gate = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for i in 0..4 {
        let g = gate.clone();
        h.state_mut()
            .state
            .jobs
            .spawn(JobKind::Export, format!("a test job {i}"), move |_| {
                while !g.load(std::sync::atomic::Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(pruneview::app::jobs::JobError::Cancelled)
            });
    }
    for i in 0..20 {
        h.state_mut().state.info(format!("message {i}"));
    }
    h.run_steps(3);
    h.get_by_label_contains("a test job 3");
    assert_eq!(still(&h), before, "jobs and messages moved the layout");
    gate.store(true, std::sync::atomic::Ordering::Relaxed);
    step_until(&mut h, LONG, "the test jobs", |a| a.state.jobs.is_idle()).unwrap();
    h.state_mut().state.messages.clear();
    h.run_steps(3);
    assert_eq!(still(&h), before, "jobs and messages moved the layout");
}

/// The 3D view's status line says what the pruned detections wait for, from the jobs that
/// run, and counts boxes as drawn: at or above the score threshold.
#[test]
fn status_line_follows_the_jobs_and_the_score_threshold() {
    use pruneview::app::ui::DENSE_COLOR;
    let mut h = loaded(screenshots::WINDOW);
    step_until(&mut h, LONG, "pruned detections", |a| {
        a.state.pruned_is_current()
    })
    .unwrap();
    for t in [0.0f32, 0.5, 0.99] {
        h.state_mut().state.settings.score_threshold = t;
        h.run_steps(3);
        let s = &h.state().state;
        let scan = s.selected().unwrap();
        let dense = scan.dense.iter().filter(|d| d.score >= t).count();
        let pruned = s.pruned.as_ref().unwrap();
        let pruned = pruned.detections.iter().filter(|d| d.score >= t).count();
        let drawn = h
            .state()
            .view
            .boxes()
            .iter()
            .filter(|b| b.color == DENSE_COLOR)
            .count();
        assert_eq!(drawn, dense);
        h.get_by_label_contains(&format!("boxes with score >= {t:.2}: dense {dense} ("));
        h.get_by_label_contains(&format!("pruned {pruned} ("));
    }
    // A frontier that failed, with nothing running: said so, not "preparing".
    let s = &mut h.state_mut().state;
    s.planner = None;
    s.current = None;
    h.run_steps(2);
    h.get_by_label_contains("pruned: no frontier (see Messages)");
    h.get_by_label_contains("No frontier: its job failed");
    assert!(
        h.query_by_label_contains("Preparing the frontier")
            .is_none()
    );
    // Replanning brings the allocation back.
    h.state_mut().state.replan();
    step_until(&mut h, LONG, "the frontier", |a| a.state.current.is_some()).unwrap();
}

/// Files that fail say so, in the app: a file dialog that cannot open says why and opens
/// the path field, which opens what is typed; scans given without a model, or with a model
/// that does not load, wait for the next model; bad YAMLs are named; dropped non-finite
/// points are reported; curves from a near-empty scan warn; two `000000.bin` are told
/// apart by their folders.
#[test]
fn files_that_fail_say_so() {
    use egui::accesskit::Role;
    let dir = TempDir::new("files");
    let app = PruneviewApp::new(
        Settings {
            auto_curves: false,
            ..settings()
        },
        &egui::Context::default(),
    );
    let mut h = harness(app, screenshots::render_state(), egui::vec2(1280.0, 800.0));
    h.state_mut()
        .state
        .set_file_dialog(std::sync::Arc::new(|_| {
            Err("Failed to connect to session bus: no DBUS_SESSION_BUS_ADDRESS".into())
        }));
    let demo = demo_subset(1).unwrap();
    let scan = demo.scans[0].clone();

    // Scans before any model wait for one.
    h.state_mut().state.dropped(vec![scan.clone()]);
    h.run_steps(2);
    h.get_by_label_contains("1 scan path(s) wait for a model");

    // File > Open model: no dialog can open; the message says so, the path field opens.
    h.get_by_label("File").click();
    h.run_steps(2);
    h.get_by_label("Open model (.safetensors)...").click();
    step_until(&mut h, LONG, "the dialog's failure", |a| {
        a.state.path_prompt.is_some()
    })
    .unwrap();
    h.run_steps(2);
    h.get_by_label_contains("the file dialog could not open (Failed to connect");
    let field = h.get_by_role(Role::TextInput);
    field.focus();
    field.type_text(&demo.weights.display().to_string());
    h.run_steps(2);
    h.get_by_label("Open").click();
    step_until(&mut h, LONG, "the model and its waiting scan", |a| {
        a.state.scans.len() == 1 && a.state.jobs.is_idle()
    })
    .unwrap();
    assert!(h.state().state.path_prompt.is_none());
    assert!(h.state().state.pending_scans.is_empty());
    assert_eq!(
        h.state().state.model.as_ref().unwrap().weights_path,
        demo.weights
    );
    h.state_mut().state.messages.clear();

    // A bad model dropped with good scans: named, and the scans wait for the next model.
    let truncated = dir.join("truncated.safetensors");
    let good = std::fs::read(&demo.weights).unwrap();
    std::fs::write(&truncated, &good[..good.len() / 2]).unwrap();
    let other = demo.scans[1].clone();
    h.state_mut()
        .state
        .dropped(vec![truncated.clone(), other.clone()]);
    step_until(&mut h, LONG, "the error", |a| a.state.jobs.is_idle()).unwrap();
    h.run_steps(2);
    let e = errors(&h);
    assert!(
        e.iter().any(|m| m.contains("truncated.safetensors")),
        "{e:?}"
    );
    assert!(e.iter().any(|m| m.contains("wait for a model")), "{e:?}");
    assert_eq!(h.state().state.pending_scans, vec![other.clone()]);
    h.state_mut().state.dropped(vec![demo.weights.clone()]);
    step_until(&mut h, LONG, "the model with the waiting scan", |a| {
        a.state.jobs.is_idle() && a.state.scans.len() == 1
    })
    .unwrap();
    assert_eq!(h.state().state.scans[0].path, other);

    // Bad YAMLs, each named.
    for (name, text) in [
        ("syntax.yaml", &b"MODEL: [unclosed\n"[..]),
        ("empty.yaml", &b""[..]),
        ("garbage.yaml", &[0xff, 0xfe, 0x00, 0x81][..]),
        ("other.yaml", &b"foo: 1\n"[..]),
    ] {
        h.state_mut().state.messages.clear();
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        h.state_mut().state.dropped(vec![path]);
        step_until(&mut h, LONG, "the error", |a| a.state.jobs.is_idle()).unwrap();
        let e = errors(&h);
        assert!(e.iter().any(|m| m.contains(name)), "{name}: {e:?}");
        assert_eq!(
            h.state().state.model.as_ref().unwrap().weights_path,
            demo.weights
        );
    }

    // Two scans of one name in different folders, one with a NaN point; a near-empty one.
    h.state_mut().state.messages.clear();
    let mut bytes = std::fs::read(&scan).unwrap();
    let (a, b) = (dir.join("a/velodyne"), dir.join("b/velodyne"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    std::fs::write(a.join("000000.bin"), &bytes).unwrap();
    bytes[..4].copy_from_slice(&f32::NAN.to_le_bytes());
    std::fs::write(b.join("000000.bin"), &bytes).unwrap();
    let tiny = dir.join("tiny.bin");
    std::fs::write(&tiny, &bytes[16..16 + 20 * 16]).unwrap();
    let s = &mut h.state_mut().state;
    s.remove_scan(0);
    s.add_scans(vec![a.join("000000.bin"), b.join("000000.bin")]);
    step_until(&mut h, LONG, "the scans", |a| a.state.scans.len() == 2).unwrap();
    h.run_steps(2);
    h.get_by_label("a/velodyne/000000.bin");
    h.get_by_label("b/velodyne/000000.bin");
    let infos: Vec<String> = h
        .state()
        .state
        .messages
        .iter()
        .map(|m| m.text.clone())
        .collect();
    assert!(
        infos
            .iter()
            .any(|m| m.contains("b/velodyne/000000.bin: dropped 1 points with NaN")),
        "{infos:?}"
    );
    h.get_by_label_contains("17.5 k !");

    let s = &mut h.state_mut().state;
    s.remove_scan(1);
    s.remove_scan(0);
    s.add_scans(vec![tiny]);
    step_until(&mut h, LONG, "the tiny scan", |a| a.state.scans.len() == 1).unwrap();
    h.state_mut().state.compute_curves();
    step_until(&mut h, LONG, "the frontier", |a| a.state.current.is_some()).unwrap();
    h.run_steps(2);
    // In the budget panel, next to the allocation (and in the messages).
    let budget = h.state().panel_rects().right;
    let warned = h
        .query_all_by_label_contains("1 near-empty scan(s) (tiny.bin; at most 20 points")
        .filter(|n| budget.contains_rect(n.rect()))
        .count();
    assert_eq!(warned, 1);
}

/// Consistency: with no model (or no scans) the buttons that need them are disabled and say
/// why; the model panel, the layer table, the budget panel and report.csv count the same
/// FLOPs; "save screenshot" writes the 3D view as drawn, box labels and legend included.
#[test]
fn panels_agree_buttons_wait_and_screenshots_show_what_is_drawn() {
    use egui::accesskit::Role;
    use egui_kittest::kittest::NodeT;
    let dir = TempDir::new("consistency");
    let app = PruneviewApp::new(
        Settings {
            auto_curves: false,
            ..settings()
        },
        &egui::Context::default(),
    );
    let mut h = harness(app, screenshots::render_state(), screenshots::WINDOW);
    h.run_steps(2);
    let disabled = |h: &Harness<'_, PruneviewApp>, label: &str| {
        h.get_by_role_and_label(Role::Button, label)
            .accesskit_node()
            .is_disabled()
    };
    for label in ["Compute curves", "Measure curves", "Evaluate", "Export..."] {
        assert!(disabled(&h, label), "{label} is enabled without a model");
        h.get_by_role_and_label(Role::Button, label).click();
        h.run_steps(2);
    }
    assert!(errors(&h).is_empty(), "{:?}", errors(&h));

    // The model without scans: the VFE's FLOPs are unknown, not 0%.
    let mut req = demo_subset(4).unwrap();
    let scans = std::mem::take(&mut req.scans);
    h.state_mut().state.open(req);
    step_until(&mut h, LONG, "the model", |a| a.state.model.is_some()).unwrap();
    h.run_steps(2);
    assert!(disabled(&h, "Compute curves"));
    let f = h.state().state.layer_flops().unwrap();
    assert_eq!(f.share(0), "-");
    assert!(f.source.contains("no scans"), "{}", f.source);

    h.state_mut().state.add_scans(scans);
    step_until(&mut h, LONG, "the scans", |a| a.state.jobs.is_idle()).unwrap();
    h.run_steps(2);
    assert!(!disabled(&h, "Compute curves"));
    h.get_by_label("Compute curves").click();
    step_until(&mut h, LONG, "pruned detections", |a| {
        a.state.pruned_is_current()
    })
    .unwrap();
    h.run_steps(3);
    assert!(!disabled(&h, "Evaluate") && !disabled(&h, "Export..."));

    // One FLOPs count everywhere.
    let label = |h: &Harness<'_, PruneviewApp>, part: &str| {
        let n = h.get_by_label_contains(part);
        let text = n.accesskit_node().label().map(|l| l.to_string());
        text.or_else(|| n.value()).unwrap_or_default()
    };
    let number = |text: &str, before: &str| -> f64 {
        let at = text.find(before).unwrap();
        let tail: String = text[..at]
            .trim_end()
            .rsplit(' ')
            .next()
            .unwrap()
            .to_string();
        tail.parse().unwrap()
    };
    let model = label(&h, "GFLOPs (prunable layers)");
    let budget = label(&h, "GFLOPs per scan");
    assert_eq!(
        number(&model, "GFLOPs"),
        number(&budget, "GFLOPs"),
        "{model} | {budget}"
    );
    let s = &mut h.state_mut().state;
    s.settings.export.dir = dir.to_path_buf();
    s.export();
    step_until(&mut h, LONG, "the export", |a| {
        a.state.messages.iter().any(|m| m.text.starts_with("wrote"))
    })
    .unwrap();
    let csv = std::fs::read_to_string(dir.join("report.csv")).unwrap();
    let rows: Vec<(String, f64)> = csv
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[0].to_string(), f[3].parse().unwrap())
        })
        .collect();
    let total: f64 = rows.iter().map(|r| r.1).sum();
    let f = h.state().state.layer_flops().unwrap();
    let layers = h.state().state.model.as_ref().unwrap().layers.clone();
    for (i, l) in layers.iter().enumerate() {
        let (_, flops) = rows.iter().find(|r| r.0 == l.name).unwrap();
        assert_eq!(
            f.share(i),
            format!("{:.1}%", 100.0 * flops / total),
            "{}",
            l.name
        );
    }
    assert!(f.share(0) != "0.0%", "the VFE's share is {}", f.share(0));
    assert!(h.query_all_by_label(&f.share(0)).next().is_some());

    // The screenshot is the view as drawn: its labels and legend are in the file.
    h.state_mut().state.messages.clear();
    h.get_by_label("save screenshot").click();
    step_until(&mut h, LONG, "the screenshot", |a| {
        a.state.messages.iter().any(|m| m.text.starts_with("wrote"))
    })
    .unwrap();
    assert!(errors(&h).is_empty(), "{:?}", errors(&h));
    let view = h.state().panel_rects().view;
    let legend = h.get_by_label_contains("pruned model: DP at").rect();
    assert!(view.contains_rect(legend), "{legend:?} outside {view:?}");
    let path = dir.join("screenshot-000000_bin.png");
    let saved = screenshots::image::open(&path).unwrap().to_rgba8();
    assert_eq!(
        (saved.width() as f32, saved.height() as f32),
        (view.width().round(), view.height().round())
    );
    let frame = h.render().unwrap();
    let (x0, y0) = (view.min.x.round() as u32, view.min.y.round() as u32);
    let differ = saved
        .enumerate_pixels()
        .filter(|(x, y, p)| {
            let q = frame.get_pixel(x0 + x, y0 + y);
            p.0.iter().zip(q.0).any(|(a, b)| a.abs_diff(b) > 8)
        })
        .count();
    assert!(
        differ * 200 < (saved.width() * saved.height()) as usize,
        "{differ} pixels differ from the view on screen"
    );
}
