//! Rotated box overlap in the ground plane (bird's-eye view, BEV), computed two ways.
//!
//! **OpenPCDet semantics** ([`bev_overlap`], [`bev_iou`], [`lidar_iou_3d`], [`bev_iou_matrix`]):
//! a float32 reimplementation of the algorithm in OpenPCDet's `iou3d_nms` op (`box_overlap` /
//! `iou_bev`, identical on CPU and CUDA). NMS uses it, so detections match what OpenPCDet keeps.
//! It is *not* exact geometry, and the differences are reproduced on purpose:
//!
//! - a corner of one box counts as inside the other when it lies within a 1e-2 margin of it, so
//!   boxes closer than ~1 cm (touching, or nearly) get a small non-zero overlap, and a corner
//!   just outside an edge adds a thin sliver to the polygon;
//! - edge-edge intersections need a strict sign change of both cross products, so collinear or
//!   touching edges contribute nothing (the margin on corners covers those cases);
//! - all arithmetic is f32 with OpenPCDet's operation order (no fused multiply-add, like the C++
//!   CPU build; the CUDA build may contract to FMA and differ in the last bits).
//!
//! **Exact geometry** ([`rect_overlap_exact`], [`rect_iou_exact`], [`kitti_iou_bev`],
//! [`kitti_iou_3d`]): Sutherland-Hodgman clipping of one rectangle by the other in f64, robust for
//! coincident, nested, touching and degenerate boxes (identical boxes give IoU 1). The KITTI
//! evaluator uses this one: `kitti_object_eval_python`'s `rotate_iou` is an exact polygon
//! intersection in float32 (with a known failure on coincident boxes under numba's CUDA
//! simulator); ours computes the same quantity without that failure and with f64 rounding.
//!
//! Box convention: `[x, y, dx, dy, heading]`, centre (x, y), `dx` the length along the heading,
//! `dy` the width, heading counter-clockwise from +x (OpenPCDet's LiDAR convention).

use rayon::prelude::*;

use super::CameraBox;

/// Floor of the union area in [`bev_iou`] (OpenPCDet's `EPS`).
pub const IOU_EPS: f32 = 1e-8;

/// How far outside a box a corner may lie and still count as inside it in [`bev_overlap`]
/// (OpenPCDet's `MARGIN` in `check_in_box2d`).
pub const IN_BOX_MARGIN: f32 = 1e-2;

/// Floor of the union volume in [`lidar_iou_3d`] (OpenPCDet's `boxes_iou3d_gpu` clamp).
pub const IOU3D_EPS: f32 = 1e-6;

/// A rotated rectangle in the ground plane: `[x, y, dx, dy, heading]`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct BevBox {
    pub x: f32,
    pub y: f32,
    /// Length along the heading direction.
    pub dx: f32,
    /// Width, perpendicular to the heading.
    pub dy: f32,
    /// Counter-clockwise angle of the length axis from +x, radians.
    pub heading: f32,
}

impl BevBox {
    pub const fn new(x: f32, y: f32, dx: f32, dy: f32, heading: f32) -> Self {
        BevBox {
            x,
            y,
            dx,
            dy,
            heading,
        }
    }

    /// The BEV footprint of an OpenPCDet LiDAR box `[x, y, z, dx, dy, dz, heading, ...]`
    /// (columns 0, 1, 3, 4, 6); `None` if the row has fewer than 7 values.
    pub fn from_lidar(row: &[f32]) -> Option<Self> {
        match row {
            [x, y, _, dx, dy, _, heading, ..] => Some(BevBox::new(*x, *y, *dx, *dy, *heading)),
            _ => None,
        }
    }

    /// Area `dx * dy` (f32, as OpenPCDet computes it).
    pub fn area(&self) -> f32 {
        self.dx * self.dy
    }

    /// The four corners as OpenPCDet builds them: the axis-aligned corners
    /// `(x1, y1), (x2, y1), (x2, y2), (x1, y2)` rotated by the heading around the centre
    /// (counter-clockwise order when `dx, dy > 0`).
    pub fn corners(&self) -> [[f32; 2]; 4] {
        corners_f32(self).map(|p| [p.x, p.y])
    }
}

// ---------------------------------------------------------------------------------------------
// OpenPCDet semantics, f32.

