//! The scan pipeline against OpenPCDet on real data: KITTI 000008 (FOV filter, range mask,
//! spconv voxelizer) and the nuScenes key frame, compared with `../shared/reference`.

use std::path::Path;

use super::util::shared;

use pruneview::boxes::CameraBox;
use pruneview::pointcloud::kitti::{fov_filter, load_labels};
use pruneview::pointcloud::{
    Calib, ImageSize, Scan, ScanFormat, VoxelConfig, filter_by_range, mask_points_by_range,
    voxelize,
};

fn read_f32(path: &Path) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap();
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// A float32 tensor from a safetensors file: (shape, values).
fn golden_f32(st: &safetensors::SafeTensors, name: &str) -> (Vec<usize>, Vec<f32>) {
    let t = st.tensor(name).unwrap();
    assert_eq!(t.dtype(), safetensors::Dtype::F32, "{name}");
    let values = t
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    (t.shape().to_vec(), values)
}

const KITTI_RANGE: [f32; 6] = [0.0, -39.68, -3.0, 69.12, 39.68, 1.0];

fn kitti_pillars(max_points: usize, max_voxels: usize) -> VoxelConfig {
    VoxelConfig {
        point_cloud_range: KITTI_RANGE,
        voxel_size: [0.16, 0.16, 4.0],
        max_points_per_voxel: max_points,
        max_voxels,
    }
}

/// KITTI 000008 after the FOV filter and the range mask, x y z intensity.
fn kitti_000008_points() -> Vec<f32> {
    let mut scan = Scan::load(shared().join("data/kitti/training/velodyne/000008.bin")).unwrap();
    let calib = Calib::load(shared().join("data/kitti/training/calib/000008.txt")).unwrap();
    fov_filter(&mut scan, &calib, "375x1242".parse().unwrap());
    let feats = scan.to_features(&["x", "y", "z", "intensity"]).unwrap();
    filter_by_range(&feats, 4, &KITTI_RANGE)
}

#[test]
fn kitti_000008_fov_filter_matches_openpcdet_points_bit_for_bit() {
    let path = shared().join("data/kitti/training/velodyne/000008.bin");
    let mut scan = Scan::load(&path).unwrap();
    assert_eq!(scan.report().format, Some(ScanFormat::Kitti));
    assert_eq!(scan.len(), 17_238);
    assert_eq!(scan.report().points_read, 17_238);
    assert_eq!(scan.report().non_finite_dropped, 0);
    assert_eq!(scan.report().bytes, 275_808);
    assert_eq!(scan.columns(), ["x", "y", "z", "intensity"]);
    assert_eq!(scan.source(), path.as_path());

    let calib = Calib::load(shared().join("data/kitti/training/calib/000008.txt")).unwrap();
    let image: ImageSize = "375x1242".parse().unwrap();
    assert_eq!(image, ImageSize { h: 375, w: 1242 });

    let flags = calib.fov_flags(scan.points(), 4, image);
    assert_eq!(flags.iter().filter(|&&f| f).count(), 17_221);
    let removed = fov_filter(&mut scan, &calib, image);
    assert_eq!(removed, 17);
    assert_eq!(scan.len(), 17_221);

    let reference = read_f32(&shared().join("reference/pointpillar_kitti_000008/points_in.bin"));
    assert_eq!(reference.len(), 17_221 * 4);
    let ours = scan.to_features(&["x", "y", "z", "intensity"]).unwrap();
    assert!(
        bits(&ours) == bits(&reference),
        "FOV points differ from OpenPCDet's"
    );
}

#[test]
fn kitti_000008_range_mask_keeps_17089() {
    let reference = read_f32(&shared().join("reference/pointpillar_kitti_000008/points_in.bin"));
    let mask = mask_points_by_range(&reference, 4, &KITTI_RANGE);
    assert_eq!(mask.len(), 17_221);
    assert_eq!(mask.iter().filter(|&&m| m).count(), 17_089);
    assert_eq!(kitti_000008_points().len(), 17_089 * 4);
}

