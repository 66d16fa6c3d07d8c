//! The synthetic KITTI generator: determinism, realism checks against the beam table and the
//! labels, and a round trip through the crate's own KITTI readers.

use std::sync::atomic::AtomicBool;

use super::util::TempDir;

use pruneview::pointcloud::kitti::load_labels;
use pruneview::pointcloud::{Calib, Scan};
use pruneview::progress::Control;
use pruneview::synth::{
    Class, IMAGE, Lidar, generate_scene, make_frame, render, scene_labels, standard_calib,
    synth_to_dir, write_kitti,
};

/// Number of points inside a LiDAR box (gravity centre, heading), with a small margin.
fn points_in_box(points: &[f32], b: &[f32; 7], margin: f32) -> usize {
    let (s, c) = b[6].sin_cos();
    points
        .chunks_exact(4)
        .filter(|p| {
            let (dx, dy, dz) = (p[0] - b[0], p[1] - b[1], p[2] - b[2]);
            let lx = c * dx + s * dy;
            let ly = -s * dx + c * dy;
            lx.abs() <= b[3] / 2.0 + margin
                && ly.abs() <= b[4] / 2.0 + margin
                && dz.abs() <= b[5] / 2.0 + margin
        })
        .count()
}

#[test]
fn same_seed_same_scene_and_points() {
    let lidar = Lidar::hdl64e();
    let a = generate_scene(7, 3);
    let b = generate_scene(7, 3);
    assert_eq!(a, b);
    assert_ne!(a, generate_scene(7, 4));
    assert_ne!(a, generate_scene(8, 3));
    let pa = render(&a, &lidar);
    let pb = render(&b, &lidar);
    assert_eq!(pa.len(), pb.len());
    assert!(pa.iter().zip(&pb).all(|(x, y)| x.to_bits() == y.to_bits()));
}

#[test]
fn files_are_byte_identical_and_parse_back() {
    let (tmp1, tmp2) = (TempDir::new("synth-a"), TempDir::new("synth-b"));
    let (d1, d2) = (tmp1.join("scenes"), tmp2.join("scenes"));
    write_kitti(&d1, 0..2, 42).expect("write a");
    write_kitti(&d2, 0..2, 42).expect("write b");
    for i in 0..2 {
        for (sub, ext) in [("velodyne", "bin"), ("label_2", "txt"), ("calib", "txt")] {
            let f = format!("{sub}/{i:06}.{ext}");
            let a = std::fs::read(d1.join(&f)).expect("read a");
            let b = std::fs::read(d2.join(&f)).expect("read b");
            assert!(!a.is_empty() || sub == "label_2", "{f} is empty");
            assert_eq!(a, b, "{f} differs between two runs with the same seed");
        }
        let scan = Scan::load(d1.join(format!("velodyne/{i:06}.bin"))).expect("scan");
        assert!(scan.len() > 50_000, "only {} points", scan.len());
        assert_eq!(scan.report().non_finite_dropped, 0);
        assert!(
            scan.points()
                .chunks_exact(4)
                .all(|p| (0.0..=1.0).contains(&p[3]))
        );
        let labels = load_labels(d1.join(format!("label_2/{i:06}.txt"))).expect("labels");
        let calib = Calib::load(d1.join(format!("calib/{i:06}.txt"))).expect("calib");
        assert_eq!(calib, standard_calib());
        let frame = make_frame(42, i, &Lidar::hdl64e(), &calib);
        assert_eq!(labels, frame.labels);
    }
}

#[test]
fn cli_entry_reports_progress_and_cancels() {
    let tmp = TempDir::new("synth-cli");
    let d = tmp.join("scenes");
    let calls = std::sync::Mutex::new(Vec::new());
    let cancel = AtomicBool::new(false);
    let on_step =
        |done: usize, total: usize, _: &str| calls.lock().expect("lock").push((done, total));
    let n = synth_to_dir(&d, 2, 1, false, &Control::new(&cancel, &on_step)).expect("synth");
    assert_eq!(n, 2);
    assert_eq!(*calls.lock().expect("lock"), vec![(1, 2), (2, 2)]);
    let cancelled = AtomicBool::new(true);
    let n = synth_to_dir(
        &tmp.join("cancelled"),
        5,
        1,
        false,
        &Control::quiet().with_cancel(&cancelled),
    )
    .expect("synth");
    assert_eq!(n, 0);
    // A folder that holds a dataset is refused unless overwriting is asked for.
    let label = d.join("label_2/000000.txt");
    let before = std::fs::read(&label).expect("label");
    let e = synth_to_dir(&d, 2, 9, false, &Control::quiet()).unwrap_err();
    assert!(e.to_string().contains("already holds a dataset"), "{e}");
    assert_eq!(std::fs::read(&label).expect("label"), before);
    assert_eq!(
        synth_to_dir(&d, 2, 9, true, &Control::quiet()).expect("synth"),
        2
    );
}

