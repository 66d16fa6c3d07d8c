//! End-to-end forward pass of the reference models on real scans and of the bundled demo
//! model on a bundled scan: the numbers behind the engine's speed targets (KITTI PointPillars
//! on frame 000008: voxelize to NMS <= 0.5 s; demo model on a demo scan <= 150 ms).

use std::path::PathBuf;

use criterion::{Criterion, criterion_group, criterion_main};
use pruneview::detect::{Detector, FovFilter, prepare_scan};

fn shared() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared")
}

fn pointpillars(c: &mut Criterion) {
    let s = shared();
    let det = Detector::load(
        Some(&s.join("reference/cfgs/kitti_models/pointpillar.yaml")),
        &s.join("reference/pointpillar_kitti_000008/weights.safetensors"),
    )
    .expect("load the KITTI PointPillars reference model");
    let kitti = s.join("data/kitti/training");
    let fov = FovFilter {
        calib: kitti.join("calib/000008.txt"),
        image: "375x1242".parse().expect("image size"),
    };
    let scan = prepare_scan(
        &kitti.join("velodyne/000008.bin"),
        None,
        Some(&fov),
        &det.config.data.used_features,
    )
    .expect("scan 000008");
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
    let scan = prepare_scan(
        &s.join("data/nuscenes/samples/LIDAR_TOP/n015-2018-07-24-11-22-45+0800__LIDAR_TOP__1532402927647951.pcd.bin"),
        None,
        None,
        &det.config.data.used_features,
    )
    .expect("nuScenes scan");
    let mut g = c.benchmark_group("centerpoint_pp_nuscenes");
    g.sample_size(10);
    g.bench_function("pipeline_voxelize_to_nms", |b| {
        b.iter(|| det.decode(&det.forward(&scan.points).expect("forward").raw))
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

criterion_group!(benches, pointpillars, centerpoint, demo);
criterion_main!(benches);
