//! Rotated BEV NMS: hand-built cases and a brute-force cross-check.

use pruneview::boxes::iou::{BevBox, bev_iou};
use pruneview::detect::nms::{
    NmsConfig, NmsError, nms_bev, nms_bev_boxes, nms_bev_ordered, order_by_score_desc,
};
use pruneview::rng::Rng;

fn cfg(thresh: f32) -> NmsConfig {
    NmsConfig {
        iou_thresh: thresh,
        pre_max: None,
        post_max: None,
    }
}

/// LiDAR rows `[x, y, z, dx, dy, dz, heading]` from BEV boxes (z = 0, dz = 1).
fn rows(boxes: &[BevBox]) -> Vec<f32> {
    boxes
        .iter()
        .flat_map(|b| [b.x, b.y, 0.0, b.dx, b.dy, 1.0, b.heading])
        .collect()
}

fn unit(x: f32, y: f32) -> BevBox {
    BevBox::new(x, y, 2.0, 1.0, 0.0)
}

#[test]
fn overlapping_chain_keeps_the_ends() {
    // A overlaps B, B overlaps C, A and C are disjoint. B is suppressed by A, so it cannot
    // suppress C: greedy NMS keeps A and C.
    let a = unit(0.0, 0.0);
    let b = unit(1.2, 0.0);
    let c = unit(2.4, 0.0);
    assert!(bev_iou(&a, &b) > 0.2 && bev_iou(&b, &c) > 0.2 && bev_iou(&a, &c) == 0.0);
    // Input order deliberately differs from score order.
    let boxes = [c, a, b];
    let scores = [0.7, 0.9, 0.8];
    let keep = nms_bev(&rows(&boxes), 7, &scores, &cfg(0.1)).expect("valid input");
    assert_eq!(keep, vec![1, 0]);
    // With a threshold above their IoU nothing is suppressed; order is by score.
    let keep = nms_bev(&rows(&boxes), 7, &scores, &cfg(0.9)).expect("valid input");
    assert_eq!(keep, vec![1, 2, 0]);
}

#[test]
fn ties_go_to_the_lower_index() {
    let a = unit(5.0, 5.0);
    // Identical boxes with equal scores: the first one wins.
    let keep = nms_bev_boxes(&[a, a, a], &[0.5, 0.5, 0.5], &cfg(0.5)).expect("valid");
    assert_eq!(keep, vec![0]);
    // Disjoint boxes with equal scores come out in index order.
    let boxes = [
        unit(0.0, 0.0),
        unit(10.0, 0.0),
        unit(20.0, 0.0),
        unit(30.0, 0.0),
    ];
    let keep = nms_bev_boxes(&boxes, &[0.3, 0.6, 0.3, 0.6], &cfg(0.01)).expect("valid");
    assert_eq!(keep, vec![1, 3, 0, 2]);
    // NaN sorts first (as torch.sort does), -0 and +0 tie.
    assert_eq!(
        order_by_score_desc(&[0.1, f32::NAN, 0.0, -0.0, 0.5]),
        vec![1, 4, 0, 2, 3]
    );
}

#[test]
fn threshold_is_strict() {
    let a = BevBox::new(0.0, 0.0, 1.0, 1.0, 0.3);
    let b = BevBox::new(0.5, 0.1, 1.0, 1.0, 0.3);
    let iou = bev_iou(&a, &b);
    assert!(iou > 0.2 && iou < 0.5);
    let boxes = [a, b];
    let scores = [0.9, 0.8];
    // IoU equal to the threshold does not suppress ...
    assert_eq!(
        nms_bev_boxes(&boxes, &scores, &cfg(iou)).unwrap(),
        vec![0, 1]
    );
    // ... one ulp below it does.
    let below = f32::from_bits(iou.to_bits() - 1);
    assert_eq!(
        nms_bev_boxes(&boxes, &scores, &cfg(below)).unwrap(),
        vec![0]
    );
}

