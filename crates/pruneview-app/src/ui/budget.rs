//! The budget panel: the budget and its kind, the baseline to compare with, the group weights,
//! recovery, the totals, the per-layer allocation chart and evaluation.

use eframe::egui;
use pruneview_core::prune::BudgetKind;
use pruneview_core::prune::alloc::KindName;
use pruneview_core::session::plan::BASELINES;
use pruneview_core::session::recover::Recovery;

use super::{PruneviewApp, action_button, help};
use crate::plots;
use crate::state::Action;

impl PruneviewApp {
    pub(super) fn budget_panel(&mut self, ui: &mut egui::Ui) {
        ui.heading("Budget");
        let s = &mut self.state.settings;
        let mut replan = false;
        ui.horizontal(|ui| {
            ui.label("keep");
            replan |= ui
                .radio_value(&mut s.budget_kind, BudgetKind::Flops, "FLOPs")
                .changed();
            replan |= ui
                .radio_value(&mut s.budget_kind, BudgetKind::Params, "params")
                .changed();
        });
        let mut pct = s.keep * 100.0;
        let slider = ui.add(
            egui::Slider::new(&mut pct, 1.0..=100.0)
                .suffix("%")
                .fixed_decimals(1)
                .text("kept"),
        );
        if slider.changed() {
            s.keep = (pct / 100.0).clamp(0.01, 1.0);
            self.state.budget_changed();
        }
        if slider.drag_stopped() {
            // Let go: the budget rests now, no need to wait for it to keep still.
            self.state.budget_released();
        }
        ui.label(format!(
            "{:.2}x fewer {}",
            1.0 / self.state.settings.keep.max(1e-6),
            KindName(self.state.settings.budget_kind)
        ));
        if let Some(c) = &self.state.current {
            for w in self.state.curves_warnings.iter().chain(&c.warnings) {
                ui.colored_label(
                    egui::Color32::from_rgb(255, 170, 60),
                    format!("warning: {w}"),
                );
            }
        }
        ui.horizontal(|ui| {
            ui.label("compare with");
            let current = self.state.settings.compare.clone();
            egui::ComboBox::from_id_salt("compare")
                .selected_text(current.clone().unwrap_or("none".into()))
                .show_ui(ui, |ui| {
                    let c = &mut self.state.settings.compare;
                    ui.selectable_value(c, None, "none");
                    for m in BASELINES {
                        ui.selectable_value(c, Some(m.name().to_string()), m.name());
                    }
                });
            if self.state.settings.compare != current {
                self.state.budget_changed();
            }
        });
        ui.separator();
        ui.label("Group weights (lambda, log scale)")
            .on_hover_text(help::LAMBDA);
        let l = &mut self.state.settings.lambdas;
        let a = ui
            .add(
                egui::Slider::new(&mut l.confidence, 0.0..=10.0)
                    .logarithmic(true)
                    .text("confidence"),
            )
            .on_hover_text(help::LAMBDA);
        let b = ui
            .add(
                egui::Slider::new(&mut l.locality, 0.0..=10.0)
                    .logarithmic(true)
                    .text("locality"),
            )
            .on_hover_text(help::LAMBDA);
        for g in help::switched_off_groups(l.confidence, l.locality) {
            ui.colored_label(
                egui::Color32::from_rgb(255, 170, 60),
                format!(
                    "warning: the {g} weight is nearly 0 next to the other: the allocation \
                     ignores how pruning changes the {g} outputs"
                ),
            );
        }
        if a.drag_stopped()
            || b.drag_stopped()
            || (a.changed() && !a.dragged())
            || (b.changed() && !b.dragged())
        {
            replan = true;
        }
        if replan {
            self.state.planning_inputs_changed();
        }
        // Its room is kept when hidden, so the panel does not jump when a replan starts.
        ui.add_visible(
            self.state.is_planning(),
            egui::Label::new("updating the frontier..."),
        );
        ui.separator();
        self.recovery_control(ui);
        ui.separator();
        self.totals(ui);
        ui.separator();
        self.allocation_chart(ui);
        ui.separator();
        ui.horizontal(|ui| {
            if action_button(
                ui,
                "Evaluate",
                &format!(
                    "KITTI AP of the dense and the pruned model on {} (choose the set in the \
                     Evaluation window)",
                    self.state.settings.eval_source
                ),
                self.state.unavailable(Action::Evaluate),
            ) {
                self.state.evaluate();
                self.ui.eval.open = true;
            }
            if ui.button("Evaluation...").clicked() {
                self.ui.eval.open = true;
            }
            if action_button(ui, "Export...", "", self.state.unavailable(Action::Export)) {
                self.ui.export_open = true;
            }
        });
        if let Some(p) = self.state.eval_points_of_source().last() {
            ui.label(format!(
                "{} {:.0}%, recovery {}: AP_BEV {:.2} (dense {:.2}), {} frames",
                p.method,
                p.keep * 100.0,
                p.recovery.label(),
                p.accuracy.pruned.mean_bev,
                p.accuracy.dense.mean_bev,
                p.accuracy.frames
            ));
        }
    }

