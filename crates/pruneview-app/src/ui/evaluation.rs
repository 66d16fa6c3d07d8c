//! The Evaluation window: what to evaluate on (a held-out labelled folder, frames generated
//! by the simulator, or, said to be optimistic, the calibration scans), per-class AP of the
//! dense and the pruned model, and AP against the budget with the dense model at 100%.

use eframe::egui;
use pruneview_core::session::evaluate::{EvalSource, HELDOUT_SEED};

use super::PruneviewApp;
use crate::plots::{self, ApPoint, Series};
use crate::state::Pick;
use crate::work::EvalPoint;

/// Height of the AP-vs-budget plot: room for a few series and their legend.
const PLOT_HEIGHT: f32 = 260.0;

/// The colour of warnings in the window.
const WARN: egui::Color32 = egui::Color32::from_rgb(255, 190, 60);

/// Which AP the plot shows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Metric {
    #[default]
    Bev,
    ThreeD,
}

/// The window's own state (not persisted): whether it is open, the plotted metric and class,
/// the evaluation shown in the table, and the simulator settings last typed.
pub(super) struct EvalUi {
    pub(super) open: bool,
    metric: Metric,
    /// `None`: the mean over classes.
    class: Option<String>,
    /// Index into the chosen set's evaluations; `None`: the latest.
    shown: Option<usize>,
    seed: u64,
    frames: usize,
    /// The folder chosen last, so that its radio button brings it back.
    folder: Option<std::path::PathBuf>,
}

impl Default for EvalUi {
    fn default() -> Self {
        EvalUi {
            open: false,
            metric: Metric::Bev,
            class: None,
            shown: None,
            seed: HELDOUT_SEED,
            frames: 32,
            folder: None,
        }
    }
}

/// The AP of one class (or the mean) of one evaluated model, in %.
fn ap_of(a: &pruneview_core::report::Accuracy, class: Option<&str>, metric: Metric) -> f64 {
    let pick = |bev: f64, three_d: f64| match metric {
        Metric::Bev => bev,
        Metric::ThreeD => three_d,
    };
    match class {
        None => pick(a.mean_bev, a.mean_3d),
        Some(c) => a
            .classes
            .iter()
            .find(|x| x.0 == c)
            .map_or(f64::NAN, |x| pick(x.1, x.2)),
    }
}

impl PruneviewApp {
    pub(super) fn evaluation_window(&mut self, ctx: &egui::Context) {
        let mut open = self.ui.eval.open;
        // Over the 3D view, clear of the menu bar and the budget panel's buttons.
        let area = ctx.content_rect();
        egui::Window::new("Evaluation")
            .open(&mut open)
            .default_pos(area.min + egui::vec2(area.width() * 0.28, 60.0))
            .default_size([600.0, 640.0])
            .resizable(true)
            .vscroll(true)
            .show(ctx, |ui| {
                self.eval_source_picker(ui);
                ui.separator();
                self.eval_controls(ui);
                ui.separator();
                let points: Vec<EvalPoint> = self
                    .state
                    .eval_points_of_source()
                    .into_iter()
                    .cloned()
                    .collect();
                if points.is_empty() {
                    ui.label("No evaluation on this set yet: press Evaluate.");
                    return;
                }
                self.class_table(ui, &points);
                ui.separator();
                self.accuracy_plot(ui, &points);
            });
        self.ui.eval.open = open;
    }

    fn eval_source_picker(&mut self, ui: &mut egui::Ui) {
        ui.strong("Evaluate on");
        let source = self.state.settings.eval_source.clone();
        let e = &mut self.ui.eval;
        let synthetic = matches!(source, EvalSource::Synthetic { .. });
        let mut choice = None;
        ui.horizontal(|ui| {
            if ui
                .radio(synthetic, "held-out synthetic frames")
                .on_hover_text(
                    "street scenes made by the simulator (pruneview synth), labelled, with a \
                     seed of their own: none of them is a calibration scan",
                )
                .clicked()
            {
                choice = Some(EvalSource::Synthetic {
                    seed: e.seed,
                    frames: e.frames,
                });
            }
            ui.add_enabled_ui(synthetic, |ui| {
                ui.label("seed");
                let a = ui.add(egui::DragValue::new(&mut e.seed));
                ui.label("frames");
                let b = ui.add(egui::DragValue::new(&mut e.frames).range(1..=2000));
                if a.changed() || b.changed() {
                    choice = Some(EvalSource::Synthetic {
                        seed: e.seed,
                        frames: e.frames,
                    });
                }
            });
        });
        let mut pick = false;
        ui.horizontal(|ui| {
            if let EvalSource::Folder(p) = &source {
                e.folder = Some(p.clone());
            }
            let chosen = matches!(source, EvalSource::Folder(_));
            if ui
                .radio(chosen, "a labelled KITTI folder")
                .on_hover_text("velodyne/, calib/ and label_2/: every labelled frame is used")
                .clicked()
            {
                match &e.folder {
                    Some(p) => choice = Some(EvalSource::Folder(p.clone())),
                    None => pick = true,
                }
            }
            pick |= ui.button("Choose folder...").clicked();
            if let Some(p) = &e.folder {
                ui.label(p.display().to_string());
            }
        });
        if pick {
            self.state.pick(Pick::EvalFolder);
        }
        let calibration = source == EvalSource::Calibration;
        if ui
            .radio(calibration, "the calibration scans")
            .on_hover_text("the labelled calibration scans (KITTI layout)")
            .clicked()
        {
            choice = Some(EvalSource::Calibration);
        }
        if calibration {
            let n = self.state.labelled_calibration_scans().len();
            ui.colored_label(
                WARN,
                format!(
                    "Optimistic: the curves and the statistics repair were computed on these \
                     {n} labelled scans. Choose a held-out set for real numbers."
                ),
            );
        }
        if let Some(s) = choice
            && s != source
        {
            self.state.set_eval_source(s);
            self.ui.eval.shown = None;
        }
    }

