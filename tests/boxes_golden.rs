//! Box decoding, direction correction and rotated NMS against OpenPCDet's own outputs.
//!
//! The fixtures in `../shared/reference` hold the raw dense-head outputs of OpenPCDet models
//! (random weights) and the final detections OpenPCDet's post-processing made from them.
//! Starting from the same raw outputs, decoding + score filter + NMS here must give the same
//! detections. The anchor grid and the CenterPoint heatmap decoding are rebuilt in this file
//! from the notes (`research/openpcdet-notes.md` 1.5, 2.2): scaffolding, not what is tested.
//!
//! **Ties.** With random weights, empty regions of the BEV map produce bit-identical outputs,
//! so many candidates share a score exactly (PointPillars: 321,408 candidates, ~71k distinct
//! scores). `torch.sort` / `torch.topk` order such ties arbitrarily, and greedy NMS then keeps a
//! different, equally valid set. Moreover our sigmoid (platform `expf`) and PyTorch's (SLEEF
//! `expf`, <= 1 ulp) can differ by an ulp, which turns some ties into near-ties and back.
//! These tests therefore order candidates as OpenPCDet must have: a candidate that reproduces a
//! reference detection takes the reference's score raised by 8 ulps, so it precedes every
//! candidate whose score is tied or within a few ulps, and reference detections keep the
//! reference's order among themselves. That is the only freedom allowed. If OpenPCDet's
//! result is greedy NMS under *some* such order, it is exactly greedy NMS under this one (kept
//! boxes never suppress each other; every dropped box is suppressed by a kept box that precedes
//! it in both orders). Every suppression decision, the count and the order must then match.

use std::path::PathBuf;

use pruneview::detect::box_coder::{DirClassifier, ResidualCoder, argmax_first};
use pruneview::detect::iou::{BevBox, bev_iou};
use pruneview::detect::nms::{NmsConfig, nms_bev};
use safetensors::{Dtype, SafeTensors};

fn reference(dir: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/reference")
        .join(dir)
        .join("golden.safetensors")
}

fn read(path: &PathBuf) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn f32s(st: &SafeTensors, name: &str) -> (Vec<usize>, Vec<f32>) {
    let t = st.tensor(name).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(t.dtype(), Dtype::F32, "{name}");
    let v = t
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    (t.shape().to_vec(), v)
}

fn i64s(st: &SafeTensors, name: &str) -> Vec<i64> {
    let t = st.tensor(name).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(t.dtype(), Dtype::I64, "{name}");
    t.data()
        .chunks_exact(8)
        .map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes")))
        .collect()
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Sentinel rank for candidates OpenPCDet did not keep.
const UNRANKED: usize = usize::MAX;

/// Scores to order candidates by (see the module docs): a candidate ranked `r` (it reproduces
/// reference detection `r`) takes reference score `r` raised by 8 ulps; others keep theirs.
fn ordering_scores(scores: &[f32], rank: &[usize], ref_scores: &[f32]) -> Vec<f32> {
    scores
        .iter()
        .zip(rank)
        .map(|(&s, &r)| {
            if r == UNRANKED {
                s
            } else {
                f32::from_bits(ref_scores[r].to_bits() + 8)
            }
        })
        .collect()
}

/// Descending ordering score; ties: lower rank first, then lower index.
fn sort_for_topk(order_scores: &[f32], rank: &[usize], idx: &mut [usize]) {
    idx.sort_by(|&a, &b| {
        order_scores[b]
            .partial_cmp(&order_scores[a])
            .expect("finite scores")
            .then(rank[a].cmp(&rank[b]))
            .then(a.cmp(&b))
    });
}

/// The crate's NMS, ordering candidates by [`ordering_scores`]. Its stable sort breaks exact
/// ties by index, so the candidates are handed over permuted: ranked ones first, in rank order.
fn nms_preferring(
    boxes: &[f32],
    cols: usize,
    order_scores: &[f32],
    rank: &[usize],
    cfg: &NmsConfig,
) -> Vec<usize> {
    let mut perm: Vec<usize> = (0..order_scores.len()).collect();
    perm.sort_by_key(|&i| (rank[i], i));
    let pb: Vec<f32> = perm
        .iter()
        .flat_map(|&i| boxes[i * cols..(i + 1) * cols].to_vec())
        .collect();
    let ps: Vec<f32> = perm.iter().map(|&i| order_scores[i]).collect();
    let keep = nms_bev(&pb, cols, &ps, cfg).expect("valid NMS input");
    keep.into_iter().map(|k| perm[k]).collect()
}

/// The candidate that reproduces a reference detection: same score (to 1e-6) and every box
/// value within `tol`. Returns the closest such candidate.
fn find_candidate(
    ref_box: &[f32],
    ref_score: f32,
    cols: usize,
    boxes: &[f32],
    scores: &[f32],
    tol: f32,
) -> Option<usize> {
    (0..scores.len())
        .filter(|&i| (scores[i] - ref_score).abs() <= 1e-6)
        .map(|i| (i, max_abs_diff(&boxes[i * cols..(i + 1) * cols], ref_box)))
        .filter(|&(_, d)| d <= tol)
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(i, _)| i)
}