#[test]
fn elevations_match_the_beam_table_and_range() {
    let lidar = Lidar::hdl64e();
    assert_eq!(lidar.elevations_deg.len(), 64);
    let (top, bottom) = (lidar.elevations_deg[0], lidar.elevations_deg[63]);
    assert!((top - 2.0).abs() < 0.01 && (bottom + 24.33).abs() < 0.01);
    let points = render(&generate_scene(5, 0), &lidar);
    let n = points.len() / 4;
    let (mut lo, mut hi) = (f32::INFINITY, f32::NEG_INFINITY);
    for p in points.chunks_exact(4) {
        let r = (p[0] * p[0] + p[1] * p[1] + p[2] * p[2]).sqrt();
        assert!(r < lidar.max_range, "return at {r} m");
        let e = (p[2] / r).asin().to_degrees();
        lo = lo.min(e);
        hi = hi.max(e);
    }
    // Range noise moves a point along its ray, so elevations stay on the table.
    assert!(hi <= top + 0.05 && hi > top - 1.0, "highest elevation {hi}");
    assert!(
        lo >= bottom - 0.05 && lo < bottom + 0.5,
        "lowest elevation {lo}"
    );
    // A KITTI scan has about 100-130 k points.
    assert!((70_000..160_000).contains(&n), "{n} points");
    // Most of the lowest beam hits the road about 1.73 / tan(24.3 deg) = 3.8 m away.
    let low: Vec<f32> = points
        .chunks_exact(4)
        .filter(|p| {
            let r = (p[0] * p[0] + p[1] * p[1] + p[2] * p[2]).sqrt();
            (p[2] / r).asin().to_degrees() < bottom + 0.1
        })
        .map(|p| p[2])
        .collect();
    let near_road = low.iter().filter(|z| (**z + 1.73).abs() < 0.3).count();
    assert!(near_road * 2 > low.len(), "{near_road} of {}", low.len());
}

#[test]
fn labels_agree_with_points_and_the_image() {
    let lidar = Lidar::hdl64e();
    let calib = standard_calib();
    let (mut near_cars, mut dense, mut labelled, mut truncated) = (0, 0, 0, 0);
    for index in 0..6 {
        let frame = make_frame(11, index, &lidar, &calib);
        assert_eq!(frame.labels, scene_labels(&frame.scene, &calib, IMAGE));
        for l in &frame.labels {
            let [x1, y1, x2, y2] = l.bbox;
            assert!(0.0 <= x1 && x1 < x2 && x2 <= IMAGE.w as f32 - 1.0, "{l:?}");
            assert!(0.0 <= y1 && y1 < y2 && y2 <= IMAGE.h as f32 - 1.0, "{l:?}");
            if l.is_dontcare() {
                continue;
            }
            labelled += 1;
            assert!((0.0..=1.0).contains(&l.truncated));
            assert!((0..=2).contains(&l.occluded));
            if l.truncated > 0.0 {
                truncated += 1;
            }
            let lb = calib.camera_box_to_lidar(&l.camera_box());
            let dist = lb[0].hypot(lb[1]);
            if l.name == "Car" && dist < 40.0 && l.occluded == 0 {
                near_cars += 1;
                if points_in_box(&frame.points, &lb, 0.1) >= 50 {
                    dense += 1;
                }
            }
        }
        // Every labelled class is one of KITTI's.
        for o in &frame.scene.objects {
            if let Some(n) = o.class.kitti_name() {
                assert!(["Car", "Van", "Truck", "Pedestrian", "Cyclist"].contains(&n));
            }
        }
    }
    assert!(labelled >= 20, "{labelled} labels in 6 frames");
    assert!(truncated >= 1, "no truncated object in 6 frames");
    assert!(near_cars >= 5, "{near_cars} visible cars within 40 m");
    assert!(
        dense * 10 >= near_cars * 9,
        "{dense} of {near_cars} unoccluded cars within 40 m have >= 50 points"
    );
}

#[test]
fn sizes_follow_kitti_statistics() {
    let mut cars = Vec::new();
    let mut peds = 0;
    for index in 0..20 {
        for o in generate_scene(3, index).objects {
            match o.class {
                Class::Car => cars.push(o.lidar_box),
                Class::Pedestrian => peds += 1,
                _ => {}
            }
        }
    }
    assert!(
        cars.len() > 100 && peds > 10,
        "{} cars, {peds} pedestrians",
        cars.len()
    );
    let mean = |k: usize| cars.iter().map(|b| b[k]).sum::<f32>() / cars.len() as f32;
    assert!((mean(3) - 3.9).abs() < 0.15, "car length {}", mean(3));
    assert!((mean(4) - 1.6).abs() < 0.05, "car width {}", mean(4));
    assert!((mean(5) - 1.56).abs() < 0.06, "car height {}", mean(5));
}
