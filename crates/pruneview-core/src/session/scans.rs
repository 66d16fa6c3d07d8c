//! Finding scans and reading them the way the model sees them: folders expanded (a KITTI
//! root's `velodyne/`), the camera-FOV filter applied where the config asks for it (from an
//! explicit calib, or from the KITTI layout the scan sits in), labels read when there are.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::detect::input::{FovFilter, PreparedScan, prepare_scan};
use crate::detect::{Detection, Detector};
use crate::pointcloud::kitti::{self, Calib, ImageSize};
use crate::pointcloud::scan::{ScanFormat, list_scans};
use crate::progress::Control;
use crate::prune::probe::CalibScan;

use super::{Result, fail};

/// KITTI's usual image_2 size, for the camera-FOV filter of scans in KITTI layout.
pub const KITTI_IMAGE: ImageSize = ImageSize { h: 375, w: 1242 };

/// Expands folders (every .bin / .pcd inside, sorted; a KITTI root's `velodyne/`) into files.
pub fn expand_scan_paths(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            let velodyne = p.join("velodyne");
            let dir = if velodyne.is_dir() { &velodyne } else { p };
            files.extend(list_scans(dir).map_err(fail)?);
        } else {
            files.push(p.clone());
        }
    }
    Ok(files)
}

/// `root/velodyne/ID.bin` with `root/calib/ID.txt`: (root, id).
pub fn kitti_layout(path: &Path) -> Option<(PathBuf, String)> {
    let dir = path.parent()?;
    if dir.file_name()? != "velodyne" {
        return None;
    }
    let root = dir.parent()?.to_path_buf();
    let id = path.file_stem()?.to_string_lossy().into_owned();
    root.join(format!("calib/{id}.txt"))
        .is_file()
        .then_some((root, id))
}

/// How to read scans: the format (by extension when `None`) and an explicit camera-FOV
/// calibration (a file, or a folder holding `<scan stem>.txt`).
#[derive(Clone, Debug, Default)]
pub struct ScanReading {
    pub format: Option<ScanFormat>,
    pub fov_calib: Option<PathBuf>,
    /// Image size of the FOV filter (KITTI's by default).
    pub image: Option<ImageSize>,
}

impl ScanReading {
    /// The FOV filter for `scan`: the explicit calibration when given, else the KITTI layout's
    /// when the model was trained on FOV points only (as OpenPCDet's KITTI dataset does).
    pub fn fov(&self, det: &Detector, scan: &Path) -> Option<FovFilter> {
        let image = self.image.unwrap_or(KITTI_IMAGE);
        let calib = match &self.fov_calib {
            Some(c) if c.is_dir() => {
                let stem = scan.file_stem().unwrap_or_default().to_string_lossy();
                c.join(format!("{}.txt", stem.trim_end_matches(".pcd")))
            }
            Some(c) => c.clone(),
            None if det.config.data.fov_points_only => {
                let (root, id) = kitti_layout(scan)?;
                root.join(format!("calib/{id}.txt"))
            }
            None => return None,
        };
        Some(FovFilter { calib, image })
    }

    pub fn prepare(&self, det: &Detector, scan: &Path) -> Result<PreparedScan> {
        self.prepare_with(det, scan, self.fov(det, scan).as_ref())
    }

    fn prepare_with(
        &self,
        det: &Detector,
        scan: &Path,
        fov: Option<&FovFilter>,
    ) -> Result<PreparedScan> {
        prepare_scan(scan, self.format, fov, &det.config.data.used_features).map_err(fail)
    }
}

