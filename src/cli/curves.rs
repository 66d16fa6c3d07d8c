//! `curves` (per-layer distortion curves, predicted and measured) and `merge` (curve
//! shards into one file).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use anyhow::{Context, Result};
use clap::Args;

use pruneview::detect::Detector;
use pruneview::io::{OutTensor, write_atomic, write_safetensors};
use pruneview::prune::curves::Fidelity;
use pruneview::prune::probe::{self, CalibScan, CurveSettings, Predicted};
use pruneview::prune::{Curves, Lambdas, Ranking};
use pruneview::session::curves::{MeasureSettings, measure, normalization_from};
use pruneview::session::model::model_info;

use super::ModelArgs;

use super::args::{CalibArgs, CurveArgs, LambdaArgs};
use super::progress::{cancel_flag, with_progress};

#[derive(Args, Debug)]
pub struct CurvesCmd {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub calib: CalibArgs,
    #[command(flatten)]
    pub curves: CurveArgs,
    /// Group weights for the fidelity report (the curves keep both groups separately).
    #[command(flatten)]
    pub lambdas: LambdaArgs,
    /// Where to write the curves (`pruneview-curves/1` JSON).
    #[arg(long, value_name = "curves.json")]
    pub out: PathBuf,
}

/// Which units `--measured` names.
fn measured_units(det: &Detector, spec: &str) -> Result<Vec<usize>> {
    let names: Vec<String> = det.units().iter().map(|u| u.weight_name()).collect();
    if spec == "all" {
        return Ok((0..names.len()).collect());
    }
    spec.split(',')
        .map(|s| {
            let s = s.trim();
            if let Ok(i) = s.parse::<usize>() {
                return (i < names.len()).then_some(i).with_context(|| {
                    format!("--measured: no layer {i} (the model has {})", names.len())
                });
            }
            names
                .iter()
                .position(|n| n == s || n.strip_suffix(".weight") == Some(s))
                .with_context(|| format!("--measured: no layer `{s}`"))
        })
        .collect()
}

/// Computes curves (and measured curves and the fidelity report when asked).
pub(super) fn compute_curves(
    det: &Detector,
    weights: &Path,
    scans: &[CalibScan],
    args: &CurveArgs,
    lambdas: Lambdas,
    cancel: &AtomicBool,
) -> Result<Predicted> {
    let normalization = args
        .norm_from
        .as_deref()
        .map(|p| normalization_from(p, args.distortion))
        .transpose()?;
    let settings = CurveSettings {
        probes: args.probes,
        levels: CurveSettings::even_levels(args.levels),
        seed: args.seed,
        ranking: args.ranking,
        weighting: args.distortion,
        normalization,
    };
    let model = model_info(det, weights)?;
    let t = std::time::Instant::now();
    let mut predicted = with_progress("probes", cancel, |ctl| {
        probe::predicted_curves(det, scans, &settings, model, ctl)
    })?;
    eprintln!(
        "predicted curves for {} layers from {} scans x {} probes x 2 groups in {:.1} s",
        predicted.curves.layers.len(),
        scans.len(),
        args.probes,
        t.elapsed().as_secs_f64()
    );
    if let Some(spec) = &args.measured {
        let units = measured_units(det, spec)?;
        let Predicted { curves, orders, .. } = &mut predicted;
        with_progress("measured", cancel, |ctl| {
            let settings = MeasureSettings {
                units: &units,
                levels: &args.measured_levels,
                // The joint check prunes without repair: not comparable after statistics.
                additivity: if args.measured_after_stats {
                    &[]
                } else {
                    &[0.5, 0.3, 0.2]
                },
                lambdas,
                repair_statistics: args.measured_after_stats,
            };
            let n = args
                .measured_scans
                .map_or(scans.len(), |n| (n as usize).min(scans.len()));
            eprintln!("measured curves on {n} of the {} scans", scans.len());
            measure(det, &scans[..n], curves, orders, &settings, ctl)
        })?;
        if let Some(f) = &curves.fidelity {
            print_fidelity(f)?;
        }
    }
    Ok(predicted)
}

