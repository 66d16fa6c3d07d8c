//! KITTI evaluation (`pruneview::eval`) against APs derived by hand from the rules of
//! OpenPCDet's `kitti_object_eval_python`, and on a real KITTI label file.
//!
//! How the expected numbers follow: precision is sampled at (at most) 41 score thresholds that
//! `get_thresholds` picks so that recall steps by about 1/40; sample k stands for recall k/40.
//! With no false positives above a threshold the precision there is 1, and samples whose
//! recall cannot be reached are 0. AP|R11 averages samples 0, 4, ..., 40; AP|R40 samples
//! 1..=40. So with N valid objects all found and nothing else, AP = 100 only when N >= 41
//! (N = 40 leaves sample 40 empty: R11 = 10/11, R40 = 39/40).

use pruneview::eval::matching::{SAMPLE_POINTS, sample_thresholds};
use pruneview::eval::overlap::{ImageCriterion, image_box_overlap, overlap_matrix};
use pruneview::eval::{
    Difficulty, EvalOptions, EvalReport, IouSet, KittiClass, Metric, RecallPoints, evaluate,
    evaluate_with,
};
use pruneview::pointcloud::KittiObject;
use pruneview::pointcloud::kitti::{load_labels, parse_labels};

const CAR: KittiClass = KittiClass::Car;
const EPS: f64 = 1e-9;

/// A fully visible object: camera-frame bottom centre (x, 1.6, z), 3.9 x 1.6 x 1.5 m, ry = 0,
/// image box `slot`-th from the left, `height` px tall.
fn obj(name: &str, x: f32, z: f32, slot: usize, height: f32) -> KittiObject {
    let x1 = 50.0 + 120.0 * slot as f32;
    KittiObject {
        name: name.to_string(),
        truncated: 0.0,
        occluded: 0,
        alpha: 0.0,
        bbox: [x1, 150.0, x1 + 100.0, 150.0 + height],
        h: 1.5,
        w: 1.6,
        l: 3.9,
        location: [x, 1.6, z],
        rotation_y: 0.0,
        score: None,
    }
}

fn scored(mut o: KittiObject, score: f32) -> KittiObject {
    o.score = Some(score);
    o
}

/// `frames` frames of 4 cars each (easy: 60 px tall, no occlusion or truncation).
fn scene(frames: usize) -> Vec<Vec<KittiObject>> {
    (0..frames)
        .map(|_| {
            vec![
                obj("Car", -6.0, 10.0, 0, 60.0),
                obj("Car", 6.0, 10.0, 1, 60.0),
                obj("Car", -6.0, 25.0, 2, 60.0),
                obj("Car", 6.0, 25.0, 3, 60.0),
            ]
        })
        .collect()
}

/// Detections equal to the ground truth with distinct scores, interleaved across frames so that
/// the global score order differs from the frame order.
fn perfect(gt: &[Vec<KittiObject>]) -> Vec<Vec<KittiObject>> {
    let n = gt.len();
    gt.iter()
        .enumerate()
        .map(|(f, objs)| {
            objs.iter()
                .enumerate()
                .map(|(k, o)| {
                    let rank = (k * n + (f * 7) % n) as f32;
                    scored(o.clone(), 0.95 - rank * 0.004)
                })
                .collect()
        })
        .collect()
}

fn ap(r: &EvalReport, class: KittiClass, m: Metric, d: Difficulty, p: RecallPoints) -> f64 {
    r.ap(class, m, d, p)
        .unwrap_or_else(|| panic!("no {class} {m:?} {d:?} in the report"))
}

/// Asserts AP|R11 and AP|R40 of `class` for every metric in `metrics` and every difficulty.
fn assert_all(
    r: &EvalReport,
    class: KittiClass,
    metrics: &[Metric],
    diffs: &[Difficulty],
    r11: f64,
    r40: f64,
) {
    for &m in metrics {
        for &d in diffs {
            let (a11, a40) = (
                ap(r, class, m, d, RecallPoints::R11),
                ap(r, class, m, d, RecallPoints::R40),
            );
            assert!(
                (a11 - r11).abs() < EPS && (a40 - r40).abs() < EPS,
                "{class} {m:?} {d:?}: got R11 {a11} R40 {a40}, expected {r11} {r40}\n{}",
                r.to_table()
            );
        }
    }
}

