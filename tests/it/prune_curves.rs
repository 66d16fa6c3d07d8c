//! Gauss-Newton curves on the KITTI PointPillars reference model and the real KITTI frames:
//! the probe identity behind them, agreement with measured curves, exact shard merges,
//! determinism and cancellation.

use std::sync::OnceLock;
use std::sync::atomic::AtomicBool;

use super::util::{TempDir, shared};
use pruneview::detect::{Detector, FovFilter, RawOutputs, prepare_scan};
use pruneview::nn::Tensor;
use pruneview::progress::Control;
use pruneview::prune::curves::{Curves, ModelInfo};
use pruneview::prune::measure::{DenseReference, Measurer, layer_fidelity};
use pruneview::prune::probe::{
    CalibScan, CurveSettings, ProbeError, output_variances, predicted_curves,
};
use pruneview::prune::{Group, Lambdas, Weighting, rank};

struct Setup {
    det: Detector,
    scans: Vec<CalibScan>,
}

fn setup() -> &'static Setup {
    static S: OnceLock<Setup> = OnceLock::new();
    S.get_or_init(|| {
        let s = shared();
        let det = Detector::load(
            Some(&s.join("reference/cfgs/kitti_models/pointpillar.yaml")),
            &s.join("reference/pointpillar_kitti_000008/weights.safetensors"),
        )
        .expect("model");
        let kitti = s.join("data/kitti/training");
        let scans = ["000000", "000008"]
            .iter()
            .map(|f| {
                let fov = FovFilter {
                    calib: kitti.join(format!("calib/{f}.txt")),
                    image: "375x1242".parse().expect("size"),
                };
                let p = prepare_scan(
                    &kitti.join(format!("velodyne/{f}.bin")),
                    None,
                    Some(&fov),
                    &det.config.data.used_features,
                )
                .expect("scan");
                CalibScan {
                    id: format!("{f}.bin"),
                    points: p.points,
                }
            })
            .collect();
        Setup { det, scans }
    })
}

fn model() -> ModelInfo {
    ModelInfo {
        name: "PointPillar".into(),
        weights_sha256: "test".into(),
    }
}

fn unit_index(det: &Detector, name: &str) -> usize {
    det.units()
        .iter()
        .position(|u| u.weight_name() == name)
        .expect(name)
}

/// `g . Delta` from one backward pass equals `v . (Y(W + Delta) - Y(W))` exactly for the
/// last (linear) conv and to second order for a hidden layer: the identity the prefix sums
/// rely on.
#[test]
fn probe_gradient_predicts_output_change() {
    let s = setup();
    let det = &s.det;
    let scan = &s.scans[1];
    let taped = det.forward_taped(&scan.points).expect("forward");
    // A probe on every output: signs from a fixed pattern.
    let mut v = RawOutputs::default();
    for o in &taped.out.raw.outputs {
        let data = (0..o.tensor.numel())
            .map(|i| if (i * 7 + 3) % 5 < 2 { 1.0 } else { -1.0 })
            .collect();
        v.outputs
            .push(o.like(Tensor::from_vec(&o.tensor.shape, data)));
    }
    let grads = det.backward(&taped, &v).expect("backward");
    for (name, sparsity, tol) in [
        ("dense_head.conv_box.weight", 0.5, 1e-3),
        ("backbone_2d.blocks.2.16.weight", 0.002, 0.1),
    ] {
        let l = unit_index(det, name);
        let w = &det.units()[l].weight;
        let order = rank::magnitude_order(&w.data);
        let pruned = rank::prune(&w.data, &order, sparsity);
        let predicted: f64 = -(0..w.numel())
            .filter(|&i| pruned[i] == 0.0 && w.data[i] != 0.0)
            .map(|i| grads[l].weight.data[i] as f64 * w.data[i] as f64)
            .sum::<f64>();
        let mut work = det.clone();
        work.units_mut()[l]
            .set_weight(Tensor::from_vec(&w.shape, pruned))
            .expect("set");
        let out = work.forward(&scan.points).expect("forward");
        let mut actual = 0f64;
        for (a, (b, p)) in out
            .raw
            .outputs
            .iter()
            .zip(taped.out.raw.outputs.iter().zip(&v.outputs))
        {
            let (a, b, p) = (&a.tensor, &b.tensor, &p.tensor);
            for ((x, y), s) in a.data.iter().zip(&b.data).zip(&p.data) {
                actual += (*x as f64 - *y as f64) * *s as f64;
            }
        }
        let rel = (predicted - actual).abs() / actual.abs().max(1e-12);
        assert!(
            rel <= tol,
            "{name} at {sparsity}: predicted {predicted:.6e}, actual {actual:.6e} (rel {rel:.2e})"
        );
    }
}

