//! The `--svg` chart: CPU per GB on the video workloads and latency on the
//! small paced run, one bar per transport, drawn with plotters.

use std::path::Path;

use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;

use crate::report::Row;

struct Panel {
    title: &'static str,
    unit: &'static str,
    bars: Vec<(String, f64)>,
}

fn panel(
    rows: &[Row],
    workload: &str,
    title: &'static str,
    unit: &'static str,
    value: fn(&Row) -> Option<f64>,
) -> Panel {
    let bars = rows
        .iter()
        .filter(|r| r.workload == workload)
        .filter_map(|r| value(r).map(|v| (r.transport.clone(), v)))
        .collect();
    Panel { title, unit, bars }
}

/// Writes the chart to `path`.
pub fn write(rows: &[Row], path: &Path) -> Result<(), String> {
    let panels = [
        panel(rows, "video-1080p30", "video-1080p30: CPU seconds per GB (producer + consumer)", "CPU s/GB", |r| {
            Some(r.cpu_s_per_gb)
        }),
        panel(rows, "video-max", "video-max: CPU seconds per GB (producer + consumer)", "CPU s/GB", |r| {
            Some(r.cpu_s_per_gb)
        }),
        panel(rows, "latency-64", "latency-64: p50 latency, 64 B at 1 kHz", "us", |r| r.p50_us),
        panel(rows, "latency-64", "latency-64: p99 latency, 64 B at 1 kHz", "us", |r| r.p99_us),
    ];
    let root = SVGBackend::new(path, (1400, 1000)).into_drawing_area();
    let err = |e: DrawingAreaErrorKind<_>| format!("svg: {e}");
    root.fill(&WHITE).map_err(err)?;
    for (area, panel) in root.split_evenly((2, 2)).iter().zip(&panels) {
        draw_panel(area, panel).map_err(|e| format!("svg: {e}"))?;
    }
    root.present().map_err(err)?;
    Ok(())
}

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    panel: &Panel,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let n = panel.bars.len().max(1);
    let top = panel.bars.iter().map(|(_, v)| *v).fold(0.0f64, f64::max).max(1e-9) * 1.15;
    let mut chart = ChartBuilder::on(area)
        .caption(panel.title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(60)
        .y_label_area_size(70)
        .build_cartesian_2d((0..n).into_segmented(), 0.0..top)?;
    let names: Vec<String> = panel.bars.iter().map(|(name, _)| name.clone()).collect();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n)
        .x_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => names.get(*i).cloned().unwrap_or_default(),
            _ => String::new(),
        })
        .x_label_style(("sans-serif", 12))
        .y_desc(panel.unit)
        .draw()?;
    chart.draw_series(panel.bars.iter().enumerate().map(|(i, (name, value))| {
        let color = if name.starts_with("shmring") { BLUE.mix(0.7) } else { RED.mix(0.6) };
        let mut bar =
            Rectangle::new([(SegmentValue::Exact(i), 0.0), (SegmentValue::Exact(i + 1), *value)], color.filled());
        bar.set_margin(0, 0, 8, 8);
        bar
    }))?;
    chart.draw_series(panel.bars.iter().enumerate().map(|(i, (_, value))| {
        Text::new(format_value(*value), (SegmentValue::CenterOf(i), *value + top * 0.02), ("sans-serif", 12))
    }))?;
    Ok(())
}

fn format_value(value: f64) -> String {
    if value >= 100.0 {
        format!("{value:.0}")
    } else if value >= 1.0 {
        format!("{value:.2}")
    } else {
        format!("{value:.3}")
    }
}
