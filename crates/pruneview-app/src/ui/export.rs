//! The export dialog: which files to write, and where.

use eframe::egui;
use pruneview_core::prune::alloc::KindName;
use pruneview_core::prune::export;

use super::PruneviewApp;
use crate::state::Pick;

impl PruneviewApp {
    pub(super) fn export_dialog(&mut self, ctx: &egui::Context) {
        let mut open = true;
        egui::Window::new("Export")
            .open(&mut open)
            .pivot(egui::Align2::CENTER_CENTER)
            .default_pos(ctx.content_rect().center())
            .collapsible(false)
            .resizable(false)
            .show(ctx, |ui| {
                let ready = self.state.current.as_ref().is_some_and(|c| c.dp.is_ok());
                if let Some(c) = &self.state.current {
                    ui.label(format!(
                        "The DP allocation at {:.1}% of the {} kept.",
                        c.keep * 100.0,
                        KindName(c.kind)
                    ));
                }
                let e = &mut self.state.settings.export;
                ui.horizontal(|ui| {
                    ui.label("folder");
                    let mut dir = e.dir.display().to_string();
                    if ui.text_edit_singleline(&mut dir).changed() {
                        e.dir = dir.into();
                    }
                });
                let mut pick_dir = false;
                if ui.button("Choose folder...").clicked() {
                    pick_dir = true;
                }
                ui.checkbox(&mut e.masks, export::MASKS_FILE);
                ui.weak("    U8 masks, 1 = kept, same names and shapes as the weights: multiply them in PyTorch.");
                ui.checkbox(&mut e.pruned, export::PRUNED_FILE);
                ui.weak("    The pruned weights, recovered as the Budget panel's recovery says (zeros where the masks are 0). A dense tensor with zeros is NOT faster by itself: speed needs sparse kernels or structured pruning.");
                ui.checkbox(&mut e.allocation, export::ALLOCATION_FILE);
                ui.weak("    Per-layer sparsity, budget, lambdas and the weights' sha256 (pruneview-allocation/1).");
                ui.checkbox(&mut e.csv, export::CSV_FILE);
                ui.weak("    One row per layer: shape, params, FLOPs, sparsity, predicted distortion.");
                ui.checkbox(&mut e.curves, export::CURVES_FILE);
                ui.weak("    The distortion curves (pruneview-curves/1), to solve again later with the CLI.");
                let files = e.files();
                let existing: Vec<String> = files
                    .paths()
                    .into_iter()
                    .filter(|f| f.exists())
                    .map(|f| f.file_name().unwrap_or_default().to_string_lossy().into_owned())
                    .collect();
                if !existing.is_empty() {
                    ui.colored_label(
                        egui::Color32::YELLOW,
                        format!("will replace: {}", existing.join(", ")),
                    );
                }
                if pick_dir {
                    self.state.pick(Pick::ExportDir);
                }
                ui.add_enabled_ui(ready, |ui| {
                    if ui.button("Export").clicked() {
                        self.state.export();
                    }
                });
                if !ready {
                    ui.label("Nothing to export until the curves and an allocation exist.");
                }
            });
        self.ui.export_open = open;
    }
}
