//! From a scan file to the model's input points: read, optional camera-FOV filter, then the
//! feature columns the config's `used_feature_list` asks for.

use std::path::{Path, PathBuf};

use crate::pointcloud::{Calib, ImageSize, KittiError, Scan, ScanError, ScanFormat, kitti};

/// Camera-FOV filter settings (KITTI's `FOV_POINTS_ONLY`).
#[derive(Clone, Debug)]
pub struct FovFilter {
    pub calib: PathBuf,
    pub image: ImageSize,
}

#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error(transparent)]
    Scan(#[from] ScanError),
    #[error(transparent)]
    Kitti(#[from] KittiError),
    #[error("{path}: the scan holds no points{why}")]
    Empty { path: PathBuf, why: String },
}

/// Model-ready points and what happened on the way.
#[derive(Clone, Debug)]
pub struct PreparedScan {
    /// `N x used_features.len()`, row-major.
    pub points: Vec<f32>,
    pub num_features: usize,
    /// The scan as read (all of its columns), before the FOV filter.
    pub scan: Scan,
    /// Points removed by the FOV filter.
    pub fov_removed: usize,
}

impl PreparedScan {
    pub fn len(&self) -> usize {
        self.points.len() / self.num_features.max(1)
    }

    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }
}

/// Reads `path` (format from the name unless given), applies the FOV filter if asked and
/// lays out `used_features`. An empty result is an error naming the file.
pub fn prepare_scan(
    path: &Path,
    format: Option<ScanFormat>,
    fov: Option<&FovFilter>,
    used_features: &[String],
) -> Result<PreparedScan, InputError> {
    let scan = match format {
        Some(f) => Scan::load_as(path, f)?,
        None => Scan::load(path)?,
    };
    let mut filtered = scan.clone();
    let mut fov_removed = 0;
    if let Some(f) = fov {
        let calib = Calib::load(&f.calib)?;
        fov_removed = kitti::fov_filter(&mut filtered, &calib, f.image);
    }
    if filtered.is_empty() {
        let why = if scan.is_empty() {
            format!(" ({})", scan.report())
        } else {
            format!(" after the camera-FOV filter removed all {fov_removed}")
        };
        return Err(InputError::Empty {
            path: path.to_path_buf(),
            why,
        });
    }
    let points = filtered.to_features(used_features)?;
    Ok(PreparedScan {
        points,
        num_features: used_features.len(),
        scan,
        fov_removed,
    })
}