/// Our kept detections must be the reference's, in order: same label, score within 1e-4, BEV
/// IoU >= 0.99 and (stricter, because IoU cannot see a flipped heading) every box value,
/// heading included, within `tol`.
fn assert_same_detections(
    cols: usize,
    ours: (&[f32], &[f32], &[i64]),
    reference: (&[f32], &[f32], &[i64]),
    tol: f32,
) {
    let (ob, os, ol) = ours;
    let (rb, rs, rl) = reference;
    assert_eq!(os.len(), rs.len(), "number of detections");
    for i in 0..rs.len() {
        let (o, r) = (&ob[i * cols..(i + 1) * cols], &rb[i * cols..(i + 1) * cols]);
        assert_eq!(ol[i], rl[i], "label of detection {i}");
        assert!((os[i] - rs[i]).abs() <= 1e-4, "score of detection {i}");
        let iou = bev_iou(
            &BevBox::from_lidar(o).expect("7+ columns"),
            &BevBox::from_lidar(r).expect("7+ columns"),
        );
        assert!(
            iou >= 0.99,
            "detection {i}: IoU {iou}\n ours {o:?}\n  ref {r:?}"
        );
        assert!(
            max_abs_diff(o, r) <= tol,
            "detection {i}:\n ours {o:?}\n  ref {r:?}"
        );
    }
}

/// KITTI PointPillars anchors (align_center False): `(248, 216, 3 classes, 2 rotations, 7)`.
fn kitti_pointpillars_anchors() -> Vec<f32> {
    let (nx, ny) = (216usize, 248usize);
    let (x_min, x_max, y_min, y_max) = (0f32, 69.12f32, -39.68f32, 39.68f32);
    // Range values are f32; the step is computed in f64 (notes 1.5).
    let x_step = (x_max - x_min) as f64 / (nx - 1) as f64;
    let y_step = (y_max - y_min) as f64 / (ny - 1) as f64;
    let sizes: [[f32; 3]; 3] = [[3.9, 1.6, 1.56], [0.8, 0.6, 1.73], [1.76, 0.6, 1.73]];
    let bottoms: [f32; 3] = [-1.78, -0.6, -0.6];
    let rots: [f32; 2] = [0.0, 1.57];
    let mut a = Vec::with_capacity(ny * nx * 3 * 2 * 7);
    for j in 0..ny {
        let y = (y_min as f64 + j as f64 * y_step) as f32;
        for i in 0..nx {
            let x = (x_min as f64 + i as f64 * x_step) as f32;
            for c in 0..3 {
                let [dx, dy, dz] = sizes[c];
                let z = bottoms[c] + dz / 2.0;
                for &r in &rots {
                    a.extend_from_slice(&[x, y, z, dx, dy, dz, r]);
                }
            }
        }
    }
    a
}

