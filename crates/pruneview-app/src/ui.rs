//! The window: a menu bar, the model and calibration panel (left), the budget panel (right),
//! jobs and messages (bottom), and the 3D view above the curves and frontier plots (centre).
//! Every panel draws [`State`] and turns clicks into calls on it; none waits on model work.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use eframe::egui;
use eframe::egui_wgpu::RenderState;

use pruneview_core::prune::alloc::{Constraint, KindName, Method};
use pruneview_core::prune::export;
use pruneview_core::prune::{BudgetKind, Weighting};

use super::plots::{self, ApPoint, FrontierSeries, LayerCurvePlot};
use super::state::{Level, Pick, Settings, State};
use super::view3d::{Box3d, ColorBy, Projection, View3d};
use super::work::OpenRequest;
use pruneview_core::session::model::LoadedModel;
use pruneview_core::session::plan::BASELINES;
use pruneview_core::session::recover::Recovery;
use pruneview_core::session::scans::expand_scan_paths;

/// Colours of the three box sets in the 3D view (and their legend).
pub const GT_COLOR: egui::Color32 = egui::Color32::from_rgb(80, 220, 80);
pub const DENSE_COLOR: egui::Color32 = egui::Color32::from_rgb(70, 150, 255);
pub const PRUNED_COLOR: egui::Color32 = egui::Color32::from_rgb(255, 140, 30);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SortKey {
    Order,
    Name,
    Params,
    Flops,
    Sparsity,
}

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
}

/// The app: its state, the 3D view and the UI's own bits.
pub struct PruneviewApp {
    pub state: State,
    pub view: View3d,
    ui: UiState,
}

