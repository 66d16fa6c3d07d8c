//! The KITTI matching rules, step for step as `kitti_object_eval_python/eval.py` applies them:
//! which objects count for a class and difficulty (`clean_data`), how detections are assigned
//! to ground truth (`compute_statistics_jit`), which score thresholds are sampled
//! (`get_thresholds`), and how the precision curve and AP follow (`eval_class`, `get_mAP`,
//! `get_mAP_R40`).
//!
//! The quirks are kept on purpose, because they change the numbers:
//!
//! - a ground-truth object is *ignored* (neither TP nor FN) when it is of the neighbour class
//!   (Van for Car, Person_sitting for Pedestrian) or fails the difficulty's limits
//!   (bbox height `<=` min height, occlusion or truncation above the maximum); other classes and
//!   DontCare are invisible;
//! - a detection lower than the min height (`<`, absolute 2-D height) is *ignored* whatever its
//!   class, and can still absorb a ground-truth object; one of another class is invisible;
//! - the threshold pass assigns the highest-scored overlapping detection, the counting pass the
//!   most-overlapping non-ignored one (an ignored one only if nothing else overlaps);
//! - overlaps must be strictly greater than the minimum;
//! - DontCare regions absorb unmatched detections only for the 2-D `bbox` metric (their overlap
//!   is intersection over the *detection's* area).
//!
//! Heights and truncations are compared in f32, the precision of the parsed labels (and of
//! OpenPCDet's info annotations); counts and precisions are f64.

use crate::pointcloud::KittiObject;

use super::overlap::{ImageCriterion, image_box_overlap};
use super::{Difficulty, KittiClass, Metric};

/// Number of recall sample points of the precision curve (`N_SAMPLE_PTS`).
pub const SAMPLE_POINTS: usize = 41;

/// The official code's `NO_DETECTION` sentinel: a detection is picked in the threshold pass
/// only if its score is above it (and above the best so far).
const NO_DETECTION: f64 = -10_000_000.0;

/// Role of a ground-truth object for one class and difficulty.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GtRole {
    /// Counts: a TP when matched, an FN otherwise (`ignored_gt == 0`).
    Valid,
    /// Absorbs a matching detection without counting (`ignored_gt == 1`).
    Ignored,
    /// Not considered at all (`ignored_gt == -1`).
    Other,
}

/// Role of a detection for one class and difficulty.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DtRole {
    /// Of the class and tall enough (`ignored_det == 0`).
    Valid,
    /// Lower than the difficulty's min height (`ignored_det == 1`), of any class.
    Ignored,
    /// Of another class (`ignored_det == -1`).
    Other,
}

/// The classified objects of one frame (`clean_data`).
#[derive(Clone, Debug)]
pub struct CleanFrame {
    pub num_valid_gt: usize,
    pub gt: Vec<GtRole>,
    pub dt: Vec<DtRole>,
    /// Image boxes of the DontCare regions.
    pub dontcare: Vec<[f32; 4]>,
}

/// `clean_data`: classifies the ground truth and detections of one frame for `class` at
/// `difficulty`.
pub fn clean_frame(
    gt: &[KittiObject],
    dt: &[KittiObject],
    class: KittiClass,
    difficulty: Difficulty,
) -> CleanFrame {
    let current = class.name().to_lowercase();
    let neighbour = class.neighbour().map(str::to_lowercase);
    let (min_height, max_occlusion, max_truncation) = difficulty.limits();
    let mut out = CleanFrame {
        num_valid_gt: 0,
        gt: Vec::with_capacity(gt.len()),
        dt: Vec::with_capacity(dt.len()),
        dontcare: Vec::new(),
    };
    for g in gt {
        let name = g.name.to_lowercase();
        let height = g.bbox[3] - g.bbox[1];
        let same = name == current;
        let neighbour = neighbour.as_deref() == Some(name.as_str());
        let ignore =
            g.occluded > max_occlusion || g.truncated > max_truncation || height <= min_height;
        let role = if same && !ignore {
            out.num_valid_gt += 1;
            GtRole::Valid
        } else if neighbour || (same && ignore) {
            GtRole::Ignored
        } else {
            GtRole::Other
        };
        out.gt.push(role);
        if g.name == "DontCare" {
            out.dontcare.push(g.bbox);
        }
    }
    for d in dt {
        let height = (d.bbox[3] - d.bbox[1]).abs();
        let role = if height < min_height {
            DtRole::Ignored
        } else if d.name.to_lowercase() == current {
            DtRole::Valid
        } else {
            DtRole::Other
        };
        out.dt.push(role);
    }
    out
}

