//! The centre: the 3D view, its toolbar (scan, colouring, projection, box sets, screenshot),
//! the legends of its colours, and the boxes it draws. Dense and pruned boxes show overlaid
//! in one view, or side by side in two views that share one camera, coloured by what became
//! of each box ([`pruneview_core::session::compare`]: matched, missed, new), with score
//! deltas in the labels and a table.

use eframe::egui;
use eframe::egui_wgpu::RenderState;
use pruneview_core::detect::Detection;
use pruneview_core::session::compare::{DetectionDiff, Status};

use super::PruneviewApp;
use crate::state::{Comparison, PrunedStatus};
use crate::view3d::{Box3d, ColorBy, HEIGHT_RANGE, Projection, height_ramp, intensity_ramp};

/// Colours of the three box sets in the 3D view (and their legend).
pub const GT_COLOR: egui::Color32 = egui::Color32::from_rgb(80, 220, 80);
pub const DENSE_COLOR: egui::Color32 = egui::Color32::from_rgb(70, 150, 255);
pub const PRUNED_COLOR: egui::Color32 = egui::Color32::from_rgb(255, 140, 30);

/// Side by side: a box both models find, one only the dense model finds, one only the
/// pruned model finds. Red and yellow stand out against the point ramps and the ground truth.
pub const MATCHED_COLOR: egui::Color32 = egui::Color32::from_rgb(90, 160, 255);
pub const MISSED_COLOR: egui::Color32 = egui::Color32::from_rgb(255, 60, 60);
pub const NEW_COLOR: egui::Color32 = egui::Color32::from_rgb(255, 215, 0);

/// Height of the score-delta table under the side-by-side views, when it is open.
const DELTAS_HEIGHT: f32 = 150.0;

