//! KITTI `label_2` objects for a scene: camera-frame boxes, 2-D boxes from the projected 3-D
//! corners, truncation (the fraction of the 2-D box outside the image), occlusion (the
//! fraction of sight lines from the camera to the object blocked by other things) and
//! DontCare for objects too small or far to label.

use std::f32::consts::PI;

use super::scene::Scene;
use crate::boxes::{BOX_EDGES, camera_box_corners};
use crate::pointcloud::{Calib, ImageSize, KittiObject};

/// Objects whose clipped 2-D box is lower than this (pixels) or farther than
/// [`DONTCARE_DEPTH`] become DontCare regions, as KITTI's annotators did.
pub const DONTCARE_HEIGHT_PX: f32 = 18.0;
/// See [`DONTCARE_HEIGHT_PX`].
pub const DONTCARE_DEPTH: f32 = 80.0;

/// Camera-frame depth below which box corners are cut off before projection.
const NEAR: f32 = 0.3;

/// 2-D box (unclipped to the image) of a camera box cut by the plane z = [`NEAR`]: the
/// projections of the corners in front and of the points where edges cross the plane.
fn near_clipped_image_box(calib: &Calib, c: &[[f32; 3]; 8]) -> Option<[f32; 4]> {
    let mut pts: Vec<[f32; 3]> = c.iter().filter(|p| p[2] >= NEAR).copied().collect();
    for (a, b) in BOX_EDGES {
        let (p, q) = (c[a], c[b]);
        if (p[2] - NEAR) * (q[2] - NEAR) < 0.0 {
            let t = (NEAR - p[2]) / (q[2] - p[2]);
            pts.push([p[0] + t * (q[0] - p[0]), p[1] + t * (q[1] - p[1]), NEAR]);
        }
    }
    if pts.is_empty() {
        return None;
    }
    let mut out = [
        f32::INFINITY,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NEG_INFINITY,
    ];
    for p in pts {
        let ([u, v], _) = calib.rect_to_img(p);
        out = [out[0].min(u), out[1].min(v), out[2].max(u), out[3].max(v)];
    }
    Some(out)
}

fn wrap(a: f32) -> f32 {
    (a + PI).rem_euclid(2.0 * PI) - PI
}

fn r2(v: f32) -> f32 {
    (v * 100.0).round() / 100.0
}

fn area(b: &[f32; 4]) -> f32 {
    (b[2] - b[0]).max(0.0) * (b[3] - b[1]).max(0.0)
}

/// Labels of the scene's objects visible in image_2, nearest first.
pub fn scene_labels(scene: &Scene, calib: &Calib, image: ImageSize) -> Vec<KittiObject> {
    let cam = calib.rect_to_lidar([0.0; 3]);
    let cam = [cam[0] as f32, cam[1] as f32, cam[2] as f32];
    let mut out: Vec<(f32, KittiObject)> = Vec::new();
    for (i, obj) in scene.objects.iter().enumerate() {
        let Some(name) = obj.class.kitti_name() else {
            continue;
        };
        let lb = obj.lidar_box;
        let cb = calib.lidar_box_to_camera(&lb);
        let corners = camera_box_corners(&cb);
        let (full, clipped) = if corners.iter().all(|c| c[2] >= NEAR) {
            (
                calib.camera_box_to_image_box(&cb, None),
                calib.camera_box_to_image_box(&cb, Some(image)),
            )
        } else {
            // Partly behind the camera: project the box cut at the near plane.
            let Some(full) = near_clipped_image_box(calib, &corners) else {
                continue;
            };
            let (wmax, hmax) = (
                image.w.saturating_sub(1) as f32,
                image.h.saturating_sub(1) as f32,
            );
            let clip = [
                full[0].clamp(0.0, wmax),
                full[1].clamp(0.0, hmax),
                full[2].clamp(0.0, wmax),
                full[3].clamp(0.0, hmax),
            ];
            (full, clip)
        };
        let (fa, ca) = (area(&full), area(&clipped));
        if fa <= 0.0 || ca <= 0.0 {
            continue;
        }
        let truncated = (1.0 - ca / fa).clamp(0.0, 1.0);
        // Occlusion: sight lines from the camera to a grid inside the box.
        let (sy, cy) = lb[6].sin_cos();
        let (mut seen, mut total) = (0u32, 0u32);
        for a in [-0.35f32, 0.0, 0.35] {
            for b in [-0.35f32, 0.0, 0.35] {
                for c in [-0.3f32, 0.0, 0.3] {
                    let (lx, ly) = (a * lb[3], b * lb[4]);
                    let p = [
                        lb[0] + lx * cy - ly * sy,
                        lb[1] + lx * sy + ly * cy,
                        lb[2] + c * lb[5],
                    ];
                    let rect = calib.lidar_to_rect(p);
                    let ([u, v], _) = calib.rect_to_img(rect);
                    if rect[2] < NEAR
                        || !(0.0..image.w as f32).contains(&u)
                        || !(0.0..image.h as f32).contains(&v)
                    {
                        continue;
                    }
                    total += 1;
                    let dv = [p[0] - cam[0], p[1] - cam[1], p[2] - cam[2]];
                    let dist = (dv[0] * dv[0] + dv[1] * dv[1] + dv[2] * dv[2]).sqrt();
                    let d = [dv[0] / dist, dv[1] / dist, dv[2] / dist];
                    if !scene.blocked(cam, d, dist, i as u32) {
                        seen += 1;
                    }
                }
            }
        }
        if seen == 0 {
            continue;
        }
        let blocked = 1.0 - seen as f32 / total as f32;
        let occluded = if blocked < 0.2 {
            0
        } else if blocked < 0.6 {
            1
        } else {
            2
        };
        let bbox = clipped.map(r2);
        let depth = cb.z;
        let object = if bbox[3] - bbox[1] < DONTCARE_HEIGHT_PX || depth > DONTCARE_DEPTH {
            KittiObject {
                name: "DontCare".into(),
                truncated: -1.0,
                occluded: -1,
                alpha: -10.0,
                bbox,
                h: -1.0,
                w: -1.0,
                l: -1.0,
                location: [-1000.0; 3],
                rotation_y: -10.0,
                score: None,
            }
        } else {
            let ry = wrap(cb.ry);
            KittiObject {
                name: name.into(),
                truncated: r2(truncated),
                occluded,
                alpha: r2(wrap(ry - cb.x.atan2(cb.z))),
                bbox,
                h: r2(cb.h),
                w: r2(cb.w),
                l: r2(cb.l),
                location: [r2(cb.x), r2(cb.y), r2(cb.z)],
                rotation_y: r2(ry),
                score: None,
            }
        };
        out.push((depth, object));
    }
    // KITTI lists DontCare last.
    out.sort_by(|a, b| {
        a.1.is_dontcare()
            .cmp(&b.1.is_dontcare())
            .then(a.0.total_cmp(&b.0))
    });
    out.into_iter().map(|(_, o)| o).collect()
}
