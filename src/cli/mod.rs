//! Command-line subcommands. `pruneview` with no subcommand opens the desktop app.

/// `println!` that returns the write error instead of panicking: `detect ... | head -1`
/// closes the pipe, `> /dev/full` fails the write. `main` exits quietly on a closed pipe.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)
            .map_err(|e| anyhow::Error::new(e).context("cannot write to stdout"))
    }};
}

#[cfg(feature = "gui")]
mod app;
mod data;
mod prune;
mod recover;
mod report;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};

use pruneview::detect::sparse_backbone::{STAGE_NAMES, height_compression};
use pruneview::detect::{
    Detection, Detector, ForwardOutput, FovFilter, PreparedScan, prepare_scan,
};
use pruneview::io::{OutTensor, write_safetensors};
use pruneview::nn::Tensor;
use pruneview::pointcloud::{Calib, ImageSize, ScanFormat};

#[derive(Parser, Debug)]
#[command(
    name = "pruneview",
    version,
    about = "Prune trained LiDAR 3D object detectors (OpenPCDet PointPillars / CenterPoint) after training",
    long_about = "pruneview runs OpenPCDet-compatible LiDAR detectors on the CPU and finds which \
weights can be removed after training without losing accuracy (DM3D).\n\n\
Models are an OpenPCDet YAML config plus a safetensors export of the checkpoint's \
`model_state` (or one safetensors file with the config in its metadata).\n\n\
With no subcommand, pruneview opens the desktop app (the last files, or the bundled demo).",
    after_help = "Examples:\n  pruneview detect --config cfgs/kitti_models/pointpillar.yaml \\\n      --weights pointpillar.safetensors --scan 000008.bin \\\n      --fov-calib calib/000008.txt --image-size 375x1242\n  pruneview bench --config pointpillar.yaml --weights pointpillar.safetensors --scan 000008.bin"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the detector on one scan and print its boxes.
    #[command(
        after_help = "Examples:\n  pruneview detect --config pointpillar.yaml --weights pp.safetensors --scan 000008.bin \\\n      --fov-calib 000008.txt --image-size 375x1242\n  pruneview detect --weights demo.safetensors --scan scan.pcd --json\n  pruneview detect --config cp.yaml --weights cp.safetensors --scan x.pcd.bin --dump out.safetensors"
    )]
    Detect(DetectArgs),
    /// Time each stage of the pipeline on one scan and report GFLOP/s.
    #[command(
        after_help = "Example:\n  pruneview bench --config pointpillar.yaml --weights pp.safetensors --scan 000008.bin \\\n      --fov-calib 000008.txt --image-size 375x1242 --runs 10"
    )]
    Bench(BenchArgs),
    /// Gradients of sum(probe * raw outputs) w.r.t. every weight and bias (a VJP).
    #[command(
        after_help = "Example:\n  pruneview grad --config pointpillar.yaml --weights pp.safetensors --scan 000008.bin \\\n      --fov-calib 000008.txt --image-size 375x1242 --probe golden.safetensors --dump grads.safetensors"
    )]
    Grad(prune::GradArgs),
    /// Per-layer distortion-vs-sparsity curves from Gauss-Newton probes (optionally measured).
    #[command(
        after_help = "Examples:\n  pruneview curves --config pointpillar.yaml --weights pp.safetensors \\\n      --scans kitti/training/velodyne --fov-calib kitti/training/calib --image-size 375x1242 \\\n      --probes 4 --out curves.json\n  pruneview curves --weights demo.safetensors --scans scans/ --measured all --out curves.json"
    )]
    Curves(prune::CurvesCmd),
    /// Merge curve shards computed on disjoint scan subsets (same model and settings).
    #[command(
        after_help = "Example:\n  pruneview curves ... --scans a/ --out norm.json\n  pruneview curves ... --scans a/ --norm-from norm.json --out a.json\n  pruneview curves ... --scans b/ --norm-from norm.json --out b.json\n  pruneview merge a.json b.json --out all.json"
    )]
    Merge(prune::MergeArgs),
    /// Choose per-layer sparsities under a FLOPs or params budget.
    #[command(
        after_help = "Examples:\n  pruneview solve --curves curves.json --flops-keep 0.25 --out alloc.json\n  pruneview solve --curves curves.json --flops-keep 0.25 --method lamp --weights pp.safetensors --out lamp.json"
    )]
    Solve(prune::SolveCmd),
    /// Write masks, pruned weights and a CSV report for an allocation.
    #[command(
        after_help = "Example:\n  pruneview export --weights pp.safetensors --alloc alloc.json --masks masks.safetensors \\\n      --pruned pruned.safetensors --csv report.csv --curves curves.json"
    )]
    Export(prune::ExportCmd),
    /// curves + solve + export in one run.
    #[command(
        after_help = "Example:\n  pruneview prune --config pointpillar.yaml --weights pp.safetensors --scans velodyne/ \\\n      --fov-calib calib/ --image-size 375x1242 --flops-keep 0.3 --out pruned-30/"
    )]
    Prune(prune::PruneCmd),
    /// Recover a pruned model (masks made elsewhere): statistics repair, weight
    /// reconstruction and label-free distillation on unlabelled calibration scans.
    #[command(
        after_help = "Example:\n  pruneview recover --weights pp.safetensors --masks masks.safetensors \\\n      --scans calib/velodyne --recover all --out recovered.safetensors"
    )]
    Recover(recover::RecoverCmd),
    /// Write synthetic KITTI-layout LiDAR scenes (ray-cast HDL-64E, labelled).
    #[command(after_help = "Example:\n  pruneview synth --out synth/ --count 200 --seed 1")]
    Synth(data::SynthArgs),
    /// Run a model (optionally with masks) on a KITTI-layout folder and print KITTI AP.
    #[command(
        after_help = "Examples:\n  pruneview eval --weights demo.safetensors --dataset synth/\n  pruneview eval --config pointpillar.yaml --weights pp.safetensors --masks masks.safetensors \\\n      --dataset kitti/training --split ImageSets/val.txt --json"
    )]
    Eval(data::EvalArgs),
    /// AP of pruned models (no fine-tuning) for several FLOPs budgets and methods: a markdown
    /// table, JSON and a PNG plot.
    #[command(
        after_help = "Example:\n  pruneview report --weights assets/demo_pointpillar.safetensors \\\n      --scans calib/velodyne --fov-calib calib/calib --image-size 375x1242 \\\n      --dataset heldout/ --out docs/report/"
    )]
    Report(report::ReportCmd),
    /// One report (tables, JSON, plot) from `report.json` files of the same model, curves and
    /// evaluation set run over different budgets, methods or recoveries.
    #[command(
        name = "merge-reports",
        after_help = "Example:\n  pruneview report ... --curves c.json --keeps 1,0.5 --out r50/\n  pruneview report ... --curves c.json --keeps 1,0.25 --out r25/\n  pruneview merge-reports r50/report.json r25/report.json --out all/"
    )]
    MergeReports(report::MergeReportsCmd),
    /// Open the desktop app on a model and calibration scans (no subcommand: the last files,
    /// or the bundled demo).
    #[command(
        after_help = "Examples:\n  pruneview open --weights assets/demo_pointpillar.safetensors --scans assets/scans/synthetic\n  pruneview open --config pointpillar.yaml --weights pp.safetensors --scans kitti/training"
    )]
    #[cfg(feature = "gui")]
    Open(app::OpenArgs),
    /// Render the app's main views headlessly (software Vulkan works) to PNG files.
    #[command(after_help = "Example:\n  pruneview screenshots --out screenshots/")]
    #[cfg(feature = "gui")]
    Screenshots(app::ScreenshotsArgs),
}

