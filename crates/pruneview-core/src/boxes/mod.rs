//! 3-D boxes in the two frames the project works in, their corners and edges, and their
//! overlap ([`iou`]): one home for box geometry, used by detection (NMS), evaluation, the
//! simulator's labels and the app's drawing.
//!
//! Frames: LiDAR x forward, y left, z up. Rectified camera x right, y down, z forward.

pub mod corners;
pub mod iou;

pub use corners::{BOX_EDGES, camera_box_corners, lidar_box_corners};
pub use iou::BevBox;

/// OpenPCDet's box `[x, y, z, dx, dy, dz, heading]` in the LiDAR frame: (x, y, z) is the
/// gravity centre, `dx` the length along the heading, heading counter-clockwise about +z
/// from +x. Detections, simulated objects and converted labels use it.
pub type LidarBox = [f32; 7];

/// A KITTI box in the rectified camera frame, as `label_2` files and the KITTI evaluator hold it:
/// `(x, y, z)` is the **bottom** centre (camera y points down), dims `l, h, w`, yaw `ry` around
/// the camera y axis.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CameraBox {
    pub x: f32,
    pub y: f32,
    pub z: f32,
    pub l: f32,
    pub h: f32,
    pub w: f32,
    pub ry: f32,
}

impl CameraBox {
    /// Footprint in the camera x-z plane, as a [`BevBox`] with `(x, y) := (x_cam, z_cam)`.
    ///
    /// KITTI's `rotate_iou` turns corner offsets `(u, v)` into `(cos ry·u + sin ry·v,
    /// −sin ry·u + cos ry·v)`: a counter-clockwise rotation by `−ry` in (x, z) coordinates. So
    /// the heading is `−ry` and the length `l` lies along it.
    pub fn bev(&self) -> BevBox {
        BevBox::new(self.x, self.z, self.l, self.w, -self.ry)
    }
}