/// A scan's identity in files and probe seeds: its file name.
pub fn scan_id(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Calibration scans and what the user should know about how they were read.
pub struct CalibrationScans {
    pub scans: Vec<CalibScan>,
    /// Points dropped as non-finite; a FOV_POINTS_ONLY model given scans with no camera
    /// calibration to filter them.
    pub warnings: Vec<String>,
}

/// Reads calibration scans (a scan with no points left is refused: it says nothing).
pub fn calibration_scans(
    det: &Detector,
    files: &[PathBuf],
    reading: &ScanReading,
    ctl: &Control,
) -> Result<CalibrationScans> {
    if files.is_empty() {
        return Err("no calibration scans".into());
    }
    let mut scans = Vec::with_capacity(files.len());
    let mut warnings = Vec::new();
    let mut unfiltered = 0;
    let mut counts = Vec::with_capacity(files.len());
    for (i, f) in files.iter().enumerate() {
        ctl.check()?;
        let fov = reading.fov(det, f);
        if det.config.data.fov_points_only && fov.is_none() {
            unfiltered += 1;
        }
        let prepared = reading.prepare_with(det, f, fov.as_ref())?;
        if prepared.is_empty() {
            return Err(format!("{}: no points left to run on", f.display()).into());
        }
        let dropped = prepared.scan.report().non_finite_dropped;
        if dropped > 0 {
            warnings.push(non_finite_warning(f, dropped));
        }
        counts.push((
            scan_id(f),
            prepared.points.len() / prepared.num_features.max(1),
        ));
        scans.push(CalibScan {
            id: scan_id(f),
            points: prepared.points,
        });
        ctl.step(i + 1, files.len(), "reading scans");
    }
    if unfiltered > 0 {
        warnings.push(format!(
            "the config sets FOV_POINTS_ONLY, but {unfiltered} of {} scans sit in no KITTI layout \
             and no --fov-calib was given: their points outside the camera's view are kept",
            files.len()
        ));
    }
    warnings.extend(thin_calibration(&counts));
    Ok(CalibrationScans { scans, warnings })
}

/// What the CLI and the app say of a scan whose non-finite points were dropped.
pub fn non_finite_warning(path: &Path, dropped: usize) -> String {
    format!(
        "{}: dropped {dropped} points with NaN or infinite values",
        path.display()
    )
}

/// A scan with fewer points than this is near-empty: a LiDAR sweep has tens of thousands,
/// and a handful of pillars say little about how pruning moves detections.
pub const FEW_POINTS: usize = 1000;

/// The warning for calibration scans that are all near-empty ([`FEW_POINTS`]; `counts` are
/// (scan, points) as the model sees them): curves from them give an allocation close to
/// arbitrary, which nothing else would flag.
pub fn thin_calibration(counts: &[(String, usize)]) -> Option<String> {
    let most = counts.iter().map(|c| c.1).max()?;
    (most < FEW_POINTS).then(|| {
        let names: Vec<&str> = counts.iter().take(4).map(|c| c.0.as_str()).collect();
        let more = if counts.len() > names.len() {
            ", ..."
        } else {
            ""
        };
        format!(
            "the curves come from {} near-empty scan(s) ({}{more}; at most {most} points, a \
             LiDAR sweep has tens of thousands): they say little about how pruning moves \
             detections, so the allocation from them is close to arbitrary; calibrate on \
             typical scans",
            counts.len(),
            names.join(", ")
        )
    })
}

/// A labelled ground-truth box in the LiDAR frame.
#[derive(Clone, Debug, PartialEq)]
pub struct GtBox {
    pub class: String,
    pub bbox: crate::boxes::LidarBox,
}

/// A scan shown in the app: the model's input, its size, the ground truth when a KITTI label
/// exists, and the dense model's detections (computed once, when the scan is added).
#[derive(Clone, Debug)]
pub struct ScanEntry {
    pub path: PathBuf,
    pub id: String,
    /// Model input, `num_features` floats per point (`used_feature_list` order).
    pub points: Arc<Vec<f32>>,
    pub num_features: usize,
    /// Points the camera-FOV filter removed (KITTI layout and `FOV_POINTS_ONLY`).
    pub fov_removed: usize,
    /// Points dropped for NaN or infinite values (see [`non_finite_warning`]).
    pub non_finite_dropped: usize,
    /// Pillars (voxels for voxel models) the BEV map was built from.
    pub pillars: usize,
    /// What the units' FLOPs on this scan depend on.
    pub cost: crate::detect::ScanCost,
    /// `None` without a label file.
    pub gt: Option<Vec<GtBox>>,
    /// `(dataset root, frame id)` when the scan sits in a KITTI layout with calib and labels
    /// (it can then be evaluated).
    pub kitti: Option<(PathBuf, String)>,
    pub dense: Vec<Detection>,
    pub dense_ms: f64,
}

impl ScanEntry {
    pub fn calibration(&self) -> CalibScan {
        CalibScan {
            id: self.id.clone(),
            points: self.points.to_vec(),
        }
    }
}

/// The labels of a scan in KITTI layout, in the LiDAR frame (`None` without a label file).
fn ground_truth(root: &Path, id: &str) -> Result<Option<Vec<GtBox>>> {
    let label = root.join(format!("label_2/{id}.txt"));
    if !label.is_file() {
        return Ok(None);
    }
    let calib = Calib::load(root.join(format!("calib/{id}.txt"))).map_err(fail)?;
    let objects = kitti::load_labels(&label).map_err(fail)?;
    Ok(Some(
        objects
            .iter()
            .filter(|o| !o.is_dontcare())
            .map(|o| GtBox {
                class: o.name.clone(),
                bbox: calib.camera_box_to_lidar(&o.camera_box()),
            })
            .collect(),
    ))
}

/// Reads one scan the way the model sees it and runs the dense model on it.
pub fn load_scan(det: &Detector, path: &Path) -> Result<ScanEntry> {
    let prepared = ScanReading::default().prepare(det, path)?;
    let layout = kitti_layout(path);
    let gt = match &layout {
        Some((root, id)) => ground_truth(root, id)?,
        None => None,
    };
    let t = std::time::Instant::now();
    let out = det
        .forward(&prepared.points)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let dense = det.decode(&out.raw);
    Ok(ScanEntry {
        path: path.to_path_buf(),
        id: scan_id(path),
        num_features: prepared.num_features,
        points: Arc::new(prepared.points),
        fov_removed: prepared.fov_removed,
        non_finite_dropped: prepared.scan.report().non_finite_dropped,
        pillars: out.bev_sources().0,
        cost: crate::detect::ScanCost::of(&out),
        kitti: layout.filter(|_| gt.is_some()),
        gt,
        dense,
        dense_ms: t.elapsed().as_secs_f64() * 1e3,
    })
}

/// Loads scans in order; a file that fails is reported by name and skipped, so one bad scan
/// does not lose the others. Returns the scans and the errors.
pub fn load_scans(
    det: &Detector,
    paths: &[PathBuf],
    ctl: &Control,
) -> Result<(Vec<ScanEntry>, Vec<String>)> {
    let files = expand_scan_paths(paths)?;
    let mut scans = Vec::with_capacity(files.len());
    let mut errors = Vec::new();
    for (i, f) in files.iter().enumerate() {
        ctl.check()?;
        ctl.step(i, files.len(), &scan_id(f));
        match load_scan(det, f) {
            Ok(s) => scans.push(s),
            Err(e) => errors.push(e.to_string()),
        }
    }
    ctl.step(files.len(), files.len(), "done");
    Ok((scans, errors))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn near_empty_calibration_is_named() {
        let c = |n: &str, p: usize| (n.to_string(), p);
        let w = thin_calibration(&[c("000000.bin", 37)]).unwrap();
        assert!(
            w.contains("1 near-empty scan(s) (000000.bin; at most 37 points"),
            "{w}"
        );
        assert!(thin_calibration(&[c("a.bin", 37), c("b.bin", FEW_POINTS)]).is_none());
        assert!(thin_calibration(&[]).is_none());
    }
}
