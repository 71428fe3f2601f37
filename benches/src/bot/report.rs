//! Medians over the rounds, the Markdown table, the targets, the JSON and
//! the headline sentence the README opens with.

use serde_json::json;

use super::pipeline::{Probe, Run, GROUPS};
use super::Args;
use crate::machine::Machine;

/// One pipeline's medians over its rounds.
#[derive(Clone, Debug)]
pub struct Row {
    pub pipeline: String,
    /// CPU seconds per recorded minute, per group ([`GROUPS`]).
    pub cpu: [f64; 4],
    pub total: f64,
    /// Everything but Chromium's capture (the capture-only run of the
    /// round) and ffmpeg.
    pub transport: f64,
    pub rss_mib: [f64; 4],
    pub captured: u64,
    pub recorded: u64,
    pub lost: u64,
    pub rounds: usize,
    pub lane: String,
    pub probe: Option<Probe>,
}

pub struct Summary {
    pub rows: Vec<Row>,
    /// The lowest and highest load average any measured window began at.
    pub load_range: (f64, f64),
    pub failures: Vec<String>,
    pub per_run: Vec<serde_json::Value>,
    /// The filesystem every browser's profile was on, in words.
    pub profile_fs: String,
}

fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

impl Summary {
    pub fn new(
        runs: &[(usize, Result<Run, String>)],
        pipelines: &[String],
        rounds: usize,
        profile_fs: String,
    ) -> Summary {
        let mut failures = Vec::new();
        let mut per_run = Vec::new();
        // Each run as it is counted: the patched renderer's browser group
        // gains the capture-only Chromium of its round.
        let mut counted: Vec<(String, Run, f64)> = Vec::new();
        for round in 0..rounds {
            let capture = runs.iter().find_map(|(r, run)| match run {
                Ok(run) if *r == round && run.pipeline == "capture-only" => Some(run.clone()),
                _ => None,
            });
            for (r, result) in runs.iter().filter(|(r, _)| *r == round) {
                let run = match result {
                    Ok(run) => run.clone(),
                    Err(e) => {
                        failures.push(format!("round {}: {e}", r + 1));
                        per_run.push(json!({"round": r + 1, "failed": e}));
                        continue;
                    }
                };
                let mut run = run;
                if run.pipeline == "patched-renderer" {
                    let Some(capture) = &capture else {
                        failures.push(format!("round {}: patched-renderer has no capture-only run to add", r + 1));
                        continue;
                    };
                    run.cpu_per_min[0] += capture.cpu_per_min[0];
                    run.rss[0] += capture.rss[0];
                }
                let capture_cpu = capture.as_ref().map_or(f64::NAN, |c| c.cpu_per_min[0]);
                let total: f64 = run.cpu_per_min.iter().sum();
                let transport =
                    if run.pipeline == "capture-only" { 0.0 } else { total - capture_cpu - run.cpu_per_min[3] };
                per_run.push(json!({
                    "round": r + 1,
                    "pipeline": run.pipeline,
                    "window_s": run.window_s,
                    "load_average": run.load_average,
                    "cpu_s_per_recorded_minute": GROUPS.iter().zip(run.cpu_per_min).map(|(g, v)| (g.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
                    "total": total,
                    "transport": transport,
                    "rss_bytes": GROUPS.iter().zip(run.rss).map(|(g, v)| (g.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
                    "frames_captured": run.captured,
                    "frames_recorded": run.recorded,
                    "frames_lost": run.lost(),
                    "lane": run.lane,
                    "probe": run.probe,
                }));
                counted.push((run.pipeline.clone(), run, transport));
            }
        }
        let loads = runs.iter().filter_map(|(_, r)| r.as_ref().ok().map(|r| r.load_average));
        let load_range = loads.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), l| (lo.min(l), hi.max(l)));
        let rows = pipelines
            .iter()
            .filter_map(|pipeline| {
                let mine: Vec<&(String, Run, f64)> = counted.iter().filter(|(p, _, _)| p == pipeline).collect();
                let first = mine.first()?;
                let of = |f: &dyn Fn(&Run) -> f64| median(mine.iter().map(|(_, r, _)| f(r)).collect());
                let mut cpu = [0.0; 4];
                let mut rss_mib = [0.0; 4];
                for g in 0..4 {
                    cpu[g] = of(&|r| r.cpu_per_min[g]);
                    rss_mib[g] = of(&|r| r.rss[g] as f64) / (1 << 20) as f64;
                }
                Some(Row {
                    pipeline: pipeline.clone(),
                    cpu,
                    total: of(&|r| r.cpu_per_min.iter().sum()),
                    transport: median(mine.iter().map(|(_, _, t)| *t).collect()),
                    rss_mib,
                    captured: of(&|r| r.captured as f64) as u64,
                    recorded: of(&|r| r.recorded as f64) as u64,
                    lost: of(&|r| r.lost() as f64) as u64,
                    rounds: mine.len(),
                    lane: first.1.lane.clone(),
                    probe: mine.last().and_then(|(_, r, _)| r.probe.clone()),
                })
            })
            .collect();
        Summary { rows, load_range, failures, per_run, profile_fs }
    }

    pub fn row(&self, pipeline: &str) -> Option<&Row> {
        self.rows.iter().find(|r| r.pipeline == pipeline)
    }

    /// The stock-browser pipeline with the least CPU in all.
    pub fn best_stock(&self) -> Option<&Row> {
        ["bridge-websocket", "bridge-file"]
            .iter()
            .filter_map(|p| self.row(p))
            .min_by(|a, b| a.total.total_cmp(&b.total))
    }

    /// `(what, measured, limit)` of each target, from this run.
    pub fn targets(&self) -> Vec<(String, f64, f64)> {
        let mut targets = Vec::new();
        let Some(base) = self.row("websocket-python") else { return targets };
        if let Some(file) = self.row("bridge-file") {
            targets.push(("bridge-file total CPU / websocket-python total".to_string(), file.total / base.total, 0.6));
            targets.push((
                "bridge-file transport share / websocket-python transport share".to_string(),
                file.transport / base.transport,
                0.1,
            ));
        }
        targets
    }
}

/// When the run ended, to the minute, UTC.
pub(super) fn date() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// The sentence the README's first screen carries.
pub fn headline(summary: &Summary, machine: &Machine) -> Option<String> {
    let base = summary.row("websocket-python")?;
    let best = summary.best_stock()?;
    let ratio = best.total / base.total;
    let targets = summary
        .targets()
        .iter()
        .zip(["whole bot", "transport"])
        .map(|((_, measured, limit), what)| {
            format!("{what} <= {limit:.2}x {} at {measured:.2}x", if measured <= limit { "met" } else { "missed" })
        })
        .collect::<Vec<_>>();
    let targets = if targets.is_empty() {
        String::new()
    } else {
        format!(" Targets (bridge-file against websocket-python, same run): {}.", targets.join(", "))
    };
    Some(format!(
        "Measured, whole bot (Chromium + transport + encoder + ffmpeg, 1080p30 and 48 kHz mono audio): **{}** spends \
         **{ratio:.2}x** the CPU per recorded minute of the WebSocket-to-Python bot it replaces ({:.1} against {:.1} \
         CPU s; transport alone {:.2}x: {:.1} against {:.1} s), unmodified Chromium, profiles on {}; median of {} rounds \
         on {} ({} cores, shared: load average {:.1} to {:.1} as the windows began), {}.{targets}",
        best.pipeline,
        best.total,
        base.total,
        best.transport / base.transport,
        best.transport,
        base.transport,
        summary.profile_fs,
        best.rounds,
        machine.cpu_model,
        machine.cores,
        summary.load_range.0,
        summary.load_range.1,
        date()
    ))
}

pub fn markdown(summary: &Summary, machine: &Machine, load_before: f64, command: &str, args: &Args) -> String {
    let mut out = String::new();
    out.push_str("## The whole bot, per pipeline\n\n");
    out.push_str(&format!(
        "Machine: {} cores, {}, Linux {}; load average {load_before:.2} before the runs, {:.2} to {:.2} as the \
         measured windows began, {:.2} after; {}.\n",
        machine.cores,
        machine.cpu_model,
        machine.kernel,
        summary.load_range.0,
        summary.load_range.1,
        crate::machine::load_average(),
        date()
    ));
    out.push_str(&format!("Command: `{command}`\n"));
    out.push_str(&format!(
        "Profiles: every browser's on {} (`shmring chromium` mounts its own tmpfs huge=within_size when it may).\n\n",
        summary.profile_fs
    ));
    out.push_str(&format!(
        "CPU seconds per recorded minute (user + system, from /proc, over a {:.0} s window after {:.0} s of warm-up; \
         median of {} round(s), pipelines taken in turn within each round). Transport = total minus the capture-only \
         browser and ffmpeg.\n\n",
        args.seconds,
        args.warmup.as_secs_f64(),
        args.rounds
    ));
    out.push_str(
        "| pipeline | browser | receiver/bridge | encoder | ffmpeg | total | transport | frames captured | recorded | lost | RSS MiB (browser / receiver / encoder / ffmpeg) | lane |\n",
    );
    out.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|\n");
    for r in &summary.rows {
        let name = if r.pipeline == "patched-renderer" {
            "patched-renderer (simulated, no browser: capture-only Chromium + fake renderer)".to_string()
        } else {
            r.pipeline.clone()
        };
        out.push_str(&format!(
            "| {name} | {:.2} | {:.2} | {:.2} | {:.2} | **{:.2}** | {:.2} | {} | {} | {} | {:.0} / {:.0} / {:.0} / {:.0} | {} |\n",
            r.cpu[0], r.cpu[1], r.cpu[2], r.cpu[3], r.total, r.transport, r.captured, r.recorded, r.lost,
            r.rss_mib[0], r.rss_mib[1], r.rss_mib[2], r.rss_mib[3], r.lane.replace('|', "/")
        ));
    }
    let targets = summary.targets();
    if !targets.is_empty() {
        out.push_str("\n| target (same run) | measured | limit | met |\n|---|---:|---:|---|\n");
        for (what, measured, limit) in &targets {
            out.push_str(&format!(
                "| {what} | {measured:.3} | {limit:.2} | {} |\n",
                if *measured <= *limit { "yes" } else { "no" }
            ));
        }
    }
    if let Some(line) = headline(summary, machine) {
        out.push_str(&format!("\n{line}\n"));
    }
    out.push_str(
        "\nHow each pipeline ran: the page is the bridge's capture page (fake 1920x1080 camera at 30 fps, fake \
         48 kHz mono microphone), in Debian's headless Chromium, the JS client the same in every row; websocket-python: \
         `examples/websocket_receiver/receiver.py` (websockets, compression off, frames piped to ffmpeg's stdin \
         from a memoryview); bridge-*: `shmring bridge` -> ring -> `shmring record --no-mix` (frames spliced into \
         ffmpeg's pipe); patched-renderer: `fake_renderer --camera-only --channels 1` (one 1080p30 stream copied through the C++ \
         shim, 48 kHz mono) -> ring -> `shmring record --no-mix`. Every recording is one MP4 of 1080p video and \
         48 kHz mono audio (checked with ffprobe), written by one ffmpeg with the same arguments in every row \
         (x264 ultrafast, AAC 128k). Frames lost: captured by the source minus handed to ffmpeg (the page's counters \
         are read every 250 ms). RSS counts memory shared between processes once per process.\n",
    );
    if !summary.failures.is_empty() {
        out.push_str("\nFailed:\n");
        for failure in &summary.failures {
            out.push_str(&format!("- {}\n", failure.lines().next().unwrap_or("")));
        }
    }
    out
}

pub fn json(summary: &Summary, machine: &Machine, load_before: f64, command: &str, args: &Args) -> serde_json::Value {
    json!({
        "machine": machine,
        "date": date(),
        "load_average_before": load_before,
        "load_average_windows": { "min": summary.load_range.0, "max": summary.load_range.1 },
        "load_average_after": crate::machine::load_average(),
        "command": command,
        "seconds": args.seconds,
        "warmup_s": args.warmup.as_secs_f64(),
        "rounds": args.rounds,
        "profile_filesystem": summary.profile_fs,
        "groups": GROUPS,
        "pipelines": summary.rows.iter().map(|r| json!({
            "pipeline": r.pipeline,
            "cpu_s_per_recorded_minute": GROUPS.iter().zip(r.cpu).map(|(g, v)| (g.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
            "total": r.total,
            "transport": r.transport,
            "rss_mib": GROUPS.iter().zip(r.rss_mib).map(|(g, v)| (g.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
            "frames_captured": r.captured,
            "frames_recorded": r.recorded,
            "frames_lost": r.lost,
            "rounds": r.rounds,
            "lane": r.lane,
            "probe": r.probe,
            "simulated": r.pipeline == "patched-renderer",
        })).collect::<Vec<_>>(),
        "targets": summary.targets().iter().map(|(what, measured, limit)| json!({
            "target": what, "measured": measured, "limit": limit, "met": measured <= limit,
        })).collect::<Vec<_>>(),
        "headline": headline(summary, machine),
        "runs": summary.per_run,
        "failures": summary.failures,
    })
}
