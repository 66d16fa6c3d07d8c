//! `pruneview` (no subcommand), `pruneview open` and `pruneview screenshots`.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use pruneview::app;
use pruneview::app::work::OpenRequest;

#[derive(Args, Debug)]
pub struct OpenArgs {
    /// OpenPCDet model YAML (optional when the weights carry their config).
    #[arg(long, value_name = "C.yaml")]
    pub config: Option<PathBuf>,
    /// Weights (safetensors with OpenPCDet `state_dict` names); `--model` is accepted too.
    #[arg(long, value_name = "W.safetensors", alias = "model")]
    pub weights: PathBuf,
    /// Calibration scans: files or folders (a KITTI root or its velodyne/ folder).
    #[arg(long, value_name = "DIR_OR_FILES", num_args = 1..)]
    pub scans: Vec<PathBuf>,
}

#[derive(Args, Debug)]
pub struct ScreenshotsArgs {
    /// Folder for the PNG files (created if missing).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Calibration scans used for the curves (the first N bundled synthetic scans).
    #[arg(long, default_value_t = 16)]
    pub scans: usize,
}

pub fn open(a: OpenArgs) -> Result<()> {
    open_app(Some(OpenRequest {
        config: a.config,
        weights: a.weights,
        scans: a.scans,
    }))
}

pub fn open_app(req: Option<OpenRequest>) -> Result<()> {
    app::run(req)
}

pub fn screenshots(a: ScreenshotsArgs) -> Result<()> {
    let written = app::screenshots::render_all(&a.out, a.scans, &|what| eprintln!("{what}"))?;
    for f in written {
        outln!("{}", f.display())?;
    }
    Ok(())
}
