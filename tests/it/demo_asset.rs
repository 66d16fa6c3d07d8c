//! The bundled demo detector (`assets/demo_pointpillar.safetensors`) loads without a YAML
//! (its config is embedded) and detects on held-out synthetic scenes: KITTI AP measured with
//! our own evaluator, far above what an untrained or broken model scores.

use std::path::PathBuf;

use pruneview::detect::Detector;
use pruneview::eval::{self, Difficulty, KittiClass, Metric, RecallPoints};
use pruneview::synth::{IMAGE, Lidar, make_frame, standard_calib};

#[test]
fn demo_model_detects_cars_on_held_out_synthetic_scenes() {
    let weights =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/demo_pointpillar.safetensors");
    let det = Detector::load(None, &weights).expect("demo model with embedded config");
    assert!(det.unused_keys.is_empty(), "{:?}", det.unused_keys);
    let calib = standard_calib();
    let lidar = Lidar::hdl64e();
    let (mut gt, mut dt) = (Vec::new(), Vec::new());
    // Seed 4242 is neither the training seed (11) nor the committed evaluation seed (999).
    for index in 0..12 {
        let frame = make_frame(4242, index, &lidar, &calib);
        let keep = calib.fov_flags(&frame.points, 4, IMAGE);
        let points: Vec<f32> = frame
            .points
            .chunks_exact(4)
            .zip(&keep)
            .filter(|(_, k)| **k)
            .flat_map(|(p, _)| p.iter().copied())
            .collect();
        let names = &det.config.class_names;
        dt.push(
            det.detect(&points)
                .expect("detect")
                .iter()
                .map(|d| {
                    let class = names.get(d.label - 1).map_or("?", String::as_str);
                    calib.lidar_box_to_prediction(&d.bbox, class, d.score, IMAGE)
                })
                .collect(),
        );
        gt.push(frame.labels);
    }
    let report = eval::evaluate(&gt, &dt, &[KittiClass::Car]).expect("evaluate");
    let ap = report
        .ap(
            KittiClass::Car,
            Metric::Bev,
            Difficulty::Moderate,
            RecallPoints::R40,
        )
        .expect("car moderate BEV");
    // 96.3 on 200 held-out scenes; a dozen scenes vary more, so the bar here is 80.
    assert!(
        ap >= 80.0,
        "Car moderate AP_BEV R40 {ap:.2}\n{}",
        report.to_table()
    );
}

/// The real KITTI frame 000008 (6 labelled cars; `assets/scans/kitti`): how many of its cars
/// the demo model, trained only on synthetic scenes, finds at BEV IoU >= 0.5.
#[test]
fn demo_model_finds_cars_in_the_real_kitti_frame() {
    use pruneview::boxes::iou::kitti_iou_bev;
    use pruneview::detect::{FovFilter, prepare_scan};
    use pruneview::pointcloud::Calib;
    use pruneview::pointcloud::kitti::load_labels;

    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let det = Detector::load(None, &root.join("assets/demo_pointpillar.safetensors"))
        .expect("demo model");
    let kitti = root.join("assets/scans/kitti");
    let calib_path = kitti.join("calib/000008.txt");
    let scan = prepare_scan(
        &kitti.join("velodyne/000008.bin"),
        None,
        Some(&FovFilter {
            calib: calib_path.clone(),
            image: IMAGE,
        }),
        &det.config.data.used_features,
    )
    .expect("scan");
    let calib = Calib::load(&calib_path).expect("calib");
    let cars: Vec<_> = load_labels(kitti.join("label_2/000008.txt"))
        .expect("labels")
        .into_iter()
        .filter(|o| o.name == "Car")
        .collect();
    assert_eq!(cars.len(), 6);
    let boxes: Vec<_> = det
        .detect(&scan.points)
        .expect("detect")
        .iter()
        .filter(|d| det.config.class_names[d.label - 1] == "Car")
        .map(|d| {
            calib
                .lidar_box_to_prediction(&d.bbox, "Car", d.score, IMAGE)
                .camera_box()
        })
        .collect();
    let found = cars
        .iter()
        .filter(|c| {
            boxes
                .iter()
                .any(|b| kitti_iou_bev(&c.camera_box(), b) >= 0.5)
        })
        .count();
    println!(
        "found {found} of 6 labelled cars in KITTI 000008 ({} car boxes)",
        boxes.len()
    );
    // 4 of 6 with the bundled model (the two missed cars are far and sparsely hit); the bar
    // leaves room for numeric noise at the IoU threshold.
    assert!(found >= 3, "found {found} of 6 cars");
}
