//! Rendering: kiss3d bound to eframe's wgpu device, drawing offscreen into a texture egui shows.
//!
//! # Zero-copy path
//! kiss3d 0.47 renders **offscreen on eframe's own wgpu device**: the first call binds kiss3d's
//! global [`Context`] to the `instance`, `device`, `queue` and `adapter` of the
//! [`egui_wgpu::RenderState`] (format `Rgba8Unorm`, the one egui wants for native textures). The
//! view renders into a kiss3d [`OffscreenSurface`], and the surface's output texture is registered
//! with egui's wgpu renderer (`register_native_texture`, re-pointed with
//! `update_egui_texture_from_wgpu_texture` when it is re-created on resize). egui then samples that
//! texture directly: no GPU to CPU read-back per frame. Only [`View3d::render_image`] (screenshots)
//! reads pixels back.
//!
//! # Thread-local constraint
//! kiss3d's `Context` and its resource caches are `thread_local!` singletons, so all of this
//! must run on one thread: the UI thread. The first view on a thread binds kiss3d to the device
//! it is given; a view that is later handed a *different* device on the same thread shows an error
//! instead of mixing resources from two devices. [`View3d`] holds kiss3d objects (`Rc`), so it is
//! neither `Send` nor `Sync`, which keeps it on its thread at compile time. The binding also
//! takes a permanent reference in kiss3d's window count: kiss3d destroys the `wgpu::Device` when
//! its last window or surface is dropped, and that device belongs to eframe.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;

use eframe::egui;
use eframe::egui_wgpu;
use eframe::wgpu;
use kiss3d::context::Context;
use kiss3d::glamx::Vec3;
use kiss3d::post_processing::Tonemap;
use kiss3d::scene::SceneNode3d;
use kiss3d::window::OffscreenSurface;

use super::cloud::{build_cloud, recolor_cloud};
use super::colors::kiss_color32;
use pruneview_core::boxes::{BOX_EDGES, lidar_box_corners};

use super::{BACKGROUND, View3d};

/// The texture format kiss3d renders into; egui's native textures must be this format.
const OUTPUT_FORMAT: wgpu::TextureFormat = wgpu::TextureFormat::Rgba8Unorm;

/// Largest offscreen side we ask kiss3d for (also bounded by the device limit).
const MAX_SIDE: u32 = 8192;

/// Everything that decides what a rendered frame looks like; a frame equal to the last one is not
/// rendered again.
#[derive(Clone, Copy, Debug, PartialEq)]
struct FrameKey {
    size: (u32, u32),
    proj_view: [f32; 16],
    points_gen: u64,
    colors_gen: u64,
    boxes_gen: u64,
    point_px: f32,
    line_px: f32,
}

/// kiss3d objects of one view. Lives on the UI thread only (kiss3d is thread-local).
pub(super) struct Gpu {
    instance: wgpu::Instance,
    device: wgpu::Device,
    renderer: Arc<egui::mutex::RwLock<egui_wgpu::Renderer>>,
    surface: OffscreenSurface,
    scene: SceneNode3d,
    cloud: Option<SceneNode3d>,
    /// `points_gen` of the uploaded cloud (0 = none).
    uploaded_gen: u64,
    /// `colors_gen` of the uploaded colours.
    colored_gen: u64,
    texture: Option<egui::TextureId>,
    registered_view: Option<wgpu::TextureView>,
    last_key: Option<FrameKey>,
}

impl Drop for Gpu {
    fn drop(&mut self) {
        if let Some(id) = self.texture.take() {
            // A native texture has no egui-owned wgpu texture: this only drops egui's bind group.
            self.renderer.write().free_texture(&id);
        }
    }
}

