//! Rotated IoU: hand-computed cases, and random boxes against an independent exact oracle.

use pruneview::rng::Rng;
use std::f32::consts::{FRAC_PI_2, FRAC_PI_4, PI};

use pruneview::boxes::CameraBox;
use pruneview::boxes::iou::{
    BevBox, bev_iou, bev_iou_matrix, bev_overlap, exact_iou_matrix, kitti_iou_3d, kitti_iou_bev,
    kitti_iou_bev_matrix, lidar_iou_3d, rect_iou_exact, rect_overlap_exact,
};

/// Random boxes from the crate's seeded generator, so failures reproduce.
trait RandomBox {
    fn bev(&mut self, spread: f32) -> BevBox;
}

impl RandomBox for Rng {
    fn bev(&mut self, spread: f32) -> BevBox {
        BevBox::new(
            self.range(-spread, spread),
            self.range(-spread, spread),
            self.range(0.2, 5.0),
            self.range(0.2, 5.0),
            self.range(-PI, PI),
        )
    }
}

// ---- Independent oracle: Green's theorem over edges clipped by the other polygon (f64). ----
//
// area(A ∩ B) = 1/2 ∮ (x dy − y dx) over the boundary of A ∩ B, which is made of the parts of
// A's edges inside B and the parts of B's edges inside A. Each edge is clipped parametrically
// (Cyrus-Beck), so this shares no code or method with the crate's vertex-based or
// Sutherland-Hodgman routines. Coincident edges would be counted twice: random boxes avoid them.

fn corners64(b: &BevBox) -> [[f64; 2]; 4] {
    let (s, c) = (b.heading as f64).sin_cos();
    let (hx, hy) = (b.dx as f64 / 2.0, b.dy as f64 / 2.0);
    [(-hx, -hy), (hx, -hy), (hx, hy), (-hx, hy)]
        .map(|(u, v)| [b.x as f64 + c * u - s * v, b.y as f64 + s * u + c * v])
}

fn clipped_edge_integral(p: [f64; 2], q: [f64; 2], poly: &[[f64; 2]; 4]) -> f64 {
    let (mut t0, mut t1) = (0.0f64, 1.0f64);
    for k in 0..4 {
        let a = poly[k];
        let b = poly[(k + 1) % 4];
        let side = |r: [f64; 2]| (b[0] - a[0]) * (r[1] - a[1]) - (b[1] - a[1]) * (r[0] - a[0]);
        let (fp, fq) = (side(p), side(q));
        // f(t) = fp + t (fq − fp) must be ≥ 0.
        let d = fq - fp;
        if d == 0.0 {
            if fp < 0.0 {
                return 0.0;
            }
        } else if d > 0.0 {
            t0 = t0.max(-fp / d);
        } else {
            t1 = t1.min(-fp / d);
        }
    }
    if t0 >= t1 {
        return 0.0;
    }
    let at = |t: f64| [p[0] + t * (q[0] - p[0]), p[1] + t * (q[1] - p[1])];
    let (u, v) = (at(t0), at(t1));
    0.5 * (u[0] * v[1] - v[0] * u[1])
}

fn oracle_overlap(a: &BevBox, b: &BevBox) -> f64 {
    let (ca, cb) = (corners64(a), corners64(b));
    let mut area = 0.0;
    for k in 0..4 {
        area += clipped_edge_integral(ca[k], ca[(k + 1) % 4], &cb);
        area += clipped_edge_integral(cb[k], cb[(k + 1) % 4], &ca);
    }
    area.max(0.0)
}

fn oracle_iou(a: &BevBox, b: &BevBox) -> f64 {
    let inter = oracle_overlap(a, b);
    inter / (a.dx as f64 * a.dy as f64 + b.dx as f64 * b.dy as f64 - inter)
}

