//! Recovery of a pruned detector on the bundled demo model and its synthetic scans:
//! statistics repair gives the pruned network's own BatchNorm statistics, reconstruction
//! lowers every layer's output error and matches a closed-form solve, distillation lowers
//! the calibration distortion deterministically, and pruned weights stay exactly zero.
//! The CLI's `prune --recover` and `recover` write weights that `eval` loads.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use super::util::{TempDir, demo, pruneview};
use pruneview::detect::Detector;
use pruneview::detect::prepare_scan;
use pruneview::pointcloud::scan::list_scans;
use pruneview::progress::Control;
use pruneview::prune::measure::DenseReference;
use pruneview::prune::probe::{self, CalibScan};
use pruneview::prune::recover::{
    self, DistillSettings, ReconstructSettings, RecoverSettings, Stages, distill, reconstruct,
    stats,
};
use pruneview::prune::{Weighting, rank};

fn scan_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/scans/synthetic/velodyne")
}

fn scans(n: usize) -> Vec<CalibScan> {
    let features: Vec<String> = ["x", "y", "z", "intensity"].map(String::from).to_vec();
    list_scans(&scan_dir())
        .expect("scans")
        .into_iter()
        .take(n)
        .map(|p| {
            let s = prepare_scan(&p, None, None, &features).expect("scan");
            CalibScan {
                id: p.file_name().unwrap().to_string_lossy().into_owned(),
                points: s.points,
            }
        })
        .collect()
}

/// Every conv pruned to `s` by magnitude (the PFN layer left dense, as the DP usually does).
fn masks(det: &Detector, s: f64) -> Vec<Option<Vec<u8>>> {
    det.units()
        .iter()
        .enumerate()
        .map(|(i, u)| (i > 0).then(|| rank::mask(&rank::magnitude_order(&u.weight.data), s)))
        .collect()
}

/// A BatchNorm holds `mean` and `var` (unit `l`'s output moments) per channel.
fn assert_statistics(bn: &pruneview::nn::BatchNorm, mean: &[f32], var: &[f32], l: usize) {
    for c in 0..mean.len() {
        let tol = 1e-4 * (1.0 + var[c].sqrt());
        assert!((bn.mean[c] - mean[c]).abs() <= tol, "{l}/{c}: mean");
        assert!(
            (bn.var[c] - var[c]).abs() <= 1e-4 * (1.0 + var[c]),
            "{l}/{c}: var"
        );
    }
}

fn zeros_kept(det: &Detector, masks: &[Option<Vec<u8>>]) {
    for (u, m) in det.units().iter().zip(masks) {
        if let Some(m) = m {
            for (w, k) in u.weight.data.iter().zip(m) {
                if *k == 0 {
                    assert_eq!(
                        w.to_bits(),
                        0,
                        "{}: a pruned weight came back",
                        u.weight_name()
                    );
                }
            }
        }
    }
}

#[test]
fn statistics_repair_gives_the_pruned_networks_own_statistics() {
    let dense = Detector::load(None, &demo()).expect("demo");
    let m = masks(&dense, 0.5);
    let mut det = recover::masked(&dense, &m).expect("masked");
    let calib = scans(3);
    let ctl = Control::quiet();
    let changes = stats::repair_statistics(&mut det, &calib, 1, &ctl).expect("repair");
    assert!(!changes.is_empty());
    assert!(
        changes.iter().any(|c| c.mean_shift > 0.01),
        "pruning moved no mean"
    );
    // Each BatchNorm now holds the mean and variance of its unit's pre-normalisation output
    // on the scans, with the repaired network upstream.
    let n_units = det.units().len();
    for l in [1, 8, n_units - 4] {
        let unit = det.units()[l].clone();
        let Some(bn) = &unit.bn else { continue };
        let linear = unit.linear_part().unwrap();
        let mut m = stats::ChannelMoments::new(unit.out_channels());
        for s in &calib {
            let taped = det.forward_taped(&s.points).unwrap();
            let z = linear
                .forward_input(taped.unit_inputs(&det).unwrap()[l])
                .unwrap();
            m.add(unit.kind, &z);
        }
        let (mean, var) = m.mean_var().unwrap();
        assert_statistics(&bn.bn, &mean, &var, l);
    }
    zeros_kept(&det, &m);
}

