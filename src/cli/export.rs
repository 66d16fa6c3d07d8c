//! `export`: masks, pruned weights and the allocation files from an allocation.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use clap::Args;

use pruneview::model::Weights;
use pruneview::progress::Control;
use pruneview::prune::export;
use pruneview::prune::{Allocation, Curves};
use pruneview::session::export::{ExportFiles, ExportInputs, allocation_masks};

#[derive(Args, Debug)]
pub struct ExportCmd {
    /// The weights the allocation was computed for.
    #[arg(long, value_name = "W.safetensors")]
    pub weights: PathBuf,
    #[arg(long, value_name = "alloc.json")]
    pub alloc: PathBuf,
    #[command(flatten)]
    pub outputs: ExportOutputs,
    /// Curves, for the FLOPs and predicted-distortion columns of the CSV.
    #[arg(long, value_name = "curves.json")]
    pub curves: Option<PathBuf>,
    /// Gauss-Newton diagonal written by `curves --ranking saliency` (needed when the
    /// allocation uses the saliency ranking).
    #[arg(long, value_name = "S.safetensors")]
    pub saliency: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
pub struct ExportOutputs {
    /// U8 masks (1 kept, 0 pruned), same keys and shapes as the weights.
    #[arg(long, value_name = "M.safetensors")]
    pub masks: Option<PathBuf>,
    /// The weights with pruned values set to 0 (not faster by itself: a dense tensor with
    /// zeros runs at dense speed).
    #[arg(long, value_name = "P.safetensors")]
    pub pruned: Option<PathBuf>,
    /// One row per layer: shape, params, FLOPs, sparsity, predicted distortion.
    #[arg(long, value_name = "report.csv")]
    pub csv: Option<PathBuf>,
}

impl ExportOutputs {
    fn files(&self) -> ExportFiles {
        ExportFiles {
            masks: self.masks.clone(),
            pruned: self.pruned.clone(),
            csv: self.csv.clone(),
            ..ExportFiles::default()
        }
    }
}

/// The masks of `alloc` for `weights`, with a warning when it was made for another file.
pub(super) fn masks_of(
    weights: &Weights,
    alloc: &Allocation,
    saliency: Option<&Path>,
) -> Result<(Vec<export::LayerMask>, String)> {
    let (masks, sha, warning) = allocation_masks(weights, alloc, saliency)?;
    if let Some(w) = warning {
        eprintln!("warning: {w}");
    }
    Ok((masks, sha))
}

/// Writes `files` and says what each one is.
fn write_files(from: &ExportInputs, files: &ExportFiles) -> Result<()> {
    pruneview::session::export::write(from, files, &Control::quiet())?;
    describe_files(from, files);
    Ok(())
}

/// Says what each written file holds.
pub(super) fn describe_files(from: &ExportInputs, files: &ExportFiles) {
    let pruned = match from.recovered {
        Some(_) => "recovered pruned weights (zeros in dense tensors: not faster by themselves)",
        None => "pruned weights (zeros in dense tensors: not faster by themselves)",
    };
    let described = [
        (&files.masks, "masks (U8, 1 kept)"),
        (&files.pruned, pruned),
        (&files.allocation, "allocation"),
        (&files.csv, "per-layer report"),
        (&files.curves, "curves"),
    ];
    for (path, what) in described {
        if let Some(p) = path {
            eprintln!("{}: {what}", p.display());
        }
    }
}

pub fn export_cmd(a: ExportCmd) -> Result<()> {
    let files = a.outputs.files();
    if files.paths().is_empty() {
        bail!("nothing to export: give --masks, --pruned and/or --csv");
    }
    let mut inputs = vec![a.weights.as_path(), a.alloc.as_path()];
    inputs.extend(a.curves.as_deref());
    inputs.extend(a.saliency.as_deref());
    files.check(&inputs)?;
    let alloc = Allocation::load(&a.alloc)?;
    let curves = a.curves.as_deref().map(Curves::load).transpose()?;
    let weights = Weights::open(&a.weights)?;
    let (masks, sha) = masks_of(&weights, &alloc, a.saliency.as_deref())?;
    let from = ExportInputs {
        weights: &weights,
        alloc: &alloc,
        masks: &masks,
        sha: &sha,
        curves: curves.as_ref(),
        recovered: None,
        inputs: &inputs,
    };
    write_files(&from, &files)
}
