//! The 3D view's legend, and "save screenshot": the view as drawn on screen (points, boxes,
//! their class and score labels, the legend), not a bare re-render of the point cloud.
//!
//! egui paints the labels and the legend over the rendered view, so the picture is taken of
//! the window (a screenshot of the frame, [`egui::Context::request_screenshot`]) and cut to
//! the view's rectangle; encoding and writing the PNG run as a job.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, channel};

use eframe::egui;

use super::{
    DENSE_COLOR, GT_COLOR, MATCHED_COLOR, MISSED_COLOR, NEW_COLOR, PRUNED_COLOR, PruneviewApp,
};
use crate::state::{Comparison, PrunedStatus};

/// A screenshot asked for and not yet written.
pub(super) struct Shot {
    path: PathBuf,
    /// The view's rectangle in the frame the screenshot is of (set at the end of that frame).
    rect: Option<egui::Rect>,
    rx: Receiver<Arc<egui::ColorImage>>,
}

impl PruneviewApp {
    /// Draws the legend in the view's lower right corner: what each colour is, and what the
    /// pruned boxes are of (budget, recovery), so a saved picture says it too.
    pub(super) fn view_legend(&self, ctx: &egui::Context, view: egui::Rect) {
        let s = &self.state.settings;
        let Some(scan) = self.state.selected() else {
            return;
        };
        let mut rows: Vec<(egui::Color32, String)> = Vec::new();
        if s.show_gt && scan.gt.as_ref().is_some_and(|g| !g.is_empty()) {
            rows.push((GT_COLOR, "ground truth boxes".into()));
        }
        let side_by_side = s.comparison == Comparison::SideBySide;
        if side_by_side {
            rows.push((MATCHED_COLOR, "found by both models".into()));
            rows.push((MISSED_COLOR, "missed (dense only)".into()));
            rows.push((NEW_COLOR, "new (pruned only)".into()));
        } else if s.show_dense {
            rows.push((DENSE_COLOR, "dense model".into()));
        }
        if (s.show_pruned || side_by_side)
            && self.state.pruned_status() == PrunedStatus::Shown
            && let (Some(cur), Some(p)) = (&self.state.current, &self.state.pruned)
        {
            rows.push((
                if side_by_side {
                    egui::Color32::WHITE
                } else {
                    PRUNED_COLOR
                },
                format!(
                    "pruned model: DP at {:.1}% {} kept, recovery {}",
                    cur.keep * 100.0,
                    pruneview_core::prune::alloc::KindName(cur.kind),
                    p.recovery.label()
                ),
            ));
        }
        let caption = format!(
            "{}, boxes with score >= {:.2}",
            self.state.scan_label(self.state.selected_scan),
            s.score_threshold
        );
        egui::Area::new(egui::Id::unique("view-legend"))
            .fixed_pos(view.right_bottom() - egui::vec2(8.0, 8.0))
            .pivot(egui::Align2::RIGHT_BOTTOM)
            .interactable(false)
            .show(ctx, |ui| {
                egui::Frame::popup(ui.style())
                    .fill(egui::Color32::from_black_alpha(190))
                    .show(ui, |ui| {
                        for (color, text) in rows {
                            ui.add(
                                egui::Label::new(egui::RichText::new(text).color(color)).extend(),
                            );
                        }
                        ui.add(egui::Label::new(egui::RichText::new(caption).small()).extend());
                    });
            });
    }

    /// Asks for a screenshot of the next frame; [`Self::finish_view_shot`] writes it.
    pub(super) fn request_view_shot(&mut self, ctx: &egui::Context) {
        if self.ui.shot.is_some() {
            return;
        }
        let id = self
            .state
            .selected()
            .map_or("view".into(), |s| s.id.clone());
        let dir = self.state.settings.export.dir.clone();
        let path = dir.join(format!("screenshot-{}.png", id.replace('.', "_")));
        let (tx, rx): (Sender<Arc<egui::ColorImage>>, _) = channel();
        let wake = ctx.clone();
        ctx.request_screenshot(move |image| {
            let _ = tx.send(image);
            wake.request_repaint();
        });
        self.ui.shot = Some(Shot {
            path,
            rect: None,
            rx,
        });
    }

    /// Once per frame, after the view is drawn: remembers where the view was in the frame
    /// the screenshot is of, and hands a screenshot that came back to a job that writes it.
    pub(super) fn finish_view_shot(&mut self, ppp: f32) {
        let Some(shot) = &mut self.ui.shot else {
            return;
        };
        let rect = *shot.rect.get_or_insert(self.ui.view_rect);
        match shot.rx.try_recv() {
            Ok(image) => {
                let path = shot.path.clone();
                self.ui.shot = None;
                match crop(&image, rect * ppp) {
                    Some((w, h, rgba)) => self.state.write_picture(path, w, h, rgba),
                    None => self.state.error(format!(
                        "{}: the 3D view is not in the window's picture",
                        path.display()
                    )),
                }
            }
            Err(std::sync::mpsc::TryRecvError::Empty) => {}
            Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                self.ui.shot = None;
                self.state
                    .error("save screenshot: this window cannot take screenshots");
            }
        }
    }
}

/// The part of `image` inside `rect` (pixels) as unpremultiplied RGBA rows, `None` when they
/// do not overlap.
fn crop(image: &egui::ColorImage, rect: egui::Rect) -> Option<(u32, u32, Vec<u8>)> {
    let [iw, ih] = image.size;
    let x0 = (rect.min.x.round().max(0.0) as usize).min(iw);
    let y0 = (rect.min.y.round().max(0.0) as usize).min(ih);
    let x1 = (rect.max.x.round().max(0.0) as usize).min(iw);
    let y1 = (rect.max.y.round().max(0.0) as usize).min(ih);
    if x1 <= x0 || y1 <= y0 {
        return None;
    }
    let mut rgba = Vec::with_capacity((x1 - x0) * (y1 - y0) * 4);
    for y in y0..y1 {
        for p in &image.pixels[y * iw + x0..y * iw + x1] {
            rgba.extend_from_slice(&p.to_srgba_unmultiplied());
        }
    }
    Some(((x1 - x0) as u32, (y1 - y0) as u32, rgba))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crops_inside_the_picture() {
        let mut image = egui::ColorImage::filled([4, 3], egui::Color32::BLACK);
        image.pixels[4 + 1] = egui::Color32::RED;
        let rect = egui::Rect::from_min_max(egui::pos2(1.0, 1.0), egui::pos2(9.0, 2.0));
        let (w, h, rgba) = crop(&image, rect).unwrap();
        assert_eq!((w, h), (3, 1));
        assert_eq!(&rgba[..4], &[255, 0, 0, 255]);
        let outside = egui::Rect::from_min_max(egui::pos2(5.0, 0.0), egui::pos2(9.0, 2.0));
        assert!(crop(&image, outside).is_none());
    }
}
