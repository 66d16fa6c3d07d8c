//! The jobs and messages panel: running jobs with progress and cancel, and the message log.
//! Both lists scroll inside the panel, which keeps its height whatever they hold.

use eframe::egui;

use super::PruneviewApp;
use crate::state::Level;

impl PruneviewApp {
    pub(super) fn jobs_panel(&mut self, ui: &mut egui::Ui) {
        ui.columns(2, |cols| {
            let ui = &mut cols[0];
            ui.heading("Jobs");
            let mut cancel = None;
            let jobs = self.state.jobs.running();
            egui::ScrollArea::vertical()
                .id_salt("jobs-list")
                .auto_shrink(false)
                .show(ui, |ui| {
                    if jobs.is_empty() {
                        ui.label("idle");
                    }
                    for job in jobs {
                        ui.horizontal(|ui| {
                            let (done, total, msg) = job.progress();
                            let eta = job.eta().map_or(String::new(), |d| {
                                format!(", ETA {:.0} s", d.as_secs_f64())
                            });
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
                });
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
                .id_salt("messages")
                .auto_shrink(false)
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
