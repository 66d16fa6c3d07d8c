//! The 3D point-cloud view: a LiDAR scan and its detection boxes, drawn by kiss3d inside egui.
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
//! # Upload once
//! A scan becomes one persistent kiss3d scene node: a one-vertex point mesh, instanced once per
//! LiDAR point, with surface rendering off and a per-instance point colour. kiss3d keeps instance
//! buffers on the GPU and re-uploads them only when they are marked dirty, so a frame with an
//! unchanged scan uploads nothing but uniforms. A new scan rebuilds the node; a new colouring
//! rewrites only the colour buffer. (A plain many-vertex point mesh would not do: kiss3d 0.47
//! copies all of a mesh's vertices to the GPU again on every frame it draws points.) Boxes (12
//! edges each) change more often and are few, so they are drawn as immediate-mode lines each
//! render.
//!
//! # Thread-local constraint
//! kiss3d's `Context` and its resource caches are `thread_local!` singletons, so all of this
//! must run on one thread: the UI thread. The first view on a thread binds kiss3d to the device
//! it is given; a view that is later handed a *different* device on the same thread shows an error
//! instead of mixing resources from two devices. [`View3d`] holds kiss3d objects (`Rc`), so it is
//! neither `Send` nor `Sync`, which keeps it on its thread at compile time. The binding also
//! takes a permanent reference in kiss3d's window count: kiss3d destroys the `wgpu::Device` when
//! its last window or surface is dropped, and that device belongs to eframe.
//!
//! # Camera
//! kiss3d's own cameras read input from its window, which we do not have, so the orbit camera is
//! driven from egui input (drag = orbit, right/middle or shift drag = pan, scroll or pinch =
//! zoom, double-click = reset) and handed to kiss3d as fixed matrices. The same matrices
//! project the box labels, which egui paints on top. The LiDAR frame is z-up with x forward
//! (KITTI).

use std::cell::RefCell;
use std::panic::AssertUnwindSafe;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use eframe::egui;
use eframe::egui_wgpu;
use eframe::wgpu;
use kiss3d::camera::Camera3d;
use kiss3d::color::Color;
use kiss3d::context::Context;
use kiss3d::event::WindowEvent;
use kiss3d::glamx::glam::camera::rh::proj::directx;
use kiss3d::glamx::{Mat3, Mat4, Pose3, Vec2, Vec3, Vec4};
use kiss3d::post_processing::Tonemap;
use kiss3d::resource::GpuMesh3d;
use kiss3d::scene::{InstanceData3d, SceneNode3d};
use kiss3d::window::{Canvas, OffscreenSurface};

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

/// The texture format kiss3d renders into; egui's native textures must be this format.
const OUTPUT_FORMAT: wgpu::TextureFormat = wgpu::TextureFormat::Rgba8Unorm;

/// Largest offscreen side we ask kiss3d for (also bounded by the device limit).
const MAX_SIDE: u32 = 8192;

/// kiss3d's tonemap pass ends with `pow(c, 1/2.2)`; colours are therefore given to it as
/// `srgb^2.2` so that the pixels come out as the sRGB colour we meant.
fn kiss_color(c: [f32; 3]) -> Color {
    Color::new(c[0].powf(2.2), c[1].powf(2.2), c[2].powf(2.2), 1.0)
}

fn kiss_color32(c: egui::Color32) -> Color {
    kiss_color([
        f32::from(c.r()) / 255.0,
        f32::from(c.g()) / 255.0,
        f32::from(c.b()) / 255.0,
    ])
}

/// Piecewise-linear interpolation over evenly spaced sRGB anchors, `t` clamped to 0..1.
fn ramp(anchors: &[[u8; 3]], t: f32) -> [f32; 3] {
    let t = if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let n = anchors.len() - 1;
    let x = t * n as f32;
    let i = (x.floor() as usize).min(n - 1);
    let f = x - i as f32;
    let (a, b) = (anchors[i], anchors[i + 1]);
    std::array::from_fn(|k| (f32::from(a[k]) + (f32::from(b[k]) - f32::from(a[k])) * f) / 255.0)
}

/// A viridis-like ramp (dark purple, blue, teal, green, yellow): perceptually ordered, readable
/// for colour-blind users. Returns sRGB in 0..1.
pub fn height_ramp(t: f32) -> [f32; 3] {
    const A: [[u8; 3]; 9] = [
        [68, 1, 84],
        [71, 44, 122],
        [59, 81, 139],
        [44, 113, 142],
        [33, 144, 141],
        [39, 173, 129],
        [92, 200, 99],
        [170, 220, 50],
        [253, 231, 37],
    ];
    ramp(&A, t)
}

