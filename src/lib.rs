//! pruneview: prune trained LiDAR 3D object detectors after training, and see and steer it.
//!
//! The library is two crates: `pruneview-core` (headless: engine, pruning, recovery,
//! evaluation, simulator) and `pruneview-app` (the desktop app, behind the default `gui`
//! feature). This crate re-exports both under one name and holds the `pruneview` binary.
//! Data flows one way (ARCHITECTURE.md): the app depends on the core, never the reverse.

pub use pruneview_core::*;

#[cfg(feature = "gui")]
pub use pruneview_app as app;
