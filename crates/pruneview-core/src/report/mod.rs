//! Does pruning keep accuracy? For each FLOPs budget, allocation method and recovery: prune
//! (masks only, or recovered on the calibration scans without labels), run the pruned model
//! over a labelled set and record KITTI AP, next to the allocation's predicted distortion and
//! the distortion measured on the calibration scans. Written as a markdown table, JSON and a
//! PNG plot ([`plot`]). Each recovery is applied to every method, so the comparison is fair.

pub mod plot;

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::detect::Detector;
use crate::eval::{
    DatasetError, Difficulty, EvalReport, EvalSet, KittiClass, Metric, RecallPoints,
};
use crate::progress::Control;
use crate::prune::alloc::{self, AllocError, Method, Problem};
use crate::prune::measure::{DenseReference, pruned_detector};
use crate::prune::probe::{CalibScan, ProbeError};
use crate::prune::rank;
use crate::prune::recover::{self, RecoverSettings, Stages};
use crate::prune::{Budget, BudgetKind, Curves, Lambdas, Ranking, Weighting};

/// Format tag of the JSON report.
pub const REPORT_FORMAT: &str = "pruneview-pruning-report/1";

#[derive(Debug, Error)]
pub enum ReportError {
    #[error(transparent)]
    Alloc(#[from] AllocError),
    #[error(transparent)]
    Probe(#[from] ProbeError),
    #[error(transparent)]
    Dataset(Box<DatasetError>),
    #[error("the curves have no layer `{0}` of this model (computed for another model?)")]
    UnknownLayer(String),
    #[error("FLOPs kept must lie in (0, 1], got {0}")]
    Keep(f64),
}

impl From<DatasetError> for ReportError {
    fn from(e: DatasetError) -> Self {
        ReportError::Dataset(Box::new(e))
    }
}

/// One evaluated model: AP per class and the means the report compares.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Accuracy {
    /// `(class, AP_BEV, AP_3D)`, moderate, R40.
    pub classes: Vec<(String, f64, f64)>,
    pub mean_bev: f64,
    pub mean_3d: f64,
}

impl Accuracy {
    pub fn of(report: &EvalReport, classes: &[KittiClass]) -> Accuracy {
        let ap = |c: KittiClass, m: Metric| {
            report
                .ap(c, m, Difficulty::Moderate, RecallPoints::R40)
                .unwrap_or(0.0)
        };
        let classes: Vec<(String, f64, f64)> = classes
            .iter()
            .map(|&c| {
                (
                    c.name().to_string(),
                    ap(c, Metric::Bev),
                    ap(c, Metric::ThreeD),
                )
            })
            .collect();
        let n = classes.len().max(1) as f64;
        Accuracy {
            mean_bev: classes.iter().map(|c| c.1).sum::<f64>() / n,
            mean_3d: classes.iter().map(|c| c.2).sum::<f64>() / n,
            classes,
        }
    }
}

/// One (budget, method, recovery) cell.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Row {
    pub method: Method,
    /// The recovery stages applied after pruning (`none`: masks only; older reports).
    #[serde(default, with = "stages_name")]
    pub recovery: Stages,
    /// The budget asked for (fraction of the prunable layers' FLOPs kept).
    pub flops_keep: f64,
    /// What the allocation keeps, counted as the masks prune.
    pub flops_kept: f64,
    pub params_kept: f64,
    /// Sum of the per-layer predicted distortions at the allocation (additivity).
    pub predicted_distortion: f64,
    /// Distortion of the pruned model measured on the calibration scans.
    pub measured_distortion: f64,
    pub accuracy: Accuracy,
    /// The DP's layer cap ([`Problem::layer_cap`]) when one applied (dp rows only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer_cap: Option<f64>,
}

impl Row {
    /// The row's series in tables and plots.
    pub fn series(&self) -> Series {
        Series {
            method: self.method,
            recovery: self.recovery,
        }
    }
}

/// A line of the report's tables and plot: an allocation method, and the recovery applied
/// after it. Shown as `dp` (masks only) or `dp + stats,reconstruct`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Series {
    pub method: Method,
    pub recovery: Stages,
}