const ALL_M: [Metric; 3] = [Metric::Bbox, Metric::Bev, Metric::ThreeD];
const BOX_M: [Metric; 2] = [Metric::Bev, Metric::ThreeD];
const ALL_D: [Difficulty; 3] = [Difficulty::Easy, Difficulty::Moderate, Difficulty::Hard];

#[test]
fn thresholds_sample_recall_in_fortieths() {
    let scores = |n: usize| (0..n).map(|i| 1.0 - i as f64 * 0.01).collect::<Vec<_>>();
    // One object: one threshold.
    assert_eq!(sample_thresholds(&scores(1), 1), vec![1.0]);
    // 40 objects, all found: one threshold per object, sample 40 stays empty.
    assert_eq!(sample_thresholds(&scores(40), 40).len(), 40);
    // 41 or more: all 41 samples.
    assert_eq!(sample_thresholds(&scores(41), 41).len(), SAMPLE_POINTS);
    assert_eq!(sample_thresholds(&scores(100), 100).len(), SAMPLE_POINTS);
    // 100 found of 200: recall 0.5 reaches samples 0..=20.
    assert_eq!(sample_thresholds(&scores(100), 200).len(), 21);
    // Thresholds are scores, highest first, and the last (lowest) score is always one.
    let t = sample_thresholds(&scores(100), 100);
    assert!(t.windows(2).all(|w| w[0] > w[1]));
    assert_eq!(t[0], 1.0);
    assert!((t[40] - 0.01).abs() < 1e-12);
    assert!(sample_thresholds(&[], 10).is_empty());
    assert!(sample_thresholds(&[0.5], 0).is_empty());
}

#[test]
fn perfect_detections_give_100_and_few_objects_are_quantized() {
    // 12 frames x 4 cars = 48 objects.
    let gt = scene(12);
    let r = evaluate(&gt, &perfect(&gt), &KittiClass::DEFAULT).unwrap();
    assert_all(&r, CAR, &ALL_M, &ALL_D, 100.0, 100.0);
    assert_eq!(
        r.get(CAR, Metric::Bev, Difficulty::Moderate)
            .unwrap()
            .num_valid_gt,
        48
    );
    // Classes without ground truth score 0.
    assert_all(&r, KittiClass::Pedestrian, &ALL_M, &ALL_D, 0.0, 0.0);

    // 10 frames = 40 objects: sample 40 (recall 1.0) is never reached.
    let gt = scene(10);
    let r = evaluate(&gt, &perfect(&gt), &[CAR]).unwrap();
    assert_all(&r, CAR, &ALL_M, &ALL_D, 1000.0 / 11.0, 97.5);

    // One object: AP|R11 = 1/11, AP|R40 = 0 (the notes' 9.09).
    let gt = vec![vec![obj("Car", 0.0, 10.0, 0, 60.0)]];
    let r = evaluate(&gt, &perfect(&gt), &[CAR]).unwrap();
    assert_all(&r, CAR, &ALL_M, &ALL_D, 100.0 / 11.0, 0.0);
}

#[test]
fn one_missed_object_of_48() {
    let gt = scene(12);
    let mut dt = perfect(&gt);
    dt[5].remove(2);
    let r = evaluate(&gt, &dt, &[CAR]).unwrap();
    // Recall tops out at 47/48 < 1: sample 40 is 0, every other sample has precision 1.
    assert_all(&r, CAR, &ALL_M, &ALL_D, 1000.0 / 11.0, 97.5);
}

