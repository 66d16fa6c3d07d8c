//! Helpers the test modules share: where the fixtures are, a temporary folder that is
//! removed even when its test fails, and the CLI binary.

use std::ffi::OsStr;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

/// `../shared`: the OpenPCDet reference outputs and the real scans.
pub fn shared() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared")
}

/// The KITTI training frames in `../shared/data`: `rel` under `training/`.
pub fn kitti(rel: &str) -> PathBuf {
    shared().join("data/kitti/training").join(rel)
}

/// The bundled demo model.
pub fn demo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/demo_pointpillar.safetensors")
}

/// Runs the `pruneview` binary with `args`.
pub fn pruneview<S: AsRef<OsStr>>(args: &[S]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pruneview"))
        .args(args)
        .output()
        .expect("run pruneview")
}

/// An empty folder of its own for one test (all tests share one process), removed with
/// everything in it when dropped, so a failing test leaves nothing behind either.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("pruneview-test-{}-{n}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create a temporary folder");
        TempDir(dir)
    }
}

impl Deref for TempDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for TempDir {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
