//! The report's PNG: mean moderate AP_BEV against FLOPs kept, one line per method, the dense
//! model as a dashed line. Text uses the bundled DejaVu Sans (assets/fonts, Bitstream Vera
//! licence), so the plot renders the same on a machine without system fonts.

use std::path::Path;
use std::sync::Once;

use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};

use super::PruningReport;
use crate::prune::alloc::Method;

static FONT: &[u8] = include_bytes!("../../../../assets/fonts/DejaVuSans.ttf");

fn register() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The bundled font is a valid TrueType file; a failure would only lose the text.
        let _ = register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

/// A colour per method, stable across reports.
fn colour(method: Method) -> RGBColor {
    match method {
        Method::Dp => RGBColor(214, 39, 40),
        Method::Uniform => RGBColor(31, 119, 180),
        Method::Global => RGBColor(44, 160, 44),
        Method::Lamp => RGBColor(148, 103, 189),
        Method::Erk => RGBColor(255, 127, 14),
    }
}

/// Writes the plot to `path` (PNG, 1000 x 620).
pub fn write_png(report: &PruningReport, path: &Path) -> Result<(), String> {
    register();
    draw(report, path).map_err(|e| format!("{}: cannot draw the plot: {e}", path.display()))
}

fn draw(report: &PruningReport, path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let root = BitMapBackend::new(path, (1000, 620)).into_drawing_area();
    root.fill(&WHITE)?;
    let keeps = report.keeps();
    let lowest = keeps.iter().copied().fold(1.0f64, f64::min);
    let x_min = ((lowest * 100.0) - 5.0).max(0.0);
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "{}: pruning without fine-tuning ({} frames)",
                report.model.name, report.eval_frames
            ),
            ("sans-serif", 24),
        )
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(64)
        .build_cartesian_2d(x_min..102.0f64, 0.0..100.0f64)?;
    chart
        .configure_mesh()
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| format!("{v:.0}"))
        .bold_line_style(RGBColor(200, 200, 200))
        .light_line_style(RGBColor(238, 238, 238))
        .x_desc("FLOPs kept (% of the prunable layers)")
        .y_desc("mean moderate AP_BEV (R40)")
        .label_style(("sans-serif", 15))
        .axis_desc_style(("sans-serif", 17))
        .draw()?;

    let dense = report.dense.mean_bev;
    chart
        .draw_series(DashedLineSeries::new(
            [(x_min, dense), (102.0, dense)],
            8,
            6,
            ShapeStyle::from(&BLACK).stroke_width(1),
        ))?
        .label(format!("dense ({dense:.1})"))
        .legend(|(x, y)| PathElement::new([(x, y), (x + 24, y)], BLACK));

    // The DP is drawn last, on top of the baselines.
    let mut all_series = report.series();
    all_series.sort_by_key(|s| s.method == Method::Dp);
    let dashed = report.has_recovery();
    for series in all_series {
        let c = colour(series.method);
        let mask_only = series.recovery.is_none();
        let mut points: Vec<(f64, f64)> = vec![(100.0, dense)];
        points.extend(keeps.iter().filter_map(|&k| {
            report
                .row(series, k)
                .map(|r| (r.flops_keep * 100.0, r.accuracy.mean_bev))
        }));
        let width = if series.method == Method::Dp { 3 } else { 2 };
        let style = ShapeStyle::from(&c).stroke_width(width);
        // With recovered series present, mask-only ones are dashed.
        let line = if dashed && mask_only {
            chart.draw_series(DashedLineSeries::new(points.clone(), 10, 6, style))?
        } else {
            chart.draw_series(LineSeries::new(points.clone(), style))?
        };
        line.label(series.to_string()).legend(move |(x, y)| {
            PathElement::new([(x, y), (x + 24, y)], ShapeStyle::from(&c).stroke_width(3))
        });
        chart.draw_series(
            points
                .iter()
                .map(|&p| Circle::new(p, 4, ShapeStyle::from(&c).filled())),
        )?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .label_font(("sans-serif", 16))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}
