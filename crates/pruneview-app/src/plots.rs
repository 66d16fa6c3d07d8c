//! Plot widgets for the sparsity explorer: per-layer distortion curves, the method frontiers and
//! the per-layer allocation bars. They draw plain slices, so panels can feed them from any state
//! and tests can drive them without a model.
//!
//! Distortions span many decades (a barely pruned layer vs a gutted one), so they are plotted as
//! `log10` of the value with axis ticks labelled in real values. Zero, negative and tiny values
//! are clamped to a floor (a decade under the smallest positive value shown, never below
//! [`LOG_FLOOR`]) so they never make a NaN or infinite point; NaN inputs are skipped.

use eframe::egui::{self, Color32};
use egui_plot::{
    AxisHints, Bar, BarChart, GridInput, GridMark, HoverPosition, ItemId, Legend, Line, LineStyle,
    MarkerShape, Plot, PlotMemory, PlotUi, Points, VLine,
};

/// The lowest floor a log axis ever uses. Zero and negative values (a layer that pruning does
/// not hurt, or noise below zero in a measurement) are drawn at a floor instead of dropped.
pub const LOG_FLOOR: f64 = 1e-12;

/// Plots never shrink below this, so they stay readable in tight panels and render in tests.
const MIN_PLOT_HEIGHT: f32 = 160.0;
/// The accuracy plot under the frontier only needs room for a few points.
const MIN_AP_PLOT_HEIGHT: f32 = 110.0;
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

/// One method's frontier: predicted distortion vs fraction of FLOPs (or params) kept.
pub struct FrontierSeries<'a> {
    pub method: &'a str,
    /// `(kept fraction, distortion)` pairs.
    pub points: &'a [(f64, f64)],
    /// Drawn thicker and on top (the DP frontier, normally).
    pub emphasised: bool,
}

/// A measured accuracy point from an evaluation: fraction kept and mean AP in %, per method.
pub struct ApPoint<'a> {
    pub method: &'a str,
    pub keep: f64,
    pub ap: f64,
}

/// A fixed colour per allocation method, so a method looks the same in every panel.
/// Matching is case-insensitive and on the prefix (`"global_magnitude"` is `global`); unknown
/// methods get a stable colour from their name.
pub fn method_color(method: &str) -> Color32 {
    let m = method.to_ascii_lowercase();
    let known = [
        ("dp", Color32::from_rgb(228, 90, 20)),
        ("uniform", Color32::from_rgb(52, 120, 200)),
        ("global", Color32::from_rgb(40, 160, 90)),
        ("lamp", Color32::from_rgb(150, 100, 200)),
        ("erk", Color32::from_rgb(200, 160, 20)),
    ];
    if let Some((_, c)) = known.iter().find(|(k, _)| m.starts_with(k)) {
        return *c;
    }
    let hash = m
        .bytes()
        .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize));
    EXTRA_COLORS[hash % EXTRA_COLORS.len()]
}

/// Colours for methods without a fixed colour; none is close to a method colour above.
const EXTRA_COLORS: [Color32; 4] = [
    Color32::from_rgb(20, 170, 180),
    Color32::from_rgb(220, 80, 150),
    Color32::from_rgb(140, 100, 60),
    Color32::from_rgb(120, 120, 120),
];

/// Colour for locked layers in the allocation bars: neutral, so it reads as "not chosen".
const LOCKED_COLOR: Color32 = Color32::from_rgb(150, 150, 150);

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

// ---------------------------------------------------------------------------------------------
// Pure helpers (unit-tested)
// ---------------------------------------------------------------------------------------------

/// `log10` of a distortion for a log axis. Values at or below `floor` (zero, negatives, `-inf`)
/// are clamped to it; NaN and `+inf` have no place on the axis and give `None`. A floor that is
/// not a positive finite number is replaced by [`LOG_FLOOR`].
pub fn log10_clamped(v: f64, floor: f64) -> Option<f64> {
    if v.is_nan() || v == f64::INFINITY {
        return None;
    }
    let floor = if floor.is_finite() && floor > 0.0 {
        floor.max(LOG_FLOOR)
    } else {
        LOG_FLOOR
    };
    Some(v.max(floor).log10())
}