/// One frame, ready for [`compute_statistics`].
#[derive(Clone, Copy, Debug)]
pub struct FrameView<'a> {
    /// `|dt| x |gt|`, row-major.
    pub overlaps: &'a [f64],
    pub clean: &'a CleanFrame,
    pub dt_scores: &'a [f64],
    pub dt_bboxes: &'a [[f32; 4]],
    /// Observation angles, for the orientation similarity of true positives (AOS).
    pub dt_alphas: &'a [f32],
    pub gt_alphas: &'a [f32],
}

/// TP / FP / FN counts of one frame at one score threshold, and (threshold pass) the scores
/// of the true positives.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Statistics {
    pub tp: usize,
    pub fp: usize,
    pub fn_: usize,
    pub tp_scores: Vec<f64>,
    /// Sum over true positives of the orientation similarity `(1 + cos(gt alpha - dt
    /// alpha)) / 2` (what AOS divides by `tp + fp`).
    pub similarity: f64,
}

/// `compute_statistics_jit`. With `compute_fp == false` (the threshold pass) detections are
/// assigned by score and only `tp`, `fn_` and `tp_scores` are meaningful; with `true` (the
/// counting pass) detections scored below `thresh` are dropped, assignment is by overlap, and
/// false positives are counted (minus those in DontCare regions for [`Metric::Bbox`]).
pub fn compute_statistics(
    frame: &FrameView<'_>,
    metric: Metric,
    min_overlap: f64,
    thresh: f64,
    compute_fp: bool,
) -> Statistics {
    let clean = frame.clean;
    let n_dt = clean.dt.len();
    let n_gt = clean.gt.len();
    let mut assigned = vec![false; n_dt];
    let below: Vec<bool> = frame
        .dt_scores
        .iter()
        .map(|&s| compute_fp && s < thresh)
        .collect();
    let mut st = Statistics::default();

    for (i, &gt_role) in clean.gt.iter().enumerate() {
        if gt_role == GtRole::Other {
            continue;
        }
        // `valid_detection` is NO_DETECTION until something is picked; the threshold pass keeps
        // the best score in it, the counting pass only uses it as a flag.
        let mut picked: Option<usize> = None;
        let mut best_score = NO_DETECTION;
        let mut max_overlap = 0.0f64;
        let mut picked_ignored = false;
        for j in 0..n_dt {
            let dt_role = clean.dt[j];
            if dt_role == DtRole::Other || assigned[j] || below[j] {
                continue;
            }
            let overlap = frame.overlaps[j * n_gt + i];
            let score = frame.dt_scores[j];
            if !compute_fp {
                if overlap > min_overlap && score > best_score {
                    picked = Some(j);
                    best_score = score;
                }
            } else if overlap > min_overlap
                && (overlap > max_overlap || picked_ignored)
                && dt_role == DtRole::Valid
            {
                max_overlap = overlap;
                picked = Some(j);
                picked_ignored = false;
            } else if overlap > min_overlap && picked.is_none() && dt_role == DtRole::Ignored {
                picked = Some(j);
                picked_ignored = true;
            }
        }
        match picked {
            None => {
                if gt_role == GtRole::Valid {
                    st.fn_ += 1;
                }
            }
            Some(j) if gt_role == GtRole::Ignored || clean.dt[j] == DtRole::Ignored => {
                assigned[j] = true;
            }
            Some(j) => {
                st.tp += 1;
                st.tp_scores.push(frame.dt_scores[j]);
                let delta = f64::from(frame.gt_alphas[i]) - f64::from(frame.dt_alphas[j]);
                st.similarity += (1.0 + delta.cos()) / 2.0;
                assigned[j] = true;
            }
        }
    }

    if compute_fp {
        st.fp = (0..n_dt)
            .filter(|&j| !assigned[j] && clean.dt[j] == DtRole::Valid && !below[j])
            .count();
        if metric == Metric::Bbox {
            let mut absorbed = 0usize;
            for dc in &clean.dontcare {
                for j in 0..n_dt {
                    if assigned[j] || clean.dt[j] != DtRole::Valid || below[j] {
                        continue;
                    }
                    let o = image_box_overlap(&frame.dt_bboxes[j], dc, ImageCriterion::First);
                    if o > min_overlap {
                        assigned[j] = true;
                        absorbed += 1;
                    }
                }
            }
            st.fp -= absorbed;
        }
    }
    st
}

