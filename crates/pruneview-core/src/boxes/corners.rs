//! The eight corners and twelve edges of a 3-D box, in either frame.

use super::{CameraBox, LidarBox};

/// The 12 edges of a box whose corners 0..4 and 4..8 are its two faces, each in ring order
/// with corner `i + 4` above corner `i` ([`camera_box_corners`], [`lidar_box_corners`]).
pub const BOX_EDGES: [(usize, usize); 12] = [
    (0, 1),
    (1, 2),
    (2, 3),
    (3, 0),
    (4, 5),
    (5, 6),
    (6, 7),
    (7, 4),
    (0, 4),
    (1, 5),
    (2, 6),
    (3, 7),
];

/// The eight corners of a camera box (bottom centre), OpenPCDet's
/// `boxes3d_to_corners3d_kitti_camera(bottom_center=True)` order, float32.
pub fn camera_box_corners(b: &CameraBox) -> [[f32; 3]; 8] {
    let (l, h, w, ry) = (b.l, b.h, b.w, b.ry);
    let xs = [
        l / 2.0,
        l / 2.0,
        -l / 2.0,
        -l / 2.0,
        l / 2.0,
        l / 2.0,
        -l / 2.0,
        -l / 2.0,
    ];
    let zs = [
        w / 2.0,
        -w / 2.0,
        -w / 2.0,
        w / 2.0,
        w / 2.0,
        -w / 2.0,
        -w / 2.0,
        w / 2.0,
    ];
    let ys = [0.0, 0.0, 0.0, 0.0, -h, -h, -h, -h];
    let (s, c) = ry.sin_cos();
    let mut out = [[0f32; 3]; 8];
    for (i, o) in out.iter_mut().enumerate() {
        // Row vector times R = [[c, 0, -s], [0, 1, 0], [s, 0, c]].
        let (x, y, z) = (xs[i], ys[i], zs[i]);
        *o = [b.x + (x * c + z * s), b.y + y, b.z + (-x * s + z * c)];
    }
    out
}

/// The eight corners of a LiDAR box: bottom face (0..4) then top face (4..8), counter-clockwise
/// seen from above, starting at front-left.
pub fn lidar_box_corners(b: &LidarBox) -> [[f32; 3]; 8] {
    let [x, y, z, dx, dy, dz, heading] = *b;
    let (s, c) = heading.sin_cos();
    let local = [[0.5, 0.5], [-0.5, 0.5], [-0.5, -0.5], [0.5, -0.5]];
    std::array::from_fn(|i| {
        let [u, v] = local[i % 4];
        let (lx, ly) = (u * dx, v * dy);
        let lz = if i < 4 { -0.5 * dz } else { 0.5 * dz };
        [x + c * lx - s * ly, y + s * lx + c * ly, z + lz]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lidar_box_corners_follow_heading() {
        let c = lidar_box_corners(&[1.0, 2.0, 3.0, 4.0, 2.0, 1.0, std::f32::consts::FRAC_PI_2]);
        // Heading 90 degrees: the box's length (dx) lies along y.
        let ys: Vec<f32> = c.iter().map(|p| p[1]).collect();
        let xs: Vec<f32> = c.iter().map(|p| p[0]).collect();
        let span = |v: &[f32]| {
            v.iter().cloned().fold(f32::MIN, f32::max) - v.iter().cloned().fold(f32::MAX, f32::min)
        };
        assert!((span(&ys) - 4.0).abs() < 1e-4);
        assert!((span(&xs) - 2.0).abs() < 1e-4);
        assert!((c[0][2] - 2.5).abs() < 1e-6 && (c[4][2] - 3.5).abs() < 1e-6);
        for (i, j) in BOX_EDGES {
            assert_ne!(i, j);
        }
    }
}
