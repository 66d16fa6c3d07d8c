//! Plot widgets for the sparsity explorer: per-layer distortion curves, the method frontiers and
//! the per-layer allocation bars. They draw plain slices, so panels can feed them from any state
//! and tests can drive them without a model.
//!
//! Distortions span many decades (a barely pruned layer vs a gutted one), so they are plotted as
//! `log10` of the value with axis ticks labelled in real values. Zero, negative and tiny values
//! are clamped to a floor (a decade under the smallest positive value shown, never below
//! [`LOG_FLOOR`]) so they never make a NaN or infinite point; NaN inputs are skipped.
//!
//! One file per plot: `curves.rs`, `frontier.rs` (with `ap.rs`, the accuracy plot under it) and
//! `bars.rs`; `axis.rs` holds the log axes and number formatting they share. This file holds the
//! series enum and the colours that must agree across plots, and the setup every plot shares.

mod ap;
mod axis;
mod bars;
mod curves;
mod frontier;

use eframe::egui::{self, Color32};
use egui_plot::Plot;
use pruneview_core::prune::alloc::Method;
use pruneview_core::session::recover::Recovery;

pub use ap::{ApPoint, accuracy_plot};
pub use axis::{LOG_FLOOR, format_value, log_floor, log10_clamped};
pub use bars::allocation_bars;
pub use curves::{LayerCurvePlot, curves_plot, pick_curve};
pub use frontier::{FrontierSeries, frontier_plot};

/// Plots never shrink below this, so they stay readable in tight panels and render in tests.
const MIN_PLOT_HEIGHT: f32 = 160.0;

/// What a plotted series stands for: the dense model, or one method's allocation after one
/// recovery. Its colour and legend name follow from it, so a method looks the same everywhere.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Series {
    /// The unpruned model.
    Dense,
    /// A method's allocation, repaired as the recovery says.
    Pruned(Method, Recovery),
}

impl Series {
    /// The legend name: `dense`, the method (`dp`), or the method and its recovery when there
    /// is one (`dp + statistics`).
    pub fn name(self) -> String {
        match self {
            Series::Dense => "dense".to_owned(),
            Series::Pruned(m, Recovery::None) => m.name().to_owned(),
            Series::Pruned(m, r) => format!("{} + {}", m.name(), r.label()),
        }
    }

    /// A pruned series takes its method's colour whatever the recovery.
    pub fn color(self) -> Color32 {
        match self {
            Series::Dense => DENSE_SERIES_COLOR,
            Series::Pruned(m, _) => method_color(m),
        }
    }
}

/// A fixed colour per allocation method, so a method looks the same in every panel.
pub fn method_color(method: Method) -> Color32 {
    match method {
        Method::Dp => Color32::from_rgb(228, 90, 20),
        Method::Uniform => Color32::from_rgb(52, 120, 200),
        Method::Global => Color32::from_rgb(40, 160, 90),
        Method::Lamp => Color32::from_rgb(150, 100, 200),
        Method::Erk => Color32::from_rgb(200, 160, 20),
    }
}

/// The dense model's points: a neutral grey, apart from every method colour.
const DENSE_SERIES_COLOR: Color32 = Color32::from_rgb(120, 120, 120);

/// A categorical colour per layer; neighbours in the layer order get distinct hues.
pub fn layer_color(index: usize) -> Color32 {
    const PALETTE: [Color32; 10] = [
        Color32::from_rgb(60, 120, 210),
        Color32::from_rgb(235, 130, 30),
        Color32::from_rgb(50, 165, 70),
        Color32::from_rgb(215, 55, 60),
        Color32::from_rgb(145, 105, 200),
        Color32::from_rgb(150, 95, 75),
        Color32::from_rgb(225, 110, 190),
        Color32::from_rgb(130, 130, 130),
        Color32::from_rgb(185, 185, 40),
        Color32::from_rgb(30, 185, 200),
    ];
    PALETTE[index % PALETTE.len()]
}

