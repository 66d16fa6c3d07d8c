//! The debug overlay: frame, UI and 3D render times, and the number of running jobs.

use eframe::egui;

use super::PruneviewApp;

/// What the debug overlay shows, as numbers (the app benchmark reads the same figures).
#[derive(Clone, Copy, Debug, Default)]
pub struct DebugFigures {
    /// Median and worst CPU milliseconds of the last `frames` frames (eframe's measure; none
    /// outside eframe, e.g. in a test harness).
    pub frame_median_ms: Option<f32>,
    pub frame_worst_ms: Option<f32>,
    pub frames: usize,
    /// Milliseconds the last [`PruneviewApp::show`] took (all panels and the 3D view's render
    /// call).
    pub ui_ms: f32,
    /// Milliseconds of the last 3D render (CPU side), if any.
    pub render_ms: Option<f64>,
    pub jobs: usize,
}

impl PruneviewApp {
    pub fn debug_figures(&self) -> DebugFigures {
        let mut times: Vec<f32> = self.ui.frame_times.iter().copied().collect();
        times.sort_by(f32::total_cmp);
        DebugFigures {
            frame_median_ms: times.get(times.len() / 2).copied(),
            frame_worst_ms: times.last().copied(),
            frames: times.len(),
            ui_ms: self.ui.ui_ms,
            render_ms: self.view.last_render_seconds().map(|s| s * 1e3),
            jobs: self.state.jobs.running().len(),
        }
    }

    pub(super) fn debug_overlay(&self, ctx: &egui::Context) {
        let f = self.debug_figures();
        // In the 3D view's upper left corner: over the point cloud (the legend is in the
        // lower right one), never over a control.
        let view = if self.ui.view_rect.is_positive() {
            self.ui.view_rect
        } else {
            self.ui.panels.central
        };
        let corner = view.left_top() + egui::vec2(8.0, 8.0);
        egui::Area::new(egui::Id::unique("debug-overlay"))
            .fixed_pos(corner)
            .pivot(egui::Align2::LEFT_TOP)
            .interactable(false)
            .show(ctx, |ui| {
                egui::Frame::popup(ui.style()).show(ui, |ui| {
                    if let (Some(median), Some(worst)) = (f.frame_median_ms, f.frame_worst_ms) {
                        ui.monospace(format!(
                            "frame CPU {median:5.1} ms median, {worst:5.1} ms worst (last {})",
                            f.frames
                        ));
                    }
                    ui.monospace(format!("ui code {:5.1} ms", f.ui_ms));
                    if let Some(r) = f.render_ms {
                        ui.monospace(format!("3D render {r:5.1} ms"));
                    }
                    if self.state.settings.comparison == crate::state::Comparison::SideBySide
                        && let Some(r) = self.pruned_view.last_render_seconds()
                    {
                        ui.monospace(format!("pruned view render {:5.1} ms", r * 1e3));
                    }
                    ui.monospace(format!("jobs running {}", f.jobs));
                });
            });
    }
}