#[derive(Clone, Copy, Debug, Default)]
struct P {
    x: f32,
    y: f32,
}

impl P {
    fn sub(self, o: P) -> P {
        P {
            x: self.x - o.x,
            y: self.y - o.y,
        }
    }
}

/// `a × b`.
fn cross(a: P, b: P) -> f32 {
    a.x * b.y - a.y * b.x
}

/// `(p1 − p0) × (p2 − p0)`, component-wise as OpenPCDet writes it.
fn cross3(p1: P, p2: P, p0: P) -> f32 {
    (p1.x - p0.x) * (p2.y - p0.y) - (p2.x - p0.x) * (p1.y - p0.y)
}

fn corners_f32(b: &BevBox) -> [P; 4] {
    let half_dx = b.dx / 2.0;
    let half_dy = b.dy / 2.0;
    let (x1, y1) = (b.x - half_dx, b.y - half_dy);
    let (x2, y2) = (b.x + half_dx, b.y + half_dy);
    let (c, s) = (b.heading.cos(), b.heading.sin());
    // Offsets are taken from the rounded axis-aligned corners, then rotated and shifted back,
    // exactly as OpenPCDet's `rotate_around_center` does (so `x1 - x` need not equal `-dx/2`).
    let rot = |px: f32, py: f32| {
        let ox = px - b.x;
        let oy = py - b.y;
        P {
            x: ox * c + oy * (-s) + b.x,
            y: ox * s + oy * c + b.y,
        }
    };
    [rot(x1, y1), rot(x2, y1), rot(x2, y2), rot(x1, y2)]
}

/// A box with everything [`bev_overlap`] needs precomputed. Precomputing changes no bits: the
/// same f32 operations run on the same inputs, once per box instead of once per pair.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PreparedBox {
    x: f32,
    y: f32,
    area: f32,
    /// Corners 0..4, with corner 0 repeated at index 4 (closed ring).
    ring: [P; 5],
    /// `cos(-heading)`, `sin(-heading)`, for the inside test.
    in_cos: f32,
    in_sin: f32,
    /// `dx / 2 + MARGIN`, `dy / 2 + MARGIN`.
    lim_x: f32,
    lim_y: f32,
    /// Conservative bounds `[min_x, min_y, max_x, max_y]`: if two boxes' bounds are disjoint,
    /// [`bev_overlap`] is exactly 0 (see [`PreparedBox::surely_disjoint`]).
    bounds: [f32; 4],
}

impl PreparedBox {
    pub(crate) fn new(b: &BevBox) -> Self {
        let c = corners_f32(b);
        let neg = -b.heading;
        PreparedBox {
            x: b.x,
            y: b.y,
            area: b.dx * b.dy,
            ring: [c[0], c[1], c[2], c[3], c[0]],
            in_cos: neg.cos(),
            in_sin: neg.sin(),
            lim_x: b.dx / 2.0 + IN_BOX_MARGIN,
            lim_y: b.dy / 2.0 + IN_BOX_MARGIN,
            bounds: conservative_bounds(b, &c),
        }
    }

    /// True when the two boxes certainly have zero [`bev_overlap`]: their margin-expanded
    /// bounds do not meet, so no edge pair passes the rect-cross test and no corner is within
    /// the margin of the other box. False for NaN boxes (which then take the full path).
    #[inline]
    pub(crate) fn surely_disjoint(&self, o: &PreparedBox) -> bool {
        bounds_disjoint(&self.bounds, &o.bounds)
    }

    /// The conservative bounds `[min_x, min_y, max_x, max_y]` (see [`bounds_disjoint`]).
    pub(crate) fn bounds(&self) -> [f32; 4] {
        self.bounds
    }

    /// OpenPCDet `check_in_box2d`: strictly inside the box grown by MARGIN on every side.
    fn contains(&self, p: P) -> bool {
        let ox = p.x - self.x;
        let oy = p.y - self.y;
        let rot_x = ox * self.in_cos + oy * (-self.in_sin);
        let rot_y = ox * self.in_sin + oy * self.in_cos;
        rot_x.abs() < self.lim_x && rot_y.abs() < self.lim_y
    }

