//! Figures per run, the Markdown table, the JSON document.

use crate::machine::Machine;
use serde::Serialize;

use super::consumer::RunReport;
use super::plan::{Transport, Workload};

/// The figures of one transport on one workload.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Row {
    pub transport: String,
    pub workload: String,
    pub message_bytes: usize,
    /// Data messages received intact (sent, for `memcpy`).
    pub frames: u64,
    pub seconds: f64,
    pub frames_per_s: f64,
    pub gb_per_s: f64,
    pub producer_cpu_s: f64,
    pub consumer_cpu_s: Option<f64>,
    /// Producer + consumer CPU seconds per GB moved.
    pub cpu_s_per_gb: f64,
    pub producer_cpu_s_per_gb: f64,
    pub consumer_cpu_s_per_gb: Option<f64>,
    pub producer_cpu_ms_per_frame: f64,
    pub consumer_cpu_ms_per_frame: Option<f64>,
    pub p50_us: Option<f64>,
    pub p99_us: Option<f64>,
    pub p999_us: Option<f64>,
    pub max_us: Option<f64>,
    /// Sent and not received intact.
    pub lost: u64,
    /// Of those, refused by the transport's full policy (counted, reported).
    pub dropped: u64,
    pub corrupt: u64,
    pub out_of_order: u64,
    /// Consumer sleeps per frame (shmring: 1.0 means a wake-up per frame).
    pub consumer_sleeps_per_frame: Option<f64>,
    /// Producer waits for space per frame (shmring).
    pub producer_waits_per_frame: Option<f64>,
    /// `checked` (sample words read) or `untouched`.
    pub consumer_payload: String,
    pub producer_note: String,
    pub consumer_note: String,
    /// Runs this row was chosen from (see [`median_run`]).
    pub runs: usize,
}

impl Row {
    pub fn new(transport: Transport, workload: Workload, run: &RunReport) -> Row {
        let p = &run.producer;
        let len = workload.message_len();
        let (frames, bytes, end_ns) = match &run.consumer {
            // Until the last frame was received, or the producer's last
            // pacing tick, whichever is later.
            Some(c) => (c.frames, c.bytes, c.end_ns.max(p.end_ns)),
            None => (p.frames, p.frames * len as u64, p.end_ns),
        };
        let seconds = ((end_ns - p.start_ns) as f64 / 1e9).max(1e-9);
        let gb = (bytes as f64 / 1e9).max(1e-12);
        let per_frame_ms = |cpu_s: f64| if frames == 0 { 0.0 } else { cpu_s * 1e3 / frames as f64 };
        let producer_cpu_s = p.cpu.total_s();
        let consumer_cpu_s = run.consumer.as_ref().map(|c| c.cpu.total_s());
        let latency = run.consumer.as_ref().and_then(|c| c.latency);
        Row {
            transport: transport.name().to_string(),
            workload: workload.name().to_string(),
            message_bytes: len,
            frames,
            seconds,
            frames_per_s: frames as f64 / seconds,
            gb_per_s: bytes as f64 / 1e9 / seconds,
            producer_cpu_s,
            consumer_cpu_s,
            cpu_s_per_gb: (producer_cpu_s + consumer_cpu_s.unwrap_or(0.0)) / gb,
            producer_cpu_s_per_gb: producer_cpu_s / gb,
            consumer_cpu_s_per_gb: consumer_cpu_s.map(|c| c / gb),
            producer_cpu_ms_per_frame: per_frame_ms(producer_cpu_s),
            consumer_cpu_ms_per_frame: consumer_cpu_s.map(per_frame_ms),
            p50_us: latency.map(|l| l.p50_us),
            p99_us: latency.map(|l| l.p99_us),
            p999_us: latency.map(|l| l.p999_us),
            max_us: latency.map(|l| l.max_us),
            lost: p.frames.saturating_sub(frames),
            dropped: p.dropped,
            corrupt: run.consumer.as_ref().map_or(0, |c| c.corrupt),
            out_of_order: run.consumer.as_ref().map_or(0, |c| c.out_of_order),
            consumer_sleeps_per_frame: run
                .consumer
                .as_ref()
                .and_then(|c| c.sleeps)
                .map(|n| n as f64 / frames.max(1) as f64),
            producer_waits_per_frame: run
                .consumer
                .as_ref()
                .and_then(|c| c.producer_waits)
                .map(|n| n as f64 / frames.max(1) as f64),
            consumer_payload: match (&run.consumer, transport.touches_payload()) {
                (None, _) => "none".to_string(),
                (Some(_), true) => "checked".to_string(),
                (Some(_), false) => "untouched".to_string(),
            },
            producer_note: p.note.clone(),
            consumer_note: run.consumer.as_ref().map(|c| c.note.clone()).unwrap_or_default(),
            runs: 1,
        }
    }
}

/// The whole comparison, as `--json` writes it.
#[derive(Debug, Serialize)]
pub struct Document<'a> {
    pub machine: &'a Machine,
    pub command: String,
    pub results: &'a [Row],
    pub targets: Vec<Target>,
}

fn opt(value: Option<f64>, digits: usize) -> String {
    value.map_or_else(|| "-".to_string(), |v| format!("{v:.digits$}"))
}

/// Few significant digits, whatever the magnitude.
fn sig(value: f64) -> String {
    let magnitude = if value == 0.0 { 0 } else { value.abs().log10().floor() as i32 };
    let digits = (2 - magnitude).clamp(0, 6) as usize;
    format!("{value:.digits$}")
}

fn sig_opt(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_string(), sig)
}

