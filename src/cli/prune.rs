//! Pruning subcommands: `grad`, `curves`, `merge`, `solve`, `export` and `prune` (the three
//! chained). Long work shows an indicatif bar with ETA; Ctrl-C cancels cleanly, and since
//! every file is written atomically at the end, a cancelled run leaves no partial output.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use pruneview::detect::{Detector, RawOutputs};
use pruneview::io::{OutTensor, StagedDir, write_atomic, write_safetensors};
use pruneview::model::Weights;
use pruneview::progress::Control;
use pruneview::prune::alloc::{Constraint, Method};
use pruneview::prune::curves::Fidelity;
use pruneview::prune::export;
use pruneview::prune::probe::{self, CalibScan, CurveSettings, Predicted};
use pruneview::prune::recover::{self, RecoverSettings};
use pruneview::prune::{Allocation, Budget, BudgetKind, Curves, Lambdas, Ranking, Weighting};
use pruneview::session::curves::{MeasureSettings, measure, normalization_from};
use pruneview::session::export::{ExportFiles, ExportInputs, Recovered, allocation_masks};
use pruneview::session::model::model_info;
use pruneview::session::plan::solve_allocation;
use pruneview::session::scans::{ScanReading, calibration_scans, expand_scan_paths};

use super::recover::{RecoverArgs, run_recovery};
use super::{ModelArgs, ScanArgs};

// ----------------------------------------------------------------------------------------
// grad

#[derive(Args, Debug)]
pub struct GradArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[arg(long, value_name = "S.bin")]
    pub scan: PathBuf,
    #[command(flatten)]
    pub scan_args: ScanArgs,
    /// Safetensors holding `probe.<output>` (f16 or f32) for each raw head output.
    #[arg(long, value_name = "P.safetensors")]
    pub probe: PathBuf,
    /// Output: `grad.<param name>` for every weight and bias.
    #[arg(long, value_name = "OUT.safetensors")]
    pub dump: PathBuf,
}

pub fn grad(a: GradArgs) -> Result<()> {
    let mut inputs = a.model.inputs();
    inputs.push(&a.scan);
    inputs.push(&a.probe);
    pruneview::session::export::check_outputs(&[&a.dump], &inputs)?;
    let det = a.model.load()?;
    let scan = a.scan_args.prepare(&det, &a.scan)?;
    let probes = Weights::open(&a.probe)?;
    let taped = det.forward_taped(&scan.points)?;
    let mut v = RawOutputs::default();
    for o in &taped.out.raw.outputs {
        let name = &o.name;
        let p = probes
            .tensor(&format!("probe.{name}"), &o.tensor.shape)
            .with_context(|| format!("{}: reading the probe of `{name}`", a.probe.display()))?;
        v.outputs.push(o.like(p));
    }
    let grads = det.backward(&taped, &v)?;
    let tensors: Vec<OutTensor> = det
        .named_grads(&grads)
        .iter()
        .map(|(n, t)| OutTensor::f32(format!("grad.{n}"), &t.shape, &t.data))
        .collect();
    let meta = HashMap::from([("producer".to_string(), "pruneview grad".to_string())]);
    write_safetensors(&a.dump, &tensors, Some(meta), &inputs)?;
    eprintln!("{}: {} gradients", a.dump.display(), tensors.len());
    Ok(())
}

// ----------------------------------------------------------------------------------------
// curves

/// Calibration scans and how to read them.
#[derive(Args, Debug, Clone)]
pub struct CalibArgs {
    /// Calibration scans: files, or folders (every .bin / .pcd inside, sorted by name).
    #[arg(long, value_name = "DIR_OR_FILES", num_args = 1.., required = true)]
    pub scans: Vec<PathBuf>,
    /// Use at most this many scans (the first, in name order).
    #[arg(long)]
    pub max_scans: Option<usize>,
    /// Read scans like `detect`. `--fov-calib` may be a folder: each scan then uses
    /// `<folder>/<scan stem>.txt` (KITTI layout).
    #[command(flatten)]
    pub scan_args: ScanArgs,
}

impl CalibArgs {
    pub fn files(&self) -> Result<Vec<PathBuf>> {
        let mut files = expand_scan_paths(&self.scans)?;
        if let Some(n) = self.max_scans {
            files.truncate(n);
        }
        if files.is_empty() {
            bail!("no calibration scans");
        }
        Ok(files)
    }