/// True when a corner of one box lies outside the other but within `band` of it: there the
/// OpenPCDet routine's 1e-2 inside margin legitimately departs from exact geometry.
fn corner_near_outside(a: &BevBox, b: &BevBox, band: f64) -> bool {
    let near = |pts: [[f64; 2]; 4], bx: &BevBox| {
        let (s, c) = (bx.heading as f64).sin_cos();
        let (hx, hy) = (bx.dx as f64 / 2.0, bx.dy as f64 / 2.0);
        pts.iter().any(|p| {
            let (ox, oy) = (p[0] - bx.x as f64, p[1] - bx.y as f64);
            let (u, v) = ((ox * c + oy * s).abs(), (-ox * s + oy * c).abs());
            let outside = u > hx || v > hy;
            outside && u < hx + band && v < hy + band
        })
    };
    near(corners64(a), b) || near(corners64(b), a)
}

#[test]
fn identical_boxes_have_iou_one_at_any_heading() {
    for &h in &[
        0.0,
        0.3,
        FRAC_PI_4,
        1.0,
        FRAC_PI_2,
        2.0,
        PI,
        -2.5,
        -FRAC_PI_2,
        3.0 * FRAC_PI_4,
    ] {
        for &(dx, dy) in &[(3.9, 1.6), (0.8, 0.6), (2.0, 2.0)] {
            let b = BevBox::new(12.5, -7.25, dx, dy, h);
            let iou = bev_iou(&b, &b);
            assert!((iou - 1.0).abs() < 1e-5, "heading {h} {dx}x{dy}: iou {iou}");
            let exact = rect_iou_exact(&b, &b);
            assert!((exact - 1.0).abs() < 1e-12, "exact, heading {h}: {exact}");
        }
    }
}

#[test]
fn disjoint_boxes_have_iou_zero() {
    let a = BevBox::new(0.0, 0.0, 2.0, 1.0, 0.3);
    for b in [
        BevBox::new(10.0, 0.0, 2.0, 1.0, 0.0),
        BevBox::new(0.0, -4.5, 4.0, 1.0, 1.2),
        // Bounding boxes overlap, the rectangles do not (diamond next to a square's corner).
        BevBox::new(2.3, 2.3, 1.0, 1.0, FRAC_PI_4),
    ] {
        let oa = BevBox::new(0.0, 0.0, 2.0, 2.0, 0.0);
        for x in [&a, &oa] {
            assert_eq!(bev_overlap(x, &b), 0.0, "{x:?} vs {b:?}");
            assert_eq!(bev_iou(x, &b), 0.0);
            assert_eq!(rect_overlap_exact(x, &b), 0.0);
            assert_eq!(rect_iou_exact(x, &b), 0.0);
        }
    }
}

