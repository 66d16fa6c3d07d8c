//! The frontier plot: predicted distortion vs budget kept, per method, with the current budget.

use eframe::egui::{self, Color32};
use egui_plot::{Legend, Line, LineStyle, MarkerShape, PlotUi, Points, VLine};
use pruneview_core::prune::alloc::Method;

use super::axis::{
    log_floor, log_grid_marks, log_hover_text, log_points, log_y_axis, log10_clamped,
    percent_x_axis,
};
use super::{MIN_PLOT_HEIGHT, base_plot, method_color, plot_size};

/// One method's frontier: predicted distortion vs fraction of FLOPs (or params) kept.
pub struct FrontierSeries<'a> {
    pub method: Method,
    /// `(kept fraction, distortion)` pairs.
    pub points: &'a [(f64, f64)],
    /// Drawn thicker and on top (the DP frontier, normally).
    pub emphasised: bool,
}

/// Predicted distortion (log y) vs kept fraction (x, as %) for DP and the baselines, with the
/// current budget as a marked point and a vertical line. Measured AP has a plot of its own
/// (the Evaluation window): squeezed under this one it was unreadable.
pub fn frontier_plot(
    ui: &mut egui::Ui,
    id: &str,
    series: &[FrontierSeries<'_>],
    current: Option<(f64, f64)>,
) {
    let size = plot_size(ui, MIN_PLOT_HEIGHT);
    let frontier_id = ui.make_persistent_id(("pruneview-frontier", id));
    let floor = log_floor(
        series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.1))
            .chain(current.map(|c| c.1)),
    );
    base_plot(frontier_id, size)
        .custom_x_axes(vec![percent_x_axis("kept")])
        .custom_y_axes(vec![log_y_axis("distortion")])
        .y_grid_spacer(log_grid_marks)
        .include_x(0.0)
        .include_x(1.0)
        .legend(Legend::default().follow_insertion_order(true))
        .label_formatter(move |pos| Some(log_hover_text(pos, "kept", "distortion", floor)))
        .show(ui, |pui| {
            // Baselines first, so the emphasised (DP) frontier is drawn on top of them.
            let (strong, weak): (Vec<_>, Vec<_>) = series.iter().partition(|s| s.emphasised);
            for s in weak.into_iter().chain(strong) {
                draw_frontier_series(pui, s, floor);
            }
            draw_budget(pui, current, floor);
        });
}

fn draw_frontier_series(pui: &mut PlotUi<'_>, s: &FrontierSeries<'_>, floor: f64) {
    let points = log_points(s.points.iter().copied(), floor);
    let width = if s.emphasised { 3.0 } else { 1.5 };
    pui.line(
        Line::new(s.method.name(), points)
            .color(method_color(s.method))
            .width(width),
    );
}

/// The current budget: a vertical line at its kept fraction and a point on the frontier.
fn draw_budget(pui: &mut PlotUi<'_>, current: Option<(f64, f64)>, floor: f64) {
    let Some((keep, distortion)) = current.filter(|c| c.0.is_finite()) else {
        return;
    };
    let color = budget_color(pui);
    pui.vline(
        VLine::new("budget", keep)
            .color(color)
            .style(LineStyle::dashed_dense()),
    );
    if let Some(y) = log10_clamped(distortion, floor) {
        pui.points(
            Points::new("budget", vec![[keep, y]])
                .color(color)
                .shape(MarkerShape::Circle)
                .radius(6.0)
                .filled(false),
        );
    }
}

/// The budget marker takes the theme's strongest text colour, so it reads on dark and light.
pub(super) fn budget_color(pui: &PlotUi<'_>) -> Color32 {
    pui.ctx().global_style().visuals.strong_text_color()
}
