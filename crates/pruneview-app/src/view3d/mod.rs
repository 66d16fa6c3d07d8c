//! The 3D point-cloud view: a LiDAR scan and its detection boxes, drawn by kiss3d inside egui.
//!
//! This file holds the widget ([`View3d`]: its state, setters and `ui`) and its public types.
//! The rest is split by job: `camera.rs` (orbit and bird's-eye cameras driven by egui input),
//! `colors.rs` (the colour ramps and kiss3d's colour space), `cloud.rs` (the scan as one
//! instanced kiss3d node) and `gpu.rs` (kiss3d on eframe's wgpu device, rendering, egui's
//! texture). Each file's docs say why it works the way it does.

mod camera;
mod cloud;
mod colors;
mod gpu;

use std::sync::Arc;

use eframe::egui;
use eframe::egui_wgpu;

use camera::{BevCam, OrbitCam};
pub use colors::{height_ramp, intensity_ramp};
use gpu::Gpu;

/// What the point colours show: height says where the ground and objects are; intensity shows
/// road markings, plates and retro-reflectors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
pub enum ColorBy {
    /// z in the LiDAR frame, [`HEIGHT_RANGE`] clamped, on a viridis-like ramp.
    #[default]
    Height,
    /// The 4th column (reflectance), 0..1 clamped (0..255 scans are detected and scaled).
    Intensity,
}

/// How the scene is looked at: an orbiting perspective camera, or a top-down orthographic map
/// (the frame the detector's BEV grid lives in).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
pub enum Projection {
    /// Perspective orbit camera, z up.
    #[default]
    Perspective,
    /// Orthographic, looking straight down, x forward pointing up in the image.
    BirdsEye,
}

/// One box to draw: OpenPCDet `[x, y, z, dx, dy, dz, heading]` in the LiDAR frame, z at the box
/// centre.
#[derive(Clone, Debug, PartialEq)]
pub struct Box3d {
    /// `[x, y, z, dx, dy, dz, heading]`, metres and radians.
    pub bbox: [f32; 7],
    /// Edge and label colour.
    pub color: egui::Color32,
    /// Text drawn at the box's top centre (class and score); empty for none.
    pub label: String,
}

/// Where a view looks from (its orbit and bird's-eye cameras both), so two views can share
/// one viewpoint: the side-by-side comparison copies it from the view the user moved.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CameraState {
    orbit: OrbitCam,
    bev: BevCam,
}

/// Heights (m, LiDAR frame) mapped to the two ends of the height ramp: KITTI's ground is near
/// -1.7 m, car roofs near 0 m.
pub const HEIGHT_RANGE: (f32, f32) = (-2.5, 1.5);

/// Shown in place of the 3D view when eframe does not run on wgpu (glow renderer, or none).
pub const NO_WGPU_MESSAGE: &str =
    "The 3D view needs eframe's wgpu renderer (start the app with the wgpu renderer).";

/// Size used when the parent gives the view no room (e.g. in a test harness that sizes to
/// content): large enough to see something, small enough to be cheap.
const FALLBACK_SIZE: egui::Vec2 = egui::vec2(640.0, 400.0);

/// Background of the 3D view (sRGB).
const BACKGROUND: egui::Color32 = egui::Color32::from_rgb(18, 20, 26);

/// The 3D point-cloud view. Create it with [`View3d::new`] (no GPU work), feed it points and
/// boxes, and call [`View3d::ui`] every frame from the UI thread.
pub struct View3d {
    color_by: ColorBy,
    projection: Projection,
    orbit: OrbitCam,
    bev: BevCam,
    points: Option<Arc<Vec<f32>>>,
    num_features: usize,
    points_gen: u64,
    colors_gen: u64,
    boxes: Vec<Box3d>,
    boxes_gen: u64,
    /// Point diameter in logical pixels.
    point_size: f32,
    /// Box edge width in logical pixels.
    line_width: f32,
    gpu: Option<Gpu>,
    /// A GPU failure; shown instead of the view until the next scan or [`View3d::reset_gpu`].
    error: Option<String>,
    last_render: Option<f64>,
    uploads: u64,
    recolors: u64,
    renders: u64,
}