#[test]
fn reconstruction_lowers_each_layers_error_and_keeps_the_masks() {
    let dense = Detector::load(None, &demo()).expect("demo");
    let m = masks(&dense, 0.6);
    let mut det = recover::masked(&dense, &m).expect("masked");
    let calib = scans(2);
    let ctl = Control::quiet();
    let layers = reconstruct::reconstruct(
        &mut det,
        &dense,
        &m,
        &calib,
        None,
        1..dense.units().len(),
        &ReconstructSettings::default(),
        &ctl,
    )
    .expect("fit");
    assert_eq!(layers.len(), dense.units().len() - 1);
    for l in &layers {
        assert!(l.skipped.is_none(), "{}: {:?}", l.unit, l.skipped);
        assert!(l.error_after.is_finite() && l.error_before.is_finite());
        assert!(
            l.error_after <= l.error_before * (1.0 + 1e-9) + 1e-12,
            "{}: {} -> {}",
            l.unit,
            l.error_before,
            l.error_after
        );
    }
    // Pruned heavily, the deep layers' outputs must improve clearly.
    let deep = layers
        .iter()
        .find(|l| l.unit.contains("blocks.2.10"))
        .unwrap();
    assert!(deep.error_after < 0.5 * deep.error_before, "{deep:?}");
    zeros_kept(&det, &m);
    // Each refitted unit's BatchNorm holds the statistics of its own outputs: a statistics
    // repair afterwards finds nothing to change.
    let mut again = det.clone();
    for c in recover::stats::repair_statistics(&mut again, &calib, 1, &ctl).unwrap() {
        assert!(
            c.mean_shift < 1e-3 && (c.var_ratio - 1.0).abs() < 1e-3,
            "{c:?}"
        );
    }
    // The refitted model is closer to the dense one than the masked one.
    let norms = probe::output_variances(&dense, &calib, Weighting::Detection, &ctl).unwrap();
    let reference =
        DenseReference::compute(&dense, &calib, Weighting::Detection, norms, &ctl).unwrap();
    let masked = recover::masked(&dense, &m).unwrap();
    let d = |x: &Detector| {
        let (c, l) = reference.distortion(x, &calib, &ctl).unwrap();
        c + l
    };
    assert!(d(&det) < d(&masked), "{} vs {}", d(&det), d(&masked));
}

#[test]
fn distillation_lowers_the_loss_deterministically_with_zeros_kept() {
    let dense = Detector::load(None, &demo()).expect("demo");
    let m = masks(&dense, 0.6);
    let calib = scans(2);
    let ctl = Control::quiet();
    let norms = probe::output_variances(&dense, &calib, Weighting::Detection, &ctl).unwrap();
    let reference =
        DenseReference::compute(&dense, &calib, Weighting::Detection, norms, &ctl).unwrap();
    let cfg = DistillSettings {
        steps: 4,
        lr: 1e-4,
        batch: 1,
        seed: 3,
        eval_every: 2,
        ..Default::default()
    };
    let run = || {
        let mut det = recover::masked(&dense, &m).unwrap();
        let r = distill::distill(&mut det, &reference, &m, &calib, &cfg, &ctl).expect("distill");
        (det, r)
    };
    let (a, ra) = run();
    assert!(ra.best_loss < ra.initial_loss, "{ra:?}");
    assert_eq!(ra.steps_run, 4);
    assert_eq!(ra.history.len(), 3);
    zeros_kept(&a, &m);
    let (b, rb) = run();
    assert_eq!(ra.batch_losses, rb.batch_losses);
    for (ua, ub) in a.units().iter().zip(b.units()) {
        assert_eq!(ua.weight.data, ub.weight.data, "{}", ua.weight_name());
    }
    // A cancelled run stops with an error.
    let stop = AtomicBool::new(true);
    let ctl = Control::quiet().with_cancel(&stop);
    let mut det = recover::masked(&dense, &m).unwrap();
    assert!(distill::distill(&mut det, &reference, &m, &calib, &cfg, &ctl).is_err());
}

/// A layer pruned entirely is said in the report: everything after it sees a constant map.
#[test]
fn a_layer_pruned_entirely_is_reported() {
    let dense = Detector::load(None, &demo()).expect("demo");
    let mut m = masks(&dense, 0.5);
    let dead = dense.units()[5].weight_name();
    m[5] = Some(vec![0; dense.units()[5].weight.numel()]);
    let ctl = Control::quiet();
    let cfg = RecoverSettings {
        stages: Stages::NONE,
        ..Default::default()
    };
    let (_, report) = recover::recover(&dense, &m, &scans(1), &cfg, &ctl).expect("recover");
    assert!(
        report
            .notes
            .iter()
            .any(|n| n.starts_with(&dead) && n.contains("pruned entirely")),
        "{:?}",
        report.notes
    );
}