/// A plasma-like ramp (deep blue, purple, pink, orange, yellow), distinct from the height ramp so
/// the two colourings are not confused. Returns sRGB in 0..1.
pub fn intensity_ramp(t: f32) -> [f32; 3] {
    const A: [[u8; 3]; 7] = [
        [13, 8, 135],
        [84, 2, 163],
        [139, 10, 165],
        [185, 50, 137],
        [219, 92, 104],
        [244, 136, 73],
        [240, 249, 33],
    ];
    ramp(&A, t)
}

/// The colour of one point row (`x, y, z, intensity, ...`) as sRGB 0..1. `intensity_scale` maps the
/// raw 4th column to 0..1.
fn point_color(row: &[f32], color_by: ColorBy, intensity_scale: f32) -> [f32; 3] {
    match color_by {
        ColorBy::Height => {
            let (lo, hi) = HEIGHT_RANGE;
            height_ramp((row[2] - lo) / (hi - lo))
        }
        ColorBy::Intensity => match row.get(3) {
            Some(i) => intensity_ramp(i * intensity_scale),
            None => intensity_ramp(0.5),
        },
    }
}

/// The 8 corners of an OpenPCDet box: bottom face (0..4) then top face (4..8), counter-clockwise
/// seen from above, starting at front-left.
pub fn box_corners(bbox: &[f32; 7]) -> [[f32; 3]; 8] {
    let [x, y, z, dx, dy, dz, heading] = *bbox;
    let (s, c) = heading.sin_cos();
    let local = [[0.5, 0.5], [-0.5, 0.5], [-0.5, -0.5], [0.5, -0.5]];
    std::array::from_fn(|i| {
        let [u, v] = local[i % 4];
        let (lx, ly) = (u * dx, v * dy);
        let lz = if i < 4 { -0.5 * dz } else { 0.5 * dz };
        [x + c * lx - s * ly, y + s * lx + c * ly, z + lz]
    })
}

/// The 12 edges of a box, as pairs of [`box_corners`] indices.
pub use pruneview_core::boxes::BOX_EDGES;

/// Orbit camera state for the perspective view (z up).
#[derive(Clone, Copy, Debug, PartialEq)]
struct OrbitCam {
    target: [f32; 3],
    /// Azimuth of the viewing direction around z; 0 looks along +x.
    yaw: f32,
    /// Elevation of the eye above the target's horizontal plane, radians.
    pitch: f32,
    dist: f32,
}

impl OrbitCam {
    /// Behind and above the car, looking at (15, 0, 0).
    const DEFAULT: OrbitCam = OrbitCam {
        target: [15.0, 0.0, 0.0],
        yaw: 0.0,
        pitch: 0.42,
        dist: 30.0,
    };
    const FOV_Y: f32 = 50.0 * std::f32::consts::PI / 180.0;
    const NEAR: f32 = 0.3;
    const FAR: f32 = 800.0;

    fn eye(&self) -> Vec3 {
        let (sp, cp) = self.pitch.sin_cos();
        let (sy, cy) = self.yaw.sin_cos();
        let dir = Vec3::new(cp * cy, cp * sy, -sp);
        Vec3::from(self.target) - dir * self.dist
    }
}

/// Top-down orthographic camera state.
#[derive(Clone, Copy, Debug, PartialEq)]
struct BevCam {
    center: [f32; 2],
    /// Azimuth of the world direction that points up in the image; 0 = +x (forward).
    yaw: f32,
    /// Half of the visible height in metres.
    half_height: f32,
}

impl BevCam {
    /// 50 m of road ahead, the car near the bottom.
    const DEFAULT: BevCam = BevCam {
        center: [20.0, 0.0],
        yaw: 0.0,
        half_height: 25.0,
    };
    const EYE_HEIGHT: f32 = 300.0;
    const NEAR: f32 = 1.0;
    const FAR: f32 = 700.0;
}

/// A camera with fixed matrices, handed to kiss3d for one render. kiss3d's own cameras need its
/// window's input; ours comes from egui.
struct FrameCamera {
    eye: Vec3,
    view: Pose3,
    proj: Mat4,
    proj_view: Mat4,
    inverse: Mat4,
    clip: (f32, f32),
}