/// Which model to load.
#[derive(Args, Debug, Clone)]
pub struct ModelArgs {
    /// OpenPCDet model YAML (`_BASE_CONFIG_` resolved against the folder holding `cfgs/`).
    /// Optional when the weights carry `pruneview.config` in their metadata.
    #[arg(long, value_name = "C.yaml")]
    pub config: Option<PathBuf>,
    /// Weights: safetensors with OpenPCDet `state_dict` names (f32, f16 or bf16).
    #[arg(long, value_name = "W.safetensors")]
    pub weights: PathBuf,
}

impl ModelArgs {
    pub fn load(&self) -> Result<Detector> {
        let det = Detector::load(self.config.as_deref(), &self.weights)?;
        if !det.unused_keys.is_empty() {
            let shown: Vec<&str> = det.unused_keys.iter().take(8).map(String::as_str).collect();
            eprintln!(
                "warning: {}: {} tensors are not used by the model: {}{}",
                self.weights.display(),
                det.unused_keys.len(),
                shown.join(", "),
                if det.unused_keys.len() > 8 {
                    ", ..."
                } else {
                    ""
                }
            );
        }
        Ok(det)
    }

    pub fn inputs(&self) -> Vec<&Path> {
        let mut v = vec![self.weights.as_path()];
        v.extend(self.config.as_deref());
        v
    }
}