fn print_fidelity(f: &Fidelity) -> Result<()> {
    let fmt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.3}"));
    outln!("fidelity: predicted vs measured curves (lambda-combined)")?;
    outln!(
        "{:<48} {:>8} {:>8} {:>6}",
        "layer",
        "spearman",
        "pearson",
        "levels"
    )?;
    for l in &f.layers {
        outln!(
            "{:<48} {:>8} {:>8} {:>6}",
            l.name,
            fmt(l.spearman),
            fmt(l.pearson),
            l.levels
        )?;
    }
    let med = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied()
    };
    outln!(
        "median spearman {}, median pearson {}",
        fmt(med(f.layers.iter().filter_map(|l| l.spearman).collect())),
        fmt(med(f.layers.iter().filter_map(|l| l.pearson).collect()))
    )?;
    outln!("additivity: DP allocation, predicted sum vs measured joint distortion")?;
    outln!(
        "{:>10} {:>14} {:>14} {:>14}",
        "flops kept",
        "predicted",
        "sum measured",
        "measured"
    )?;
    for a in &f.additivity {
        outln!(
            "{:>10.2} {:>14.6e} {:>14} {:>14.6e}",
            a.flops_keep,
            a.predicted,
            a.measured_sum.map_or("-".into(), |v| format!("{v:.6e}")),
            a.measured
        )?;
    }
    Ok(())
}

pub(super) fn write_curves(
    path: &Path,
    predicted: &Predicted,
    det: &Detector,
    inputs: &[&Path],
) -> Result<()> {
    write_atomic(path, predicted.curves.to_json().as_bytes(), inputs)?;
    if let Some(diag) = &predicted.gn_diagonal {
        let side = saliency_path(path);
        let tensors: Vec<OutTensor> = det
            .units()
            .iter()
            .zip(diag)
            .map(|(u, d)| OutTensor::f32(u.weight_name(), &u.weight.shape, d))
            .collect();
        let meta = HashMap::from([(
            pruneview::session::export::SALIENCY_KIND_KEY.to_string(),
            pruneview::session::export::SALIENCY_KIND.to_string(),
        )]);
        write_safetensors(&side, &tensors, Some(meta), inputs)?;
    }
    Ok(())
}

/// `curves.json` -> `curves.saliency.safetensors`.
pub(super) fn saliency_path(curves: &Path) -> PathBuf {
    curves.with_extension("saliency.safetensors")
}

pub fn curves(a: CurvesCmd) -> Result<()> {
    let cancel = cancel_flag();
    let det = a.model.load()?;
    let (files, scans) = a.calib.load(&det)?;
    let mut inputs = a.model.inputs();
    inputs.extend(files.iter().map(PathBuf::as_path));
    inputs.extend(a.curves.norm_from.as_deref());
    let side = saliency_path(&a.out);
    let mut outputs = vec![a.out.as_path()];
    if a.curves.ranking == Ranking::Saliency {
        outputs.push(&side);
    }
    pruneview::session::export::check_outputs(&outputs, &inputs)?;
    let lambdas = a.lambdas.get();
    let predicted = compute_curves(&det, &a.model.weights, &scans, &a.curves, lambdas, &cancel)?;
    write_curves(&a.out, &predicted, &det, &inputs)?;
    eprintln!(
        "{}: {} layers",
        a.out.display(),
        predicted.curves.layers.len()
    );
    if predicted.gn_diagonal.is_some() {
        eprintln!(
            "{}: Gauss-Newton diagonal for the saliency ranking",
            side.display()
        );
    }
    Ok(())
}

#[derive(Args, Debug)]
pub struct MergeArgs {
    /// Curve files computed on disjoint scan subsets with the same settings and `--norm-from`.
    #[arg(required = true, num_args = 2..)]
    pub shards: Vec<PathBuf>,
    /// Where to write the merged curves.
    #[arg(long, value_name = "curves.json")]
    pub out: PathBuf,
}

pub fn merge(a: MergeArgs) -> Result<()> {
    let inputs: Vec<&Path> = a.shards.iter().map(PathBuf::as_path).collect();
    pruneview::session::export::check_outputs(&[&a.out], &inputs)?;
    let shards: Vec<Curves> = a
        .shards
        .iter()
        .map(|p| Curves::load(p))
        .collect::<Result<_, _>>()?;
    let names: Vec<String> = a.shards.iter().map(|p| p.display().to_string()).collect();
    let merged = Curves::merge(&shards, &names)?;
    write_atomic(&a.out, merged.to_json().as_bytes(), &inputs)?;
    eprintln!(
        "{}: {} scans from {} shards",
        a.out.display(),
        merged.calibration.scans,
        shards.len()
    );
    Ok(())
}
