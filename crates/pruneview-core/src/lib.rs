//! pruneview-core: the headless library of pruneview (prune trained LiDAR 3D object detectors
//! after training). It builds and tests without any GUI crate; the app (`pruneview-app`) and
//! the `pruneview` binary depend on it, never the other way.
//!
//! Data flows one way: files -> model + scans -> engine -> head outputs -> curves -> frontier
//! -> allocation -> masks -> exports / detections -> views. Each stage is a module with a small
//! public surface (see DESIGN.md).

pub mod boxes;
pub mod detect;
pub mod eval;
pub mod io;
pub mod model;
pub mod nn;
pub mod pointcloud;
pub mod progress;
pub mod prune;
pub mod report;
pub mod rng;
pub mod session;
pub mod synth;