    /// The scan files and the scans read from them (the camera-FOV filter from `--fov-calib`,
    /// or from the KITTI layout the scans sit in when the model uses FOV points only).
    pub fn load(&self, det: &Detector) -> Result<(Vec<PathBuf>, Vec<CalibScan>)> {
        let files = self.files()?;
        let reading = ScanReading {
            format: self.scan_args.format,
            fov_calib: self.scan_args.fov_calib.clone(),
            image: self.scan_args.image_size,
        };
        let read = calibration_scans(det, &files, &reading, &Control::quiet())?;
        for w in &read.warnings {
            eprintln!("warning: {w}");
        }
        Ok((files, read.scans))
    }
}

#[derive(Args, Debug, Clone)]
pub struct CurveArgs {
    /// Rademacher probes per scan and group (confidence, locality).
    #[arg(long, default_value_t = 4)]
    pub probes: usize,
    /// Sparsity levels from 0 to 1 inclusive (2 to 10001).
    #[arg(long, default_value_t = 101, value_parser = parse_levels)]
    pub levels: usize,
    /// Seed of the probes (each scan's probes derive from it and the scan's file name).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Weight ranking inside a layer: magnitude (|w|) or saliency (w^2 x Gauss-Newton
    /// diagonal; one more pass over the probes, and a `.saliency.safetensors` sidecar).
    #[arg(long, default_value = "magnitude")]
    pub ranking: Ranking,
    /// What the distortion compares: `detection` (scores after the sigmoid, box errors
    /// weighted by the dense confidence of their anchor or cell) or `raw` (every logit and
    /// regression value equally, the paper's form; on trained models background anchors
    /// dominate it).
    #[arg(long, default_value = "detection")]
    pub distortion: Weighting,
    /// Take the output normalisation from this curves file, so that shards computed on
    /// different scans can be merged exactly.
    #[arg(long, value_name = "curves.json")]
    pub norm_from: Option<PathBuf>,
    /// Also measure curves exactly (prune, re-run) for these layers: `all`, or comma-separated
    /// names or unit indices. Slow: one pass over the scans per layer and level.
    #[arg(long, value_name = "LAYERS|all")]
    pub measured: Option<String>,
    /// Sparsities at which measured curves are computed.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9"
    )]
    pub measured_levels: Vec<f64>,
    /// Measure each point after re-estimating the BatchNorm statistics (the model as
    /// `--recover stats` leaves it): recovery-aware curves, for `solve --on measured`.
    #[arg(long, requires = "measured")]
    pub measured_after_stats: bool,
    /// Measure on the first N calibration scans only (default: all). Measured curves cost one
    /// pass per layer and level; 16 scans are enough for the allocation (docs/pruning-report.md).
    #[arg(long, value_name = "N", requires = "measured", value_parser = clap::value_parser!(u64).range(1..))]
    pub measured_scans: Option<u64>,
}

#[derive(Args, Debug, Clone, Copy)]
pub struct LambdaArgs {
    /// Weight of the confidence group (cls_preds / hm), >= 0.
    #[arg(long, default_value_t = 1.0, value_parser = parse_group_weight)]
    pub lambda_conf: f64,
    /// Weight of the locality group (box, direction and regression maps), >= 0.
    #[arg(long, default_value_t = 1.0, value_parser = parse_group_weight)]
    pub lambda_loc: f64,
}

/// A group weight: a distortion weighted by a negative number would reward damage.
fn parse_group_weight(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!("`{s}`: a group weight is a finite number >= 0")),
    }
}

/// A layer cap is a sparsity.
pub(super) fn parse_layer_cap(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err(format!(
            "`{s}`: a layer cap is a sparsity in [0, 1] (1 turns it off)"
        )),
    }
}

/// DP budget bins: too few round every layer's cost up to the whole budget (the DP then
/// prunes everything it can), too many cost memory for nothing.
pub(super) fn parse_bins(s: &str) -> Result<usize, String> {
    const RANGE: std::ops::RangeInclusive<usize> = 64..=(1 << 20);
    match s.parse::<usize>() {
        Ok(n) if RANGE.contains(&n) => Ok(n),
        _ => Err(format!(
            "`{s}`: give {} to {} bins",
            RANGE.start(),
            RANGE.end()
        )),
    }
}

impl LambdaArgs {
    pub fn get(&self) -> Lambdas {
        Lambdas {
            confidence: self.lambda_conf,
            locality: self.lambda_loc,
        }
    }
}

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