#[test]
fn pre_max_cuts_candidates_before_nms_and_post_max_after() {
    // Scores: A 0.9, B 0.8 (overlaps A), C 0.7, D 0.6 (both disjoint from everything).
    let a = unit(0.0, 0.0);
    let b = unit(0.5, 0.0);
    let c = unit(10.0, 0.0);
    let d = unit(20.0, 0.0);
    let boxes = [d, c, b, a];
    let scores = [0.6, 0.7, 0.8, 0.9];
    let all = nms_bev_boxes(&boxes, &scores, &cfg(0.01)).unwrap();
    assert_eq!(all, vec![3, 1, 0]);
    // pre_max = 2: only A and B enter; B is suppressed; C and D never competed.
    let pre = NmsConfig {
        pre_max: Some(2),
        ..cfg(0.01)
    };
    assert_eq!(nms_bev_boxes(&boxes, &scores, &pre).unwrap(), vec![3]);
    // post_max = 2: the first two survivors.
    let post = NmsConfig {
        post_max: Some(2),
        ..cfg(0.01)
    };
    assert_eq!(nms_bev_boxes(&boxes, &scores, &post).unwrap(), vec![3, 1]);
    let none = NmsConfig {
        post_max: Some(0),
        ..cfg(0.01)
    };
    assert!(nms_bev_boxes(&boxes, &scores, &none).unwrap().is_empty());
    assert!(nms_bev_boxes(&[], &[], &cfg(0.01)).unwrap().is_empty());
}

#[test]
fn nms_uses_openpcdet_overlap_margin() {
    // 5 mm apart: OpenPCDet's overlap routine reports a sliver (IoU ~1.25e-3), so at
    // KITTI's threshold 0.01 both survive but at 0.001 the second is suppressed.
    let a = BevBox::new(0.0, 0.0, 2.0, 2.0, 0.0);
    let b = BevBox::new(2.005, 0.0, 2.0, 2.0, 0.0);
    let scores = [0.9, 0.8];
    assert_eq!(
        nms_bev_boxes(&[a, b], &scores, &cfg(0.01)).unwrap(),
        vec![0, 1]
    );
    assert_eq!(
        nms_bev_boxes(&[a, b], &scores, &cfg(0.001)).unwrap(),
        vec![0]
    );
    // A negative threshold suppresses everything after the best box, near or far.
    let far = BevBox::new(100.0, 0.0, 2.0, 2.0, 0.0);
    assert_eq!(
        nms_bev_boxes(&[a, far], &scores, &cfg(-0.5)).unwrap(),
        vec![0]
    );
}

#[test]
fn extra_columns_are_ignored_and_bad_shapes_are_errors() {
    // 9 columns (CenterPoint: + vx, vy): only x, y, dx, dy, heading matter.
    let data = [
        0.0, 0.0, 5.0, 2.0, 1.0, 1.0, 0.0, 9.0, 9.0, //
        0.2, 0.0, -5.0, 2.0, 1.0, 9.0, 0.0, -9.0, 0.0,
    ];
    assert_eq!(nms_bev(&data, 9, &[0.4, 0.6], &cfg(0.2)).unwrap(), vec![1]);
    assert_eq!(
        nms_bev(&data, 6, &[0.4, 0.6, 0.1], &cfg(0.2)),
        Err(NmsError::TooFewColumns { cols: 6 })
    );
    assert_eq!(
        nms_bev(&data[..17], 9, &[0.4, 0.6], &cfg(0.2)),
        Err(NmsError::RaggedBoxes { len: 17, cols: 9 })
    );
    assert_eq!(
        nms_bev(&data, 9, &[0.4], &cfg(0.2)),
        Err(NmsError::ScoreCount {
            boxes: 2,
            scores: 1
        })
    );
    let msg = NmsError::TooFewColumns { cols: 6 }.to_string();
    assert!(msg.contains("at least 7") && msg.contains('6'), "{msg}");
}

