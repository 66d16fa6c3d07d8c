//! Safe file input and output. Inputs are read only when they are regular files of a sane
//! size (`/dev/zero` or a folder is refused before reading). Every write goes to a temporary
//! file beside the target and is renamed into place, so a crash or Ctrl-C never leaves a
//! half-written file, and no write may replace one of the run's input files.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, TensorView};

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("{path}: refusing to overwrite an input file; choose another output path")]
    WouldOverwriteInput { path: PathBuf },
    #[error("{path}: cannot write: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: cannot encode safetensors: {reason}")]
    Encode { path: PathBuf, reason: String },
}

/// Largest scan file read (a KITTI scan is about 2 MB; an aggregated sweep a few hundred).
pub const MAX_SCAN_BYTES: u64 = 1 << 31;
/// Largest config, calibration, label, split or allocation file read (a few kB each).
pub const MAX_CONFIG_BYTES: u64 = 16 << 20;
/// Largest curves file read (about 1 MB for a model of a hundred layers).
pub const MAX_CURVES_BYTES: u64 = 256 << 20;

/// Reads a whole file that must be a regular file of at most `max_bytes`; anything else is
/// an error saying what the path is, before any byte is read.
pub fn read_limited(path: &Path, max_bytes: u64) -> std::io::Result<Vec<u8>> {
    use std::io::{Error, ErrorKind, Read};
    let meta = std::fs::metadata(path)?;
    if meta.is_dir() {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            "is a folder, not a file",
        ));
    }
    if !meta.is_file() {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            "not a regular file (a device, pipe or socket)",
        ));
    }
    if meta.len() > max_bytes {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!("{} bytes; at most {max_bytes} are read", meta.len()),
        ));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    // `take` also bounds a file that grows while it is read.
    std::fs::File::open(path)?
        .take(max_bytes + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max_bytes {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!("grew past {max_bytes} bytes while being read"),
        ));
    }
    Ok(bytes)
}

