//! The per-layer distortion curves, and picking the layer under the pointer.

use eframe::egui::{self, Color32};
use egui_plot::{ItemId, Legend, Line, LineStyle, MarkerShape, PlotMemory, PlotUi, Points};

use super::axis::{
    log_floor, log_grid_marks, log_hover_text, log_points, log_y_axis, percent_x_axis,
};
use super::{MIN_PLOT_HEIGHT, base_plot, layer_color, plot_size};

/// How close (in screen points) the pointer must be to a curve to pick its layer.
const HOVER_TOLERANCE_PX: f64 = 8.0;
/// With more layers than this a per-layer legend would cover the plot; tooltips name layers.
const LEGEND_MAX_LAYERS: usize = 12;
/// Faded curves keep this much of their colour while another layer is highlighted.
const FADE: f32 = 0.35;

/// One layer's curve: distortion (already lambda-combined) vs sparsity.
pub struct LayerCurvePlot<'a> {
    pub name: &'a str,
    /// Sparsities in `[0, 1]`.
    pub levels: &'a [f64],
    /// Predicted distortion, same length as `levels`.
    pub predicted: Vec<f64>,
    /// Measured levels and values, when computed.
    pub measured: Option<(&'a [f64], Vec<f64>)>,
    /// The sparsity the current allocation picks for this layer.
    pub chosen: Option<f64>,
}

/// Linear interpolation of y at `x` on points sorted by x, clamped to the end values. Places
/// the chosen-sparsity marker on its curve even between levels.
fn interpolate(points: &[[f64; 2]], x: f64) -> Option<f64> {
    let (first, last) = (points.first()?, points.last()?);
    if !x.is_finite() {
        return None;
    }
    if x <= first[0] {
        return Some(first[1]);
    }
    if x >= last[0] {
        return Some(last[1]);
    }
    let i = points.partition_point(|p| p[0] <= x);
    let ([x0, y0], [x1, y1]) = (points[i - 1], points[i]);
    if x1 <= x0 {
        return Some(y0);
    }
    Some(y0 + (y1 - y0) * (x - x0) / (x1 - x0))
}

/// Index of the curve nearest to `pointer` (plot coordinates), if within `tolerance_px`.
/// Distances are measured in screen points (`px_per_unit` per axis), because x (sparsity) and
/// y (decades) have unrelated units. A one-point curve counts as a point, an empty one never.
pub fn pick_curve(
    pointer: [f64; 2],
    curves: &[Vec<[f64; 2]>],
    px_per_unit: [f64; 2],
    tolerance_px: f64,
) -> Option<usize> {
    let to_px = |p: [f64; 2]| [p[0] * px_per_unit[0].abs(), p[1] * px_per_unit[1].abs()];
    let q = to_px(pointer);
    curves
        .iter()
        .enumerate()
        .filter_map(|(i, curve)| curve_dist_sq(q, curve, to_px).map(|d| (i, d)))
        .filter(|(_, d)| *d <= tolerance_px * tolerance_px)
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(i, _)| i)
}

/// Squared screen distance from `q` to a polyline, `None` when the polyline is empty.
fn curve_dist_sq(
    q: [f64; 2],
    curve: &[[f64; 2]],
    to_px: impl Fn([f64; 2]) -> [f64; 2],
) -> Option<f64> {
    let px: Vec<[f64; 2]> = curve.iter().map(|p| to_px(*p)).collect();
    match px.as_slice() {
        [] => None,
        [p] => Some(dist_sq(q, *p)),
        _ => px
            .windows(2)
            .map(|w| dist_sq_to_segment(q, w[0], w[1]))
            .min_by(f64::total_cmp),
    }
}

fn dist_sq(a: [f64; 2], b: [f64; 2]) -> f64 {
    (a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)
}

fn dist_sq_to_segment(q: [f64; 2], a: [f64; 2], b: [f64; 2]) -> f64 {
    let ab = [b[0] - a[0], b[1] - a[1]];
    let len_sq = ab[0] * ab[0] + ab[1] * ab[1];
    if len_sq == 0.0 {
        return dist_sq(q, a);
    }
    let t = (((q[0] - a[0]) * ab[0] + (q[1] - a[1]) * ab[1]) / len_sq).clamp(0.0, 1.0);
    dist_sq(q, [a[0] + t * ab[0], a[1] + t * ab[1]])
}

/// The id all items of one layer share, so the legend hides them together and a hovered item
/// maps back to its layer.
fn layer_item_id(index: usize) -> ItemId {
    ItemId::new(("pruneview-layer", index))
}

/// Which layers to draw emphasised: the hovered one and the caller's highlight.
#[derive(Clone, Copy)]
struct Emphasis {
    hovered: Option<usize>,
    highlight: Option<usize>,
}

impl Emphasis {
    fn any(self) -> bool {
        self.hovered.is_some() || self.highlight.is_some()
    }

