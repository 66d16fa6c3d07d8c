//! Synthetic KITTI-like LiDAR data: street scenes scanned by a simulated Velodyne HDL-64E,
//! written in KITTI's layout (`velodyne/`, `label_2/`, `calib/`), so the whole pipeline can be
//! exercised and benchmarked without the real dataset, at any size, reproducibly.
//!
//! - [`generate_scene`]`(seed, index)` builds a street (see [`scene`]) deterministically.
//! - [`render`]`(&scene, &lidar)` ray-casts one revolution: KITTI `.bin` layout points.
//! - [`scene_labels`] gives the camera-frame `label_2` objects, using the crate's own KITTI
//!   box conversions ([`Calib::lidar_box_to_camera`], [`Calib::camera_box_to_image_box`]).
//! - [`write_kitti`] / [`synth_to_dir`] write frames; same seed, byte-identical files.
//!
//! Realism, and its limits: the beam table, azimuth step, 2 cm range noise, dropout (base,
//! per material, weak and grazing returns) and reflectance from material, incidence and a
//! per-laser gain follow the HDL-64E; the scan is instantaneous (no ego-motion skew, no
//! per-laser azimuth offsets), surfaces are unions of boxes, cylinders and ellipsoids (no
//! sloped windscreens), streets are straight (no junctions), and only Car, Van, Truck,
//! Pedestrian and Cyclist (plus DontCare) are labelled.

pub mod geom;
pub mod labels;
pub mod lidar;
pub mod scene;

use std::ops::Range;
use std::path::{Path, PathBuf};

use thiserror::Error;

pub use labels::scene_labels;
pub use lidar::{Lidar, render};
pub use scene::{Class, Scene, SceneObject, generate_scene};

use crate::pointcloud::kitti::write_labels;
use crate::pointcloud::scan::KITTI_COLUMNS;
use crate::pointcloud::{Calib, ImageSize, KittiError, KittiObject, Scan, ScanError};
use crate::progress::Control;

/// The calibration written for every frame: KITTI training frame 000008's.
pub const KITTI_CALIB: &str = "\
P0: 7.215377000000e+02 0.000000000000e+00 6.095593000000e+02 0.000000000000e+00 0.000000000000e+00 7.215377000000e+02 1.728540000000e+02 0.000000000000e+00 0.000000000000e+00 0.000000000000e+00 1.000000000000e+00 0.000000000000e+00
P1: 7.215377000000e+02 0.000000000000e+00 6.095593000000e+02 -3.875744000000e+02 0.000000000000e+00 7.215377000000e+02 1.728540000000e+02 0.000000000000e+00 0.000000000000e+00 0.000000000000e+00 1.000000000000e+00 0.000000000000e+00
P2: 7.215377000000e+02 0.000000000000e+00 6.095593000000e+02 4.485728000000e+01 0.000000000000e+00 7.215377000000e+02 1.728540000000e+02 2.163791000000e-01 0.000000000000e+00 0.000000000000e+00 1.000000000000e+00 2.745884000000e-03
P3: 7.215377000000e+02 0.000000000000e+00 6.095593000000e+02 -3.395242000000e+02 0.000000000000e+00 7.215377000000e+02 1.728540000000e+02 2.199936000000e+00 0.000000000000e+00 0.000000000000e+00 1.000000000000e+00 2.729905000000e-03
R0_rect: 9.999239000000e-01 9.837760000000e-03 -7.445048000000e-03 -9.869795000000e-03 9.999421000000e-01 -4.278459000000e-03 7.402527000000e-03 4.351614000000e-03 9.999631000000e-01
Tr_velo_to_cam: 7.533745000000e-03 -9.999714000000e-01 -6.166020000000e-04 -4.069766000000e-03 1.480249000000e-02 7.280733000000e-04 -9.998902000000e-01 -7.631618000000e-02 9.998621000000e-01 7.523790000000e-03 1.480755000000e-02 -2.717806000000e-01
Tr_imu_to_velo: 9.999976000000e-01 7.553071000000e-04 -2.035826000000e-03 -8.086759000000e-01 -7.854027000000e-04 9.998898000000e-01 -1.482298000000e-02 3.195559000000e-01 2.024406000000e-03 1.482454000000e-02 9.998881000000e-01 -7.997231000000e-01
";

/// KITTI's image_2 size.
pub const IMAGE: ImageSize = ImageSize { h: 375, w: 1242 };