#[test]
fn kitti_000008_voxels_match_spconv_exactly() {
    let points = kitti_000008_points();
    let cfg = kitti_pillars(32, 40_000);
    assert_eq!(cfg.grid_size().unwrap(), [432, 496, 1]);
    let v = voxelize(&points, 4, &cfg).unwrap();

    let bytes =
        std::fs::read(shared().join("reference/pointpillar_kitti_000008/golden.safetensors"))
            .unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let (vshape, gvox) = golden_f32(&st, "voxels");
    let (_, gnum) = golden_f32(&st, "voxel_num_points");
    let (cshape, gcoords) = golden_f32(&st, "voxel_coords");
    assert_eq!(vshape, [3941, 32, 4]);
    assert_eq!(cshape, [3941, 4]);

    assert_eq!(v.len(), 3941);
    assert_eq!(
        (v.max_points, v.num_features, v.grid_size),
        (32, 4, [432, 496, 1])
    );
    let num: Vec<f32> = v.num_points.iter().map(|&n| n as f32).collect();
    assert_eq!(num, gnum, "voxel_num_points");
    let coords: Vec<f32> = v
        .coords
        .chunks_exact(3)
        .flat_map(|c| [0.0, c[0] as f32, c[1] as f32, c[2] as f32])
        .collect();
    assert_eq!(coords, gcoords, "voxel_coords");
    assert!(
        bits(&v.voxels) == bits(&gvox),
        "voxels differ from spconv's"
    );

    // The notes' numbers, and the accounting adds up.
    assert_eq!(v.num_points.iter().copied().max(), Some(32));
    assert_eq!(v.num_points.iter().filter(|&&n| n < 32).count(), 3885);
    let s = v.stats;
    assert_eq!(s.points_in, 17_089);
    assert_eq!(
        s.points_kept + s.out_of_grid + s.voxel_full + s.over_max_voxels,
        s.points_in
    );
    assert_eq!(s.points_kept as i32, v.num_points.iter().sum::<i32>());
    assert_eq!(s.over_max_voxels, 0);
}

#[test]
fn voxel_caps_keep_first_appearance_order() {
    let points = kitti_000008_points();
    let full = voxelize(&points, 4, &kitti_pillars(32, 40_000)).unwrap();

    // max_voxels: the first 100 voxels are the same, later ones never open.
    let capped = voxelize(&points, 4, &kitti_pillars(32, 100)).unwrap();
    assert_eq!(capped.len(), 100);
    assert_eq!(capped.coords, full.coords[..300]);
    assert_eq!(capped.num_points, full.num_points[..100]);
    assert_eq!(capped.voxels, full.voxels[..100 * 32 * 4]);
    assert!(capped.stats.over_max_voxels > 0);

    // max points per voxel: each voxel keeps its first 4 points.
    let four = voxelize(&points, 4, &kitti_pillars(4, 40_000)).unwrap();
    assert_eq!(four.coords, full.coords);
    for p in 0..full.len() {
        assert_eq!(four.num_points[p], full.num_points[p].min(4));
        assert_eq!(four.voxel(p), &full.voxel(p)[..16]);
    }
    let dropped: i32 = full.num_points.iter().map(|&n| (n - 4).max(0)).sum();
    assert_eq!(
        four.stats.voxel_full as i32,
        dropped + full.stats.voxel_full as i32
    );
}

#[test]
fn hash_table_path_gives_the_same_voxels_as_the_dense_table() {
    // A fine grid (0.02 m x 0.02 m x 0.05 m) has 3456 x 3968 x 80 cells: too many for the
    // dense table, so the hash map path runs. Compare it with a brute-force reference.
    let points = kitti_000008_points();
    let cfg = VoxelConfig {
        point_cloud_range: KITTI_RANGE,
        voxel_size: [0.02, 0.02, 0.05],
        max_points_per_voxel: 2,
        max_voxels: 5000,
    };
    let [nx, ny, nz] = cfg.grid_size().unwrap();
    assert!(nx * ny * nz > pruneview::pointcloud::voxelize::DENSE_TABLE_MAX_CELLS);
    let v = voxelize(&points, 4, &cfg).unwrap();

    let mut coords: Vec<[i32; 3]> = Vec::new();
    let mut counts: Vec<i32> = Vec::new();
    for p in points.chunks_exact(4) {
        let c = |a: usize, n: usize| {
            let f = ((p[a] - cfg.point_cloud_range[a]) / cfg.voxel_size[a]).floor();
            (f >= 0.0 && (f as usize) < n).then_some(f as i32)
        };
        let (Some(z), Some(y), Some(x)) = (c(2, nz), c(1, ny), c(0, nx)) else {
            continue;
        };
        match coords.iter().position(|&k| k == [z, y, x]) {
            Some(i) => counts[i] = (counts[i] + 1).min(2),
            None if coords.len() < 5000 => {
                coords.push([z, y, x]);
                counts.push(1);
            }
            None => {}
        }
    }
    assert_eq!(v.len(), 5000);
    assert_eq!(v.coords, coords.concat());
    assert_eq!(v.num_points, counts);
}

