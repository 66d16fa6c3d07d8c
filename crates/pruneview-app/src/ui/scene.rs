//! The centre: the 3D view, its toolbar (scan, colouring, projection, box sets, screenshot) and
//! the boxes it draws.

use eframe::egui;
use eframe::egui_wgpu::RenderState;

use super::PruneviewApp;
use crate::state::PrunedStatus;
use crate::view3d::{Box3d, ColorBy, Projection};

/// Colours of the three box sets in the 3D view (and their legend).
pub const GT_COLOR: egui::Color32 = egui::Color32::from_rgb(80, 220, 80);
pub const DENSE_COLOR: egui::Color32 = egui::Color32::from_rgb(70, 150, 255);
pub const PRUNED_COLOR: egui::Color32 = egui::Color32::from_rgb(255, 140, 30);

impl PruneviewApp {
    pub(super) fn scene(&mut self, ui: &mut egui::Ui, rs: Option<&RenderState>) {
        let mut changed_view = false;
        ui.horizontal_wrapped(|ui| {
            let names = self.state.scan_labels();
            let s = &mut self.state.settings;
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
            // A slider is a row of widgets, which egui does not wrap as a whole: give it a
            // new row when this one is too short, or it runs on under the Budget panel.
            let slider_width = ui.spacing().slider_width + 110.0;
            if ui.available_size_before_wrap().x < slider_width {
                ui.end_row();
            }
            ui.add(
                egui::Slider::new(&mut s.score_threshold, 0.0..=1.0)
                    .text("score")
                    .fixed_decimals(2),
            );
            if ui
                .add_enabled(
                    self.state.selected().is_some(),
                    egui::Button::new("save screenshot"),
                )
                .on_hover_text("The 3D view as shown, labels and legend included, as a PNG in the export folder")
                .clicked()
            {
                self.request_view_shot(ui.ctx());
            }
        });
        if changed_view {
            self.view.set_color_by(self.state.settings.color_by);
            self.view.set_projection(self.state.settings.projection);
        }
        self.sync_view();
        if let Some(s) = self.state.selected() {
            // Counted as drawn: the boxes at or above the score threshold.
            let t = self.state.settings.score_threshold;
            let above =
                |d: &[pruneview_core::detect::Detection]| d.iter().filter(|d| d.score >= t).count();
            let pruned = match self.state.pruned_status() {
                PrunedStatus::Shown => self.state.pruned.as_ref().map_or(String::new(), |p| {
                    format!("pruned {} ({:.0} ms)", above(&p.detections), p.ms)
                }),
                PrunedStatus::Updating => "pruned: updating...".into(),
                PrunedStatus::NotComputed => "pruned: not computed (see Messages)".into(),
                PrunedStatus::Waiting(p) => format!("pruned: {}", p.short()),
            };
            let text = format!(
                "{}: {} points | boxes with score >= {t:.2}: dense {} ({:.0} ms), {pruned}",
                self.state.scan_label(self.state.selected_scan),
                s.points.len() / s.num_features.max(1),
                above(&s.dense),
                s.dense_ms,
            );
            // One line, whatever its length: a wrapped status would move the view.
            ui.add(egui::Label::new(&text).truncate())
                .on_hover_text(&text);
        }
        self.ui.view_rect = self.view.ui(ui, rs).rect;
        self.view_legend(ui.ctx(), self.ui.view_rect);
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
            && p.scan_id == crate::state::scan_key(scan)
        {
            dets(&p.detections, PRUNED_COLOR);
        }
        if boxes != self.ui.view_boxes {
            self.view.set_boxes(boxes.clone());
            self.ui.view_boxes = boxes;
        }
    }
}
