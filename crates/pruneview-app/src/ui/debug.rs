//! The debug overlay: frame, UI and 3D render times, and the number of running jobs.

use eframe::egui;

use super::PruneviewApp;

impl PruneviewApp {
    pub(super) fn debug_overlay(&self, ctx: &egui::Context) {
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
                    if self.state.settings.comparison == crate::state::Comparison::SideBySide
                        && let Some(r) = self.pruned_view.last_render_seconds()
                    {
                        ui.monospace(format!("pruned view render {:5.1} ms", r * 1e3));
                    }
                    ui.monospace(format!("jobs running {}", self.state.jobs.running().len()));
                });
            });
    }
}
