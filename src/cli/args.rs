//! The flag groups several subcommands share: the model, the scans, the calibration scans,
//! the curve settings and the group weights.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use clap::Args;

use pruneview::detect::{Detector, FovFilter, PreparedScan, prepare_scan};
use pruneview::pointcloud::{ImageSize, ScanFormat};
use pruneview::progress::Control;
use pruneview::prune::probe::CalibScan;
use pruneview::prune::{Lambdas, Ranking, Weighting};
use pruneview::session::scans::{ScanReading, calibration_scans, expand_scan_paths};

/// Which model to load.
#[derive(Args, Debug, Clone)]
pub struct ModelArgs {
    /// OpenPCDet model YAML (`_BASE_CONFIG_` resolved against the folder holding `cfgs/`).
    /// Optional when the weights carry `pruneview.config` in their metadata.
    #[arg(long, value_name = "C.yaml")]
    pub config: Option<PathBuf>,
    /// Weights: safetensors with OpenPCDet `state_dict` names (f32, f16 or bf16).
    #[arg(long, value_name = "W.safetensors")]
    pub weights: PathBuf,
}

impl ModelArgs {
    pub fn load(&self) -> Result<Detector> {
        let det = Detector::load(self.config.as_deref(), &self.weights)?;
        if !det.unused_keys.is_empty() {
            let shown: Vec<&str> = det.unused_keys.iter().take(8).map(String::as_str).collect();
            eprintln!(
                "warning: {}: {} tensors are not used by the model: {}{}",
                self.weights.display(),
                det.unused_keys.len(),
                shown.join(", "),
                if det.unused_keys.len() > 8 {
                    ", ..."
                } else {
                    ""
                }
            );
        }
        Ok(det)
    }

    pub fn inputs(&self) -> Vec<&Path> {
        let mut v = vec![self.weights.as_path()];
        v.extend(self.config.as_deref());
        v
    }
}

/// How to read a scan.
#[derive(Args, Debug, Clone)]
pub struct ScanArgs {
    /// Scan format; by default from the extension (.bin kitti, .pcd.bin nuscenes, .pcd).
    #[arg(long, value_parser = parse_format)]
    pub format: Option<ScanFormat>,
    /// KITTI calib file: keep only points inside camera 2's field of view (as OpenPCDet's
    /// FOV_POINTS_ONLY). Needs --image-size. With several scans, a folder holding
    /// `<scan stem>.txt` for each (KITTI layout).
    #[arg(long, value_name = "calib.txt", requires = "image_size")]
    pub fov_calib: Option<PathBuf>,
    /// Image size HxW for the FOV filter and KITTI output, e.g. 375x1242.
    #[arg(long, value_name = "HxW", value_parser = parse_image_size)]
    pub image_size: Option<ImageSize>,
}

impl ScanArgs {
    pub fn fov(&self) -> Option<FovFilter> {
        Some(FovFilter {
            calib: self.fov_calib.clone()?,
            image: self.image_size?,
        })
    }

    pub fn prepare(&self, det: &Detector, scan: &Path) -> Result<PreparedScan> {
        let prepared = prepare_scan(
            scan,
            self.format,
            self.fov().as_ref(),
            &det.config.data.used_features,
        )?;
        let report = prepared.scan.report();
        if report.non_finite_dropped > 0 {
            eprintln!(
                "warning: {}: dropped {} points with NaN or infinite values",
                scan.display(),
                report.non_finite_dropped
            );
        }
        if det.config.data.fov_points_only && self.fov_calib.is_none() {
            eprintln!(
                "note: the config sets FOV_POINTS_ONLY; pass --fov-calib and --image-size to reproduce OpenPCDet's evaluation input"
            );
        }
        Ok(prepared)
    }
}

fn parse_format(s: &str) -> Result<ScanFormat, String> {
    s.parse::<ScanFormat>().map_err(|e| e.to_string())
}

pub(crate) fn parse_image_size(s: &str) -> Result<ImageSize, String> {
    s.parse::<ImageSize>().map_err(|e| e.to_string())
}

/// Calibration scans and how to read them.
#[derive(Args, Debug, Clone)]
pub struct CalibArgs {
    /// Calibration scans: files, or folders (every .bin / .pcd inside, sorted by name).
    #[arg(long, value_name = "DIR_OR_FILES", num_args = 1.., required = true)]
    pub scans: Vec<PathBuf>,
    /// Use at most this many scans (the first, in name order).
    #[arg(long)]
    pub max_scans: Option<usize>,
    /// Read scans like `detect`. `--fov-calib` may be a folder: each scan then uses
    /// `<folder>/<scan stem>.txt` (KITTI layout).
    #[command(flatten)]
    pub scan_args: ScanArgs,
}

impl CalibArgs {
    pub fn files(&self) -> Result<Vec<PathBuf>> {
        let mut files = expand_scan_paths(&self.scans)?;
        if let Some(n) = self.max_scans {
            files.truncate(n);
        }
        if files.is_empty() {
            bail!("no calibration scans");
        }
        Ok(files)
    }