#[test]
fn all_stages_in_order_with_a_report() {
    let dense = Detector::load(None, &demo()).expect("demo");
    let m = masks(&dense, 0.5);
    let calib = scans(2);
    let ctl = Control::quiet();
    let cfg = RecoverSettings {
        stages: Stages::ALL,
        distill: DistillSettings {
            steps: 2,
            batch: 1,
            ..Default::default()
        },
        ..Default::default()
    };
    let (det, report) = recover::recover(&dense, &m, &calib, &cfg, &ctl).expect("recover");
    let stages: Vec<&str> = report.results.iter().map(|r| r.stage).collect();
    assert_eq!(
        &stages[..3],
        &["masks", "reconstruct", "distill"],
        "{stages:?}"
    );
    let d = |i: usize| report.results[i].confidence + report.results[i].locality;
    assert!(d(1) < d(0));
    assert!(report.to_json().contains("\"stages\":\"all\""));
    zeros_kept(&det, &m);
    assert_eq!(
        "stats,distill".parse::<Stages>().unwrap().name(),
        "stats,distill"
    );
    assert!("none".parse::<Stages>().unwrap().is_none());
    assert!("stats,none".parse::<Stages>().is_err());
    assert!("fast".parse::<Stages>().is_err());
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

#[test]
fn cli_prune_recovers_and_recover_takes_masks_made_elsewhere() {
    let dir = TempDir::new("cli");
    let out = dir.join("p50");
    let (w, scans) = (demo(), scan_dir());
    let o = pruneview(&[
        "prune",
        "--weights",
        s(&w),
        "--scans",
        s(&scans),
        "--max-scans",
        "2",
        "--probes",
        "1",
        "--levels",
        "21",
        "--flops-keep",
        "0.5",
        "--recover",
        "stats",
        "--out",
        s(&out),
    ]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(stderr.contains("recovery (stats)"), "{stderr}");
    let pruned = out.join("pruned.safetensors");
    let masks = out.join("masks.safetensors");
    // The recovered file loads on its own (config embedded) and records the recovery.
    let det = Detector::load(None, &pruned).expect("recovered weights load");
    let meta = pruneview::model::Weights::open(&pruned)
        .unwrap()
        .metadata()
        .clone();
    assert!(meta["pruneview.recovery"].contains("\"stages\":\"stats\""));
    assert!(meta.contains_key("pruneview.allocation"));
    let m = pruneview::prune::export::read_masks(&masks, &det).expect("masks");
    zeros_kept(&det, &m);

    // `recover` on those masks, distillation only, two steps.
    let rec = dir.join("r.safetensors");
    let o = pruneview(&[
        "recover",
        "--weights",
        s(&w),
        "--masks",
        s(&masks),
        "--scans",
        s(&scans),
        "--max-scans",
        "2",
        "--recover",
        "distill",
        "--steps",
        "2",
        "--batch",
        "1",
        "--out",
        s(&rec),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let det = Detector::load(None, &rec).expect("recovered");
    zeros_kept(&det, &m);
    let split = dir.join("split.txt");
    std::fs::write(&split, "000000\n").unwrap();
    let o = pruneview(&[
        "eval",
        "--weights",
        s(&rec),
        "--dataset",
        s(scans.parent().unwrap()),
        "--split",
        s(&split),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // Bad input: weights as masks, a bad stage list, the output onto an input.
    for (args, want) in [
        (vec!["--masks", s(&w)], "U8 or BOOL"),
        (
            vec!["--masks", s(&masks), "--recover", "stats,fast"],
            "unknown recovery stage",
        ),
        (vec!["--masks", s(&masks), "--lr=-1"], "--lr"),
        (vec!["--masks", s(&masks), "--focus=-0.5"], "--focus"),
        (vec!["--masks", s(&masks), "--focus=NaN"], "--focus"),
    ] {
        let mut a = vec![
            "recover",
            "--weights",
            s(&w),
            "--scans",
            s(&scans),
            "--max-scans",
            "1",
        ];
        a.extend(args);
        a.extend(["--out", s(&rec)]);
        let o = pruneview(&a);
        let e = String::from_utf8_lossy(&o.stderr);
        assert_eq!(
            o.status.code(),
            Some(if want.starts_with("unknown") { 2 } else { 1 }),
            "{e}"
        );
        assert!(e.contains(want), "{want}: {e}");
    }
    let o = pruneview(&[
        "recover",
        "--weights",
        s(&w),
        "--masks",
        s(&masks),
        "--scans",
        s(&scans),
        "--max-scans",
        "1",
        "--out",
        s(&masks),
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("one of the inputs"));
}

/// Statistics repair walks a voxel model's sparse 3-D backbone too (SECOND, pruned by
/// magnitude, on both real KITTI frames): every sparse conv's BatchNorm then holds the mean
/// and variance over active sites of its pre-normalisation output in a plain forward pass of
/// the repaired network.
/// SECOND and both real KITTI frames (FOV filtered), its units pruned by magnitude to
/// `sparsity`: the dense model, the calibration scans and the masks.
fn second_on_kitti(sparsity: f64) -> (Detector, Vec<CalibScan>, Vec<Option<Vec<u8>>>) {
    let shared = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared");
    let dense = Detector::load(
        Some(&shared.join("reference/cfgs/kitti_models/second.yaml")),
        &shared.join("reference/second_kitti_000008/weights.safetensors"),
    )
    .expect("SECOND");
    let kitti = shared.join("data/kitti/training");
    let calib: Vec<CalibScan> = ["000000", "000008"]
        .iter()
        .map(|id| {
            let fov = pruneview::detect::FovFilter {
                calib: kitti.join(format!("calib/{id}.txt")),
                image: "375x1242".parse().unwrap(),
            };
            let s = prepare_scan(
                &kitti.join(format!("velodyne/{id}.bin")),
                None,
                Some(&fov),
                &dense.config.data.used_features,
            )
            .expect("scan");
            CalibScan {
                id: id.to_string(),
                points: s.points,
            }
        })
        .collect();
    let m: Vec<Option<Vec<u8>>> = dense
        .units()
        .iter()
        .map(|u| Some(rank::mask(&rank::magnitude_order(&u.weight.data), sparsity)))
        .collect();
    (dense, calib, m)
}

#[test]
fn statistics_repair_runs_through_sparse_convs() {
    let (dense, calib, m) = second_on_kitti(0.3);
    let mut det = recover::masked(&dense, &m).expect("masked");
    let changes = stats::repair_statistics(&mut det, &calib, 0, &Control::quiet()).expect("repair");
    let n_sparse = det.encoder.units().len();
    assert_eq!(n_sparse, 12);
    assert!(changes.len() >= n_sparse);
    let taped: Vec<_> = calib
        .iter()
        .map(|s| det.forward_taped(&s.points).unwrap())
        .collect();
    for l in [0, 4, 11] {
        let unit = det.units()[l].clone();
        let bn = unit.bn.as_ref().expect("every sparse conv has a BatchNorm");
        let linear = unit.linear_part().unwrap();
        let c = unit.out_channels();
        let mut moments = stats::ChannelMoments::new(c);
        for t in &taped {
            let (x, rb) = t.sparse_unit_input(l).expect("recorded");
            let z = linear.forward_sparse(x, rb).unwrap();
            moments.add(
                unit.kind,
                &pruneview::nn::Tensor::from_vec(&[z.len() / c, c], z),
            );
        }
        let (mean, var) = moments.mean_var().unwrap();
        assert_statistics(&bn.bn, &mean, &var, l);
    }
    zeros_kept(&det, &m);
}

/// Reconstruction refits SECOND's sparse 3-D convs (each output row a masked least squares
/// over the gathered input sites of its rulebook): no layer's output error rises, the
/// strided and deep ones fall clearly, and pruned weights stay exactly zero.
#[test]
fn reconstruction_refits_sparse_convs() {
    let (dense, calib, m) = second_on_kitti(0.6);
    let mut det = recover::masked(&dense, &m).expect("masked");
    let n_sparse = det.encoder.units().len();
    let layers = reconstruct::reconstruct(
        &mut det,
        &dense,
        &m,
        &calib,
        None,
        0..n_sparse,
        &ReconstructSettings::default(),
        &Control::quiet(),
    )
    .expect("fit");
    assert_eq!(layers.len(), n_sparse);
    for l in &layers {
        assert!(l.skipped.is_none(), "{}: {:?}", l.unit, l.skipped);
        assert!(
            l.error_after <= l.error_before * (1.0 + 1e-9) + 1e-12,
            "{}: {} -> {}",
            l.unit,
            l.error_before,
            l.error_after
        );
    }
    let last = layers.last().unwrap();
    assert_eq!(last.unit, "backbone_3d.conv_out.0.weight");
    assert!(last.error_after < 0.5 * last.error_before, "{last:?}");
    zeros_kept(&det, &m);
}
