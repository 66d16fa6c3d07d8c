//! A LiDAR scan in memory, and the readers that make one from a file.
//!
//! A [`Scan`] is a flat row-major `f32` buffer of points with named columns (`x, y, z,
//! intensity, ...`), the file it came from and a [`LoadReport`] saying what the reader did.
//! Readers never silently change the data: a point with any non-finite value is dropped *and
//! counted*; a file whose size does not fit its record layout is an error naming the file.
//!
//! Formats (chosen by file name, or explicitly with [`ScanFormat`]):
//!
//! | format | file | columns |
//! |---|---|---|
//! | KITTI | `*.bin`, N x 4 little-endian f32 | x, y, z, intensity (reflectance 0..1) |
//! | nuScenes | `*.pcd.bin`, N x 5 little-endian f32 | x, y, z, intensity (0..255), ring |
//! | PCD | `*.pcd`, `DATA ascii` or `binary` | x, y, z, intensity (other fields ignored) |
//!
//! [`Scan::to_features`] then lays the points out as a model's `used_feature_list` asks.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use thiserror::Error;

/// Column names of a KITTI velodyne scan (OpenPCDet calls the reflectance `intensity`).
pub const KITTI_COLUMNS: [&str; 4] = ["x", "y", "z", "intensity"];
/// Column names of a nuScenes `.pcd.bin` sweep.
pub const NUSCENES_COLUMNS: [&str; 5] = ["x", "y", "z", "intensity", "ring"];
/// Column names of a scan read from a PCD file.
pub const PCD_COLUMNS: [&str; 4] = ["x", "y", "z", "intensity"];
/// The feature OpenPCDet appends for multi-sweep models: the sweep's time lag in seconds.
/// A single sweep has time lag 0, so a scan without this column yields zeros for it.
pub const TIMESTAMP_FEATURE: &str = "timestamp";

const XYZ: [&str; 3] = ["x", "y", "z"];

/// Everything that can go wrong reading a scan or mapping it to model features.
#[derive(Debug, Error)]
pub enum ScanError {
    #[error("cannot read scan {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: cannot list the folder: {source}", path.display())]
    ListDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: no .bin or .pcd scans in this folder", path.display())]
    NoScans { path: PathBuf },
    #[error("cannot write scan {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "{}: cannot tell the scan format from the file name (expected a name ending in .bin \
         for KITTI, .pcd.bin for nuScenes or .pcd); name the format explicitly \
         (kitti, nuscenes or pcd)",
        path.display()
    )]
    UnknownExtension { path: PathBuf },
    #[error("unknown scan format '{name}': expected kitti, nuscenes or pcd")]
    UnknownFormat { name: String },
    #[error(
        "{}: size {size} bytes is not a multiple of the {record}-byte {format} point record \
         ({columns} float32 values per point); the file is truncated or not a {format} scan",
        path.display()
    )]
    BadSize {
        path: PathBuf,
        size: u64,
        record: usize,
        columns: usize,
        format: ScanFormat,
    },
    #[error("{}: PCD header line {line}: {problem}", path.display())]
    PcdHeader {
        path: PathBuf,
        line: usize,
        problem: String,
    },
    #[error(
        "{}: PCD has no '{field}' field (FIELDS: {found}); x, y, z and intensity are required",
        path.display()
    )]
    PcdMissingField {
        path: PathBuf,
        field: &'static str,
        found: String,
    },
    #[error(
        "{}: PCD 'DATA {kind}' is not supported; convert the file to DATA binary or ascii \
         (e.g. pcl_convert_pcd_ascii_binary in.pcd out.pcd 1)",
        path.display()
    )]
    PcdUnsupported { path: PathBuf, kind: String },
    #[error("{}: PCD ascii data, line {line}: {problem}", path.display())]
    PcdAscii {
        path: PathBuf,
        line: usize,
        problem: String,
    },
    #[error("{}: PCD binary data at byte offset {offset}: {problem}", path.display())]
    PcdBinary {
        path: PathBuf,
        offset: u64,
        problem: String,
    },
    #[error(
        "{}: the model asks for point feature '{name}', which this scan does not have \
         (columns: {available}; '{TIMESTAMP_FEATURE}' is always available and is 0 for a \
         single sweep)",
        path.display()
    )]
    UnknownFeature {
        path: PathBuf,
        name: String,
        available: String,
    },
    #[error("{}: {problem}", path.display())]
    Shape { path: PathBuf, problem: String },
    #[error("point feature list {used}: {problem}")]
    FeatureList { used: String, problem: String },
}