    fn is(self, i: usize) -> bool {
        self.hovered == Some(i) || self.highlight == Some(i)
    }

    /// The layer's colour, faded when some other layer has the focus.
    fn color(self, i: usize) -> Color32 {
        let c = layer_color(i);
        if self.any() && !self.is(i) {
            c.gamma_multiply(FADE)
        } else {
            c
        }
    }
}

/// Distortion vs sparsity for every layer on a log y axis, with a marker at each layer's chosen
/// sparsity and measured curves overlaid (dashed, with points) where present.
///
/// Hovering near a curve (or a legend entry) highlights that layer and returns its index;
/// `highlight` lets the caller emphasise a layer too, e.g. the selected table row.
pub fn curves_plot(
    ui: &mut egui::Ui,
    id: &str,
    layers: &[LayerCurvePlot<'_>],
    highlight: Option<usize>,
) -> Option<usize> {
    let plot_id = ui.make_persistent_id(("pruneview-curves", id));
    let floor = log_floor(layers.iter().flat_map(|l| {
        let measured = l
            .measured
            .as_ref()
            .map(|m| m.1.as_slice())
            .unwrap_or_default();
        l.predicted.iter().chain(measured).copied()
    }));
    let predicted: Vec<Vec<[f64; 2]>> = layers
        .iter()
        .map(|l| {
            log_points(
                l.levels.iter().copied().zip(l.predicted.iter().copied()),
                floor,
            )
        })
        .collect();
    let hovered = hovered_layer(ui, plot_id, &predicted);
    let emphasis = Emphasis {
        hovered,
        highlight: highlight.filter(|&h| h < layers.len()),
    };

    let mut plot = base_plot(plot_id, plot_size(ui, MIN_PLOT_HEIGHT))
        .custom_x_axes(vec![percent_x_axis("sparsity")])
        .custom_y_axes(vec![log_y_axis("distortion")])
        .y_grid_spacer(log_grid_marks)
        .include_x(0.0)
        .include_x(1.0)
        .label_formatter(move |pos| Some(log_hover_text(pos, "sparsity", "distortion", floor)));
    if layers.len() <= LEGEND_MAX_LAYERS {
        plot = plot.legend(Legend::default().follow_insertion_order(true));
    }
    let response = plot.show(ui, |pui| {
        for (i, (layer, points)) in layers.iter().zip(predicted).enumerate() {
            draw_layer(pui, i, layer, points, emphasis, floor);
        }
    });
    let from_item = response
        .hovered_plot_item
        .and_then(|item| (0..layers.len()).find(|&i| layer_item_id(i) == item));
    hovered.or(from_item)
}

/// The layer under the pointer, from last frame's plot transform (the items of this frame are
/// styled from it, so the highlight shows without a frame of lag). A hovered legend entry wins;
/// layers hidden in the legend are never picked.
fn hovered_layer(ui: &egui::Ui, plot_id: egui::Id, curves: &[Vec<[f64; 2]>]) -> Option<usize> {
    let mem = PlotMemory::load(ui.ctx(), plot_id)?;
    let transform = mem.transform();
    if !ui.rect_contains_pointer(*transform.frame()) {
        return None;
    }
    if let Some(item) = mem.hovered_legend_item {
        return (0..curves.len()).find(|&i| layer_item_id(i) == item);
    }
    let pointer = transform.value_from_position(ui.ctx().pointer_hover_pos()?);
    let visible: Vec<Vec<[f64; 2]>> = curves
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let hidden = mem.hidden_items.contains(&layer_item_id(i));
            if hidden { Vec::new() } else { c.clone() }
        })
        .collect();
    let [sx, sy] = transform.dpos_dvalue();
    pick_curve(
        [pointer.x, pointer.y],
        &visible,
        [sx, sy],
        HOVER_TOLERANCE_PX,
    )
}

