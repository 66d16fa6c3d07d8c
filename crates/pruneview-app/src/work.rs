//! The app's background jobs: each adapts a [`pruneview_core::session`] call (the same ones the CLI
//! makes) to a [`JobCtl`] and the app's own result types. None of it touches egui, so the
//! same calls run in tests and in `pruneview screenshots`.

use std::path::PathBuf;
use std::sync::Arc;

use pruneview_core::detect::{Detection, Detector};
use pruneview_core::model::Weights;
use pruneview_core::prune::alloc::Method;
use pruneview_core::prune::curves::Curves;
use pruneview_core::prune::probe::{self, CalibScan, CurveSettings, Predicted};
use pruneview_core::prune::recover::{RecoverSettings, RecoveryReport};
use pruneview_core::prune::{Allocation, Weighting};
use pruneview_core::session::evaluate::Evaluation;
use pruneview_core::session::export::{ExportFiles, ExportInputs, Recovered};
use pruneview_core::session::recover::{Recovery, sparsity_masks, statistics_repaired};
use pruneview_core::session::{self, model::LoadedModel};

use super::jobs::{JobCtl, JobResult};

/// Calibration scans the statistics preview re-estimates BatchNorm on (the first ones): a
/// preview within half a second of letting go of the slider on the demo (fewer scans are
/// faster and further from what Export writes: at 35% kept, 6% of the boxes differ from the
/// repair on all 16 demo scans with one preview scan, 1% with four); Evaluate and Export use
/// them all.
pub const PREVIEW_SCANS: usize = 4;

/// What to open: a model (weights, optionally a YAML config) and calibration scans.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct OpenRequest {
    pub config: Option<PathBuf>,
    pub weights: PathBuf,
    pub scans: Vec<PathBuf>,
}

pub fn load_model(req: &OpenRequest, ctl: &JobCtl) -> JobResult<LoadedModel> {
    ctl.with_control(|c| session::model::load_model(req.config.clone(), req.weights.clone(), c))
}

/// Curves of the current model and scans, and the prune orders they assume.
pub struct CurvesResult {
    pub predicted: Predicted,
    /// Ids of the scans they were computed on.
    pub scan_ids: Vec<String>,
}

pub fn compute_curves(
    model: &LoadedModel,
    scans: &[CalibScan],
    probes: usize,
    weighting: Weighting,
    ctl: &JobCtl,
) -> JobResult<CurvesResult> {
    let settings = CurveSettings {
        probes,
        weighting,
        ..CurveSettings::default()
    };
    let predicted = ctl.with_control(|c| {
        probe::predicted_curves(&model.det, scans, &settings, model.info.clone(), c)
    })?;
    Ok(CurvesResult {
        predicted,
        scan_ids: scans.iter().map(|s| s.id.clone()).collect(),
    })
}

/// The pruned model as the user chose to recover it.
#[derive(Clone)]
pub enum PrunedModel {
    /// The dense weights times the masks.
    Masked,
    /// Masked, then BatchNorm statistics re-estimated on these scans.
    Statistics(Arc<Vec<CalibScan>>),
    /// The result of a full recovery job.
    Recovered(Arc<RecoveredModel>),
}

impl PrunedModel {
    pub fn build(
        &self,
        dense: &Detector,
        masks: &[Option<Vec<u8>>],
        ctl: &JobCtl,
    ) -> JobResult<Detector> {
        match self {
            PrunedModel::Masked => Ok(pruneview_core::prune::recover::masked(dense, masks)?),
            PrunedModel::Statistics(scans) => {
                ctl.with_control(|c| statistics_repaired(dense, masks, scans, c))
            }
            PrunedModel::Recovered(r) => Ok(r.det.clone()),
        }
    }

    pub fn recovery(&self) -> Recovery {
        match self {
            PrunedModel::Masked => Recovery::None,
            PrunedModel::Statistics(_) => Recovery::Statistics,
            PrunedModel::Recovered(_) => Recovery::Full,
        }
    }
}

/// A fully recovered model, for the allocation it was recovered at.
pub struct RecoveredModel {
    pub sparsity: Vec<f64>,
    pub det: Detector,
    pub masks: Vec<Option<Vec<u8>>>,
    pub report: RecoveryReport,
}

/// Every recovery stage on the pruned model of `sparsity` (minutes: progress, ETA, cancel).
pub fn recover(
    dense: &Detector,
    orders: &[Vec<u32>],
    sparsity: Vec<f64>,
    scans: &[CalibScan],
    settings: &RecoverSettings,
    ctl: &JobCtl,
) -> JobResult<RecoveredModel> {
    let masks = sparsity_masks(&sparsity, orders);
    let (det, report) = ctl.with_control(|c| {
        pruneview_core::prune::recover::recover(dense, &masks, scans, settings, c)
    })?;
    Ok(RecoveredModel {
        sparsity,
        det,
        masks,
        report,
    })
}

/// The pruned model's detections on one scan, for one allocation.
pub struct PrunedDetections {
    pub scan_id: String,
    pub sparsity: Vec<f64>,
    pub recovery: Recovery,
    pub detections: Vec<Detection>,
    pub ms: f64,
}