/// The floor for one plot: a decade under its smallest positive value, so zeros (an unpruned
/// layer has distortion exactly 0) sit just under the data instead of stretching the axis down
/// to [`LOG_FLOOR`].
pub fn log_floor(values: impl IntoIterator<Item = f64>) -> f64 {
    let min = values
        .into_iter()
        .filter(|v| v.is_finite() && *v > 0.0)
        .fold(f64::INFINITY, f64::min);
    if min.is_finite() {
        (min / 10.0).max(LOG_FLOOR)
    } else {
        LOG_FLOOR
    }
}

/// Plot points `[x, log10 y]` from `(x, y)` pairs: NaN or infinite x and unplottable y are
/// skipped, and the result is sorted by x so lines never zig-zag back.
fn log_points(pairs: impl IntoIterator<Item = (f64, f64)>, floor: f64) -> Vec<[f64; 2]> {
    let mut pts: Vec<[f64; 2]> = pairs
        .into_iter()
        .filter(|(x, _)| x.is_finite())
        .filter_map(|(x, y)| log10_clamped(y, floor).map(|ly| [x, ly]))
        .collect();
    pts.sort_by(|a, b| a[0].total_cmp(&b[0]));
    pts
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

/// A short, readable number: 3 significant digits, plain between 1e-3 and 1e4, otherwise
/// scientific (`1.5e-7`), trailing zeros trimmed.
pub fn format_value(v: f64) -> String {
    if !v.is_finite() {
        return format!("{v}");
    }
    if v == 0.0 {
        return "0".to_owned();
    }
    let a = v.abs();
    if (1e-3..1e4).contains(&a) {
        let decimals = (2 - a.log10().floor() as i32).max(0) as usize;
        return trim_fraction(&format!("{v:.decimals$}")).to_owned();
    }
    let s = format!("{v:.2e}");
    match s.split_once('e') {
        Some((mantissa, exp)) => format!("{}e{exp}", trim_fraction(mantissa)),
        None => s,
    }
}

/// Drops trailing zeros after a decimal point, and the point itself when nothing is left.
fn trim_fraction(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

/// A fraction as a percentage, without decimals when they would be zero.
fn format_percent(fraction: f64) -> String {
    let p = fraction * 100.0;
    if (p - p.round()).abs() < 1e-6 {
        format!("{:.0}%", p.round())
    } else {
        format!("{p:.1}%")
    }
}

/// Tick label for a log-axis grid mark: the real value at decades and at the 2x and 5x minor
/// marks, nothing at the other minor marks (they are only grid lines).
fn format_log_tick(log_value: f64) -> String {
    if !log_value.is_finite() {
        return String::new();
    }
    let decade = log_value.floor();
    let mantissa = 10f64.powf(log_value - decade);
    let rounded = mantissa.round();
    if (mantissa - rounded).abs() > 1e-6 * rounded.max(1.0) {
        return String::new();
    }
    let (m, k) = if rounded >= 10.0 {
        (1.0, decade + 1.0)
    } else {
        (rounded, decade)
    };
    if m == 1.0 || m == 2.0 || m == 5.0 {
        format_value(m * 10f64.powf(k))
    } else {
        String::new()
    }
}

/// Grid for a `log10` axis: lines at whole decades (every n-th decade when zoomed far out) and,
/// when few decades are visible, minor lines at 2..9 times each decade. The 2x and 5x marks get
/// a larger step so their labels appear before the other minor ones would.
fn log_grid_marks(input: GridInput) -> Vec<GridMark> {
    let (lo, hi) = input.bounds;
    if !(lo.is_finite() && hi.is_finite()) || hi <= lo || hi - lo > 10_000.0 {
        return Vec::new();
    }
    let span = hi - lo;
    let decade_step = (span / 8.0).ceil().max(1.0) as i64;
    let mut marks = Vec::new();
    for k in (lo.floor() as i64)..=(hi.ceil() as i64) {
        let kf = k as f64;
        if k.rem_euclid(decade_step) == 0 && (lo..=hi).contains(&kf) {
            marks.push(GridMark {
                value: kf,
                step_size: decade_step as f64,
            });
        }
        if decade_step == 1 && span <= 4.0 {
            for m in 2..=9 {
                let value = kf + f64::from(m).log10();
                let step_size = if m == 2 || m == 5 { 0.3 } else { 0.1 };
                if (lo..=hi).contains(&value) {
                    marks.push(GridMark { value, step_size });
                }
            }
        }
    }
    marks
}

// ---------------------------------------------------------------------------------------------
// Shared plot setup
// ---------------------------------------------------------------------------------------------

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

/// An x axis of fractions in `[0, 1]`, labelled as percentages. The narrower label spacing lets
/// every 10% get a label on a plot a few hundred points wide.
fn percent_x_axis<'a>(label: &str) -> AxisHints<'a> {
    AxisHints::new_x()
        .label(label)
        .formatter(|mark, _| format_percent(mark.value))
        .label_spacing(36.0..=50.0)
}

/// A `log10` y axis labelled with real values.
fn log_y_axis<'a>(label: &str) -> AxisHints<'a> {
    AxisHints::new_y()
        .label(label)
        .formatter(|mark, _| format_log_tick(mark.value))
}

/// Hover text for plots with a percentage x and a `log10` y. Values at the floor were clamped
/// there, so they read as "at most the floor".
fn log_hover_text(pos: &HoverPosition<'_>, x_name: &str, y_name: &str, floor: f64) -> String {
    let (name, p) = match pos {
        HoverPosition::NearDataPoint {
            plot_name,
            position,
            ..
        } => (*plot_name, *position),
        HoverPosition::Elsewhere { position } => ("", *position),
    };
    let value = 10f64.powf(p.y);
    let value = if value <= floor * (1.0 + 1e-9) {
        format!("≤ {}", format_value(floor))
    } else {
        format_value(value)
    };
    let body = format!("{x_name} {}\n{y_name} {value}", format_percent(p.x));
    if name.is_empty() {
        body
    } else {
        format!("{name}\n{body}")
    }
}

// ---------------------------------------------------------------------------------------------
// Per-layer curves
// ---------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------
// Frontier
// ---------------------------------------------------------------------------------------------

/// Predicted distortion (log y) vs kept fraction (x, as %) for DP and the baselines, with the
/// current budget as a marked point and a vertical line. Measured AP points, when given, go in a
/// small plot below whose x axis is linked to the frontier's, so both zoom and pan together.
pub fn frontier_plot(
    ui: &mut egui::Ui,
    id: &str,
    series: &[FrontierSeries<'_>],
    current: Option<(f64, f64)>,
    ap: &[ApPoint<'_>],
) {
    let size = plot_size(ui, MIN_PLOT_HEIGHT);
    let link = ui.make_persistent_id(("pruneview-frontier-link", id));
    let budget = current.map(|c| c.0).filter(|k| k.is_finite());
    let heights = if ap.is_empty() {
        (size.y, 0.0)
    } else {
        let gap = ui.spacing().item_spacing.y;
        let top = (size.y * 0.65).max(MIN_PLOT_HEIGHT);
        (top, (size.y - top - gap).max(MIN_AP_PLOT_HEIGHT))
    };
    let frontier_id = ui.make_persistent_id(("pruneview-frontier", id));
    let floor = log_floor(
        series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.1))
            .chain(current.map(|c| c.1)),
    );
    base_plot(frontier_id, egui::vec2(size.x, heights.0))
        .custom_x_axes(vec![percent_x_axis("kept")])
        .custom_y_axes(vec![log_y_axis("distortion")])
        .y_grid_spacer(log_grid_marks)
        .include_x(0.0)
        .include_x(1.0)
        .link_axis(link, [true, false])
        .link_cursor(link, [true, false])
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
    if !ap.is_empty() {
        let ap_id = ui.make_persistent_id(("pruneview-frontier-ap", id));
        ap_plot(ui, ap_id, egui::vec2(size.x, heights.1), link, ap, budget);
    }
}

fn draw_frontier_series(pui: &mut PlotUi<'_>, s: &FrontierSeries<'_>, floor: f64) {
    let points = log_points(s.points.iter().copied(), floor);
    let width = if s.emphasised { 3.0 } else { 1.5 };
    pui.line(
        Line::new(s.method, points)
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
fn budget_color(pui: &PlotUi<'_>) -> Color32 {
    pui.ctx().global_style().visuals.strong_text_color()
}

/// Measured mean AP (%) per method vs kept fraction, one coloured series per method.
fn ap_plot(
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

// ---------------------------------------------------------------------------------------------
// Allocation bars
// ---------------------------------------------------------------------------------------------

/// Per-layer sparsity of the current allocation as bars (x = layer index), with an optional
/// comparison allocation (a baseline) as narrower outlined bars over them. Locked layers get a
/// neutral colour. Hovering a bar shows the layer name and both values.
pub fn allocation_bars(
    ui: &mut egui::Ui,
    id: &str,
    names: &[&str],
    sparsity: &[f64],
    compare: Option<(&str, &[f64])>,
    locked: &[bool],
) {
    let plot_id = ui.make_persistent_id(("pruneview-allocation", id));
    let labels: Vec<String> = (0..sparsity.len())
        .map(|i| bar_label(i, names.get(i).copied(), sparsity[i], compare))
        .collect();
    let (free, fixed) = current_bars(sparsity, &labels, locked);
    let compared = compare.map(|(name, values)| compare_chart(name, values, &labels));
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
            let current = method_color("dp");
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
            method_color("dp")
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
fn compare_chart(name: &str, values: &[f64], labels: &[String]) -> BarChart {
    let color = method_color(name);
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
    with_label_tooltip(BarChart::new(name, bars)).color(color)
}

/// Bars carry their full hover text in their name; show it as-is.
fn with_label_tooltip(chart: BarChart) -> BarChart {
    chart.element_formatter(Box::new(|bar, _| bar.name.clone()))
}

/// Hover text for one layer's bars: name, index and the values of both allocations.
fn bar_label(i: usize, name: Option<&str>, value: f64, compare: Option<(&str, &[f64])>) -> String {
    let mut text = format!(
        "#{i} {}\ncurrent {}",
        name.unwrap_or("?"),
        format_percent(value)
    );
    if let Some((method, values)) = compare
        && let Some(v) = values.get(i)
    {
        text.push_str(&format!("\n{method} {}", format_percent(*v)));
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
    use egui_kittest::Harness;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn log_clamp_gives_finite_values_and_skips_nan() {
        assert!(close(log10_clamped(1e-3, LOG_FLOOR).unwrap(), -3.0));
        assert!(close(log10_clamped(100.0, LOG_FLOOR).unwrap(), 2.0));
        assert!(close(log10_clamped(0.0, 1e-5).unwrap(), -5.0));
        // A bad floor falls back to LOG_FLOOR rather than making -inf or NaN.
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(close(log10_clamped(0.0, bad).unwrap(), LOG_FLOOR.log10()));
        }
        for v in [
            0.0,
            -0.0,
            -5.0,
            1e-300,
            f64::MIN_POSITIVE,
            f64::NEG_INFINITY,
        ] {
            let l = log10_clamped(v, LOG_FLOOR).unwrap();
            assert!(l.is_finite(), "{v} -> {l}");
            assert!(close(l, LOG_FLOOR.log10()), "{v} -> {l}");
        }
        assert_eq!(log10_clamped(f64::NAN, LOG_FLOOR), None);
        assert_eq!(log10_clamped(f64::INFINITY, LOG_FLOOR), None);
    }

    #[test]
    fn floor_sits_a_decade_under_the_data() {
        assert!(close(log_floor([0.0, 1e-4, f64::NAN, -3.0, 0.5]), 1e-5));
        assert_eq!(log_floor([0.0, -1.0, f64::NAN]), LOG_FLOOR);
        assert_eq!(log_floor([]), LOG_FLOOR);
        assert_eq!(log_floor([1e-300]), LOG_FLOOR);
    }

    #[test]
    fn log_points_skip_nan_and_sort_by_x() {
        let pts = log_points(
            [
                (0.5, 1e-2),
                (f64::NAN, 1.0),
                (0.1, 0.0),
                (0.3, f64::NAN),
                (0.2, 1.0),
            ],
            1e-3,
        );
        assert_eq!(pts.len(), 3);
        assert!(close(pts[0][1], -3.0), "zero sits at the floor");
        assert_eq!(
            pts.iter().map(|p| p[0]).collect::<Vec<_>>(),
            vec![0.1, 0.2, 0.5]
        );
        assert!(pts.iter().all(|p| p[1].is_finite()));
        assert!(close(pts[2][1], -2.0));
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

    #[test]
    fn value_and_tick_formatting() {
        assert_eq!(format_value(0.0), "0");
        assert_eq!(format_value(0.5), "0.5");
        assert_eq!(format_value(1.0), "1");
        assert_eq!(format_value(0.001), "0.001");
        assert_eq!(format_value(123.456), "123");
        assert_eq!(format_value(1.5e-7), "1.5e-7");
        assert_eq!(format_value(1e-6), "1e-6");
        assert_eq!(format_value(2e5), "2e5");
        assert_eq!(format_percent(0.25), "25%");
        assert_eq!(format_percent(0.125), "12.5%");
        assert_eq!(format_log_tick(-3.0), "0.001");
        assert_eq!(format_log_tick(-6.0), "1e-6");
        assert_eq!(format_log_tick(-3.0 + 2f64.log10()), "0.002");
        assert_eq!(format_log_tick(-8.0 + 5f64.log10()), "5e-8");
        assert_eq!(format_log_tick(-3.0 + 3f64.log10()), "");
        assert_eq!(format_log_tick(-2.5), "");
        assert_eq!(index_tick(3.0), "3");
        assert_eq!(index_tick(2.5), "");
    }

    #[test]
    fn log_grid_has_decades_and_minor_marks() {
        let input = |lo, hi| GridInput {
            bounds: (lo, hi),
            base_step_size: 0.01,
        };
        let marks = log_grid_marks(input(-4.5, -1.2));
        let decades: Vec<f64> = marks
            .iter()
            .filter(|m| m.value.fract() == 0.0)
            .map(|m| m.value)
            .collect();
        assert_eq!(decades, vec![-4.0, -3.0, -2.0]);
        assert!(marks.iter().any(|m| close(m.value, -2.0 + 5f64.log10())));
        assert!(marks.iter().all(|m| (-4.5..=-1.2).contains(&m.value)));
        // Far out: every n-th decade and no minor marks.
        let wide = log_grid_marks(input(-40.0, 10.0));
        assert!(
            wide.iter()
                .all(|m| m.value.fract() == 0.0 && m.step_size > 1.0)
        );
        assert!(wide.len() <= 12);
        assert!(log_grid_marks(input(1.0, 1.0)).is_empty());
        assert!(log_grid_marks(input(f64::NAN, 1.0)).is_empty());
    }

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

    #[test]
    fn method_colours_are_distinct_and_stable() {
        let methods = ["dp", "uniform", "global", "lamp", "erk"];
        let colors: Vec<Color32> = methods.iter().map(|m| method_color(m)).collect();
        for (i, a) in colors.iter().enumerate() {
            assert!(colors[i + 1..].iter().all(|b| a != b));
        }
        assert_eq!(method_color("DP"), method_color("dp"));
        assert_eq!(method_color("global_magnitude"), method_color("global"));
        assert_eq!(method_color("something"), method_color("something"));
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
                method: "uniform",
                points: &f.frontier_uniform,
                emphasised: false,
            },
            FrontierSeries {
                method: "dp",
                points: &f.frontier_dp,
                emphasised: true,
            },
        ];
        let ap = [
            ApPoint {
                method: "dp",
                keep: 0.5,
                ap: 61.0,
            },
            ApPoint {
                method: "uniform",
                keep: 0.5,
                ap: 55.0,
            },
            ApPoint {
                method: "dp",
                keep: f64::NAN,
                ap: 60.0,
            },
        ];
        ui.allocate_ui(egui::vec2(ui.available_width(), 300.0), |ui| {
            frontier_plot(ui, "f", &series, Some((0.5, 0.05)), &ap)
        });
        let names = ["conv1", "conv2", "head"];
        let compare: &[f64] = &[0.5, 0.5];
        allocation_bars(
            ui,
            "a",
            &names,
            &[0.3, f64::NAN, 0.7],
            Some(("uniform", compare)),
            &[false, false, true],
        );
    }

    #[test]
    fn plots_survive_empty_inputs() {
        let mut h = Harness::builder()
            .with_size(egui::vec2(500.0, 700.0))
            .build_ui(|ui| {
                assert_eq!(curves_plot(ui, "c", &[], Some(3)), None);
                frontier_plot(ui, "f", &[], None, &[]);
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
                    method: "lamp",
                    points: &pts,
                    emphasised: true,
                }];
                ui.allocate_ui(egui::vec2(400.0, 200.0), |ui| {
                    frontier_plot(ui, "f", &series, Some((f64::NAN, f64::NAN)), &[])
                });
                allocation_bars(
                    ui,
                    "a",
                    &["x"],
                    &[f64::NAN],
                    Some(("erk", &[f64::NAN])),
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
