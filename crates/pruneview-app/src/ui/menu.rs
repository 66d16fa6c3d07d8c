//! The menu bar: opening files and the demo, export, the debug overlay, help, and the status
//! line.

use eframe::egui;

use super::{PruneviewApp, action_button, demo_request};
use crate::state::{Action, Pick};

impl PruneviewApp {
    pub(super) fn menu_bar(&mut self, ui: &mut egui::Ui) {
        egui::MenuBar::new().ui(ui, |ui| {
            ui.menu_button("File", |ui| {
                if ui.button("Open model (.safetensors)...").clicked() {
                    self.state.pick(Pick::Model);
                }
                if action_button(
                    ui,
                    "Open config (.yaml)...",
                    "",
                    self.state.unavailable(Action::OpenConfig),
                ) {
                    self.state.pick(Pick::Config);
                }
                if ui.button("Add scans...").clicked() {
                    self.state.pick(Pick::Scans);
                }
                if ui.button("Add scan folder...").clicked() {
                    self.state.pick(Pick::ScanFolder);
                }
                if ui
                    .button("Type a path...")
                    .on_hover_text(
                        "For a model, config, scans or the export folder, without a dialog",
                    )
                    .clicked()
                {
                    self.state.path_prompt = Some(Pick::Model);
                }
                if ui.button("Open the demo").clicked() {
                    match demo_request() {
                        Some(r) => self.state.open(r),
                        None => self.state.error("the bundled demo (assets/) was not found"),
                    }
                }
                ui.separator();
                if action_button(ui, "Export...", "", self.state.unavailable(Action::Export)) {
                    self.ui.export_open = true;
                }
            });
            ui.menu_button("View", |ui| {
                ui.checkbox(
                    &mut self.state.settings.debug_overlay,
                    "Debug overlay (frame time)",
                );
            });
            ui.menu_button("Help", |ui| self.help_menu(ui));
            ui.separator();
            ui.label(self.status_line());
        });
    }

    fn status_line(&self) -> String {
        let s = &self.state;
        match &s.model {
            None if s.jobs.is_running(crate::jobs::JobKind::LoadModel) => "loading model...".into(),
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
}
