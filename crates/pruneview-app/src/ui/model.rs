//! The model panel: architecture, classes, files and sizes of the open model.

use eframe::egui;

use super::{PruneviewApp, file_name, si};

impl PruneviewApp {
    pub(super) fn model_panel(&mut self, ui: &mut egui::Ui) {
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
                let flops = self.state.layer_flops();
                ui.label("params");
                ui.label(format!(
                    "{} ({} in {} prunable layers)",
                    si(m.total_params as f64),
                    si(prunable as f64),
                    m.layers.len()
                ));
                ui.end_row();
                if let Some(f) = flops {
                    ui.label("FLOPs / scan");
                    ui.label(format!("{}FLOPs (prunable layers)", si(f.total())))
                        .on_hover_text(format!("prunable layers, {}", f.source));
                    ui.end_row();
                }
            });
    }
}