#[test]
fn quarter_turn_square_and_rectangle() {
    // A square turned by 90 degrees covers itself.
    let sq = BevBox::new(1.0, 2.0, 2.0, 2.0, 0.0);
    let sq90 = BevBox {
        heading: FRAC_PI_2,
        ..sq
    };
    assert!((bev_iou(&sq, &sq90) - 1.0).abs() < 1e-5);
    // f32(π/2) is 4.4e-8 rad off a true quarter turn: the exact IoU is 1 − O(1e-7).
    assert!((rect_iou_exact(&sq, &sq90) - 1.0).abs() < 1e-6);

    // A 4 x 2 rectangle and its quarter turn share a 2 x 2 square: overlap 4, union 12.
    let r = BevBox::new(-3.0, 5.0, 4.0, 2.0, 0.4);
    let r90 = BevBox {
        heading: 0.4 + FRAC_PI_2,
        ..r
    };
    assert!((bev_overlap(&r, &r90) - 4.0).abs() < 1e-5);
    assert!((bev_iou(&r, &r90) - 1.0 / 3.0).abs() < 1e-6);
    assert!((rect_overlap_exact(&r, &r90) - 4.0).abs() < 1e-9);

    // A 2 x 2 square and its 45-degree turn: regular octagon of inradius 1, area 8(√2 − 1),
    // IoU 8(√2−1) / (8 − 8(√2−1)) = 1/√2.
    let d = BevBox {
        heading: FRAC_PI_4,
        ..sq
    };
    let octagon = 8.0 * (2f64.sqrt() - 1.0);
    assert!((bev_overlap(&sq, &d) as f64 - octagon).abs() < 1e-5);
    assert!((bev_iou(&sq, &d) as f64 - 0.5f64.sqrt()).abs() < 1e-6);
    assert!((rect_overlap_exact(&sq, &d) - octagon).abs() < 1e-12);

    // Containment: a 1 x 2 box inside a 4 x 4 one: overlap 2, IoU 2/16.
    let big = BevBox::new(0.0, 0.0, 4.0, 4.0, 0.0);
    let small = BevBox::new(0.3, -0.2, 1.0, 2.0, 0.7);
    assert!((bev_iou(&big, &small) - 0.125).abs() < 1e-6);
    assert!((rect_iou_exact(&big, &small) - 0.125).abs() < 1e-12);
    // Half-overlapping unit squares: overlap 0.5, IoU 1/3.
    let u = BevBox::new(0.0, 0.0, 1.0, 1.0, 0.0);
    let v = BevBox::new(0.5, 0.0, 1.0, 1.0, 0.0);
    assert!((bev_iou(&u, &v) - 1.0 / 3.0).abs() < 1e-6);
    assert!((rect_iou_exact(&u, &v) - 1.0 / 3.0).abs() < 1e-12);
}

#[test]
fn openpcdet_margin_gives_touching_boxes_a_sliver() {
    // 2 x 2 boxes 5 mm apart: every facing corner is within the 1e-2 margin of the other box,
    // so OpenPCDet's routine sees a 0.005 x 2 overlap; exact geometry sees none.
    let a = BevBox::new(0.0, 0.0, 2.0, 2.0, 0.0);
    let b = BevBox::new(2.005, 0.0, 2.0, 2.0, 0.0);
    let ov = bev_overlap(&a, &b);
    assert!((ov - 0.01).abs() < 1e-5, "margin overlap {ov}");
    assert!((bev_iou(&a, &b) - 0.01 / 7.99).abs() < 1e-6);
    assert_eq!(rect_overlap_exact(&a, &b), 0.0);
    // 2 cm apart: outside the margin, nothing.
    let c = BevBox::new(2.02, 0.0, 2.0, 2.0, 0.0);
    assert_eq!(bev_overlap(&a, &c), 0.0);
    // Exactly touching: OpenPCDet counts the shared edge's corners, area 0.
    let t = BevBox::new(2.0, 0.0, 2.0, 2.0, 0.0);
    assert!(bev_overlap(&a, &t).abs() < 1e-6);
}

#[test]
fn random_boxes_match_exact_oracle() {
    let mut rng = Rng::new(0x5eed_0001);
    let (mut compared, mut skipped, mut overlapping) = (0, 0, 0);
    for _ in 0..20_000 {
        let a = rng.bev(3.0);
        let b = rng.bev(3.0);
        let want = oracle_iou(&a, &b);
        // Exact routine: always agrees.
        let exact = rect_iou_exact(&a, &b);
        assert!(
            (exact - want).abs() < 1e-9,
            "exact {exact} vs oracle {want} for {a:?} {b:?}"
        );
        let exact_ov = rect_overlap_exact(&a, &b);
        assert!((exact_ov - oracle_overlap(&a, &b)).abs() < 1e-9);
        // OpenPCDet routine: agrees except where a corner sits in the margin band.
        if corner_near_outside(&a, &b, 0.02) {
            skipped += 1;
            continue;
        }
        compared += 1;
        if want > 0.0 {
            overlapping += 1;
        }
        let got = bev_iou(&a, &b) as f64;
        assert!(
            (got - want).abs() < 1e-4,
            "bev_iou {got} vs oracle {want} for {a:?} {b:?}"
        );
    }
    assert!(compared > 18_000, "too many pairs skipped: {skipped}");
    assert!(
        overlapping > 5_000,
        "too few overlapping pairs: {overlapping}"
    );
}