/// How to read a scan.
#[derive(Args, Debug, Clone)]
pub struct ScanArgs {
    /// Scan format; by default from the extension (.bin kitti, .pcd.bin nuscenes, .pcd).
    #[arg(long, value_parser = parse_format)]
    pub format: Option<ScanFormat>,
    /// KITTI calib file: keep only points inside camera 2's field of view (as OpenPCDet's
    /// FOV_POINTS_ONLY). Needs --image-size. With several scans, a folder holding
    /// `<scan stem>.txt` for each (KITTI layout).
    #[arg(long, value_name = "calib.txt", requires = "image_size")]
    pub fov_calib: Option<PathBuf>,
    /// Image size HxW for the FOV filter and KITTI output, e.g. 375x1242.
    #[arg(long, value_name = "HxW", value_parser = parse_image_size)]
    pub image_size: Option<ImageSize>,
}

impl ScanArgs {
    pub fn fov(&self) -> Option<FovFilter> {
        Some(FovFilter {
            calib: self.fov_calib.clone()?,
            image: self.image_size?,
        })
    }

    pub fn prepare(&self, det: &Detector, scan: &Path) -> Result<PreparedScan> {
        let prepared = prepare_scan(
            scan,
            self.format,
            self.fov().as_ref(),
            &det.config.data.used_features,
        )?;
        let report = prepared.scan.report();
        if report.non_finite_dropped > 0 {
            eprintln!(
                "warning: {}: dropped {} points with NaN or infinite values",
                scan.display(),
                report.non_finite_dropped
            );
        }
        if det.config.data.fov_points_only && self.fov_calib.is_none() {
            eprintln!(
                "note: the config sets FOV_POINTS_ONLY; pass --fov-calib and --image-size to reproduce OpenPCDet's evaluation input"
            );
        }
        Ok(prepared)
    }
}

fn parse_format(s: &str) -> Result<ScanFormat, String> {
    s.parse::<ScanFormat>().map_err(|e| e.to_string())
}

pub(crate) fn parse_image_size(s: &str) -> Result<ImageSize, String> {
    s.parse::<ImageSize>().map_err(|e| e.to_string())
}

#[derive(Args, Debug)]
pub struct DetectArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The scan to run on.
    #[arg(long, value_name = "S.bin")]
    pub scan: PathBuf,
    #[command(flatten)]
    pub scan_args: ScanArgs,
    /// Print JSON instead of text lines.
    #[arg(long)]
    pub json: bool,
    /// Write voxels, pillar features, raw head outputs (`raw.*`) and the final boxes
    /// (`pred_boxes`, `pred_scores`, `pred_labels`) to a safetensors file, with the same
    /// names and layouts as OpenPCDet reference dumps.
    #[arg(long, value_name = "OUT.safetensors")]
    pub dump: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[arg(long, value_name = "S.bin")]
    pub scan: PathBuf,
    #[command(flatten)]
    pub scan_args: ScanArgs,
    /// Timed runs (after one warm-up run); the median is reported.
    #[arg(long, default_value_t = 10)]
    pub runs: usize,
}

/// The error and its causes, `: `-joined, each cause said once: our error types already put
/// their source in their message ("cannot read x: No such file"), which `{:#}` would repeat.
pub fn error_message(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !out.contains(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
    }
    out
}

