//! The plots panel: per-layer distortion curves and the frontier (measured AP is in the
//! Evaluation window).

use eframe::egui;
use pruneview_core::prune::alloc::Method;

use super::PruneviewApp;
use crate::plots::{self, FrontierSeries, LayerCurvePlot};

impl PruneviewApp {
    pub(super) fn plots(&mut self, ui: &mut egui::Ui) {
        if ui.available_width() < 200.0 {
            return;
        }
        let Some(curves) = self.state.curves.clone() else {
            ui.centered_and_justified(|ui| {
                ui.label("Curves appear here when they are computed.");
            });
            return;
        };
        let lambdas = self.state.settings.lambdas;
        let sparsity = self.current_sparsity();
        let measured: Vec<Vec<f64>> = curves
            .layers
            .iter()
            .map(|l| l.measured.values().combined(lambdas))
            .collect();
        let layers: Vec<LayerCurvePlot> = curves
            .layers
            .iter()
            .enumerate()
            .map(|(i, l)| LayerCurvePlot {
                name: l.name.trim_end_matches(".weight"),
                levels: &l.sparsity,
                predicted: l.distortion.combined(lambdas),
                measured: (!l.measured.is_empty()).then(|| {
                    let lv: &[f64] = if l.measured.sparsity.is_empty() {
                        &l.sparsity
                    } else {
                        &l.measured.sparsity
                    };
                    (lv, measured[i].clone())
                }),
                chosen: sparsity.as_ref().map(|s| s[i]),
            })
            .collect();
        let planner = self.state.planner.clone();
        let cur = self.state.current.clone();
        ui.columns(2, |cols| {
            cols[0].label("Distortion vs sparsity per layer (hover to pick a layer)");
            // One line each (the full text on hover), so the two plots stay aligned.
            cols[0].add(
                egui::Label::new(
                    egui::RichText::new(
                        "solid: predicted · dashed with dots: measured · diamond: the \
                         allocation's sparsity",
                    )
                    .weak(),
                )
                .truncate(),
            );
            self.ui.hovered_layer =
                plots::curves_plot(&mut cols[0], "curves", &layers, self.ui.selected_layer);
            cols[1].label("Frontier: predicted distortion vs budget kept");
            cols[1].add(
                egui::Label::new(
                    egui::RichText::new("thick: dp · circle and dashed line: the current budget")
                        .weak(),
                )
                .truncate(),
            );
            if let Some(p) = &planner {
                let series: Vec<FrontierSeries> = p
                    .series
                    .iter()
                    .map(|(m, pts)| FrontierSeries {
                        method: *m,
                        points: pts,
                        emphasised: *m == Method::Dp,
                    })
                    .collect();
                let current = cur
                    .as_ref()
                    .and_then(|c| c.dp.as_ref().ok().map(|s| (c.keep, s.predicted)));
                plots::frontier_plot(&mut cols[1], "frontier", &series, current);
            }
        });
    }
}
