//! Synthetic LiDAR: scans per second of the HDL-64E ray caster (target >= 20 on 2 cores),
//! and scene generation plus labelling.

// Benchmark code: a failed unwrap stops the benchmark (the workspace warns of them elsewhere).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{Criterion, criterion_group, criterion_main};
use pruneview::synth::{IMAGE, Lidar, generate_scene, render, scene_labels, standard_calib};

fn synth(c: &mut Criterion) {
    let lidar = Lidar::hdl64e();
    let calib = standard_calib();
    let scene = generate_scene(1, 0);
    let mut g = c.benchmark_group("synth");
    g.sample_size(30);
    g.bench_function("render_hdl64e_0.17deg", |b| {
        b.iter(|| render(&scene, &lidar))
    });
    g.bench_function("generate_scene", |b| b.iter(|| generate_scene(1, 0)));
    g.bench_function("scene_labels", |b| {
        b.iter(|| scene_labels(&scene, &calib, IMAGE))
    });
    g.finish();
}

criterion_group!(benches, synth);
criterion_main!(benches);
