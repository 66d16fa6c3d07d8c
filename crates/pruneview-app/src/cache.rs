//! Curves and evaluations kept across restarts, so that reopening the same files shows them
//! at once instead of recomputing half a minute (or hours, for measured curves) of work.
//!
//! An entry is a folder under the app's data folder, named by a hash of its key: the weights'
//! sha256, the config and scan files (path, size, modification time), the curve settings and
//! the app's version. The folder holds the key itself (`key.json`, compared on every read, so
//! a hash collision is a miss), the curves (`curves.json`, the CLI's format, validated when
//! read) and one file per evaluation. Evaluations on a folder also record the folder's
//! files, and are dropped when they changed.
//!
//! A cache is never trusted more than a recomputation: whatever cannot be read (missing,
//! truncated, another format, another key) is a miss, reported as a note, never an error.
//! Everything here runs on job threads.

use std::hash::Hasher;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use pruneview_core::io::{MAX_CONFIG_BYTES, MAX_CURVES_BYTES, read_text_limited, write_atomic};
use pruneview_core::prune::Weighting;
use pruneview_core::prune::curves::Curves;
use pruneview_core::session::evaluate::EvalSource;
use pruneview_core::session::model::LoadedModel;
use serde::{Deserialize, Serialize};

use super::work::EvalPoint;

/// Format tag of every cache file; another tag is a miss.
pub const CACHE_FORMAT: &str = "pruneview-app-cache/1";

/// A file as the key sees it: where it is, how big, when it last changed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileStamp {
    pub path: PathBuf,
    pub size: u64,
    /// Nanoseconds since the Unix epoch (0 where the file system gives no time).
    pub modified_ns: u128,
}

impl FileStamp {
    pub fn of(path: &Path) -> std::io::Result<FileStamp> {
        let meta = std::fs::metadata(path)?;
        let modified_ns = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        Ok(FileStamp {
            path: std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()),
            size: meta.len(),
            modified_ns,
        })
    }
}

/// What the curves depend on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct CurvesKey {
    format: String,
    app_version: String,
    weights_sha256: String,
    config: Option<FileStamp>,
    scans: Vec<FileStamp>,
    probes: usize,
    weighting: Weighting,
}

/// The app's cache folder.
#[derive(Clone, Debug)]
pub struct Cache {
    root: PathBuf,
}

/// One (model, scans, curve settings) entry.
#[derive(Clone, Debug)]
pub struct Entry {
    dir: PathBuf,
    key: CurvesKey,
}

/// An evaluation as stored: the point, and the folder's files when it was made on one.
#[derive(Serialize, Deserialize)]
struct StoredEval {
    format: String,
    folder: Option<Vec<FileStamp>>,
    point: EvalPoint,
}

/// A stable 64-bit hash (FNV-1a) for file names; `key.json` guards against collisions.
struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

fn hash_hex(text: &str) -> String {
    let mut h = Fnv(0xcbf2_9ce4_8422_2325);
    h.write(text.as_bytes());
    format!("{:016x}", h.finish())
}

fn write_json(path: &Path, value: &impl Serialize) -> Result<(), String> {
    let text = serde_json::to_string(value).map_err(|e| format!("{}: {e}", path.display()))?;
    write_atomic(path, text.as_bytes(), &[]).map_err(|e| e.to_string())
}

