//! Dense vs pruned detections on one scan: which objects the pruned model still finds
//! (matched), which it lost (missed: dense only) and which it added (new: pruned only), and
//! how its scores moved. Coincident boxes hide each other in a 3-D view, so the app colours
//! boxes by this rather than asking the user to compare two overlapping sets by eye; the CLI
//! can print the same.

use crate::boxes::iou::{BevBox, rect_iou_exact};
use crate::detect::Detection;

/// BEV IoU at or above which a dense and a pruned box of the same class are the same object.
/// Pruning shifts boxes by centimetres, far less than 0.5 allows, while two neighbouring cars
/// overlap far less than that, so the threshold separates "moved a little" from "another box".
pub const MATCH_IOU: f64 = 0.5;

/// A dense detection and the pruned one that is the same object.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Pair {
    /// Index into the dense detections.
    pub dense: usize,
    /// Index into the pruned detections.
    pub pruned: usize,
    /// Their exact rotated BEV IoU.
    pub iou: f64,
    /// Pruned score minus dense score.
    pub score_delta: f32,
}

/// How the pruned detections of one scan differ from the dense ones. Indices refer to the
/// slices given to [`match_detections`]; detections under its score threshold appear nowhere.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DetectionDiff {
    /// In descending IoU order.
    pub matched: Vec<Pair>,
    /// Dense detections no pruned one matches, ascending.
    pub missed: Vec<usize>,
    /// Pruned detections no dense one matches, ascending.
    pub new: Vec<usize>,
}

/// What became of one detection.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Status {
    /// Found by both models; the pair.
    Matched(Pair),
    /// Found by the dense model only.
    Missed,
    /// Found by the pruned model only.
    New,
}

impl DetectionDiff {
    /// Mean score change over the matched pairs (`None` without pairs).
    pub fn mean_score_delta(&self) -> Option<f32> {
        (!self.matched.is_empty()).then(|| {
            self.matched.iter().map(|p| p.score_delta).sum::<f32>() / self.matched.len() as f32
        })
    }

    /// What became of dense detection `i` (`None` when it was under the threshold).
    pub fn dense_status(&self, i: usize) -> Option<Status> {
        if let Some(p) = self.matched.iter().find(|p| p.dense == i) {
            return Some(Status::Matched(*p));
        }
        self.missed.contains(&i).then_some(Status::Missed)
    }

    /// What became of pruned detection `i` (`None` when it was under the threshold).
    pub fn pruned_status(&self, i: usize) -> Option<Status> {
        if let Some(p) = self.matched.iter().find(|p| p.pruned == i) {
            return Some(Status::Matched(*p));
        }
        self.new.contains(&i).then_some(Status::New)
    }
}

/// Matches the dense and pruned detections scoring at least `min_score` (what the user is
/// shown): same class and BEV IoU at least `min_iou`, greedily by descending IoU, so each box
/// pairs with its best remaining counterpart (ties in the input order, so the result is
/// deterministic). Boxes with non-finite values never match.
pub fn match_detections(
    dense: &[Detection],
    pruned: &[Detection],
    min_score: f32,
    min_iou: f64,
) -> DetectionDiff {
    let shown = |d: &[Detection]| -> Vec<(usize, BevBox)> {
        d.iter()
            .enumerate()
            .filter(|(_, d)| d.score >= min_score)
            .filter_map(|(i, d)| Some((i, BevBox::from_lidar(&d.bbox)?)))
            .collect()
    };
    let (a, b) = (shown(dense), shown(pruned));
    let mut candidates: Vec<(f64, usize, usize)> = Vec::new();
    for &(i, bi) in &a {
        for &(j, bj) in &b {
            if dense[i].label != pruned[j].label || far_apart(&bi, &bj) {
                continue;
            }
            let iou = rect_iou_exact(&bi, &bj);
            if iou >= min_iou {
                candidates.push((iou, i, j));
            }
        }
    }
    candidates.sort_by(|x, y| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1)).then(x.2.cmp(&y.2)));
    let (mut used_a, mut used_b) = (vec![false; dense.len()], vec![false; pruned.len()]);
    let mut matched = Vec::new();
    for (iou, i, j) in candidates {
        if used_a[i] || used_b[j] {
            continue;
        }
        used_a[i] = true;
        used_b[j] = true;
        matched.push(Pair {
            dense: i,
            pruned: j,
            iou,
            score_delta: pruned[j].score - dense[i].score,
        });
    }
    DetectionDiff {
        matched,
        missed: a.iter().map(|x| x.0).filter(|&i| !used_a[i]).collect(),
        new: b.iter().map(|x| x.0).filter(|&j| !used_b[j]).collect(),
    }
}