#[test]
fn voxelizer_boundaries_follow_spconv() {
    let cfg = kitti_pillars(32, 40_000);
    let pts = [
        0.0,
        -39.68,
        -3.0,
        0.1, // lowest corner: voxel (0, 0, 0)
        69.12,
        0.0,
        0.0,
        0.2, // x == x_max: floor gives 432, out of grid
        10.0,
        0.0,
        1.0,
        0.3, // z == z_max: out of grid
        10.0,
        0.0,
        -3.5,
        0.4, // z below range: out of grid (the range mask keeps it)
        f32::NAN,
        0.0,
        0.0,
        0.5, // NaN: out of grid
    ];
    let mask = mask_points_by_range(&pts, 4, &KITTI_RANGE);
    assert_eq!(mask, [true, true, true, true, false]);
    let v = voxelize(&pts, 4, &cfg).unwrap();
    assert_eq!(v.len(), 1);
    assert_eq!(v.coord(0), [0, 0, 0]);
    assert_eq!(v.stats.out_of_grid, 4);
    assert_eq!(
        &v.voxel(0)[..8],
        &[0.0, -39.68, -3.0, 0.1, 0.0, 0.0, 0.0, 0.0]
    );

    assert!(voxelize(&pts[..7], 4, &cfg).is_err());
    let bad = VoxelConfig {
        voxel_size: [0.0, 0.16, 4.0],
        ..cfg.clone()
    };
    let err = voxelize(&pts, 4, &bad).unwrap_err().to_string();
    assert!(err.contains("voxel size"), "{err}");
}

#[test]
fn nuscenes_key_frame_matches_openpcdet_points() {
    let path = shared().join(
        "data/nuscenes/samples/LIDAR_TOP/\
         n015-2018-07-24-11-22-45+0800__LIDAR_TOP__1532402927647951.pcd.bin",
    );
    let scan = Scan::load(&path).unwrap();
    assert_eq!(scan.report().format, Some(ScanFormat::Nuscenes));
    assert_eq!(scan.len(), 34_688);
    assert_eq!(scan.columns(), ["x", "y", "z", "intensity", "ring"]);
    let used: Vec<String> = ["x", "y", "z", "intensity", "timestamp"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let feats = scan.to_features(&used).unwrap();
    let reference = read_f32(&shared().join("reference/centerpoint_pp_nuscenes/points_in.bin"));
    assert_eq!(reference.len(), 34_688 * 5);
    assert!(
        bits(&feats) == bits(&reference),
        "nuScenes features differ from OpenPCDet's"
    );

    let err = scan
        .to_features(&["x", "y", "z", "elongation"])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("'elongation'") && err.contains("ring"),
        "{err}"
    );

    // OpenPCDet's layout: x, y, z first whatever the list order; the rest in list order.
    let reordered = scan
        .to_features(&["timestamp", "z", "ring", "x", "y"])
        .unwrap();
    assert_eq!(
        &reordered[..5],
        &[feats[0], feats[1], feats[2], 0.0, scan.point(0)[4]]
    );
    let err = scan
        .to_features(&["x", "y", "intensity"])
        .unwrap_err()
        .to_string();
    assert!(err.contains("'z' is missing"), "{err}");
    let err = scan
        .to_features(&["x", "y", "z", "x"])
        .unwrap_err()
        .to_string();
    assert!(err.contains("'x' appears twice"), "{err}");
}