thread_local! {
    /// Whether this thread holds the permanent kiss3d window-count reference (see module docs).
    static PINNED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether `device` (of `instance`) is the render state's device. wgpu compares devices by id
/// alone, and ids repeat across instances, so the instance (compared by address) is checked too.
fn same_device(
    instance: &wgpu::Instance,
    device: &wgpu::Device,
    rs: &egui_wgpu::RenderState,
) -> bool {
    *instance == rs.instance && *device == rs.device
}

/// Binds kiss3d's thread-local context to eframe's device, once per thread.
fn bind_kiss3d(rs: &egui_wgpu::RenderState) -> Result<(), String> {
    if Context::is_initialized() {
        let ctx = Context::get();
        if !same_device(&ctx.instance, &ctx.device, rs) {
            return Err(
                "kiss3d is already bound to another wgpu device on this thread; the 3D view \
                 must use the same device as the first one"
                    .into(),
            );
        }
        if ctx.surface_format != OUTPUT_FORMAT {
            return Err(format!(
                "kiss3d was initialised with {:?}; egui needs {OUTPUT_FORMAT:?}",
                ctx.surface_format
            ));
        }
    } else {
        Context::init(
            rs.instance.clone(),
            rs.device.clone(),
            rs.queue.clone(),
            rs.adapter.clone(),
            OUTPUT_FORMAT,
        );
    }
    PINNED.with(|p| {
        if !p.get() {
            // Never released: kiss3d would otherwise destroy eframe's device when the last
            // surface is dropped.
            Context::increment_window_count();
            p.set(true);
        }
    });
    Ok(())
}

/// Runs kiss3d work, turning its panics (kiss3d uses `expect` on GPU paths) and wgpu validation
/// or out-of-memory errors into an error message.
fn guarded<T>(device: &wgpu::Device, f: impl FnOnce() -> T) -> Result<T, String> {
    let oom = device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
    let validation = device.push_error_scope(wgpu::ErrorFilter::Validation);
    let result = std::panic::catch_unwind(AssertUnwindSafe(f));
    let validation = kiss3d::pollster::block_on(validation.pop());
    let oom = kiss3d::pollster::block_on(oom.pop());
    let value = result.map_err(|payload| {
        let msg = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_owned());
        format!("kiss3d render failed: {msg}")
    })?;
    if let Some(e) = validation.or(oom) {
        return Err(format!("wgpu error in the 3D view: {e}"));
    }
    Ok(value)
}

impl View3d {
    /// Renders at (w, h) physical pixels if anything changed and returns the egui texture.
    pub(super) fn render_texture(
        &mut self,
        rs: &egui_wgpu::RenderState,
        w: u32,
        h: u32,
        pixel_scale: f32,
    ) -> Result<egui::TextureId, String> {
        self.render_frame_scaled(rs, w, h, pixel_scale, false)?;
        let gpu = self.gpu.as_mut().ok_or("3D view not initialised")?;
        let view = guarded(&rs.device, || gpu.surface.output_view())?;
        if gpu.registered_view.as_ref() != Some(&view) || gpu.texture.is_none() {
            let mut renderer = rs.renderer.write();
            match gpu.texture {
                Some(id) => renderer.update_egui_texture_from_wgpu_texture(
                    &rs.device,
                    &view,
                    wgpu::FilterMode::Linear,
                    id,
                ),
                None => {
                    gpu.texture = Some(renderer.register_native_texture(
                        &rs.device,
                        &view,
                        wgpu::FilterMode::Linear,
                    ));
                }
            }
            gpu.registered_view = Some(view);
        }
        gpu.texture.ok_or_else(|| "no texture".to_owned())
    }

    /// Renders the current scene offscreen at (w, h) without reading it back: the per-frame work
    /// of the view, used by the benchmark (follow it by a `device.poll` to include GPU time).
    pub fn render_frame(
        &mut self,
        render_state: &egui_wgpu::RenderState,
        w: u32,
        h: u32,
    ) -> Result<(), String> {
        self.render_frame_scaled(render_state, w, h, 1.0, true)
    }

    /// Renders the current scene offscreen at (w, h) and returns the image (read back from the
    /// GPU): used by "save screenshot". Point and line sizes are those of a 1x display.
    pub fn render_image(
        &mut self,
        render_state: &egui_wgpu::RenderState,
        w: u32,
        h: u32,
    ) -> Result<image::RgbaImage, String> {
        self.render_frame_scaled(render_state, w, h, 1.0, true)?;
        let gpu = self.gpu.as_mut().ok_or("3D view not initialised")?;
        let rgb = guarded(&render_state.device, || gpu.surface.snap_image())?;
        // The on-screen texture now holds this image; make the next `ui` render its own.
        gpu.last_key = None;
        let (iw, ih) = rgb.dimensions();
        if (iw, ih) != (w, h) {
            return Err(format!("read back {iw}x{ih}, expected {w}x{h}"));
        }
        let mut out = image::RgbaImage::new(w, h);
        for (dst, src) in out.pixels_mut().zip(rgb.pixels()) {
            *dst = image::Rgba([src[0], src[1], src[2], 255]);
        }
        Ok(out)
    }

