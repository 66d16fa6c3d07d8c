//! Detections and KITTI accuracy of a pruned model, as the app shows them.

use std::path::PathBuf;

use crate::detect::Detector;
use crate::eval::{self, EvalSet, model_classes};
use crate::pointcloud::kitti::KittiObject;
use crate::progress::Control;
use crate::report::Accuracy;

use super::scans::KITTI_IMAGE;
use super::{Result, fail};

/// Moderate R40 AP of the dense and a pruned model on labelled frames.
#[derive(Clone, Debug, PartialEq)]
pub struct Evaluation {
    pub dense: Accuracy,
    pub pruned: Accuracy,
    pub frames: usize,
}

/// Groups `(dataset root, frame id)` pairs by root, in first-seen order.
fn by_root(frames: Vec<(PathBuf, String)>) -> Vec<(PathBuf, Vec<String>)> {
    let mut out: Vec<(PathBuf, Vec<String>)> = Vec::new();
    for (root, id) in frames {
        match out.iter_mut().find(|(r, _)| *r == root) {
            Some((_, ids)) => ids.push(id),
            None => out.push((root, vec![id])),
        }
    }
    out
}

/// Evaluates `dense` and `pruned` on frames in KITTI layouts (all frames together, whatever
/// root they come from).
pub fn evaluate(
    dense: &Detector,
    pruned: &Detector,
    frames: Vec<(PathBuf, String)>,
    ctl: &Control,
) -> Result<Evaluation> {
    if frames.is_empty() {
        return Err("no labelled scans: add scans in KITTI layout (velodyne/, calib/, label_2/) to evaluate".into());
    }
    let roots = by_root(frames);
    let total: usize = roots.iter().map(|(_, ids)| ids.len()).sum();
    let used = &dense.config.data.used_features;
    let classes = model_classes(dense).map_err(fail)?;
    let (mut gt, mut dense_dt, mut pruned_dt) = (Vec::new(), Vec::new(), Vec::new());
    let mut done = 0;
    for (root, ids) in &roots {
        let set = EvalSet::load(root, ids, KITTI_IMAGE, used, &ctl.silenced())?;
        for (dt, det, base) in [
            (&mut dense_dt, dense, done),
            (&mut pruned_dt, pruned, total + done),
        ] {
            let on_step = |k: usize, _: usize, _: &str| ctl.step(base + k, 2 * total, "evaluating");
            dt.extend(set.detections(det, &Control::new(ctl.cancel, &on_step))?);
        }
        gt.extend(set.frames.into_iter().map(|f| f.labels));
        done += ids.len();
    }
    let accuracy = |dt: &[Vec<KittiObject>]| {
        eval::evaluate(&gt, dt, &classes)
            .map(|r| Accuracy::of(&r, &classes))
            .map_err(fail)
    };
    Ok(Evaluation {
        dense: accuracy(&dense_dt)?,
        pruned: accuracy(&pruned_dt)?,
        frames: total,
    })
}