impl Series {
    /// Masks only (no recovery).
    pub fn masks_only(method: Method) -> Series {
        Series {
            method,
            recovery: Stages::NONE,
        }
    }
}

impl std::fmt::Display for Series {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.recovery.is_none() {
            write!(f, "{}", self.method)
        } else {
            write!(f, "{} + {}", self.method, self.recovery.name())
        }
    }
}

/// [`Stages`] as the report's JSON writes them: their `--recover` name (`none`, `stats`, ...).
mod stages_name {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::prune::recover::Stages;

    pub fn serialize<S: Serializer>(stages: &Stages, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&stages.name())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Stages, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PruningReport {
    pub format: String,
    pub model: crate::prune::curves::ModelInfo,
    /// What the curves were computed from.
    pub calibration_scans: usize,
    pub probes: usize,
    pub distortion: Weighting,
    pub ranking: Ranking,
    pub eval_dir: String,
    pub eval_frames: usize,
    pub dense: Accuracy,
    pub rows: Vec<Row>,
}

/// What to run.
pub struct ReportSettings {
    /// FLOPs kept, e.g. `[1.0, 0.5, 0.35, 0.25, 0.2, 0.15]`; 1.0 is the dense model.
    pub keeps: Vec<f64>,
    pub methods: Vec<Method>,
    pub lambdas: Lambdas,
    pub bins: usize,
    /// The DP's layer cap ([`Problem::layer_cap`]).
    pub layer_cap: f64,
    /// Recoveries to apply to every pruned model (`Stages::NONE`: masks only).
    pub recoveries: Vec<Stages>,
    /// How recovery runs (its stages are taken from `recoveries`).
    pub recover: RecoverSettings,
}

/// Everything a report runs on.
pub struct ReportInputs<'a> {
    pub det: &'a Detector,
    pub curves: &'a Curves,
    /// Prune order per unit ([`Detector::units`] order), as the curves assume.
    pub orders: &'a [Vec<u32>],
    /// Calibration scans, for the measured distortion.
    pub scans: &'a [CalibScan],
    pub eval: &'a EvalSet,
}