#[test]
fn spurious_detections_cost_by_score() {
    let gt = scene(12);
    let spurious = |score| scored(obj("Car", 0.0, 50.0, 5, 60.0), score);

    // Above every true positive: one FP at every threshold; the precision tail max is 48/49.
    let mut dt = perfect(&gt);
    dt[3].push(spurious(0.99));
    let r = evaluate(&gt, &dt, &[CAR]).unwrap();
    let p = 100.0 * 48.0 / 49.0;
    assert_all(&r, CAR, &ALL_M, &ALL_D, p, p);

    // Below every true positive: below the lowest threshold, so never counted.
    let mut dt = perfect(&gt);
    dt[3].push(spurious(0.01));
    let r = evaluate(&gt, &dt, &[CAR]).unwrap();
    assert_all(&r, CAR, &ALL_M, &ALL_D, 100.0, 100.0);
}

#[test]
fn score_ordering_across_frames() {
    // 41 objects over 11 frames (the last frame holds one), scores 1.00, 0.99, ... spread so
    // that consecutive ranks sit in different frames; one FP ranked between the 20th and 21st.
    let mut gt = scene(10);
    gt.push(vec![obj("Car", -6.0, 10.0, 0, 60.0)]);
    let mut dt: Vec<Vec<KittiObject>> = vec![Vec::new(); gt.len()];
    let mut rank = 0usize;
    for k in 0..4 {
        for (f, objs) in gt.iter().enumerate() {
            if let Some(o) = objs.get(k) {
                let score = 1.0 - rank as f32 * 0.01;
                dt[f].push(scored(o.clone(), score));
                rank += 1;
            }
        }
    }
    assert_eq!(rank, 41);
    dt[7].push(scored(obj("Car", 0.0, 60.0, 6, 60.0), 1.0 - 19.5 * 0.01));
    let r = evaluate(&gt, &dt, &[CAR]).unwrap();
    // Thresholds are the 41 TP scores. At thresholds 0..20 precision is 1; from 20 on one FP:
    // (i+1)/(i+2), whose tail maximum is 41/42.
    let q = 41.0 / 42.0;
    let r40 = (19.0 + 21.0 * q) / 40.0 * 100.0;
    let r11 = (5.0 + 6.0 * q) / 11.0 * 100.0;
    assert_all(&r, CAR, &ALL_M, &ALL_D, r11, r40);
    let res = r.get(CAR, Metric::Bev, Difficulty::Moderate).unwrap();
    assert_eq!(res.thresholds.len(), 41);
    assert!((res.precision[19] - 1.0).abs() < EPS && (res.precision[20] - q).abs() < EPS);
}

#[test]
fn neighbour_classes_are_ignored_not_false() {
    let gt0 = scene(12);
    // A Car detection on a Van: matched to an ignored object, neither TP nor FP.
    let mut gt = gt0.clone();
    gt[2].push(obj("Van", 0.0, 50.0, 5, 60.0));
    let mut dt = perfect(&gt0);
    dt[2].push(scored(obj("Car", 0.0, 50.0, 5, 60.0), 0.99));
    let r = evaluate(&gt, &dt, &[CAR]).unwrap();
    assert_all(&r, CAR, &ALL_M, &ALL_D, 100.0, 100.0);
    // Missing the Van costs nothing either.
    let r = evaluate(&gt, &perfect(&gt0), &[CAR]).unwrap();
    assert_all(&r, CAR, &ALL_M, &ALL_D, 100.0, 100.0);

    // The same on a Truck (no neighbour of Car): a false positive.
    let mut gt = gt0.clone();
    gt[2].push(obj("Truck", 0.0, 50.0, 5, 60.0));
    let r = evaluate(&gt, &dt, &[CAR]).unwrap();
    let p = 100.0 * 48.0 / 49.0;
    assert_all(&r, CAR, &ALL_M, &ALL_D, p, p);

    // A detection labelled Van is invisible to the Car evaluation.
    let mut dt = perfect(&gt0);
    dt[2].push(scored(obj("Van", 0.0, 50.0, 5, 60.0), 0.99));
    let r = evaluate(&gt0, &dt, &[CAR]).unwrap();
    assert_all(&r, CAR, &ALL_M, &ALL_D, 100.0, 100.0);

    // Person_sitting is Pedestrian's neighbour: 41 pedestrians found, a Pedestrian detection
    // on a Person_sitting costs nothing.
    let ped = |x: f32, slot| {
        let mut o = obj("Pedestrian", x, 15.0, slot, 80.0);
        (o.h, o.w, o.l) = (1.7, 0.6, 0.8);
        o
    };
    let mut gt: Vec<Vec<KittiObject>> = (0..41).map(|_| vec![ped(-3.0, 0)]).collect();
    let mut dt = perfect(&gt);
    let mut sitting = ped(3.0, 1);
    sitting.name = "Person_sitting".into();
    gt[0].push(sitting.clone());
    sitting.name = "Pedestrian".into();
    dt[0].push(scored(sitting, 0.99));
    let r = evaluate(&gt, &dt, &[KittiClass::Pedestrian]).unwrap();
    assert_all(&r, KittiClass::Pedestrian, &ALL_M, &ALL_D, 100.0, 100.0);
}