impl PruneviewApp {
    pub(super) fn scene(&mut self, ui: &mut egui::Ui, rs: Option<&RenderState>) {
        let mut changed_view = false;
        let side_by_side = self.state.settings.comparison == Comparison::SideBySide;
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
                .on_hover_text("points coloured by height above the sensor")
                .changed();
            changed_view |= ui
                .selectable_value(&mut s.color_by, ColorBy::Intensity, "intensity")
                .on_hover_text("points coloured by reflectance (road markings, plates)")
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
                self.pruned_view.reset_camera();
            }
            ui.separator();
            ui.selectable_value(&mut s.comparison, Comparison::Overlay, "overlay")
                .on_hover_text("dense and pruned boxes in one view");
            ui.selectable_value(&mut s.comparison, Comparison::SideBySide, "side by side")
                .on_hover_text(
                    "dense (left) and pruned (right) in two views with one camera; boxes \
                     marked matched, missed (dense only) or new (pruned only)",
                );
            ui.separator();
            ui.checkbox(
                &mut s.show_gt,
                egui::RichText::new("ground truth").color(GT_COLOR),
            );
            if !side_by_side {
                ui.checkbox(
                    &mut s.show_dense,
                    egui::RichText::new("dense").color(DENSE_COLOR),
                );
                ui.checkbox(
                    &mut s.show_pruned,
                    egui::RichText::new("pruned").color(PRUNED_COLOR),
                );
            }
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
            )
            .on_hover_text("detections scoring below this are hidden (and not compared)");
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
            let s = &self.state.settings;
            for v in [&mut self.view, &mut self.pruned_view] {
                v.set_color_by(s.color_by);
                v.set_projection(s.projection);
            }
        }
        let diff = if side_by_side {
            self.state.detection_diff()
        } else {
            None
        };
        self.sync_view(diff.as_ref());
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
        self.legend(ui, diff.as_ref());
        self.ui.view_rect = if side_by_side {
            self.side_by_side(ui, rs, diff.as_ref())
        } else {
            self.view.ui(ui, rs).rect
        };
        self.view_legend(ui.ctx(), self.ui.view_rect);
    }

    /// What the colours mean: the point ramp, and the box sets (with the comparison's counts
    /// side by side).
    fn legend(&mut self, ui: &mut egui::Ui, diff: Option<&DetectionDiff>) {
        ui.horizontal_wrapped(|ui| {
            let s = &self.state.settings;
            match s.color_by {
                ColorBy::Height => {
                    let (lo, hi) = HEIGHT_RANGE;
                    ramp_legend(ui, height_ramp, &format!("{lo} m"), &format!("{hi} m"))
                        .on_hover_text("point colour: height (z) in the LiDAR frame");
                }
                ColorBy::Intensity => {
                    ramp_legend(ui, intensity_ramp, "0", "1")
                        .on_hover_text("point colour: reflectance, 0 to 1");
                }
            }
            ui.separator();
            if s.show_gt {
                swatch(ui, GT_COLOR, "ground truth");
            }
            if s.comparison == Comparison::Overlay {
                if s.show_dense {
                    swatch(ui, DENSE_COLOR, "dense");
                }
                if s.show_pruned {
                    swatch(ui, PRUNED_COLOR, "pruned");
                }
                return;
            }
            let Some(d) = diff else {
                swatch(ui, MATCHED_COLOR, "matched");
                swatch(ui, MISSED_COLOR, "missed (dense only)");
                swatch(ui, NEW_COLOR, "new (pruned only)");
                ui.label("(waiting for the pruned detections)");
                return;
            };
            swatch(ui, MATCHED_COLOR, &format!("matched {}", d.matched.len()))
                .on_hover_text("both models find it (same class, BEV IoU >= 0.5)");
            swatch(
                ui,
                MISSED_COLOR,
                &format!("missed (dense only) {}", d.missed.len()),
            )
            .on_hover_text("the dense model finds it, the pruned one does not");
            swatch(ui, NEW_COLOR, &format!("new (pruned only) {}", d.new.len()))
                .on_hover_text("the pruned model finds it, the dense one does not");
            if let Some(m) = d.mean_score_delta() {
                ui.add(egui::Label::new(format!("mean score change {m:+.3}")).extend())
                    .on_hover_text("pruned minus dense score, over the matched boxes");
            }
            ui.toggle_value(&mut self.ui.show_deltas, "score table");
        });
    }

    /// Dense (left) and pruned (right) views from one camera: whichever the user moved this
    /// frame gives its camera to the other. Returns where the two views were drawn.
    fn side_by_side(
        &mut self,
        ui: &mut egui::Ui,
        rs: Option<&RenderState>,
        diff: Option<&DetectionDiff>,
    ) -> egui::Rect {
        let reserve = if self.ui.show_deltas {
            DELTAS_HEIGHT
        } else {
            0.0
        };
        let avail = ui.available_size();
        let gap = ui.spacing().item_spacing.x;
        let size = egui::vec2(
            ((avail.x - gap) / 2.0).max(1.0),
            (avail.y - reserve).max(120.0),
        );
        let views = ui.horizontal_top(|ui| {
            let before = self.view.camera_state();
            ui.allocate_ui(size, |ui| {
                ui.vertical(|ui| {
                    ui.strong("dense");
                    self.view.ui(ui, rs);
                });
            });
            if self.view.camera_state() != before {
                self.pruned_view.set_camera_state(self.view.camera_state());
            }
            let before = self.pruned_view.camera_state();
            ui.allocate_ui(size, |ui| {
                ui.vertical(|ui| {
                    ui.strong("pruned");
                    self.pruned_view.ui(ui, rs);
                });
            });
            if self.pruned_view.camera_state() != before {
                self.view.set_camera_state(self.pruned_view.camera_state());
                ui.ctx().request_repaint();
            }
        });
        if self.ui.show_deltas {
            self.deltas_table(ui, diff);
        }
        views.response.rect
    }

    /// Every compared box: matched ones by score change (largest drop first), then the
    /// missed and the new ones.
    fn deltas_table(&self, ui: &mut egui::Ui, diff: Option<&DetectionDiff>) {
        let (Some(d), Some(scan), Some(p)) = (diff, self.state.selected(), &self.state.pruned)
        else {
            ui.label("No pruned detections of this scan yet.");
            return;
        };
        let class = self.class_namer();
        let mut matched = d.matched.clone();
        matched.sort_by(|a, b| a.score_delta.total_cmp(&b.score_delta));
        egui::ScrollArea::vertical()
            .id_salt("score-deltas")
            .max_height(DELTAS_HEIGHT - 8.0)
            .show(ui, |ui| {
                egui::Grid::new("score-deltas-grid")
                    .striped(true)
                    .num_columns(6)
                    .show(ui, |ui| {
                        for h in ["", "class", "dense", "pruned", "change", "BEV IoU"] {
                            ui.strong(h);
                        }
                        ui.end_row();
                        let row = |ui: &mut egui::Ui, color, what: &str, cells: [String; 5]| {
                            ui.colored_label(color, what);
                            for c in cells {
                                ui.label(c);
                            }
                            ui.end_row();
                        };
                        for m in &matched {
                            let (a, b) = (&scan.dense[m.dense], &p.detections[m.pruned]);
                            row(
                                ui,
                                MATCHED_COLOR,
                                "matched",
                                [
                                    class(a.label),
                                    format!("{:.2}", a.score),
                                    format!("{:.2}", b.score),
                                    format!("{:+.2}", m.score_delta),
                                    format!("{:.2}", m.iou),
                                ],
                            );
                        }
                        for &i in &d.missed {
                            let a = &scan.dense[i];
                            let cells = [class(a.label), format!("{:.2}", a.score), "-".into()];
                            row(ui, MISSED_COLOR, "missed", pad(cells));
                        }
                        for &j in &d.new {
                            let b = &p.detections[j];
                            let cells = [class(b.label), "-".into(), format!("{:.2}", b.score)];
                            row(ui, NEW_COLOR, "new", pad(cells));
                        }
                    });
            });
    }

    /// The model's class name of a 1-based detection label.
    fn class_namer(&self) -> impl Fn(usize) -> String + use<> {
        let names = self
            .state
            .model
            .as_ref()
            .map(|m| m.det.config.class_names.clone())
            .unwrap_or_default();
        move |label: usize| {
            names
                .get(label.wrapping_sub(1))
                .cloned()
                .unwrap_or("?".into())
        }
    }

    /// Gives the 3D views the selected scan and the boxes to draw, when they changed.
    fn sync_view(&mut self, diff: Option<&DetectionDiff>) {
        let side_by_side = self.state.settings.comparison == Comparison::SideBySide;
        let Some(scan) = self.state.selected() else {
            if self.ui.view_scan.take().is_some() {
                for v in [&mut self.view, &mut self.pruned_view] {
                    v.clear_points();
                    v.set_boxes(Vec::new());
                }
                self.ui.view_boxes.clear();
            }
            return;
        };
        if self.ui.view_scan.as_ref() != Some(&scan.path) {
            self.view.set_points(scan.points.clone(), scan.num_features);
            self.ui.view_scan = Some(scan.path.clone());
        }
        if side_by_side {
            // The same Arc is not uploaded again.
            self.pruned_view
                .set_points(scan.points.clone(), scan.num_features);
        }
        let s = &self.state.settings;
        let class = self.class_namer();
        let mut gt = Vec::new();
        if s.show_gt {
            for g in scan.gt.iter().flatten() {
                gt.push(Box3d {
                    bbox: g.bbox,
                    color: GT_COLOR,
                    label: g.class.clone(),
                });
            }
        }
        let pruned = self
            .state
            .pruned
            .as_ref()
            .filter(|p| p.scan_id == crate::state::scan_key(scan))
            .map(|p| p.detections.as_slice());
        let label = |d: &Detection| format!("{} {:.2}", class(d.label), d.score);
        let shown = |d: &Detection| d.score >= s.score_threshold;
        let mut boxes = gt.clone();
        if side_by_side {
            for (i, d) in scan.dense.iter().enumerate().filter(|(_, d)| shown(d)) {
                let (color, text) = match diff.and_then(|x| x.dense_status(i)) {
                    Some(Status::Missed) => (MISSED_COLOR, format!("{} missed", label(d))),
                    Some(_) => (MATCHED_COLOR, label(d)),
                    // Nothing to compare with yet.
                    None => (DENSE_COLOR, label(d)),
                };
                boxes.push(Box3d {
                    bbox: d.bbox,
                    color,
                    label: text,
                });
            }
            let mut right = gt;
            for (j, d) in pruned.unwrap_or_default().iter().enumerate() {
                let (color, text) = match diff.and_then(|x| x.pruned_status(j)) {
                    Some(Status::Matched(p)) => (
                        MATCHED_COLOR,
                        format!("{} ({:+.2})", label(d), p.score_delta),
                    ),
                    Some(Status::New) => (NEW_COLOR, format!("{} new", label(d))),
                    _ => continue,
                };
                right.push(Box3d {
                    bbox: d.bbox,
                    color,
                    label: text,
                });
            }
            self.pruned_view.set_boxes(right);
        } else {
            let mut push = |dets: &[Detection], color| {
                for d in dets.iter().filter(|d| shown(d)) {
                    boxes.push(Box3d {
                        bbox: d.bbox,
                        color,
                        label: label(d),
                    });
                }
            };
            if s.show_dense {
                push(&scan.dense, DENSE_COLOR);
            }
            if s.show_pruned
                && let Some(p) = pruned
            {
                push(p, PRUNED_COLOR);
            }
        }
        if boxes != self.ui.view_boxes {
            self.view.set_boxes(boxes.clone());
            self.ui.view_boxes = boxes;
        }
    }
}

