//! Log axes and number formatting: distortions are plotted as `log10` with ticks and hover text
//! in real values, fractions as percentages.

use egui_plot::{AxisHints, GridInput, GridMark, HoverPosition};

/// The lowest floor a log axis ever uses. Zero and negative values (a layer that pruning does
/// not hurt, or noise below zero in a measurement) are drawn at a floor instead of dropped.
pub const LOG_FLOOR: f64 = 1e-12;

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
pub(super) fn log_points(pairs: impl IntoIterator<Item = (f64, f64)>, floor: f64) -> Vec<[f64; 2]> {
    let mut pts: Vec<[f64; 2]> = pairs
        .into_iter()
        .filter(|(x, _)| x.is_finite())
        .filter_map(|(x, y)| log10_clamped(y, floor).map(|ly| [x, ly]))
        .collect();
    pts.sort_by(|a, b| a[0].total_cmp(&b[0]));
    pts
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
pub(super) fn format_percent(fraction: f64) -> String {
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
pub(super) fn log_grid_marks(input: GridInput) -> Vec<GridMark> {
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

/// An x axis of fractions in `[0, 1]`, labelled as percentages. The narrower label spacing lets
/// every 10% get a label on a plot a few hundred points wide.
pub(super) fn percent_x_axis<'a>(label: &str) -> AxisHints<'a> {
    AxisHints::new_x()
        .label(label)
        .formatter(|mark, _| format_percent(mark.value))
        .label_spacing(36.0..=50.0)
}

/// A `log10` y axis labelled with real values.
pub(super) fn log_y_axis<'a>(label: &str) -> AxisHints<'a> {
    AxisHints::new_y()
        .label(label)
        .formatter(|mark, _| format_log_tick(mark.value))
}

/// Hover text for plots with a percentage x and a `log10` y. Values at the floor were clamped
/// there, so they read as "at most the floor".
pub(super) fn log_hover_text(
    pos: &HoverPosition<'_>,
    x_name: &str,
    y_name: &str,
    floor: f64,
) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