/// The on-disk layout of a scan.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ScanFormat {
    /// KITTI velodyne `.bin`: N x 4 little-endian f32 (x, y, z, reflectance).
    Kitti,
    /// nuScenes `.pcd.bin`: N x 5 little-endian f32 (x, y, z, intensity, ring).
    Nuscenes,
    /// Point Cloud Library `.pcd`, `DATA ascii` or `DATA binary`.
    Pcd,
}

impl ScanFormat {
    /// The format implied by a file name: `.pcd.bin` is nuScenes, `.bin` KITTI, `.pcd` PCD
    /// (case-insensitive); `None` for anything else.
    pub fn from_path(path: &Path) -> Option<ScanFormat> {
        let name = path.file_name()?.to_string_lossy().to_ascii_lowercase();
        if name.ends_with(".pcd.bin") {
            Some(ScanFormat::Nuscenes)
        } else if name.ends_with(".bin") {
            Some(ScanFormat::Kitti)
        } else if name.ends_with(".pcd") {
            Some(ScanFormat::Pcd)
        } else {
            None
        }
    }

    /// The lower-case name used on the command line: `kitti`, `nuscenes` or `pcd`.
    pub fn name(self) -> &'static str {
        match self {
            ScanFormat::Kitti => "kitti",
            ScanFormat::Nuscenes => "nuscenes",
            ScanFormat::Pcd => "pcd",
        }
    }
}

impl fmt::Display for ScanFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ScanFormat {
    type Err = ScanError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "kitti" => Ok(ScanFormat::Kitti),
            "nuscenes" => Ok(ScanFormat::Nuscenes),
            "pcd" => Ok(ScanFormat::Pcd),
            _ => Err(ScanError::UnknownFormat {
                name: s.to_string(),
            }),
        }
    }
}

/// What a reader did with a file: how much it read and what it dropped.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// The format read, `None` for a scan built in memory ([`Scan::from_points`]).
    pub format: Option<ScanFormat>,
    /// File size in bytes (0 for an in-memory scan).
    pub bytes: u64,
    /// Point records found in the file.
    pub points_read: usize,
    /// Points dropped because one of their values was NaN or infinite.
    pub non_finite_dropped: usize,
}

impl LoadReport {
    /// Points kept after the reader's own checks.
    pub fn points_kept(&self) -> usize {
        self.points_read.saturating_sub(self.non_finite_dropped)
    }
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let format = self.format.map_or("in-memory", ScanFormat::name);
        write!(
            f,
            "{format}: {} points read, {} non-finite dropped, {} kept",
            self.points_read,
            self.non_finite_dropped,
            self.points_kept()
        )
    }
}

/// Whether a file name looks like a scan (`.bin`, `.pcd.bin` or `.pcd`).
pub fn is_scan_file(path: &Path) -> bool {
    let n = path.to_string_lossy();
    n.ends_with(".bin") || n.ends_with(".pcd")
}

/// The scans in a folder, sorted by name; an error when it holds none.
pub fn list_scans(dir: &Path) -> Result<Vec<PathBuf>, ScanError> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|source| ScanError::ListDir {
            path: dir.to_path_buf(),
            source,
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|f| is_scan_file(f))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(ScanError::NoScans {
            path: dir.to_path_buf(),
        });
    }
    Ok(files)
}

/// A LiDAR scan: `len()` points of `num_features()` f32 values each, row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct Scan {
    points: Vec<f32>,
    columns: Vec<String>,
    source: PathBuf,
    report: LoadReport,
}

impl Scan {
    /// Reads a scan, choosing the format from the file name (see [`ScanFormat::from_path`]).
    pub fn load(path: impl AsRef<Path>) -> Result<Scan, ScanError> {
        let path = path.as_ref();
        let format = ScanFormat::from_path(path).ok_or_else(|| ScanError::UnknownExtension {
            path: path.to_path_buf(),
        })?;
        Scan::load_as(path, format)
    }