/// [`read_limited`] as UTF-8 text.
pub fn read_text_limited(path: &Path, max_bytes: u64) -> std::io::Result<String> {
    String::from_utf8(read_limited(path, max_bytes)?)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8 text"))
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// `path` with links and `..` resolved, also when it does not exist yet: its nearest
/// existing ancestor is resolved and the rest appended, so two spellings of one new file
/// (`d/x` and `./d/x`, or an absolute one) compare equal.
pub fn resolved(path: &Path) -> PathBuf {
    use std::path::Component;
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    for existing in absolute.ancestors() {
        let Ok(mut out) = std::fs::canonicalize(existing) else {
            continue;
        };
        let rest = absolute.strip_prefix(existing).unwrap_or(Path::new(""));
        for c in rest.components() {
            match c {
                Component::ParentDir => {
                    out.pop();
                }
                Component::Normal(part) => out.push(part),
                _ => {}
            }
        }
        return out;
    }
    absolute
}

/// Checks, before any long work, that `path` can be written as a file: it is not a
/// folder, and its nearest existing ancestor is a folder that accepts a new file (probed by
/// creating and removing one, the only test that also sees read-only mounts and works for
/// root). Missing folders in between are fine: callers create them.
pub fn check_writable(path: &Path) -> Result<(), WriteError> {
    let fail = |source| WriteError::Io {
        path: path.to_path_buf(),
        source,
    };
    let invalid = |what: &str| fail(std::io::Error::new(std::io::ErrorKind::InvalidInput, what));
    if path.is_dir() {
        return Err(invalid("is a folder, not a file"));
    }
    let full = resolved(path);
    let mut dir = full.parent();
    while let Some(d) = dir {
        if d.exists() {
            break;
        }
        dir = d.parent();
    }
    let Some(dir) = dir else {
        return Err(invalid("no folder of it exists"));
    };
    if !dir.is_dir() {
        return Err(fail(std::io::Error::new(
            std::io::ErrorKind::NotADirectory,
            format!("{} is a file, not a folder", dir.display()),
        )));
    }
    let probe = dir.join(format!(".pruneview-probe.{}", std::process::id()));
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
    {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(fail(std::io::Error::new(
            e.kind(),
            format!("its folder {} is not writable: {e}", dir.display()),
        ))),
    }
}

/// A folder whose files are written as a whole. They go into a hidden staging folder
/// inside it and [`StagedDir::commit`] renames them into place at the end, so a failed or
/// cancelled run leaves the folder as it was (a folder it created is removed again), and
/// an OS lock on `.pruneview.lock` (released when the process dies) refuses a second run
/// into the same folder instead of letting the two mix their files.
pub struct StagedDir {
    target: PathBuf,
    staging: PathBuf,
    lock: Option<std::fs::File>,
    created: bool,
}

const LOCK_FILE: &str = ".pruneview.lock";
const STAGING_PREFIX: &str = ".pruneview-staging.";

impl StagedDir {
    /// Creates `target` if missing, locks it and opens a fresh staging folder in it
    /// (removing the staging folders of runs that were killed).
    pub fn begin(target: &Path) -> Result<StagedDir, WriteError> {
        let io = |source| WriteError::Io {
            path: target.to_path_buf(),
            source,
        };
        let created = !target.exists();
        std::fs::create_dir_all(target).map_err(io)?;
        static RUNS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut dir = StagedDir {
            target: target.to_path_buf(),
            staging: target.join(format!("{STAGING_PREFIX}{}.{run}", std::process::id())),
            lock: None,
            created,
        };
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(target.join(LOCK_FILE))
            .map_err(io)?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(io(std::io::Error::new(
                    std::io::ErrorKind::ResourceBusy,
                    "another pruneview run is writing this folder; wait for it or choose \
                     another one",
                )));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }
        dir.lock = Some(lock);
        // Holding the lock, no live run owns a staging folder here: the rest are leftovers.
        for e in std::fs::read_dir(target).map_err(io)?.flatten() {
            if e.file_name().to_string_lossy().starts_with(STAGING_PREFIX) {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
        std::fs::create_dir(&dir.staging).map_err(io)?;
        Ok(dir)
    }

    /// The staging folder: a file written as `dir()/name` becomes `target/name`.
    pub fn dir(&self) -> &Path {
        &self.staging
    }

    /// Where to write the file that will be `target/name`.
    pub fn path(&self, name: &str) -> PathBuf {
        self.staging.join(name)
    }

    /// Moves every staged file into the target folder (each rename atomic) and returns
    /// their final paths.
    pub fn commit(mut self) -> Result<Vec<PathBuf>, WriteError> {
        let mut moved = Vec::new();
        let entries = std::fs::read_dir(&self.staging).map_err(|source| WriteError::Io {
            path: self.staging.clone(),
            source,
        })?;
        let mut names: Vec<_> = entries.flatten().map(|e| e.file_name()).collect();
        names.sort();
        for name in names {
            let to = self.target.join(&name);
            std::fs::rename(self.staging.join(&name), &to).map_err(|source| WriteError::Io {
                path: to.clone(),
                source,
            })?;
            moved.push(to);
        }
        self.created = false;
        Ok(moved)
    }
}

impl Drop for StagedDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.staging);
        if self.lock.take().is_some() {
            let _ = std::fs::remove_file(self.target.join(LOCK_FILE));
        }
        if self.created {
            // Only if empty: never remove what another process put there meanwhile.
            let _ = std::fs::remove_dir(&self.target);
        }
    }
}

