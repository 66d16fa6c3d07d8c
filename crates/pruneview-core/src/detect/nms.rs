//! Greedy rotated non-maximum suppression in bird's-eye view, as OpenPCDet's `nms_gpu`.
//!
//! OpenPCDet sorts the candidates by descending score, keeps at most `NMS_PRE_MAXSIZE` of them,
//! suppresses every box whose rotated BEV IoU with an already-kept, higher-scored box is
//! **strictly greater** than the threshold, and returns the first `NMS_POST_MAXSIZE` survivors.
//! The IoU is [`crate::boxes::iou`]'s OpenPCDet-semantics one, evaluated as
//! `iou(kept, candidate)`, the argument order of the CUDA kernel.
//!
//! Speed: each candidate is compared only with the boxes kept so far (not all pairs), a cheap
//! bounds test skips far-apart pairs (it returns exactly what the polygon code would, 0), and
//! the loop stops once `post_max` boxes are kept: the later survivors would be cut anyway.

use thiserror::Error;

use crate::boxes::iou::{BevBox, PreparedBox, bounds_disjoint};

/// NMS settings, named after OpenPCDet's `NMS_CONFIG`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NmsConfig {
    /// `NMS_THRESH`: a box is suppressed when its IoU with a kept box is `> iou_thresh`.
    pub iou_thresh: f32,
    /// `NMS_PRE_MAXSIZE`: how many top-scored candidates enter NMS (`None`: all).
    pub pre_max: Option<usize>,
    /// `NMS_POST_MAXSIZE`: how many survivors are returned (`None`: all).
    pub post_max: Option<usize>,
}

impl NmsConfig {
    /// KITTI PointPillars / SECOND: thresh 0.01, pre-max 4096, post-max 500.
    pub const KITTI_POINTPILLARS: NmsConfig = NmsConfig {
        iou_thresh: 0.01,
        pre_max: Some(4096),
        post_max: Some(500),
    };
}

/// Why NMS could not run: the inputs do not describe N boxes with N scores.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum NmsError {
    #[error(
        "rotated NMS needs boxes with at least 7 columns [x, y, z, dx, dy, dz, heading, ...], got {cols}"
    )]
    TooFewColumns { cols: usize },
    #[error("the box buffer holds {len} values, which is not a whole number of {cols}-column rows")]
    RaggedBoxes { len: usize, cols: usize },
    #[error("{boxes} boxes but {scores} scores; NMS needs one score per box")]
    ScoreCount { boxes: usize, scores: usize },
    #[error("NMS order refers to box {index}, but there are only {boxes} boxes")]
    OrderIndex { index: usize, boxes: usize },
}

/// Indices of `scores` by descending score, as `torch.sort(descending=True)` orders them: NaN
/// counts as the largest value, equal scores (and +0 / −0) keep ascending index order.
pub fn order_by_score_desc(scores: &[f32]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&i, &j| {
        let (a, b) = (scores[i], scores[j]);
        match (a.is_nan(), b.is_nan()) {
            (true, true) => std::cmp::Ordering::Equal,
            (true, false) => std::cmp::Ordering::Less,
            (false, true) => std::cmp::Ordering::Greater,
            // Not NaN: partial_cmp is total here and treats -0 == +0.
            (false, false) => b.partial_cmp(&a).unwrap_or(std::cmp::Ordering::Equal),
        }
    });
    order
}

/// Rotated BEV NMS over row-major `boxes` (`cols` ≥ 7 values per box; columns x, y, dx, dy,
/// heading = 0, 1, 3, 4, 6 are used, as OpenPCDet's `boxes[:, 0:7]`) with one score per box.
///
/// Returns the kept indices into `boxes`, in descending score order.
pub fn nms_bev(
    boxes: &[f32],
    cols: usize,
    scores: &[f32],
    cfg: &NmsConfig,
) -> Result<Vec<usize>, NmsError> {
    if cols < 7 {
        return Err(NmsError::TooFewColumns { cols });
    }
    if !boxes.len().is_multiple_of(cols) {
        return Err(NmsError::RaggedBoxes {
            len: boxes.len(),
            cols,
        });
    }
    let n = boxes.len() / cols;
    if n != scores.len() {
        return Err(NmsError::ScoreCount {
            boxes: n,
            scores: scores.len(),
        });
    }
    Ok(nms_impl(scores, cfg, |i| {
        let r = &boxes[i * cols..i * cols + 7];
        BevBox::new(r[0], r[1], r[3], r[4], r[6])
    }))
}