/// Whether `e` is a write to a pipe whose reader has gone.
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        #[cfg(feature = "gui")]
        None => app::open_app(None),
        #[cfg(not(feature = "gui"))]
        None => anyhow::bail!(
            "this pruneview was built without the desktop app (the `gui` feature): name a subcommand (see --help)"
        ),
        #[cfg(feature = "gui")]
        Some(Command::Open(a)) => app::open(a),
        #[cfg(feature = "gui")]
        Some(Command::Screenshots(a)) => app::screenshots(a),
        Some(Command::Detect(a)) => detect(a),
        Some(Command::Bench(a)) => bench(a),
        Some(Command::Grad(a)) => prune::grad(a),
        Some(Command::Curves(a)) => prune::curves(a),
        Some(Command::Merge(a)) => prune::merge(a),
        Some(Command::Solve(a)) => prune::solve(a),
        Some(Command::Export(a)) => prune::export_cmd(a),
        Some(Command::Prune(a)) => prune::prune(a),
        Some(Command::Recover(a)) => recover::recover_cmd(a),
        Some(Command::Synth(a)) => data::synth(a),
        Some(Command::Eval(a)) => data::eval_cmd(a),
        Some(Command::Report(a)) => report::report_cmd(a),
        Some(Command::MergeReports(a)) => report::merge_reports_cmd(a),
    }
}

fn detect(a: DetectArgs) -> Result<()> {
    let mut inputs = a.model.inputs();
    inputs.push(&a.scan);
    if let Some(path) = &a.dump {
        pruneview::session::export::check_outputs(&[path], &inputs)?;
    }
    let det = a.model.load()?;
    let scan = a.scan_args.prepare(&det, &a.scan)?;
    let out = det.forward(&scan.points)?;
    let dets = det.decode(&out.raw);
    if let Some(path) = &a.dump {
        dump(path, &out, &dets, &inputs)?;
    }
    let names = &det.config.class_names;
    let class = |d: &Detection| names.get(d.label - 1).map(String::as_str).unwrap_or("?");
    if a.json {
        let list: Vec<_> = dets
            .iter()
            .map(|d| {
                serde_json::json!({
                    "class": class(d), "label": d.label, "score": d.score,
                    "box": d.bbox, "velocity": d.velocity,
                })
            })
            .collect();
        let doc = serde_json::json!({
            "scan": a.scan, "points": scan.len(), out.bev_sources().1: out.bev_sources().0,
            "frame": "lidar", "box_format": "[x, y, z, dx, dy, dz, heading], z at the box centre",
            "detections": list,
        });
        outln!("{}", serde_json::to_string_pretty(&doc)?)?;
        return Ok(());
    }
    match (&a.scan_args.fov_calib, a.scan_args.image_size) {
        (Some(calib_path), Some(image)) => {
            // KITTI result-file lines in the camera frame.
            let calib = Calib::load(calib_path)?;
            for d in &dets {
                let obj = calib.lidar_box_to_prediction(&d.bbox, class(d), d.score, image);
                outln!("{}", obj.to_kitti_line())?;
            }
        }
        _ => {
            outln!("# class x y z dx dy dz heading score (LiDAR frame, z at the box centre)")?;
            for d in &dets {
                let b = d.bbox;
                outln!(
                    "{} {:.4} {:.4} {:.4} {:.4} {:.4} {:.4} {:.4} {:.4}",
                    class(d),
                    b[0],
                    b[1],
                    b[2],
                    b[3],
                    b[4],
                    b[5],
                    b[6],
                    d.score
                )?;
            }
        }
    }
    let (sources, kind) = out.bev_sources();
    eprintln!(
        "{}: {} points, {sources} {kind}, {} boxes",
        a.scan.display(),
        scan.len(),
        dets.len()
    );
    if let Some(v) = out.voxels.as_ref().filter(|v| v.stats.over_max_voxels > 0) {
        eprintln!(
            "note: {} points would have opened a voxel past MAX_NUMBER_OF_VOXELS ({}) and were \
             dropped, as OpenPCDet does",
            v.stats.over_max_voxels,
            v.len()
        );
    }
    Ok(())
}

