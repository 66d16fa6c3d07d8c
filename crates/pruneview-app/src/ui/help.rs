//! Help and About (the Help menu), and the explanations the tooltips share with them, so a
//! term reads the same wherever it is explained.

use eframe::egui;

use super::PruneviewApp;

/// What the budget panel's "predicted D" is.
pub(super) const PREDICTED_D: &str = "Predicted distortion D: how much the pruned model's \
    outputs move away from the dense model's on the calibration scans, summed over the layers \
    from their curves (a second-order Taylor estimate; lower is better). It ranks allocations; \
    it is not an accuracy: Evaluate measures AP.";

/// What the lambda sliders weigh.
pub(super) const LAMBDA: &str = "The weights of the two distortion groups in D = \
    lambda_conf * D_confidence + lambda_loc * D_locality: confidence is the class scores, \
    locality the box regression. Only their ratio matters. A group near 0 is ignored by the \
    allocation: layers that only hurt it get pruned hard.";

/// The `detection` distortion kind.
pub(super) const DETECTION: &str = "Detection (default): scores compared after the sigmoid, \
    box errors weighted by the dense model's confidence at their anchor, so background \
    anchors that change no detection count for little.";

/// The `raw` distortion kind.
pub(super) const RAW: &str = "Raw (the paper's form): every logit and regression value \
    counts equally. On a trained detector it is dominated by background anchors and its \
    allocations lose more AP.";

/// When a lambda counts as switching its group off: this fraction of the other group's.
pub const LAMBDA_OFF_RATIO: f64 = 0.01;

/// The groups whose weight is so small next to the other's that the allocation ignores
/// them (both zero: both).
pub fn switched_off_groups(confidence: f64, locality: f64) -> Vec<&'static str> {
    // NaN counts as off: it is no weight.
    let on = |a: f64, b: f64| a > 0.0 && a > LAMBDA_OFF_RATIO * b;
    let off = |a: f64, b: f64| !on(a, b);
    let mut v = Vec::new();
    if off(confidence, locality) {
        v.push("confidence");
    }
    if off(locality, confidence) {
        v.push("locality");
    }
    v
}

/// UI state of the two windows.
#[derive(Default)]
pub(super) struct HelpUi {
    pub(super) help: bool,
    pub(super) about: bool,
}

impl PruneviewApp {
    /// The Help menu's entries.
    pub(super) fn help_menu(&mut self, ui: &mut egui::Ui) {
        if ui.button("How to use pruneview").clicked() {
            self.ui.help.help = true;
        }
        if ui.button("About pruneview").clicked() {
            self.ui.help.about = true;
        }
    }

    pub(super) fn help_windows(&mut self, ctx: &egui::Context) {
        let mut open = self.ui.help.help;
        let centre = ctx.content_rect().center();
        egui::Window::new("How to use pruneview")
            .open(&mut open)
            .pivot(egui::Align2::CENTER_CENTER)
            .default_pos(centre)
            .default_size([560.0, 560.0])
            .vscroll(true)
            .show(ctx, help_text);
        self.ui.help.help = open;
        let mut open = self.ui.help.about;
        egui::Window::new("About pruneview")
            .open(&mut open)
            .pivot(egui::Align2::CENTER_CENTER)
            .default_pos(centre)
            .collapsible(false)
            .resizable(false)
            .show(ctx, about_text);
        self.ui.help.about = open;
    }
}

fn section(ui: &mut egui::Ui, title: &str, lines: &[&str]) {
    ui.add_space(4.0);
    ui.strong(title);
    for l in lines {
        ui.label(*l);
    }
}

fn help_text(ui: &mut egui::Ui) {
    section(
        ui,
        "What it does",
        &[
            "pruneview prunes a trained LiDAR detector without retraining: it measures how much \
             each layer's outputs suffer as it is pruned (the curves), then a dynamic program \
             picks each layer's sparsity under a FLOPs (or params) budget so that the summed \
             distortion is least.",
        ],
    );
    section(
        ui,
        "Steps",
        &[
            "1. Open a model and calibration scans (File menu, or drop files on the window).",
            "2. The curves start at once (Compute curves); Measure curves checks them by \
             pruning each layer for real (slow).",
            "3. Move the budget slider: the allocation, its totals and the per-layer bars \
             follow on every frame. Lock layers or bound their sparsity in the layer table.",
            "4. Choose the recovery: none, statistics (BatchNorm re-estimated), or full \
             (Recover: reconstruction and distillation, minutes).",
            "5. Evaluate on a held-out labelled set (Evaluation window): per-class AP of the \
             dense and the pruned model, and AP against the budget.",
            "6. Export masks, pruned weights, the allocation (with your constraints), a CSV \
             and the curves.",
        ],
    );
    section(ui, "Predicted D", &[PREDICTED_D]);
    section(ui, "Lambda (group weights)", &[LAMBDA]);
    section(ui, "Distortion kinds", &[DETECTION, RAW]);
    section(
        ui,
        "Plots",
        &[
            "Curves: one line per layer, distortion (log scale) against its sparsity. Solid \
             lines are predicted; dashed lines with dots are measured (Measure curves); a \
             diamond marks the sparsity the allocation gives the layer. Hover a curve to pick \
             its layer.",
            "Frontier: the least predicted distortion at each budget for the DP and the \
             baselines (uniform, global magnitude, LAMP, ERK); the circle and the dashed line \
             are the current budget.",
        ],
    );
    section(
        ui,
        "3D view",
        &[
            "Points are coloured by height (or reflectance); the bar above the view gives the \
             scale. Boxes: ground truth green, dense blue, pruned orange.",
            "Side by side: dense left, pruned right, one camera. Blue boxes are matched (both \
             models, same class, BEV IoU >= 0.5; the pruned label shows its score change), \
             red missed (dense only), yellow new (pruned only).",
            "Drag to orbit, right-drag (or shift-drag) to pan, scroll to zoom, double-click \
             to reset the camera.",
        ],
    );
    section(
        ui,
        "Remembered",
        &[
            "Settings and the last files persist. Curves and evaluations are cached under the \
             app's data folder, keyed by the weights (sha256) and the scans (paths, sizes and \
             times), so reopening the same files shows them at once.",
        ],
    );
}

fn about_text(ui: &mut egui::Ui) {
    ui.heading(format!("pruneview {}", env!("CARGO_PKG_VERSION")));
    ui.label("Prunes trained LiDAR 3D detectors after training (DM3D and beyond), and lets you see and steer it.");
    ui.label("OpenPCDet models (PointPillars, CenterPoint, SECOND) on the CPU.");
    ui.label("Licence: Apache-2.0.");
    ui.label(
        "The bundled KITTI frames are CC BY-NC-SA 3.0 (non-commercial use only); the demo \
         model and the synthetic scans are this project's own.",
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_is_off_when_its_weight_is_tiny_next_to_the_other() {
        assert!(switched_off_groups(1.0, 1.0).is_empty());
        assert!(
            switched_off_groups(1e-4, 1e-4).is_empty(),
            "only the ratio matters"
        );
        assert_eq!(switched_off_groups(0.005, 1.0), vec!["confidence"]);
        assert_eq!(switched_off_groups(2.0, 0.0), vec!["locality"]);
        assert_eq!(
            switched_off_groups(0.0, 0.0),
            vec!["confidence", "locality"]
        );
        // Not a weight at all: neither group can be trusted.
        assert_eq!(switched_off_groups(f64::NAN, 1.0).len(), 2);
    }
}