#[test]
fn dontcare_absorbs_detections_for_image_boxes_only() {
    let gt0 = scene(12);
    let mut gt = gt0.clone();
    let mut dc = obj("DontCare", -1000.0, -1000.0, 5, 60.0);
    (dc.h, dc.w, dc.l, dc.truncated, dc.occluded) = (-1.0, -1.0, -1.0, -1.0, -1);
    dc.location = [-1000.0, -1000.0, -1000.0];
    dc.bbox = [640.0, 140.0, 760.0, 220.0];
    gt[4].push(dc);
    let mut dt = perfect(&gt0);
    // Image box [650, 150, 750, 210]: entirely inside the DontCare region.
    dt[4].push(scored(obj("Car", 0.0, 50.0, 5, 60.0), 0.99));
    let r = evaluate(&gt, &dt, &[CAR]).unwrap();
    assert_all(&r, CAR, &[Metric::Bbox], &ALL_D, 100.0, 100.0);
    let p = 100.0 * 48.0 / 49.0;
    assert_all(&r, CAR, &BOX_M, &ALL_D, p, p);
}

#[test]
fn difficulties_filter_ground_truth_and_low_detections() {
    // 41 easy cars found; 41 moderate-only cars (occluded 1, 30 px) missed.
    let mut gt: Vec<Vec<KittiObject>> = (0..41)
        .map(|_| vec![obj("Car", -6.0, 10.0, 0, 60.0)])
        .collect();
    let dt = perfect(&gt);
    for f in &mut gt {
        let mut o = obj("Car", 6.0, 30.0, 1, 30.0);
        o.occluded = 1;
        f.push(o);
    }
    let r = evaluate(&gt, &dt, &[CAR]).unwrap();
    // Easy: the occluded cars are ignored. Moderate and hard: recall 1/2 reaches samples 0..=20.
    assert_all(&r, CAR, &ALL_M, &[Difficulty::Easy], 100.0, 100.0);
    let mh = [Difficulty::Moderate, Difficulty::Hard];
    assert_all(&r, CAR, &ALL_M, &mh, 600.0 / 11.0, 50.0);
    assert_eq!(
        r.get(CAR, Metric::Bev, Difficulty::Easy)
            .unwrap()
            .num_valid_gt,
        41
    );
    assert_eq!(
        r.get(CAR, Metric::Bev, Difficulty::Hard)
            .unwrap()
            .num_valid_gt,
        82
    );

    // Truncation 0.3 is moderate (limit inclusive), 0.31 only hard; height 40 px is not easy
    // (the height must exceed 40), 25 px is nothing.
    let variants: [(f32, f32, [usize; 3]); 4] = [
        (0.15, 60.0, [41, 41, 41]),
        (0.3, 60.0, [0, 41, 41]),
        (0.31, 60.0, [0, 0, 41]),
        (0.0, 40.0, [0, 41, 41]),
    ];
    for (trunc, height, counts) in variants {
        let gt: Vec<Vec<KittiObject>> = (0..41)
            .map(|_| {
                let mut o = obj("Car", 0.0, 10.0, 0, height);
                o.truncated = trunc;
                vec![o]
            })
            .collect();
        let r = evaluate(&gt, &perfect(&gt), &[CAR]).unwrap();
        for (d, want) in ALL_D.into_iter().zip(counts) {
            let got = r.get(CAR, Metric::Bev, d).unwrap();
            assert_eq!(
                got.num_valid_gt, want,
                "trunc {trunc} height {height} {d:?}"
            );
            let expect = if want > 0 { 100.0 } else { 0.0 };
            assert!((got.ap_r40 - expect).abs() < EPS, "trunc {trunc} {d:?}");
        }
    }
    let gt: Vec<Vec<KittiObject>> = (0..41)
        .map(|_| vec![obj("Car", 0.0, 10.0, 0, 25.0)])
        .collect();
    let r = evaluate(&gt, &perfect(&gt), &[CAR]).unwrap();
    assert_all(&r, CAR, &ALL_M, &ALL_D, 0.0, 0.0);

    // A spurious detection 30 px tall: below easy's 40 px it is ignored, for moderate it is
    // a false positive.
    let gt = scene(12);
    let mut dt = perfect(&gt);
    dt[0].push(scored(obj("Car", 0.0, 50.0, 5, 30.0), 0.99));
    let r = evaluate(&gt, &dt, &[CAR]).unwrap();
    assert_all(&r, CAR, &ALL_M, &[Difficulty::Easy], 100.0, 100.0);
    let p = 100.0 * 48.0 / 49.0;
    assert_all(&r, CAR, &ALL_M, &mh, p, p);
}