/// Writes a reference-style dump: same tensor names and layouts as OpenPCDet golden files.
fn dump(path: &Path, out: &ForwardOutput, dets: &[Detection], inputs: &[&Path]) -> Result<()> {
    let mut t = Vec::new();
    if let Some(v) = &out.voxels {
        let p = v.len();
        t.push(OutTensor::f32(
            "voxels",
            &[p, v.max_points, v.num_features],
            &v.voxels,
        ));
        let n: Vec<f32> = v.num_points.iter().map(|&x| x as f32).collect();
        t.push(OutTensor::f32("voxel_num_points", &[p], &n));
        let c: Vec<f32> = (0..p)
            .flat_map(|i| {
                let [z, y, x] = v.coord(i);
                [0.0, z as f32, y as f32, x as f32]
            })
            .collect();
        t.push(OutTensor::f32("voxel_coords", &[p, 4], &c));
    }
    match &out.sparse {
        None => {
            let pf = &out.pillars;
            t.push(OutTensor::f32(
                "pillar_features",
                &[pf.len(), pf.channels],
                &pf.features,
            ));
        }
        Some(sp) => {
            let p = out.voxels.as_ref().map_or(0, |v| v.len());
            let c = sp.voxel_features.len().checked_div(p).unwrap_or(0);
            t.push(OutTensor::f32(
                "voxel_features",
                &[p, c],
                &sp.voxel_features,
            ));
            // Rows sorted by (batch, z, y, x), the fixtures' canonical form.
            for (name, map) in STAGE_NAMES.iter().zip(&sp.backbone.stages) {
                let mut order: Vec<usize> = (0..map.sites.len()).collect();
                order.sort_by_key(|&i| map.sites.coords[i]);
                let idx: Vec<i64> = order
                    .iter()
                    .flat_map(|&i| {
                        let [z, y, x] = map.sites.coords[i];
                        [0, i64::from(z), i64::from(y), i64::from(x)]
                    })
                    .collect();
                let c = map.channels;
                let f: Vec<f32> = order
                    .iter()
                    .flat_map(|&i| map.features[i * c..(i + 1) * c].iter().copied())
                    .collect();
                t.push(OutTensor::i64(
                    format!("sparse.{name}.indices"),
                    &[order.len(), 4],
                    &idx,
                ));
                t.push(OutTensor::f32(
                    format!("sparse.{name}.features"),
                    &[order.len(), c],
                    &f,
                ));
            }
            if let Some(enc) = sp.backbone.encoded() {
                let (sub, shape) = sub8(&height_compression(enc));
                t.push(OutTensor::f32("spatial_features.sub8", &shape, &sub));
            }
        }
    }
    let (sub, shape) = sub8(&out.bev_features);
    t.push(OutTensor::f32("spatial_features_2d.sub8", &shape, &sub));
    for (name, tensor) in &out.raw.tensors {
        t.push(OutTensor::f32(
            format!("raw.{name}"),
            &tensor.shape,
            &tensor.data,
        ));
    }
    let dim = if dets.iter().any(|d| d.velocity.is_some()) {
        9
    } else {
        7
    };
    let boxes: Vec<f32> = dets
        .iter()
        .flat_map(|d| {
            let mut b = d.bbox.to_vec();
            if dim == 9 {
                b.extend(d.velocity.unwrap_or([0.0, 0.0]));
            }
            b
        })
        .collect();
    t.push(OutTensor::f32("pred_boxes", &[dets.len(), dim], &boxes));
    let scores: Vec<f32> = dets.iter().map(|d| d.score).collect();
    t.push(OutTensor::f32("pred_scores", &[dets.len()], &scores));
    let labels: Vec<i64> = dets.iter().map(|d| d.label as i64).collect();
    t.push(OutTensor::i64("pred_labels", &[dets.len()], &labels));
    let meta = HashMap::from([("producer".to_string(), "pruneview detect".to_string())]);
    write_safetensors(path, &t, Some(meta), inputs).with_context(|| "writing --dump")?;
    Ok(())
}

/// A `[C, H, W]` map subsampled `[:, ::8, ::8]` as the fixtures store it, shape `[1, C, h, w]`.
fn sub8(map: &Tensor) -> (Vec<f32>, [usize; 4]) {
    let (c, h, w) = (map.shape[0], map.shape[1], map.shape[2]);
    let (hs, ws) = (h.div_ceil(8), w.div_ceil(8));
    let mut sub = Vec::with_capacity(c * hs * ws);
    for ch in 0..c {
        for y in (0..h).step_by(8) {
            for x in (0..w).step_by(8) {
                sub.push(map.data[(ch * h + y) * w + x]);
            }
        }
    }
    (sub, [1, c, hs, ws])
}

