//! The `--svg` chart: one stacked bar per pipeline, CPU seconds per
//! recorded minute by process group, drawn with plotters. A dashed line
//! marks the capture-only browser: what lies above it, short of ffmpeg,
//! is the transport.

use std::path::Path;

use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::pipeline::GROUPS;
use super::report::{self, Summary};
use crate::machine::Machine;

const COLORS: [RGBColor; 4] =
    [RGBColor(66, 133, 244), RGBColor(234, 67, 53), RGBColor(251, 188, 5), RGBColor(120, 120, 120)];

/// Writes the chart to `path`.
pub fn write(summary: &Summary, machine: &Machine, path: &Path) -> Result<(), String> {
    let err = |e: DrawingAreaErrorKind<_>| format!("svg: {e}");
    let root = SVGBackend::new(path, (1100, 640)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let rows = &summary.rows;
    // Each group's bar is its median over the rounds, the number above it
    // the median total: the two can differ a little.
    let stacked = |r: &super::report::Row| r.cpu.iter().sum::<f64>();
    let height = |r: &super::report::Row| stacked(r).max(r.total);
    let top = rows.iter().map(height).fold(0.0f64, f64::max).max(1e-6) * 1.22;
    let rounds = rows.iter().map(|r| r.rounds).max().unwrap_or(0);
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
    let caption = "The whole recording bot: CPU seconds per recorded minute, by process group (1080p30 + 48 kHz mono)";
    let subtitle = format!(
        "Median of {rounds} round(s); {} cores ({}), shared: load average {:.1} to {:.1}; {}. Number above a bar: \
         median total.",
        machine.cores,
        machine.cpu_model,
        summary.load_range.0,
        summary.load_range.1,
        report::date()
    );
    let setup = format!(
        "Every browser's profile on {}; one MP4 per run, the same ffmpeg arguments in every row.",
        summary.profile_fs
    );
    let centred = |size| TextStyle::from(("sans-serif", size).into_font()).pos(Pos::new(HPos::Center, VPos::Top));
    root.draw(&Text::new(caption, (550, 10), centred(18))).map_err(err)?;
    root.draw(&Text::new(subtitle, (550, 34), centred(13).color(&BLACK.mix(0.75)))).map_err(err)?;
    root.draw(&Text::new(setup, (550, 52), centred(13).color(&BLACK.mix(0.75)))).map_err(err)?;
    let area = root.margin(66, 0, 0, 0);
    let mut chart = ChartBuilder::on(&area)
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
        .y_desc("CPU seconds per recorded minute")
        .light_line_style(WHITE)
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
    if let Some(capture) = summary.row("capture-only") {
        let y = capture.cpu[0];
        let line = [(SegmentValue::Exact(0), y), (SegmentValue::Last, y)];
        chart
            .draw_series(DashedLineSeries::new(line, 8, 5, BLACK.stroke_width(1)))
            .map_err(|e| format!("svg: {e}"))?
            .label("capture-only browser (above it, short of ffmpeg: transport)")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 14, y)], BLACK));
    }
    chart
        .draw_series(rows.iter().enumerate().map(|(i, r)| {
            let style = TextStyle::from(("sans-serif", 14).into_font()).pos(Pos::new(HPos::Center, VPos::Bottom));
            Text::new(format!("{:.1}", r.total), (SegmentValue::CenterOf(i), height(r) + top * 0.01), style)
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