#[test]
fn iou_is_symmetric() {
    let mut rng = Rng::new(0x5eed_0002);
    for _ in 0..5_000 {
        let a = rng.bev(2.0);
        let b = rng.bev(2.0);
        let (ab, ba) = (bev_iou(&a, &b), bev_iou(&b, &a));
        assert!((ab - ba).abs() < 1e-6, "{ab} vs {ba} for {a:?} {b:?}");
        let (eab, eba) = (rect_iou_exact(&a, &b), rect_iou_exact(&b, &a));
        assert!((eab - eba).abs() < 1e-12);
    }
}

#[test]
fn matrix_equals_pairwise_including_near_touching_pairs() {
    // Many far-apart pairs (the fast rejection path) and near-touching ones (gaps of 0 to
    // 3 cm around the 1e-2 margin): the matrix must equal bev_iou bit for bit.
    let mut rng = Rng::new(0x5eed_0003);
    let mut boxes = Vec::new();
    for i in 0..60 {
        let b = rng.bev(20.0);
        boxes.push(b);
        if i % 3 == 0 {
            // Axis-aligned neighbours: bounding boxes are tight, so only the margin-aware
            // rejection keeps these pairs on the exact path.
            let gap = rng.range(0.0, 0.03);
            let q = (i / 3 % 4) as f32 * FRAC_PI_2;
            let a = BevBox::new(b.x, b.y, 2.0, 1.0, q);
            let along = if i % 2 == 0 { 2.0 + gap } else { 0.0 };
            let across = if i % 2 == 0 { 0.0 } else { 1.0 + gap };
            let (c, s) = (q.cos(), q.sin());
            boxes.push(a);
            boxes.push(BevBox::new(
                a.x + c * along - s * across,
                a.y + s * along + c * across,
                2.0,
                1.0,
                q,
            ));
        } else if i % 2 == 0 {
            let gap = rng.range(0.0, 0.03);
            let tilt = rng.range(-0.01, 0.01);
            let (c, s) = (b.heading.cos(), b.heading.sin());
            let shift = b.dx / 2.0 + 1.0 + gap;
            boxes.push(BevBox::new(
                b.x + c * shift,
                b.y + s * shift,
                2.0,
                b.dy,
                b.heading + tilt,
            ));
        }
    }
    let m = bev_iou_matrix(&boxes, &boxes);
    let e = exact_iou_matrix(&boxes, &boxes);
    let n = boxes.len();
    assert_eq!(m.len(), n * n);
    let mut nonzero = 0;
    for i in 0..n {
        for j in 0..n {
            let want = bev_iou(&boxes[i], &boxes[j]);
            assert_eq!(
                m[i * n + j].to_bits(),
                want.to_bits(),
                "({i}, {j}) {:?} {:?}",
                boxes[i],
                boxes[j]
            );
            assert_eq!(e[i * n + j], rect_iou_exact(&boxes[i], &boxes[j]));
            if i != j && want > 0.0 {
                nonzero += 1;
            }
        }
    }
    assert!(
        nonzero > 10,
        "the near-touching pairs should overlap via the margin"
    );
    assert!(bev_iou_matrix(&boxes, &[]).is_empty());
}

#[test]
fn lidar_3d_iou_uses_height_overlap() {
    // Same footprint, shifted up by half the height: overlap 1/2 of a volume, IoU 1/3.
    let a = [1.0, 2.0, -1.0, 3.9, 1.6, 1.56, 0.3];
    let b = [1.0, 2.0, -1.0 + 0.78, 3.9, 1.6, 1.56, 0.3];
    let iou = lidar_iou_3d(&a, &b).expect("7 columns");
    assert!((iou - 1.0 / 3.0).abs() < 1e-5, "{iou}");
    let c = [1.0, 2.0, 5.0, 3.9, 1.6, 1.56, 0.3];
    assert_eq!(lidar_iou_3d(&a, &c), Some(0.0));
    assert_eq!(lidar_iou_3d(&a[..6], &b), None);
}

