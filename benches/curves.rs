//! The pruning core's heavy step: Gauss-Newton probe curves on the KITTI PointPillars
//! reference model (target: 16 scans x 4 probes per group <= 3 minutes on 2 cores).
//!
//! Criterion needs at least 10 samples, so the unit measured here is one scan with one probe
//! per group (a dense pass for the normalisation, a taped forward, two backward passes and
//! the prefix sums for all 23 layers x 101 levels); the full 16 x 4 run is timed end to end
//! with `pruneview curves` (see the issue note). The 16 calibration scans are the two real
//! KITTI frames, camera-FOV filtered, each also rotated about z and mirrored in y
//! (OpenPCDet-style global augmentations), 8 per frame.

// Benchmark code: a failed unwrap stops the benchmark (the workspace warns of them elsewhere).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use criterion::{Criterion, criterion_group, criterion_main};
use pruneview::detect::{Detector, FovFilter, prepare_scan};
use pruneview::progress::Control;
use pruneview::prune::curves::ModelInfo;
use pruneview::prune::probe::{CalibScan, CurveSettings, predicted_curves};

/// As in the `pruneview` binary: the backward pass allocates and frees large maps per layer,
/// and the system allocator returns them to the OS (page faults on every reuse).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn shared() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared")
}

/// The two KITTI frames, FOV-filtered, rotated by one of 4 small angles and optionally
/// mirrored: 16 scans.
fn calibration_scans(det: &Detector) -> Vec<CalibScan> {
    let kitti = shared().join("data/kitti/training");
    let mut scans = Vec::new();
    for frame in ["000000", "000008"] {
        let fov = FovFilter {
            calib: kitti.join(format!("calib/{frame}.txt")),
            image: "375x1242".parse().expect("image size"),
        };
        let scan = prepare_scan(
            &kitti.join(format!("velodyne/{frame}.bin")),
            None,
            Some(&fov),
            &det.config.data.used_features,
        )
        .expect("KITTI scan");
        for (i, deg) in [-6.0f32, -2.0, 2.0, 6.0].into_iter().enumerate() {
            for mirror in [false, true] {
                let (s, c) = deg.to_radians().sin_cos();
                let mut p = scan.points.clone();
                for pt in p.chunks_exact_mut(scan.num_features) {
                    let (x, y) = (pt[0], if mirror { -pt[1] } else { pt[1] });
                    pt[0] = c * x - s * y;
                    pt[1] = s * x + c * y;
                }
                scans.push(CalibScan {
                    id: format!("{frame}_r{i}_m{}", u8::from(mirror)),
                    points: p,
                });
            }
        }
    }
    scans
}

fn curves(c: &mut Criterion) {
    let s = shared();
    let det = Detector::load(
        Some(&s.join("reference/cfgs/kitti_models/pointpillar.yaml")),
        &s.join("reference/pointpillar_kitti_000008/weights.safetensors"),
    )
    .expect("load the KITTI PointPillars reference model");
    let scans = calibration_scans(&det);
    let ctl = Control::quiet();
    let model = ModelInfo {
        name: "PointPillar".into(),
        weights_sha256: String::new(),
    };
    let settings = CurveSettings {
        probes: 1,
        ..CurveSettings::default()
    };
    let mut g = c.benchmark_group("curves_pointpillars_kitti");
    g.sample_size(10);
    g.bench_function("one_scan_one_probe_per_group", |b| {
        b.iter(|| {
            predicted_curves(&det, &scans[..1], &settings, model.clone(), &ctl).expect("curves")
        })
    });
    g.finish();

    // The full-size target, timed once per call (criterion would need 10 runs of
    // ~2.5 minutes): `PRUNEVIEW_BENCH_FULL=1 cargo bench --bench curves`.
    if std::env::var_os("PRUNEVIEW_BENCH_FULL").is_some() {
        let settings = CurveSettings {
            probes: 4,
            ..CurveSettings::default()
        };
        let t = std::time::Instant::now();
        let p = predicted_curves(&det, &scans, &settings, model, &ctl).expect("curves");
        println!(
            "full run: {} scans x 4 probes x 2 groups, {} layers x 101 levels: {:.1} s",
            scans.len(),
            p.curves.layers.len(),
            t.elapsed().as_secs_f64()
        );
    }
}

criterion_group!(benches, curves);
criterion_main!(benches);
