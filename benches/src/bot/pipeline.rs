//! One run of one pipeline: its processes started, a warm-up, a measured
//! window of CPU time per process group, then everything stopped and the
//! recording checked with ffprobe.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use shmring_bridge::chromium::{Chromium, Launch};
use shmring_bridge::process_usage::{self, Usage};

/// The pipelines, in the order each round runs them.
pub const PIPELINES: [&str; 5] =
    ["capture-only", "websocket-python", "bridge-websocket", "bridge-file", "patched-renderer"];

/// Audio channels of every pipeline's stream: Chromium's fake microphone,
/// through getUserMedia's audio processing, is mono. The Python receiver is
/// told so, the fake renderer sends so, and every recording is checked to
/// be so (the same audio encoded in every row).
pub const AUDIO_CHANNELS: u64 = 1;

/// The process groups CPU is counted in.
pub const GROUPS: [&str; 4] = ["browser", "receiver/bridge", "encoder", "ffmpeg"];

/// What a run needs from the machine.
#[derive(Clone, Debug)]
pub struct Tools {
    pub shmring: PathBuf,
    pub fake_renderer: PathBuf,
    pub python: PathBuf,
    pub receiver: PathBuf,
    pub chromium: PathBuf,
    pub work: PathBuf,
    pub pages: SocketAddr,
}

/// What a run measured. CPU is per recorded minute: seconds of CPU over
/// the window, scaled to 60 s of window.
#[derive(Clone, Debug, Default)]
pub struct Run {
    pub pipeline: String,
    pub window_s: f64,
    pub cpu_per_min: [f64; 4],
    pub rss: [u64; 4],
    /// Video frames the source produced in the run, those that reached
    /// ffmpeg (each once; repeats filling gaps not counted).
    pub captured: u64,
    pub recorded: u64,
    pub probe: Option<Probe>,
    pub lane: String,
    /// The machine's 1-minute load average as the window began.
    pub load_average: f64,
}

impl Run {
    pub fn lost(&self) -> u64 {
        self.captured.saturating_sub(self.recorded)
    }
}

/// ffprobe's view of a recording.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Probe {
    pub duration_s: f64,
    pub width: u64,
    pub height: u64,
    pub video_frames: u64,
    pub audio_codec: String,
    pub audio_rate: u64,
    pub audio_channels: u64,
}

/// The processes whose CPU is counted, by group.
#[derive(Default)]
struct Members {
    browser: Vec<u32>,
    receiver: Option<u32>,
    encoder: Option<u32>,
    /// ffmpeg: the descendants of this process.
    ffmpeg_parent: Option<u32>,
}

impl Members {
    fn sample(&self) -> [Usage; 4] {
        let browser = self.browser.iter().map(|&pid| process_usage::of_tree(pid)).fold(Usage::default(), |a, b| a + b);
        let one = |pid: Option<u32>| pid.and_then(|p| process_usage::of_process(p).ok()).unwrap_or_default();
        let ffmpeg = self.ffmpeg_parent.map_or(Usage::default(), |parent| {
            process_usage::tree(parent)
                .into_iter()
                .filter(|&pid| pid != parent)
                .filter_map(|pid| process_usage::of_process(pid).ok())
                .fold(Usage::default(), |a, b| a + b)
        });
        [browser, one(self.receiver), one(self.encoder), ffmpeg]
    }
}

/// A child killed (with its group, when it leads one) if a run fails midway.
struct Guard(Option<Child>);

impl Guard {
    fn pid(&self) -> u32 {
        self.0.as_ref().map_or(0, Child::id)
    }

    fn take(&mut self) -> Child {
        self.0.take().expect("the child is still guarded")
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn spawn(command: &mut Command, what: &str) -> Result<Guard, String> {
    command.spawn().map(|c| Guard(Some(c))).map_err(|e| format!("cannot start {what}: {e}"))
}

/// Reads lines of `child`'s stdout until one starts with `prefix`.
fn wait_for_line(child: &mut Child, prefix: &str, what: &str) -> Result<String, String> {
    let stdout = child.stdout.as_mut().ok_or("no stdout")?;
    let mut reader = BufReader::new(stdout);
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).map_err(|e| e.to_string())? == 0 {
            return Err(format!("{what} ended before printing {prefix:?}"));
        }
        if let Some(rest) = line.trim().strip_prefix(prefix) {
            return Ok(rest.to_string());
        }
    }
}

