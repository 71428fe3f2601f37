//! The `--svg` chart: CPU per GB on the video workloads and latency on the
//! small paced run, one bar per transport, drawn with plotters.

use std::path::Path;

use plotters::coord::ranged1d::{SegmentValue, SegmentedCoord, ValueFormatter};
use plotters::prelude::*;

use super::report::Row;

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
    let cpu = |r: &Row| Some(r.cpu_s_per_gb);
    let panels = [
        panel(rows, "video-1080p30", "video-1080p30: CPU seconds per GB (producer + consumer)", "CPU s/GB", cpu),
        panel(rows, "video-max", "video-max: CPU seconds per GB (producer + consumer)", "CPU s/GB", cpu),
        panel(rows, "latency-64", "latency-64: p50 latency, 64 B at 1 kHz (log scale)", "us", |r| r.p50_us),
        panel(rows, "latency-64", "latency-64: p99 latency, 64 B at 1 kHz (log scale)", "us", |r| r.p99_us),
    ];
    let root = SVGBackend::new(path, (1800, 1000)).into_drawing_area();
    let err = |e: DrawingAreaErrorKind<_>| format!("svg: {e}");
    root.fill(&WHITE).map_err(err)?;
    for (i, (area, panel)) in root.split_evenly((2, 2)).iter().zip(&panels).enumerate() {
        let result = if i < 2 { draw_linear(area, panel) } else { draw_log(area, panel) };
        result.map_err(|e| format!("svg: {e}"))?;
    }
    root.present().map_err(err)?;
    Ok(())
}

type Area<'a, DB> = DrawingArea<DB, plotters::coord::Shift>;
type Drawn<DB> = std::result::Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

/// Segments `0..=last`, one per bar.
fn last_bar(panel: &Panel) -> usize {
    panel.bars.len().saturating_sub(1)
}

fn draw_linear<DB: DrawingBackend>(area: &Area<'_, DB>, panel: &Panel) -> Drawn<DB> {
    let top = panel.bars.iter().map(|(_, v)| *v).fold(0.0f64, f64::max).max(1e-9) * 1.15;
    let mut chart = ChartBuilder::on(area)
        .caption(panel.title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d((0..last_bar(panel)).into_segmented(), 0.0..top)?;
    mesh(&mut chart, panel)?;
    bars(&mut chart, panel, 0.0, |v| v + top * 0.02)?;
    Ok(())
}

fn draw_log<DB: DrawingBackend>(area: &Area<'_, DB>, panel: &Panel) -> Drawn<DB> {
    let positive = panel.bars.iter().map(|(_, v)| *v).filter(|v| *v > 0.0);
    let low = positive.clone().fold(f64::INFINITY, f64::min);
    let low = if low.is_finite() { low / 3.0 } else { 0.01 };
    let top = positive.fold(0.0f64, f64::max).max(low * 10.0) * 3.0;
    let mut chart = ChartBuilder::on(area)
        .caption(panel.title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d((0..last_bar(panel)).into_segmented(), (low..top).log_scale())?;
    mesh(&mut chart, panel)?;
    bars(&mut chart, panel, low, |v| v * 1.15)?;
    Ok(())
}

type Chart<'a, DB, Y> = ChartContext<'a, DB, Cartesian2d<SegmentedCoord<plotters::coord::types::RangedCoordusize>, Y>>;

fn mesh<DB: DrawingBackend, Y>(chart: &mut Chart<'_, DB, Y>, panel: &Panel) -> Drawn<DB>
where
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let names: Vec<String> = panel.bars.iter().map(|(name, _)| name.clone()).collect();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(names.len() + 1)
        .x_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => names.get(*i).cloned().unwrap_or_default(),
            _ => String::new(),
        })
        .x_label_style(("sans-serif", 13))
        .y_desc(panel.unit)
        .draw()
}

fn bars<DB: DrawingBackend, Y>(
    chart: &mut Chart<'_, DB, Y>,
    panel: &Panel,
    base: f64,
    label_at: impl Fn(f64) -> f64,
) -> Drawn<DB>
where
    Y: Ranged<ValueType = f64>,
{
    chart.draw_series(panel.bars.iter().enumerate().map(|(i, (name, value))| {
        let color = if name.starts_with("shmring") { BLUE.mix(0.7) } else { RED.mix(0.6) };
        let mut bar =
            Rectangle::new([(SegmentValue::Exact(i), base), (SegmentValue::Exact(i + 1), *value)], color.filled());
        bar.set_margin(0, 0, 10, 10);
        bar
    }))?;
    chart.draw_series(panel.bars.iter().enumerate().map(|(i, (_, value))| {
        Text::new(format_value(*value), (SegmentValue::CenterOf(i), label_at(*value)), ("sans-serif", 13))
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