fn bench(a: BenchArgs) -> Result<()> {
    if a.runs == 0 {
        bail!("--runs must be at least 1");
    }
    let det = a.model.load()?;
    let scan = a.scan_args.prepare(&det, &a.scan)?;
    // Warm-up: first-touch page faults and rayon start-up are not part of steady state.
    let warm = det.forward(&scan.points)?;
    let gflops = det.conv_flops(&warm) / 1e9;
    let mut runs = Vec::with_capacity(a.runs);
    let mut sparse_runs = Vec::new();
    for _ in 0..a.runs {
        let mut times = pruneview::detect::StageTimes::default();
        let t0 = Instant::now();
        let out = det.forward_timed(&scan.points, &mut times)?;
        let t = Instant::now();
        let dets = det.decode(&out.raw);
        times.stages.push(("decode+nms", t.elapsed()));
        let total = t0.elapsed();
        std::hint::black_box(dets);
        runs.push((times, total));
        if let Some(s) = out.sparse {
            sparse_runs.push(s.backbone.units);
        }
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (sources, kind) = warm.bev_sources();
    outln!(
        "{}: {} points, {sources} {kind}, {:.2} GFLOPs (conv/linear, 2 x MACs)",
        a.scan.display(),
        scan.len(),
        gflops
    )?;
    outln!("{:<12} {:>10}", "stage", "median ms")?;
    let stages: Vec<&str> = runs[0].0.stages.iter().map(|(n, _)| *n).collect();
    for (i, name) in stages.iter().enumerate() {
        let ms = median(
            runs.iter()
                .map(|(t, _)| t.stages[i].1.as_secs_f64() * 1e3)
                .collect(),
        );
        outln!("{name:<12} {ms:>10.1}")?;
    }
    let total = median(runs.iter().map(|(_, t)| t.as_secs_f64()).collect());
    let network = median(
        runs.iter()
            .map(|(t, _)| {
                t.stages
                    .iter()
                    .filter(|(n, _)| matches!(*n, "vfe" | "backbone_3d" | "backbone" | "head"))
                    .map(|(_, d)| d.as_secs_f64())
                    .sum()
            })
            .collect(),
    );
    outln!("{:<12} {:>10.1}", "total", total * 1e3)?;
    if let (Some(first), pruneview::detect::Encoder::Voxels { backbone, .. }) =
        (sparse_runs.first(), &det.encoder)
    {
        outln!(
            "{:<28} {:>8} {:>9} {:>8} {:>10} {:>8}",
            "sparse conv",
            "sites",
            "pairs",
            "GFLOPs",
            "median ms",
            "GFLOP/s"
        )?;
        // The encoder's units come first in the unit order.
        let flops = det.unit_flops(&pruneview::detect::ScanCost::of(&warm));
        for (i, (u, run)) in backbone.units().iter().zip(first).enumerate() {
            let ms = median(
                sparse_runs
                    .iter()
                    .map(|r| r[i].time.as_secs_f64() * 1e3)
                    .collect(),
            );
            let gf = flops.get(i).copied().unwrap_or(0.0) / 1e9;
            outln!(
                "{:<28} {:>8} {:>9} {:>8.3} {:>10.2} {:>8.1}",
                u.prefix,
                run.sites,
                run.pairs,
                gf,
                ms,
                gf / (ms / 1e3)
            )?;
        }
    }
    outln!(
        "effective: {:.1} GFLOP/s over the whole pipeline, {:.1} GFLOP/s in the network stages ({} runs, {} threads)",
        gflops / total,
        gflops / network,
        a.runs,
        rayon::current_num_threads()
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    /// clap checks argument definitions (unique names, valid relations) only when a
    /// subcommand is parsed; this checks them all at once.
    #[test]
    fn every_subcommand_is_well_formed() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }

    #[test]
    fn an_os_error_is_said_once() {
        let io = std::io::Error::from(std::io::ErrorKind::NotFound);
        let e = anyhow::Error::new(pruneview::pointcloud::ScanError::Io {
            path: "x.bin".into(),
            source: io,
        })
        .context("reading the scans");
        let msg = super::error_message(&e);
        assert_eq!(msg.matches("entity not found").count(), 1, "{msg}");
        assert!(
            msg.starts_with("reading the scans: cannot read scan x.bin"),
            "{msg}"
        );
    }
}