/// Waits for `child` to exit within `limit` and returns its stdout.
fn finish(mut guard: Guard, limit: Duration, what: &str) -> Result<String, String> {
    let mut child = guard.take();
    let started = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                let mut out = String::new();
                if let Some(mut stdout) = child.stdout.take() {
                    let _ = stdout.read_to_string(&mut out);
                }
                return if status.success() { Ok(out) } else { Err(format!("{what} exited with {status}:\n{out}")) };
            }
            Ok(None) if started.elapsed() > limit => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{what} did not finish within {limit:?}"));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => return Err(e.to_string()),
        }
    }
}

fn terminate(guard: &Guard) {
    if guard.pid() != 0 {
        // SAFETY: kill has no memory-safety preconditions; the child is
        // not reaped yet, so the pid is still ours.
        unsafe { libc::kill(guard.pid() as i32, libc::SIGTERM) };
    }
}

/// The latest progress line's `field` of the page's video sender.
fn page_video(browser: &Chromium, field: &str) -> Option<u64> {
    browser.page_log().iter().rev().find_map(|line| {
        let at = line.find("video#")?;
        let start = at + line[at..].find('{')?;
        let end = start + line[start..].find('}')? + 1;
        let stats: serde_json::Value = serde_json::from_str(&line[start..end]).ok()?;
        stats[field].as_u64()
    })
}

/// The line in which the page said which lane its video takes.
fn page_lane(browser: &Chromium) -> String {
    let lines = browser.page_log();
    let line = lines.iter().find(|l| l.contains("video lane ")).cloned().unwrap_or_default();
    line.split_once("video lane ").map(|(_, lane)| lane.to_string()).unwrap_or_default()
}

/// Starts the browser at the capture page, sending by `lane` to `to`.
fn browser(tools: &Tools, lane: &str, to: &str, profile: PathBuf) -> Result<Chromium, String> {
    let url = format!("http://{}/?width=1920&height=1080&fps=30&lane={lane}&bridge={to}&report=250", tools.pages);
    let launch = Launch { profile: Some(profile), extra_args: Vec::new() };
    Chromium::launch_with(&tools.chromium, &url, &launch)
        .map_err(|e| format!("cannot start {}: {e} (install Debian's chromium)", tools.chromium.display()))
}