#[test]
fn kitti_000008_labels_convert_to_lidar_boxes() {
    let labels = load_labels(shared().join("data/kitti/training/label_2/000008.txt")).unwrap();
    assert_eq!(labels.len(), 10);
    let cars: Vec<_> = labels.iter().filter(|o| o.name == "Car").collect();
    assert_eq!(cars.len(), 6);
    assert_eq!(labels.iter().filter(|o| o.is_dontcare()).count(), 4);
    let first = cars[0];
    assert_eq!(
        (first.truncated, first.occluded, first.alpha),
        (0.88, 3, -0.69)
    );
    assert_eq!(first.bbox, [0.0, 192.37, 402.31, 374.0]);
    assert_eq!((first.h, first.w, first.l), (1.6, 1.57, 3.23));
    assert_eq!(first.location, [-2.7, 1.74, 3.68]);
    assert_eq!((first.rotation_y, first.score), (-1.29, None));

    let calib = Calib::load(shared().join("data/kitti/training/calib/000008.txt")).unwrap();
    let image = ImageSize { h: 375, w: 1242 };
    let scan = Scan::load(shared().join("data/kitti/training/velodyne/000008.bin")).unwrap();
    for car in &cars {
        let cam = car.camera_box();
        let lidar = calib.camera_box_to_lidar(&cam);
        let [x, y, z, dx, dy, dz, heading] = lidar;
        // In front of the car, at the camera's distance, centre ~0.8 m below the sensor.
        assert!(x > 0.0 && x < 40.0, "{lidar:?}");
        assert!(
            (x - (car.location[2] + 0.27)).abs() < 0.1,
            "{lidar:?} vs {car:?}"
        );
        assert!((y + car.location[0]).abs() < 0.1, "{lidar:?} vs {car:?}");
        // Centre about 0.9 m below the sensor (1.73 m up; car half-height ~0.8 m).
        assert!((-1.1..=-0.4).contains(&z), "{lidar:?}");
        // The LiDAR hits the car: points inside the box, none in the same box 2 m higher.
        let inside = |lift: f32| {
            let (s, c) = heading.sin_cos();
            (0..scan.len())
                .filter(|&i| {
                    let p = scan.point(i);
                    let (px, py, pz) = (p[0] - x, p[1] - y, p[2] - z - lift);
                    let (u, v) = (px * c + py * s, -px * s + py * c);
                    u.abs() <= dx / 2.0 && v.abs() <= dy / 2.0 && pz.abs() <= dz / 2.0
                })
                .count()
        };
        assert!(
            inside(0.0) >= 50,
            "{lidar:?}: {} points inside",
            inside(0.0)
        );
        assert_eq!(inside(2.0), 0, "{lidar:?}");
        assert_eq!((dx, dy, dz), (car.l, car.w, car.h));
        assert!((heading + car.rotation_y + std::f32::consts::FRAC_PI_2).abs() < 1e-6);

        // And back: the camera box is recovered.
        let back = calib.lidar_box_to_camera(&lidar);
        let values = |c: &CameraBox| [c.x, c.y, c.z, c.l, c.h, c.w, c.ry];
        for (x, y) in values(&back).into_iter().zip(values(&cam)) {
            assert!((x - y).abs() < 1e-4, "{back:?} vs {cam:?}");
        }
        // The prediction form reproduces the label's alpha and (for cars fully in the image)
        // its 2-D box to within the labels' rounding and annotation slack.
        let pred = calib.lidar_box_to_prediction(&lidar, "Car", 0.9, image);
        assert!((pred.alpha - car.alpha).abs() < 0.03, "{pred:?} vs {car:?}");
        assert_eq!(pred.score, Some(0.9));
        if car.truncated == 0.0 {
            for k in 0..4 {
                assert!(
                    (pred.bbox[k] - car.bbox[k]).abs() < 12.0,
                    "{pred:?} vs {car:?}"
                );
            }
        }
        for b in pred.bbox {
            assert!((0.0..=1241.0).contains(&b));
        }
    }
}