/// Runs every (budget, method) cell. `ctl.on_step` counts evaluated frames.
pub fn run(
    inputs: &ReportInputs,
    settings: &ReportSettings,
    ctl: &Control,
) -> Result<PruningReport, ReportError> {
    let ReportInputs {
        det,
        curves,
        orders,
        scans,
        eval,
    } = *inputs;
    if let Some(&k) = settings.keeps.iter().find(|&&k| !(k > 0.0 && k <= 1.0)) {
        return Err(ReportError::Keep(k));
    }
    let classes = crate::eval::model_classes(det)?;
    let units = unit_indices(det, curves)?;
    let problem = Problem::from_curves(curves, settings.lambdas, &Default::default())?;
    let weights: Vec<&[f32]> = units
        .iter()
        .map(|&u| det.units()[u].weight.data.as_slice())
        .collect();
    let dp_problem = problem.clone().with_layer_cap(settings.layer_cap)?;
    let frontier = alloc::Frontier::build(&dp_problem, BudgetKind::Flops, settings.bins)?;
    let reference = DenseReference::compute(
        det,
        scans,
        curves.calibration.distortion,
        curves.calibration.normalization.clone(),
        ctl,
    )?;

    let pruned_keeps: Vec<f64> = settings
        .keeps
        .iter()
        .copied()
        .filter(|&k| k < 1.0)
        .collect();
    let frames = eval.frames.len();
    let cells = pruned_keeps.len() * settings.methods.len() * settings.recoveries.len();
    let total = frames * (1 + cells);
    let done = std::sync::atomic::AtomicUsize::new(0);
    let evaluate = |d: &Detector, what: &str| -> Result<Accuracy, ReportError> {
        let base = done.load(std::sync::atomic::Ordering::Relaxed);
        let tick = |i: usize, _: usize, _: &str| ctl.step(base + i, total, what);
        let report = eval.evaluate(d, &Control::new(ctl.cancel, &tick))?;
        done.fetch_add(frames, std::sync::atomic::Ordering::Relaxed);
        Ok(Accuracy::of(&report, &classes))
    };
    let quiet = ctl.silenced();

    let dense = evaluate(det, "dense")?;
    let mut rows = Vec::new();
    for &keep in &pruned_keeps {
        for &method in &settings.methods {
            let budget = Budget {
                kind: BudgetKind::Flops,
                keep,
            };
            let solution = match method {
                Method::Dp => frontier.query(keep)?,
                _ => alloc::solve(method, &problem, Some(&weights), budget, settings.bins)?,
            };
            let mut sparsity = vec![0.0; det.units().len()];
            for (&u, &s) in units.iter().zip(&solution.sparsity) {
                sparsity[u] = s;
            }
            for &stages in &settings.recoveries {
                let series = Series {
                    method,
                    recovery: stages,
                };
                let what = format!("{series} at {:.0}%", keep * 100.0);
                let pruned = if stages.is_none() {
                    pruned_detector(det, &sparsity, orders)?
                } else {
                    let masks: Vec<Option<Vec<u8>>> = sparsity
                        .iter()
                        .zip(orders)
                        .map(|(&s, order)| (s > 0.0).then(|| rank::mask(order, s)))
                        .collect();
                    let cfg = RecoverSettings {
                        stages,
                        normalization: Some(curves.calibration.normalization.clone()),
                        weighting: curves.calibration.distortion,
                        ..settings.recover.clone()
                    };
                    (ctl.on_step)(
                        done.load(std::sync::atomic::Ordering::Relaxed),
                        total,
                        &format!("recovering {what}"),
                    );
                    recover::recover(det, &masks, scans, &cfg, &quiet)?.0
                };
                let (c, l) = reference.distortion(&pruned, scans, ctl)?;
                let accuracy = evaluate(&pruned, &what)?;
                rows.push(Row {
                    method,
                    recovery: stages,
                    flops_keep: keep,
                    flops_kept: solution.flops_kept,
                    params_kept: solution.params_kept,
                    predicted_distortion: solution.predicted,
                    measured_distortion: settings.lambdas.combine(c, l),
                    accuracy,
                    layer_cap: (method == Method::Dp && settings.layer_cap < 1.0)
                        .then_some(settings.layer_cap),
                });
            }
        }
    }
    Ok(PruningReport {
        format: REPORT_FORMAT.into(),
        model: curves.model.clone(),
        calibration_scans: curves.calibration.scans,
        probes: curves.calibration.probes,
        distortion: curves.calibration.distortion,
        ranking: curves.calibration.ranking,
        eval_dir: eval.dir.display().to_string(),
        eval_frames: frames,
        dense,
        rows,
    })
}

/// The unit index of every curve layer (curves may list the layers in any order).
fn unit_indices(det: &Detector, curves: &Curves) -> Result<Vec<usize>, ReportError> {
    curves
        .layers
        .iter()
        .map(|l| {
            det.units()
                .iter()
                .position(|u| u.weight_name() == l.name)
                .ok_or_else(|| ReportError::UnknownLayer(l.name.clone()))
        })
        .collect()
}

/// Why reports cannot be merged.
#[derive(Debug, Error)]
pub enum MergeError {
    #[error("no reports to merge")]
    Empty,
    #[error("{path}: {problem}")]
    Read { path: String, problem: String },
    #[error(
        "{path}: its {what} differs from {first}'s ({theirs} vs {ours}); only reports of one model, calibration and evaluation set merge"
    )]
    Mismatch {
        path: String,
        first: String,
        what: &'static str,
        theirs: String,
        ours: String,
    },
    #[error("{path}: `{series}` at {keep} FLOPs kept is also in {other}, with other results")]
    Conflict {
        path: String,
        other: String,
        series: String,
        keep: f64,
    },
}