impl Default for View3d {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for View3d {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("View3d")
            .field("color_by", &self.color_by)
            .field("projection", &self.projection)
            .field("points", &self.num_points())
            .field("boxes", &self.boxes.len())
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

impl View3d {
    /// An empty view with the default camera. Does no GPU work, so it can be built before eframe
    /// has a render state (e.g. in `Default`).
    pub fn new() -> Self {
        View3d {
            color_by: ColorBy::default(),
            projection: Projection::default(),
            orbit: OrbitCam::DEFAULT,
            bev: BevCam::DEFAULT,
            points: None,
            num_features: 0,
            points_gen: 1,
            colors_gen: 1,
            boxes: Vec::new(),
            boxes_gen: 1,
            point_size: 2.0,
            line_width: 2.0,
            gpu: None,
            error: None,
            last_render: None,
            uploads: 0,
            recolors: 0,
            renders: 0,
        }
    }

    /// Points as rows of `num_features` floats: x, y, z, intensity, ... Uploaded once, at the
    /// next render; calling it again with the same data (the same `Arc`, or equal contents) keeps
    /// the uploaded cloud and its generation number, so an app may call it every frame.
    pub fn set_points(&mut self, points: Arc<Vec<f32>>, num_features: usize) {
        if let Some(old) = &self.points
            && self.num_features == num_features
            && (Arc::ptr_eq(old, &points) || same_bits(old, &points))
        {
            return;
        }
        self.points = Some(points);
        self.num_features = num_features;
        self.points_gen += 1;
        self.colors_gen += 1;
        self.error = None;
    }

    /// Removes the scan (the next render draws boxes only).
    pub fn clear_points(&mut self) {
        if self.points.take().is_some() {
            self.points_gen += 1;
            self.colors_gen += 1;
        }
    }

    /// Number of points in the current scan (rows, before dropping non-finite ones).
    pub fn num_points(&self) -> usize {
        match &self.points {
            Some(p) if self.num_features > 0 => p.len() / self.num_features,
            _ => 0,
        }
    }

    /// Replaces the boxes (detections, labels). Cheap: boxes are re-drawn each render.
    pub fn set_boxes(&mut self, boxes: Vec<Box3d>) {
        if boxes != self.boxes {
            self.boxes = boxes;
            self.boxes_gen += 1;
        }
    }

    /// The boxes currently drawn.
    pub fn boxes(&self) -> &[Box3d] {
        &self.boxes
    }

    /// The current point colouring.
    pub fn color_by(&self) -> ColorBy {
        self.color_by
    }

    /// Changes the colouring; only the colour buffer is re-uploaded, not the points.
    pub fn set_color_by(&mut self, c: ColorBy) {
        if c != self.color_by {
            self.color_by = c;
            self.colors_gen += 1;
        }
    }

    /// The current projection.
    pub fn projection(&self) -> Projection {
        self.projection
    }

    /// Switches between the orbit camera and the bird's-eye map; each keeps its own camera.
    pub fn set_projection(&mut self, p: Projection) {
        self.projection = p;
    }

    /// Point diameter in logical pixels (default 2).
    pub fn point_size(&self) -> f32 {
        self.point_size
    }

    /// Sets the point diameter in logical pixels (clamped to 0.5..20).
    pub fn set_point_size(&mut self, px: f32) {
        if px.is_finite() {
            self.point_size = px.clamp(0.5, 20.0);
        }
    }

    /// Restores the current projection's default camera: behind and above the car looking at
    /// (15, 0, 0), or 50 m of road ahead seen from above.
    pub fn reset_camera(&mut self) {
        match self.projection {
            Projection::Perspective => self.orbit = OrbitCam::DEFAULT,
            Projection::BirdsEye => self.bev = BevCam::DEFAULT,
        }
    }

    /// Both cameras, to give another view the same viewpoint.
    pub fn camera_state(&self) -> CameraState {
        CameraState {
            orbit: self.orbit,
            bev: self.bev,
        }
    }

    /// Looks from `c` (the next render shows it).
    pub fn set_camera_state(&mut self, c: CameraState) {
        self.orbit = c.orbit;
        self.bev = c.bev;
    }

    /// Seconds the last kiss3d render took on the CPU (scene update, encoding, submit; the GPU
    /// runs asynchronously), for the app's debug overlay. `None` before the first render.
    pub fn last_render_seconds(&self) -> Option<f64> {
        self.last_render
    }

