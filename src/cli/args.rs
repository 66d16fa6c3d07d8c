//! The flag groups several subcommands share: the model and the scans.

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::Args;

use pruneview::detect::{Detector, FovFilter, PreparedScan, prepare_scan};
use pruneview::pointcloud::{ImageSize, ScanFormat};

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