    /// The scan files and the scans read from them (the camera-FOV filter from `--fov-calib`,
    /// or from the KITTI layout the scans sit in when the model uses FOV points only).
    pub fn load(&self, det: &Detector) -> Result<(Vec<PathBuf>, Vec<CalibScan>)> {
        let files = self.files()?;
        let reading = ScanReading {
            format: self.scan_args.format,
            fov_calib: self.scan_args.fov_calib.clone(),
            image: self.scan_args.image_size,
        };
        let read = calibration_scans(det, &files, &reading, &Control::quiet())?;
        for w in &read.warnings {
            eprintln!("warning: {w}");
        }
        Ok((files, read.scans))
    }
}

#[derive(Args, Debug, Clone)]
pub struct CurveArgs {
    /// Rademacher probes per scan and group (confidence, locality).
    #[arg(long, default_value_t = 4)]
    pub probes: usize,
    /// Sparsity levels from 0 to 1 inclusive (2 to 10001).
    #[arg(long, default_value_t = 101, value_parser = parse_levels)]
    pub levels: usize,
    /// Seed of the probes (each scan's probes derive from it and the scan's file name).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Weight ranking inside a layer: magnitude (|w|) or saliency (w^2 x Gauss-Newton
    /// diagonal; one more pass over the probes, and a `.saliency.safetensors` sidecar).
    #[arg(long, default_value = "magnitude")]
    pub ranking: Ranking,
    /// What the distortion compares: `detection` (scores after the sigmoid, box errors
    /// weighted by the dense confidence of their anchor or cell) or `raw` (every logit and
    /// regression value equally, the paper's form; on trained models background anchors
    /// dominate it).
    #[arg(long, default_value = "detection")]
    pub distortion: Weighting,
    /// Take the output normalisation from this curves file, so that shards computed on
    /// different scans can be merged exactly.
    #[arg(long, value_name = "curves.json")]
    pub norm_from: Option<PathBuf>,
    /// Also measure curves exactly (prune, re-run) for these layers: `all`, or comma-separated
    /// names or unit indices. Slow: one pass over the scans per layer and level.
    #[arg(long, value_name = "LAYERS|all")]
    pub measured: Option<String>,
    /// Sparsities at which measured curves are computed.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9"
    )]
    pub measured_levels: Vec<f64>,
    /// Measure each point after re-estimating the BatchNorm statistics (the model as
    /// `--recover stats` leaves it): recovery-aware curves, for `solve --on measured`.
    #[arg(long, requires = "measured")]
    pub measured_after_stats: bool,
    /// Measure on the first N calibration scans only (default: all). Measured curves cost one
    /// pass per layer and level; 16 scans are enough for the allocation (docs/pruning-report.md).
    #[arg(long, value_name = "N", requires = "measured", value_parser = clap::value_parser!(u64).range(1..))]
    pub measured_scans: Option<u64>,
}

#[derive(Args, Debug, Clone, Copy)]
pub struct LambdaArgs {
    /// Weight of the confidence group (cls_preds / hm), >= 0.
    #[arg(long, default_value_t = 1.0, value_parser = parse_group_weight)]
    pub lambda_conf: f64,
    /// Weight of the locality group (box, direction and regression maps), >= 0.
    #[arg(long, default_value_t = 1.0, value_parser = parse_group_weight)]
    pub lambda_loc: f64,
}

/// A group weight: a distortion weighted by a negative number would reward damage.
fn parse_group_weight(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!("`{s}`: a group weight is a finite number >= 0")),
    }
}

/// A layer cap is a sparsity.
pub(super) fn parse_layer_cap(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err(format!(
            "`{s}`: a layer cap is a sparsity in [0, 1] (1 turns it off)"
        )),
    }
}

/// DP budget bins: too few round every layer's cost up to the whole budget (the DP then
/// prunes everything it can), too many cost memory for nothing.
pub(super) fn parse_bins(s: &str) -> Result<usize, String> {
    const RANGE: std::ops::RangeInclusive<usize> = 64..=(1 << 20);
    match s.parse::<usize>() {
        Ok(n) if RANGE.contains(&n) => Ok(n),
        _ => Err(format!(
            "`{s}`: give {} to {} bins",
            RANGE.start(),
            RANGE.end()
        )),
    }
}

impl LambdaArgs {
    pub fn get(&self) -> Lambdas {
        Lambdas {
            confidence: self.lambda_conf,
            locality: self.lambda_loc,
        }
    }
}

/// Most curve levels: a finer grid than 1e-4 in sparsity changes no allocation, and every
/// level costs memory per layer and probe.
const MAX_LEVELS: usize = 10_001;

fn parse_levels(s: &str) -> Result<usize, String> {
    let n: usize = s
        .parse()
        .map_err(|_| format!("`{s}` is not a whole number"))?;
    if (2..=MAX_LEVELS).contains(&n) {
        Ok(n)
    } else {
        Err(format!("{n} levels: give 2 to {MAX_LEVELS}"))
    }
}