    /// None / statistics / full: what the shown detections, Evaluate and Export use. Full
    /// recovery is a background job (Recover), shown as statistics until it has run.
    fn recovery_control(&mut self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| {
            ui.label("recovery").on_hover_text(
                "How the pruned weights are repaired, without labels, on the calibration scans: \
                 none (masks only), statistics (BatchNorm re-estimated, seconds) or full \
                 (statistics, weight reconstruction and distillation, minutes)",
            );
            let before = self.state.settings.recovery;
            for r in Recovery::ALL {
                ui.radio_value(&mut self.state.settings.recovery, r, r.label());
            }
            if self.state.settings.recovery != before {
                self.state.recovery_changed();
            }
        });
        if self.state.settings.recovery != Recovery::Full {
            return;
        }
        let sparsity = self
            .state
            .current
            .as_ref()
            .and_then(|c| c.dp.as_ref().ok())
            .map(|s| s.sparsity.clone());
        let done = sparsity
            .as_deref()
            .is_some_and(|s| self.state.recovered_for(s).is_some());
        ui.horizontal(|ui| {
            let running = self.state.is_recovering();
            let button = ui.add_enabled(
                sparsity.is_some() && !running && !done,
                egui::Button::new("Recover"),
            );
            if button
                .on_hover_text(
                    "Full recovery of this allocation (progress and cancel in the jobs list)",
                )
                .clicked()
            {
                self.state.recover();
            }
            ui.add(
                egui::DragValue::new(&mut self.state.settings.distill_steps)
                    .range(0..=10_000)
                    .suffix(" steps"),
            )
            .on_hover_text("Distillation steps (Adam): more steps recover more, linearly slower");
            ui.label(if done {
                "recovered: shown, evaluated and exported"
            } else if running {
                "recovering..."
            } else {
                "not recovered yet: showing statistics repair"
            });
        });
    }

    fn totals(&self, ui: &mut egui::Ui) {
        let Some(cur) = &self.state.current else {
            ui.label(self.state.plan_status().explain());
            return;
        };
        let dense_flops = self
            .state
            .planner
            .as_ref()
            .map_or(0.0, |p| p.problem.totals().0);
        egui::Grid::new("totals").num_columns(3).show(ui, |ui| {
            ui.label("");
            ui.strong("dp");
            if let Some((m, _)) = &cur.compare {
                ui.strong(m.name());
            }
            ui.end_row();
            let cell = |row: usize, s: &pruneview_core::prune::alloc::Solution| match row {
                0 => format!("{:.1}%", 100.0 * s.flops_kept),
                1 => format!("{:.2}", s.flops / 1e9),
                2 => format!("{:.1}%", 100.0 * s.params_kept),
                _ => format!("{:.3e}", s.predicted),
            };
            for (row, label) in ["FLOPs kept", "GFLOPs", "params kept", "predicted D"]
                .into_iter()
                .enumerate()
            {
                let l = ui.label(label);
                if row == 3 {
                    l.on_hover_text(help::PREDICTED_D);
                }
                match &cur.dp {
                    Ok(s) => ui.label(cell(row, s)),
                    Err(e) => ui
                        .colored_label(egui::Color32::LIGHT_RED, "-")
                        .on_hover_text(e),
                };
                if let Some((_, r)) = &cur.compare {
                    match r {
                        Ok(s) => ui.label(cell(row, s)),
                        Err(e) => ui.label("-").on_hover_text(e),
                    };
                }
                ui.end_row();
            }
        });
        if let Err(e) = &cur.dp {
            ui.colored_label(egui::Color32::LIGHT_RED, e);
        }
        ui.label(format!("dense: {:.2} GFLOPs per scan", dense_flops / 1e9));
    }

    fn allocation_chart(&self, ui: &mut egui::Ui) {
        let (Some(cur), Some(p)) = (&self.state.current, &self.state.planner) else {
            return;
        };
        let Ok(dp) = &cur.dp else { return };
        let names: Vec<&str> = p
            .problem
            .layers
            .iter()
            .map(|l| l.name.trim_end_matches(".weight"))
            .collect();
        let locked: Vec<bool> = p.problem.constraints.iter().map(|c| c.locked).collect();
        let compare = cur
            .compare
            .as_ref()
            .and_then(|(m, r)| r.as_ref().ok().map(|s| (*m, s.sparsity.as_slice())));
        ui.label("Per-layer sparsity");
        ui.allocate_ui(egui::vec2(ui.available_width(), 240.0), |ui| {
            plots::allocation_bars(ui, "allocation", &names, &dp.sparsity, compare, &locked);
        });
    }
}