#[test]
fn pointpillars_kitti_decoding_and_nms_match_openpcdet() {
    let bytes = read(&reference("pointpillar_kitti_000008"));
    let st = SafeTensors::deserialize(&bytes).expect("golden.safetensors parses");
    let (box_shape, box_preds) = f32s(&st, "raw.box_preds");
    let (_, cls_preds) = f32s(&st, "raw.cls_preds");
    let (_, dir_preds) = f32s(&st, "raw.dir_cls_preds");
    assert_eq!(box_shape, vec![1, 248, 216, 42]);
    let anchors = kitti_pointpillars_anchors();
    let n = anchors.len() / 7;
    assert_eq!(n, 321_408);

    // Decode every anchor, then correct the heading with the direction classifier.
    let coder = ResidualCoder::new(7, false).unwrap();
    let mut boxes = coder.decode(&box_preds, &anchors, 7).unwrap();
    let dir = DirClassifier::KITTI_POINTPILLARS;
    for a in 0..n {
        boxes[a * 7 + 6] = dir.apply(boxes[a * 7 + 6], &dir_preds[a * 2..a * 2 + 2]);
    }

    // Class-agnostic post-processing: max sigmoid score and its label, score >= 0.1.
    let (mut cand_boxes, mut cand_scores, mut cand_labels) = (Vec::new(), Vec::new(), Vec::new());
    for a in 0..n {
        let probs: Vec<f32> = cls_preds[a * 3..a * 3 + 3]
            .iter()
            .map(|&x| sigmoid(x))
            .collect();
        let label = argmax_first(&probs);
        if probs[label] >= 0.1 {
            cand_boxes.extend_from_slice(&boxes[a * 7..a * 7 + 7]);
            cand_scores.push(probs[label]);
            cand_labels.push(label as i64 + 1);
        }
    }

    let ref_boxes = f32s(&st, "pred_boxes").1;
    let ref_scores = f32s(&st, "pred_scores").1;
    let ref_labels = i64s(&st, "pred_labels");
    assert_eq!(ref_scores.len(), 338);

    // Every reference detection is one of our decoded candidates, to 1e-4 (decoding and
    // direction correction are right for all of them). Its position in the output ranks it.
    let mut rank = vec![UNRANKED; cand_scores.len()];
    for i in 0..ref_scores.len() {
        let r = &ref_boxes[i * 7..i * 7 + 7];
        let c = find_candidate(r, ref_scores[i], 7, &cand_boxes, &cand_scores, 1e-4)
            .unwrap_or_else(|| panic!("reference detection {i} {r:?} is not among our boxes"));
        assert_eq!(
            rank[c], UNRANKED,
            "two reference detections match candidate {c}"
        );
        rank[c] = i;
    }

    let order_scores = ordering_scores(&cand_scores, &rank, &ref_scores);
    let cfg = NmsConfig::KITTI_POINTPILLARS;
    let keep = nms_preferring(&cand_boxes, 7, &order_scores, &rank, &cfg);
    // NMS did real work: without suppression the first 338 would be different boxes.
    let unsuppressed = NmsConfig {
        iou_thresh: 2.0,
        ..cfg
    };
    let first = nms_preferring(&cand_boxes, 7, &order_scores, &rank, &unsuppressed);
    assert_ne!(first[..keep.len()], keep[..]);
    let ours_boxes: Vec<f32> = keep
        .iter()
        .flat_map(|&k| cand_boxes[k * 7..k * 7 + 7].to_vec())
        .collect();
    let ours_scores: Vec<f32> = keep.iter().map(|&k| cand_scores[k]).collect();
    let ours_labels: Vec<i64> = keep.iter().map(|&k| cand_labels[k]).collect();
    assert_same_detections(
        7,
        (&ours_boxes, &ours_scores, &ours_labels),
        (&ref_boxes, &ref_scores, &ref_labels),
        1e-4,
    );
}

/// One CenterPoint head's raw outputs, decoded per pixel as `decode_bbox_from_heatmap` does.
struct CenterHead {
    ncls: usize,
    hw: usize,
    width: usize,
    scores: Vec<f32>,
    center: Vec<f32>,
    center_z: Vec<f32>,
    dim: Vec<f32>,
    rot: Vec<f32>,
    vel: Vec<f32>,
}

impl CenterHead {
    fn load(st: &SafeTensors, h: usize) -> Self {
        let get = |b: &str| f32s(st, &format!("raw.head{h}.{b}"));
        let (shape, hm) = get("hm");
        CenterHead {
            ncls: shape[1],
            hw: shape[2] * shape[3],
            width: shape[3],
            scores: hm.iter().map(|&x| sigmoid(x)).collect(),
            center: get("center").1,
            center_z: get("center_z").1,
            dim: get("dim").1,
            rot: get("rot").1,
            vel: get("vel").1,
        }
    }

    /// `[x, y, z, dx, dy, dz, heading, vx, vy]` at pixel `p` (stride 4, voxel 0.2, min −51.2).
    fn decode(&self, p: usize) -> [f32; 9] {
        let (hw, w) = (self.hw, self.width);
        let xs = (p % w) as f32 + self.center[p];
        let ys = (p / w) as f32 + self.center[hw + p];
        [
            xs * 4.0 * 0.2 + -51.2,
            ys * 4.0 * 0.2 + -51.2,
            self.center_z[p],
            self.dim[p].exp(),
            self.dim[hw + p].exp(),
            self.dim[2 * hw + p].exp(),
            self.rot[hw + p].atan2(self.rot[p]),
            self.vel[p],
            self.vel[hw + p],
        ]
    }
}

