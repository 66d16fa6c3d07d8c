//! Recovery's heavy steps on the bundled demo model (issue target: `prune --recover all` on
//! 64 scans in at most 10 minutes on 2 cores) and on the OpenPCDet reference PointPillars
//! (full-size layers: 256-channel 3x3 convs, Gram matrices of 2304 x 2304).
//!
//! - `distill_scan/*`: what one distillation step costs per scan: a taped forward pass, the
//!   distortion's gradient against the dense outputs and the backward pass.
//! - `weight_grad/*`: a conv's weight gradient (`conv2d_vjp` without `dx`), the kernel that
//!   dominates the backward passes of the curves and of distillation.
//! - `gram/*`: accumulating one scan's im2col Gram matrix `A A^T` of a conv.
//! - `stats/demo`: a whole statistics repair (one unit-by-unit pass over 2 scans).
//! - `reconstruct_head/demo`: a whole reconstruction pass (Gram over 2 scans and every row's
//!   masked least-squares solve) for the demo's three head convs.

// Benchmark code: a failed unwrap stops the benchmark (the workspace warns of them elsewhere).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use criterion::{Criterion, criterion_group, criterion_main};
use pruneview::detect::{Detector, prepare_scan};
use pruneview::nn::gram::Gram;
use pruneview::nn::vjp::conv2d_vjp;
use pruneview::nn::{Conv2dParams, Tensor};
use pruneview::pointcloud::scan::list_scans;
use pruneview::progress::Control;
use pruneview::prune::Weighting;
use pruneview::prune::measure::DenseReference;
use pruneview::prune::probe::{self, CalibScan};
use pruneview::prune::rank;
use pruneview::prune::recover::{self, ReconstructSettings, reconstruct};
use pruneview::rng::Rng;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn demo_scans(det: &Detector, n: usize) -> Vec<CalibScan> {
    list_scans(&root().join("assets/scans/synthetic/velodyne"))
        .expect("scans")
        .into_iter()
        .take(n)
        .map(|p| CalibScan {
            id: p.display().to_string(),
            points: prepare_scan(&p, None, None, &det.config.data.used_features)
                .expect("scan")
                .points,
        })
        .collect()
}

/// Every unit but the first at 50% sparsity by magnitude.
fn half_masks(det: &Detector) -> Vec<Option<Vec<u8>>> {
    det.units()
        .iter()
        .enumerate()
        .map(|(i, u)| (i > 0).then(|| rank::mask(&rank::magnitude_order(&u.weight.data), 0.5)))
        .collect()
}

fn benches(c: &mut Criterion) {
    let ctl = Control::quiet();
    let dense =
        Detector::load(None, &root().join("assets/demo_pointpillar.safetensors")).expect("demo");
    let masks = half_masks(&dense);
    let pruned = recover::masked(&dense, &masks).expect("masked");
    let scans = demo_scans(&dense, 2);
    let norms = probe::output_variances(&dense, &scans, Weighting::Detection, &ctl).unwrap();
    let reference =
        DenseReference::compute(&dense, &scans, Weighting::Detection, norms, &ctl).unwrap();

    let mut g = c.benchmark_group("distill_scan");
    g.sample_size(10);
    g.bench_function("demo", |b| {
        b.iter(|| {
            let taped = pruned.forward_taped(&scans[0].points).unwrap();
            let (_, d_raw) = reference.scan_gradient(0, &taped.out.raw, Default::default());
            pruned.backward(&taped, &d_raw).unwrap()
        })
    });
    g.finish();

    let mut g = c.benchmark_group("weight_grad");
    g.sample_size(10);
    // The demo's stride-2 block-1 entry, a block-1 conv and a block-2 conv.
    for (name, cin, cout, h, w, stride) in [
        ("demo_64to64_s2_248x216", 64, 64, 248, 216, 2),
        ("demo_64to64_124x108", 64, 64, 124, 108, 1),
        ("demo_128to128_62x54", 128, 128, 62, 54, 1),
    ] {
        let x = Tensor::from_vec(&[cin, h, w], Rng::new(2).values(cin * h * w, -0.5, 0.5));
        let wt = Tensor::from_vec(
            &[cout, cin, 3, 3],
            Rng::new(3).values(cout * cin * 9, -0.1, 0.1),
        );
        let (ho, wo) = ((h + 2 - 3) / stride + 1, (w + 2 - 3) / stride + 1);
        let dy = Tensor::from_vec(
            &[cout, ho, wo],
            Rng::new(4).values(cout * ho * wo, -0.5, 0.5),
        );
        let params = Conv2dParams::new(stride, 1);
        g.bench_function(name, |b| {
            b.iter(|| conv2d_vjp(&x, &wt, params, &dy, false).unwrap())
        });
    }
    g.finish();

    let mut g = c.benchmark_group("gram");
    g.sample_size(10);
    // The demo's block-2 conv (128 channels, 27 x 31) and a reference-size 256-channel conv
    // at stride 4 of a 432 x 496 grid (108 x 124).
    for (name, cin, h, w) in [
        ("demo_128ch_27x31", 128, 27, 31),
        ("pp_256ch_108x124", 256, 108, 124),
    ] {
        let a = Tensor::from_vec(&[cin, h, w], Rng::new(1).values(cin * h * w, -0.5, 0.5));
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut gram = Gram::new(cin * 9);
                gram.add_conv(&a, (3, 3), 1, 1, None).unwrap();
                gram
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("stats");
    g.sample_size(10);
    g.bench_function("demo", |b| {
        b.iter(|| {
            let mut work = pruned.clone();
            recover::stats::repair_statistics(&mut work, &scans, 1, &ctl).unwrap()
        })
    });
    g.finish();

    let mut g = c.benchmark_group("reconstruct_head");
    g.sample_size(10);
    let first = dense.units().len() - 3;
    g.bench_function("demo", |b| {
        b.iter(|| {
            let mut work = pruned.clone();
            let cfg = ReconstructSettings::default();
            reconstruct::reconstruct(
                &mut work,
                &dense,
                &masks,
                &scans,
                None,
                first..dense.units().len(),
                &cfg,
                &ctl,
            )
            .unwrap()
        })
    });
    g.finish();
}

criterion_group!(recover_benches, benches);
criterion_main!(recover_benches);
