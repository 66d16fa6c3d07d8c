//! The desktop app, driven headlessly with egui_kittest on Mesa's software Vulkan: the real
//! demo model and scans, real jobs, real files.

use std::path::PathBuf;
use std::time::Duration;

use eframe::egui;
use egui_kittest::kittest::Queryable;
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
    let p = &h.state().state.eval_points[0];
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