/// One layer's predicted line, measured overlay and chosen-sparsity marker, all under the
/// layer's name and item id.
fn draw_layer(
    pui: &mut PlotUi<'_>,
    i: usize,
    layer: &LayerCurvePlot<'_>,
    predicted: Vec<[f64; 2]>,
    emphasis: Emphasis,
    floor: f64,
) {
    let (color, strong) = (emphasis.color(i), emphasis.is(i));
    let measured = layer
        .measured
        .as_ref()
        .map(|(lv, vals)| log_points(lv.iter().copied().zip(vals.iter().copied()), floor))
        .unwrap_or_default();
    let marker = layer.chosen.and_then(|s| {
        let on = if predicted.is_empty() {
            &measured
        } else {
            &predicted
        };
        interpolate(on, s).map(|y| [s, y])
    });
    if !measured.is_empty() {
        pui.line(
            Line::new(layer.name, measured.clone())
                .id(layer_item_id(i))
                .color(color)
                .width(1.0)
                .style(LineStyle::dashed_loose())
                .highlight(strong),
        );
        pui.points(
            Points::new(layer.name, measured)
                .id(layer_item_id(i))
                .color(color)
                .radius(2.5)
                .filled(true)
                .highlight(strong),
        );
    }
    pui.line(
        Line::new(layer.name, predicted)
            .id(layer_item_id(i))
            .color(color)
            .width(1.5)
            .highlight(strong),
    );
    if let Some(p) = marker {
        pui.points(
            Points::new(layer.name, vec![p])
                .id(layer_item_id(i))
                .color(color)
                .shape(MarkerShape::Diamond)
                .radius(5.0)
                .filled(true)
                .highlight(strong),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use egui_kittest::Harness;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn interpolation_is_linear_and_clamped() {
        let pts = [[0.0, 0.0], [0.5, 1.0], [1.0, 3.0]];
        assert!(close(interpolate(&pts, 0.25).unwrap(), 0.5));
        assert!(close(interpolate(&pts, 0.75).unwrap(), 2.0));
        assert!(close(interpolate(&pts, 0.5).unwrap(), 1.0));
        assert!(close(interpolate(&pts, -1.0).unwrap(), 0.0));
        assert!(close(interpolate(&pts, 2.0).unwrap(), 3.0));
        assert_eq!(interpolate(&pts, f64::NAN), None);
        assert_eq!(interpolate(&[], 0.5), None);
        assert!(close(interpolate(&[[0.3, 7.0]], 0.9).unwrap(), 7.0));
    }

    #[test]
    fn pick_curve_finds_nearest_within_tolerance() {
        let curves = vec![
            vec![[0.0, 0.0], [1.0, 0.0]],
            vec![[0.0, 1.0], [1.0, 1.0]],
            vec![],
            vec![[0.5, 0.5]],
        ];
        let scale = [100.0, 100.0];
        assert_eq!(pick_curve([0.5, 0.05], &curves, scale, 8.0), Some(0));
        assert_eq!(pick_curve([0.3, 0.97], &curves, scale, 8.0), Some(1));
        assert_eq!(pick_curve([0.52, 0.5], &curves, scale, 8.0), Some(3));
        // 10 px from both lines and 20 px from the point: nothing.
        assert_eq!(pick_curve([0.5, 0.1], &curves, scale, 8.0), None);
        assert_eq!(pick_curve([5.0, 5.0], &curves, scale, 8.0), None);
        // Past the end of a segment, distance is to its end point.
        assert_eq!(pick_curve([1.05, 0.0], &curves, scale, 8.0), Some(0));
        assert_eq!(pick_curve([1.2, 0.0], &curves, scale, 8.0), None);
        // The tolerance is in pixels: a steep y scale makes the same offset too far.
        assert_eq!(
            pick_curve([0.5, 0.05], &curves, [100.0, -1000.0], 8.0),
            None
        );
        assert_eq!(pick_curve([0.5, 0.5], &[], scale, 8.0), None);
    }

    /// Hovering right over a layer's curve reports that layer; moving away reports none.
    #[test]
    fn hovering_a_curve_returns_its_layer() {
        struct State {
            levels: Vec<f64>,
            plot_id: Option<egui::Id>,
            hovered: Option<usize>,
        }
        let state = State {
            levels: vec![0.0, 0.5, 1.0],
            plot_id: None,
            hovered: None,
        };
        let mut h = Harness::builder()
            .with_size(egui::vec2(400.0, 300.0))
            .build_ui_state(
                |ui, s: &mut State| {
                    s.plot_id = Some(ui.make_persistent_id(("pruneview-curves", "hover")));
                    let ls = [
                        LayerCurvePlot {
                            name: "low",
                            levels: &s.levels,
                            predicted: vec![1e-6; 3],
                            measured: None,
                            chosen: None,
                        },
                        LayerCurvePlot {
                            name: "high",
                            levels: &s.levels,
                            predicted: vec![1e-2; 3],
                            measured: None,
                            chosen: None,
                        },
                    ];
                    s.hovered = curves_plot(ui, "hover", &ls, None);
                },
                state,
            );
        h.run();
        let mem = PlotMemory::load(&h.ctx, h.state().plot_id.unwrap()).expect("plot memory");
        // Hovers plot point (x, log10 y) and returns the layer the plot reports.
        let mut hovered_at = |x: f64, log_y: f64| {
            let pos = mem
                .transform()
                .position_from_point(&egui_plot::PlotPoint::new(x, log_y));
            h.hover_at(pos);
            h.run();
            h.state().hovered
        };
        assert_eq!(hovered_at(0.5, -2.0), Some(1), "on the high curve");
        assert_eq!(hovered_at(0.25, -6.0), Some(0), "on the low curve");
        assert_eq!(hovered_at(0.5, -4.0), None, "between the curves");
    }
}
