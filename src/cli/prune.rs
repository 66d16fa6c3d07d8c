//! `prune`: curves, solve and export chained, with optional recovery. Long work shows an
//! indicatif bar with ETA; Ctrl-C cancels cleanly, and since every file is written
//! atomically at the end, a cancelled run leaves no partial output.

use std::path::PathBuf;
use std::sync::atomic::Ordering;

use anyhow::{Result, bail};
use clap::Args;

use pruneview::io::StagedDir;
use pruneview::model::Weights;
use pruneview::progress::Control;
use pruneview::prune::export;
use pruneview::prune::recover::{self, RecoverSettings};
use pruneview::session::export::{ExportFiles, ExportInputs, Recovered};

use super::ModelArgs;
use super::recover::{RecoverArgs, run_recovery};

use super::args::{CalibArgs, CurveArgs};
use super::curves::{compute_curves, saliency_path, write_curves};
use super::export::{describe_files, masks_of};
use super::progress::cancel_flag;
use super::solve::{SolveArgs, solve_and_print};

#[derive(Args, Debug)]
pub struct PruneCmd {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub calib: CalibArgs,
    #[command(flatten)]
    pub curves: CurveArgs,
    #[command(flatten)]
    pub solve: SolveArgs,
    #[command(flatten)]
    pub recover: RecoverArgs,
    /// Folder for curves.json, allocation.json, masks.safetensors, pruned.safetensors (the
    /// recovered weights unless `--recover none`) and report.csv (created if missing).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

pub fn prune(a: PruneCmd) -> Result<()> {
    let lambdas = a.solve.lambdas.get();
    let settings = a
        .recover
        .settings(a.curves.distortion, lambdas, a.curves.seed)?;
    let cancel = cancel_flag();
    let det = a.model.load()?;
    let (files, scans) = a.calib.load(&det)?;
    let mut inputs = a.model.inputs();
    inputs.extend(files.iter().map(PathBuf::as_path));
    inputs.extend(a.curves.norm_from.as_deref());
    let shown = ExportFiles::all_in(&a.out);
    pruneview::session::export::check_outputs(&shown.paths(), &inputs)?;
    // Everything is written into a staging folder and moved into place at the end, so a
    // failed or cancelled run leaves `--out` as it was, and a concurrent run is refused.
    let staged = StagedDir::begin(&a.out)?;
    let curves_path = staged.path(export::CURVES_FILE);
    let outputs = ExportFiles {
        curves: None,
        ..ExportFiles::all_in(staged.dir())
    };
    let predicted = compute_curves(&det, &a.model.weights, &scans, &a.curves, lambdas, &cancel)?;
    let weights = Weights::open(&a.model.weights)?;
    let alloc = solve_and_print(&predicted.curves, &a.solve, Some(&weights))?;
    let saliency = predicted
        .gn_diagonal
        .as_ref()
        .map(|_| saliency_path(&curves_path));
    // The saliency orders are read back from the side file, so it is written first.
    write_curves(&curves_path, &predicted, &det, &inputs)?;
    let (masks, sha) = masks_of(&weights, &alloc, saliency.as_deref())?;
    let recovered = if settings.stages.is_none() {
        None
    } else {
        let unit_masks = recover::unit_masks(&det, &masks)?;
        let settings = RecoverSettings {
            normalization: Some(predicted.curves.calibration.normalization.clone()),
            ..settings
        };
        let (rec, report) = run_recovery(&det, &unit_masks, &scans, &settings, &cancel)?;
        Some((rec, unit_masks, report))
    };
    let from = ExportInputs {
        weights: &weights,
        alloc: &alloc,
        masks: &masks,
        sha: &sha,
        curves: Some(&predicted.curves),
        recovered: recovered
            .as_ref()
            .map(|(det, masks, report)| Recovered { det, masks, report }),
        inputs: &inputs,
    };
    pruneview::session::export::write(&from, &outputs, &Control::quiet())?;
    if cancel.load(Ordering::SeqCst) {
        bail!("cancelled: nothing written to {}", a.out.display());
    }
    staged.commit()?;
    describe_files(&from, &shown);
    let what = match &recovered {
        Some((_, _, r)) => format!("recovered ({})", r.stages),
        None => "masks only".into(),
    };
    eprintln!("{}: pruned weights {what}", a.out.display());
    Ok(())
}