    /// [`bev_overlap`] of two prepared boxes.
    pub(crate) fn overlap(&self, o: &PreparedBox) -> f32 {
        // Up to 8 edge crossings and 8 corners in any real configuration; 16 + 8 bounds it.
        let mut pts = [P::default(); 24];
        let mut cnt = 0usize;
        let mut center = P::default();
        for i in 0..4 {
            for j in 0..4 {
                if let Some(p) =
                    segment_intersection(self.ring[i + 1], self.ring[i], o.ring[j + 1], o.ring[j])
                {
                    center = P {
                        x: center.x + p.x,
                        y: center.y + p.y,
                    };
                    pts[cnt] = p;
                    cnt += 1;
                }
            }
        }
        for k in 0..4 {
            if self.contains(o.ring[k]) {
                let p = o.ring[k];
                center = P {
                    x: center.x + p.x,
                    y: center.y + p.y,
                };
                pts[cnt] = p;
                cnt += 1;
            }
            if o.contains(self.ring[k]) {
                let p = self.ring[k];
                center = P {
                    x: center.x + p.x,
                    y: center.y + p.y,
                };
                pts[cnt] = p;
                cnt += 1;
            }
        }
        if cnt < 3 {
            return 0.0;
        }
        center.x /= cnt as f32;
        center.y /= cnt as f32;

        // OpenPCDet bubble-sorts by atan2 around the centroid, swapping on a strict `>`; with
        // the keys computed once the order is identical (stable, ties keep their order).
        let mut key = [0f32; 24];
        for k in 0..cnt {
            key[k] = (pts[k].y - center.y).atan2(pts[k].x - center.x);
        }
        for j in 0..cnt - 1 {
            for i in 0..cnt - j - 1 {
                if key[i] > key[i + 1] {
                    key.swap(i, i + 1);
                    pts.swap(i, i + 1);
                }
            }
        }

        let mut area = 0f32;
        for k in 0..cnt - 1 {
            area += cross(pts[k].sub(pts[0]), pts[k + 1].sub(pts[0]));
        }
        area.abs() / 2.0
    }

    /// [`bev_iou`] of two prepared boxes.
    pub(crate) fn iou(&self, o: &PreparedBox) -> f32 {
        let s_overlap = self.overlap(o);
        s_overlap / (self.area + o.area - s_overlap).max(IOU_EPS)
    }

    /// [`Self::iou`], returning exactly 0.0 without the polygon work when the boxes are far
    /// apart (bit-identical to the full computation).
    #[inline]
    pub(crate) fn iou_fast(&self, o: &PreparedBox) -> f32 {
        if self.surely_disjoint(o) {
            0.0
        } else {
            self.iou(o)
        }
    }
}

/// `[min_x, min_y, max_x, max_y]` of the corners `c` of `b`, grown so that two boxes whose
/// bounds do not meet have exactly zero overlap under both [`bev_overlap`] and
/// [`rect_overlap_exact`]. A corner of another box counts as inside this one up to MARGIN
/// beyond each side, i.e. up to MARGIN·√2 beyond a corner; f32 rounding of the corners (and
/// their distance from the f64 ones) is covered by a slack relative to the magnitudes.
fn conservative_bounds(b: &BevBox, c: &[P; 4]) -> [f32; 4] {
    let (mut lo_x, mut lo_y, mut hi_x, mut hi_y) = (c[0].x, c[0].y, c[0].x, c[0].y);
    for p in &c[1..] {
        lo_x = lo_x.min(p.x);
        lo_y = lo_y.min(p.y);
        hi_x = hi_x.max(p.x);
        hi_y = hi_y.max(p.y);
    }
    let slack = 2.0 * IN_BOX_MARGIN + 1e-5 * (b.x.abs() + b.y.abs() + b.dx.abs() + b.dy.abs());
    [lo_x - slack, lo_y - slack, hi_x + slack, hi_y + slack]
}

/// True when two [`PreparedBox::bounds`] do not meet; the boxes' [`bev_overlap`] is then exactly
/// 0. False if a bound is NaN. Non-short-circuit `|`: on scattered boxes each comparison is a
/// coin flip, and four unpredictable branches cost ~7x more than computing all four.
#[inline]
pub(crate) fn bounds_disjoint(a: &[f32; 4], b: &[f32; 4]) -> bool {
    (a[2] < b[0]) | (b[2] < a[0]) | (a[3] < b[1]) | (b[3] < a[1])
}