/// Waits until the page's video sender has handled a frame (`field` > 0).
fn wait_for_video(browser: &mut Chromium, field: &str) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(40);
    while page_video(browser, field).unwrap_or(0) == 0 {
        if browser.exited() || Instant::now() > deadline {
            return Err(format!("the page sent no video; it said:\n{}", browser.page_log().join("\n")));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// The measured window: warm-up, then `seconds` between two samples.
fn measure(members: &Members, warmup: Duration, seconds: f64) -> (f64, [f64; 4], [u64; 4], f64) {
    std::thread::sleep(warmup);
    let load = crate::machine::load_average();
    let before = members.sample();
    let start = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(seconds));
    let after = members.sample();
    let window = start.elapsed().as_secs_f64();
    let mut cpu = [0.0; 4];
    let mut rss = [0; 4];
    for g in 0..4 {
        cpu[g] = after[g].cpu.saturating_sub(before[g].cpu).as_secs_f64() * 60.0 / window;
        rss[g] = after[g].rss;
    }
    (window, cpu, rss, load)
}

/// `shmring record NAME --create --no-mix -o OUT`, once its ring is
/// served: one file, as the Python receiver writes (the mix of a lone
/// participant would be a second AAC encode of the same audio).
fn start_recorder(tools: &Tools, ring: &str, output: &Path) -> Result<Guard, String> {
    let log = File::create(tools.work.join(format!("{ring}.record.log"))).map_err(|e| e.to_string())?;
    let recorder = spawn(
        Command::new(&tools.shmring)
            .args(["record", ring, "--create", "--no-mix", "--capacity", "256MiB", "-o"])
            .arg(output)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log),
        "shmring record",
    )?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while shmring::RingFds::request(ring).is_err() {
        if Instant::now() > deadline {
            return Err(format!("ring {ring} was not served within 20 s"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(recorder)
}

/// Unique video frames `shmring record` handed ffmpeg (its report's
/// "video N received, M encoded").
fn encoded_frames(report: &str) -> Result<u64, String> {
    report
        .lines()
        .find_map(|l| {
            let rest = l.trim_start().strip_prefix("video ")?;
            let (_, after) = rest.split_once(" received, ")?;
            after.split_whitespace().next()?.parse().ok()
        })
        .ok_or_else(|| format!("no video line in the recorder's report:\n{report}"))
}

/// A ring name unique to this run.
fn ring_name(pipeline: &str, round: usize) -> String {
    format!("bot-{}-{round}-{pipeline}", std::process::id())
}

pub struct Plan {
    pub seconds: f64,
    pub warmup: Duration,
}

pub fn run(pipeline: &str, round: usize, tools: &Tools, plan: &Plan) -> Result<Run, String> {
    let output = tools.work.join(format!("{pipeline}-{round}.mp4"));
    let profile = tools.work.join(format!("profile-{pipeline}-{round}"));
    let mut run = Run { pipeline: pipeline.to_string(), ..Run::default() };
    match pipeline {
        "capture-only" => {
            let mut chromium = browser(tools, "capture-only", "ws://127.0.0.1:9/", profile)?;
            wait_for_video(&mut chromium, "captured")?;
            let members = Members { browser: vec![chromium.pid()], ..Members::default() };
            let first = page_video(&chromium, "captured").unwrap_or(0);
            (run.window_s, run.cpu_per_min, run.rss, run.load_average) = measure(&members, plan.warmup, plan.seconds);
            run.captured = page_video(&chromium, "captured").unwrap_or(0).saturating_sub(first);
            run.recorded = run.captured;
            run.lane = "capture and copyTo only".to_string();
            return Ok(run);
        }
        "websocket-python" => {
            let mut receiver = spawn(
                Command::new(&tools.python)
                    .arg(&tools.receiver)
                    .args(["--listen", "127.0.0.1:0", "--channels", &AUDIO_CHANNELS.to_string(), "-o"])
                    .arg(&output)
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped()),
                "the Python receiver",
            )?;
            let child = receiver.0.as_mut().expect("just started");
            let addr = wait_for_line(child, "listening on ", "the Python receiver")
                .map_err(|e| format!("{e} (pip install -r examples/websocket_receiver/requirements.txt)"))?;
            let mut chromium = browser(tools, "websocket", &format!("ws://{addr}/"), profile)?;
            wait_for_video(&mut chromium, "sent")?;
            let members = Members {
                browser: vec![chromium.pid()],
                receiver: Some(receiver.pid()),
                ffmpeg_parent: Some(receiver.pid()),
                ..Members::default()
            };
            (run.window_s, run.cpu_per_min, run.rss, run.load_average) = measure(&members, plan.warmup, plan.seconds);
            run.lane = page_lane(&chromium);
            run.captured = page_video(&chromium, "captured").unwrap_or(0);
            drop(chromium);
            let out = finish(receiver, Duration::from_secs(90), "the Python receiver")?;
            let summary: serde_json::Value = out
                .lines()
                .rev()
                .find_map(|l| serde_json::from_str(l).ok())
                .ok_or_else(|| format!("no summary from the Python receiver:\n{out}"))?;
            run.recorded = summary["video_written"].as_u64().unwrap_or(0);
        }
        "bridge-websocket" | "bridge-file" => {
            let ring = ring_name(pipeline, round);
            let recorder = start_recorder(tools, &ring, &output)?;
            std::fs::create_dir_all(&profile).map_err(|e| e.to_string())?;
            let log = File::create(tools.work.join(format!("{ring}.bridge.log"))).map_err(|e| e.to_string())?;
            let mut bridge = spawn(
                Command::new(&tools.shmring)
                    .args(["bridge", &ring, "--listen", "127.0.0.1:0", "--no-pages", "--profile-dir"])
                    .arg(&profile)
                    .env("RUST_LOG", "warn")
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(log),
                "shmring bridge",
            )?;
            let addr = wait_for_line(bridge.0.as_mut().expect("just started"), "listening on ", "shmring bridge")?;
            let lane = if pipeline == "bridge-file" { "file" } else { "websocket" };
            let mut chromium = browser(tools, lane, &format!("ws://{addr}/"), profile)?;
            wait_for_video(&mut chromium, "sent")?;
            run.lane = page_lane(&chromium);
            if !run.lane.starts_with(&format!("{lane}:")) {
                return Err(format!("the page's video took another lane than {lane}: {}", run.lane));
            }
            let members = Members {
                browser: vec![chromium.pid()],
                receiver: Some(bridge.pid()),
                encoder: Some(recorder.pid()),
                ffmpeg_parent: Some(recorder.pid()),
            };
            (run.window_s, run.cpu_per_min, run.rss, run.load_average) = measure(&members, plan.warmup, plan.seconds);
            run.captured = page_video(&chromium, "captured").unwrap_or(0);
            drop(chromium);
            terminate(&bridge);
            finish(bridge, Duration::from_secs(20), "shmring bridge")?;
            // Its last producer gone, the recorder drains the ring and finishes.
            let report = finish(recorder, Duration::from_secs(90), "shmring record")?;
            run.recorded = encoded_frames(&report)?;
        }
        "patched-renderer" => {
            let ring = ring_name(pipeline, round);
            let recorder = start_recorder(tools, &ring, &output)?;
            let fds = shmring::RingFds::request(&ring).map_err(|e| format!("ring {ring}: {e}"))?;
            let inherited = fds.inheritable().map_err(|e| format!("ring {ring}: {e}"))?;
            let seconds = plan.warmup.as_secs_f64() + plan.seconds + 0.5;
            let renderer = spawn(
                Command::new(&tools.fake_renderer)
                    .args([
                        "--camera-only",
                        "--channels",
                        &AUDIO_CHANNELS.to_string(),
                        "--seconds",
                        &format!("{seconds:.1}"),
                    ])
                    .env("SHMRING_FD", inherited.spec())
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped()),
                &format!("{} (build it: cargo build --release -p shmring-examples)", tools.fake_renderer.display()),
            )?;
            drop((inherited, fds));
            let members = Members {
                browser: vec![renderer.pid()],
                encoder: Some(recorder.pid()),
                ffmpeg_parent: Some(recorder.pid()),
                ..Members::default()
            };
            (run.window_s, run.cpu_per_min, run.rss, run.load_average) = measure(&members, plan.warmup, plan.seconds);
            let out = finish(renderer, Duration::from_secs(30), "fake_renderer")?;
            run.captured = out
                .lines()
                .find(|l| l.starts_with("stream=1 kind=video"))
                .and_then(|l| l.split_whitespace().find_map(|f| f.strip_prefix("attempted=")))
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| format!("no video line from fake_renderer:\n{out}"))?;
            let report = finish(recorder, Duration::from_secs(90), "shmring record")?;
            run.recorded = encoded_frames(&report)?;
            run.lane = "C++ shim, in place (simulated: no browser)".to_string();
        }
        other => return Err(format!("no pipeline {other:?}")),
    }
    run.probe = Some(probe(&output)?);
    Ok(run)
}

/// ffprobe of a recording: a 1080p H.264 stream and 48 kHz AAC audio of
/// [`AUDIO_CHANNELS`], or an error.
pub fn probe(path: &Path) -> Result<Probe, String> {
    let output = Command::new("ffprobe")
        .args(["-v", "error", "-show_entries"])
        .arg("format=duration:stream=codec_type,codec_name,width,height,nb_frames,sample_rate,channels")
        .args(["-of", "json"])
        .arg(path)
        .output()
        .map_err(|e| format!("ffprobe: {e} (install Debian's ffmpeg)"))?;
    if !output.status.success() {
        return Err(format!("ffprobe {}: {}", path.display(), String::from_utf8_lossy(&output.stderr)));
    }
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).map_err(|e| format!("ffprobe: {e}"))?;
    let number = |v: &serde_json::Value| v.as_str().and_then(|s| s.parse::<f64>().ok()).or(v.as_f64()).unwrap_or(0.0);
    let mut probe = Probe { duration_s: number(&json["format"]["duration"]), ..Probe::default() };
    for stream in json["streams"].as_array().into_iter().flatten() {
        match stream["codec_type"].as_str() {
            Some("video") => {
                probe.width = stream["width"].as_u64().unwrap_or(0);
                probe.height = stream["height"].as_u64().unwrap_or(0);
                probe.video_frames = number(&stream["nb_frames"]) as u64;
            }
            Some("audio") => {
                probe.audio_codec = stream["codec_name"].as_str().unwrap_or("").to_string();
                probe.audio_rate = number(&stream["sample_rate"]) as u64;
                probe.audio_channels = stream["channels"].as_u64().unwrap_or(0);
            }
            _ => {}
        }
    }
    if (probe.width, probe.height) != (1920, 1080) || probe.video_frames == 0 {
        return Err(format!("{}: no 1920x1080 video in it: {probe:?}", path.display()));
    }
    if probe.audio_codec != "aac" || probe.audio_rate != 48_000 || probe.audio_channels != AUDIO_CHANNELS {
        return Err(format!("{}: no 48 kHz AAC audio of {AUDIO_CHANNELS} channel(s) in it: {probe:?}", path.display()));
    }
    Ok(probe)
}
