//! `pruneview report` on the bundled demo model and held-out scans (`assets/scans/synthetic`):
//! every (budget, method) cell is a real pruned model evaluated with our KITTI evaluator, the
//! dense row equals a plain evaluation, budgets are respected, and the markdown, JSON and PNG
//! outputs are complete.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use super::util::TempDir;
use pruneview::detect::{Detector, prepare_scan};
use pruneview::eval::EvalSet;
use pruneview::progress::Control;
use pruneview::prune::alloc::Method;
use pruneview::prune::curves::ModelInfo;
use pruneview::prune::probe::{CalibScan, CurveSettings, predicted_curves};
use pruneview::prune::recover::Stages;
use pruneview::report::{
    self, Accuracy, PruningReport, ReportError, ReportInputs, ReportSettings, Series,
};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn scans_dir() -> PathBuf {
    root().join("assets/scans/synthetic")
}

struct Fixture {
    det: Detector,
    scans: Vec<CalibScan>,
    eval: EvalSet,
}

fn fixture() -> Fixture {
    let det = Detector::load(None, &root().join("assets/demo_pointpillar.safetensors"))
        .expect("demo model");
    // Calibration and evaluation frames are disjoint.
    let scans = (60..63)
        .map(|i| {
            let id = format!("{i:06}");
            let p = prepare_scan(
                &scans_dir().join(format!("velodyne/{id}.bin")),
                None,
                None,
                &det.config.data.used_features,
            )
            .expect("scan");
            CalibScan {
                id: format!("{id}.bin"),
                points: p.points,
            }
        })
        .collect();
    let ids: Vec<String> = (0..6).map(|i| format!("{i:06}")).collect();
    let eval = EvalSet::load(
        &scans_dir(),
        &ids,
        pruneview::synth::IMAGE,
        &det.config.data.used_features,
        &Control::quiet(),
    )
    .expect("eval set");
    Fixture { det, scans, eval }
}

fn run(f: &Fixture, keeps: Vec<f64>, cancel: bool) -> Result<PruningReport, ReportError> {
    run_with(f, keeps, cancel, vec![Stages::NONE])
}

fn run_with(
    f: &Fixture,
    keeps: Vec<f64>,
    cancel: bool,
    recoveries: Vec<Stages>,
) -> Result<PruningReport, ReportError> {
    let ctl = Control::quiet();
    let settings = CurveSettings {
        probes: 1,
        levels: CurveSettings::even_levels(21),
        ..CurveSettings::default()
    };
    let model = ModelInfo {
        name: "demo".into(),
        weights_sha256: "test".into(),
    };
    let p = predicted_curves(&f.det, &f.scans, &settings, model, &ctl).expect("curves");
    let flag = AtomicBool::new(cancel);
    let ctl = ctl.with_cancel(&flag);
    report::run(
        &ReportInputs {
            det: &f.det,
            curves: &p.curves,
            orders: &p.orders,
            scans: &f.scans,
            eval: &f.eval,
        },
        &ReportSettings {
            keeps,
            methods: vec![Method::Dp, Method::Uniform, Method::Erk],
            lambdas: Default::default(),
            bins: 1024,
            layer_cap: pruneview::prune::alloc::DEFAULT_LAYER_CAP,
            recoveries,
            recover: Default::default(),
        },
        &ctl,
    )
}

#[test]
fn report_evaluates_every_budget_and_method() {
    let f = fixture();
    let rep = run(&f, vec![1.0, 0.6, 0.3], false).expect("report");

    // The dense row is a plain evaluation of the unpruned model.
    let plain = f.eval.evaluate(&f.det, &Control::quiet()).expect("eval");
    let classes = pruneview::eval::model_classes(&f.det).expect("classes");
    assert_eq!(rep.dense, Accuracy::of(&plain, &classes));
    assert!(
        rep.dense.classes[0].1 > 40.0,
        "dense Car AP_BEV {:?}",
        rep.dense
    );

    // 1.0 is the dense model: only the pruned budgets get rows, one per method.
    assert_eq!(rep.rows.len(), 6);
    assert_eq!(rep.keeps(), vec![0.6, 0.3]);
    for r in &rep.rows {
        assert!(r.flops_kept <= r.flops_keep + 1e-9, "{r:?}");
        assert!(
            r.flops_kept >= r.flops_keep - 0.05,
            "budget barely used: {r:?}"
        );
        assert!(r.measured_distortion > 0.0 && r.predicted_distortion >= 0.0);
        assert!(r.accuracy.mean_bev <= 100.0);
    }
    // Pruning to 30% of the FLOPs without fine-tuning costs accuracy for every method.
    let uni = rep
        .row(Series::masks_only(Method::Uniform), 0.3)
        .expect("uniform 30%");
    assert!(uni.accuracy.mean_bev < rep.dense.mean_bev, "{uni:?}");

    // Outputs: markdown with both tables, JSON round trip, a PNG.
    let md = rep.to_markdown();
    assert!(
        md.contains("| 60% (1.67x) |") && md.contains("| 30% | erk |"),
        "{md}"
    );
    assert!(md.contains(&format!("{:.2}", rep.dense.mean_bev)));
    let back: PruningReport = serde_json::from_str(&rep.to_json()).expect("json");
    assert_eq!(back, rep);
    let dir = TempDir::new("report");
    let png = dir.join("plot.png");
    report::plot::write_png(&rep, &png).expect("plot");
    let bytes = std::fs::read(&png).expect("png");
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    assert!(
        bytes.len() > 10_000,
        "a plot with text and lines: {} bytes",
        bytes.len()
    );
}

#[test]
fn report_refuses_bad_budgets_and_stops_when_cancelled() {
    let f = fixture();
    let err = run(&f, vec![0.5, 1.5], false).expect_err("keep 1.5");
    assert!(err.to_string().contains("1.5"), "{err}");
    let err = run(&f, vec![0.5], true).expect_err("cancelled");
    assert!(err.to_string().contains("cancelled"), "{err}");
}

#[test]
fn report_applies_each_recovery_to_every_method() {
    let f = fixture();
    let stats: Stages = "stats".parse().expect("stages");
    let rep = run_with(&f, vec![0.3], false, vec![Stages::NONE, stats]).expect("report");
    assert_eq!(rep.rows.len(), 6);
    assert!(rep.has_recovery());
    for method in [Method::Dp, Method::Uniform, Method::Erk] {
        let plain = rep
            .row(Series::masks_only(method), 0.3)
            .expect("mask-only row");
        let recovered = Series {
            method,
            recovery: stats,
        };
        let rec = rep.row(recovered, 0.3).expect("recovered row");
        assert_eq!(
            (plain.recovery.name(), rec.recovery.name()),
            ("none".to_string(), "stats".to_string())
        );
        // The same masks: the same FLOPs; recovery changes the weights, so the outputs.
        assert_eq!(plain.flops_kept, rec.flops_kept);
        assert_ne!(plain.measured_distortion, rec.measured_distortion);
    }
    assert!(rep.to_markdown().contains("| 30% | dp + stats |"));
    let back: PruningReport = serde_json::from_str(&rep.to_json()).expect("json");
    assert_eq!(back, rep);
}
