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
use pruneview::io::{OutTensor, write_atomic, write_safetensors};
use pruneview::model::Weights;
use pruneview::pointcloud::scan::list_scans;
use pruneview::prune::alloc::{self, Constraint, Method, Problem};
use pruneview::prune::curves::ModelInfo;
use pruneview::prune::export::{self, Orders};
use pruneview::prune::measure::{DenseReference, Measurer, layer_fidelity};
use pruneview::prune::probe::{self, CalibScan, Control, CurveSettings, Predicted};
use pruneview::prune::{Allocation, Budget, BudgetKind, Curves, Lambdas, Ranking, Weighting, rank};

use pruneview::prune::recover::{self, RecoverSettings};

use super::recover::{RecoverArgs, recovery_metadata, run_recovery};
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
    let det = a.model.load()?;
    let scan = a.scan_args.prepare(&det, &a.scan)?;
    let probes = Weights::open(&a.probe)?;
    let taped = det.forward_taped(&scan.points)?;
    let mut v = RawOutputs::default();
    for (name, t) in &taped.out.raw.tensors {
        let p = probes
            .tensor(&format!("probe.{name}"), &t.shape)
            .with_context(|| format!("{}: reading the probe of `{name}`", a.probe.display()))?;
        v.tensors.push((name.clone(), p));
    }
    let grads = det.backward(&taped, &v)?;
    let tensors: Vec<OutTensor> = det
        .named_grads(&grads)
        .iter()
        .map(|(n, t)| OutTensor::f32(format!("grad.{n}"), &t.shape, &t.data))
        .collect();
    let mut inputs = a.model.inputs();
    inputs.push(&a.scan);
    inputs.push(&a.probe);
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
        let mut files = Vec::new();
        for p in &self.scans {
            if p.is_dir() {
                files.extend(list_scans(p)?);
            } else {
                files.push(p.clone());
            }
        }
        if let Some(n) = self.max_scans {
            files.truncate(n);
        }
        if files.is_empty() {
            bail!("no calibration scans");
        }
        Ok(files)
    }

    /// The scan files and the scans read from them.
    pub fn load(&self, det: &Detector) -> Result<(Vec<PathBuf>, Vec<CalibScan>)> {
        let files = self.files()?;
        let mut scans = Vec::with_capacity(files.len());
        for f in &files {
            let mut sa = self.scan_args.clone();
            if let Some(c) = sa.fov_calib.as_ref().filter(|c| c.is_dir()) {
                let stem = f.file_stem().unwrap_or_default().to_string_lossy();
                let stem = stem.trim_end_matches(".pcd");
                sa.fov_calib = Some(c.join(format!("{stem}.txt")));
            }
            let prepared = sa.prepare(det, f)?;
            if prepared.is_empty() {
                bail!("{}: no points left to run on", f.display());
            }
            scans.push(CalibScan {
                id: f
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                points: prepared.points,
            });
        }
        Ok((files, scans))
    }
}

#[derive(Args, Debug, Clone)]
pub struct CurveArgs {
    /// Rademacher probes per scan and group (confidence, locality).
    #[arg(long, default_value_t = 4)]
    pub probes: usize,
    /// Sparsity levels from 0 to 1 inclusive.
    #[arg(long, default_value_t = 101)]
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
}

