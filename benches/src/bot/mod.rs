//! The whole recording bot measured: browser, transport, receiver and
//! encoder together, real Chromium and real ffmpeg, on each pipeline in
//! turn, in rounds. Hosted by `shmring bench bot`, which gives it the
//! `shmring` binary (its bridge and recorder).
//!
//! ```text
//! shmring bench bot [--quick] [--seconds S] [--rounds N] [--json FILE] [--svg FILE]
//!     [--pipelines a,b,..] [--fake-renderer PATH] [--python PATH] [--chromium PATH]
//! ```
//!
//! Every pipeline records the same thing into one MP4 with the same ffmpeg
//! arguments (x264 ultrafast, AAC 128k): Chromium's fake 1080p30 camera and
//! 48 kHz mono microphone at the bridge's capture page (the patched-renderer
//! row: the C++ fake renderer's 1080p30 stream and 48 kHz mono audio); the
//! recorder writes no mix beside it (`--no-mix`), as the Python receiver
//! writes none. Every browser's profile is on one tmpfs mounted
//! `huge=within_size`, as `shmring chromium` mounts its own, when this
//! process may mount (root), else in `/dev/shm` (with a warning); the
//! table and the JSON say which.
//!
//! - `capture-only`: the page captures and copies each frame out, sends
//!   nothing: the browser's share that no transport can save.
//! - `websocket-python`: the page's JS client sends WebSocket payloads to a
//!   Python receiver (`websockets`), which pipes them into ffmpeg.
//! - `bridge-websocket`: payloads -> `shmring bridge` -> ring -> `shmring record`.
//! - `bridge-file`: the file lane -> `shmring bridge` -> ring -> `shmring record`.
//! - `patched-renderer` (simulated, no browser): the fake renderer writes
//!   through the C++ shim into the ring -> `shmring record`; its browser
//!   group is the capture-only Chromium of the same round plus the
//!   renderer's own CPU.

mod chart;
mod page;
mod pipeline;
mod report;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use shmring_bridge::profile_fs::{self, ProfileDir};

use crate::machine::{self, Machine};

use pipeline::{Plan, Run, Tools};
pub use pipeline::{GROUPS, PIPELINES};
use report::Summary;

/// What hosts the bench: the `shmring` binary it starts as bridge and
/// recorder, and how to show the command.
#[derive(Clone, Debug)]
pub struct Host {
    pub shmring: PathBuf,
    pub display: String,
}

struct Args {
    seconds: f64,
    rounds: usize,
    warmup: Duration,
    json: Option<PathBuf>,
    svg: Option<PathBuf>,
    pipelines: Vec<String>,
    fake_renderer: Option<PathBuf>,
    python: PathBuf,
    chromium: Option<PathBuf>,
    quick: bool,
}

const USAGE: &str = "usage: shmring bench bot [--quick] [--seconds S] [--rounds N] [--json FILE] [--svg FILE] \
                     [--pipelines a,b,..] [--fake-renderer PATH] [--python PATH] [--chromium PATH]";

