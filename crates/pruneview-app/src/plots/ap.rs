//! The measured accuracy plot of the Evaluation window: AP per series vs budget kept, the
//! dense model at 100%.

use eframe::egui;
use egui_plot::{Corner, HoverPosition, Legend, Line, LineStyle, PlotUi, Points, VLine};

use super::axis::{format_percent, percent_x_axis};
use super::frontier::budget_color;
use super::{MIN_PLOT_HEIGHT, Series, base_plot};

/// A measured accuracy point from an evaluation: fraction kept and mean AP in %, per series.
pub struct ApPoint {
    pub series: Series,
    pub keep: f64,
    pub ap: f64,
}

/// Measured AP (%, named by `y_label`) vs kept fraction, one line per [`Series`], with the
/// current budget as a dashed line, `height` points tall (never less than the plots' minimum)
/// so that it stays readable wherever it is put.
pub fn accuracy_plot(
    ui: &mut egui::Ui,
    id: &str,
    y_label: &str,
    ap: &[ApPoint],
    budget: Option<f64>,
    height: f32,
) {
    let plot_id = ui.make_persistent_id(("pruneview-accuracy", id));
    let size = egui::vec2(ui.available_width().max(200.0), height.max(MIN_PLOT_HEIGHT));
    ap_plot(ui, plot_id, size, y_label, ap, budget);
}

fn ap_plot(
    ui: &mut egui::Ui,
    plot_id: egui::Id,
    size: egui::Vec2,
    y_label: &str,
    ap: &[ApPoint],
    budget: Option<f64>,
) {
    let series = ap_series(ap);
    let (y_lo, y_hi) = ap_y_range(ap);
    base_plot(plot_id, size)
        .custom_x_axes(vec![percent_x_axis("kept")])
        .y_axis_label(y_label)
        .include_x(0.0)
        .include_x(1.0)
        .include_y(y_lo)
        .include_y(y_hi)
        // Bottom left: low AP at a small budget, the corner the points leave free.
        .legend(
            Legend::default()
                .follow_insertion_order(true)
                .position(Corner::LeftBottom),
        )
        .label_formatter(|pos| {
            let (name, p) = match pos {
                HoverPosition::NearDataPoint {
                    plot_name,
                    position,
                    ..
                } => (*plot_name, *position),
                HoverPosition::Elsewhere { position } => ("", *position),
            };
            Some(
                format!("{name}\nkept {}\nAP {:.1}%", format_percent(p.x), p.y)
                    .trim()
                    .to_owned(),
            )
        })
        .show(ui, |pui| {
            for s in series {
                draw_ap_series(pui, s, ap);
            }
            if let Some(keep) = budget {
                let color = budget_color(pui);
                pui.vline(
                    VLine::new("", keep)
                        .color(color)
                        .style(LineStyle::dashed_dense()),
                );
            }
        });
}

/// The AP range to show: the data with a few points of margin, so two close results are not
/// pinned to the plot's edges.
fn ap_y_range(ap: &[ApPoint]) -> (f64, f64) {
    let values = ap.iter().map(|p| p.ap).filter(|v| v.is_finite());
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if lo > hi {
        return (0.0, 100.0);
    }
    let pad = ((hi - lo) * 0.1).max(2.0);
    (lo - pad, hi + pad)
}

/// The series in first-seen order, each once.
fn ap_series(ap: &[ApPoint]) -> Vec<Series> {
    let mut series: Vec<Series> = Vec::new();
    for p in ap {
        if !series.contains(&p.series) {
            series.push(p.series);
        }
    }
    series
}

fn draw_ap_series(pui: &mut PlotUi<'_>, series: Series, ap: &[ApPoint]) {
    let mut points: Vec<[f64; 2]> = ap
        .iter()
        .filter(|p| p.series == series && p.keep.is_finite() && p.ap.is_finite())
        .map(|p| [p.keep, p.ap])
        .collect();
    points.sort_by(|a, b| a[0].total_cmp(&b[0]));
    let (name, color) = (series.name(), series.color());
    pui.line(
        Line::new(name.clone(), points.clone())
            .color(color)
            .width(1.0),
    );
    pui.points(
        Points::new(name, points)
            .color(color)
            .radius(3.5)
            .filled(true),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use pruneview_core::prune::alloc::Method;
    use pruneview_core::session::recover::Recovery;

    #[test]
    fn ap_range_has_margin_and_ignores_nan() {
        let p = |ap| ApPoint {
            series: Series::Pruned(Method::Dp, Recovery::None),
            keep: 0.5,
            ap,
        };
        assert_eq!(ap_y_range(&[p(55.0), p(61.0), p(f64::NAN)]), (53.0, 63.0));
        assert_eq!(ap_y_range(&[p(f64::NAN)]), (0.0, 100.0));
        assert_eq!(ap_y_range(&[]), (0.0, 100.0));
    }
}