/// `get_thresholds`: from the scores of all true positives (threshold pass) and the number of
/// valid ground-truth objects, the score thresholds at which recall crosses roughly
/// 0, 1/40, 2/40, ... (at most [`SAMPLE_POINTS`]), highest first.
pub fn sample_thresholds(scores: &[f64], num_gt: usize) -> Vec<f64> {
    if num_gt == 0 {
        return Vec::new();
    }
    let mut scores = scores.to_vec();
    scores.sort_by(|a, b| b.total_cmp(a));
    let n = scores.len();
    let step = 1.0 / (SAMPLE_POINTS as f64 - 1.0);
    let mut current = 0.0f64;
    let mut out = Vec::new();
    for (i, &score) in scores.iter().enumerate() {
        let l_recall = (i + 1) as f64 / num_gt as f64;
        let last = i + 1 == n;
        let r_recall = if last {
            l_recall
        } else {
            (i + 2) as f64 / num_gt as f64
        };
        if (r_recall - current) < (current - l_recall) && !last {
            continue;
        }
        out.push(score);
        current += step;
    }
    out.truncate(SAMPLE_POINTS);
    out
}

/// NumPy's `max`: NaN wins.
fn nan_max(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.max(b)
    }
}

/// The precision / recall curves of one class, difficulty and metric over all frames
/// (`eval_class` for one entry): [`SAMPLE_POINTS`] values each, made non-increasing from the
/// right (`max` over the tail), zeros past the last sampled threshold.
#[derive(Clone, Debug, PartialEq)]
pub struct Curve {
    pub num_valid_gt: usize,
    pub thresholds: Vec<f64>,
    pub precision: Vec<f64>,
    pub recall: Vec<f64>,
    /// Orientation similarity over `tp + fp` at the same samples (AOS; meaningful for the
    /// image-box metric, the only one the official code computes it for).
    pub orientation: Vec<f64>,
}

/// Runs both passes over `frames`.
pub fn precision_curve(frames: &[FrameView<'_>], metric: Metric, min_overlap: f64) -> Curve {
    let num_valid_gt: usize = frames.iter().map(|f| f.clean.num_valid_gt).sum();
    let mut scores = Vec::new();
    for f in frames {
        scores.extend(compute_statistics(f, metric, min_overlap, 0.0, false).tp_scores);
    }
    let thresholds = sample_thresholds(&scores, num_valid_gt);
    let mut precision = vec![0.0f64; SAMPLE_POINTS];
    let mut recall = vec![0.0f64; SAMPLE_POINTS];
    let mut orientation = vec![0.0f64; SAMPLE_POINTS];
    for (t, &thresh) in thresholds.iter().enumerate() {
        let (mut tp, mut fp, mut fn_, mut similarity) = (0usize, 0usize, 0usize, 0.0f64);
        for f in frames {
            let s = compute_statistics(f, metric, min_overlap, thresh, true);
            tp += s.tp;
            fp += s.fp;
            fn_ += s.fn_;
            similarity += s.similarity;
        }
        recall[t] = tp as f64 / (tp + fn_) as f64;
        precision[t] = tp as f64 / (tp + fp) as f64;
        orientation[t] = similarity / (tp + fp) as f64;
    }
    let tail_max = |v: &[f64]| v.iter().copied().fold(f64::NEG_INFINITY, nan_max);
    for t in 0..thresholds.len() {
        precision[t] = tail_max(&precision[t..]);
        recall[t] = tail_max(&recall[t..]);
        orientation[t] = tail_max(&orientation[t..]);
    }
    Curve {
        num_valid_gt,
        thresholds,
        precision,
        recall,
        orientation,
    }
}

/// `get_mAP`: mean of the precision at samples 0, 4, ..., 40, times 100.
pub fn ap_r11(precision: &[f64]) -> f64 {
    let mut sum = 0.0;
    for &p in precision.iter().step_by(4) {
        sum += p;
    }
    sum / 11.0 * 100.0
}

/// `get_mAP_R40`: mean of the precision at samples 1..=40, times 100.
pub fn ap_r40(precision: &[f64]) -> f64 {
    let mut sum = 0.0;
    for &p in precision.iter().skip(1) {
        sum += p;
    }
    sum / 40.0 * 100.0
}