impl Camera3d for FrameCamera {
    fn handle_event(&mut self, _canvas: &Canvas, _event: &WindowEvent) {}
    fn eye(&self) -> Vec3 {
        self.eye
    }
    fn view_transform(&self) -> Pose3 {
        self.view
    }
    fn transformation(&self) -> Mat4 {
        self.proj_view
    }
    fn inverse_transformation(&self) -> Mat4 {
        self.inverse
    }
    fn clip_planes(&self) -> (f32, f32) {
        self.clip
    }
    fn update(&mut self, _canvas: &Canvas) {}
    fn view_transform_pair(&self, _pass: usize) -> (Pose3, Mat4) {
        (self.view, self.proj)
    }
}

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
struct Gpu {
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

    /// Camera matrices for an image of the given aspect ratio (width / height).
    fn camera(&self, aspect: f32) -> FrameCamera {
        let aspect = if aspect.is_finite() && aspect > 0.0 {
            aspect
        } else {
            1.0
        };
        let (eye, view, proj, clip) = match self.projection {
            Projection::Perspective => {
                let o = &self.orbit;
                let eye = o.eye();
                let view = Pose3::look_at_rh(eye, Vec3::from(o.target), Vec3::Z);
                let proj =
                    directx::perspective(OrbitCam::FOV_Y, aspect, OrbitCam::NEAR, OrbitCam::FAR);
                (eye, view, proj, (OrbitCam::NEAR, OrbitCam::FAR))
            }
            Projection::BirdsEye => {
                let b = &self.bev;
                let eye = Vec3::new(b.center[0], b.center[1], BevCam::EYE_HEIGHT);
                let target = Vec3::new(b.center[0], b.center[1], 0.0);
                let (s, c) = b.yaw.sin_cos();
                let view = Pose3::look_at_rh(eye, target, Vec3::new(c, s, 0.0));
                let hh = b.half_height;
                let hw = hh * aspect;
                let proj = directx::orthographic(-hw, hw, -hh, hh, BevCam::NEAR, BevCam::FAR);
                (eye, view, proj, (BevCam::NEAR, BevCam::FAR))
            }
        };
        let proj_view = proj * view.to_mat4();
        FrameCamera {
            eye,
            view,
            proj,
            proj_view,
            inverse: proj_view.inverse(),
            clip,
        }
    }

    /// Projects a world point into `rect` with the camera used for that rect; `None` when the
    /// point is behind the camera or outside the depth range.
    fn project(&self, p: [f32; 3], rect: egui::Rect) -> Option<egui::Pos2> {
        let cam = self.camera(rect.width() / rect.height());
        let clip = cam.proj_view * Vec4::new(p[0], p[1], p[2], 1.0);
        if clip.w <= 1e-6 {
            return None;
        }
        let ndc = clip / clip.w;
        if !(0.0..=1.0).contains(&ndc.z) {
            return None;
        }
        Some(egui::pos2(
            rect.left() + (ndc.x + 1.0) * 0.5 * rect.width(),
            rect.top() + (1.0 - ndc.y) * 0.5 * rect.height(),
        ))
    }

    /// Applies egui input on the view's response to the camera.
    fn handle_input(&mut self, ui: &egui::Ui, response: &egui::Response, rect: egui::Rect) {
        if response.double_clicked() {
            self.reset_camera();
        }
        let shift = ui.input(|i| i.modifiers.shift);
        let delta = response.drag_delta();
        let pan = response.dragged_by(egui::PointerButton::Secondary)
            || response.dragged_by(egui::PointerButton::Middle)
            || (shift && response.dragged_by(egui::PointerButton::Primary));
        let orbit = !pan && response.dragged_by(egui::PointerButton::Primary);
        let h = rect.height().max(1.0);
        if delta != egui::Vec2::ZERO {
            if pan {
                self.pan(delta, h);
            } else if orbit {
                self.orbit_by(delta);
            }
        }
        if response.hovered() {
            let (scroll, zoom) = ui.input(|i| (i.smooth_scroll_delta.y, i.zoom_delta()));
            let factor = (-scroll * 0.002).exp() / zoom.max(1e-3);
            if (factor - 1.0).abs() > 1e-6 {
                self.zoom_by(factor);
            }
        }
    }

    /// Rotates the camera by a drag of `delta` logical pixels.
    fn orbit_by(&mut self, delta: egui::Vec2) {
        const RAD_PER_PX: f32 = 0.008;
        match self.projection {
            Projection::Perspective => {
                self.orbit.yaw -= delta.x * RAD_PER_PX;
                self.orbit.pitch = (self.orbit.pitch + delta.y * RAD_PER_PX).clamp(0.02, 1.55);
            }
            Projection::BirdsEye => self.bev.yaw -= delta.x * RAD_PER_PX,
        }
    }

