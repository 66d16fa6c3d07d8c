//! The path field: typing a path instead of choosing it in a file dialog, for desktops where
//! no dialog can open (no XDG portal, no zenity) and for those who prefer typing. It opens
//! by itself when a dialog fails, and from File > Type a path.

use eframe::egui;

use super::PruneviewApp;
use crate::state::Pick;

/// What a typed path can be, as the field offers it (a scan folder is one of the scans).
const KINDS: [(Pick, &str); 4] = [
    (Pick::Model, "model (.safetensors)"),
    (Pick::Config, "config (.yaml)"),
    (Pick::Scans, "scans (a file or a folder)"),
    (Pick::ExportDir, "export folder"),
];

impl PruneviewApp {
    pub(super) fn path_prompt(&mut self, ctx: &egui::Context) {
        let Some(mut pick) = self.state.path_prompt else {
            return;
        };
        if pick == Pick::ScanFolder {
            pick = Pick::Scans;
        }
        let mut open = true;
        egui::Window::new("Open a path")
            .open(&mut open)
            .pivot(egui::Align2::CENTER_CENTER)
            .default_pos(ctx.content_rect().center())
            .collapsible(false)
            .resizable(false)
            .show(ctx, |ui| {
                ui.label("Type the path of the file or folder (~ is your home folder).");
                ui.horizontal_wrapped(|ui| {
                    for (kind, label) in KINDS {
                        ui.radio_value(&mut pick, kind, label);
                    }
                });
                let edit = ui.add(
                    egui::TextEdit::singleline(&mut self.ui.path_text)
                        .hint_text("/path/to/file")
                        .desired_width(460.0),
                );
                let entered = edit.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
                ui.horizontal(|ui| {
                    if (ui.button("Open").clicked() || entered)
                        && self.state.typed_path(pick, &self.ui.path_text)
                    {
                        self.ui.path_text.clear();
                    }
                });
            });
        if !open {
            self.state.path_prompt = None;
        } else if self.state.path_prompt.is_some() {
            self.state.path_prompt = Some(pick);
        }
    }
}
