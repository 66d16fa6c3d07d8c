//! The jobs and messages panel: running jobs with progress and cancel, and the message log.

use eframe::egui;

use super::PruneviewApp;
use crate::state::Level;

impl PruneviewApp {
    pub(super) fn jobs_panel(&mut self, ui: &mut egui::Ui) {
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
}
