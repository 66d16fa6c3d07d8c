//! Per-frame cost of the 3D view (kiss3d offscreen on an egui_wgpu device) at 120k points plus
//! about 20 boxes, 1280x720: the number behind "the view stays interactive on a full scan".
//!
//! The cloud is a synthetic full HDL-64E revolution (the bundled KITTI 000008 scan is a
//! camera-view crop of ~17k points), repeated or cut to exactly 120,000 points. Each iteration
//! moves the camera a little (so the view really renders) and waits for the GPU, so the time is
//! CPU encode + GPU execution, without read-back. The adapter is printed: on a machine without a
//! GPU it is lavapipe (software Vulkan).

// Benchmark code: a failed unwrap stops the benchmark (the workspace warns of them elsewhere).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use eframe::{egui, egui_wgpu, wgpu};
use egui_kittest::wgpu::{create_render_state, default_wgpu_setup};
use pruneview::app::view3d::{Box3d, ColorBy, Projection, View3d};
use pruneview::synth::{Lidar, generate_scene, render};

const POINTS: usize = 120_000;

fn cloud() -> (Vec<f32>, Vec<Box3d>) {
    let scene = generate_scene(1, 0);
    let scan = render(&scene, &Lidar::hdl64e());
    assert!(!scan.is_empty(), "synthetic scan is empty");
    let points: Vec<f32> = scan.iter().copied().cycle().take(POINTS * 4).collect();
    let mut boxes: Vec<Box3d> = scene
        .objects
        .iter()
        .map(|o| Box3d {
            bbox: o.lidar_box,
            color: egui::Color32::from_rgb(40, 220, 90),
            label: format!("{:?} 0.90", o.class),
        })
        .collect();
    // Pad to 20 boxes with a row of parked cars.
    let mut i = 0;
    while boxes.len() < 20 {
        boxes.push(Box3d {
            bbox: [8.0 + 5.0 * i as f32, -6.0, -0.9, 4.0, 1.7, 1.5, 0.1],
            color: egui::Color32::from_rgb(250, 80, 60),
            label: "Car 0.50".into(),
        });
        i += 1;
    }
    (points, boxes)
}

fn view3d(c: &mut Criterion) {
    let rs = create_render_state(
        default_wgpu_setup(),
        egui_wgpu::RendererOptions::PREDICTABLE,
    );
    let info = rs.adapter.get_info();
    println!(
        "view3d bench adapter: {} ({:?}, {:?})",
        info.name, info.backend, info.device_type
    );
    let (points, boxes) = cloud();
    let mut view = View3d::new();
    view.set_points(Arc::new(points), 4);
    view.set_boxes(boxes);
    let (w, h) = (1280, 720);
    // First frame: kiss3d surface creation and the one-time upload.
    view.render_frame(&rs, w, h).expect("first render");
    let wait = || {
        rs.device
            .poll(wgpu::PollType::wait_indefinitely())
            .expect("device poll");
    };
    wait();

    let mut g = c.benchmark_group("view3d_120k_points_1280x720");
    g.sample_size(20);
    for (name, projection) in [
        ("perspective", Projection::Perspective),
        ("birds_eye", Projection::BirdsEye),
    ] {
        view.set_projection(projection);
        g.bench_function(format!("render_frame_{name}"), |b| {
            b.iter(|| {
                view.set_point_size(if view.point_size() == 2.0 { 2.5 } else { 2.0 });
                view.render_frame(&rs, w, h).expect("render");
                wait();
            })
        });
    }
    view.set_projection(Projection::Perspective);
    g.bench_function("recolor_and_render", |b| {
        b.iter(|| {
            let next = match view.color_by() {
                ColorBy::Height => ColorBy::Intensity,
                ColorBy::Intensity => ColorBy::Height,
            };
            view.set_color_by(next);
            view.render_frame(&rs, w, h).expect("render");
            wait();
        })
    });
    g.bench_function("render_image_readback", |b| {
        b.iter(|| view.render_image(&rs, w, h).expect("render_image"))
    });
    g.finish();
    println!(
        "view3d: {} uploads, {} recolours, {} renders",
        view.upload_count(),
        view.recolor_count(),
        view.render_count()
    );
}

criterion_group!(benches, view3d);
criterion_main!(benches);