/// Crossing point of segments `p0→p1` and `q0→q1` (OpenPCDet `intersection`): bounding-box
/// rejection, then a strict sign change of both cross-product pairs, then the point from the
/// ratio of cross products (or, when that ratio is ill-conditioned, the line-line formula).
fn segment_intersection(p1: P, p0: P, q1: P, q0: P) -> Option<P> {
    let rect_cross = p0.x.min(p1.x) <= q0.x.max(q1.x)
        && q0.x.min(q1.x) <= p0.x.max(p1.x)
        && p0.y.min(p1.y) <= q0.y.max(q1.y)
        && q0.y.min(q1.y) <= p0.y.max(p1.y);
    if !rect_cross {
        return None;
    }
    let s1 = cross3(q0, p1, p0);
    let s2 = cross3(p1, q1, p0);
    let s3 = cross3(p0, q1, q0);
    let s4 = cross3(q1, p1, q0);
    if !(s1 * s2 > 0.0 && s3 * s4 > 0.0) {
        return None;
    }
    let s5 = cross3(q1, p1, p0);
    if (s5 - s1).abs() > IOU_EPS {
        Some(P {
            x: (s5 * q0.x - s1 * q1.x) / (s5 - s1),
            y: (s5 * q0.y - s1 * q1.y) / (s5 - s1),
        })
    } else {
        let a0 = p0.y - p1.y;
        let b0 = p1.x - p0.x;
        let c0 = p0.x * p1.y - p1.x * p0.y;
        let a1 = q0.y - q1.y;
        let b1 = q1.x - q0.x;
        let c1 = q0.x * q1.y - q1.x * q0.y;
        let d = a0 * b1 - a1 * b0;
        Some(P {
            x: (b0 * c1 - b1 * c0) / d,
            y: (a1 * c0 - a0 * c1) / d,
        })
    }
}

/// Overlap area of two rotated boxes, with OpenPCDet's `box_overlap` semantics (f32, 1e-2
/// inside margin; see the module docs). Not exactly symmetric in the last bits: NMS calls it
/// with the higher-scored box first, as OpenPCDet does.
pub fn bev_overlap(a: &BevBox, b: &BevBox) -> f32 {
    PreparedBox::new(a).overlap(&PreparedBox::new(b))
}

/// Rotated BEV IoU with OpenPCDet's `iou_bev` semantics:
/// `overlap / max(area_a + area_b − overlap, 1e-8)`, all f32.
pub fn bev_iou(a: &BevBox, b: &BevBox) -> f32 {
    PreparedBox::new(a).iou(&PreparedBox::new(b))
}

/// 3-D IoU of two LiDAR boxes `[x, y, z, dx, dy, dz, heading, ...]` (z = gravity centre) with
/// OpenPCDet's `boxes_iou3d_gpu` semantics: [`bev_overlap`] × height overlap (clamped at 0),
/// over `max(vol_a + vol_b − overlap, 1e-6)`, f32. `None` if a row has fewer than 7 values.
pub fn lidar_iou_3d(a: &[f32], b: &[f32]) -> Option<f32> {
    let (ba, bb) = (BevBox::from_lidar(a)?, BevBox::from_lidar(b)?);
    let (a_top, a_bottom) = (a[2] + a[5] / 2.0, a[2] - a[5] / 2.0);
    let (b_top, b_bottom) = (b[2] + b[5] / 2.0, b[2] - b[5] / 2.0);
    let overlap_h = (a_top.min(b_top) - a_bottom.max(b_bottom)).max(0.0);
    let overlap_3d = bev_overlap(&ba, &bb) * overlap_h;
    let vol_a = a[3] * a[4] * a[5];
    let vol_b = b[3] * b[4] * b[5];
    Some(overlap_3d / (vol_a + vol_b - overlap_3d).max(IOU3D_EPS))
}

// ---------------------------------------------------------------------------------------------
// Exact geometry, f64.

/// Vertex capacity while clipping. A convex clip adds at most one vertex (4 -> 8), but rounding
/// on near-collinear edges can flip in/out signs more often; each clip at most doubles the
/// count, so 4 clips of a 4-gon never exceed 64 and no vertex is ever dropped.
const CLIP_CAP: usize = 64;

