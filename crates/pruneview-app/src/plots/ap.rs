//! The measured accuracy plot under the frontier: mean AP per method vs budget kept.

use eframe::egui;
use egui_plot::{HoverPosition, Legend, Line, LineStyle, PlotUi, Points, VLine};

use super::axis::{format_percent, percent_x_axis};
use super::frontier::budget_color;
use super::{base_plot, method_color};

/// A measured accuracy point from an evaluation: fraction kept and mean AP in %, per method.
pub struct ApPoint<'a> {
    pub method: &'a str,
    pub keep: f64,
    pub ap: f64,
}

/// Measured mean AP (%) per method vs kept fraction, one coloured series per method.
pub(super) fn ap_plot(
    ui: &mut egui::Ui,
    plot_id: egui::Id,
    size: egui::Vec2,
    link: egui::Id,
    ap: &[ApPoint<'_>],
    budget: Option<f64>,
) {
    let methods = ap_methods(ap);
    let (y_lo, y_hi) = ap_y_range(ap);
    base_plot(plot_id, size)
        .custom_x_axes(vec![percent_x_axis("kept")])
        .y_axis_label("mAP %")
        .include_x(0.0)
        .include_x(1.0)
        .include_y(y_lo)
        .include_y(y_hi)
        .link_axis(link, [true, false])
        .link_cursor(link, [true, false])
        .legend(Legend::default().follow_insertion_order(true))
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
            for method in methods {
                draw_ap_method(pui, method, ap);
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
fn ap_y_range(ap: &[ApPoint<'_>]) -> (f64, f64) {
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

/// Method names in first-seen order, each once.
fn ap_methods<'a>(ap: &[ApPoint<'a>]) -> Vec<&'a str> {
    let mut methods: Vec<&str> = Vec::new();
    for p in ap {
        if !methods.contains(&p.method) {
            methods.push(p.method);
        }
    }
    methods
}

fn draw_ap_method(pui: &mut PlotUi<'_>, method: &str, ap: &[ApPoint<'_>]) {
    let mut points: Vec<[f64; 2]> = ap
        .iter()
        .filter(|p| p.method == method && p.keep.is_finite() && p.ap.is_finite())
        .map(|p| [p.keep, p.ap])
        .collect();
    points.sort_by(|a, b| a[0].total_cmp(&b[0]));
    let color = method_color(method);
    pui.line(Line::new(method, points.clone()).color(color).width(1.0));
    pui.points(
        Points::new(method, points)
            .color(color)
            .radius(3.5)
            .filled(true),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ap_range_has_margin_and_ignores_nan() {
        let p = |ap| ApPoint {
            method: "dp",
            keep: 0.5,
            ap,
        };
        assert_eq!(ap_y_range(&[p(55.0), p(61.0), p(f64::NAN)]), (53.0, 63.0));
        assert_eq!(ap_y_range(&[p(f64::NAN)]), (0.0, 100.0));
        assert_eq!(ap_y_range(&[]), (0.0, 100.0));
    }
}
