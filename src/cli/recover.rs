//! `pruneview recover` (masks made elsewhere) and the recovery flags that `prune` and
//! `report` share: statistics repair, weight reconstruction and label-free distillation of a
//! pruned model on unlabelled calibration scans.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use anyhow::{Result, bail};
use clap::Args;

use pruneview::detect::Detector;
use pruneview::model::Weights;
use pruneview::prune::export;
use pruneview::prune::probe::CalibScan;
use pruneview::prune::recover::{
    self, ColumnWeighting, DistillSettings, ReconstructSettings, RecoverSettings, RecoveryReport,
    Stages,
};
use pruneview::prune::{Lambdas, Weighting};
use pruneview::session::export::check_outputs;
use pruneview::session::recover::recovery_metadata;

use super::ModelArgs;
use super::args::CalibArgs;
use super::progress::{cancel_flag, with_progress};

/// Which recovery stages run after pruning (`--recover`), and how.
#[derive(Args, Debug, Clone)]
pub struct RecoverArgs {
    /// Recovery stages after pruning: a comma list of `stats` (re-estimate BatchNorm
    /// statistics), `reconstruct` (refit surviving weights by layer-wise least squares) and
    /// `distill` (label-free distillation towards the dense outputs); `all`; or `none`
    /// (masks only, the paper's form).
    #[arg(long = "recover", value_name = "STAGES", default_value = "all")]
    pub stages: Stages,
    #[command(flatten)]
    pub tuning: RecoverTuning,
}

/// Settings of the recovery stages (shared by `prune`, `recover` and `report`).
#[derive(Args, Debug, Clone)]
pub struct RecoverTuning {
    /// Distillation: Adam steps.
    #[arg(long, default_value_t = DistillSettings::default().steps)]
    pub steps: usize,
    /// Distillation: Adam learning rate.
    #[arg(long, default_value_t = DistillSettings::default().lr)]
    pub lr: f64,
    /// Distillation: calibration scans per step.
    #[arg(long, default_value_t = DistillSettings::default().batch)]
    pub batch: usize,
    /// Reconstruction: dampening, as a fraction of the mean diagonal of each layer's input
    /// Gram matrix.
    #[arg(long, default_value_t = ReconstructSettings::default().damp)]
    pub damp: f64,
    /// Reconstruction: weight each BEV input column by FLOOR plus the dense model's
    /// confidence near it, so the fit favours where objects are; 0: every column alike.
    #[arg(long, value_name = "FLOOR", default_value_t = ReconstructSettings::default().columns.floor())]
    pub focus: f32,
}

impl RecoverArgs {
    /// `seed` orders the distillation's scans (`prune` shares its `--seed` with the curves).
    pub fn settings(
        &self,
        weighting: Weighting,
        lambdas: Lambdas,
        seed: u64,
    ) -> Result<RecoverSettings> {
        self.tuning.settings(self.stages, weighting, lambdas, seed)
    }
}

impl RecoverTuning {
    pub fn settings(
        &self,
        stages: Stages,
        weighting: Weighting,
        lambdas: Lambdas,
        seed: u64,
    ) -> Result<RecoverSettings> {
        if stages.distill {
            if !(self.lr > 0.0 && self.lr.is_finite()) {
                bail!("--lr must be a positive number (got {})", self.lr);
            }
            if self.batch == 0 {
                bail!("--batch must be at least 1");
            }
        }
        if !(self.focus >= 0.0 && self.focus.is_finite()) {
            bail!(
                "--focus must be 0 or a positive number (got {})",
                self.focus
            );
        }
        if !(self.damp > 0.0 && self.damp.is_finite()) {
            bail!("--damp must be a positive number (got {})", self.damp);
        }
        Ok(RecoverSettings {
            stages,
            reconstruct: ReconstructSettings {
                damp: self.damp,
                columns: ColumnWeighting::focus(self.focus),
                ..Default::default()
            },
            distill: DistillSettings {
                steps: self.steps,
                lr: self.lr,
                batch: self.batch,
                seed,
                lambdas,
                eval_every: 0,
            },
            weighting,
            normalization: None,
        })
    }
}

/// Runs recovery with a progress bar (Ctrl-C cancels; nothing is written then) and prints
/// what each stage gave.
pub fn run_recovery(
    dense: &Detector,
    masks: &[Option<Vec<u8>>],
    scans: &[CalibScan],
    settings: &RecoverSettings,
    cancel: &AtomicBool,
) -> Result<(Detector, RecoveryReport)> {
    let (det, report) = with_progress("recover", cancel, |ctl| {
        recover::recover(dense, masks, scans, settings, ctl)
    })?;
    print_report(&report, settings.distill.lambdas);
    Ok((det, report))
}

fn print_report(r: &RecoveryReport, lambdas: Lambdas) {
    eprintln!(
        "recovery ({}) on {} calibration scans, distortion after each stage:",
        r.stages, r.scans
    );
    for s in &r.results {
        eprintln!(
            "  {:<20} D = {:.4e} (confidence {:.4e}, locality {:.4e}) {:>7.1} s",
            s.stage,
            lambdas.combine(s.confidence, s.locality),
            s.confidence,
            s.locality,
            s.seconds
        );
    }
    for n in &r.notes {
        eprintln!("  note: {n}");
    }
}

#[derive(Args, Debug)]
pub struct RecoverCmd {
    #[command(flatten)]
    pub model: ModelArgs,
    /// U8 masks (1 kept, 0 pruned) of this model's weights, e.g. from `export`.
    #[arg(long, value_name = "M.safetensors")]
    pub masks: PathBuf,
    #[command(flatten)]
    pub calib: CalibArgs,
    #[command(flatten)]
    pub recover: RecoverArgs,
    /// What the distortion compares (see `curves --distortion`).
    #[arg(long, default_value = "detection")]
    pub distortion: Weighting,
    /// Seed of the distillation's scan order.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// The recovered weights: the input's keys, dtypes and shapes, zeros where the masks are
    /// 0, the recovery report in the metadata.
    #[arg(long, value_name = "R.safetensors")]
    pub out: PathBuf,
}

pub fn recover_cmd(a: RecoverCmd) -> Result<()> {
    let cancel = cancel_flag();
    let det = a.model.load()?;
    let masks = export::read_masks(&a.masks, &det)?;
    let mut inputs = a.model.inputs();
    inputs.push(&a.masks);
    check_outputs(&[&a.out], &inputs)?;
    let settings = a
        .recover
        .settings(a.distortion, Lambdas::default(), a.seed)?;
    let (files, scans) = a.calib.load(&det)?;
    inputs.extend(files.iter().map(PathBuf::as_path));
    check_outputs(&[&a.out], &inputs)?;
    let (recovered, report) = run_recovery(&det, &masks, &scans, &settings, &cancel)?;
    let weights = Weights::open(&a.model.weights)?;
    export::write_recovered(
        &a.out,
        &weights,
        &recovered,
        &masks,
        &recovery_metadata(&report),
        &inputs,
    )?;
    eprintln!("{}: recovered weights ({})", a.out.display(), report.stages);
    Ok(())
}