#[derive(Clone, Copy)]
struct Poly {
    v: [[f64; 2]; CLIP_CAP],
    n: usize,
}

/// Corners in counter-clockwise order, f64; `None` for a non-finite or empty rectangle.
fn corners_f64(b: &BevBox) -> Option<[[f64; 2]; 4]> {
    let (x, y, dx, dy, h) = (
        b.x as f64,
        b.y as f64,
        b.dx as f64,
        b.dy as f64,
        b.heading as f64,
    );
    if !(x.is_finite() && y.is_finite() && h.is_finite() && dx.is_finite() && dy.is_finite()) {
        return None;
    }
    if dx <= 0.0 || dy <= 0.0 {
        return None;
    }
    let (s, c) = h.sin_cos();
    let (hx, hy) = (dx / 2.0, dy / 2.0);
    Some(
        [(-hx, -hy), (hx, -hy), (hx, hy), (-hx, hy)]
            .map(|(u, v)| [x + c * u - s * v, y + s * u + c * v]),
    )
}

/// Clips `poly` to the half-plane left of (or on) the directed line `a → b`.
fn clip(poly: &Poly, a: [f64; 2], b: [f64; 2]) -> Poly {
    let (ex, ey) = (b[0] - a[0], b[1] - a[1]);
    let side = |p: [f64; 2]| ex * (p[1] - a[1]) - ey * (p[0] - a[0]);
    let mut out = Poly {
        v: [[0.0; 2]; CLIP_CAP],
        n: 0,
    };
    let mut push = |p: [f64; 2]| {
        if out.n < CLIP_CAP {
            out.v[out.n] = p;
            out.n += 1;
        }
    };
    for i in 0..poly.n {
        let cur = poly.v[i];
        let prev = poly.v[(i + poly.n - 1) % poly.n];
        let (dc, dp) = (side(cur), side(prev));
        let (cur_in, prev_in) = (dc >= 0.0, dp >= 0.0);
        if cur_in != prev_in {
            // The segment crosses the line strictly between its ends: dp and dc have opposite
            // signs (one may be 0 only on the "in" side), so the denominator is non-zero.
            let t = dp / (dp - dc);
            push([
                prev[0] + t * (cur[0] - prev[0]),
                prev[1] + t * (cur[1] - prev[1]),
            ]);
        }
        if cur_in {
            push(cur);
        }
    }
    out
}

fn shoelace(poly: &Poly) -> f64 {
    let mut twice = 0.0;
    for i in 0..poly.n {
        let p = poly.v[i];
        let q = poly.v[(i + 1) % poly.n];
        twice += p[0] * q[1] - q[0] * p[1];
    }
    twice.abs() / 2.0
}

/// Exact intersection area of two rotated rectangles (Sutherland-Hodgman clipping in f64).
/// Symmetric up to rounding; 0 for disjoint, touching, empty or non-finite boxes.
pub fn rect_overlap_exact(a: &BevBox, b: &BevBox) -> f64 {
    let (Some(ca), Some(cb)) = (corners_f64(a), corners_f64(b)) else {
        return 0.0;
    };
    let mut poly = Poly {
        v: [[0.0; 2]; CLIP_CAP],
        n: 4,
    };
    poly.v[..4].copy_from_slice(&ca);
    for k in 0..4 {
        poly = clip(&poly, cb[k], cb[(k + 1) % 4]);
        if poly.n < 3 {
            return 0.0;
        }
    }
    shoelace(&poly)
}

/// Exact rotated IoU in f64; 0 when the union is empty.
pub fn rect_iou_exact(a: &BevBox, b: &BevBox) -> f64 {
    let inter = rect_overlap_exact(a, b);
    let union = a.dx as f64 * a.dy as f64 + b.dx as f64 * b.dy as f64 - inter;
    if inter > 0.0 && union > 0.0 {
        inter / union
    } else {
        0.0
    }
}

/// KITTI BEV IoU (`bev_box_overlap`): exact rotated IoU of the footprints in the camera x-z
/// plane.
pub fn kitti_iou_bev(a: &CameraBox, b: &CameraBox) -> f64 {
    rect_iou_exact(&a.bev(), &b.bev())
}

