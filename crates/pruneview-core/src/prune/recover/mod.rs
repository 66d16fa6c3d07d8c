//! Recovery: a pruned detector that detects like the dense one, from the dense model and
//! unlabelled scans only.
//!
//! Pruning by mask alone leaves the surviving weights as they were trained for the dense
//! network. Three stages, each a function of the weights, the masks and the calibration
//! scans, undo most of the damage (the measurements are in `docs/pruning-report.md`):
//! - [`stats`]: re-estimate every BatchNorm's statistics for the pruned network;
//! - [`reconstruct`]: refit each layer's surviving weights by least squares on its inputs
//!   (second order, sequential, OBC-style);
//! - [`distill`]: minimise the detection distortion against the dense outputs with Adam.
//!
//! [`recover`] runs the chosen stages in that order and measures the calibration
//! distortion after each, so a user sees what each stage gave. Masks never change: a pruned
//! weight stays exactly zero.

pub mod distill;
pub mod reconstruct;
pub mod stats;
mod walk;

use std::time::Instant;

use serde::Serialize;

use crate::detect::Detector;
use crate::model::weights::from_file_layout;

use super::curves::OutputNorm;
use super::distortion::Weighting;
use super::export::{self, LayerMask};
use super::measure::DenseReference;
use super::probe::{self, CalibScan, ProbeError};
use crate::progress::{Control, OnStep};

pub use distill::{DistillReport, DistillSettings};
pub use reconstruct::{ColumnWeighting, LayerReconstruction, ReconstructSettings};
pub use stats::StatsChange;

/// Which recovery stages run (`--recover`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Stages {
    pub stats: bool,
    pub reconstruct: bool,
    pub distill: bool,
}

impl Stages {
    pub const ALL: Stages = Stages {
        stats: true,
        reconstruct: true,
        distill: true,
    };
    pub const NONE: Stages = Stages {
        stats: false,
        reconstruct: false,
        distill: false,
    };

    pub fn is_none(self) -> bool {
        self == Self::NONE
    }

    /// `stats,reconstruct,distill`, `all` or `none`.
    pub fn name(self) -> String {
        if self == Self::ALL {
            return "all".into();
        }
        let names: Vec<&str> = [
            (self.stats, "stats"),
            (self.reconstruct, "reconstruct"),
            (self.distill, "distill"),
        ]
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, n)| *n)
        .collect();
        if names.is_empty() {
            "none".into()
        } else {
            names.join(",")
        }
    }
}

impl std::str::FromStr for Stages {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let mut out = Stages::NONE;
        for part in s.split(',').map(str::trim) {
            match part {
                "all" => out = Stages::ALL,
                "none" if s.trim() == "none" => {}
                "stats" => out.stats = true,
                "reconstruct" => out.reconstruct = true,
                "distill" => out.distill = true,
                _ => {
                    return Err(format!(
                        "unknown recovery stage `{part}` (expected a comma list of stats, reconstruct, distill; or all, or none alone)"
                    ));
                }
            }
        }
        Ok(out)
    }
}

/// Everything recovery needs besides the model, masks and scans.
#[derive(Clone, Debug)]
pub struct RecoverSettings {
    pub stages: Stages,
    pub reconstruct: ReconstructSettings,
    pub distill: DistillSettings,
    /// What the distortion (the distillation loss and the reported losses) compares.
    pub weighting: Weighting,
    /// The distortion's normalisation (e.g. from the curves file); computed when `None`.
    pub normalization: Option<Vec<OutputNorm>>,
}

impl Default for RecoverSettings {
    fn default() -> Self {
        RecoverSettings {
            stages: Stages::ALL,
            reconstruct: ReconstructSettings::default(),
            distill: DistillSettings::default(),
            weighting: Weighting::Detection,
            normalization: None,
        }
    }
}

/// The calibration distortion after one stage, and how long the stage took.
#[derive(Clone, Debug, Serialize)]
pub struct StageResult {
    pub stage: &'static str,
    /// `(confidence, locality)` distortion on the calibration scans after the stage.
    pub confidence: f64,
    pub locality: f64,
    pub seconds: f64,
}