    /// How many times a scan was uploaded to the GPU (tests and the debug overlay use it to
    /// check that an unchanged scan is not re-uploaded).
    pub fn upload_count(&self) -> u64 {
        self.uploads
    }

    /// How many times point colours were re-uploaded without re-uploading positions.
    pub fn recolor_count(&self) -> u64 {
        self.recolors
    }

    /// How many frames kiss3d rendered (an unchanged frame is not rendered again).
    pub fn render_count(&self) -> u64 {
        self.renders
    }

    /// The GPU error shown instead of the view, if any.
    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }

    /// Drops the view's kiss3d objects and any sticky error, so the next render starts afresh
    /// (e.g. after a device loss).
    pub fn reset_gpu(&mut self) {
        self.gpu = None;
        self.error = None;
    }

    /// Draws the view filling `ui.available_size()`, handles camera input, draws each box label
    /// (class + score text from `label`) at its top centre with the egui painter, projected with
    /// the same camera. With `render_state == None` (glow renderer or none) it shows
    /// [`NO_WGPU_MESSAGE`] instead and does not panic.
    pub fn ui(
        &mut self,
        ui: &mut egui::Ui,
        render_state: Option<&egui_wgpu::RenderState>,
    ) -> egui::Response {
        let avail = ui.available_size();
        let size = egui::vec2(
            if avail.x.is_finite() && avail.x >= 1.0 {
                avail.x
            } else {
                FALLBACK_SIZE.x
            },
            if avail.y.is_finite() && avail.y >= 1.0 {
                avail.y
            } else {
                FALLBACK_SIZE.y
            },
        );
        let (rect, response) = ui.allocate_exact_size(size, egui::Sense::click_and_drag());
        self.handle_input(ui, &response, rect);
        if !ui.is_rect_visible(rect) {
            return response;
        }
        ui.painter().rect_filled(rect, 0.0, BACKGROUND);
        let Some(rs) = render_state else {
            self.message(ui, rect, NO_WGPU_MESSAGE);
            return response;
        };
        let ppp = ui.ctx().pixels_per_point();
        let w = (rect.width() * ppp).round().max(1.0) as u32;
        let h = (rect.height() * ppp).round().max(1.0) as u32;
        match self.render_texture(rs, w, h, ppp) {
            Ok(texture) => {
                let uv = egui::Rect::from_min_max(egui::pos2(0.0, 0.0), egui::pos2(1.0, 1.0));
                ui.painter().image(texture, rect, uv, egui::Color32::WHITE);
                self.paint_labels(&ui.painter_at(rect), rect);
            }
            Err(e) => self.message(ui, rect, &e),
        }
        response
    }

    /// Shows a message (as a real label, so it is readable by screen readers and tests).
    fn message(&self, ui: &mut egui::Ui, rect: egui::Rect, text: &str) {
        ui.scope_builder(egui::UiBuilder::new().max_rect(rect.shrink(12.0)), |ui| {
            ui.centered_and_justified(|ui| {
                ui.label(egui::RichText::new(text).color(egui::Color32::LIGHT_GRAY));
            });
        });
    }

    /// Paints box labels over the rendered image.
    fn paint_labels(&self, painter: &egui::Painter, rect: egui::Rect) {
        let font = egui::FontId::proportional(12.0);
        for b in &self.boxes {
            if b.label.is_empty() {
                continue;
            }
            let [x, y, z, _, _, dz, _] = b.bbox;
            let Some(pos) = self.project([x, y, z + 0.5 * dz], rect) else {
                continue;
            };
            if !rect.contains(pos) {
                continue;
            }
            let galley = painter.layout_no_wrap(b.label.clone(), font.clone(), b.color);
            let text_rect =
                egui::Align2::CENTER_BOTTOM.anchor_size(pos - egui::vec2(0.0, 3.0), galley.size());
            painter.rect_filled(
                text_rect.expand(2.0),
                2.0,
                egui::Color32::from_black_alpha(170),
            );
            painter.galley(text_rect.min, galley, b.color);
        }
    }
}

/// Bitwise equality (so a scan with NaNs still equals itself).
fn same_bits(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}
