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
mod args;
mod bench;
mod curves;
mod data;
mod detect;
mod export;
mod grad;
mod progress;
mod prune;
mod recover;
mod report;
mod solve;

pub(crate) use args::{ModelArgs, ScanArgs, parse_image_size};
use bench::BenchArgs;
use detect::DetectArgs;

use anyhow::Result;
use clap::{Parser, Subcommand};

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
    Grad(grad::GradArgs),
    /// Per-layer distortion-vs-sparsity curves from Gauss-Newton probes (optionally measured).
    #[command(
        after_help = "Examples:\n  pruneview curves --config pointpillar.yaml --weights pp.safetensors \\\n      --scans kitti/training/velodyne --fov-calib kitti/training/calib --image-size 375x1242 \\\n      --probes 4 --out curves.json\n  pruneview curves --weights demo.safetensors --scans scans/ --measured all --out curves.json"
    )]
    Curves(curves::CurvesCmd),
    /// Merge curve shards computed on disjoint scan subsets (same model and settings).
    #[command(
        after_help = "Example:\n  pruneview curves ... --scans a/ --out norm.json\n  pruneview curves ... --scans a/ --norm-from norm.json --out a.json\n  pruneview curves ... --scans b/ --norm-from norm.json --out b.json\n  pruneview merge a.json b.json --out all.json"
    )]
    Merge(curves::MergeArgs),
    /// Choose per-layer sparsities under a FLOPs or params budget.
    #[command(
        after_help = "Examples:\n  pruneview solve --curves curves.json --flops-keep 0.25 --out alloc.json\n  pruneview solve --curves curves.json --flops-keep 0.25 --method lamp --weights pp.safetensors --out lamp.json"
    )]
    Solve(solve::SolveCmd),
    /// Write masks, pruned weights and a CSV report for an allocation.
    #[command(
        after_help = "Example:\n  pruneview export --weights pp.safetensors --alloc alloc.json --masks masks.safetensors \\\n      --pruned pruned.safetensors --csv report.csv --curves curves.json"
    )]
    Export(export::ExportCmd),
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
        Some(Command::Detect(a)) => detect::detect(a),
        Some(Command::Bench(a)) => bench::bench(a),
        Some(Command::Grad(a)) => grad::grad(a),
        Some(Command::Curves(a)) => curves::curves(a),
        Some(Command::Merge(a)) => curves::merge(a),
        Some(Command::Solve(a)) => solve::solve(a),
        Some(Command::Export(a)) => export::export_cmd(a),
        Some(Command::Prune(a)) => prune::prune(a),
        Some(Command::Recover(a)) => recover::recover_cmd(a),
        Some(Command::Synth(a)) => data::synth(a),
        Some(Command::Eval(a)) => data::eval_cmd(a),
        Some(Command::Report(a)) => report::report_cmd(a),
        Some(Command::MergeReports(a)) => report::merge_reports_cmd(a),
    }
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