/// Whether the boxes' circumscribed circles are disjoint (then they cannot overlap): skips
/// the polygon clipping for almost every pair of a busy scene.
fn far_apart(a: &BevBox, b: &BevBox) -> bool {
    let r = |x: &BevBox| 0.5 * (x.dx.hypot(x.dy));
    let d = (a.x - b.x).hypot(a.y - b.y);
    d > r(a) + r(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn det(x: f32, y: f32, heading: f32, label: usize, score: f32) -> Detection {
        Detection {
            bbox: [x, y, -1.0, 4.0, 1.8, 1.6, heading],
            velocity: None,
            score,
            label,
        }
    }

    #[test]
    fn matches_moved_boxes_and_lists_missed_and_new() {
        let dense = [
            det(10.0, 0.0, 0.0, 1, 0.9),
            det(20.0, 5.0, 0.3, 1, 0.8),
            det(30.0, -4.0, 0.0, 2, 0.7),
        ];
        let pruned = [
            det(40.0, 0.0, 0.0, 1, 0.6),   // new
            det(10.1, 0.05, 0.02, 1, 0.7), // the first, moved a little
            det(20.0, 5.0, 0.3, 1, 0.85),  // the second, in place
        ];
        let d = match_detections(&dense, &pruned, 0.3, MATCH_IOU);
        assert_eq!(d.matched.len(), 2);
        // Descending IoU: the box in place first.
        assert_eq!((d.matched[0].dense, d.matched[0].pruned), (1, 2));
        assert!((d.matched[0].iou - 1.0).abs() < 1e-6);
        assert!((d.matched[0].score_delta - 0.05).abs() < 1e-6);
        assert_eq!((d.matched[1].dense, d.matched[1].pruned), (0, 1));
        assert!((d.matched[1].score_delta + 0.2).abs() < 1e-6);
        assert_eq!(d.missed, vec![2]);
        assert_eq!(d.new, vec![0]);
        assert!((d.mean_score_delta().unwrap() + 0.075).abs() < 1e-6);
        assert_eq!(d.dense_status(2), Some(Status::Missed));
        assert_eq!(d.pruned_status(0), Some(Status::New));
        assert!(matches!(d.pruned_status(1), Some(Status::Matched(p)) if p.dense == 0));
    }

    #[test]
    fn another_class_or_a_small_overlap_is_no_match() {
        let dense = [det(10.0, 0.0, 0.0, 1, 0.9)];
        // Same place, other class; same class, shifted by 3 of its 4 m length (IoU 1/7).
        let pruned = [det(10.0, 0.0, 0.0, 2, 0.9), det(13.0, 0.0, 0.0, 1, 0.9)];
        let d = match_detections(&dense, &pruned, 0.0, MATCH_IOU);
        assert!(d.matched.is_empty());
        assert_eq!(d.missed, vec![0]);
        assert_eq!(d.new, vec![0, 1]);
        assert_eq!(d.mean_score_delta(), None);
    }

    #[test]
    fn each_box_pairs_once_with_its_best_counterpart() {
        // Two pruned boxes on one dense box: the closer one wins, the other is new.
        let dense = [det(10.0, 0.0, 0.0, 1, 0.9)];
        let pruned = [det(10.6, 0.0, 0.0, 1, 0.9), det(10.1, 0.0, 0.0, 1, 0.5)];
        let d = match_detections(&dense, &pruned, 0.0, MATCH_IOU);
        assert_eq!(d.matched.len(), 1);
        assert_eq!(d.matched[0].pruned, 1);
        assert_eq!(d.new, vec![0]);
    }

    #[test]
    fn threshold_hides_low_scores_and_bad_boxes_never_match() {
        let dense = [det(10.0, 0.0, 0.0, 1, 0.9), det(20.0, 0.0, 0.0, 1, 0.1)];
        let mut nan = det(10.0, 0.0, 0.0, 1, 0.9);
        nan.bbox[0] = f32::NAN;
        let pruned = [nan, det(20.0, 0.0, 0.0, 1, 0.2)];
        let d = match_detections(&dense, &pruned, 0.3, MATCH_IOU);
        assert!(d.matched.is_empty());
        assert_eq!(d.missed, vec![0]);
        assert_eq!(d.new, vec![0]);
        assert_eq!(d.dense_status(1), None);
        assert_eq!(d.pruned_status(1), None);
        assert_eq!(
            match_detections(&[], &[], 0.0, MATCH_IOU),
            DetectionDiff::default()
        );
    }
}
