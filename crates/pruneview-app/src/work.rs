//! The app's background jobs: each adapts a [`pruneview_core::session`] call (the same ones the CLI
//! makes) to a [`JobCtl`] and the app's own result types. None of it touches egui, so the
//! same calls run in tests and in `pruneview screenshots`.

use std::path::PathBuf;
use std::sync::Arc;

use pruneview_core::detect::{Detection, Detector};
use pruneview_core::eval::EvalSet;
use pruneview_core::model::Weights;
use pruneview_core::prune::alloc::Method;
use pruneview_core::prune::curves::{Curves, Measured};
use pruneview_core::prune::probe::{self, CalibScan, CurveSettings, Predicted};
use pruneview_core::prune::recover::{RecoverSettings, RecoveryReport};
use pruneview_core::prune::{Allocation, Weighting};
use pruneview_core::session::evaluate::{EvalSource, Evaluation};
use pruneview_core::session::export::{ExportFiles, ExportInputs, Recovered};
use pruneview_core::session::recover::{Recovery, sparsity_masks, statistics_repaired};
use pruneview_core::session::{self, model::LoadedModel};

use super::cache::{Cache, Entry};
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
    /// Where they are cached (and later evaluations and measured curves go), if anywhere.
    pub entry: Option<Arc<Entry>>,
    /// Read from the cache rather than computed.
    pub from_cache: bool,
    /// Evaluations cached with them.
    pub evaluations: Vec<EvalPoint>,
    /// What the user should know about the cache (a damaged file ignored, a failed write).
    pub notes: Vec<String>,
}

/// How the curves job may use the cache.
pub struct CurvesCache {
    pub cache: Arc<Cache>,
    /// The scan files the curves are computed on (their stamps are part of the key).
    pub files: Vec<PathBuf>,
    /// Read cached curves (false: recompute, and replace what is cached).
    pub read: bool,
}

pub fn compute_curves(
    model: &LoadedModel,
    scans: &[CalibScan],
    probes: usize,
    weighting: Weighting,
    cache: Option<CurvesCache>,
    ctl: &JobCtl,
) -> JobResult<CurvesResult> {
    let scan_ids = scans.iter().map(|s| s.id.clone()).collect();
    let mut notes = Vec::new();
    let entry = cache.as_ref().and_then(|c| {
        c.cache
            .entry(model, &c.files, probes, weighting)
            .map_err(|e| notes.push(format!("curves not cached: {e}")))
            .ok()
            .map(Arc::new)
    });
    if let (Some(e), Some(c)) = (&entry, &cache)
        && c.read
    {
        ctl.step(0, 1, "reading the cache");
        match e.load_curves() {
            Ok(Some(curves)) => {
                let (evaluations, more) = e.load_evaluations();
                notes.extend(more);
                return Ok(CurvesResult {
                    predicted: Predicted {
                        curves,
                        orders: session::curves::magnitude_orders(&model.det),
                        gn_diagonal: None,
                    },
                    scan_ids,
                    entry,
                    from_cache: true,
                    evaluations,
                    notes,
                });
            }
            Ok(None) => {}
            Err(why) => notes.push(format!("cached curves ignored, recomputing: {why}")),
        }
    }
    // Evaluations depend on the key, not on how the curves were obtained: cached ones hold
    // for recomputed curves too.
    let evaluations = match &entry {
        Some(e) => {
            let (points, more) = e.load_evaluations();
            notes.extend(more);
            points
        }
        None => Vec::new(),
    };
    let settings = CurveSettings {
        probes,
        weighting,
        ..CurveSettings::default()
    };
    let predicted = ctl.with_control(|c| {
        probe::predicted_curves(&model.det, scans, &settings, model.info.clone(), c)
    })?;
    if let Some(e) = &entry
        && let Err(why) = e.save_curves(&predicted.curves)
    {
        notes.push(format!("curves not cached: {why}"));
    }
    Ok(CurvesResult {
        predicted,
        scan_ids,
        entry,
        from_cache: false,
        evaluations,
        notes,
    })
}

/// `curves` with the measured curves of every layer (in curve order).
pub fn with_measured(curves: &Curves, measured: Vec<Measured>) -> Curves {
    let mut c = curves.clone();
    for (l, m) in c.layers.iter_mut().zip(measured) {
        l.measured = m;
    }
    c
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

/// Moderate R40 AP of the dense and the pruned model on a labelled set.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EvalPoint {
    pub method: Method,
    pub recovery: Recovery,
    pub keep: f64,
    /// What it was evaluated on (points of different sets are never plotted together).
    pub source: EvalSource,
    pub accuracy: Evaluation,
}

/// The frames an evaluation runs on.
pub enum EvalFrames {
    /// Calibration scans in KITTI layouts: `(dataset root, frame id)`.
    Calibration(Vec<(PathBuf, String)>),
    /// A set read or generated by an earlier evaluation (kept, so the next one starts at once).
    Loaded(Arc<EvalSet>),
    /// A folder or simulator set to read or generate first.
    Load(EvalSource),
}

/// Evaluates the dense and the pruned model of `sparsity` on `frames`; returns the point and
/// the set it read or generated (for the next evaluation), if any.
#[allow(clippy::too_many_arguments)]
pub fn evaluate(
    dense: &Detector,
    orders: &[Vec<u32>],
    sparsity: &[f64],
    model: &PrunedModel,
    method: Method,
    keep: f64,
    source: EvalSource,
    frames: EvalFrames,
    ctl: &JobCtl,
) -> JobResult<(EvalPoint, Option<Arc<EvalSet>>)> {
    let set = match frames {
        EvalFrames::Calibration(f) => Err(f),
        EvalFrames::Loaded(set) => Ok(set),
        EvalFrames::Load(s) => {
            Ok(Arc::new(ctl.with_control(|c| {
                session::evaluate::load_set(dense, &s, c)
            })?))
        }
    };
    let masks = sparsity_masks(sparsity, orders);
    let pruned = model.build(dense, &masks, ctl)?;
    let accuracy = match &set {
        Ok(set) => ctl.with_control(|c| {
            session::evaluate::evaluate_sets(dense, &pruned, std::slice::from_ref(&**set), c)
        })?,
        Err(frames) => {
            ctl.with_control(|c| session::evaluate::evaluate(dense, &pruned, frames.clone(), c))?
        }
    };
    let point = EvalPoint {
        method,
        recovery: model.recovery(),
        keep,
        source,
        accuracy,
    };
    Ok((point, set.ok()))
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
