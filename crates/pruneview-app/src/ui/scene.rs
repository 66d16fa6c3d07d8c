//! The centre: the 3D view, its toolbar (scan, colouring, projection, box sets, screenshot) and
//! the boxes it draws.

use eframe::egui;
use eframe::egui_wgpu::RenderState;

use super::PruneviewApp;
use crate::view3d::{Box3d, ColorBy, Projection};

/// Colours of the three box sets in the 3D view (and their legend).
pub const GT_COLOR: egui::Color32 = egui::Color32::from_rgb(80, 220, 80);
pub const DENSE_COLOR: egui::Color32 = egui::Color32::from_rgb(70, 150, 255);
pub const PRUNED_COLOR: egui::Color32 = egui::Color32::from_rgb(255, 140, 30);

impl PruneviewApp {
    pub(super) fn scene(&mut self, ui: &mut egui::Ui, rs: Option<&RenderState>) {
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
}