    /// Reads a scan in the given format, whatever the file is called.
    pub fn load_as(path: impl AsRef<Path>, format: ScanFormat) -> Result<Scan, ScanError> {
        let path = path.as_ref();
        let bytes = crate::io::read_limited(path, crate::io::MAX_SCAN_BYTES).map_err(|source| {
            ScanError::Io {
                path: path.to_path_buf(),
                source,
            }
        })?;
        match format {
            ScanFormat::Kitti => from_f32_records(path, &bytes, format, &KITTI_COLUMNS),
            ScanFormat::Nuscenes => from_f32_records(path, &bytes, format, &NUSCENES_COLUMNS),
            ScanFormat::Pcd => {
                let read = super::pcd::read_pcd(path, &bytes)?;
                Ok(Scan {
                    points: read.points,
                    columns: owned(&PCD_COLUMNS),
                    source: path.to_path_buf(),
                    report: LoadReport {
                        format: Some(format),
                        bytes: bytes.len() as u64,
                        points_read: read.points_read,
                        non_finite_dropped: read.non_finite_dropped,
                    },
                })
            }
        }
    }

    /// Wraps points built in memory (e.g. by the simulator). `points.len()` must be a
    /// multiple of `columns.len()`; column names must be non-empty and distinct. Non-finite
    /// points are dropped and counted, as the file readers do.
    pub fn from_points(
        points: Vec<f32>,
        columns: &[&str],
        source: impl Into<PathBuf>,
    ) -> Result<Scan, ScanError> {
        let source = source.into();
        let shape_error = |problem: String| ScanError::Shape {
            path: source.clone(),
            problem,
        };
        if columns.is_empty() {
            return Err(shape_error("a scan needs at least one column".into()));
        }
        for (i, c) in columns.iter().enumerate() {
            if c.is_empty() || columns[..i].contains(c) {
                return Err(shape_error(format!(
                    "column names must be non-empty and distinct, got {columns:?}"
                )));
            }
        }
        if !points.len().is_multiple_of(columns.len()) {
            return Err(shape_error(format!(
                "{} values do not make whole points of {} columns",
                points.len(),
                columns.len()
            )));
        }
        let points_read = points.len() / columns.len();
        let mut scan = Scan {
            points,
            columns: owned(columns),
            source,
            report: LoadReport {
                format: None,
                bytes: 0,
                points_read,
                non_finite_dropped: 0,
            },
        };
        scan.retain(|p| p.iter().all(|v| v.is_finite()));
        scan.report.non_finite_dropped = points_read - scan.len();
        Ok(scan)
    }

    /// Number of points.
    pub fn len(&self) -> usize {
        self.points.len() / self.columns.len()
    }

    /// True when the scan holds no points (an empty file loads; callers decide what to do).
    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// Values per point.
    pub fn num_features(&self) -> usize {
        self.columns.len()
    }

    /// Column names, e.g. `["x", "y", "z", "intensity"]`.
    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    /// All values, row-major: point i is `points()[i * num_features()..][..num_features()]`.
    pub fn points(&self) -> &[f32] {
        &self.points
    }

    /// Point `i` (panics if `i >= len()`, like slice indexing).
    pub fn point(&self, i: usize) -> &[f32] {
        let nf = self.num_features();
        &self.points[i * nf..(i + 1) * nf]
    }

    /// Takes the points out.
    pub fn into_points(self) -> Vec<f32> {
        self.points
    }

    /// The file the scan was read from (or the name given to [`Scan::from_points`]).
    pub fn source(&self) -> &Path {
        &self.source
    }

    /// What the reader did.
    pub fn report(&self) -> &LoadReport {
        &self.report
    }

    /// Keeps the points for which `keep` returns true, in order; returns how many were removed.
    pub fn retain(&mut self, mut keep: impl FnMut(&[f32]) -> bool) -> usize {
        let nf = self.num_features();
        let before = self.len();
        let mut write = 0;
        for read in 0..before {
            let start = read * nf;
            if keep(&self.points[start..start + nf]) {
                if write != read {
                    self.points.copy_within(start..start + nf, write * nf);
                }
                write += 1;
            }
        }
        self.points.truncate(write * nf);
        before - write
    }