/// Predicted and measured curves agree in shape (rank correlation) for layers in the head,
/// the backbone and the VFE, for both distortions; the fidelity report computes the same
/// correlation.
#[test]
fn predicted_curves_track_measured_curves() {
    for weighting in [Weighting::Detection, Weighting::Raw] {
        predicted_curves_track_measured(weighting);
    }
}

fn predicted_curves_track_measured(weighting: Weighting) {
    let s = setup();
    let ctl = Control::quiet();
    let settings = CurveSettings {
        probes: 4,
        levels: CurveSettings::even_levels(11),
        weighting,
        ..CurveSettings::default()
    };
    let scans = &s.scans[1..];
    let mut p = predicted_curves(&s.det, scans, &settings, model(), &ctl).expect("curves");
    let names = [
        "dense_head.conv_cls.weight",
        "backbone_2d.blocks.1.4.weight",
        "vfe.pfn_layers.0.linear.weight",
    ];
    let layers: Vec<usize> = names.iter().map(|n| unit_index(&s.det, n)).collect();
    let levels = [0.1, 0.3, 0.5, 0.7, 0.9];
    let measurer = Measurer {
        det: &s.det,
        scans,
        reference: DenseReference::compute(
            &s.det,
            scans,
            weighting,
            p.curves.calibration.normalization.clone(),
            &ctl,
        )
        .expect("dense"),
        orders: &p.orders,
    };
    let measured = measurer
        .measured_curves(&layers, &levels, false, &ctl)
        .expect("measured");
    for (&l, m) in layers.iter().zip(measured) {
        p.curves.layers[l].measured = m;
    }
    let fidelity = layer_fidelity(&p.curves, Lambdas::default());
    assert_eq!(fidelity.len(), 3);
    for f in &fidelity {
        let rho = f.spearman.expect("non-constant curves");
        assert!(rho >= 0.9, "{} ({weighting:?}): spearman {rho:.3}", f.name);
    }
    // Sanity: the measured values are distortions (zero only when nothing changed).
    let cls = &p.curves.layers[layers[0]];
    assert!(cls.measured.confidence.iter().all(|&v| v > 0.0));
    assert!(cls.measured.locality.iter().all(|&v| v == 0.0));
    assert!(
        cls.distortion
            .get(Group::Locality)
            .iter()
            .all(|&v| v == 0.0)
    );
}

/// Recovery-aware measured curves: the BatchNorm statistics are re-estimated after pruning,
/// which changes the distortion, and the file says so.
#[test]
fn measured_curves_after_statistics_repair() {
    let s = setup();
    let ctl = Control::quiet();
    let scans = &s.scans[1..];
    let norms = output_variances(&s.det, scans, Weighting::Detection, &ctl).expect("variances");
    let orders: Vec<Vec<u32>> = s
        .det
        .units()
        .iter()
        .map(|u| rank::magnitude_order(&u.weight.data))
        .collect();
    let measurer = Measurer {
        det: &s.det,
        scans,
        reference: DenseReference::compute(&s.det, scans, Weighting::Detection, norms, &ctl)
            .expect("dense"),
        orders: &orders,
    };
    let layer = [unit_index(&s.det, "backbone_2d.blocks.1.4.weight")];
    let plain = measurer
        .measured_curves(&layer, &[0.6], false, &ctl)
        .expect("measured");
    let repaired = measurer
        .measured_curves(&layer, &[0.6], true, &ctl)
        .expect("measured after repair");
    assert!(!plain[0].after_statistics && repaired[0].after_statistics);
    let (p, r) = (plain[0].locality[0], repaired[0].locality[0]);
    assert!(p.is_finite() && r.is_finite() && p > 0.0 && r > 0.0);
    assert!(
        (p - r).abs() > 1e-6 * p,
        "repair changed nothing: {p} vs {r}"
    );
}

