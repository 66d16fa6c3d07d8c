//! The window: a menu bar, the model and calibration panel (left), the budget panel (right),
//! jobs and messages (bottom), and the 3D view above the curves and frontier plots (centre).
//! Every panel draws [`State`] and turns clicks into calls on it; none waits on model work.
//!
//! One file per panel: `menu.rs`, `model.rs`, `calibration.rs` and `layers.rs` (left),
//! `budget.rs` (right), `jobs_panel.rs` and `plots_panel.rs` (bottom), `scene.rs` (the 3D view
//! and its toolbar), `view_shot.rs` (its legend and screenshots), `export.rs` (the export
//! dialog), `path_prompt.rs` (the path field, for when no file dialog opens) and `debug.rs`
//! (the frame-time overlay).
//! Each is an `impl PruneviewApp` block; this file holds the app, its UI-only state, the layout
//! ([`PruneviewApp::show`]) and the helpers the panels share.

mod budget;
mod calibration;
mod debug;
mod evaluation;
mod export;
mod help;
mod jobs_panel;
mod layers;
mod menu;
mod model;
mod path_prompt;
mod plots_panel;
mod scene;
mod view_shot;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use eframe::egui;
use eframe::egui_wgpu::RenderState;

use super::state::{Settings, State};
use super::view3d::{Box3d, View3d};
use super::work::OpenRequest;
use layers::SortKey;
use pruneview_core::session::scans::expand_scan_paths;

pub use debug::DebugFigures;
pub use help::{LAMBDA_OFF_RATIO, switched_off_groups};
pub use scene::{DENSE_COLOR, GT_COLOR, MATCHED_COLOR, MISSED_COLOR, NEW_COLOR, PRUNED_COLOR};

/// UI-only state (not persisted).
struct UiState {
    sort: SortKey,
    descending: bool,
    selected_layer: Option<usize>,
    hovered_layer: Option<usize>,
    export_open: bool,
    /// CPU milliseconds of recent frames (eframe's measure: app code and rendering).
    frame_times: VecDeque<f32>,
    /// Milliseconds the last `show` took (our code, including the 3D view's render call).
    ui_ms: f32,
    /// What the 3D view shows, to update it only on change.
    view_scan: Option<std::path::PathBuf>,
    view_boxes: Vec<Box3d>,
    /// The side-by-side comparison's table of score deltas is open.
    show_deltas: bool,
    eval: evaluation::EvalUi,
    help: help::HelpUi,
    /// Where the panels were drawn in the last frame.
    panels: PanelRects,
    /// Whether the input fix-ups ([`crate::input`]) are on this context.
    input_fixes: bool,
    /// The path field's text.
    path_text: String,
    /// Where the 3D view was drawn in the last frame.
    view_rect: egui::Rect,
    /// A screenshot of the view asked for and not yet written.
    shot: Option<view_shot::Shot>,
}

/// Where each panel was drawn (screen points), for the overlay's place and for tests.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PanelRects {
    /// Model, calibration scans and layers.
    pub left: egui::Rect,
    /// Budget.
    pub right: egui::Rect,
    /// The 3D view and its toolbar.
    pub central: egui::Rect,
    /// The 3D view itself (what "save screenshot" writes).
    pub view: egui::Rect,
    pub plots: egui::Rect,
    /// Jobs and messages.
    pub jobs: egui::Rect,
}

impl Default for PanelRects {
    fn default() -> Self {
        let r = egui::Rect::NOTHING;
        PanelRects {
            left: r,
            right: r,
            central: r,
            view: r,
            plots: r,
            jobs: r,
        }
    }
}

/// Height the jobs and messages panel starts with (it keeps it, however many rows it holds).
const JOBS_HEIGHT: f32 = 130.0;

/// The app: its state, the 3D view and the UI's own bits.
pub struct PruneviewApp {
    pub state: State,
    pub view: View3d,
    /// The right-hand view of the side-by-side comparison (pruned detections); it follows
    /// the main view's camera.
    pub pruned_view: View3d,
    ui: UiState,
}