/// KITTI 3-D IoU (`d3_box_overlap`): exact x-z footprint overlap × overlap along camera y (a box
/// spans `[y − h, y]`), over the union of volumes. 0 when either overlap is not positive.
pub fn kitti_iou_3d(a: &CameraBox, b: &CameraBox) -> f64 {
    let iw = (a.y as f64).min(b.y as f64) - (a.y as f64 - a.h as f64).max(b.y as f64 - b.h as f64);
    if iw <= 0.0 {
        return 0.0;
    }
    let inter_bev = rect_overlap_exact(&a.bev(), &b.bev());
    if inter_bev <= 0.0 {
        return 0.0;
    }
    let vol = |c: &CameraBox| c.l as f64 * c.h as f64 * c.w as f64;
    let inc = iw * inter_bev;
    let union = vol(a) + vol(b) - inc;
    if union > 0.0 { inc / union } else { 0.0 }
}

// ---------------------------------------------------------------------------------------------
// Pairwise matrices.

/// `f(i, j)` for every `i < rows`, `j < cols`, row-major, rows computed in parallel (rayon).
pub fn pairwise_matrix<T, F>(rows: usize, cols: usize, f: F) -> Vec<T>
where
    T: Copy + Default + Send,
    F: Fn(usize, usize) -> T + Sync,
{
    let mut out = vec![T::default(); rows * cols];
    if cols == 0 {
        return out;
    }
    out.par_chunks_mut(cols).enumerate().for_each(|(i, row)| {
        for (j, v) in row.iter_mut().enumerate() {
            *v = f(i, j);
        }
    });
    out
}

/// `|a| × |b|` matrix (row-major) of [`bev_iou`]`(a[i], b[j])`, OpenPCDet semantics
/// (`boxes_iou_bev`); far-apart pairs skip the polygon work and are exactly 0.
pub fn bev_iou_matrix(a: &[BevBox], b: &[BevBox]) -> Vec<f32> {
    let pa: Vec<PreparedBox> = a.iter().map(PreparedBox::new).collect();
    let pb: Vec<PreparedBox> = b.iter().map(PreparedBox::new).collect();
    pairwise_matrix(a.len(), b.len(), |i, j| pa[i].iou_fast(&pb[j]))
}

fn bounds_of(boxes: impl Iterator<Item = BevBox>) -> Vec<[f32; 4]> {
    boxes
        .map(|b| conservative_bounds(&b, &corners_f32(&b)))
        .collect()
}

/// `|a| × |b|` matrix (row-major) of [`rect_iou_exact`]`(a[i], b[j])`; far-apart pairs are
/// exactly 0 without clipping.
pub fn exact_iou_matrix(a: &[BevBox], b: &[BevBox]) -> Vec<f64> {
    let (ba, bb) = (bounds_of(a.iter().copied()), bounds_of(b.iter().copied()));
    pairwise_matrix(a.len(), b.len(), |i, j| {
        if bounds_disjoint(&ba[i], &bb[j]) {
            0.0
        } else {
            rect_iou_exact(&a[i], &b[j])
        }
    })
}

/// `|a| × |b|` matrix (row-major) of [`kitti_iou_bev`]`(a[i], b[j])`.
pub fn kitti_iou_bev_matrix(a: &[CameraBox], b: &[CameraBox]) -> Vec<f64> {
    let (ba, bb) = (
        bounds_of(a.iter().map(CameraBox::bev)),
        bounds_of(b.iter().map(CameraBox::bev)),
    );
    pairwise_matrix(a.len(), b.len(), |i, j| {
        if bounds_disjoint(&ba[i], &bb[j]) {
            0.0
        } else {
            kitti_iou_bev(&a[i], &b[j])
        }
    })
}

/// `|a| × |b|` matrix (row-major) of [`kitti_iou_3d`]`(a[i], b[j])`.
pub fn kitti_iou_3d_matrix(a: &[CameraBox], b: &[CameraBox]) -> Vec<f64> {
    let (ba, bb) = (
        bounds_of(a.iter().map(CameraBox::bev)),
        bounds_of(b.iter().map(CameraBox::bev)),
    );
    pairwise_matrix(a.len(), b.len(), |i, j| {
        if bounds_disjoint(&ba[i], &bb[j]) {
            0.0
        } else {
            kitti_iou_3d(&a[i], &b[j])
        }
    })
}