/// Greedy NMS over candidates visited in a caller-given `order` (indices into `boxes`, best
/// first; any top-k cut already applied). For callers that reproduce PyTorch's own `topk` /
/// `sort` tie order instead of this module's stable one. Same box layout and suppression rule
/// as [`nms_bev`]; returns the kept indices into `boxes`, in `order`'s order, at most
/// `post_max`.
pub fn nms_bev_ordered(
    boxes: &[f32],
    cols: usize,
    order: &[usize],
    iou_thresh: f32,
    post_max: Option<usize>,
) -> Result<Vec<usize>, NmsError> {
    if cols < 7 {
        return Err(NmsError::TooFewColumns { cols });
    }
    if !boxes.len().is_multiple_of(cols) {
        return Err(NmsError::RaggedBoxes {
            len: boxes.len(),
            cols,
        });
    }
    let n = boxes.len() / cols;
    if let Some(&index) = order.iter().find(|&&i| i >= n) {
        return Err(NmsError::OrderIndex { index, boxes: n });
    }
    Ok(greedy(order, iou_thresh, post_max, |i| {
        let r = &boxes[i * cols..i * cols + 7];
        BevBox::new(r[0], r[1], r[3], r[4], r[6])
    }))
}

/// [`nms_bev`] for boxes already in [`BevBox`] form.
pub fn nms_bev_boxes(
    boxes: &[BevBox],
    scores: &[f32],
    cfg: &NmsConfig,
) -> Result<Vec<usize>, NmsError> {
    if boxes.len() != scores.len() {
        return Err(NmsError::ScoreCount {
            boxes: boxes.len(),
            scores: scores.len(),
        });
    }
    Ok(nms_impl(scores, cfg, |i| boxes[i]))
}

fn nms_impl(scores: &[f32], cfg: &NmsConfig, bev: impl Fn(usize) -> BevBox) -> Vec<usize> {
    let mut order = order_by_score_desc(scores);
    if let Some(pre) = cfg.pre_max {
        order.truncate(pre);
    }
    greedy(&order, cfg.iou_thresh, cfg.post_max, bev)
}

/// Greedy suppression visiting `order` (indices, best first); returns kept indices.
fn greedy(
    order: &[usize],
    thresh: f32,
    post_max: Option<usize>,
    bev: impl Fn(usize) -> BevBox,
) -> Vec<usize> {
    let post = post_max.unwrap_or(usize::MAX);
    // What a far-apart pair scores against the threshold (IoU exactly 0): false unless the
    // threshold is negative, in which case OpenPCDet suppresses everything after the first.
    let far_suppresses = 0.0 > thresh;

    let prepared: Vec<PreparedBox> = order.iter().map(|&i| PreparedBox::new(&bev(i))).collect();
    // Kept boxes: positions in `order`, and their bounds stored contiguously, so the scan over
    // far-apart kept boxes (most of them) touches 16 bytes each.
    let mut kept: Vec<usize> = Vec::new();
    let mut kept_bounds: Vec<[f32; 4]> = Vec::new();
    for (pos, cand) in prepared.iter().enumerate() {
        if kept.len() >= post {
            break;
        }
        let cb = cand.bounds();
        let suppressed = kept.iter().zip(&kept_bounds).any(|(&k, kb)| {
            if bounds_disjoint(kb, &cb) {
                far_suppresses
            } else {
                prepared[k].iou(cand) > thresh
            }
        });
        if !suppressed {
            kept.push(pos);
            kept_bounds.push(cb);
        }
    }
    kept.into_iter().map(|pos| order[pos]).collect()
}