/// The size a plot takes: the width and height left in the `ui` (so a panel decides the size),
/// but never less than `min_height`, and a sane default where the `ui` is unbounded.
fn plot_size(ui: &egui::Ui, min_height: f32) -> egui::Vec2 {
    let avail = ui.available_size();
    let width = if avail.x.is_finite() && avail.x > 1.0 {
        avail.x
    } else {
        400.0
    };
    let height = if avail.y.is_finite() {
        avail.y.max(min_height)
    } else {
        min_height * 1.5
    };
    egui::vec2(width, height)
}

/// Settings every plot here shares. Scrolling is left to the surrounding panel (zoom stays on
/// Ctrl+wheel and drag), so a plot never traps the page scroll.
fn base_plot<'a>(plot_id: egui::Id, size: egui::Vec2) -> Plot<'a> {
    Plot::new(plot_id)
        .id(plot_id)
        .width(size.x)
        .height(size.y)
        .allow_scroll(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use egui_kittest::Harness;

    #[test]
    fn method_colours_are_distinct_and_stable() {
        let colors: Vec<Color32> = Method::ALL.iter().map(|m| method_color(*m)).collect();
        for (i, a) in colors.iter().enumerate() {
            assert!(colors[i + 1..].iter().all(|b| a != b));
        }
        // A recovered series keeps its method's colour; the dense one has its own.
        for r in Recovery::ALL {
            assert_eq!(
                Series::Pruned(Method::Global, r).color(),
                method_color(Method::Global)
            );
        }
        assert!(!colors.contains(&Series::Dense.color()));
    }

    #[test]
    fn series_names_say_method_and_recovery() {
        assert_eq!(Series::Dense.name(), "dense");
        assert_eq!(Series::Pruned(Method::Dp, Recovery::None).name(), "dp");
        assert_eq!(
            Series::Pruned(Method::Lamp, Recovery::Statistics).name(),
            "lamp + statistics"
        );
        assert_eq!(
            Series::Pruned(Method::Erk, Recovery::Full).name(),
            "erk + full"
        );
    }

    /// Data for the harness tests: two layers, one with measured points and NaN in its data.
    struct Fixture {
        levels: Vec<f64>,
        measured_levels: Vec<f64>,
        frontier_dp: Vec<(f64, f64)>,
        frontier_uniform: Vec<(f64, f64)>,
    }

    fn fixture() -> Fixture {
        let levels: Vec<f64> = (0..10).map(|i| f64::from(i) / 10.0).collect();
        let frontier = |scale: f64| -> Vec<(f64, f64)> {
            (1..=10)
                .map(|i| {
                    (
                        f64::from(i) / 10.0,
                        scale * (1.0 - f64::from(i) / 10.0) + 1e-4,
                    )
                })
                .collect()
        };
        Fixture {
            levels,
            measured_levels: vec![0.2, 0.5, 0.8],
            frontier_dp: frontier(0.1),
            frontier_uniform: frontier(1.0),
        }
    }

    fn layers(f: &Fixture) -> Vec<LayerCurvePlot<'_>> {
        let curve = |scale: f64| f.levels.iter().map(|s| scale * s * s).collect::<Vec<f64>>();
        let mut with_nan = curve(2.0);
        with_nan[3] = f64::NAN;
        vec![
            LayerCurvePlot {
                name: "conv1",
                levels: &f.levels,
                predicted: curve(0.01),
                measured: Some((&f.measured_levels, vec![0.0005, f64::NAN, 0.007])),
                chosen: Some(0.45),
            },
            LayerCurvePlot {
                name: "head",
                levels: &f.levels,
                predicted: with_nan,
                measured: None,
                chosen: Some(0.3),
            },
        ]
    }

    fn draw_all(ui: &mut egui::Ui, f: &Fixture) {
        let ls = layers(f);
        ui.allocate_ui(egui::vec2(ui.available_width(), 200.0), |ui| {
            curves_plot(ui, "c", &ls, Some(1))
        });
        let series = [
            FrontierSeries {
                method: Method::Uniform,
                points: &f.frontier_uniform,
                emphasised: false,
            },
            FrontierSeries {
                method: Method::Dp,
                points: &f.frontier_dp,
                emphasised: true,
            },
        ];
        let ap = [
            ApPoint {
                series: Series::Pruned(Method::Dp, Recovery::None),
                keep: 0.5,
                ap: 61.0,
            },
            ApPoint {
                series: Series::Pruned(Method::Uniform, Recovery::None),
                keep: 0.5,
                ap: 55.0,
            },
            ApPoint {
                series: Series::Pruned(Method::Dp, Recovery::None),
                keep: f64::NAN,
                ap: 60.0,
            },
        ];
        ui.allocate_ui(egui::vec2(ui.available_width(), 200.0), |ui| {
            frontier_plot(ui, "f", &series, Some((0.5, 0.05)))
        });
        accuracy_plot(ui, "ap", "AP_BEV %", &ap, Some(0.5), 160.0);
        let names = ["conv1", "conv2", "head"];
        let compare: &[f64] = &[0.5, 0.5];
        allocation_bars(
            ui,
            "a",
            &names,
            &[0.3, f64::NAN, 0.7],
            Some((Method::Uniform, compare)),
            &[false, false, true],
        );
    }

    #[test]
    fn plots_survive_empty_inputs() {
        let mut h = Harness::builder()
            .with_size(egui::vec2(500.0, 700.0))
            .build_ui(|ui| {
                assert_eq!(curves_plot(ui, "c", &[], Some(3)), None);
                frontier_plot(ui, "f", &[], None);
                accuracy_plot(ui, "ap", "AP %", &[], None, 0.0);
                allocation_bars(ui, "a", &[], &[], None, &[]);
            });
        h.run();
    }

    #[test]
    fn plots_survive_single_level_and_nan() {
        let nan_levels = [f64::NAN];
        let one_level = [0.5];
        let mut h = Harness::builder()
            .with_size(egui::vec2(500.0, 700.0))
            .build_ui(|ui| {
                let ls = [
                    LayerCurvePlot {
                        name: "one",
                        levels: &one_level,
                        predicted: vec![0.1],
                        measured: None,
                        chosen: Some(0.9),
                    },
                    LayerCurvePlot {
                        name: "nan",
                        levels: &nan_levels,
                        predicted: vec![f64::NAN],
                        measured: None,
                        chosen: Some(f64::NAN),
                    },
                    // Mismatched lengths: extra values are ignored.
                    LayerCurvePlot {
                        name: "short",
                        levels: &one_level,
                        predicted: vec![],
                        measured: Some((&one_level, vec![])),
                        chosen: None,
                    },
                ];
                ui.allocate_ui(egui::vec2(400.0, 200.0), |ui| {
                    curves_plot(ui, "c", &ls, None)
                });
                let pts = [(f64::NAN, 1.0), (0.5, f64::NAN), (0.7, 0.0)];
                let series = [FrontierSeries {
                    method: Method::Lamp,
                    points: &pts,
                    emphasised: true,
                }];
                ui.allocate_ui(egui::vec2(400.0, 200.0), |ui| {
                    frontier_plot(ui, "f", &series, Some((f64::NAN, f64::NAN)))
                });
                allocation_bars(
                    ui,
                    "a",
                    &["x"],
                    &[f64::NAN],
                    Some((Method::Erk, &[f64::NAN])),
                    &[true, true],
                );
            });
        h.run();
    }

    #[test]
    fn plots_render_something() {
        let f = fixture();
        let mut h = Harness::builder()
            .with_size(egui::vec2(600.0, 800.0))
            .build_ui(|ui| draw_all(ui, &f));
        h.run();
        let img = h.render().expect("render");
        let first = *img.get_pixel(0, 0);
        let differing = img.pixels().filter(|p| **p != first).count();
        assert!(
            differing > 1000,
            "only {differing} pixels differ from the background"
        );
    }
}
