//! The per-layer allocation bars, with a baseline's allocation over them.

use eframe::egui::{self, Color32};
use egui_plot::{Bar, BarChart, Legend};
use pruneview_core::prune::alloc::Method;

use super::axis::format_percent;
use super::{MIN_PLOT_HEIGHT, base_plot, method_color, plot_size};

/// Colour for locked layers in the allocation bars: neutral, so it reads as "not chosen".
const LOCKED_COLOR: Color32 = Color32::from_rgb(150, 150, 150);

/// Per-layer sparsity of the current allocation as bars (x = layer index), with an optional
/// comparison allocation (a baseline) as narrower outlined bars over them. Locked layers get a
/// neutral colour. Hovering a bar shows the layer name and both values.
pub fn allocation_bars(
    ui: &mut egui::Ui,
    id: &str,
    names: &[&str],
    sparsity: &[f64],
    compare: Option<(Method, &[f64])>,
    locked: &[bool],
) {
    let plot_id = ui.make_persistent_id(("pruneview-allocation", id));
    let labels: Vec<String> = (0..sparsity.len())
        .map(|i| bar_label(i, names.get(i).copied(), sparsity[i], compare))
        .collect();
    let (free, fixed) = current_bars(sparsity, &labels, locked);
    let compared = compare.map(|(method, values)| compare_chart(method, values, &labels));
    base_plot(plot_id, plot_size(ui, MIN_PLOT_HEIGHT))
        .x_axis_label("layer")
        .x_axis_formatter(|mark, _| index_tick(mark.value))
        .y_axis_label("sparsity")
        .y_axis_formatter(|mark, _| format_percent(mark.value))
        .include_y(0.0)
        .include_y(1.0)
        .legend(Legend::default().follow_insertion_order(true))
        .show_x(false)
        .show_y(false)
        .show(ui, |pui| {
            let current = method_color(Method::Dp);
            pui.bar_chart(with_label_tooltip(BarChart::new("current", free)).color(current));
            pui.bar_chart(with_label_tooltip(BarChart::new("locked", fixed)).color(LOCKED_COLOR));
            if let Some(chart) = compared {
                pui.bar_chart(chart);
            }
        });
}

/// The current allocation's bars, split into free and locked layers (NaN values are skipped).
/// Both are filled, so they read as "the allocation" under the outlined comparison.
fn current_bars(sparsity: &[f64], labels: &[String], locked: &[bool]) -> (Vec<Bar>, Vec<Bar>) {
    let (mut free, mut fixed) = (Vec::new(), Vec::new());
    for (i, (s, label)) in sparsity.iter().zip(labels).enumerate() {
        if !s.is_finite() {
            continue;
        }
        let is_locked = locked.get(i).copied().unwrap_or(false);
        let color = if is_locked {
            LOCKED_COLOR
        } else {
            method_color(Method::Dp)
        };
        let bar = Bar::new(i as f64, *s)
            .width(0.7)
            .name(label)
            .fill(color.gamma_multiply(0.6))
            .stroke(egui::Stroke::new(1.0, color));
        if is_locked {
            fixed.push(bar)
        } else {
            free.push(bar)
        }
    }
    (free, fixed)
}

/// The comparison allocation: narrow bars with an outline only, so the current bars show
/// through and the difference reads at a glance.
fn compare_chart(method: Method, values: &[f64], labels: &[String]) -> BarChart {
    let color = method_color(method);
    let bars = values
        .iter()
        .zip(labels)
        .enumerate()
        .filter(|(_, (v, _))| v.is_finite())
        .map(|(i, (v, label))| {
            Bar::new(i as f64, *v)
                .width(0.35)
                .name(label)
                .fill(Color32::TRANSPARENT)
                .stroke(egui::Stroke::new(1.5, color))
        })
        .collect();
    with_label_tooltip(BarChart::new(method.name(), bars)).color(color)
}

/// Bars carry their full hover text in their name; show it as-is.
fn with_label_tooltip(chart: BarChart) -> BarChart {
    chart.element_formatter(Box::new(|bar, _| bar.name.clone()))
}

/// Hover text for one layer's bars: name, index and the values of both allocations.
fn bar_label(
    i: usize,
    name: Option<&str>,
    value: f64,
    compare: Option<(Method, &[f64])>,
) -> String {
    let mut text = format!(
        "#{i} {}\ncurrent {}",
        name.unwrap_or("?"),
        format_percent(value)
    );
    if let Some((method, values)) = compare
        && let Some(v) = values.get(i)
    {
        text.push_str(&format!("\n{} {}", method.name(), format_percent(*v)));
    }
    text
}

/// Layer indices on the x axis: whole, non-negative marks only.
fn index_tick(value: f64) -> String {
    if value >= 0.0 && value.fract() == 0.0 {
        format!("{value:.0}")
    } else {
        String::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_index_ticks_are_whole() {
        assert_eq!(index_tick(3.0), "3");
        assert_eq!(index_tick(2.5), "");
    }
}