/// The Markdown results table.
pub fn table(rows: &[Row]) -> String {
    let mut out = String::new();
    out.push_str(
        "| workload | transport | frames | frames/s | GB/s | CPU s/GB | prod ms/frame | cons ms/frame \
         | p50 us | p99 us | p99.9 us | lost |\n",
    );
    out.push_str("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for r in rows {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            r.workload,
            r.transport,
            r.frames,
            sig(r.frames_per_s),
            opt(Some(r.gb_per_s), 3),
            sig(r.cpu_s_per_gb),
            sig(r.producer_cpu_ms_per_frame),
            sig_opt(r.consumer_cpu_ms_per_frame),
            sig_opt(r.p50_us),
            sig_opt(r.p99_us),
            sig_opt(r.p999_us),
            r.lost,
        ));
    }
    out
}

/// One of issue 7's targets, measured.
#[derive(Clone, Debug, Serialize)]
pub struct Target {
    pub name: String,
    pub measured: Option<f64>,
    pub limit: f64,
    pub met: Option<bool>,
}

/// Of several runs of one transport on one workload, the one with the
/// median CPU per GB (the median p50 for the latency workload), so that a
/// run disturbed by another process on a shared machine does not decide
/// the figures. `None` for no runs.
pub fn median_run(mut runs: Vec<Row>) -> Option<Row> {
    let key = |row: &Row| if row.workload == "latency-64" { row.p50_us.unwrap_or(0.0) } else { row.cpu_s_per_gb };
    runs.sort_by(|a, b| key(a).total_cmp(&key(b)));
    let count = runs.len();
    let mut row = runs.into_iter().nth(count.checked_sub(1)? / 2)?;
    row.runs = count;
    Some(row)
}

fn find<'a>(rows: &'a [Row], transport: &str, workload: &str) -> Option<&'a Row> {
    rows.iter().find(|r| r.transport == transport && r.workload == workload)
}

/// The targets of the comparison, as ratios or absolute values.
///
/// `recv_drop_ms` is the in-process cost of `recv` + drop of a 1080p frame
/// with the payload untouched and no sleep ([`super::recv_drop_cost`]).
pub fn targets(rows: &[Row], recv_drop_ms: Option<f64>) -> Vec<Target> {
    let mut out = Vec::new();
    let mut push = |name: String, measured: Option<f64>, limit: f64| {
        out.push(Target { name, measured, limit, met: measured.map(|m| m <= limit) });
    };
    for workload in ["video-1080p30", "video-max"] {
        let ratio = |ring: &str, other: &str| {
            let ring = find(rows, ring, workload)?;
            let base = find(rows, other, workload)?;
            Some(ring.cpu_s_per_gb / base.cpu_s_per_gb)
        };
        for ring in ["shmring", "shmring-reserve"] {
            push(format!("{workload}: {ring} CPU/GB / websocket CPU/GB"), ratio(ring, "websocket"), 0.1);
            push(format!("{workload}: {ring} CPU/GB / uds CPU/GB"), ratio(ring, "uds"), 1.0 / 3.0);
        }
        let producer = |t: &str| {
            let row = find(rows, t, workload)?;
            let floor = find(rows, "memcpy", workload)?;
            Some(row.producer_cpu_ms_per_frame / floor.producer_cpu_ms_per_frame)
        };
        push(format!("{workload}: shmring producer ms/frame / memcpy"), producer("shmring"), 1.2);
        push(format!("{workload}: shmring-reserve producer ms/frame / memcpy"), producer("shmring-reserve"), 1.0);
        push(
            format!("{workload}: shmring-untouched consumer ms/frame"),
            find(rows, "shmring-untouched", workload).and_then(|r| r.consumer_cpu_ms_per_frame),
            0.001,
        );
    }
    push(
        "latency-64: shmring-spin p50 us".to_string(),
        find(rows, "shmring-spin", "latency-64").and_then(|r| r.p50_us),
        0.25,
    );
    push(
        "latency-64: shmring (sleep/wake) p50 us".to_string(),
        find(rows, "shmring", "latency-64").and_then(|r| r.p50_us),
        15.0,
    );
    push(
        "1080p frame: consumer recv + drop, payload untouched, no sleep (in-process) ms".to_string(),
        recv_drop_ms,
        0.001,
    );
    out
}

/// The targets as a Markdown table.
pub fn targets_table(targets: &[Target]) -> String {
    let mut out = String::from("| target | measured | limit | met |\n|---|---:|---:|---|\n");
    for t in targets {
        let met = match t.met {
            Some(true) => "yes",
            Some(false) => "no",
            None => "not measured",
        };
        out.push_str(&format!("| {} | {} | {} | {} |\n", t.name, sig_opt(t.measured), sig(t.limit), met));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(workload: &str, cpu_s_per_gb: f64, p50_us: f64) -> Row {
        Row {
            transport: "shmring".into(),
            workload: workload.into(),
            cpu_s_per_gb,
            p50_us: Some(p50_us),
            ..Default::default()
        }
    }

    #[test]
    fn median_run_is_the_middle_one_by_cpu_or_by_p50_for_latency() {
        let picked =
            median_run(vec![row("video-max", 3.0, 1.0), row("video-max", 1.0, 9.0), row("video-max", 2.0, 5.0)])
                .expect("a row");
        assert_eq!((picked.cpu_s_per_gb, picked.runs), (2.0, 3));
        let picked =
            median_run(vec![row("latency-64", 1.0, 0.9), row("latency-64", 2.0, 0.1), row("latency-64", 3.0, 0.2)])
                .expect("a row");
        assert_eq!((picked.p50_us, picked.runs), (Some(0.2), 3));
        let picked = median_run(vec![row("small-64", 4.0, 0.0), row("small-64", 2.0, 0.0)]).expect("a row");
        assert_eq!(picked.cpu_s_per_gb, 2.0, "even counts take the lower middle");
        assert!(median_run(Vec::new()).is_none());
    }
}