/// What recovery did (recorded in the recovered weights' metadata as `pruneview.recovery`).
#[derive(Clone, Debug, Serialize)]
pub struct RecoveryReport {
    pub stages: String,
    pub scans: usize,
    pub weighting: &'static str,
    pub damp: f64,
    pub distill_settings: Option<DistillSettings>,
    /// Masks only, then after each stage that ran.
    pub results: Vec<StageResult>,
    pub reconstruction: Vec<LayerReconstruction>,
    pub statistics: Vec<StatsChange>,
    pub distillation: Option<DistillReport>,
    /// Whether the final statistics repair after distillation was kept (it is kept only
    /// when it lowers the calibration distortion).
    pub final_statistics_kept: Option<bool>,
    /// Things the user should know (e.g. too few columns for a layer's system).
    pub notes: Vec<String>,
}

impl RecoveryReport {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// A copy of `dense` with each unit's weight multiplied by its mask (`masks[i]` for unit i;
/// `None`: unmasked).
pub fn masked(dense: &Detector, masks: &[Option<Vec<u8>>]) -> Result<Detector, ProbeError> {
    let mut det = dense.clone();
    export::apply_masks(&mut det, masks).map_err(stats::settings)?;
    Ok(det)
}

/// Per unit (in [`Detector::units`] order) its mask from `layers` (e.g. built from an
/// allocation), `None` for a unit the allocation does not prune.
pub fn unit_masks(
    det: &Detector,
    layers: &[LayerMask],
) -> Result<Vec<Option<Vec<u8>>>, ProbeError> {
    let units = det.units();
    let mut out = vec![None; units.len()];
    for l in layers {
        let i = units
            .iter()
            .position(|u| u.weight_name() == l.name)
            .ok_or_else(|| {
                ProbeError::Settings(format!("{} is not a prunable layer of this model", l.name))
            })?;
        let native = &units[i].weight.shape;
        if l.mask.len() != units[i].weight.numel() {
            return Err(ProbeError::Settings(format!(
                "the mask of {} has {} entries, the weight {}",
                l.name,
                l.mask.len(),
                units[i].weight.numel()
            )));
        }
        // Masks follow the weights file's layout; the detector holds spconv 2.3's.
        out[i] = Some(from_file_layout(&l.mask, native, &l.shape));
    }
    Ok(out)
}

/// Runs the chosen recovery stages on `dense` pruned by `masks`, on the calibration `scans`;
/// returns the recovered detector (masked weights exactly zero) and the report.
pub fn recover(
    dense: &Detector,
    masks: &[Option<Vec<u8>>],
    scans: &[CalibScan],
    cfg: &RecoverSettings,
    ctl: &Control,
) -> Result<(Detector, RecoveryReport), ProbeError> {
    if scans.is_empty() {
        return Err(ProbeError::NoScans);
    }
    let mut pruned = masked(dense, masks)?;
    let n_units = dense.units().len();
    // Units before the first pruned one see the dense inputs: nothing to repair there.
    let first = masks
        .iter()
        .position(|m| m.as_ref().is_some_and(|m| m.contains(&0)))
        .unwrap_or(n_units);
    let norms = match &cfg.normalization {
        Some(n) => n.clone(),
        None => probe::output_variances(dense, scans, cfg.weighting, &ctl.silenced())?,
    };
    let reference = DenseReference::compute(dense, scans, cfg.weighting, norms, &ctl.silenced())?;
    let mut report = RecoveryReport {
        stages: cfg.stages.name(),
        scans: scans.len(),
        weighting: cfg.weighting.name(),
        damp: cfg.reconstruct.damp,
        distill_settings: cfg.stages.distill.then_some(cfg.distill),
        results: Vec::new(),
        reconstruction: Vec::new(),
        statistics: Vec::new(),
        distillation: None,
        final_statistics_kept: None,
        notes: Vec::new(),
    };
    // Progress over all stages: each stage's steps in one count.
    let bn_units = dense.units()[first.min(n_units)..]
        .iter()
        .filter(|u| u.bn.is_some())
        .count();
    let stages = cfg.stages;
    let plan = [
        (stages.reconstruct, n_units - first.min(n_units)),
        (stages.stats && !stages.reconstruct, bn_units),
        (stages.distill, cfg.distill.steps),
        (stages.distill && stages.stats, bn_units),
    ];
    let total: usize = plan.iter().filter(|p| p.0).map(|p| p.1).sum();
    let mut offset = 0;
    let measure =
        |det: &Detector, stage: &'static str, t0: Instant| -> Result<StageResult, ProbeError> {
            let (confidence, locality) = reference.distortion(det, scans, &ctl.silenced())?;
            Ok(StageResult {
                stage,
                confidence,
                locality,
                seconds: t0.elapsed().as_secs_f64(),
            })
        };
    // A layer pruned whole passes a constant map on: the BatchNorms after it see almost no
    // variance, and re-estimating their statistics amplifies what is left (seen on the
    // reference model with random weights: D 1.5e-4 -> 19 after statistics repair).
    for (u, m) in dense.units().iter().zip(masks) {
        if m.as_ref().is_some_and(|m| !m.contains(&1)) {
            report.notes.push(format!(
                "{} is pruned entirely: the layers after it see a constant input, and repairing their statistics can make the distortion worse",
                u.weight_name()
            ));
        }
    }
    report
        .results
        .push(measure(&pruned, "masks", Instant::now())?);
    if first < n_units && (stages.reconstruct || stages.stats) {
        let t0 = Instant::now();
        if stages.reconstruct {
            let sub = offset_control(ctl, &mut offset, plan[0].1, total);
            let rc = ReconstructSettings {
                repair_statistics: stages.stats,
                ..cfg.reconstruct
            };
            let weighted = rc.columns != ColumnWeighting::Uniform;
            let confidence = weighted.then(|| reference.confidence_maps()).flatten();
            if weighted && confidence.is_none() {
                report.notes.push(
                    "this head has no confidence map: reconstruction weighted every column the same"
                        .into(),
                );
            }
            report.reconstruction = reconstruct::reconstruct(
                &mut pruned,
                dense,
                masks,
                scans,
                confidence.as_deref(),
                first..n_units,
                &rc,
                &sub.control(),
            )?;
            for r in &report.reconstruction {
                if let Some(why) = &r.skipped {
                    report
                        .notes
                        .push(format!("{}: not reconstructed: {why}", r.unit));
                } else if r.columns < r.unknowns as f64 {
                    report.notes.push(format!(
                        "{}: {} input columns for {} unknowns per row: under-determined, the dampening decided (use more calibration scans)",
                        r.unit, r.columns, r.unknowns
                    ));
                }
                if r.failed_rows > 0 {
                    report.notes.push(format!(
                        "{}: {} rows could not be solved and keep their masked weights",
                        r.unit, r.failed_rows
                    ));
                }
            }
        } else {
            let sub = offset_control(ctl, &mut offset, plan[1].1, total);
            report.statistics =
                stats::repair_statistics(&mut pruned, scans, first, &sub.control())?;
        }
        let name = if stages.reconstruct {
            "reconstruct"
        } else {
            "stats"
        };
        report.results.push(measure(&pruned, name, t0)?);
    }
    if stages.distill && first < n_units {
        let t0 = Instant::now();
        let sub = offset_control(ctl, &mut offset, plan[2].1, total);
        let d = distill::distill(
            &mut pruned,
            &reference,
            masks,
            scans,
            &cfg.distill,
            &sub.control(),
        )?;
        if let Some(why) = &d.stopped_early {
            report
                .notes
                .push(format!("distillation stopped early: {why}"));
        }
        report.distillation = Some(d);
        report.results.push(measure(&pruned, "distill", t0)?);
        if stages.stats {
            // Distillation tuned gamma and beta under the statistics it started from; a new
            // repair is kept only when it lowers the calibration distortion.
            let t0 = Instant::now();
            let sub = offset_control(ctl, &mut offset, plan[3].1, total);
            let mut repaired = pruned.clone();
            let changes = stats::repair_statistics(&mut repaired, scans, first, &sub.control())?;
            let after = measure(&repaired, "stats after distill", t0)?;
            let before = report.results.last().map_or(f64::INFINITY, |r| {
                cfg.distill.lambdas.combine(r.confidence, r.locality)
            });
            let keep = cfg
                .distill
                .lambdas
                .combine(after.confidence, after.locality)
                < before;
            report.final_statistics_kept = Some(keep);
            if keep {
                pruned = repaired;
                report.statistics = changes;
                report.results.push(after);
            }
        }
    }
    Ok((pruned, report))
}

/// Maps one stage's `(done, total)` onto the whole run's count.
struct OffsetControl<'a> {
    parent: &'a Control<'a>,
    report: Box<OnStep<'a>>,
}

impl OffsetControl<'_> {
    fn control(&self) -> Control<'_> {
        Control {
            cancel: self.parent.cancel,
            on_step: &*self.report,
        }
    }
}

fn offset_control<'a>(
    parent: &'a Control<'a>,
    offset: &mut usize,
    steps: usize,
    total: usize,
) -> OffsetControl<'a> {
    let base = *offset;
    *offset += steps;
    let on_step = parent.on_step;
    OffsetControl {
        parent,
        report: Box::new(move |done, _, msg| on_step((base + done).min(total), total, msg)),
    }
}