#[derive(Args, Debug, Clone, Copy)]
pub struct LambdaArgs {
    /// Weight of the confidence group (cls_preds / hm).
    #[arg(long, default_value_t = 1.0)]
    pub lambda_conf: f64,
    /// Weight of the locality group (box, direction and regression maps).
    #[arg(long, default_value_t = 1.0)]
    pub lambda_loc: f64,
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

/// Runs `f` with a progress bar and the Ctrl-C flag.
pub(super) fn with_progress<T>(
    prefix: &str,
    cancel: &AtomicBool,
    f: impl FnOnce(&Control) -> Result<T, probe::ProbeError>,
) -> Result<T> {
    let pb = bar(prefix);
    let on_step = |done: usize, total: usize, what: &str| {
        pb.set_length(total as u64);
        pb.set_position(done as u64);
        pb.set_message(what.to_string());
    };
    let ctl = Control {
        cancel,
        on_step: &on_step,
    };
    let r = f(&ctl);
    pb.finish_and_clear();
    match r {
        Err(probe::ProbeError::Cancelled) => bail!("cancelled; nothing was written"),
        r => Ok(r?),
    }
}

fn model_info(det: &Detector, weights: &Path) -> Result<ModelInfo> {
    Ok(ModelInfo {
        name: det.config.model_name.clone(),
        weights_sha256: export::sha256_file(weights)?,
    })
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
    let normalization = match &args.norm_from {
        Some(p) => {
            let c = Curves::load(p)?.calibration;
            if c.distortion != args.distortion {
                bail!(
                    "{}: normalised for the {} distortion, not {}; pass --distortion {}",
                    p.display(),
                    c.distortion.name(),
                    args.distortion.name(),
                    c.distortion.name()
                );
            }
            Some(c.normalization)
        }
        None => None,
    };
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
        let levels = &args.measured_levels;
        if levels.iter().any(|s| !(0.0..=1.0).contains(s)) {
            bail!("--measured-levels must lie in [0, 1]");
        }
        let curves = &mut predicted.curves;
        let norms = curves.calibration.normalization.clone();
        let measurer = Measurer {
            det,
            scans,
            reference: with_progress("dense", cancel, |ctl| {
                DenseReference::compute(det, scans, settings.weighting, norms, ctl)
            })?,
            orders: &predicted.orders,
        };
        let measured = with_progress("measured", cancel, |ctl| {
            measurer.measured_curves(&units, levels, ctl)
        })?;
        for (&u, m) in units.iter().zip(measured) {
            curves.layers[u].measured = m;
        }
        let mut fidelity = pruneview::prune::curves::Fidelity {
            layers: layer_fidelity(curves, lambdas),
            additivity: Vec::new(),
        };
        let problem = Problem::from_curves(curves, lambdas, &HashMap::new())?;
        let frontier = alloc::Frontier::build(&problem, BudgetKind::Flops, 4096)?;
        for keep in [0.5, 0.3, 0.2] {
            let sol = frontier.query(keep)?;
            let check = with_progress("additivity", cancel, |ctl| {
                measurer.additivity(curves, lambdas, keep, &sol, ctl)
            })?;
            fidelity.additivity.push(check);
        }
        print_fidelity(&fidelity);
        curves.fidelity = Some(fidelity);
    }
    Ok(predicted)
}

fn print_fidelity(f: &pruneview::prune::curves::Fidelity) {
    let fmt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.3}"));
    println!("fidelity: predicted vs measured curves (lambda-combined)");
    println!(
        "{:<48} {:>8} {:>8} {:>6}",
        "layer", "spearman", "pearson", "levels"
    );
    for l in &f.layers {
        println!(
            "{:<48} {:>8} {:>8} {:>6}",
            l.name,
            fmt(l.spearman),
            fmt(l.pearson),
            l.levels
        );
    }
    let med = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied()
    };
    println!(
        "median spearman {}, median pearson {}",
        fmt(med(f.layers.iter().filter_map(|l| l.spearman).collect())),
        fmt(med(f.layers.iter().filter_map(|l| l.pearson).collect()))
    );
    println!("additivity: DP allocation, predicted sum vs measured joint distortion");
    println!(
        "{:>10} {:>14} {:>14} {:>14}",
        "flops kept", "predicted", "sum measured", "measured"
    );
    for a in &f.additivity {
        println!(
            "{:>10.2} {:>14.6e} {:>14} {:>14.6e}",
            a.flops_keep,
            a.predicted,
            a.measured_sum.map_or("-".into(), |v| format!("{v:.6e}")),
            a.measured
        );
    }
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
        write_safetensors(&side, &tensors, None, inputs)?;
        eprintln!(
            "{}: Gauss-Newton diagonal for the saliency ranking",
            side.display()
        );
    }
    Ok(())
}

/// `curves.json` -> `curves.saliency.safetensors`.
fn saliency_path(curves: &Path) -> PathBuf {
    curves.with_extension("saliency.safetensors")
}

/// Loads the model and scans and computes the curves: the common part of `curves` and
/// `prune`. Returns the detector, the curves and the calibration files (inputs of the run).
fn model_and_curves(
    model: &ModelArgs,
    calib: &CalibArgs,
    curves: &CurveArgs,
    lambdas: Lambdas,
) -> Result<(Detector, Predicted, Vec<PathBuf>)> {
    let cancel = cancel_flag();
    let det = model.load()?;
    let (files, scans) = calib.load(&det)?;
    let predicted = compute_curves(&det, &model.weights, &scans, curves, lambdas, &cancel)?;
    Ok((det, predicted, files))
}