#[test]
fn centerpoint_nuscenes_nms_matches_openpcdet() {
    let bytes = read(&reference("centerpoint_pp_nuscenes"));
    let st = SafeTensors::deserialize(&bytes).expect("golden.safetensors parses");
    let ref_boxes = f32s(&st, "pred_boxes").1;
    let ref_scores = f32s(&st, "pred_scores").1;
    let ref_labels = i64s(&st, "pred_labels");
    assert_eq!(ref_scores.len(), 498);
    // Global class index of each head's classes (0-based).
    let heads: [&[i64]; 6] = [&[0], &[1, 2], &[3, 4], &[5], &[6, 7], &[8, 9]];
    let cfg = NmsConfig {
        iou_thresh: 0.2,
        pre_max: Some(1000),
        post_max: Some(83),
    };
    const K: usize = 500;
    let limit = [-61.2f32, -61.2, -10.0, 61.2, 61.2, 10.0];

    let (mut ours_boxes, mut ours_scores, mut ours_labels) = (Vec::new(), Vec::new(), Vec::new());
    let mut ref_start = 0;
    let mut suppressed_somewhere = false;
    for (h, classes) in heads.iter().enumerate() {
        let head = CenterHead::load(&st, h);
        let (ncls, hw) = (head.ncls, head.hw);
        assert_eq!(ncls, classes.len());
        // This head's reference detections: the next block whose labels are its classes.
        let ref_end = ref_start
            + ref_labels[ref_start..]
                .iter()
                .take_while(|&&l| classes.contains(&(l - 1)))
                .count();
        // Rank every (class, pixel) that reproduces a reference detection.
        let mut rank = vec![UNRANKED; ncls * hw];
        let decoded: Vec<f32> = (0..hw).flat_map(|p| head.decode(p)).collect();
        for i in ref_start..ref_end {
            let c = classes
                .iter()
                .position(|&g| g == ref_labels[i] - 1)
                .expect("label of this head");
            let r = &ref_boxes[i * 9..i * 9 + 9];
            let s = &head.scores[c * hw..(c + 1) * hw];
            let p = find_candidate(r, ref_scores[i], 9, &decoded, s, 1e-3)
                .unwrap_or_else(|| panic!("head {h}: reference detection {i} not found"));
            rank[c * hw + p] = i;
        }

        let order_scores = ordering_scores(&head.scores, &rank, &ref_scores);

        // topk(K) per class over H·W, then topk(K) over the classes' candidates (class-major).
        let mut pool_scores = Vec::new();
        let mut pool_order = Vec::new();
        let mut pool_rank = Vec::new();
        let mut pool = Vec::new(); // (class, pixel)
        for c in 0..ncls {
            let mut idx: Vec<usize> = (0..hw).collect();
            sort_for_topk(
                &order_scores[c * hw..(c + 1) * hw],
                &rank[c * hw..(c + 1) * hw],
                &mut idx,
            );
            for &p in &idx[..K] {
                pool.push((c, p));
                pool_scores.push(head.scores[c * hw + p]);
                pool_order.push(order_scores[c * hw + p]);
                pool_rank.push(rank[c * hw + p]);
            }
        }
        let mut top: Vec<usize> = (0..pool.len()).collect();
        sort_for_topk(&pool_order, &pool_rank, &mut top);
        top.truncate(K);

        // Decode, filter (centre inside the limit range, score > 0.1), NMS.
        let (mut boxes, mut scores, mut cls, mut ranks, mut orders) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for &t in &top {
            let (c, p) = pool[t];
            let b = head.decode(p);
            let inside = (0..3).all(|k| b[k] >= limit[k] && b[k] <= limit[k + 3]);
            if inside && pool_scores[t] > 0.1 {
                boxes.extend_from_slice(&b);
                scores.push(pool_scores[t]);
                cls.push(classes[c] + 1);
                ranks.push(pool_rank[t]);
                orders.push(pool_order[t]);
            }
        }
        let keep = nms_preferring(&boxes, 9, &orders, &ranks, &cfg);
        let unsuppressed = NmsConfig {
            iou_thresh: 2.0,
            ..cfg
        };
        let first = nms_preferring(&boxes, 9, &orders, &ranks, &unsuppressed);
        suppressed_somewhere |= first[..keep.len()] != keep[..];
        for &k in &keep {
            ours_boxes.extend_from_slice(&boxes[k * 9..k * 9 + 9]);
            ours_scores.push(scores[k]);
            ours_labels.push(cls[k]);
        }
        ref_start = ref_end;
    }
    assert_eq!(
        ref_start,
        ref_scores.len(),
        "reference detections grouped by head"
    );
    assert!(
        suppressed_somewhere,
        "the fixture should exercise suppression"
    );
    assert_same_detections(
        9,
        (&ours_boxes, &ours_scores, &ours_labels),
        (&ref_boxes, &ref_scores, &ref_labels),
        1e-3,
    );
}