    /// The points as the model's `used_feature_list` asks, N x `used.len()` row-major,
    /// laid out as OpenPCDet's `absolute_coordinates_encoding` does: x, y, z first, then the
    /// other names in list order.
    ///
    /// Each name picks the scan column of that name; `timestamp` (the sweep time lag
    /// OpenPCDet appends for nuScenes) is 0 for a single sweep when the scan has no such
    /// column. So a nuScenes scan (x, y, z, intensity, ring) with
    /// `['x','y','z','intensity','timestamp']` gives OpenPCDet's `points[:, :4]` plus a zero
    /// column. Errors: a name the scan lacks (naming the scan and its columns), and a list
    /// without x, y and z or with a name twice (OpenPCDet's layout would not have
    /// `used.len()` columns then).
    pub fn to_features<S: AsRef<str>>(&self, used: &[S]) -> Result<Vec<f32>, ScanError> {
        let names: Vec<&str> = used.iter().map(AsRef::as_ref).collect();
        let list_error = |problem: String| ScanError::FeatureList {
            used: format!("{names:?}"),
            problem,
        };
        for (i, name) in names.iter().enumerate() {
            if names[..i].contains(name) {
                return Err(list_error(format!("'{name}' appears twice")));
            }
        }
        if let Some(axis) = XYZ.iter().find(|a| !names.contains(a)) {
            return Err(list_error(format!(
                "'{axis}' is missing; OpenPCDet always puts x, y, z first"
            )));
        }
        let ordered = XYZ
            .iter()
            .copied()
            .chain(names.iter().copied().filter(|n| !XYZ.contains(n)));
        // Source column per output feature; None = the zero time lag.
        let sources: Vec<Option<usize>> = ordered
            .map(|name| match self.columns.iter().position(|c| c == name) {
                Some(i) => Ok(Some(i)),
                None if name == TIMESTAMP_FEATURE => Ok(None),
                None => Err(ScanError::UnknownFeature {
                    path: self.source.clone(),
                    name: name.to_string(),
                    available: self.columns.join(", "),
                }),
            })
            .collect::<Result<_, _>>()?;
        let mut out = Vec::with_capacity(self.len() * sources.len());
        for p in self.points.chunks_exact(self.num_features()) {
            out.extend(sources.iter().map(|s| s.map_or(0.0, |i| p[i])));
        }
        Ok(out)
    }

    /// Writes all columns as little-endian f32 records (a KITTI `.bin` for 4 columns, a
    /// nuScenes `.pcd.bin` for 5), atomically: a temporary file next to `path`, then rename.
    pub fn write_bin(&self, path: impl AsRef<Path>) -> Result<(), ScanError> {
        let path = path.as_ref();
        let bytes: Vec<u8> = self.points.iter().flat_map(|v| v.to_le_bytes()).collect();
        write_atomic(path, &bytes).map_err(|source| ScanError::Write {
            path: path.to_path_buf(),
            source,
        })
    }
}

fn owned(columns: &[&str]) -> Vec<String> {
    columns.iter().map(|c| c.to_string()).collect()
}

/// Reads a headerless file of little-endian f32 records of `columns.len()` values.
fn from_f32_records(
    path: &Path,
    bytes: &[u8],
    format: ScanFormat,
    columns: &[&str],
) -> Result<Scan, ScanError> {
    let record = columns.len() * 4;
    if !bytes.len().is_multiple_of(record) {
        return Err(ScanError::BadSize {
            path: path.to_path_buf(),
            size: bytes.len() as u64,
            record,
            columns: columns.len(),
            format,
        });
    }
    let points_read = bytes.len() / record;
    let mut points = Vec::with_capacity(bytes.len() / 4);
    let mut dropped = 0;
    for rec in bytes.chunks_exact(record) {
        let start = points.len();
        let mut finite = true;
        for v in rec.chunks_exact(4) {
            let v = f32::from_le_bytes([v[0], v[1], v[2], v[3]]);
            finite &= v.is_finite();
            points.push(v);
        }
        if !finite {
            points.truncate(start);
            dropped += 1;
        }
    }
    Ok(Scan {
        points,
        columns: owned(columns),
        source: path.to_path_buf(),
        report: LoadReport {
            format: Some(format),
            bytes: bytes.len() as u64,
            points_read,
            non_finite_dropped: dropped,
        },
    })
}

/// Writes `bytes` to a temporary file in `path`'s folder, then renames it over `path`, so a
/// reader never sees a half-written file.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidInput, "the path does not name a file")
    })?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp{}", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    let result = std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
