//! The calibration panel: the scans the curves are measured on, and the curve controls.

use eframe::egui;
use pruneview_core::prune::Weighting;

use super::{PruneviewApp, action_button, help, si};
use crate::state::{Action, Pick};

impl PruneviewApp {
    pub(super) fn calibration_panel(&mut self, ui: &mut egui::Ui) {
        ui.heading("Calibration scans");
        ui.horizontal(|ui| {
            if ui.button("Add scans...").clicked() {
                self.state.pick(Pick::Scans);
            }
            if ui.button("Add folder...").clicked() {
                self.state.pick(Pick::ScanFolder);
            }
        });
        if !self.state.pending_scans.is_empty() {
            let names: Vec<String> = self
                .state
                .pending_scans
                .iter()
                .map(|p| p.display().to_string())
                .collect();
            ui.colored_label(
                egui::Color32::YELLOW,
                format!(
                    "{} scan path(s) wait for a model: they load with the next one opened",
                    names.len()
                ),
            )
            .on_hover_text(names.join("\n"));
        }
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
                let labels = self.state.scan_labels();
                for (i, (s, label)) in self.state.scans.iter().zip(&labels).enumerate() {
                    let selected = self.state.selected_scan == i;
                    if ui
                        .selectable_label(selected, label)
                        .on_hover_text(s.path.display().to_string())
                        .clicked()
                    {
                        self.state.selected_scan = i;
                    }
                    let points = si((s.points.len() / s.num_features.max(1)) as f64);
                    if s.non_finite_dropped > 0 {
                        ui.colored_label(egui::Color32::YELLOW, format!("{points} !"))
                            .on_hover_text(format!(
                                "{} points with NaN or infinite values were dropped",
                                s.non_finite_dropped
                            ));
                    } else {
                        ui.label(points);
                    }
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
            ui.label("distortion").on_hover_text(
                "What the curves compare between the dense and the pruned outputs \
                 (recompute the curves after changing it)",
            );
            let w = &mut self.state.settings.weighting;
            ui.radio_value(w, Weighting::Detection, "detection")
                .on_hover_text(help::DETECTION);
            ui.radio_value(w, Weighting::Raw, "raw")
                .on_hover_text(help::RAW);
        });
        ui.horizontal(|ui| {
            let recompute = self.state.curves.is_some();
            let (label, hover) = if recompute {
                (
                    "Recompute curves",
                    "compute afresh, replacing the cached curves",
                )
            } else {
                ("Compute curves", "")
            };
            if action_button(
                ui,
                label,
                hover,
                self.state.unavailable(Action::ComputeCurves),
            ) {
                if recompute {
                    self.state.recompute_curves();
                } else {
                    self.state.compute_curves();
                }
            }
            if action_button(
                ui,
                "Measure curves",
                "prune each layer alone at 10..90% and re-run the scans (slow)",
                self.state.unavailable(Action::MeasureCurves),
            ) {
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
}