/// The standard calibration ([`KITTI_CALIB`]), parsed.
pub fn standard_calib() -> Calib {
    Calib::parse(KITTI_CALIB, "<synth calib>").unwrap_or_else(|e| unreachable!("{e}"))
}

/// What can go wrong writing synthetic frames.
#[derive(Debug, Error)]
pub enum SynthError {
    #[error("cannot create directory {}: {source}", path.display())]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{}: already holds a dataset ({files} files in velodyne/, label_2/ and calib/); choose an empty folder or pass --overwrite",
        path.display()
    )]
    Exists { path: PathBuf, files: usize },
    #[error(transparent)]
    Scan(#[from] ScanError),
    #[error(transparent)]
    Kitti(#[from] KittiError),
}

/// One rendered frame.
#[derive(Clone, Debug)]
pub struct Frame {
    pub scene: Scene,
    /// x, y, z, reflectance per point.
    pub points: Vec<f32>,
    pub labels: Vec<KittiObject>,
}

/// Generates, scans and labels frame `index` of the sequence `seed`.
pub fn make_frame(seed: u64, index: u64, lidar: &Lidar, calib: &Calib) -> Frame {
    let scene = generate_scene(seed, index);
    let points = render(&scene, lidar);
    let labels = scene_labels(&scene, calib, IMAGE);
    Frame {
        scene,
        points,
        labels,
    }
}

fn create_dir(path: &Path) -> Result<(), SynthError> {
    std::fs::create_dir_all(path).map_err(|source| SynthError::CreateDir {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes one frame as `velodyne/NNNNNN.bin`, `label_2/NNNNNN.txt`, `calib/NNNNNN.txt`
/// under `dir` (the directories must exist).
pub fn write_frame(dir: &Path, index: u64, frame: &Frame, calib: &Calib) -> Result<(), SynthError> {
    let name = format!("{index:06}");
    let bin = dir.join("velodyne").join(format!("{name}.bin"));
    let scan = Scan::from_points(frame.points.clone(), &KITTI_COLUMNS, &bin)?;
    scan.write_bin(&bin)?;
    write_labels(
        dir.join("label_2").join(format!("{name}.txt")),
        &frame.labels,
    )?;
    calib.write(dir.join("calib").join(format!("{name}.txt")))?;
    Ok(())
}

/// Writes frames `range` of the sequence `seed` under `dir` with the default HDL-64E.
pub fn write_kitti(dir: impl AsRef<Path>, range: Range<u64>, seed: u64) -> Result<(), SynthError> {
    synth_frames(
        dir.as_ref(),
        range,
        seed,
        &Lidar::hdl64e(),
        &Control::quiet(),
    )
    .map(|_| ())
}

/// For the CLI (`pruneview synth --out DIR --count N --seed S`): writes frames 0..count.
/// Progress counts frames; a cancelled run stops after the current frame. Returns the number of frames written.
/// Refuses a folder that already holds a dataset (files in `velodyne/`, `label_2/` or
/// `calib/`) unless `overwrite`, so that labelled data is never replaced by accident.
pub fn synth_to_dir(
    out: &Path,
    count: usize,
    seed: u64,
    overwrite: bool,
    ctl: &Control,
) -> Result<usize, SynthError> {
    if !overwrite {
        let files: usize = ["velodyne", "label_2", "calib"]
            .iter()
            .filter_map(|sub| std::fs::read_dir(out.join(sub)).ok())
            .map(|d| d.count())
            .sum();
        if files > 0 {
            return Err(SynthError::Exists {
                path: out.to_path_buf(),
                files,
            });
        }
    }
    synth_frames(out, 0..count as u64, seed, &Lidar::hdl64e(), ctl)
}

/// Writes frames `range` with a given sensor; see [`synth_to_dir`].
pub fn synth_frames(
    dir: &Path,
    range: Range<u64>,
    seed: u64,
    lidar: &Lidar,
    ctl: &Control,
) -> Result<usize, SynthError> {
    for sub in ["velodyne", "label_2", "calib"] {
        create_dir(&dir.join(sub))?;
    }
    let calib = standard_calib();
    let total = range.end.saturating_sub(range.start) as usize;
    let mut done = 0;
    for index in range {
        if ctl.is_cancelled() {
            break;
        }
        let frame = make_frame(seed, index, lidar, &calib);
        write_frame(dir, index, &frame, &calib)?;
        done += 1;
        ctl.step(done, total, "writing");
    }
    Ok(done)
}