/// Most curve levels: a finer grid than 1e-4 in sparsity changes no allocation, and every
/// level costs memory per layer and probe.
const MAX_LEVELS: usize = 10_001;

fn parse_levels(s: &str) -> Result<usize, String> {
    let n: usize = s
        .parse()
        .map_err(|_| format!("`{s}` is not a whole number"))?;
    if (2..=MAX_LEVELS).contains(&n) {
        Ok(n)
    } else {
        Err(format!("{n} levels: give 2 to {MAX_LEVELS}"))
    }
}

/// Ctrl-C sets the flag (a second Ctrl-C exits at once).
pub(super) fn cancel_flag() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let f = flag.clone();
    let _ = ctrlc::set_handler(move || {
        if f.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!("\ncancelling (Ctrl-C again to quit at once)...");
    });
    flag
}

pub(super) fn bar(prefix: &str) -> ProgressBar {
    let pb = ProgressBar::new(1);
    pb.set_style(
        ProgressStyle::with_template(
            "{prefix:>9} [{elapsed_precise}] {wide_bar} {pos}/{len} ETA {eta} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    pb.set_prefix(prefix.to_string());
    pb
}

/// Runs `f` with a progress bar and the Ctrl-C flag; an error after Ctrl-C is reported as
/// the cancellation it is (nothing has been written then).
pub(super) fn with_progress<T, E: Into<anyhow::Error>>(
    prefix: &str,
    cancel: &AtomicBool,
    f: impl FnOnce(&Control) -> Result<T, E>,
) -> Result<T> {
    let pb = bar(prefix);
    let on_step = |done: usize, total: usize, what: &str| {
        pb.set_length(total as u64);
        pb.set_position(done as u64);
        pb.set_message(what.to_string());
    };
    let r = f(&Control::new(cancel, &on_step));
    pb.finish_and_clear();
    match r {
        Ok(v) => Ok(v),
        Err(_) if cancel.load(Ordering::Relaxed) => bail!("cancelled; nothing was written"),
        Err(e) => Err(e.into()),
    }
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
fn saliency_path(curves: &Path) -> PathBuf {
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

// ----------------------------------------------------------------------------------------
// merge

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

// ----------------------------------------------------------------------------------------
// solve

#[derive(Args, Debug, Clone)]
pub struct SolveArgs {
    /// Keep at most this fraction of the layers' FLOPs (e.g. 0.25 = 4x fewer).
    #[arg(
        long,
        value_name = "F",
        conflicts_with = "params_keep",
        required_unless_present = "params_keep"
    )]
    pub flops_keep: Option<f64>,
    /// Keep at most this fraction of the layers' parameters.
    #[arg(long, value_name = "F")]
    pub params_keep: Option<f64>,
    /// dp (distortion-minimising), or a baseline: uniform, global (magnitude), lamp, erk.
    #[arg(long, default_value = "dp")]
    pub method: Method,
    #[command(flatten)]
    pub lambdas: LambdaArgs,
    /// Budget bins of the DP (costs are rounded up: never over budget).
    #[arg(long, default_value_t = pruneview::prune::alloc::DEFAULT_BINS, value_parser = parse_bins)]
    pub bins: usize,
    /// Keep these layers dense (comma-separated names).
    #[arg(long, value_delimiter = ',')]
    pub lock: Vec<String>,
    /// Per-layer minimum sparsity, `NAME=S` (repeatable).
    #[arg(long, value_name = "NAME=S")]
    pub min_sparsity: Vec<String>,
    /// Per-layer maximum sparsity, `NAME=S` (repeatable).
    #[arg(long, value_name = "NAME=S")]
    pub max_sparsity: Vec<String>,
    /// The DP prunes a layer past this sparsity only when the budget cannot be met otherwise
    /// (recovery cannot revive a layer pruned almost away); 1 turns it off. Baselines ignore it.
    #[arg(long, value_name = "S", default_value_t = pruneview::prune::alloc::DEFAULT_LAYER_CAP, value_parser = parse_layer_cap)]
    pub layer_cap: f64,
    /// Which curves the allocation trades: the predicted ones, or the measured curves of
    /// `curves --measured all` (with `--measured-after-stats`: recovery-aware).
    #[arg(long, value_enum, default_value = "predicted")]
    pub on: CurveSource,
}

/// The curves an allocation is computed on.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum CurveSource {
    Predicted,
    Measured,
}

impl SolveArgs {
    fn budget(&self) -> Result<Budget> {
        let (kind, keep) = match (self.flops_keep, self.params_keep) {
            (Some(f), _) => (BudgetKind::Flops, f),
            (None, Some(p)) => (BudgetKind::Params, p),
            (None, None) => bail!("give --flops-keep or --params-keep"),
        };
        if !(0.0..=1.0).contains(&keep) {
            bail!("the budget must be a fraction in [0, 1], got {keep}");
        }
        Ok(Budget { kind, keep })
    }

    fn constraints(&self) -> Result<HashMap<String, Constraint>> {
        let mut c: HashMap<String, Constraint> = HashMap::new();
        let full = |n: &str| {
            if n.ends_with(".weight") {
                n.to_string()
            } else {
                format!("{n}.weight")
            }
        };
        for n in &self.lock {
            c.entry(full(n)).or_default().locked = true;
        }
        for (list, is_min) in [(&self.min_sparsity, true), (&self.max_sparsity, false)] {
            for item in list {
                let (n, s) = item
                    .split_once('=')
                    .with_context(|| format!("`{item}`: expected NAME=S"))?;
                let s: f64 = s
                    .parse()
                    .with_context(|| format!("`{item}`: `{s}` is not a number"))?;
                let e = c.entry(full(n)).or_default();
                if is_min {
                    e.min_sparsity = s;
                } else {
                    e.max_sparsity = s;
                }
            }
        }
        for (name, k) in &c {
            if k.locked && k.min_sparsity > 0.0 {
                bail!(
                    "{name}: --lock keeps it dense, but --min-sparsity asks for {}; give one",
                    k.min_sparsity
                );
            }
        }
        Ok(c)
    }
}

#[derive(Args, Debug)]
pub struct SolveCmd {
    #[arg(long, value_name = "curves.json")]
    pub curves: PathBuf,
    #[command(flatten)]
    pub solve: SolveArgs,
    /// Weights (needed by the global and lamp baselines).
    #[arg(long, value_name = "W.safetensors")]
    pub weights: Option<PathBuf>,
    /// Where to write the allocation (`pruneview-allocation/1` JSON).
    #[arg(long, value_name = "alloc.json")]
    pub out: PathBuf,
}

/// Solves one allocation and prints it.
fn solve_and_print(
    curves: &Curves,
    args: &SolveArgs,
    weights: Option<&Weights>,
) -> Result<Allocation> {
    let measured;
    let curves = match args.on {
        CurveSource::Predicted => curves,
        CurveSource::Measured => {
            measured = curves.on_measured().map_err(anyhow::Error::msg)?;
            &measured
        }
    };
    let (alloc, warnings) = solve_allocation(
        curves,
        weights,
        args.method,
        args.budget()?,
        args.lambdas.get(),
        &args.constraints()?,
        args.layer_cap,
        args.bins,
    )?;
    print_allocation(&alloc)?;
    for w in warnings {
        eprintln!("warning: {w}");
    }
    Ok(alloc)
}

fn print_allocation(a: &Allocation) -> Result<()> {
    outln!("{:<48} {:>9}", "layer", "sparsity")?;
    for l in &a.layers {
        outln!("{:<48} {:>9.3}", l.name, l.sparsity)?;
    }
    outln!(
        "method {}: FLOPs kept {:.2}% ({:.2}x fewer, {:.2} of {:.2} GFLOPs), params kept {:.2}%, predicted distortion {:.6e}",
        a.method,
        a.flops_kept * 100.0,
        1.0 / a.flops_kept.max(1e-12),
        a.flops / 1e9,
        a.flops_dense / 1e9,
        a.params_kept * 100.0,
        a.predicted_distortion
    )?;
    Ok(())
}

pub fn solve(a: SolveCmd) -> Result<()> {
    let mut inputs = vec![a.curves.as_path()];
    inputs.extend(a.weights.as_deref());
    pruneview::session::export::check_outputs(&[&a.out], &inputs)?;
    let curves = Curves::load(&a.curves)?;
    let weights = a.weights.as_deref().map(Weights::open).transpose()?;
    let alloc = solve_and_print(&curves, &a.solve, weights.as_ref())?;
    write_atomic(&a.out, alloc.to_json().as_bytes(), &inputs)?;
    Ok(())
}

// ----------------------------------------------------------------------------------------
// export

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
fn masks_of(
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
fn describe_files(from: &ExportInputs, files: &ExportFiles) {
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

// ----------------------------------------------------------------------------------------
// prune

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
