//! Per-frame overlap matrices for the three KITTI metrics, detections as rows and ground truth
//! as columns (`calculate_iou_partly(dt_annos, gt_annos, ...)` in `kitti_object_eval_python`).
//!
//! The rotated geometry is not here: BEV and 3-D IoU come from [`crate::boxes::iou`]'s exact
//! KITTI camera-frame functions on each label's [`KittiObject::camera_box`]; this file adds
//! the axis-aligned image-box overlap.

use crate::boxes::CameraBox;
use crate::boxes::iou::{kitti_iou_3d_matrix, kitti_iou_bev_matrix};
use crate::pointcloud::KittiObject;

use super::Metric;

/// Which area divides the intersection in [`image_box_overlap`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageCriterion {
    /// Intersection over union (`criterion=-1`).
    Union,
    /// Intersection over the first box's area (`criterion=0`), used for DontCare regions.
    First,
}

/// Axis-aligned overlap of two image boxes `[x1, y1, x2, y2]` (`image_box_overlap`): 0 unless
/// both the width and the height of the intersection are positive.
pub fn image_box_overlap(a: &[f32; 4], b: &[f32; 4], criterion: ImageCriterion) -> f64 {
    let a = a.map(f64::from);
    let b = b.map(f64::from);
    let iw = a[2].min(b[2]) - a[0].max(b[0]);
    if iw <= 0.0 {
        return 0.0;
    }
    let ih = a[3].min(b[3]) - a[1].max(b[1]);
    if ih <= 0.0 {
        return 0.0;
    }
    let area_a = (a[2] - a[0]) * (a[3] - a[1]);
    let ua = match criterion {
        ImageCriterion::Union => area_a + (b[2] - b[0]) * (b[3] - b[1]) - iw * ih,
        ImageCriterion::First => area_a,
    };
    iw * ih / ua
}

/// Row-major `|dt| x |gt|` overlap matrix of one frame under `metric`.
pub fn overlap_matrix(dt: &[KittiObject], gt: &[KittiObject], metric: Metric) -> Vec<f64> {
    match metric {
        Metric::Bbox => {
            let mut out = Vec::with_capacity(dt.len() * gt.len());
            for d in dt {
                for g in gt {
                    out.push(image_box_overlap(&d.bbox, &g.bbox, ImageCriterion::Union));
                }
            }
            out
        }
        Metric::Bev | Metric::ThreeD => {
            let d: Vec<CameraBox> = dt.iter().map(KittiObject::camera_box).collect();
            let g: Vec<CameraBox> = gt.iter().map(KittiObject::camera_box).collect();
            if metric == Metric::Bev {
                kitti_iou_bev_matrix(&d, &g)
            } else {
                kitti_iou_3d_matrix(&d, &g)
            }
        }
    }
}