pub fn pruned_detections(
    dense: &Detector,
    orders: &[Vec<u32>],
    sparsity: Vec<f64>,
    model: &PrunedModel,
    scan_id: String,
    points: &[f32],
    ctl: &JobCtl,
) -> JobResult<PrunedDetections> {
    let t = std::time::Instant::now();
    let masks = sparsity_masks(&sparsity, orders);
    let pruned = model.build(dense, &masks, ctl)?;
    ctl.check()?;
    ctl.step(1, 2, "forward");
    let detections = pruned.detect(points).map_err(session::fail)?;
    ctl.step(2, 2, "done");
    Ok(PrunedDetections {
        scan_id,
        sparsity,
        recovery: model.recovery(),
        detections,
        ms: t.elapsed().as_secs_f64() * 1e3,
    })
}

/// Moderate R40 AP of the dense and the pruned model on the labelled scans.
#[derive(Clone, Debug, PartialEq)]
pub struct EvalPoint {
    pub method: Method,
    pub recovery: Recovery,
    pub keep: f64,
    pub accuracy: Evaluation,
}

#[allow(clippy::too_many_arguments)]
pub fn evaluate(
    dense: &Detector,
    orders: &[Vec<u32>],
    sparsity: &[f64],
    model: &PrunedModel,
    method: Method,
    keep: f64,
    frames: Vec<(PathBuf, String)>,
    ctl: &JobCtl,
) -> JobResult<EvalPoint> {
    let masks = sparsity_masks(sparsity, orders);
    let pruned = model.build(dense, &masks, ctl)?;
    let accuracy = ctl.with_control(|c| session::evaluate::evaluate(dense, &pruned, frames, c))?;
    Ok(EvalPoint {
        method,
        recovery: model.recovery(),
        keep,
        accuracy,
    })
}

/// Which files to write (see the export dialog for what each one is).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ExportChoice {
    pub dir: PathBuf,
    pub masks: bool,
    pub pruned: bool,
    pub allocation: bool,
    pub csv: bool,
    pub curves: bool,
}

impl ExportChoice {
    pub fn files(&self) -> ExportFiles {
        let all = ExportFiles::all_in(&self.dir);
        let pick = |on: bool, p: Option<PathBuf>| p.filter(|_| on);
        ExportFiles {
            masks: pick(self.masks, all.masks),
            pruned: pick(self.pruned, all.pruned),
            allocation: pick(self.allocation, all.allocation),
            csv: pick(self.csv, all.csv),
            curves: pick(self.curves, all.curves),
        }
    }
}

/// Writes the chosen files; the pruned weights are those of `model` (recovered weights for a
/// full recovery or a statistics repair, the masked dense weights otherwise).
pub fn export(
    model: &LoadedModel,
    curves: &Curves,
    alloc: &Allocation,
    pruned: &PrunedModel,
    choice: &ExportChoice,
    ctl: &JobCtl,
) -> JobResult<(Vec<PathBuf>, Option<String>)> {
    let weights: &Weights = &model.weights;
    let (masks, sha, warning) = session::export::allocation_masks(weights, alloc, None)?;
    let inputs = [model.weights_path.as_path()];
    let files = choice.files();
    files.check(&inputs)?;
    let dense = &model.det;
    let unit = pruneview_core::prune::recover::unit_masks(dense, &masks)?;
    // A statistics repair on export is recorded like any recovery (report with its D).
    let repaired;
    let recovered = match pruned {
        PrunedModel::Statistics(scans) if choice.pruned => {
            let settings = RecoverSettings {
                stages: Recovery::Statistics.stages(),
                weighting: curves.calibration.distortion,
                normalization: Some(curves.calibration.normalization.clone()),
                ..RecoverSettings::default()
            };
            repaired = ctl.with_control(|c| {
                pruneview_core::prune::recover::recover(dense, &unit, scans, &settings, c)
            })?;
            Some(Recovered {
                det: &repaired.0,
                masks: &unit,
                report: &repaired.1,
            })
        }
        PrunedModel::Masked | PrunedModel::Statistics(_) => None,
        PrunedModel::Recovered(r) => Some(Recovered {
            det: &r.det,
            masks: &r.masks,
            report: &r.report,
        }),
    };
    let from = ExportInputs {
        weights,
        alloc,
        masks: &masks,
        sha: &sha,
        curves: Some(curves),
        recovered,
        inputs: &inputs,
    };
    let written = ctl.with_control(|c| session::export::write(&from, &files, c))?;
    Ok((written, warning))
}

/// Writes an RGBA picture (`width x height`, unpremultiplied, row-major) as a PNG, atomically
/// (a screenshot of the 3D view; the encoding takes too long for the UI thread).
pub fn write_png(path: &std::path::Path, width: u32, height: u32, rgba: Vec<u8>) -> JobResult<()> {
    let img = image::RgbaImage::from_raw(width, height, rgba)
        .ok_or_else(|| format!("{}: the picture's size does not match", path.display()))?;
    let mut png = std::io::Cursor::new(Vec::new());
    img.write_to(&mut png, image::ImageFormat::Png)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    pruneview_core::io::write_atomic(path, png.get_ref(), &[]).map_err(session::fail)?;
    Ok(())
}