impl PruningReport {
    pub fn to_json(&self) -> String {
        // Plain numbers, strings and lists: serialising cannot fail (non-finite floats are
        // written as null).
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Reads a `report.json` written by [`Self::to_json`].
    pub fn load(path: &std::path::Path) -> Result<PruningReport, MergeError> {
        let read = |problem: String| MergeError::Read {
            path: path.display().to_string(),
            problem,
        };
        let text = std::fs::read_to_string(path).map_err(|e| read(e.to_string()))?;
        let rep: PruningReport =
            serde_json::from_str(&text).map_err(|e| read(format!("not a pruning report: {e}")))?;
        if rep.format != REPORT_FORMAT {
            return Err(read(format!(
                "format `{}`, expected `{REPORT_FORMAT}`",
                rep.format
            )));
        }
        Ok(rep)
    }

    /// One report from reports of the same model, curves and evaluation set run over
    /// different budgets, methods or recoveries (a long grid run in parts). The same cell in
    /// two parts must hold the same results; it is kept once. Rows keep the parts' order.
    pub fn merge(parts: &[(String, PruningReport)]) -> Result<PruningReport, MergeError> {
        let ((first_path, first), rest) = parts.split_first().ok_or(MergeError::Empty)?;
        let mut out = first.clone();
        let mut origin: Vec<&str> = vec![first_path; out.rows.len()];
        for (path, rep) in rest {
            let mismatch =
                |what: &'static str, theirs: String, ours: String| MergeError::Mismatch {
                    path: path.clone(),
                    first: first_path.clone(),
                    what,
                    theirs,
                    ours,
                };
            let checks: [(&'static str, String, String); 7] = [
                (
                    "model",
                    format!("{:?}", rep.model),
                    format!("{:?}", first.model),
                ),
                (
                    "calibration",
                    format!("{} scans x {} probes", rep.calibration_scans, rep.probes),
                    format!(
                        "{} scans x {} probes",
                        first.calibration_scans, first.probes
                    ),
                ),
                (
                    "distortion",
                    rep.distortion.name().into(),
                    first.distortion.name().into(),
                ),
                (
                    "ranking",
                    rep.ranking.name().into(),
                    first.ranking.name().into(),
                ),
                (
                    "evaluation set",
                    rep.eval_dir.clone(),
                    first.eval_dir.clone(),
                ),
                (
                    "evaluation frames",
                    rep.eval_frames.to_string(),
                    first.eval_frames.to_string(),
                ),
                (
                    "dense accuracy",
                    format!("{:?}", rep.dense),
                    format!("{:?}", first.dense),
                ),
            ];
            if let Some((what, theirs, ours)) = checks.into_iter().find(|(_, a, b)| a != b) {
                return Err(mismatch(what, theirs, ours));
            }
            for row in &rep.rows {
                let same_cell = out.rows.iter().position(|r| {
                    r.series() == row.series() && (r.flops_keep - row.flops_keep).abs() < 1e-9
                });
                match same_cell {
                    Some(i) if out.rows[i] == *row => {}
                    Some(i) => {
                        return Err(MergeError::Conflict {
                            path: path.clone(),
                            other: origin[i].to_string(),
                            series: row.series().to_string(),
                            keep: row.flops_keep,
                        });
                    }
                    None => {
                        out.rows.push(row.clone());
                        origin.push(path);
                    }
                }
            }
        }
        Ok(out)
    }

    /// The budgets evaluated, largest first.
    pub fn keeps(&self) -> Vec<f64> {
        let mut k: Vec<f64> = self.rows.iter().map(|r| r.flops_keep).collect();
        k.sort_by(|a, b| b.total_cmp(a));
        k.dedup();
        k
    }

    /// The series in the order they were run.
    pub fn series(&self) -> Vec<Series> {
        let mut m: Vec<Series> = Vec::new();
        for r in &self.rows {
            let s = r.series();
            if !m.contains(&s) {
                m.push(s);
            }
        }
        m
    }

    /// Whether any row was recovered (then mask-only series are drawn dashed).
    pub fn has_recovery(&self) -> bool {
        self.rows.iter().any(|r| !r.recovery.is_none())
    }

    /// The row of a series at a budget.
    pub fn row(&self, series: Series, keep: f64) -> Option<&Row> {
        self.rows
            .iter()
            .find(|r| r.series() == series && (r.flops_keep - keep).abs() < 1e-9)
    }

    /// The largest FLOPs reduction at which `dp` stays within `tolerance` AP of dense (mean
    /// moderate AP_BEV), if any.
    pub fn dp_lossless_reduction(&self, tolerance: f64) -> Option<f64> {
        self.rows
            .iter()
            .filter(|r| {
                r.method == Method::Dp && r.accuracy.mean_bev >= self.dense.mean_bev - tolerance
            })
            .map(|r| 1.0 / r.flops_keep)
            .fold(None, |best, x| Some(best.map_or(x, |b: f64| b.max(x))))
    }

    /// Markdown: a summary table (mean AP per budget and method), then every cell in detail.
    pub fn to_markdown(&self) -> String {
        let mut s = String::new();
        let methods = self.series();
        let _ = writeln!(
            s,
            "Model `{}` (weights sha256 `{}`), evaluated on {} frames of `{}`.\n\
             Curves: {} calibration scans x {} probes, `{}` distortion, `{}` ranking. \
             No fine-tuning with labels: a series without `+` is the dense weights times the \
             masks; `+ stages` is that model recovered on the calibration scans (see \
             `pruneview prune --recover`).\n",
            self.model.name,
            short(&self.model.weights_sha256),
            self.eval_frames,
            self.eval_dir,
            self.calibration_scans,
            self.probes,
            self.distortion.name(),
            self.ranking.name()
        );
        let mut caps: Vec<f64> = self.rows.iter().filter_map(|r| r.layer_cap).collect();
        caps.sort_by(f64::total_cmp);
        caps.dedup();
        if !caps.is_empty() {
            let caps: Vec<String> = caps.iter().map(|c| c.to_string()).collect();
            let _ = writeln!(
                s,
                "The DP prunes no layer past a sparsity of {} unless the budget needs it \
                 (`--layer-cap`).\n",
                caps.join(" or ")
            );
        }
        let _ = writeln!(
            s,
            "Mean over classes of moderate AP_BEV (R40); dense: **{:.2}**.{}\n",
            self.dense.mean_bev,
            if methods.len() > 1 {
                " Best per budget in bold."
            } else {
                ""
            }
        );
        let _ = write!(s, "| FLOPs kept |");
        for m in &methods {
            let _ = write!(s, " {m} |");
        }
        let _ = write!(s, "\n|---|");
        for _ in &methods {
            let _ = write!(s, "---:|");
        }
        s.push('\n');
        for keep in self.keeps() {
            let _ = write!(s, "| {:.0}% ({:.2}x) |", keep * 100.0, 1.0 / keep);
            let best = methods
                .iter()
                .filter_map(|&m| self.row(m, keep))
                .map(|r| r.accuracy.mean_bev)
                .fold(f64::NEG_INFINITY, f64::max);
            for m in &methods {
                match self.row(*m, keep) {
                    Some(r) if methods.len() > 1 && r.accuracy.mean_bev == best => {
                        let _ = write!(s, " **{:.2}** |", r.accuracy.mean_bev);
                    }
                    Some(r) => {
                        let _ = write!(s, " {:.2} |", r.accuracy.mean_bev);
                    }
                    None => s.push_str(" - |"),
                }
            }
            s.push('\n');
        }
        let names: Vec<&str> = self.dense.classes.iter().map(|c| c.0.as_str()).collect();
        let _ = write!(
            s,
            "\nEvery cell: moderate AP (R40) per class as BEV / 3D, FLOPs and params actually kept, \
             the allocation's predicted distortion (sum over layers) and the distortion measured \
             with all layers pruned at once.\n\n| FLOPs kept | method | kept FLOPs | kept params |"
        );
        for n in &names {
            let _ = write!(s, " {n} |");
        }
        let _ = writeln!(s, " mean BEV | mean 3D | D predicted | D measured |");
        let _ = write!(s, "|---|---|---:|---:|");
        for _ in &names {
            s.push_str("---:|");
        }
        s.push_str("---:|---:|---:|---:|\n");
        let _ = write!(s, "| 100% | dense | 100% | 100% |");
        for c in &self.dense.classes {
            let _ = write!(s, " {:.2} / {:.2} |", c.1, c.2);
        }
        let _ = writeln!(
            s,
            " {:.2} | {:.2} | 0 | 0 |",
            self.dense.mean_bev, self.dense.mean_3d
        );
        for keep in self.keeps() {
            for m in &methods {
                let Some(r) = self.row(*m, keep) else {
                    continue;
                };
                let _ = write!(
                    s,
                    "| {:.0}% | {} | {:.1}% | {:.1}% |",
                    keep * 100.0,
                    m,
                    r.flops_kept * 100.0,
                    r.params_kept * 100.0
                );
                for c in &r.accuracy.classes {
                    let _ = write!(s, " {:.2} / {:.2} |", c.1, c.2);
                }
                let _ = writeln!(
                    s,
                    " {:.2} | {:.2} | {:.3e} | {:.3e} |",
                    r.accuracy.mean_bev,
                    r.accuracy.mean_3d,
                    r.predicted_distortion,
                    r.measured_distortion
                );
            }
        }
        s
    }
}

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(12)]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accuracy(bev: f64) -> Accuracy {
        Accuracy {
            classes: vec![("Car".into(), bev, bev - 5.0)],
            mean_bev: bev,
            mean_3d: bev - 5.0,
        }
    }

    fn row(method: &str, recovery: &str, keep: f64, bev: f64) -> Row {
        Row {
            method: method.parse().unwrap(),
            recovery: recovery.parse().unwrap(),
            flops_keep: keep,
            flops_kept: keep,
            params_kept: keep,
            predicted_distortion: 0.1,
            measured_distortion: 0.2,
            accuracy: accuracy(bev),
            layer_cap: None,
        }
    }

    fn report(rows: Vec<Row>) -> PruningReport {
        PruningReport {
            format: REPORT_FORMAT.into(),
            model: crate::prune::curves::ModelInfo {
                name: "PointPillar".into(),
                weights_sha256: "abc".into(),
            },
            calibration_scans: 64,
            probes: 4,
            distortion: Weighting::Detection,
            ranking: Ranking::Magnitude,
            eval_dir: "heldout".into(),
            eval_frames: 200,
            dense: accuracy(79.0),
            rows,
        }
    }

    #[test]
    fn reports_of_one_grid_merge_and_others_are_refused() {
        let a = report(vec![
            row("dp", "none", 0.5, 60.0),
            row("dp", "all", 0.5, 78.0),
        ]);
        let b = report(vec![
            row("dp", "none", 0.25, 20.0),
            row("dp", "all", 0.5, 78.0),
        ]);
        let m = PruningReport::merge(&[("a".into(), a.clone()), ("b".into(), b.clone())]).unwrap();
        assert_eq!(m.rows.len(), 3, "the shared cell is kept once");
        assert_eq!(m.keeps(), vec![0.5, 0.25]);
        let dp_all = Series {
            method: Method::Dp,
            recovery: Stages::ALL,
        };
        assert_eq!(m.row(dp_all, 0.5).unwrap().accuracy.mean_bev, 78.0);

        let conflicting = report(vec![row("dp", "all", 0.5, 70.0)]);
        let err = PruningReport::merge(&[("a".into(), a.clone()), ("c".into(), conflicting)])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("c:") && err.contains("dp + all") && err.contains("a"),
            "{err}"
        );

        let mut other_set = b;
        other_set.eval_frames = 100;
        let err = PruningReport::merge(&[("a".into(), a), ("d".into(), other_set)])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("evaluation frames") && err.contains("100 vs 200"),
            "{err}"
        );
        assert!(matches!(PruningReport::merge(&[]), Err(MergeError::Empty)));
    }
}