/// KITTI camera box of an OpenPCDet LiDAR box (with an identity calibration up to the axis
/// permutation: camera x = −lidar y, camera y = −lidar z, camera z = lidar x), following
/// `boxes3d_lidar_to_kitti_camera`: bottom centre, `ry = −heading − π/2`.
fn lidar_to_camera(l: [f32; 7]) -> CameraBox {
    let [x, y, z, dx, dy, dz, h] = l;
    CameraBox {
        x: -y,
        y: -(z - dz / 2.0),
        z: x,
        l: dx,
        h: dz,
        w: dy,
        ry: -h - FRAC_PI_2,
    }
}

#[test]
fn kitti_camera_bev_follows_the_camera_convention() {
    // A rotation of the frame preserves IoU, so camera-frame IoU must equal LiDAR-frame IoU;
    // the wrong heading sign would break this for rotated pairs.
    let mut rng = Rng::new(0x5eed_0004);
    let mut checked = 0;
    for _ in 0..2_000 {
        let (a, b) = (rng.bev(2.0), rng.bev(2.0));
        let (za, zb) = (rng.range(-1.0, 1.0), rng.range(-1.0, 1.0));
        let (ha, hb) = (rng.range(0.5, 2.0), rng.range(0.5, 2.0));
        let la = [a.x, a.y, za, a.dx, a.dy, ha, a.heading];
        let lb = [b.x, b.y, zb, b.dx, b.dy, hb, b.heading];
        let (ca, cb) = (lidar_to_camera(la), lidar_to_camera(lb));
        let want_bev = oracle_iou(&a, &b);
        let got_bev = kitti_iou_bev(&ca, &cb);
        assert!((got_bev - want_bev).abs() < 1e-6, "{got_bev} vs {want_bev}");

        let inter_h = ((za + ha / 2.0).min(zb + hb / 2.0) - (za - ha / 2.0).max(zb - hb / 2.0))
            .max(0.0) as f64;
        let inc = oracle_overlap(&a, &b) * inter_h;
        let vol = |b: &BevBox, h: f32| b.dx as f64 * b.dy as f64 * h as f64;
        let want_3d = if inc > 0.0 {
            inc / (vol(&a, ha) + vol(&b, hb) - inc)
        } else {
            0.0
        };
        let got_3d = kitti_iou_3d(&ca, &cb);
        assert!((got_3d - want_3d).abs() < 1e-5, "{got_3d} vs {want_3d}");
        if want_3d > 0.0 {
            checked += 1;
        }
    }
    assert!(checked > 200);
    let boxes: Vec<CameraBox> = (0..5)
        .map(|i| lidar_to_camera([i as f32, 0.0, 0.0, 2.0, 1.0, 1.5, 0.2 * i as f32]))
        .collect();
    let m = kitti_iou_bev_matrix(&boxes, &boxes[..3]);
    assert_eq!(m.len(), 15);
    assert!((m[0] - 1.0).abs() < 1e-9 && (m[3 + 1] - 1.0).abs() < 1e-9);
}

#[test]
fn degenerate_inputs_do_not_panic() {
    let ok = BevBox::new(0.0, 0.0, 2.0, 1.0, 0.1);
    for bad in [
        BevBox::new(0.0, 0.0, 0.0, 1.0, 0.0),
        BevBox::new(0.0, 0.0, f32::NAN, 1.0, 0.0),
        BevBox::new(f32::INFINITY, 0.0, 1.0, 1.0, 0.0),
        BevBox::new(0.0, 0.0, 1.0, 1.0, f32::NAN),
    ] {
        let _ = bev_iou(&ok, &bad);
        let _ = bev_iou(&bad, &bad);
        assert_eq!(rect_iou_exact(&ok, &bad), 0.0);
        assert_eq!(rect_iou_exact(&bad, &bad), 0.0);
    }
}
