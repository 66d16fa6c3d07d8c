//! A KITTI-layout evaluation set read once (model-ready points, calibration, labels), and a
//! detector run over it. `pruneview eval` runs one model; `pruneview report` runs dozens of
//! pruned copies over the same frames, so the files are read and FOV-filtered only once.

use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::detect::input::InputError;
use crate::detect::{Detector, DetectorError, FovFilter, prepare_scan};
use crate::pointcloud::kitti::{KittiError, load_labels};
use crate::pointcloud::{Calib, ImageSize, KittiObject};
use crate::progress::{Cancelled, Control};

use super::{EvalError, EvalReport, Frames, KittiClass, evaluate};

#[derive(Debug, Error)]
pub enum DatasetError {
    #[error(transparent)]
    Input(#[from] InputError),
    #[error(transparent)]
    Kitti(#[from] KittiError),
    #[error(transparent)]
    Eval(#[from] EvalError),
    #[error("frame {frame}: {source}")]
    Model {
        frame: String,
        #[source]
        source: DetectorError,
    },
    #[error("none of the model's classes ({0}) is a KITTI class")]
    NoKittiClass(String),
    #[error("{}: no frames to evaluate", .0.display())]
    Empty(PathBuf),
    #[error("cancelled")]
    Cancelled,
}

impl From<Cancelled> for DatasetError {
    fn from(_: Cancelled) -> Self {
        DatasetError::Cancelled
    }
}

/// One frame: the points the model sees (camera-FOV filtered, as OpenPCDet evaluates), the
/// calibration that projects its boxes into the image, and the ground truth.
pub struct EvalFrame {
    pub id: String,
    pub points: Vec<f32>,
    pub calib: Calib,
    pub labels: Vec<KittiObject>,
}

pub struct EvalSet {
    pub dir: PathBuf,
    pub image: ImageSize,
    pub frames: Vec<EvalFrame>,
}

impl EvalSet {
    /// Reads `velodyne/{id}.bin`, `calib/{id}.txt` and `label_2/{id}.txt` of every id, laying
    /// out the points as `used_features` asks; progress counts frames.
    pub fn load(
        dir: &Path,
        ids: &[String],
        image: ImageSize,
        used_features: &[String],
        ctl: &Control,
    ) -> Result<EvalSet, DatasetError> {
        if ids.is_empty() {
            return Err(DatasetError::Empty(dir.to_path_buf()));
        }
        let mut frames = Vec::with_capacity(ids.len());
        for (i, id) in ids.iter().enumerate() {
            ctl.check()?;
            let calib_path = dir.join(format!("calib/{id}.txt"));
            let fov = FovFilter {
                calib: calib_path.clone(),
                image,
            };
            let scan = prepare_scan(
                &dir.join(format!("velodyne/{id}.bin")),
                None,
                Some(&fov),
                used_features,
            )?;
            frames.push(EvalFrame {
                id: id.clone(),
                points: scan.points,
                calib: Calib::load(&calib_path)?,
                labels: load_labels(dir.join(format!("label_2/{id}.txt")))?,
            });
            ctl.step(i + 1, ids.len(), "reading");
        }
        Ok(EvalSet {
            dir: dir.to_path_buf(),
            image,
            frames,
        })
    }

    /// `det`'s detections on every frame as KITTI result objects (camera frame, 2-D boxes).
    pub fn detections(&self, det: &Detector, ctl: &Control) -> Result<Frames, DatasetError> {
        let names = &det.config.class_names;
        let mut out = Vec::with_capacity(self.frames.len());
        for (i, f) in self.frames.iter().enumerate() {
            ctl.check()?;
            let dets = det
                .detect(&f.points)
                .map_err(|source| DatasetError::Model {
                    frame: f.id.clone(),
                    source,
                })?;
            out.push(
                dets.iter()
                    .map(|d| {
                        let class = names.get(d.label - 1).map_or("?", String::as_str);
                        f.calib
                            .lidar_box_to_prediction(&d.bbox, class, d.score, self.image)
                    })
                    .collect(),
            );
            ctl.step(i + 1, self.frames.len(), "detecting");
        }
        Ok(out)
    }

    /// KITTI AP of `det` on this set, for the model's classes that KITTI knows.
    pub fn evaluate(&self, det: &Detector, ctl: &Control) -> Result<EvalReport, DatasetError> {
        let classes = model_classes(det)?;
        let dt = self.detections(det, ctl)?;
        let gt: Vec<Vec<KittiObject>> = self.frames.iter().map(|f| f.labels.clone()).collect();
        Ok(evaluate(&gt, &dt, &classes)?)
    }
}

/// The model's classes that the KITTI evaluator knows (an error when there are none).
pub fn model_classes(det: &Detector) -> Result<Vec<KittiClass>, DatasetError> {
    let classes: Vec<KittiClass> = det
        .config
        .class_names
        .iter()
        .filter_map(|c| c.parse().ok())
        .collect();
    if classes.is_empty() {
        return Err(DatasetError::NoKittiClass(
            det.config.class_names.join(", "),
        ));
    }
    Ok(classes)
}