/// Writes `bytes` to `path` atomically; refuses if `path` is one of `inputs`.
pub fn write_atomic(path: &Path, bytes: &[u8], inputs: &[&Path]) -> Result<(), WriteError> {
    if inputs.iter().any(|i| same_file(i, path)) {
        return Err(WriteError::WouldOverwriteInput {
            path: path.to_path_buf(),
        });
    }
    let io = |source| WriteError::Io {
        path: path.to_path_buf(),
        source,
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        std::fs::create_dir_all(&dir)?;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(io)
}

/// A tensor to write: name, dtype, shape and little-endian bytes.
pub struct OutTensor {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub bytes: Vec<u8>,
}

impl OutTensor {
    pub fn f32(name: impl Into<String>, shape: &[usize], data: &[f32]) -> Self {
        OutTensor {
            name: name.into(),
            dtype: Dtype::F32,
            shape: shape.to_vec(),
            bytes: data.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }

    pub fn i64(name: impl Into<String>, shape: &[usize], data: &[i64]) -> Self {
        OutTensor {
            name: name.into(),
            dtype: Dtype::I64,
            shape: shape.to_vec(),
            bytes: data.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }
}

/// Serialises `tensors` (and optional `__metadata__`) to a safetensors file, atomically.
pub fn write_safetensors(
    path: &Path,
    tensors: &[OutTensor],
    metadata: Option<HashMap<String, String>>,
    inputs: &[&Path],
) -> Result<(), WriteError> {
    let encode = |reason: String| WriteError::Encode {
        path: path.to_path_buf(),
        reason,
    };
    let views = tensors
        .iter()
        .map(|t| {
            TensorView::new(t.dtype, t.shape.clone(), &t.bytes)
                .map(|v| (t.name.clone(), v))
                .map_err(|e| encode(format!("tensor `{}`: {e}", t.name)))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let bytes = safetensors::serialize(views, metadata).map_err(|e| encode(e.to_string()))?;
    write_atomic(path, &bytes, inputs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("pruneview-io-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn a_staged_folder_appears_whole_or_not_at_all_and_is_locked() {
        let root = scratch("staged");
        let target = root.join("out");
        // Not committed: the folder it created is gone again.
        {
            let s = StagedDir::begin(&target).unwrap();
            std::fs::write(s.path("a.json"), b"a").unwrap();
            assert!(!target.join("a.json").exists());
        }
        assert!(!target.exists());
        // A second run into a locked folder is refused; committing moves every file.
        let s = StagedDir::begin(&target).unwrap();
        let e = StagedDir::begin(&target).err().unwrap();
        assert!(e.to_string().contains("another pruneview run"), "{e}");
        std::fs::write(s.path("a.json"), b"a").unwrap();
        std::fs::write(s.path("b.bin"), b"b").unwrap();
        let moved = s.commit().unwrap();
        assert_eq!(moved, vec![target.join("a.json"), target.join("b.bin")]);
        let mut left: Vec<String> = std::fs::read_dir(&target)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["a.json", "b.bin"]);
        // A failed run into an existing folder leaves its files untouched, and a killed
        // run's staging folder is cleaned up by the next one.
        std::fs::create_dir(target.join(format!("{STAGING_PREFIX}999999"))).unwrap();
        {
            let s = StagedDir::begin(&target).unwrap();
            std::fs::write(s.path("a.json"), b"new").unwrap();
        }
        assert_eq!(std::fs::read(target.join("a.json")).unwrap(), b"a");
        assert_eq!(std::fs::read_dir(&target).unwrap().count(), 2);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn outputs_are_checked_before_any_work() {
        let root = scratch("writable");
        assert!(check_writable(&root.join("new/deeper/x.json")).is_ok());
        let e = check_writable(&root).unwrap_err().to_string();
        assert!(e.contains("is a folder, not a file"), "{e}");
        std::fs::write(root.join("file"), b"x").unwrap();
        let e = check_writable(&root.join("file/x.json"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("is a file, not a folder"), "{e}");
        // /proc refuses new files even to root.
        let e = check_writable(Path::new("/proc/pruneview-x.json"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("not writable"), "{e}");
        // Two spellings of one new file resolve alike.
        let a = resolved(&root.join("new/x.json"));
        let b = resolved(&root.join("./new/../new/x.json"));
        assert_eq!(a, b);
        assert_eq!(
            std::fs::read_dir(&root).unwrap().count(),
            1,
            "no probe file left"
        );
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn refuses_to_overwrite_an_input_and_leaves_it_intact() {
        let dir = std::env::temp_dir().join(format!("pruneview-io-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let input = dir.join("in.bin");
        std::fs::write(&input, b"original").unwrap();
        let err = write_atomic(&input, b"new", &[&input]).unwrap_err();
        assert!(err.to_string().contains("refusing to overwrite"), "{err}");
        assert_eq!(std::fs::read(&input).unwrap(), b"original");
        let out = dir.join("out.bin");
        write_atomic(&out, b"new", &[&input]).unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), b"new");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