impl PruneviewApp {
    /// `ctx` is woken by jobs when they progress or finish.
    pub fn new(settings: Settings, ctx: &egui::Context) -> PruneviewApp {
        let c = ctx.clone();
        let mut view = View3d::new();
        view.set_color_by(settings.color_by);
        view.set_projection(settings.projection);
        let mut pruned_view = View3d::new();
        pruned_view.set_color_by(settings.color_by);
        pruned_view.set_projection(settings.projection);
        PruneviewApp {
            state: State::new(settings, Arc::new(move || c.request_repaint())),
            view,
            pruned_view,
            ui: UiState {
                sort: SortKey::Order,
                descending: false,
                selected_layer: None,
                hovered_layer: None,
                export_open: false,
                frame_times: VecDeque::new(),
                ui_ms: 0.0,
                view_scan: None,
                view_boxes: Vec::new(),
                show_deltas: false,
                eval: evaluation::EvalUi::default(),
                help: help::HelpUi::default(),
                panels: PanelRects::default(),
                input_fixes: false,
                path_text: String::new(),
                view_rect: egui::Rect::NOTHING,
                shot: None,
            },
        }
    }

    pub fn open_export_dialog(&mut self) {
        self.ui.export_open = true;
    }

    /// Shows or hides the Evaluation window (the screenshots show it after Evaluate).
    pub fn show_evaluation_window(&mut self, open: bool) {
        self.ui.eval.open = open;
    }

    /// Where the panels were drawn in the last frame.
    pub fn panel_rects(&self) -> PanelRects {
        self.ui.panels
    }

    /// Draws the whole window into `ui`. `rs` is eframe's wgpu state (the 3D view needs it).
    pub fn show(&mut self, ui: &mut egui::Ui, rs: Option<&RenderState>) {
        let start = Instant::now();
        if !self.ui.input_fixes {
            ui.ctx().add_plugin(crate::input::ReleaseFirst::default());
            self.ui.input_fixes = true;
        }
        let dropped: Vec<std::path::PathBuf> = ui.ctx().input(|i| {
            i.raw
                .dropped_files
                .iter()
                .map(|f| f.path().to_path_buf())
                .filter(|p| !p.as_os_str().is_empty())
                .collect()
        });
        if !dropped.is_empty() {
            self.state.dropped(dropped);
        }
        self.state.tick();
        if let Some(wait) = self.state.settle_remaining() {
            ui.ctx().request_repaint_after(wait);
        }
        if !self.state.jobs.is_idle() {
            // Progress bars and ETAs move even when no job step wakes us.
            ui.ctx()
                .request_repaint_after(std::time::Duration::from_millis(250));
        }

        egui::Panel::top("menu").show(ui, |ui| self.menu_bar(ui));
        // Panels keep the size they were given (or dragged to): their contents scroll
        // inside instead of growing them, so a job row, a message or a wide table never
        // moves the rest of the window.
        let jobs = egui::Panel::bottom("jobs")
            .resizable(true)
            .default_size(JOBS_HEIGHT)
            .min_size(60.0)
            .show(ui, |ui| self.jobs_panel(ui))
            .response
            .rect;
        let left = egui::Panel::left("model")
            .resizable(true)
            .default_size(400.0)
            .min_size(200.0)
            .max_size(800.0)
            .show(ui, |ui| {
                let m = self.state.model.clone();
                // The selected layer's constraints stay at the panel's foot, in view however
                // far the table is scrolled.
                if let Some(m) = &m
                    && let Some(i) = self.ui.selected_layer.filter(|&i| i < m.layers.len())
                {
                    egui::Panel::bottom("constraints")
                        .show(ui, |ui| self.constraint_editor(ui, &m.layers[i].name));
                }
                egui::ScrollArea::both()
                    .id_salt("left")
                    .auto_shrink(false)
                    .show(ui, |ui| {
                        self.model_panel(ui);
                        ui.separator();
                        self.calibration_panel(ui);
                        ui.separator();
                        if let Some(m) = &m {
                            self.layer_table(ui, m);
                        }
                    });
            })
            .response
            .rect;
        let right = egui::Panel::right("budget")
            .resizable(true)
            .default_size(340.0)
            .min_size(220.0)
            .max_size(800.0)
            .show(ui, |ui| {
                egui::ScrollArea::both()
                    .id_salt("budget")
                    .auto_shrink(false)
                    .show(ui, |ui| self.budget_panel(ui));
            })
            .response
            .rect;
        let plots = egui::Panel::bottom("plots")
            .resizable(true)
            .default_size(280.0)
            .min_size(80.0)
            .show(ui, |ui| self.plots(ui))
            .response
            .rect;
        let central = egui::CentralPanel::default()
            .show(ui, |ui| self.scene(ui, rs))
            .response
            .rect;
        self.finish_view_shot(ui.ctx().pixels_per_point());
        self.ui.panels = PanelRects {
            left,
            right,
            central,
            view: self.ui.view_rect,
            plots,
            jobs,
        };

        if self.ui.export_open {
            self.export_dialog(ui.ctx());
        }
        if self.ui.eval.open {
            self.evaluation_window(ui.ctx());
        }
        if self.ui.help.help || self.ui.help.about {
            self.help_windows(ui.ctx());
        }
        self.path_prompt(ui.ctx());
        self.ui.ui_ms = start.elapsed().as_secs_f32() * 1e3;
        if self.state.settings.debug_overlay {
            self.debug_overlay(ui.ctx());
        }
    }