/// Three cells of a missed or new row, padded with empty change and IoU cells.
fn pad([a, b, c]: [String; 3]) -> [String; 5] {
    [a, b, c, "-".into(), "-".into()]
}

/// A coloured square and its text, as one legend entry.
fn swatch(ui: &mut egui::Ui, color: egui::Color32, text: &str) -> egui::Response {
    ui.horizontal(|ui| {
        let (rect, _) = ui.allocate_exact_size(egui::vec2(12.0, 12.0), egui::Sense::hover());
        ui.painter().rect_filled(rect, 2.0, color);
        ui.label(text)
    })
    .inner
}

/// A colour ramp as a bar with its two end values.
fn ramp_legend(ui: &mut egui::Ui, ramp: fn(f32) -> [f32; 3], lo: &str, hi: &str) -> egui::Response {
    ui.horizontal(|ui| {
        ui.label(lo);
        let (rect, response) = ui.allocate_exact_size(egui::vec2(90.0, 12.0), egui::Sense::hover());
        const STEPS: usize = 30;
        let w = rect.width() / STEPS as f32;
        for k in 0..STEPS {
            let [r, g, b] = ramp((k as f32 + 0.5) / STEPS as f32);
            let c =
                egui::Color32::from_rgb((r * 255.0) as u8, (g * 255.0) as u8, (b * 255.0) as u8);
            let x = rect.left() + k as f32 * w;
            let cell = egui::Rect::from_min_max(
                egui::pos2(x, rect.top()),
                egui::pos2(x + w + 0.5, rect.bottom()),
            );
            ui.painter().rect_filled(cell, 0.0, c);
        }
        ui.label(hi);
        response
    })
    .inner
}