    /// Moves the scene with the pointer by a drag of `delta` logical pixels in a view `h` tall.
    fn pan(&mut self, delta: egui::Vec2, h: f32) {
        match self.projection {
            Projection::Perspective => {
                let o = &mut self.orbit;
                let m_per_px = 2.0 * o.dist * (OrbitCam::FOV_Y * 0.5).tan() / h;
                let (sy, cy) = o.yaw.sin_cos();
                let forward = [cy, sy];
                let right = [sy, -cy];
                for k in 0..2 {
                    o.target[k] += (-right[k] * delta.x + forward[k] * delta.y) * m_per_px;
                }
            }
            Projection::BirdsEye => {
                let b = &mut self.bev;
                let m_per_px = 2.0 * b.half_height / h;
                let (s, c) = b.yaw.sin_cos();
                let up = [c, s];
                let right = [s, -c];
                for k in 0..2 {
                    b.center[k] += (-right[k] * delta.x + up[k] * delta.y) * m_per_px;
                }
            }
        }
    }

    /// Multiplies the viewing distance (or the map scale) by `factor` (< 1 zooms in).
    fn zoom_by(&mut self, factor: f32) {
        if !factor.is_finite() || factor <= 0.0 {
            return;
        }
        match self.projection {
            Projection::Perspective => {
                self.orbit.dist = (self.orbit.dist * factor).clamp(1.0, 400.0);
            }
            Projection::BirdsEye => {
                self.bev.half_height = (self.bev.half_height * factor).clamp(1.0, 300.0);
            }
        }
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

    /// Renders at (w, h) physical pixels if anything changed and returns the egui texture.
    fn render_texture(
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
                let corners = box_corners(&b.bbox).map(Vec3::from);
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

/// Bitwise equality (so a scan with NaNs still equals itself).
fn same_bits(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

/// The 0..1 scale for the intensity column: KITTI stores 0..1, nuScenes 0..255.
fn intensity_scale(points: &[f32], nf: usize) -> f32 {
    if nf < 4 {
        return 1.0;
    }
    let max = points
        .chunks_exact(nf)
        .map(|r| r[3])
        .filter(|v| v.is_finite())
        .fold(0.0f32, f32::max);
    if max > 1.0 + 1e-3 { 1.0 / 255.0 } else { 1.0 }
}

/// Rows that are drawn: at least x, y, z, all finite.
fn drawable_rows(points: &[f32], nf: usize) -> impl Iterator<Item = &[f32]> {
    let ok = nf >= 3;
    points
        .chunks_exact(nf.max(1))
        .filter(move |r| ok && r[..3].iter().all(|v| v.is_finite()))
}

/// Point colours in kiss3d's colour space, in [`drawable_rows`] order.
fn cloud_colors(points: &[f32], nf: usize, color_by: ColorBy) -> Vec<[f32; 4]> {
    let scale = intensity_scale(points, nf);
    drawable_rows(points, nf)
        .map(|r| {
            let c = kiss_color(point_color(r, color_by, scale));
            [c.r, c.g, c.b, c.a]
        })
        .collect()
}

/// Adds the scan to `scene` as one instanced point node (see the module docs).
fn build_cloud(
    scene: &mut SceneNode3d,
    points: &[f32],
    nf: usize,
    color_by: ColorBy,
) -> Option<SceneNode3d> {
    let scale = intensity_scale(points, nf);
    let instances: Vec<InstanceData3d> = drawable_rows(points, nf)
        .map(|r| InstanceData3d {
            position: Vec3::new(r[0], r[1], r[2]),
            deformation: Mat3::IDENTITY,
            points_color: Some(kiss_color(point_color(r, color_by, scale))),
            ..Default::default()
        })
        .collect();
    if instances.is_empty() {
        return None;
    }
    // One vertex at the origin; the degenerate face only exists because kiss3d skips objects
    // without an index buffer. Surfaces are off, so it is never rasterised.
    let mesh = GpuMesh3d::new(
        vec![Vec3::ZERO],
        vec![[0, 0, 0]],
        Some(vec![Vec3::Z]),
        Some(vec![Vec2::ZERO]),
        false,
    );
    let mut node = scene.add_mesh(Rc::new(RefCell::new(mesh)), Vec3::ONE);
    node.set_surface_rendering_activation(false);
    node.set_lines_width(0.0, false);
    node.set_casts_shadows(false);
    node.set_points_size(2.0, false);
    node.set_instances(&instances);
    Some(node)
}

/// Rewrites only the per-point colour buffer of a cloud built by [`build_cloud`].
fn recolor_cloud(cloud: &mut SceneNode3d, points: &[f32], nf: usize, color_by: ColorBy) {
    let colors = cloud_colors(points, nf, color_by);
    let mut data = cloud.data_mut();
    let instances = data.get_object_mut().instances().clone();
    let mut inst = instances.borrow_mut();
    if inst.len() == colors.len() {
        *inst.points_colors.data_mut() = Some(colors);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
    fn ramps_are_clamped_and_distinct() {
        assert_eq!(height_ramp(-5.0), height_ramp(0.0));
        assert_eq!(height_ramp(5.0), height_ramp(1.0));
        assert_eq!(height_ramp(f32::NAN), height_ramp(0.0));
        let lum = |c: [f32; 3]| 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2];
        for ramp in [height_ramp, intensity_ramp] {
            let mut last = -1.0;
            for i in 0..=20 {
                let l = lum(ramp(i as f32 / 20.0));
                assert!(l > last, "luminance must increase along the ramp");
                last = l;
            }
        }
        assert_ne!(height_ramp(0.3), intensity_ramp(0.3));
        // nuScenes-style 0..255 intensities are scaled, KITTI's 0..1 are not.
        assert_eq!(intensity_scale(&[0.0, 0.0, 0.0, 0.7], 4), 1.0);
        assert_eq!(intensity_scale(&[0.0, 0.0, 0.0, 200.0], 4), 1.0 / 255.0);
    }

    #[test]
    fn box_corners_follow_heading() {
        let c = box_corners(&[1.0, 2.0, 3.0, 4.0, 2.0, 1.0, std::f32::consts::FRAC_PI_2]);
        // Heading 90 degrees: the box's length (dx) lies along y.
        let ys: Vec<f32> = c.iter().map(|p| p[1]).collect();
        let xs: Vec<f32> = c.iter().map(|p| p[0]).collect();
        let span = |v: &[f32]| {
            v.iter().cloned().fold(f32::MIN, f32::max) - v.iter().cloned().fold(f32::MAX, f32::min)
        };
        assert!((span(&ys) - 4.0).abs() < 1e-4);
        assert!((span(&xs) - 2.0).abs() < 1e-4);
        assert!((c[0][2] - 2.5).abs() < 1e-6 && (c[4][2] - 3.5).abs() < 1e-6);
        for (i, j) in BOX_EDGES {
            assert_ne!(i, j);
        }
    }

    #[test]
    fn labels_project_in_front_only() {
        let v = View3d::new();
        let rect = egui::Rect::from_min_size(egui::pos2(10.0, 20.0), egui::vec2(640.0, 400.0));
        // The default camera looks at (15, 0, 0): it projects to the centre.
        let p = v
            .project([15.0, 0.0, 0.0], rect)
            .expect("target is visible");
        assert!(
            (p - rect.center()).length() < 1.0,
            "{p:?} vs {:?}",
            rect.center()
        );
        // Points further left (+y) are left in the image; higher points are higher.
        let left = v.project([15.0, 3.0, 0.0], rect).expect("visible");
        assert!(left.x < p.x);
        let up = v.project([15.0, 0.0, 2.0], rect).expect("visible");
        assert!(up.y < p.y);
        assert!(
            v.project([-60.0, 0.0, 0.0], rect).is_none(),
            "behind the camera"
        );

        let mut bev = View3d::new();
        bev.set_projection(Projection::BirdsEye);
        let c = bev.project([20.0, 0.0, 0.0], rect).expect("visible");
        assert!((c - rect.center()).length() < 1.0);
        let ahead = bev.project([30.0, 0.0, 0.0], rect).expect("visible");
        assert!(
            ahead.y < c.y && (ahead.x - c.x).abs() < 1e-3,
            "x forward points up"
        );
        let left = bev.project([20.0, 5.0, 0.0], rect).expect("visible");
        assert!(left.x < c.x, "+y is to the left");
    }

    #[test]
    fn camera_input_and_reset() {
        let mut v = View3d::new();
        v.orbit_by(egui::vec2(40.0, 10.0));
        v.pan(egui::vec2(5.0, 0.0), 400.0);
        v.zoom_by(0.5);
        assert_ne!(v.orbit, OrbitCam::DEFAULT);
        assert!(v.orbit.dist < OrbitCam::DEFAULT.dist);
        v.set_projection(Projection::BirdsEye);
        v.zoom_by(2.0);
        assert_ne!(v.bev, BevCam::DEFAULT);
        v.reset_camera();
        assert_eq!(v.bev, BevCam::DEFAULT);
        assert_ne!(
            v.orbit,
            OrbitCam::DEFAULT,
            "each projection keeps its own camera"
        );
        v.set_projection(Projection::Perspective);
        v.reset_camera();
        assert_eq!(v.orbit, OrbitCam::DEFAULT);
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