    fn eval_controls(&mut self, ui: &mut egui::Ui) {
        let ready = self.state.current.as_ref().is_some_and(|c| c.dp.is_ok());
        ui.horizontal(|ui| {
            let running = self.state.is_evaluating();
            if ui
                .add_enabled(
                    ready && !running,
                    egui::Button::new("Evaluate at this budget"),
                )
                .on_hover_text(
                    "KITTI AP (moderate, R40) of the dense and the pruned model at this budget \
                     and recovery (progress and cancel in the jobs list)",
                )
                .clicked()
            {
                self.state.evaluate();
                self.ui.eval.shown = None;
            }
            if let Some(c) = &self.state.current {
                ui.label(format!(
                    "dp at {:.1}% kept, recovery {}",
                    100.0 * c.keep,
                    self.state.settings.recovery.label()
                ));
            }
            if running {
                ui.spinner();
                ui.label("evaluating...");
            }
        });
        if !ready {
            ui.label("An allocation is needed first: the curves and the frontier.");
        }
    }

    /// Per-class AP of the dense and the pruned model, for one evaluation of the chosen set.
    fn class_table(&mut self, ui: &mut egui::Ui, points: &[EvalPoint]) {
        let title = |p: &EvalPoint| {
            format!(
                "{} at {:.1}%, recovery {}",
                p.method,
                100.0 * p.keep,
                p.recovery.label()
            )
        };
        let latest = points.len() - 1;
        let mut shown = self
            .ui
            .eval
            .shown
            .filter(|&i| i < points.len())
            .unwrap_or(latest);
        ui.horizontal(|ui| {
            ui.strong("Per-class AP");
            egui::ComboBox::from_id_salt("eval-shown")
                .selected_text(title(&points[shown]))
                .show_ui(ui, |ui| {
                    for (i, p) in points.iter().enumerate() {
                        ui.selectable_value(&mut shown, i, title(p));
                    }
                });
        });
        self.ui.eval.shown = (shown != latest).then_some(shown);
        let p = &points[shown];
        ui.label(format!(
            "moderate difficulty, R40, on {} frames of {}",
            p.accuracy.frames, p.source
        ));
        let (d, q) = (&p.accuracy.dense, &p.accuracy.pruned);
        egui::Grid::new("eval-classes")
            .striped(true)
            .num_columns(7)
            .show(ui, |ui| {
                for h in [
                    "class",
                    "dense BEV",
                    "pruned BEV",
                    "change",
                    "dense 3D",
                    "pruned 3D",
                    "change",
                ] {
                    ui.strong(h);
                }
                ui.end_row();
                let row = |ui: &mut egui::Ui, name: &str, a: [f64; 4]| {
                    ui.label(name);
                    for (v, change) in [(a[0], a[1]), (a[2], a[3])] {
                        ui.label(format!("{v:.2}"));
                        ui.label(format!("{change:.2}"));
                        let delta = change - v;
                        let color = if delta < -1.0 {
                            WARN
                        } else {
                            ui.visuals().text_color()
                        };
                        ui.colored_label(color, format!("{delta:+.2}"));
                    }
                    ui.end_row();
                };
                for (c, dc) in d.classes.iter().zip(&q.classes) {
                    row(ui, &c.0, [c.1, dc.1, c.2, dc.2]);
                }
                row(ui, "mean", [d.mean_bev, q.mean_bev, d.mean_3d, q.mean_3d]);
            });
    }

    /// AP against the budget kept: the dense model at 100% and one line per method and
    /// recovery, for the chosen metric and class.
    fn accuracy_plot(&mut self, ui: &mut egui::Ui, points: &[EvalPoint]) {
        let classes: Vec<String> = points[0]
            .accuracy
            .dense
            .classes
            .iter()
            .map(|c| c.0.clone())
            .collect();
        let e = &mut self.ui.eval;
        ui.horizontal(|ui| {
            ui.strong("AP vs budget");
            ui.radio_value(&mut e.metric, Metric::Bev, "BEV");
            ui.radio_value(&mut e.metric, Metric::ThreeD, "3D");
            egui::ComboBox::from_id_salt("eval-class")
                .selected_text(e.class.clone().unwrap_or("mean of classes".into()))
                .show_ui(ui, |ui| {
                    ui.selectable_value(&mut e.class, None, "mean of classes");
                    for c in &classes {
                        ui.selectable_value(&mut e.class, Some(c.clone()), c);
                    }
                });
        });
        let (class, metric) = (e.class.as_deref(), e.metric);
        let mut ap = vec![ApPoint {
            series: Series::Dense,
            keep: 1.0,
            ap: ap_of(&points[0].accuracy.dense, class, metric),
        }];
        ap.extend(points.iter().map(|p| ApPoint {
            series: Series::Pruned(p.method, p.recovery),
            keep: p.keep,
            ap: ap_of(&p.accuracy.pruned, class, metric),
        }));
        let y = match metric {
            Metric::Bev => "AP_BEV %",
            Metric::ThreeD => "AP_3D %",
        };
        let budget = self.state.current.as_ref().map(|c| c.keep);
        plots::accuracy_plot(ui, "evaluation", y, &ap, budget, PLOT_HEIGHT);
    }
}