fn parse(args: &[String]) -> Result<Args, String> {
    let mut parsed = Args {
        seconds: 20.0,
        rounds: 3,
        warmup: Duration::from_secs(3),
        json: None,
        svg: None,
        pipelines: PIPELINES.iter().map(|p| p.to_string()).collect(),
        fake_renderer: None,
        python: PathBuf::from("python3"),
        chromium: None,
        quick: false,
    };
    let mut seconds = None;
    let mut rounds = None;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = || it.next().cloned().ok_or_else(|| format!("{arg} needs a value\n{USAGE}"));
        match arg.as_str() {
            "--quick" => parsed.quick = true,
            "--seconds" => seconds = Some(value()?.parse::<f64>().map_err(|e| format!("--seconds: {e}"))?),
            "--rounds" => rounds = Some(value()?.parse::<usize>().map_err(|e| format!("--rounds: {e}"))?),
            "--json" => parsed.json = Some(value()?.into()),
            "--svg" => parsed.svg = Some(value()?.into()),
            "--pipelines" => parsed.pipelines = value()?.split(',').map(str::to_string).collect(),
            "--fake-renderer" => parsed.fake_renderer = Some(value()?.into()),
            "--python" => parsed.python = value()?.into(),
            "--chromium" => parsed.chromium = Some(value()?.into()),
            "--help" | "-h" => return Err(USAGE.to_string()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    if parsed.quick {
        parsed.seconds = 3.0;
        parsed.rounds = 1;
        parsed.warmup = Duration::from_secs(1);
    }
    parsed.seconds = seconds.unwrap_or(parsed.seconds);
    parsed.rounds = rounds.unwrap_or(parsed.rounds).max(1);
    if let Some(bad) = parsed.pipelines.iter().find(|p| !PIPELINES.contains(&p.as_str())) {
        return Err(format!("no pipeline {bad:?}: one of {}", PIPELINES.join(", ")));
    }
    // The patched row borrows the browser's capture cost from the same round.
    if parsed.pipelines.iter().any(|p| p == "patched-renderer") && !parsed.pipelines.iter().any(|p| p == "capture-only")
    {
        parsed.pipelines.insert(0, "capture-only".to_string());
    }
    Ok(parsed)
}

/// The bench's entry point; exit status 1 when any pipeline failed.
pub fn main(args: &[String], host: &Host) -> ExitCode {
    let args = match parse(args) {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    match run(&args, host) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(message) => {
            eprintln!("bench bot: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args, host: &Host) -> Result<bool, String> {
    let exe_dir = host.shmring.parent().map(PathBuf::from).unwrap_or_default();
    // Every browser's profile (and the recordings beside them) on one tmpfs
    // mounted as `shmring chromium` mounts its own, when this process may.
    let fresh = profile_fs::fresh_dir("shmring-bench-bot");
    let profiles = ProfileDir::mount(fresh.clone()).map_err(|e| format!("{}: {e}", fresh.display()))?;
    for (point, pid) in profiles.reclaimed() {
        eprintln!("bench bot: unmounted {}, the work tmpfs of a bench that is gone (pid {pid})", point.display());
    }
    if let Some(e) = profiles.mount_error() {
        eprintln!(
            "bench bot: warning: cannot mount a tmpfs with huge=within_size for the profiles ({e}; it takes root): \
             profiles in {}, where the file lane costs the browser more CPU than under `shmring chromium` as root",
            fresh.display()
        );
    }
    let work = profiles.path().to_path_buf();
    let profile_fs = profiles.filesystem();
    let tools = Tools {
        shmring: host.shmring.clone(),
        fake_renderer: args.fake_renderer.clone().unwrap_or_else(|| exe_dir.join("fake_renderer")),
        python: args.python.clone(),
        receiver: PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/websocket_receiver/receiver.py")),
        chromium: args
            .chromium
            .clone()
            .or_else(shmring_bridge::chromium::find)
            .ok_or("no Chromium found (install Debian's chromium package)")?,
        work: work.clone(),
        pages: page::serve()?,
    };
    let plan = Plan { seconds: args.seconds, warmup: args.warmup };
    let load_before = machine::load_average();
    eprintln!(
        "bench bot: {} pipeline(s) x {} round(s), {:.0} s measured each after {:.0} s of warm-up; work in {}, \
         every browser's profile on {profile_fs}",
        args.pipelines.len(),
        args.rounds,
        args.seconds,
        args.warmup.as_secs_f64(),
        work.display()
    );
    let mut runs: Vec<(usize, Result<Run, String>)> = Vec::new();
    for round in 0..args.rounds {
        for pipeline in &args.pipelines {
            eprintln!("  round {} {pipeline} ...", round + 1);
            let result = pipeline::run(pipeline, round, &tools, &plan);
            match &result {
                Ok(r) => eprintln!(
                    "    {:.1} s: CPU s/min browser {:.2} receiver/bridge {:.2} encoder {:.2} ffmpeg {:.2}; \
                     {} frames captured, {} recorded",
                    r.window_s,
                    r.cpu_per_min[0],
                    r.cpu_per_min[1],
                    r.cpu_per_min[2],
                    r.cpu_per_min[3],
                    r.captured,
                    r.recorded
                ),
                Err(e) => eprintln!("    FAILED: {e}"),
            }
            runs.push((round, result));
        }
    }
    let machine = Machine::detect();
    let summary = Summary::new(&runs, &args.pipelines, args.rounds, profile_fs);
    let command = format!("{} bot --seconds {} --rounds {}", host.display, args.seconds, args.rounds);
    let text = report::markdown(&summary, &machine, load_before, &command, args);
    print!("{text}");
    if let Some(path) = &args.json {
        let json = report::json(&summary, &machine, load_before, &command, args);
        std::fs::write(path, serde_json::to_string_pretty(&json).expect("JSON"))
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    if let Some(path) = &args.svg {
        chart::write(&summary, &machine, path)?;
    }
    drop(profiles);
    Ok(summary.failures.is_empty())
}