    /// The shared render path: binds kiss3d, (re)builds the cloud if needed, draws boxes, renders.
    fn render_frame_scaled(
        &mut self,
        rs: &egui_wgpu::RenderState,
        w: u32,
        h: u32,
        pixel_scale: f32,
        force: bool,
    ) -> Result<(), String> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        let max_side = rs.device.limits().max_texture_dimension_2d.min(MAX_SIDE);
        if w == 0 || h == 0 || w > max_side || h > max_side {
            return Err(format!(
                "cannot render {w}x{h} (1..={max_side} pixels a side)"
            ));
        }
        let result = self.render_inner(rs, w, h, pixel_scale, force);
        if let Err(e) = &result {
            // Sticky: a broken device would fail (and log) again every frame.
            self.error = Some(e.clone());
            self.gpu = None;
        }
        result
    }

    fn render_inner(
        &mut self,
        rs: &egui_wgpu::RenderState,
        w: u32,
        h: u32,
        pixel_scale: f32,
        force: bool,
    ) -> Result<(), String> {
        if self
            .gpu
            .as_ref()
            .is_some_and(|g| !same_device(&g.instance, &g.device, rs))
        {
            self.gpu = None;
        }
        if self.gpu.is_none() {
            bind_kiss3d(rs)?;
            let mut surface = guarded(&rs.device, || {
                kiss3d::pollster::block_on(OffscreenSurface::new(w, h))
            })?;
            let bg = BACKGROUND;
            surface.set_background_color(kiss_color32(bg));
            // Colour maps must come out as given: no filmic curve, no bloom, no shadows.
            surface.set_tonemap(Tonemap::None);
            surface.set_bloom_enabled(false);
            surface.set_shadows_enabled(false);
            surface.set_exposure(1.0);
            self.gpu = Some(Gpu {
                instance: rs.instance.clone(),
                device: rs.device.clone(),
                renderer: rs.renderer.clone(),
                surface,
                scene: SceneNode3d::empty(),
                cloud: None,
                uploaded_gen: 0,
                colored_gen: 0,
                texture: None,
                registered_view: None,
                last_key: None,
            });
        }
        let cam = self.camera(w as f32 / h as f32);
        let point_px = (self.point_size * pixel_scale).max(1.0);
        let line_px = (self.line_width * pixel_scale).max(1.0);
        let key = FrameKey {
            size: (w, h),
            proj_view: cam.proj_view.to_cols_array(),
            points_gen: self.points_gen,
            colors_gen: self.colors_gen,
            boxes_gen: self.boxes_gen,
            point_px,
            line_px,
        };
        let Some(gpu) = self.gpu.as_mut() else {
            return Err("3D view not initialised".into());
        };
        if !force && gpu.last_key == Some(key) {
            return Ok(());
        }
        let start = Instant::now();
        let device = rs.device.clone();
        let points = self.points.clone();
        let (nf, points_gen, colors_gen, color_by) = (
            self.num_features,
            self.points_gen,
            self.colors_gen,
            self.color_by,
        );
        let boxes = &self.boxes;
        let mut cam = cam;
        let (uploaded, recolored) = guarded(&device, || {
            let mut uploaded = false;
            let mut recolored = false;
            if gpu.uploaded_gen != points_gen {
                if let Some(mut old) = gpu.cloud.take() {
                    old.remove();
                }
                gpu.scene = SceneNode3d::empty();
                if let Some(points) = points.as_deref() {
                    gpu.cloud = build_cloud(&mut gpu.scene, points, nf, color_by);
                }
                gpu.uploaded_gen = points_gen;
                gpu.colored_gen = colors_gen;
                uploaded = true;
            } else if gpu.colored_gen != colors_gen {
                if let (Some(cloud), Some(points)) = (gpu.cloud.as_mut(), points.as_deref()) {
                    recolor_cloud(cloud, points, nf, color_by);
                    recolored = true;
                }
                gpu.colored_gen = colors_gen;
            }
            if let Some(cloud) = gpu.cloud.as_mut() {
                cloud.set_points_size(point_px, false);
            }
            if gpu.surface.size() != kiss3d::glamx::UVec2::new(w, h) {
                gpu.surface.resize(w, h);
            }
            let window = gpu.surface.window_mut();
            for b in boxes {
                let corners = lidar_box_corners(&b.bbox).map(Vec3::from);
                let color = kiss_color32(b.color);
                for (i, j) in BOX_EDGES {
                    window.draw_line(corners[i], corners[j], color, line_px, false);
                }
            }
            kiss3d::pollster::block_on(gpu.surface.render_3d(&mut gpu.scene, &mut cam));
            (uploaded, recolored)
        })?;
        gpu.last_key = Some(key);
        self.uploads += u64::from(uploaded);
        self.recolors += u64::from(recolored);
        self.renders += 1;
        self.last_render = Some(start.elapsed().as_secs_f64());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view3d::camera::OrbitCam;
    use crate::view3d::{Box3d, ColorBy, NO_WGPU_MESSAGE, Projection};
    use egui_kittest::Harness;
    use egui_kittest::kittest::Queryable;
    use egui_kittest::wgpu::{WgpuTestRenderer, create_render_state, default_wgpu_setup};
    use pruneview_core::pointcloud::scan::Scan;

    const W: u32 = 480;
    const H: u32 = 300;

    /// A fresh egui_wgpu render state on the software Vulkan adapter (lavapipe), as in CI.
    fn render_state() -> egui_wgpu::RenderState {
        let rs = std::panic::catch_unwind(|| {
            create_render_state(
                default_wgpu_setup(),
                egui_wgpu::RendererOptions::PREDICTABLE,
            )
        })
        .unwrap_or_else(|_| {
            panic!(
                "no wgpu adapter for the 3D view tests: install lavapipe \
                 (apt-get install mesa-vulkan-drivers libvulkan1)"
            )
        });
        let info = rs.adapter.get_info();
        eprintln!("adapter: {} ({:?})", info.name, info.backend);
        rs
    }

    fn kitti_scan() -> (Arc<Vec<f32>>, usize) {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../assets/scans/kitti/velodyne/000008.bin"
        );
        let scan = Scan::load(path).expect("load the KITTI 000008 scan");
        assert!(scan.points().len() > 10_000);
        (Arc::new(scan.points().to_vec()), scan.num_features())
    }

    fn view_with_scan() -> View3d {
        let (points, nf) = kitti_scan();
        let mut v = View3d::new();
        v.set_points(points, nf);
        v
    }

    fn background() -> [u8; 3] {
        [BACKGROUND.r(), BACKGROUND.g(), BACKGROUND.b()]
    }

    fn is_background(p: &image::Rgba<u8>) -> bool {
        let bg = background();
        (0..3).all(|k| p[k].abs_diff(bg[k]) <= 2)
    }

    fn foreground(img: &image::RgbaImage, rows: std::ops::Range<u32>) -> usize {
        rows.flat_map(|y| (0..img.width()).map(move |x| (x, y)))
            .filter(|&(x, y)| !is_background(img.get_pixel(x, y)))
            .count()
    }

    fn differing(a: &image::RgbaImage, b: &image::RgbaImage) -> usize {
        assert_eq!(a.dimensions(), b.dimensions());
        a.pixels()
            .zip(b.pixels())
            .filter(|(p, q)| (0..3).any(|k| p[k].abs_diff(q[k]) > 8))
            .count()
    }

    /// A car-sized box 12 m ahead (KITTI 000008 has cars there) and one further left.
    fn test_boxes() -> Vec<Box3d> {
        vec![
            Box3d {
                bbox: [12.0, 0.0, -0.9, 4.0, 1.8, 1.6, 0.0],
                color: egui::Color32::from_rgb(255, 0, 0),
                label: "Car 0.91".into(),
            },
            Box3d {
                bbox: [20.0, 5.0, -0.9, 4.0, 1.8, 1.6, 0.5],
                color: egui::Color32::from_rgb(255, 0, 0),
                label: "Car 0.55".into(),
            },
        ]
    }

    #[test]
    fn ui_without_wgpu_shows_message() {
        let mut harness = Harness::builder()
            .with_size(egui::vec2(400.0, 300.0))
            .build_ui_state(
                |ui, v: &mut View3d| {
                    v.ui(ui, None);
                },
                view_with_scan(),
            );
        harness.run();
        harness.get_by_label(NO_WGPU_MESSAGE);
        assert_eq!(harness.state().upload_count(), 0);
        assert_eq!(harness.state().render_count(), 0);
    }

    #[test]
    fn render_image_draws_the_scan_upright() {
        let rs = render_state();
        let mut v = view_with_scan();
        let img = v.render_image(&rs, W, H).expect("render_image");
        assert_eq!(img.dimensions(), (W, H));
        let fg = foreground(&img, 0..H);
        assert!(
            fg > (W * H) as usize / 50,
            "only {fg} non-background pixels"
        );
        // Looking forward over the car: the ground fills the lower half, the top is mostly sky.
        let top = foreground(&img, 0..H / 5);
        let bottom = foreground(&img, H / 2..H);
        assert!(
            bottom > 4 * top.max(1),
            "top {top} vs bottom {bottom}: image upside down?"
        );
        assert!(v.last_render_seconds().is_some());
        assert!(v.render_image(&rs, 0, H).is_err());
        assert!(v.error().is_none(), "a bad size is not a GPU error");
        if std::env::var_os("VIEW3D_SAVE").is_some() {
            img.save("/tmp/view3d_perspective.png").expect("save");
        }
    }

    #[test]
    fn color_by_changes_colours_not_uploads() {
        let rs = render_state();
        let mut v = view_with_scan();
        let height = v.render_image(&rs, W, H).expect("render");
        v.set_color_by(ColorBy::Intensity);
        let intensity = v.render_image(&rs, W, H).expect("render");
        // Compare the centre of the image, where the points are.
        let centre = |img: &image::RgbaImage| {
            image::imageops::crop_imm(img, W / 4, H / 4, W / 2, H / 2).to_image()
        };
        let changed = differing(&centre(&height), &centre(&intensity));
        let fg = foreground(&centre(&height), 0..H / 2);
        assert!(fg > 500, "too few points near the centre ({fg})");
        assert!(
            changed > fg / 2,
            "{changed} of {fg} point pixels changed colour"
        );
        assert_eq!(v.upload_count(), 1);
        assert_eq!(v.recolor_count(), 1);
        if std::env::var_os("VIEW3D_SAVE").is_some() {
            intensity.save("/tmp/view3d_intensity.png").expect("save");
        }
    }

    #[test]
    fn same_points_are_uploaded_once() {
        let rs = render_state();
        let (points, nf) = kitti_scan();
        let mut v = View3d::new();
        v.set_points(points.clone(), nf);
        v.render_frame(&rs, W, H).expect("render");
        v.set_points(points.clone(), nf);
        v.set_points(Arc::new(points.to_vec()), nf);
        v.render_frame(&rs, W, H).expect("render");
        v.set_boxes(test_boxes());
        v.render_frame(&rs, W, H).expect("render");
        assert_eq!(
            v.upload_count(),
            1,
            "unchanged points must not be re-uploaded"
        );
        assert_eq!(v.render_count(), 3);
        let mut other = points.to_vec();
        other[0] += 1.0;
        v.set_points(Arc::new(other), nf);
        v.render_frame(&rs, W, H).expect("render");
        assert_eq!(v.upload_count(), 2);
    }

    #[test]
    fn boxes_and_birds_eye_change_the_image() {
        let rs = render_state();
        let mut v = view_with_scan();
        let plain = v.render_image(&rs, W, H).expect("render");
        v.set_boxes(test_boxes());
        let boxed = v.render_image(&rs, W, H).expect("render");
        let changed = differing(&plain, &boxed);
        assert!(changed > 200, "boxes changed only {changed} pixels");
        let red = boxed
            .pixels()
            .filter(|p| p[0] > 200 && p[1] < 60 && p[2] < 60)
            .count();
        assert!(red > 100, "only {red} red box pixels");

        v.set_projection(Projection::BirdsEye);
        let bev = v.render_image(&rs, W, H).expect("render");
        let changed = differing(&boxed, &bev);
        assert!(
            changed > (W * H) as usize / 20,
            "BEV differs in only {changed} pixels"
        );
        assert!(foreground(&bev, 0..H) > (W * H) as usize / 50);
        assert_eq!(v.upload_count(), 1);
        if std::env::var_os("VIEW3D_SAVE").is_some() {
            boxed.save("/tmp/view3d_boxes.png").expect("save");
            bev.save("/tmp/view3d_bev.png").expect("save");
        }
    }

    #[test]
    fn ui_shows_the_texture_and_drag_orbits() {
        let rs = render_state();
        let mut v = view_with_scan();
        v.set_boxes(test_boxes());
        let rs_ui = rs.clone();
        let mut harness = Harness::builder()
            .with_size(egui::vec2(W as f32, H as f32))
            .renderer(WgpuTestRenderer::from_render_state(rs))
            .build_ui_state(
                move |ui, v: &mut View3d| {
                    v.ui(ui, Some(&rs_ui));
                },
                v,
            );
        harness.run();
        assert!(
            harness.state().error().is_none(),
            "{:?}",
            harness.state().error()
        );
        assert_eq!(harness.state().upload_count(), 1);
        let renders = harness.state().render_count();
        assert!(renders >= 1);
        let img = harness.render().expect("harness render");
        let fg = foreground(&img, 0..img.height());
        assert!(
            fg > (img.width() * img.height()) as usize / 50,
            "egui shows no points ({fg})"
        );
        // Idle frames do not render again.
        harness.run();
        assert_eq!(harness.state().render_count(), renders);

        // A primary drag orbits the camera and renders a new frame.
        let from = egui::pos2(W as f32 / 2.0, H as f32 / 2.0);
        harness.hover_at(from);
        harness.drag_at(from);
        harness.run();
        harness.hover_at(from + egui::vec2(60.0, 0.0));
        harness.run();
        harness.drop_at(from + egui::vec2(60.0, 0.0));
        harness.run();
        assert!(
            harness.state().orbit.yaw != OrbitCam::DEFAULT.yaw,
            "drag did not orbit"
        );
        assert!(harness.state().render_count() > renders);
        let moved = harness.render().expect("harness render");
        assert!(differing(&img, &moved) > 1000);
        assert_eq!(harness.state().upload_count(), 1);

        // A smaller window re-creates kiss3d's texture; egui must show the new one.
        harness.set_size(egui::vec2(320.0, 200.0));
        harness.run();
        assert!(
            harness.state().error().is_none(),
            "{:?}",
            harness.state().error()
        );
        let small = harness.render().expect("harness render");
        assert_eq!(small.dimensions(), (320, 200));
        let fg = foreground(&small, 0..200);
        assert!(fg > 320 * 200 / 50, "resized view shows no points ({fg})");
        assert_eq!(harness.state().upload_count(), 1);
        if std::env::var_os("VIEW3D_SAVE").is_some() {
            img.save("/tmp/view3d_ui.png").expect("save");
            small.save("/tmp/view3d_ui_small.png").expect("save");
        }
    }

    #[test]
    fn views_share_the_device_and_keep_it_alive() {
        let rs = render_state();
        let mut a = view_with_scan();
        let mut b = view_with_scan();
        a.render_image(&rs, W, H).expect("first view");
        b.render_image(&rs, W, H)
            .expect("second view on the same device");
        // Dropping every view must not destroy eframe's device (kiss3d resets its context
        // when its last surface goes away).
        drop(a);
        drop(b);
        let mut c = view_with_scan();
        let img = c
            .render_image(&rs, W, H)
            .expect("a view after the others were dropped");
        assert!(foreground(&img, 0..H) > (W * H) as usize / 50);
        // kiss3d is bound to one device per thread: another device is refused, not a panic.
        let other = render_state();
        let err = view_with_scan()
            .render_image(&other, W, H)
            .expect_err("a second device on the same thread");
        assert!(err.contains("another wgpu device"), "{err}");
        c.render_image(&rs, W, H)
            .expect("the first device still works");
    }
}
