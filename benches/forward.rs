//! End-to-end forward pass of the reference models on real scans and of the bundled demo
//! model on a bundled scan: the numbers behind the engine's speed targets (KITTI PointPillars
//! on frame 000008: voxelize to NMS <= 0.5 s; SECOND on the same frame <= 0.6 s;
//! CenterPoint-voxel on the nuScenes frame <= 0.9 s; demo model on a demo scan <= 150 ms).

// Benchmark code: a failed unwrap stops the benchmark (the workspace warns of them elsewhere).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use criterion::{Criterion, criterion_group, criterion_main};
use pruneview::detect::{Detector, FovFilter, prepare_scan};

fn shared() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared")
}

/// KITTI frame 000008, camera-FOV filtered, for `det`.
fn kitti_000008(det: &Detector) -> pruneview::detect::PreparedScan {
    let kitti = shared().join("data/kitti/training");
    let fov = FovFilter {
        calib: kitti.join("calib/000008.txt"),
        image: "375x1242".parse().expect("image size"),
    };
    prepare_scan(
        &kitti.join("velodyne/000008.bin"),
        None,
        Some(&fov),
        &det.config.data.used_features,
    )
    .expect("scan 000008")
}

/// The nuScenes key frame of `../shared/data`, one sweep.
fn nuscenes_frame(det: &Detector) -> pruneview::detect::PreparedScan {
    prepare_scan(
        &shared().join("data/nuscenes/samples/LIDAR_TOP/n015-2018-07-24-11-22-45+0800__LIDAR_TOP__1532402927647951.pcd.bin"),
        None,
        None,
        &det.config.data.used_features,
    )
    .expect("nuScenes scan")
}

fn pointpillars(c: &mut Criterion) {
    let s = shared();
    let det = Detector::load(
        Some(&s.join("reference/cfgs/kitti_models/pointpillar.yaml")),
        &s.join("reference/pointpillar_kitti_000008/weights.safetensors"),
    )
    .expect("load the KITTI PointPillars reference model");
    let scan = kitti_000008(&det);
    let out = det.forward(&scan.points).expect("forward");
    let mut g = c.benchmark_group("pointpillars_kitti_000008");
    g.sample_size(10);
    g.bench_function("pipeline_voxelize_to_nms", |b| {
        b.iter(|| det.decode(&det.forward(&scan.points).expect("forward").raw))
    });
    g.bench_function("decode_and_nms", |b| b.iter(|| det.decode(&out.raw)));
    g.finish();
}

fn centerpoint(c: &mut Criterion) {
    let s = shared();
    let det = Detector::load(
        Some(&s.join("reference/cfgs/nuscenes_models/cbgs_dyn_pp_centerpoint.yaml")),
        &s.join("reference/centerpoint_pp_nuscenes/weights.safetensors"),
    )
    .expect("load the nuScenes CenterPoint-PP reference model");
    let scan = nuscenes_frame(&det);
    let mut g = c.benchmark_group("centerpoint_pp_nuscenes");
    g.sample_size(10);
    g.bench_function("pipeline_voxelize_to_nms", |b| {
        b.iter(|| det.decode(&det.forward(&scan.points).expect("forward").raw))
    });
    g.finish();
}

/// The voxel models: MeanVFE, the sparse 3-D backbone, HeightCompression, then the 2-D part.
fn voxel_models(c: &mut Criterion) {
    let s = shared();
    let ref_model = |cfg: &str, folder: &str| {
        Detector::load(
            Some(&s.join("reference/cfgs").join(cfg)),
            &s.join("reference").join(folder).join("weights.safetensors"),
        )
        .expect("load a voxel reference model")
    };
    let second = ref_model("kitti_models/second.yaml", "second_kitti_000008");
    let scan = kitti_000008(&second);
    let mut g = c.benchmark_group("second_kitti_000008");
    g.sample_size(10);
    g.bench_function("pipeline_voxelize_to_nms", |b| {
        b.iter(|| second.decode(&second.forward(&scan.points).expect("forward").raw))
    });
    g.finish();
    let cp = ref_model(
        "nuscenes_models/cbgs_voxel01_res3d_centerpoint.yaml",
        "centerpoint_voxel_nuscenes",
    );
    let scan = nuscenes_frame(&cp);
    let mut g = c.benchmark_group("centerpoint_voxel_nuscenes");
    g.sample_size(10);
    g.bench_function("pipeline_voxelize_to_nms", |b| {
        b.iter(|| cp.decode(&cp.forward(&scan.points).expect("forward").raw))
    });
    g.finish();
}

fn demo(c: &mut Criterion) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let det = Detector::load(None, &root.join("assets/demo_pointpillar.safetensors"))
        .expect("load the bundled demo model");
    // A held-out synthetic scan (camera-view points, as the model sees them).
    let scan = prepare_scan(
        &root.join("assets/scans/synthetic/velodyne/000000.bin"),
        None,
        None,
        &det.config.data.used_features,
    )
    .expect("demo scan");
    let mut g = c.benchmark_group("demo_pointpillar_synthetic_000000");
    g.sample_size(20);
    g.bench_function("pipeline_voxelize_to_nms", |b| {
        b.iter(|| det.decode(&det.forward(&scan.points).expect("forward").raw))
    });
    g.finish();
}

criterion_group!(benches, pointpillars, centerpoint, voxel_models, demo);
criterion_main!(benches);
