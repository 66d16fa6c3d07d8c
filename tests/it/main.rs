//! The integration tests, one binary (each file a module) so the test build links once.

// Test code: a failed unwrap is a failed test (the workspace warns of them elsewhere).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[cfg(feature = "gui")]
mod app;
mod boxes_coder;
mod boxes_iou;
mod boxes_nms;
mod cli;
mod cli_bad_input;
mod cli_data;
mod cli_prune;
mod demo_asset;
mod eval_crosscheck;
mod eval_kitti;
mod fuzz_readers;
mod golden;
mod golden_grad;
mod grad_fd;
mod nn_kernels;
mod pointcloud_golden;
mod pointcloud_inputs;
mod prune_curves;
mod prune_export;
mod recover;
mod report;
mod synth_geom;
mod synth_scenes;
mod synth_stats;
mod util;