#[test]
fn perturbed_boxes_pass_or_fail_by_class_threshold() {
    let gt = scene(12);
    // 1 m along the 3.9 m length: BEV and 3-D IoU = 2.9 / 4.9 = 0.59. Fails Car's 0.7, passes
    // the loose set's 0.5. Image boxes untouched.
    let mut dt = perfect(&gt);
    for f in &mut dt {
        for d in f {
            d.location[0] += 1.0;
        }
    }
    let r = evaluate(&gt, &dt, &[CAR]).unwrap();
    assert_all(&r, CAR, &BOX_M, &ALL_D, 0.0, 0.0);
    assert_all(&r, CAR, &[Metric::Bbox], &ALL_D, 100.0, 100.0);
    let loose = EvalOptions {
        classes: vec![CAR],
        metrics: BOX_M.to_vec(),
        iou_set: IouSet::Loose,
    };
    let r = evaluate_with(&gt, &dt, &loose).unwrap();
    assert_all(&r, CAR, &BOX_M, &ALL_D, 100.0, 100.0);
    assert_eq!(
        r.get(CAR, Metric::Bev, Difficulty::Easy)
            .unwrap()
            .min_overlap,
        0.5
    );

    // Perturbing only half the cars (those in even frames): 24 of 48 found.
    let mut dt = perfect(&gt);
    for f in dt.iter_mut().step_by(2) {
        for d in f {
            d.location[0] += 1.0;
        }
    }
    let r = evaluate(&gt, &dt, &[CAR]).unwrap();
    // The shifted ones are FPs interleaved in score with the TPs: strictly between 0 and 100,
    // while the image boxes are still perfect.
    for d in ALL_D {
        let a = ap(&r, CAR, Metric::Bev, d, RecallPoints::R40);
        assert!(a > 0.0 && a < 100.0, "{a}");
    }
    assert_all(&r, CAR, &[Metric::Bbox], &ALL_D, 100.0, 100.0);

    // A vertical shift changes the 3-D IoU only: 0.3 m of 1.5 m gives 1.2 / 1.8 = 0.67.
    let mut dt = perfect(&gt);
    for f in &mut dt {
        for d in f {
            d.location[1] += 0.3;
        }
    }
    let r = evaluate(&gt, &dt, &[CAR]).unwrap();
    assert_all(&r, CAR, &[Metric::Bbox, Metric::Bev], &ALL_D, 100.0, 100.0);
    assert_all(&r, CAR, &[Metric::ThreeD], &ALL_D, 0.0, 0.0);
}

