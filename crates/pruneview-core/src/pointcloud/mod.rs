//! Scans and their companions: readers, KITTI labels and calibration, the voxelizer.
//!
//! Everything here mirrors OpenPCDet's data pipeline (test mode) closely enough that the
//! voxels we feed the engine are *identical* to what OpenPCDet feeds PyTorch:
//!
//! 1. [`Scan::load`] reads a KITTI `.bin`, a nuScenes `.pcd.bin` or a PCD file. Points with a
//!    non-finite value are dropped and counted in the [`LoadReport`], never silently.
//! 2. For KITTI, [`kitti::fov_filter`] keeps the points that project into image_2
//!    (`KittiDataset.get_fov_flag`), using a [`Calib`] and an [`ImageSize`].
//! 3. [`Scan::to_features`] lays the points out as the model's `used_feature_list` asks
//!    (nuScenes: x, y, z, intensity plus a zero time lag for a single sweep).
//! 4. [`mask_points_by_range`] then [`voxelize`] (spconv 2 `Point2VoxelCPU3d` semantics).
//!
//! Points are always a flat row-major `f32` buffer with a known number of columns.

pub mod kitti;
mod pcd;
pub mod scan;
pub mod voxelize;

pub use kitti::{Calib, ImageSize, KittiError, KittiObject};
pub use scan::{LoadReport, Scan, ScanError, ScanFormat};
pub use voxelize::{
    VoxelConfig, VoxelError, VoxelStats, Voxels, filter_by_range, mask_points_by_range, voxelize,
};
