//! Scans and their companions: readers, KITTI labels and calibration, the voxelizer.