/// Shards on disjoint scans with a shared normalisation merge into exactly the single run;
/// the same inputs give bit-identical curves; a file round-trips.
#[test]
fn shards_merge_exactly_and_runs_are_deterministic() {
    let s = setup();
    let ctl = Control::quiet();
    let norms = output_variances(&s.det, &s.scans, Weighting::Detection, &ctl).expect("variances");
    let settings = CurveSettings {
        probes: 1,
        levels: CurveSettings::even_levels(21),
        normalization: Some(norms),
        ..CurveSettings::default()
    };
    let run = |scans: &[CalibScan]| {
        predicted_curves(&s.det, scans, &settings, model(), &ctl)
            .expect("curves")
            .curves
    };
    let whole = run(&s.scans);
    let a = run(&s.scans[..1]);
    let b = run(&s.scans[1..]);
    let merged = Curves::merge(&[a.clone(), b], &["a".into(), "b".into()]).expect("merge");
    assert_eq!(merged.calibration.scans, 2);
    for (m, w) in merged.layers.iter().zip(&whole.layers) {
        for g in Group::ALL {
            for (x, y) in m.distortion.get(g).iter().zip(w.distortion.get(g)) {
                assert!(
                    (x - y).abs() <= 1e-12 * y.abs().max(1e-300),
                    "{}: merged {x} vs whole {y}",
                    m.name
                );
            }
        }
        assert!((m.flops - w.flops).abs() <= 1e-9 * w.flops);
    }
    // Determinism.
    assert_eq!(run(&s.scans[..1]), a);
    // Round trip through the file format.
    let dir = TempDir::new("curves");
    let path = dir.join("c.json");
    std::fs::write(&path, whole.to_json()).expect("write");
    assert_eq!(Curves::load(&path).expect("load"), whole);
    // Same scan twice, or different normalisations: refused with a reason.
    let err = Curves::merge(&[a.clone(), a.clone()], &["a".into(), "a2".into()])
        .expect_err("duplicate scan");
    assert!(err.to_string().contains("in both shards"), "{err}");
    let mut other = a.clone();
    other.calibration.normalization[0].variance *= 2.0;
    other.calibration.scan_ids = vec!["x".into()];
    let err =
        Curves::merge(&[a.clone(), other.clone()], &["a".into(), "o".into()]).expect_err("norm");
    assert!(err.to_string().contains("--norm-from"), "{err}");
    other.calibration.normalization = a.calibration.normalization.clone();
    other.calibration.distortion = Weighting::Raw;
    let err =
        Curves::merge(&[a.clone(), other], &["a".into(), "o".into()]).expect_err("distortion");
    assert!(err.to_string().contains("different distortions"), "{err}");
    // Scan counts weigh the sums: a shard claiming scans it does not list is refused.
    for claimed in [0, 1 << 62] {
        let mut liar = a.clone();
        liar.calibration.scans = claimed;
        liar.calibration.scan_ids = vec!["y".into()];
        let err = Curves::merge(&[a.clone(), liar], &["a".into(), "liar.json".into()])
            .expect_err("scan count");
        let msg = err.to_string();
        assert!(
            msg.contains("liar.json") && msg.contains(&format!("claims {claimed} scans")),
            "{msg}"
        );
    }
}

#[test]
fn cancelled_curves_stop_with_an_error() {
    let s = setup();
    let cancel = AtomicBool::new(true);
    let ctl = Control::quiet().with_cancel(&cancel);
    let r = predicted_curves(&s.det, &s.scans, &CurveSettings::default(), model(), &ctl);
    assert!(matches!(r, Err(ProbeError::Cancelled)));
}

#[test]
fn bad_curve_files_are_rejected_with_the_layer_named() {
    let dir = TempDir::new("badcurves");
    let path = dir.join("bad.json");
    let doc = r#"{"format": "pruneview-curves/1", "model": {"name": "m", "weights_sha256": "x"},
      "calibration": {"scans": 1, "probes": 1},
      "layers": [{"name": "a.weight", "params": 4, "flops": 8.0, "sparsity": [0.0, 0.5],
                  "distortion": {"confidence": [0.0], "locality": [0.0, 1.0]}}]}"#;
    std::fs::write(&path, doc).expect("write");
    let err = Curves::load(&path)
        .expect_err("mismatched lengths")
        .to_string();
    assert!(
        err.contains("bad.json") && err.contains("a.weight"),
        "{err}"
    );
    std::fs::write(&path, "{").expect("write");
    let err = Curves::load(&path).expect_err("truncated").to_string();
    assert!(err.contains("bad.json"), "{err}");
    // A minimal file computed elsewhere (no sums, no shapes) loads.
    let ok = doc.replace(r#""confidence": [0.0]"#, r#""confidence": [0.0, 2.0]"#);
    std::fs::write(&path, ok).expect("write");
    let c = Curves::load(&path).expect("minimal file");
    assert_eq!(c.layers[0].distortion.confidence, vec![0.0, 2.0]);
}
