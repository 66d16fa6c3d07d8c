//! `pruneview report`: AP of pruned models over FLOPs budgets, methods and recoveries.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;

use pruneview::eval::EvalSet;
use pruneview::io::{StagedDir, write_atomic};
use pruneview::prune::alloc::Method;
use pruneview::prune::{Curves, Ranking, export, rank};
use pruneview::report::{self, ReportInputs, ReportSettings};
use pruneview::session::export::check_outputs;

use pruneview::prune::recover::Stages;

use super::ModelArgs;
use super::args::{CalibArgs, CurveArgs, LambdaArgs};
use super::curves::{compute_curves, write_curves};
use super::data::DatasetArgs;
use super::progress::{cancel_flag, with_progress};
use super::recover::RecoverTuning;

#[derive(Args, Debug)]
pub struct ReportCmd {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Calibration scans: the curves are computed from them (unless `--curves` is given), and
    /// every pruned model's distortion is measured on them.
    #[command(flatten)]
    pub calib: CalibArgs,
    #[command(flatten)]
    pub curves: CurveArgs,
    /// Use these curves (magnitude ranking) instead of computing them.
    #[arg(long = "curves", value_name = "curves.json")]
    pub curves_file: Option<PathBuf>,
    /// The labelled set to evaluate on; keep it apart from the calibration scans.
    #[command(flatten)]
    pub data: DatasetArgs,
    /// FLOPs kept (fractions; 1 is the dense model).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "1,0.5,0.35,0.25,0.2,0.15"
    )]
    pub keeps: Vec<f64>,
    /// Allocation methods to compare.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "dp,uniform,global,lamp,erk"
    )]
    pub methods: Vec<String>,
    #[command(flatten)]
    pub lambdas: LambdaArgs,
    /// Budget bins of the DP.
    #[arg(long, default_value_t = pruneview::prune::alloc::DEFAULT_BINS, value_parser = super::args::parse_bins)]
    pub bins: usize,
    /// The DP's layer cap (see `solve --layer-cap`).
    #[arg(long, value_name = "S", default_value_t = pruneview::prune::alloc::DEFAULT_LAYER_CAP, value_parser = super::args::parse_layer_cap)]
    pub layer_cap: f64,
    /// Also evaluate every pruned model recovered with these stages (see `prune
    /// --recover`; repeat for several, e.g. `--recover stats --recover all`). The mask-only
    /// models are always evaluated.
    #[arg(long = "recover", value_name = "STAGES")]
    pub recover: Vec<Stages>,
    #[command(flatten)]
    pub tuning: RecoverTuning,
    /// Folder for report.md, report.json, ap_vs_flops.png (and curves.json when computed).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