impl PruneviewApp {
    /// `ctx` is woken by jobs when they progress or finish.
    pub fn new(settings: Settings, ctx: &egui::Context) -> PruneviewApp {
        let c = ctx.clone();
        let mut view = View3d::new();
        view.set_color_by(settings.color_by);
        view.set_projection(settings.projection);
        PruneviewApp {
            state: State::new(settings, Arc::new(move || c.request_repaint())),
            view,
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
            },
        }
    }

    pub fn open_export_dialog(&mut self) {
        self.ui.export_open = true;
    }

    /// Draws the whole window into `ui`. `rs` is eframe's wgpu state (the 3D view needs it).
    pub fn show(&mut self, ui: &mut egui::Ui, rs: Option<&RenderState>) {
        let start = Instant::now();
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
        egui::Panel::bottom("jobs")
            .resizable(true)
            .default_size(130.0)
            .show(ui, |ui| self.jobs_panel(ui));
        egui::Panel::left("model")
            .resizable(true)
            .default_size(400.0)
            .max_size(560.0)
            .show(ui, |ui| {
                egui::ScrollArea::vertical().show(ui, |ui| {
                    self.model_panel(ui);
                    ui.separator();
                    self.calibration_panel(ui);
                    ui.separator();
                    if let Some(m) = self.state.model.clone() {
                        self.layer_table(ui, &m);
                    }
                });
            });
        egui::Panel::right("budget")
            .resizable(true)
            .default_size(340.0)
            .max_size(480.0)
            .show(ui, |ui| {
                egui::ScrollArea::vertical().show(ui, |ui| self.budget_panel(ui));
            });
        egui::Panel::bottom("plots")
            .resizable(true)
            .default_size(280.0)
            .show(ui, |ui| self.plots(ui));
        egui::CentralPanel::default().show(ui, |ui| self.scene(ui, rs));

        if self.ui.export_open {
            self.export_dialog(ui.ctx());
        }
        self.ui.ui_ms = start.elapsed().as_secs_f32() * 1e3;
        if self.state.settings.debug_overlay {
            self.debug_overlay(ui.ctx());
        }
    }

    // ------------------------------------------------------------------------------------

    fn menu_bar(&mut self, ui: &mut egui::Ui) {
        egui::MenuBar::new().ui(ui, |ui| {
            ui.menu_button("File", |ui| {
                if ui.button("Open model (.safetensors)...").clicked() {
                    self.state.pick(Pick::Model);
                }
                if ui.button("Open config (.yaml)...").clicked() {
                    self.state.pick(Pick::Config);
                }
                if ui.button("Add scans...").clicked() {
                    self.state.pick(Pick::Scans);
                }
                if ui.button("Add scan folder...").clicked() {
                    self.state.pick(Pick::ScanFolder);
                }
                if ui.button("Open the demo").clicked() {
                    match demo_request() {
                        Some(r) => self.state.open(r),
                        None => self.state.error("the bundled demo (assets/) was not found"),
                    }
                }
                ui.separator();
                if ui.button("Export...").clicked() {
                    self.ui.export_open = true;
                }
            });
            ui.menu_button("View", |ui| {
                ui.checkbox(
                    &mut self.state.settings.debug_overlay,
                    "Debug overlay (frame time)",
                );
            });
            ui.separator();
            ui.label(self.status_line());
        });
    }

    fn status_line(&self) -> String {
        let s = &self.state;
        match &s.model {
            None if s.jobs.is_running(super::jobs::JobKind::LoadModel) => "loading model...".into(),
            None => "no model: File > Open model, or drop a .safetensors on the window".into(),
            Some(m) => format!(
                "{} | {} scans | {}",
                m.info.name,
                s.scans.len(),
                if s.curves.is_none() {
                    "no curves yet"
                } else if s.curves_stale() {
                    "curves from other scans"
                } else {
                    "curves ready"
                }
            ),
        }
    }

    // ------------------------------------------------------------------------------------
    // model panel

    fn model_panel(&mut self, ui: &mut egui::Ui) {
        ui.heading("Model");
        let Some(m) = self.state.model.clone() else {
            ui.label("No model open.");
            return;
        };
        egui::Grid::new("model-facts")
            .num_columns(2)
            .show(ui, |ui| {
                ui.label("architecture");
                ui.label(m.architecture());
                ui.end_row();
                ui.label("classes");
                ui.label(m.classes());
                ui.end_row();
                ui.label("weights");
                ui.add(egui::Label::new(file_name(&m.weights_path)).truncate())
                    .on_hover_text(format!(
                        "{}\nsha256 {}",
                        m.weights_path.display(),
                        m.info.weights_sha256
                    ));
                ui.end_row();
                if let Some(c) = &m.config_path {
                    ui.label("config");
                    ui.add(egui::Label::new(file_name(c)).truncate())
                        .on_hover_text(c.display().to_string());
                    ui.end_row();
                }
                let prunable: usize = m.layers.iter().map(|l| l.params).sum();
                let flops: f64 = m.layers.iter().map(|l| l.flops).sum();
                ui.label("params");
                ui.label(format!(
                    "{} ({} in {} prunable layers)",
                    si(m.total_params as f64),
                    si(prunable as f64),
                    m.layers.len()
                ));
                ui.end_row();
                ui.label("FLOPs / scan");
                ui.label(format!("{}FLOPs (prunable layers, mean scan)", si(flops)));
                ui.end_row();
            });
    }

    fn layer_table(&mut self, ui: &mut egui::Ui, m: &LoadedModel) {
        let total_flops: f64 = m.layers.iter().map(|l| l.flops).sum::<f64>().max(1e-9);
        let sparsity = self.current_sparsity();
        let mut rows: Vec<usize> = (0..m.layers.len()).collect();
        let key = |i: &usize| -> f64 {
            let l = &m.layers[*i];
            match self.ui.sort {
                SortKey::Order | SortKey::Name => *i as f64,
                SortKey::Params => l.params as f64,
                SortKey::Flops => l.flops,
                SortKey::Sparsity => sparsity.as_ref().map_or(0.0, |s| s[*i]),
            }
        };
        if self.ui.sort == SortKey::Name {
            rows.sort_by(|a, b| m.layers[*a].name.cmp(&m.layers[*b].name));
        } else {
            rows.sort_by(|a, b| key(a).total_cmp(&key(b)));
        }
        if self.ui.descending {
            rows.reverse();
        }
        ui.label("Layers (click a header to sort, a row to constrain it)");
        egui::Grid::new("layers")
            .striped(true)
            .num_columns(6)
            .show(ui, |ui| {
                for (label, k) in [
                    ("#", SortKey::Order),
                    ("layer", SortKey::Name),
                    ("params", SortKey::Params),
                    ("FLOPs", SortKey::Flops),
                    ("sparsity", SortKey::Sparsity),
                ] {
                    let arrow = if self.ui.sort == k {
                        if self.ui.descending { " v" } else { " ^" }
                    } else {
                        ""
                    };
                    if ui.button(format!("{label}{arrow}")).clicked() {
                        if self.ui.sort == k {
                            self.ui.descending = !self.ui.descending;
                        } else {
                            self.ui.sort = k;
                            self.ui.descending = false;
                        }
                    }
                }
                ui.label("lock");
                ui.end_row();
                for &i in &rows {
                    let l = &m.layers[i];
                    let c = self.state.settings.constraints.get(&l.name).copied();
                    let selected = self.ui.selected_layer == Some(i);
                    ui.label(i.to_string());
                    let short = l.name.trim_end_matches(".weight");
                    let mut text = egui::RichText::new(short);
                    if self.ui.hovered_layer == Some(i) {
                        text = text.strong();
                    }
                    if ui
                        .selectable_label(selected, text)
                        .on_hover_text(format!("{} {:?}", l.name, l.shape))
                        .clicked()
                    {
                        self.ui.selected_layer = if selected { None } else { Some(i) };
                    }
                    ui.label(si(l.params as f64));
                    ui.label(format!("{:.1}%", 100.0 * l.flops / total_flops));
                    ui.label(
                        sparsity
                            .as_ref()
                            .map_or("-".into(), |s| format!("{:.0}%", 100.0 * s[i])),
                    );
                    let mut locked = c.is_some_and(|c| c.locked);
                    if ui.checkbox(&mut locked, "").changed() {
                        self.state
                            .settings
                            .constraints
                            .entry(l.name.clone())
                            .or_default()
                            .locked = locked;
                        self.state.planning_inputs_changed();
                    }
                    ui.end_row();
                }
            });
        if let Some(i) = self.ui.selected_layer.filter(|&i| i < m.layers.len()) {
            self.constraint_editor(ui, &m.layers[i].name);
        }
    }

    fn constraint_editor(&mut self, ui: &mut egui::Ui, name: &str) {
        ui.group(|ui| {
            ui.label(format!("Constraints of {name}"));
            let mut c = self
                .state
                .settings
                .constraints
                .get(name)
                .copied()
                .unwrap_or_default();
            let before = c;
            ui.checkbox(&mut c.locked, "locked (stays dense)");
            ui.add_enabled_ui(!c.locked, |ui| {
                ui.add(
                    egui::Slider::new(&mut c.min_sparsity, 0.0..=1.0)
                        .text("min sparsity")
                        .fixed_decimals(2),
                );
                ui.add(
                    egui::Slider::new(&mut c.max_sparsity, 0.0..=1.0)
                        .text("max sparsity")
                        .fixed_decimals(2),
                );
            });
            if c.min_sparsity > c.max_sparsity {
                c.max_sparsity = c.min_sparsity;
            }
            if ui.button("clear").clicked() {
                c = Constraint::default();
            }
            if c != before {
                if c == Constraint::default() {
                    self.state.settings.constraints.remove(name);
                } else {
                    self.state.settings.constraints.insert(name.to_string(), c);
                }
                self.state.planning_inputs_changed();
            }
        });
    }

    fn current_sparsity(&self) -> Option<Vec<f64>> {
        let cur = self.state.current.as_ref()?;
        cur.dp.as_ref().ok().map(|s| s.sparsity.clone())
    }

    // ------------------------------------------------------------------------------------
    // calibration panel

    fn calibration_panel(&mut self, ui: &mut egui::Ui) {
        ui.heading("Calibration scans");
        ui.horizontal(|ui| {
            if ui.button("Add scans...").clicked() {
                self.state.pick(Pick::Scans);
            }
            if ui.button("Add folder...").clicked() {
                self.state.pick(Pick::ScanFolder);
            }
        });
        let mut remove = None;
        egui::ScrollArea::vertical()
            .id_salt("scan-list")
            .max_height(170.0)
            .show(ui, |ui| self.scan_list(ui, &mut remove));
        if let Some(i) = remove {
            self.state.remove_scan(i);
        }
        self.curve_controls(ui);
    }

    fn scan_list(&mut self, ui: &mut egui::Ui, remove: &mut Option<usize>) {
        egui::Grid::new("scans")
            .striped(true)
            .num_columns(5)
            .show(ui, |ui| {
                ui.label("scan");
                ui.label("points");
                ui.label("pillars");
                ui.label("labels");
                ui.label("");
                ui.end_row();
                for (i, s) in self.state.scans.iter().enumerate() {
                    let selected = self.state.selected_scan == i;
                    if ui
                        .selectable_label(selected, &s.id)
                        .on_hover_text(s.path.display().to_string())
                        .clicked()
                    {
                        self.state.selected_scan = i;
                    }
                    ui.label(si((s.points.len() / s.num_features.max(1)) as f64));
                    ui.label(s.pillars.to_string());
                    ui.label(s.gt.as_ref().map_or("-".into(), |g| g.len().to_string()));
                    if ui.small_button("x").on_hover_text("remove").clicked() {
                        *remove = Some(i);
                    }
                    ui.end_row();
                }
            });
    }

    fn curve_controls(&mut self, ui: &mut egui::Ui) {
        ui.label("Curves");
        ui.horizontal(|ui| {
            ui.label("probes per scan");
            ui.add(egui::DragValue::new(&mut self.state.settings.probes).range(1..=32));
        });
        ui.horizontal(|ui| {
            ui.label("distortion");
            let w = &mut self.state.settings.weighting;
            ui.radio_value(w, Weighting::Detection, "detection")
                .on_hover_text("scores after the sigmoid, box errors weighted by confidence");
            ui.radio_value(w, Weighting::Raw, "raw")
                .on_hover_text("every logit and regression value equally (the paper's form)");
        });
        ui.horizontal(|ui| {
            let label = if self.state.curves.is_some() {
                "Recompute curves"
            } else {
                "Compute curves"
            };
            if ui.button(label).clicked() {
                self.state.compute_curves();
            }
            if ui
                .button("Measure curves")
                .on_hover_text("prune each layer alone at 10..90% and re-run the scans (slow)")
                .clicked()
            {
                self.state.measure_curves();
            }
        });
        if self.state.curves_stale() {
            ui.colored_label(
                egui::Color32::YELLOW,
                "The curves were computed on other scans: recompute them.",
            );
        }
    }

    // ------------------------------------------------------------------------------------
    // jobs and messages

    fn jobs_panel(&mut self, ui: &mut egui::Ui) {
        ui.columns(2, |cols| {
            let ui = &mut cols[0];
            ui.heading("Jobs");
            if self.state.jobs.is_idle() {
                ui.label("idle");
            }
            let mut cancel = None;
            for job in self.state.jobs.running() {
                ui.horizontal(|ui| {
                    let (done, total, msg) = job.progress();
                    let eta = job
                        .eta()
                        .map_or(String::new(), |d| format!(", ETA {:.0} s", d.as_secs_f64()));
                    let text = if total > 0 {
                        format!("{} {done}/{total}{eta} {msg}", job.title)
                    } else {
                        format!("{} {msg}", job.title)
                    };
                    let bar = egui::ProgressBar::new(job.fraction().unwrap_or(0.0))
                        .text(text)
                        .desired_width(ui.available_width() - 70.0);
                    ui.add(if job.fraction().is_none() {
                        bar.animate(true)
                    } else {
                        bar
                    });
                    if ui.button("cancel").clicked() {
                        cancel = Some(job.id);
                    }
                });
            }
            if let Some(id) = cancel {
                self.state.jobs.cancel(id);
            }
            let ui = &mut cols[1];
            ui.horizontal(|ui| {
                ui.heading("Messages");
                if ui.small_button("clear").clicked() {
                    self.state.messages.clear();
                }
            });
            egui::ScrollArea::vertical()
                .stick_to_bottom(true)
                .show(ui, |ui| {
                    for m in &self.state.messages {
                        match m.level {
                            Level::Info => ui.label(&m.text),
                            Level::Error => ui.colored_label(egui::Color32::LIGHT_RED, &m.text),
                        };
                    }
                });
        });
    }

    // ------------------------------------------------------------------------------------
    // budget panel

    fn budget_panel(&mut self, ui: &mut egui::Ui) {
        ui.heading("Budget");
        let s = &mut self.state.settings;
        let mut replan = false;
        ui.horizontal(|ui| {
            ui.label("keep");
            replan |= ui
                .radio_value(&mut s.budget_kind, BudgetKind::Flops, "FLOPs")
                .changed();
            replan |= ui
                .radio_value(&mut s.budget_kind, BudgetKind::Params, "params")
                .changed();
        });
        let mut pct = s.keep * 100.0;
        let slider = ui.add(
            egui::Slider::new(&mut pct, 1.0..=100.0)
                .suffix("%")
                .fixed_decimals(1)
                .text("kept"),
        );
        if slider.changed() {
            s.keep = (pct / 100.0).clamp(0.01, 1.0);
            self.state.budget_changed();
        }
        ui.label(format!(
            "{:.2}x fewer {}",
            1.0 / self.state.settings.keep.max(1e-6),
            KindName(self.state.settings.budget_kind)
        ));
        if let Some(c) = &self.state.current {
            for w in &c.warnings {
                ui.colored_label(
                    egui::Color32::from_rgb(255, 170, 60),
                    format!("warning: {w}"),
                );
            }
        }
        ui.horizontal(|ui| {
            ui.label("compare with");
            let current = self.state.settings.compare.clone();
            egui::ComboBox::from_id_salt("compare")
                .selected_text(current.clone().unwrap_or("none".into()))
                .show_ui(ui, |ui| {
                    let c = &mut self.state.settings.compare;
                    ui.selectable_value(c, None, "none");
                    for m in BASELINES {
                        ui.selectable_value(c, Some(m.name().to_string()), m.name());
                    }
                });
            if self.state.settings.compare != current {
                self.state.budget_changed();
            }
        });
        ui.separator();
        ui.label("Group weights (lambda)");
        let l = &mut self.state.settings.lambdas;
        let a = ui.add(
            egui::Slider::new(&mut l.confidence, 0.0..=10.0)
                .logarithmic(true)
                .text("confidence"),
        );
        let b = ui.add(
            egui::Slider::new(&mut l.locality, 0.0..=10.0)
                .logarithmic(true)
                .text("locality"),
        );
        if a.drag_stopped()
            || b.drag_stopped()
            || (a.changed() && !a.dragged())
            || (b.changed() && !b.dragged())
        {
            replan = true;
        }
        if replan {
            self.state.planning_inputs_changed();
        }
        if self.state.is_planning() {
            ui.label("updating the frontier...");
        }
        ui.separator();
        self.recovery_control(ui);
        ui.separator();
        self.totals(ui);
        ui.separator();
        self.allocation_chart(ui);
        ui.separator();
        ui.horizontal(|ui| {
            if ui
                .button("Evaluate")
                .on_hover_text("KITTI AP of the dense and the pruned model on the labelled scans")
                .clicked()
            {
                self.state.evaluate();
            }
            if ui.button("Export...").clicked() {
                self.ui.export_open = true;
            }
        });
        for p in &self.state.eval_points {
            ui.label(format!(
                "{} {:.0}%, recovery {}: AP_BEV {:.2} (dense {:.2}), {} frames",
                p.method,
                p.keep * 100.0,
                p.recovery.label(),
                p.accuracy.pruned.mean_bev,
                p.accuracy.dense.mean_bev,
                p.accuracy.frames
            ));
        }
    }

    /// None / statistics / full: what the shown detections, Evaluate and Export use. Full
    /// recovery is a background job (Recover), shown as statistics until it has run.
    fn recovery_control(&mut self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| {
            ui.label("recovery").on_hover_text(
                "How the pruned weights are repaired, without labels, on the calibration scans: \
                 none (masks only), statistics (BatchNorm re-estimated, seconds) or full \
                 (statistics, weight reconstruction and distillation, minutes)",
            );
            let before = self.state.settings.recovery;
            for r in Recovery::ALL {
                ui.radio_value(&mut self.state.settings.recovery, r, r.label());
            }
            if self.state.settings.recovery != before {
                self.state.recovery_changed();
            }
        });
        if self.state.settings.recovery != Recovery::Full {
            return;
        }
        let sparsity = self
            .state
            .current
            .as_ref()
            .and_then(|c| c.dp.as_ref().ok())
            .map(|s| s.sparsity.clone());
        let done = sparsity
            .as_deref()
            .is_some_and(|s| self.state.recovered_for(s).is_some());
        ui.horizontal(|ui| {
            let running = self.state.is_recovering();
            let button = ui.add_enabled(
                sparsity.is_some() && !running && !done,
                egui::Button::new("Recover"),
            );
            if button
                .on_hover_text(
                    "Full recovery of this allocation (progress and cancel in the jobs list)",
                )
                .clicked()
            {
                self.state.recover();
            }
            ui.add(
                egui::DragValue::new(&mut self.state.settings.distill_steps)
                    .range(0..=10_000)
                    .suffix(" steps"),
            )
            .on_hover_text("Distillation steps (Adam): more steps recover more, linearly slower");
            ui.label(if done {
                "recovered: shown, evaluated and exported"
            } else if running {
                "recovering..."
            } else {
                "not recovered yet: showing statistics repair"
            });
        });
    }

    fn totals(&self, ui: &mut egui::Ui) {
        let Some(cur) = &self.state.current else {
            ui.label(if self.state.curves.is_none() {
                "The allocation appears when the curves are ready."
            } else {
                "Preparing the frontier..."
            });
            return;
        };
        let dense_flops = self
            .state
            .planner
            .as_ref()
            .map_or(0.0, |p| p.problem.totals().0);
        egui::Grid::new("totals").num_columns(3).show(ui, |ui| {
            ui.label("");
            ui.strong("dp");
            if let Some((m, _)) = &cur.compare {
                ui.strong(m.name());
            }
            ui.end_row();
            let cell = |row: usize, s: &pruneview_core::prune::alloc::Solution| match row {
                0 => format!("{:.1}%", 100.0 * s.flops_kept),
                1 => format!("{:.2}", s.flops / 1e9),
                2 => format!("{:.1}%", 100.0 * s.params_kept),
                _ => format!("{:.3e}", s.predicted),
            };
            for (row, label) in ["FLOPs kept", "GFLOPs", "params kept", "predicted D"]
                .into_iter()
                .enumerate()
            {
                ui.label(label);
                match &cur.dp {
                    Ok(s) => ui.label(cell(row, s)),
                    Err(e) => ui
                        .colored_label(egui::Color32::LIGHT_RED, "-")
                        .on_hover_text(e),
                };
                if let Some((_, r)) = &cur.compare {
                    match r {
                        Ok(s) => ui.label(cell(row, s)),
                        Err(e) => ui.label("-").on_hover_text(e),
                    };
                }
                ui.end_row();
            }
        });
        if let Err(e) = &cur.dp {
            ui.colored_label(egui::Color32::LIGHT_RED, e);
        }
        ui.label(format!("dense: {:.2} GFLOPs per scan", dense_flops / 1e9));
    }

    fn allocation_chart(&self, ui: &mut egui::Ui) {
        let (Some(cur), Some(p)) = (&self.state.current, &self.state.planner) else {
            return;
        };
        let Ok(dp) = &cur.dp else { return };
        let names: Vec<&str> = p
            .problem
            .layers
            .iter()
            .map(|l| l.name.trim_end_matches(".weight"))
            .collect();
        let locked: Vec<bool> = p.problem.constraints.iter().map(|c| c.locked).collect();
        let compare = cur
            .compare
            .as_ref()
            .and_then(|(m, r)| r.as_ref().ok().map(|s| (m.name(), s.sparsity.as_slice())));
        ui.label("Per-layer sparsity");
        ui.allocate_ui(egui::vec2(ui.available_width(), 240.0), |ui| {
            plots::allocation_bars(ui, "allocation", &names, &dp.sparsity, compare, &locked);
        });
    }

    // ------------------------------------------------------------------------------------
    // plots

    fn plots(&mut self, ui: &mut egui::Ui) {
        if ui.available_width() < 200.0 {
            return;
        }
        let Some(curves) = self.state.curves.clone() else {
            ui.centered_and_justified(|ui| {
                ui.label("Curves appear here when they are computed.");
            });
            return;
        };
        let lambdas = self.state.settings.lambdas;
        let sparsity = self.current_sparsity();
        let measured: Vec<Vec<f64>> = curves
            .layers
            .iter()
            .map(|l| l.measured.values().combined(lambdas))
            .collect();
        let layers: Vec<LayerCurvePlot> = curves
            .layers
            .iter()
            .enumerate()
            .map(|(i, l)| LayerCurvePlot {
                name: l.name.trim_end_matches(".weight"),
                levels: &l.sparsity,
                predicted: l.distortion.combined(lambdas),
                measured: (!l.measured.is_empty()).then(|| {
                    let lv: &[f64] = if l.measured.sparsity.is_empty() {
                        &l.sparsity
                    } else {
                        &l.measured.sparsity
                    };
                    (lv, measured[i].clone())
                }),
                chosen: sparsity.as_ref().map(|s| s[i]),
            })
            .collect();
        let planner = self.state.planner.clone();
        let cur = self.state.current.clone();
        let eval = self.state.eval_points.clone();
        ui.columns(2, |cols| {
            cols[0].label("Distortion vs sparsity per layer (hover to pick a layer)");
            self.ui.hovered_layer =
                plots::curves_plot(&mut cols[0], "curves", &layers, self.ui.selected_layer);
            cols[1].label("Frontier: predicted distortion vs budget kept");
            if let Some(p) = &planner {
                let series: Vec<FrontierSeries> = p
                    .series
                    .iter()
                    .map(|(m, pts)| FrontierSeries {
                        method: m.name(),
                        points: pts,
                        emphasised: *m == Method::Dp,
                    })
                    .collect();
                let current = cur
                    .as_ref()
                    .and_then(|c| c.dp.as_ref().ok().map(|s| (c.keep, s.predicted)));
                let mut ap: Vec<ApPoint> = Vec::new();
                let names: Vec<String> = eval
                    .iter()
                    .map(|e| match e.recovery {
                        Recovery::None => e.method.name().to_string(),
                        r => format!("{} + {}", e.method.name(), r.label()),
                    })
                    .collect();
                for (e, name) in eval.iter().zip(&names) {
                    ap.push(ApPoint {
                        method: "dense",
                        keep: 1.0,
                        ap: e.accuracy.dense.mean_bev,
                    });
                    ap.push(ApPoint {
                        method: name,
                        keep: e.keep,
                        ap: e.accuracy.pruned.mean_bev,
                    });
                }
                plots::frontier_plot(&mut cols[1], "frontier", &series, current, &ap);
            }
        });
    }

    // ------------------------------------------------------------------------------------
    // 3D view

    fn scene(&mut self, ui: &mut egui::Ui, rs: Option<&RenderState>) {
        let mut changed_view = false;
        ui.horizontal_wrapped(|ui| {
            let s = &mut self.state.settings;
            let names: Vec<String> = self.state.scans.iter().map(|s| s.id.clone()).collect();
            let sel = &mut self.state.selected_scan;
            egui::ComboBox::from_id_salt("scan")
                .selected_text(names.get(*sel).cloned().unwrap_or("no scan".into()))
                .show_ui(ui, |ui| {
                    for (i, n) in names.iter().enumerate() {
                        ui.selectable_value(sel, i, n);
                    }
                });
            changed_view |= ui
                .selectable_value(&mut s.color_by, ColorBy::Height, "height")
                .changed();
            changed_view |= ui
                .selectable_value(&mut s.color_by, ColorBy::Intensity, "intensity")
                .changed();
            ui.separator();
            changed_view |= ui
                .selectable_value(&mut s.projection, Projection::Perspective, "perspective")
                .changed();
            changed_view |= ui
                .selectable_value(&mut s.projection, Projection::BirdsEye, "bird's-eye")
                .changed();
            if ui.button("reset camera").clicked() {
                self.view.reset_camera();
            }
            ui.separator();
            ui.checkbox(
                &mut s.show_gt,
                egui::RichText::new("ground truth").color(GT_COLOR),
            );
            ui.checkbox(
                &mut s.show_dense,
                egui::RichText::new("dense").color(DENSE_COLOR),
            );
            ui.checkbox(
                &mut s.show_pruned,
                egui::RichText::new("pruned").color(PRUNED_COLOR),
            );
            ui.add(
                egui::Slider::new(&mut s.score_threshold, 0.0..=1.0)
                    .text("score")
                    .fixed_decimals(2),
            );
            if ui.button("save screenshot").clicked() {
                self.save_screenshot(rs);
            }
        });
        if changed_view {
            self.view.set_color_by(self.state.settings.color_by);
            self.view.set_projection(self.state.settings.projection);
        }
        self.sync_view();
        if let Some(s) = self.state.selected() {
            let pruned = if self.state.pruned_is_current() {
                let p = self.state.pruned.as_ref().map_or(0, |p| p.detections.len());
                let ms = self.state.pruned.as_ref().map_or(0.0, |p| p.ms);
                format!("pruned {p} boxes ({ms:.0} ms)")
            } else if self.state.current.is_some() {
                "pruned: updating...".into()
            } else {
                "pruned: waiting for the curves".into()
            };
            ui.label(format!(
                "{}: {} points, dense {} boxes ({:.0} ms), {}",
                s.id,
                s.points.len() / s.num_features.max(1),
                s.dense.len(),
                s.dense_ms,
                pruned
            ));
        }
        self.view.ui(ui, rs);
    }

    /// Gives the 3D view the selected scan and the boxes to draw, when they changed.
    fn sync_view(&mut self) {
        let Some(scan) = self.state.selected() else {
            if self.ui.view_scan.take().is_some() {
                self.view.clear_points();
                self.view.set_boxes(Vec::new());
                self.ui.view_boxes.clear();
            }
            return;
        };
        if self.ui.view_scan.as_ref() != Some(&scan.path) {
            self.view.set_points(scan.points.clone(), scan.num_features);
            self.ui.view_scan = Some(scan.path.clone());
        }
        let s = &self.state.settings;
        let names = self
            .state
            .model
            .as_ref()
            .map(|m| m.det.config.class_names.clone())
            .unwrap_or_default();
        let class = |label: usize| {
            names
                .get(label.wrapping_sub(1))
                .cloned()
                .unwrap_or("?".into())
        };
        let mut boxes = Vec::new();
        if s.show_gt {
            for g in scan.gt.iter().flatten() {
                boxes.push(Box3d {
                    bbox: g.bbox,
                    color: GT_COLOR,
                    label: g.class.clone(),
                });
            }
        }
        let mut dets = |dets: &[pruneview_core::detect::Detection], color| {
            for d in dets.iter().filter(|d| d.score >= s.score_threshold) {
                boxes.push(Box3d {
                    bbox: d.bbox,
                    color,
                    label: format!("{} {:.2}", class(d.label), d.score),
                });
            }
        };
        if s.show_dense {
            dets(&scan.dense, DENSE_COLOR);
        }
        if s.show_pruned
            && let Some(p) = &self.state.pruned
            && p.scan_id == scan.id
        {
            dets(&p.detections, PRUNED_COLOR);
        }
        if boxes != self.ui.view_boxes {
            self.view.set_boxes(boxes.clone());
            self.ui.view_boxes = boxes;
        }
    }

    fn save_screenshot(&mut self, rs: Option<&RenderState>) {
        let Some(rs) = rs else {
            self.state.error("screenshots need the wgpu renderer");
            return;
        };
        let id = self
            .state
            .selected()
            .map_or("view".into(), |s| s.id.clone());
        let dir = self.state.settings.export.dir.clone();
        let path = dir.join(format!("screenshot-{}.png", id.replace('.', "_")));
        let result = self.view.render_image(rs, 1600, 900).and_then(|img| {
            std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
            img.save(&path).map_err(|e| e.to_string())
        });
        match result {
            Ok(()) => self.state.info(format!("saved {}", path.display())),
            Err(e) => self.state.error(format!("{}: {e}", path.display())),
        }
    }

    // ------------------------------------------------------------------------------------
    // export dialog

    fn export_dialog(&mut self, ctx: &egui::Context) {
        let mut open = true;
        egui::Window::new("Export")
            .open(&mut open)
            .pivot(egui::Align2::CENTER_CENTER)
            .default_pos(ctx.content_rect().center())
            .collapsible(false)
            .resizable(false)
            .show(ctx, |ui| {
                let ready = self.state.current.as_ref().is_some_and(|c| c.dp.is_ok());
                if let Some(c) = &self.state.current {
                    ui.label(format!(
                        "The DP allocation at {:.1}% of the {} kept.",
                        c.keep * 100.0,
                        KindName(c.kind)
                    ));
                }
                let e = &mut self.state.settings.export;
                ui.horizontal(|ui| {
                    ui.label("folder");
                    let mut dir = e.dir.display().to_string();
                    if ui.text_edit_singleline(&mut dir).changed() {
                        e.dir = dir.into();
                    }
                });
                let mut pick_dir = false;
                if ui.button("Choose folder...").clicked() {
                    pick_dir = true;
                }
                ui.checkbox(&mut e.masks, export::MASKS_FILE);
                ui.weak("    U8 masks, 1 = kept, same names and shapes as the weights: multiply them in PyTorch.");
                ui.checkbox(&mut e.pruned, export::PRUNED_FILE);
                ui.weak("    The pruned weights, recovered as the Budget panel's recovery says (zeros where the masks are 0). A dense tensor with zeros is NOT faster by itself: speed needs sparse kernels or structured pruning.");
                ui.checkbox(&mut e.allocation, export::ALLOCATION_FILE);
                ui.weak("    Per-layer sparsity, budget, lambdas and the weights' sha256 (pruneview-allocation/1).");
                ui.checkbox(&mut e.csv, export::CSV_FILE);
                ui.weak("    One row per layer: shape, params, FLOPs, sparsity, predicted distortion.");
                ui.checkbox(&mut e.curves, export::CURVES_FILE);
                ui.weak("    The distortion curves (pruneview-curves/1), to solve again later with the CLI.");
                let files = e.files();
                let existing: Vec<String> = files
                    .paths()
                    .into_iter()
                    .filter(|f| f.exists())
                    .map(|f| f.file_name().unwrap_or_default().to_string_lossy().into_owned())
                    .collect();
                if !existing.is_empty() {
                    ui.colored_label(
                        egui::Color32::YELLOW,
                        format!("will replace: {}", existing.join(", ")),
                    );
                }
                if pick_dir {
                    self.state.pick(Pick::ExportDir);
                }
                ui.add_enabled_ui(ready, |ui| {
                    if ui.button("Export").clicked() {
                        self.state.export();
                    }
                });
                if !ready {
                    ui.label("Nothing to export until the curves and an allocation exist.");
                }
            });
        self.ui.export_open = open;
    }

    fn debug_overlay(&self, ctx: &egui::Context) {
        let mut times: Vec<f32> = self.ui.frame_times.iter().copied().collect();
        times.sort_by(f32::total_cmp);
        let median = times.get(times.len() / 2).copied().unwrap_or(0.0);
        let worst = times.last().copied().unwrap_or(0.0);
        egui::Area::new(egui::Id::unique("debug-overlay"))
            .anchor(egui::Align2::RIGHT_TOP, egui::vec2(-8.0, 32.0))
            .show(ctx, |ui| {
                egui::Frame::popup(ui.style()).show(ui, |ui| {
                    if !times.is_empty() {
                        ui.monospace(format!(
                            "frame CPU {median:5.1} ms median, {worst:5.1} ms worst (last {})",
                            times.len()
                        ));
                    }
                    ui.monospace(format!("ui code {:5.1} ms", self.ui.ui_ms));
                    if let Some(r) = self.view.last_render_seconds() {
                        ui.monospace(format!("3D render {:5.1} ms", r * 1e3));
                    }
                    ui.monospace(format!("jobs running {}", self.state.jobs.running().len()));
                });
            });
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