#[test]
fn overlap_adapter_matches_geometry() {
    let a = obj("Car", 0.0, 10.0, 0, 60.0);
    let mut b = a.clone();
    b.location[1] += 0.3;
    let bev = overlap_matrix(
        std::slice::from_ref(&b),
        std::slice::from_ref(&a),
        Metric::Bev,
    );
    let d3 = overlap_matrix(
        std::slice::from_ref(&b),
        std::slice::from_ref(&a),
        Metric::ThreeD,
    );
    assert!((bev[0] - 1.0).abs() < 1e-9);
    assert!((d3[0] - 1.2 / 1.8).abs() < 1e-6);
    // A quarter turn of a square footprint is the same footprint.
    let mut sq = a.clone();
    (sq.l, sq.w) = (2.0, 2.0);
    let mut turned = sq.clone();
    turned.rotation_y = std::f32::consts::FRAC_PI_2;
    let m = overlap_matrix(&[turned], &[sq.clone()], Metric::Bev);
    assert!((m[0] - 1.0).abs() < 1e-6);
    // The yaw turns the length: a 4 x 2 box turned 90 degrees overlaps its original in 2 x 2.
    let mut long = sq.clone();
    long.l = 4.0;
    let mut long_t = long.clone();
    long_t.rotation_y = std::f32::consts::FRAC_PI_2;
    let m = overlap_matrix(&[long_t], &[long.clone()], Metric::Bev);
    assert!((m[0] - 4.0 / 12.0).abs() < 1e-6, "{}", m[0]);
    let cb = long.camera_box();
    assert_eq!((cb.l, cb.h, cb.w, cb.z), (4.0, 1.5, 2.0, 10.0));
    // Image boxes: IoU, and intersection over the first box for DontCare.
    let p = [0.0, 0.0, 10.0, 10.0];
    let q = [5.0, 0.0, 15.0, 10.0];
    assert!((image_box_overlap(&p, &q, ImageCriterion::Union) - 50.0 / 150.0).abs() < 1e-12);
    assert!((image_box_overlap(&p, &q, ImageCriterion::First) - 0.5).abs() < 1e-12);
    assert_eq!(
        image_box_overlap(&p, &[10.0, 0.0, 20.0, 10.0], ImageCriterion::Union),
        0.0
    );
}

fn real_label() -> Vec<KittiObject> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/data/kitti/training/label_2/000008.txt"
    );
    load_labels(path).unwrap()
}