pub fn report_cmd(a: ReportCmd) -> Result<()> {
    let methods: Vec<Method> = a
        .methods
        .iter()
        .map(|m| m.parse())
        .collect::<Result<_, _>>()?;
    let cancel = cancel_flag();
    let det = a.model.load()?;
    let (files, scans) = a.calib.load(&det)?;
    let mut inputs = a.model.inputs();
    inputs.extend(files.iter().map(PathBuf::as_path));
    inputs.extend(a.curves_file.as_deref());
    let names = ["report.md", "report.json", "ap_vs_flops.png", "curves.json"];
    let outputs: Vec<PathBuf> = names.iter().map(|n| a.out.join(n)).collect();
    check_outputs(
        &outputs.iter().map(PathBuf::as_path).collect::<Vec<_>>(),
        &inputs,
    )?;

    // Curves: read, or computed here (and written beside the report).
    let (curves, orders, computed) = match &a.curves_file {
        Some(p) => {
            let c = Curves::load(p)?;
            let sha = export::sha256_file(&a.model.weights)?;
            if c.model.weights_sha256 != sha {
                bail!(
                    "{}: computed for weights with sha256 {}, but {} has {sha}",
                    p.display(),
                    c.model.weights_sha256,
                    a.model.weights.display()
                );
            }
            if c.calibration.ranking != Ranking::Magnitude {
                bail!(
                    "{}: saliency-ranked curves need their masks' order; let the report compute \
                     the curves (drop --curves) or use magnitude curves",
                    p.display()
                );
            }
            let orders = det
                .units()
                .iter()
                .map(|u| rank::magnitude_order(&u.weight.data))
                .collect();
            (c, orders, None)
        }
        None => {
            let p = compute_curves(
                &det,
                &a.model.weights,
                &scans,
                &a.curves,
                a.lambdas.get(),
                &cancel,
            )?;
            (p.curves.clone(), p.orders.clone(), Some(p))
        }
    };

    let image = a
        .calib
        .scan_args
        .image_size
        .unwrap_or(pruneview::session::scans::KITTI_IMAGE);
    let ids = a.data.frame_ids()?;
    let eval = with_progress("eval set", &cancel, |ctl| {
        EvalSet::load(
            &a.data.dataset,
            &ids,
            image,
            &det.config.data.used_features,
            ctl,
        )
    })?;
    let t = std::time::Instant::now();
    let mut recoveries = vec![Stages::NONE];
    recoveries.extend(a.recover.iter().copied().filter(|s| !s.is_none()));
    recoveries.dedup();
    let settings = ReportSettings {
        keeps: a.keeps.clone(),
        methods,
        lambdas: a.lambdas.get(),
        bins: a.bins,
        layer_cap: a.layer_cap,
        recoveries,
        recover: a.tuning.settings(
            Stages::ALL,
            curves.calibration.distortion,
            a.lambdas.get(),
            a.curves.seed,
        )?,
    };
    let inputs_run = ReportInputs {
        det: &det,
        curves: &curves,
        orders: &orders,
        scans: &scans,
        eval: &eval,
    };
    let rep = with_progress("report", &cancel, |ctl| {
        report::run(&inputs_run, &settings, ctl)
    })?;
    eprintln!(
        "report: {} cells in {:.1} s",
        rep.rows.len(),
        t.elapsed().as_secs_f64()
    );

    let staged = StagedDir::begin(&a.out)?;
    if let Some(p) = &computed {
        write_curves(&staged.path("curves.json"), p, &det, &inputs)?;
    }
    write_report(&rep, staged, &a.out, &inputs)
}

#[derive(Args, Debug)]
pub struct MergeReportsCmd {
    /// `report.json` files of `pruneview report`.
    #[arg(required = true, num_args = 1.., value_name = "report.json")]
    pub reports: Vec<PathBuf>,
    /// Folder for the merged report.md, report.json and ap_vs_flops.png.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

pub fn merge_reports_cmd(a: MergeReportsCmd) -> Result<()> {
    let inputs: Vec<&Path> = a.reports.iter().map(PathBuf::as_path).collect();
    check_outputs(
        &[
            &a.out.join("report.md"),
            &a.out.join("report.json"),
            &a.out.join("ap_vs_flops.png"),
        ],
        &inputs,
    )?;
    let parts = a
        .reports
        .iter()
        .map(|p| Ok((p.display().to_string(), report::PruningReport::load(p)?)))
        .collect::<Result<Vec<_>, report::MergeError>>()?;
    let rep = report::PruningReport::merge(&parts)?;
    write_report(&rep, StagedDir::begin(&a.out)?, &a.out, &inputs)
}

/// `report.md`, `report.json` and `ap_vs_flops.png` into `out` (staged, so the folder gets
/// all of them or none), and the tables on stdout.
fn write_report(
    rep: &report::PruningReport,
    staged: StagedDir,
    out: &Path,
    inputs: &[&Path],
) -> Result<()> {
    let md = format!("# Pruning without fine-tuning\n\n{}", rep.to_markdown());
    write_atomic(&staged.path("report.md"), md.as_bytes(), inputs)?;
    write_atomic(
        &staged.path("report.json"),
        rep.to_json().as_bytes(),
        inputs,
    )?;
    write_plot(rep, &staged.path("ap_vs_flops.png"))?;
    staged.commit()?;
    outln!("{}", rep.to_markdown())?;
    eprintln!("{}: report.md, report.json, ap_vs_flops.png", out.display());
    Ok(())
}

/// The PNG, drawn to a temporary name and renamed, so a failed draw leaves no half file.
fn write_plot(rep: &report::PruningReport, path: &Path) -> Result<()> {
    let tmp = path.with_extension("tmp.png");
    report::plot::write_png(rep, &tmp).map_err(anyhow::Error::msg)?;
    std::fs::rename(&tmp, path).with_context(|| format!("{}: cannot write", path.display()))?;
    Ok(())
}