pub fn curves(a: CurvesCmd) -> Result<()> {
    let (det, predicted, files) = model_and_curves(&a.model, &a.calib, &a.curves, a.lambdas.get())?;
    let mut inputs = a.model.inputs();
    inputs.extend(files.iter().map(PathBuf::as_path));
    write_curves(&a.out, &predicted, &det, &inputs)?;
    eprintln!(
        "{}: {} layers",
        a.out.display(),
        predicted.curves.layers.len()
    );
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
    let shards: Vec<Curves> = a
        .shards
        .iter()
        .map(|p| Curves::load(p))
        .collect::<Result<_, _>>()?;
    let names: Vec<String> = a.shards.iter().map(|p| p.display().to_string()).collect();
    let merged = Curves::merge(&shards, &names)?;
    let inputs: Vec<&Path> = a.shards.iter().map(PathBuf::as_path).collect();
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
    #[arg(long, default_value_t = 4096)]
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
fn solve_allocation(
    curves: &Curves,
    args: &SolveArgs,
    weights: Option<&Weights>,
) -> Result<Allocation> {
    let lambdas = args.lambdas.get();
    let budget = args.budget()?;
    let problem = Problem::from_curves(curves, lambdas, &args.constraints()?)?;
    let layer_weights: Option<Vec<Vec<f32>>> = match weights {
        Some(w) => Some(
            curves
                .layers
                .iter()
                .map(|l| w.tensor_any_shape(&l.name).map(|t| t.data))
                .collect::<Result<_, _>>()?,
        ),
        None if args.method.needs_weights() => {
            bail!("--method {} needs --weights", args.method.name())
        }
        None => None,
    };
    let refs: Option<Vec<&[f32]>> = layer_weights
        .as_ref()
        .map(|v| v.iter().map(Vec::as_slice).collect());
    let sol = alloc::solve(args.method, &problem, refs.as_deref(), budget, args.bins)?;
    let alloc = sol.to_allocation(
        &problem,
        args.method,
        budget,
        curves.model.clone(),
        curves.calibration.ranking,
        lambdas,
    );
    print_allocation(&alloc);
    Ok(alloc)
}

fn print_allocation(a: &Allocation) {
    println!("{:<48} {:>9}", "layer", "sparsity");
    for l in &a.layers {
        println!("{:<48} {:>9.3}", l.name, l.sparsity);
    }
    println!(
        "method {}: FLOPs kept {:.2}% ({:.2}x fewer, {:.2} of {:.2} GFLOPs), params kept {:.2}%, predicted distortion {:.6e}",
        a.method,
        a.flops_kept * 100.0,
        1.0 / a.flops_kept.max(1e-12),
        a.flops / 1e9,
        a.flops_dense / 1e9,
        a.params_kept * 100.0,
        a.predicted_distortion
    );
}

pub fn solve(a: SolveCmd) -> Result<()> {
    let curves = Curves::load(&a.curves)?;
    let weights = a.weights.as_deref().map(Weights::open).transpose()?;
    let alloc = solve_allocation(&curves, &a.solve, weights.as_ref())?;
    let mut inputs = vec![a.curves.as_path()];
    inputs.extend(a.weights.as_deref());
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

/// Saliency orders from a Gauss-Newton diagonal file.
fn saliency_orders(
    path: &Path,
    weights: &Weights,
    alloc: &Allocation,
) -> Result<HashMap<String, Vec<u32>>> {
    let diag = Weights::open(path)?;
    alloc
        .layers
        .iter()
        .map(|l| {
            let w = weights.tensor_any_shape(&l.name)?;
            let d = diag.tensor(&l.name, &w.shape)?;
            Ok((l.name.clone(), rank::saliency_order(&w.data, &d.data)))
        })
        .collect()
}

/// The masks of `alloc` for `weights` (magnitude order, or the saliency orders of the
/// curves' side file), after warning when the allocation was made for other weights.
fn allocation_masks(
    weights: &Weights,
    alloc: &Allocation,
    saliency: Option<&Path>,
) -> Result<(Vec<export::LayerMask>, String)> {
    let sha = export::sha256_file(weights.path())?;
    if alloc.model.weights_sha256 != sha {
        eprintln!(
            "warning: {} (sha256 {sha}) is not the file the allocation was computed for ({})",
            weights.path().display(),
            alloc.model.weights_sha256
        );
    }
    let given;
    let orders = match alloc.ranking {
        Ranking::Magnitude => Orders::Magnitude,
        Ranking::Saliency => {
            let path = saliency.context(
                "the allocation uses the saliency ranking: pass --saliency <curves>.saliency.safetensors",
            )?;
            given = saliency_orders(path, weights, alloc)?;
            Orders::Given(&given)
        }
    };
    Ok((export::build_masks(alloc, weights, orders)?, sha))
}

/// A recovered model to write as the pruned weights instead of the masked input.
struct Recovered<'a> {
    det: &'a Detector,
    masks: &'a [Option<Vec<u8>>],
    report: &'a recover::RecoveryReport,
}

#[allow(clippy::too_many_arguments)]
fn export_files(
    weights: &Weights,
    alloc: &Allocation,
    masks: &[export::LayerMask],
    sha: &str,
    outputs: &ExportOutputs,
    curves: Option<&Curves>,
    recovered: Option<Recovered>,
    inputs: &[&Path],
) -> Result<()> {
    if let Some(p) = &outputs.masks {
        export::write_masks(p, masks, alloc, sha, inputs)?;
        eprintln!("{}: masks (U8, 1 kept)", p.display());
    }
    if let Some(p) = &outputs.pruned {
        match recovered {
            None => export::write_pruned(p, weights, masks, alloc, inputs)?,
            Some(r) => {
                let mut meta = recovery_metadata(r.report);
                meta.insert(export::META_ALLOCATION.to_string(), alloc.to_json());
                export::write_recovered(p, weights, r.det, r.masks, &meta, inputs)?;
            }
        }
        eprintln!(
            "{}: pruned weights (zeros in dense tensors: not faster by themselves)",
            p.display()
        );
    }
    if let Some(p) = &outputs.csv {
        export::write_csv(p, alloc, masks, curves, inputs)?;
        eprintln!("{}: per-layer report", p.display());
    }
    Ok(())
}

pub fn export_cmd(a: ExportCmd) -> Result<()> {
    let o = &a.outputs;
    if o.masks.is_none() && o.pruned.is_none() && o.csv.is_none() {
        bail!("nothing to export: give --masks, --pruned and/or --csv");
    }
    let alloc = Allocation::load(&a.alloc)?;
    let curves = a.curves.as_deref().map(Curves::load).transpose()?;
    let mut inputs = vec![a.weights.as_path(), a.alloc.as_path()];
    inputs.extend(a.curves.as_deref());
    inputs.extend(a.saliency.as_deref());
    let weights = Weights::open(&a.weights)?;
    let (masks, sha) = allocation_masks(&weights, &alloc, a.saliency.as_deref())?;
    export_files(
        &weights,
        &alloc,
        &masks,
        &sha,
        &a.outputs,
        curves.as_ref(),
        None,
        &inputs,
    )
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
    let predicted = compute_curves(&det, &a.model.weights, &scans, &a.curves, lambdas, &cancel)?;
    let weights = Weights::open(&a.model.weights)?;
    let alloc = solve_allocation(&predicted.curves, &a.solve, Some(&weights))?;
    let mut inputs = a.model.inputs();
    inputs.extend(files.iter().map(PathBuf::as_path));
    let curves_path = a.out.join(export::CURVES_FILE);
    let saliency = predicted
        .gn_diagonal
        .as_ref()
        .map(|_| saliency_path(&curves_path));
    // The saliency orders are read back from the side file, so it is written first.
    std::fs::create_dir_all(&a.out)
        .with_context(|| format!("{}: cannot create the folder", a.out.display()))?;
    write_curves(&curves_path, &predicted, &det, &inputs)?;
    let (masks, sha) = allocation_masks(&weights, &alloc, saliency.as_deref())?;
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
    write_atomic(
        &a.out.join(export::ALLOCATION_FILE),
        alloc.to_json().as_bytes(),
        &inputs,
    )?;
    let outputs = ExportOutputs {
        masks: Some(a.out.join(export::MASKS_FILE)),
        pruned: Some(a.out.join(export::PRUNED_FILE)),
        csv: Some(a.out.join(export::CSV_FILE)),
    };
    export_files(
        &weights,
        &alloc,
        &masks,
        &sha,
        &outputs,
        Some(&predicted.curves),
        recovered
            .as_ref()
            .map(|(det, masks, report)| Recovered { det, masks, report }),
        &inputs,
    )?;
    let what = match &recovered {
        Some((_, _, r)) => format!("pruned weights recovered ({})", r.stages),
        None => "pruned weights (masks only)".into(),
    };
    eprintln!(
        "{}: curves, allocation, masks, {what}, report",
        a.out.display()
    );
    Ok(())
}
