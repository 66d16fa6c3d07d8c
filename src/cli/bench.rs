//! `pruneview bench`: forward-pass timings per stage and per sparse layer.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Result, bail};
use clap::Args;

use super::{ModelArgs, ScanArgs};

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

pub fn bench(a: BenchArgs) -> Result<()> {
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
