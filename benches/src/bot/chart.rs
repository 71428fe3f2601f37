//! The `--svg` chart: one stacked bar per pipeline, CPU seconds per
//! recorded minute by process group, drawn with plotters.

use std::path::Path;

use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;

use super::pipeline::GROUPS;
use super::report::Summary;
use crate::machine::Machine;

const COLORS: [RGBColor; 4] =
    [RGBColor(66, 133, 244), RGBColor(234, 67, 53), RGBColor(251, 188, 5), RGBColor(120, 120, 120)];

/// Writes the chart to `path`.
pub fn write(summary: &Summary, machine: &Machine, path: &Path) -> Result<(), String> {
    let err = |e: DrawingAreaErrorKind<_>| format!("svg: {e}");
    let root = SVGBackend::new(path, (1100, 620)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let rows = &summary.rows;
    let top = rows.iter().map(|r| r.total).fold(0.0f64, f64::max).max(1e-6) * 1.18;
    let names: Vec<String> = rows
        .iter()
        .map(|r| {
            if r.pipeline == "patched-renderer" {
                "patched-renderer (simulated)".to_string()
            } else {
                r.pipeline.clone()
            }
        })
        .collect();
    let caption = format!(
        "CPU seconds per recorded minute, 1080p30 + 48 kHz, by process group ({} cores, {})",
        machine.cores, machine.cpu_model
    );
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 17))
        .margin(14)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d((0..rows.len().saturating_sub(1)).into_segmented(), 0.0..top)
        .map_err(|e| format!("svg: {e}"))?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(rows.len() + 1)
        .x_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => names.get(*i).cloned().unwrap_or_default(),
            _ => String::new(),
        })
        .x_label_style(("sans-serif", 13))
        .y_desc("CPU s per recorded minute")
        .draw()
        .map_err(|e| format!("svg: {e}"))?;
    for (g, group) in GROUPS.iter().enumerate() {
        let color = COLORS[g];
        chart
            .draw_series(rows.iter().enumerate().map(|(i, r)| {
                let base: f64 = r.cpu[..g].iter().sum();
                let mut bar = Rectangle::new(
                    [(SegmentValue::Exact(i), base), (SegmentValue::Exact(i + 1), base + r.cpu[g])],
                    color.filled(),
                );
                bar.set_margin(0, 0, 18, 18);
                bar
            }))
            .map_err(|e| format!("svg: {e}"))?
            .label(*group)
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], color.filled()));
    }
    chart
        .draw_series(rows.iter().enumerate().map(|(i, r)| {
            Text::new(format!("{:.1}", r.total), (SegmentValue::CenterOf(i), r.total + top * 0.02), ("sans-serif", 14))
        }))
        .map_err(|e| format!("svg: {e}"))?;
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK.mix(0.3))
        .label_font(("sans-serif", 13))
        .draw()
        .map_err(|e| format!("svg: {e}"))?;
    root.present().map_err(err)?;
    Ok(())
}