#[test]
fn caller_given_order_decides_ties() {
    // Two identical boxes tied on score: whichever the caller visits first survives.
    let a = unit(0.0, 0.0);
    let far = unit(50.0, 0.0);
    let data = rows(&[a, a, far]);
    assert_eq!(
        nms_bev_ordered(&data, 7, &[1, 0, 2], 0.5, None).unwrap(),
        vec![1, 2]
    );
    assert_eq!(
        nms_bev_ordered(&data, 7, &[0, 1, 2], 0.5, Some(1)).unwrap(),
        vec![0]
    );
    // A subset of the boxes (a top-k cut done by the caller).
    assert_eq!(nms_bev_ordered(&data, 7, &[2], 0.5, None).unwrap(), vec![2]);
    assert_eq!(
        nms_bev_ordered(&data, 7, &[0, 3], 0.5, None),
        Err(NmsError::OrderIndex { index: 3, boxes: 3 })
    );
    assert_eq!(
        nms_bev_ordered(&data, 5, &[0], 0.5, None),
        Err(NmsError::TooFewColumns { cols: 5 })
    );
}

/// Textbook greedy NMS over the full IoU matrix, no shortcuts.
fn brute_force(boxes: &[BevBox], scores: &[f32], cfg: &NmsConfig) -> Vec<usize> {
    let mut order: Vec<usize> = (0..boxes.len()).collect();
    order.sort_by(|&i, &j| scores[j].partial_cmp(&scores[i]).unwrap());
    order.truncate(cfg.pre_max.unwrap_or(usize::MAX));
    let mut removed = vec![false; order.len()];
    let mut keep = Vec::new();
    for p in 0..order.len() {
        if removed[p] {
            continue;
        }
        keep.push(order[p]);
        for q in p + 1..order.len() {
            if bev_iou(&boxes[order[p]], &boxes[order[q]]) > cfg.iou_thresh {
                removed[q] = true;
            }
        }
    }
    keep.truncate(cfg.post_max.unwrap_or(usize::MAX));
    keep
}

#[test]
fn matches_brute_force_on_clustered_random_candidates() {
    // Detector-like candidates: clusters of jittered boxes around a few dozen objects,
    // plus scattered singletons, with some touching pairs at the 1e-2 margin.
    let mut rng = Rng::new(42);
    let mut boxes = Vec::new();
    for _ in 0..40 {
        let (cx, cy) = (rng.range(0.0, 70.0), rng.range(-40.0, 40.0));
        let (dx, dy, h) = (
            rng.range(0.6, 4.5),
            rng.range(0.5, 2.0),
            rng.range(-3.2, 3.2),
        );
        for _ in 0..20 {
            boxes.push(BevBox::new(
                cx + rng.range(-1.0, 1.0),
                cy + rng.range(-1.0, 1.0),
                dx * rng.range(0.8, 1.2),
                dy * rng.range(0.8, 1.2),
                h + rng.range(-0.5, 0.5),
            ));
        }
    }
    for _ in 0..300 {
        boxes.push(BevBox::new(
            rng.range(0.0, 70.0),
            rng.range(-40.0, 40.0),
            rng.range(0.5, 4.0),
            rng.range(0.5, 2.0),
            rng.range(-3.2, 3.2),
        ));
    }
    let n0 = boxes.len();
    for i in 0..50 {
        let b = boxes[i * 7];
        boxes.push(BevBox::new(
            b.x + b.dx + rng.range(0.0, 0.02),
            b.y,
            b.dx,
            b.dy,
            0.0,
        ));
        boxes[i * 7].heading = 0.0;
    }
    assert!(boxes.len() > n0);
    let scores: Vec<f32> = (0..boxes.len()).map(|_| rng.range(0.1, 1.0)).collect();
    for c in [
        cfg(0.01),
        cfg(0.2),
        cfg(0.7),
        NmsConfig {
            iou_thresh: 0.01,
            pre_max: Some(500),
            post_max: Some(83),
        },
        NmsConfig {
            iou_thresh: 0.1,
            pre_max: Some(4096),
            post_max: Some(30),
        },
    ] {
        let got = nms_bev_boxes(&boxes, &scores, &c).unwrap();
        let want = brute_force(&boxes, &scores, &c);
        assert_eq!(got, want, "{c:?}");
        let mut order = order_by_score_desc(&scores);
        order.truncate(c.pre_max.unwrap_or(usize::MAX));
        let ordered = nms_bev_ordered(&rows(&boxes), 7, &order, c.iou_thresh, c.post_max);
        assert_eq!(ordered.unwrap(), want, "{c:?}");
        assert!(want.len() > 10);
    }
}