#[test]
fn real_label_against_itself_and_perturbed() {
    let label = real_label();
    // 6 cars and 4 DontCare regions. Easy counts 1 car, moderate and hard 4 (one car is 39.6 px
    // tall, two are truncated or occluded beyond hard).
    assert_eq!(label.len(), 10);
    let with_scores = |objs: &[KittiObject], shift: [f32; 3]| -> Vec<KittiObject> {
        objs.iter()
            .filter(|o| !o.is_dontcare())
            .enumerate()
            .map(|(k, o)| {
                let mut d = scored(o.clone(), 0.9 - 0.1 * k as f32);
                for (c, s) in d.location.iter_mut().zip(shift) {
                    *c += s;
                }
                d
            })
            .collect()
    };

    // One frame: too few objects for 100 (see the module docs). Easy has 1 car: R11 = 1/11,
    // R40 = 0. Moderate / hard have 4: samples 0..=3, R11 = 1/11, R40 = 3/40.
    let gt = vec![label.clone()];
    let r = evaluate(&gt, &[with_scores(&label, [0.0; 3])], &KittiClass::DEFAULT).unwrap();
    assert_eq!(
        r.get(CAR, Metric::Bev, Difficulty::Easy)
            .unwrap()
            .num_valid_gt,
        1
    );
    assert_eq!(
        r.get(CAR, Metric::Bev, Difficulty::Moderate)
            .unwrap()
            .num_valid_gt,
        4
    );
    assert_eq!(
        r.get(CAR, Metric::Bev, Difficulty::Hard)
            .unwrap()
            .num_valid_gt,
        4
    );
    assert_all(&r, CAR, &ALL_M, &[Difficulty::Easy], 100.0 / 11.0, 0.0);
    let mh = [Difficulty::Moderate, Difficulty::Hard];
    assert_all(&r, CAR, &ALL_M, &mh, 100.0 / 11.0, 7.5);
    // The label file itself as detections (no score field: score 0, as OpenPCDet reads it),
    // DontCare lines included.
    let r = evaluate(&gt, &gt, &[CAR]).unwrap();
    assert_all(&r, CAR, &ALL_M, &mh, 100.0 / 11.0, 7.5);

    // The frame 41 times: 41 easy cars, 164 moderate: 100 everywhere.
    let gt = vec![label.clone(); 41];
    let dt = vec![with_scores(&label, [0.0; 3]); 41];
    let r = evaluate(&gt, &dt, &KittiClass::DEFAULT).unwrap();
    assert_all(&r, CAR, &ALL_M, &ALL_D, 100.0, 100.0);
    // No pedestrians or cyclists in this frame.
    assert_all(&r, KittiClass::Cyclist, &ALL_M, &ALL_D, 0.0, 0.0);

    // Perturbed copies. 10 cm in x and in z keeps every BEV / 3-D IoU above 0.7 (worst case,
    // the smallest car, 3.08 x 1.44 m, shifted 0.14 m along both axes: about 0.75).
    let dt = vec![with_scores(&label, [0.1, 0.0, 0.1]); 41];
    let r = evaluate(&gt, &dt, &[CAR]).unwrap();
    assert_all(&r, CAR, &ALL_M, &ALL_D, 100.0, 100.0);
    // 35 cm down: BEV untouched, 3-D IoU at most (1.7 - 0.35) / (1.7 + 0.35) = 0.66.
    let dt = vec![with_scores(&label, [0.0, 0.35, 0.0]); 41];
    let r = evaluate(&gt, &dt, &[CAR]).unwrap();
    assert_all(&r, CAR, &[Metric::Bbox, Metric::Bev], &ALL_D, 100.0, 100.0);
    assert_all(&r, CAR, &[Metric::ThreeD], &ALL_D, 0.0, 0.0);
}

#[test]
fn report_json_round_trip_and_table() {
    let gt = scene(12);
    let r = evaluate(&gt, &perfect(&gt), &KittiClass::DEFAULT).unwrap();
    assert_eq!(r.results.len(), 3 * 3 * 3);
    let json = r.to_json();
    let back = EvalReport::from_json(&json).unwrap();
    assert_eq!(back, r);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["format"], "pruneview-kitti-eval/1");
    assert_eq!(v["results"][0]["class"], "Car");
    assert!(json.contains("\"metric\": \"3d\""));
    assert!(json.contains("\"difficulty\": \"moderate\""));
    let table = r.to_table();
    assert!(table.contains("Car") && table.contains("Cyclist") && table.contains("100.00"));
    assert_eq!(table.lines().count(), 2 + 9);
    let dict = r.openpcdet_dict();
    assert!(
        dict.iter()
            .any(|(k, v)| k == "Car_3d_moderate_R40" && (*v - 100.0).abs() < EPS)
    );
    assert!(dict.iter().any(|(k, _)| k == "Pedestrian_image_hard"));
}

#[test]
fn inputs_are_checked() {
    let gt = scene(2);
    let err = evaluate(&gt, &perfect(&gt)[..1], &[CAR]).unwrap_err();
    assert!(
        err.to_string().contains("2 ground-truth frames but 1"),
        "{err}"
    );
    assert_eq!(
        "person_SITTING".parse::<KittiClass>().unwrap(),
        KittiClass::PersonSitting
    );
    let err = "Tram".parse::<KittiClass>().unwrap_err();
    assert!(err.to_string().contains("Person_sitting"), "{err}");
    // Empty input evaluates to zeros rather than failing.
    let r = evaluate(&[], &[], &[CAR]).unwrap();
    assert_all(&r, CAR, &ALL_M, &ALL_D, 0.0, 0.0);
    // A result line parsed from text carries its score.
    let dt = parse_labels(
        "Car -1 -1 0.0 50 150 150 210 1.5 1.6 3.9 -6 1.6 10 0 0.75\n",
        "result.txt",
    )
    .unwrap();
    assert_eq!(dt[0].score, Some(0.75));
}