    fn current_sparsity(&self) -> Option<Vec<f64>> {
        let cur = self.state.current.as_ref()?;
        cur.dp.as_ref().ok().map(|s| s.sparsity.clone())
    }
}

impl eframe::App for PruneviewApp {
    fn ui(&mut self, ui: &mut egui::Ui, frame: &mut eframe::Frame) {
        if let Some(cpu) = frame.info().cpu_usage {
            self.ui.frame_times.push_back(cpu * 1e3);
            if self.ui.frame_times.len() > 120 {
                self.ui.frame_times.pop_front();
            }
        }
        let rs = frame.wgpu_render_state().cloned();
        self.show(ui, rs.as_ref());
    }

    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        self.state.settings.color_by = self.view.color_by();
        self.state.settings.projection = self.view.projection();
        eframe::set_value(storage, eframe::APP_KEY, &self.state.settings);
    }
}

/// Synthetic scans the demo calibrates on: enough for stable curves, few enough that the
/// first allocation appears within about half a minute on two cores.
pub const DEMO_SCANS: usize = 16;

/// The bundled demo: the demo model, the first [`DEMO_SCANS`] bundled synthetic scans and
/// the two real KITTI frames (next to the sources, where `cargo run` finds them).
pub fn demo_request() -> Option<OpenRequest> {
    // The workspace root (two folders up from this crate), where `assets/` sits.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)?;
    let assets = root.join("assets");
    let weights = assets.join("demo_pointpillar.safetensors");
    let mut scans = expand_scan_paths(&[assets.join("scans/synthetic")]).ok()?;
    scans.truncate(DEMO_SCANS);
    scans.extend(expand_scan_paths(&[assets.join("scans/kitti")]).unwrap_or_default());
    weights.is_file().then_some(OpenRequest {
        config: None,
        weights,
        scans,
    })
}

/// A button that is disabled, with the reason on hover, while `why_not` says it cannot be
/// used (instead of failing when pressed); `hover` explains it otherwise.
fn action_button(ui: &mut egui::Ui, label: &str, hover: &str, why_not: Option<String>) -> bool {
    let response = ui.add_enabled(why_not.is_none(), egui::Button::new(label));
    let response = match why_not {
        Some(why) => response.on_disabled_hover_text(why),
        None if !hover.is_empty() => response.on_hover_text(hover),
        None => response,
    };
    response.clicked()
}

fn file_name(p: &std::path::Path) -> String {
    p.file_name().map_or_else(
        || p.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// 1234567 -> "1.23 M".
pub fn si(v: f64) -> String {
    let a = v.abs();
    if a >= 1e9 {
        format!("{:.2} G", v / 1e9)
    } else if a >= 1e6 {
        format!("{:.2} M", v / 1e6)
    } else if a >= 1e3 {
        format!("{:.1} k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}