/// The files of an evaluation folder that its AP depends on, sorted.
pub fn folder_stamps(dir: &Path) -> std::io::Result<Vec<FileStamp>> {
    let mut out = Vec::new();
    for sub in ["velodyne", "calib", "label_2"] {
        for e in std::fs::read_dir(dir.join(sub))? {
            out.push(FileStamp::of(&e?.path())?);
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

impl Cache {
    pub fn new(root: impl Into<PathBuf>) -> Cache {
        Cache { root: root.into() }
    }

    /// `cache/` under eframe's data folder for the app (e.g. `~/.local/share/pruneview`).
    pub fn default_location() -> Option<Cache> {
        eframe::storage_dir("pruneview").map(|d| Cache::new(d.join("cache")))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The entry of `model`'s curves on `scans` (stats every file: call it on a job thread).
    pub fn entry(
        &self,
        model: &LoadedModel,
        scans: &[PathBuf],
        probes: usize,
        weighting: Weighting,
    ) -> std::io::Result<Entry> {
        let key = CurvesKey {
            format: CACHE_FORMAT.to_owned(),
            app_version: env!("CARGO_PKG_VERSION").to_owned(),
            weights_sha256: model.info.weights_sha256.clone(),
            config: model
                .config_path
                .as_deref()
                .map(FileStamp::of)
                .transpose()?,
            scans: scans
                .iter()
                .map(|p| FileStamp::of(p))
                .collect::<Result<_, _>>()?,
            probes,
            weighting,
        };
        let text = serde_json::to_string(&key).map_err(std::io::Error::other)?;
        Ok(Entry {
            dir: self.root.join(hash_hex(&text)),
            key,
        })
    }
}

impl Entry {
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn curves_path(&self) -> PathBuf {
        self.dir.join("curves.json")
    }

    /// Whether the folder's `key.json` is this entry's key (`Err`: why not).
    fn check_key(&self) -> Result<(), String> {
        let path = self.dir.join("key.json");
        let text = read_text_limited(&path, MAX_CONFIG_BYTES)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let key: CurvesKey =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        if key == self.key {
            Ok(())
        } else {
            Err(format!("{}: another key", path.display()))
        }
    }

    /// The cached curves: `Ok(None)` when there are none, `Err` when what is there cannot be
    /// used (the caller recomputes and says so).
    pub fn load_curves(&self) -> Result<Option<Curves>, String> {
        let path = self.curves_path();
        if !path.is_file() {
            return Ok(None);
        }
        self.check_key()?;
        Curves::load(&path).map(Some).map_err(|e| e.to_string())
    }

    /// Stores `curves` (measured ones included) under this entry.
    pub fn save_curves(&self, curves: &Curves) -> Result<(), String> {
        std::fs::create_dir_all(&self.dir).map_err(|e| format!("{}: {e}", self.dir.display()))?;
        write_json(&self.dir.join("key.json"), &self.key)?;
        write_atomic(&self.curves_path(), curves.to_json().as_bytes(), &[])
            .map_err(|e| e.to_string())
    }

    /// The file of `p`'s slot: one per set, method, recovery and budget, as the app keeps one
    /// point per slot.
    fn eval_path(&self, p: &EvalPoint) -> PathBuf {
        let slot = format!("{:?} {} {:?} {:.9}", p.source, p.method, p.recovery, p.keep);
        self.dir.join(format!("eval-{}.json", hash_hex(&slot)))
    }

    /// Stores an evaluation (a folder's files are stamped, so a changed folder is a miss).
    pub fn save_evaluation(&self, p: &EvalPoint) -> Result<(), String> {
        let folder = match &p.source {
            EvalSource::Folder(d) => {
                Some(folder_stamps(d).map_err(|e| format!("{}: {e}", d.display()))?)
            }
            _ => None,
        };
        std::fs::create_dir_all(&self.dir).map_err(|e| format!("{}: {e}", self.dir.display()))?;
        let stored = StoredEval {
            format: CACHE_FORMAT.to_owned(),
            folder,
            point: p.clone(),
        };
        write_json(&self.eval_path(p), &stored)
    }

    /// The stored evaluations still valid, and a note for each file that could not be used.
    pub fn load_evaluations(&self) -> (Vec<EvalPoint>, Vec<String>) {
        let (mut points, mut notes) = (Vec::new(), Vec::new());
        let Ok(dir) = std::fs::read_dir(&self.dir) else {
            return (points, notes);
        };
        let mut files: Vec<PathBuf> = dir
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("eval-") && n.ends_with(".json"))
            })
            .collect();
        files.sort();
        if !files.is_empty()
            && let Err(e) = self.check_key()
        {
            notes.push(format!("cached evaluations ignored: {e}"));
            return (points, notes);
        }
        for f in files {
            let stored = read_text_limited(&f, MAX_CURVES_BYTES)
                .map_err(|e| e.to_string())
                .and_then(|t| serde_json::from_str::<StoredEval>(&t).map_err(|e| e.to_string()))
                .and_then(|s| {
                    (s.format == CACHE_FORMAT)
                        .then_some(s)
                        .ok_or_else(|| "another format".to_owned())
                });
            match stored {
                Ok(s) => {
                    let current = match &s.point.source {
                        EvalSource::Folder(d) => folder_stamps(d).ok(),
                        _ => None,
                    };
                    // A folder that changed (or went) since: its AP may no longer hold.
                    if s.folder == current {
                        points.push(s.point);
                    }
                }
                Err(e) => notes.push(format!("cached evaluation ignored: {}: {e}", f.display())),
            }
        }
        (points, notes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pruneview_core::prune::alloc::Method;
    use pruneview_core::report::Accuracy;
    use pruneview_core::session::evaluate::Evaluation;
    use pruneview_core::session::recover::Recovery;

    fn temp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("pruneview-cache-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn entry(dir: &Path, scans: &[PathBuf]) -> Entry {
        let key = CurvesKey {
            format: CACHE_FORMAT.into(),
            app_version: "test".into(),
            weights_sha256: "abc".into(),
            config: None,
            scans: scans.iter().map(|p| FileStamp::of(p).unwrap()).collect(),
            probes: 1,
            weighting: Weighting::Detection,
        };
        let text = serde_json::to_string(&key).unwrap();
        Entry {
            dir: dir.join(hash_hex(&text)),
            key,
        }
    }

    fn point(source: EvalSource, keep: f64) -> EvalPoint {
        let acc = Accuracy {
            classes: vec![("Car".into(), 90.0, 80.0)],
            mean_bev: 90.0,
            mean_3d: 80.0,
        };
        EvalPoint {
            method: Method::Dp,
            recovery: Recovery::Statistics,
            keep,
            source,
            accuracy: Evaluation {
                dense: acc.clone(),
                pruned: acc,
                frames: 3,
            },
        }
    }

    #[test]
    fn evaluations_round_trip_and_a_changed_folder_drops_its_own() {
        let root = temp("evals");
        let data = root.join("data");
        for sub in ["velodyne", "calib", "label_2"] {
            std::fs::create_dir_all(data.join(sub)).unwrap();
            std::fs::write(data.join(sub).join("000000.txt"), "x").unwrap();
        }
        let scan = data.join("velodyne/000000.txt");
        let e = entry(&root, std::slice::from_ref(&scan));
        assert_eq!(e.load_curves(), Ok(None));
        assert_eq!(e.load_evaluations(), (Vec::new(), Vec::new()));
        let synth = point(EvalSource::Synthetic { seed: 7, frames: 3 }, 0.5);
        let folder = point(EvalSource::Folder(data.clone()), 0.5);
        // Evaluations need the key written first (the curves are, before any evaluation).
        std::fs::create_dir_all(e.dir()).unwrap();
        write_json(&e.dir().join("key.json"), &e.key).unwrap();
        e.save_evaluation(&synth).unwrap();
        e.save_evaluation(&folder).unwrap();
        // The same slot again replaces it.
        e.save_evaluation(&synth).unwrap();
        let (points, notes) = e.load_evaluations();
        assert!(notes.is_empty(), "{notes:?}");
        assert_eq!(points.len(), 2);
        assert!(points.contains(&synth) && points.contains(&folder));
        std::fs::write(data.join("label_2/000001.txt"), "y").unwrap();
        let (points, _) = e.load_evaluations();
        assert_eq!(points, vec![synth]);
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn damaged_files_are_misses_with_a_note() {
        let root = temp("damaged");
        std::fs::create_dir_all(&root).unwrap();
        let scan = root.join("scan.bin");
        std::fs::write(&scan, [0u8; 16]).unwrap();
        let e = entry(&root, std::slice::from_ref(&scan));
        std::fs::create_dir_all(e.dir()).unwrap();
        // No key, then a garbled key, then curves that are not curves.
        std::fs::write(e.dir().join("curves.json"), "{").unwrap();
        assert!(e.load_curves().unwrap_err().contains("key.json"));
        std::fs::write(e.dir().join("key.json"), "\u{0}garbage").unwrap();
        assert!(e.load_curves().unwrap_err().contains("key.json"));
        write_json(&e.dir().join("key.json"), &e.key).unwrap();
        let err = e.load_curves().unwrap_err();
        assert!(err.contains("curves.json"), "{err}");
        std::fs::write(e.dir().join("eval-0.json"), "[1, 2").unwrap();
        let (points, notes) = e.load_evaluations();
        assert!(points.is_empty());
        assert!(
            notes.len() == 1 && notes[0].contains("eval-0.json"),
            "{notes:?}"
        );
        // A scan that changed is another key, so another entry.
        std::fs::write(&scan, [0u8; 32]).unwrap();
        assert_ne!(entry(&root, &[scan]).dir(), e.dir());
        let _ = std::fs::remove_dir_all(&root);
    }
}
