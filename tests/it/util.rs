//! Helpers the test modules share: where the fixtures are, a temporary folder that is
//! removed even when its test fails, and the CLI binary with a command-line builder.

use std::ffi::{OsStr, OsString};
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A path in the repository.
pub fn repo(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// `../shared`: the OpenPCDet reference outputs and the real scans.
pub fn shared() -> PathBuf {
    repo("../shared")
}

/// The KITTI training frames in `../shared/data`: `rel` under `training/`.
pub fn kitti(rel: &str) -> PathBuf {
    shared().join("data/kitti/training").join(rel)
}

/// The bundled demo model.
pub fn demo() -> PathBuf {
    repo("assets/demo_pointpillar.safetensors")
}

/// Runs the `pruneview` binary with `args`.
pub fn pruneview<S: AsRef<OsStr>>(args: &[S]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pruneview"))
        .args(args)
        .output()
        .expect("run pruneview")
}

/// A `pruneview` command line built flag by flag, so that tests name what differs instead
/// of repeating whole argument vectors.
pub struct Cli(Vec<OsString>);

impl Cli {
    pub fn new(subcommand: &str) -> Cli {
        Cli(vec![subcommand.into()])
    }

    /// `--config` (when given) and `--weights`.
    pub fn model(self, config: Option<&Path>, weights: &Path) -> Cli {
        let cli = match config {
            Some(c) => self.flag("--config", c),
            None => self,
        };
        cli.flag("--weights", weights)
    }

    pub fn flag(mut self, name: &str, value: impl AsRef<OsStr>) -> Cli {
        self.0.push(name.into());
        self.0.push(value.as_ref().to_owned());
        self
    }

    /// More arguments as they are.
    pub fn args<S: AsRef<OsStr>>(mut self, more: &[S]) -> Cli {
        self.0.extend(more.iter().map(|a| a.as_ref().to_owned()));
        self
    }

    pub fn run(&self) -> Output {
        pruneview(&self.0)
    }
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
