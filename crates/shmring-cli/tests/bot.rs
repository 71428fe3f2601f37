//! The bot driver (`examples/bot/bot.mjs`: playwright-core driving
//! Debian's Chromium over `--remote-debugging-pipe`) as a recording bot runs
//! it: it joins a short meeting, the meeting extension sends every
//! participant through the bridge's file lane, and each is recorded into an
//! MP4; and with `shmring chromium-exec` as its `executablePath`, the
//! browser process holds the ring's descriptors at 5 and above while the
//! stock build is reported as not knowing the switch.
//! scripts/test.sh installs playwright-core (`npm ci` in examples/bot).

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{ffprobe, wait_for, KillOnDrop, Sandbox};
use shmring_bridge::chromium::{PageServer, LOOPBACK_WEBRTC};

fn driver_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/bot")
}

/// `node bot.mjs ARGS`, output piped; fails the test when Node, the
/// driver's packages or Chromium are missing.
fn start_driver(sandbox: &Sandbox, args: &[&str], extra_env: &[(&str, &str)]) -> Child {
    let dir = driver_dir();
    assert!(
        dir.join("node_modules/playwright-core/package.json").exists(),
        "playwright-core is not installed: run `npm ci` in {} (scripts/test.sh does)",
        dir.display()
    );
    assert!(
        Path::new("/usr/bin/chromium").exists(),
        "Debian's chromium package is required (apt-get install -y chromium)"
    );
    let mut command = Command::new("node");
    command
        .arg(dir.join("bot.mjs"))
        .args(args)
        .env("SHMRING_RUNTIME_DIR", &sandbox.runtime)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (key, value) in extra_env {
        command.env(key, value);
    }
    command.spawn().expect("node runs (Debian's nodejs package)")
}

/// Starts `shmring bridge NAME ARGS` and reads the address it listens on.
fn start_bridge(sandbox: &Sandbox, name: &str, args: &[&str]) -> (Child, SocketAddr) {
    let mut all = vec!["bridge", name, "--listen", "127.0.0.1:0"];
    all.extend_from_slice(args);
    let mut bridge = sandbox.spawn(&all);
    let mut first = String::new();
    BufReader::new(bridge.stdout.as_mut().unwrap()).read_line(&mut first).unwrap();
    let addr = first.trim().strip_prefix("listening on ").expect("the address first").parse().unwrap();
    (bridge, addr)
}

/// The last JSON line the driver printed (its summary).
fn summary(stdout: &str) -> serde_json::Value {
    let line = stdout.lines().rev().find(|l| l.starts_with('{')).expect("the driver's summary line");
    serde_json::from_str(line).expect("summary JSON")
}

/// The meeting page the bridge's own tests use: participants are peer
/// connection pairs over loopback; it knows nothing of shmring.
const MEETING: &[(&str, &str)] = &[("/meeting.html", include_str!("../../shmring-bridge/tests/pages/meeting.html"))];

#[test]
fn the_playwright_driver_records_a_meeting_through_the_file_lane() {
    let sandbox = Sandbox::new("botmeeting");
    let ring = sandbox.ring("bot");
    let recording = sandbox.path("meeting");
    // The file lane wants the browser's profile on tmpfs, under a directory
    // the bridge is told of; the extension goes beside it.
    let profile = shmring_bridge::chromium::fresh_profile_dir();
    let browser_profile = profile.join("data");
    let extension = profile.join("extension");
    std::fs::create_dir_all(&browser_profile).unwrap();
    let recorder = sandbox.spawn(&[
        "record",
        &ring,
        "--create",
        "--capacity",
        "64MiB",
        "-o",
        &format!("{}/", recording.display()),
        "--seconds",
        "90",
    ]);
    let recorder_guard = KillOnDrop(recorder.id());
    sandbox.wait_for_consumer(&ring);
    let (bridge, addr) = start_bridge(&sandbox, &ring, &["--profile-dir", profile.to_str().unwrap()]);
    let bridge_guard = KillOnDrop(bridge.id());
    shmring_bridge::extension::write(&extension, &format!("ws://{addr}/")).unwrap();
    let pages = PageServer::start(MEETING).unwrap();

    // Two participants for 6 s, then everyone leaves and the page's title
    // says "ended"; the bot leaves then.
    let url = pages.url("/meeting.html", "participants=2&loopback=1&seconds=6");
    let loopback = format!("--arg={LOOPBACK_WEBRTC}");
    let driver = start_driver(
        &sandbox,
        &[
            "--url",
            &url,
            "--seconds",
            "90",
            "--until-title",
            "ended",
            "--profile",
            browser_profile.to_str().unwrap(),
            "--extension",
            extension.to_str().unwrap(),
            &loopback,
        ],
        &[],
    );
    let run = wait_for(driver, Duration::from_secs(150), "bot.mjs");
    println!("{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.code, 0, "the driver failed:\n{}\n{}", run.stdout, run.stderr);
    assert_eq!(summary(&run.stdout)["title"], "ended", "the meeting ran to its end:\n{}", run.stdout);
    // The extension's own account, as each sender closed: which lane it took.
    let closed: Vec<&str> = run.stdout.lines().filter(|l| l.contains("shmring-extension: closed stream ")).collect();
    assert_eq!(closed.len(), 4, "two participants' video and audio closed:\n{}", run.stdout);
    assert_eq!(closed.iter().filter(|l| l.contains(r#""lane":"file""#)).count(), 2, "{closed:#?}");

    // The bridge leaves, so does the recorder's last producer: it finishes the files.
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(bridge.id() as i32, libc::SIGTERM) };
    bridge_guard.disarm();
    let stopped = wait_for(bridge, Duration::from_secs(20), "bridge");
    stopped.succeeds();
    let line = stopped.stdout.lines().find(|l| l.starts_with("stopped: ")).expect("the bridge's final counters");
    let stats: serde_json::Value = serde_json::from_str(line.trim_start_matches("stopped: ")).unwrap();
    // Each participant's video came by the file lane (audio always goes as
    // WebSocket payloads): one lane per video track, its frames read from
    // the browser's file.
    let count = |key: &str| stats[key].as_u64().unwrap_or_else(|| panic!("{key} in {stats}"));
    assert_eq!(count("file_lanes"), 2, "one file lane per participant's video: {stats}");
    assert_eq!((count("file_lanes_refused"), count("file_errors")), (0, 0), "{stats}");
    assert!(count("file_messages") >= 60, "video frames through the file lane: {stats}");
    assert!(count("declarations") >= 4, "two participants' video and audio: {stats}");

    recorder_guard.disarm();
    let recorded = wait_for(recorder, Duration::from_secs(60), "record");
    println!("{}", recorded.stdout);
    recorded.succeeds();
    for participant in ["participant-1.mp4", "participant-2.mp4"] {
        let probed = ffprobe(&recording.join(participant));
        let (width, height, _, frames) = probed.video.unwrap_or_else(|| panic!("{participant}: a video stream"));
        // The meeting page's participants send 640x360; WebRTC may send
        // less while it ramps up, and a busy machine lowers the rate.
        assert!(width > 0 && width <= 640 && height > 0 && height <= 360, "{participant}: {width}x{height}");
        assert!(frames >= 30, "{participant}: 6 s of meeting, {frames} frames recorded:\n{}", recorded.stdout);
        assert_eq!(
            probed.audio.as_ref().map(|(codec, rate)| (codec.as_str(), *rate)),
            Some(("aac", 48_000)),
            "{participant}"
        );
    }
    let mix = ffprobe(&recording.join("mix.m4a"));
    assert_eq!(mix.audio.as_ref().map(|(codec, _)| codec.as_str()), Some("aac"), "the mix");
    let _ = std::fs::remove_dir_all(&profile);
}

/// The descriptor numbers a `--shmring-fds` spec names: the memfd first,
/// then any further descriptor (`M:D:S`, or `M,...,live=L`).
fn spec_descriptors(spec: &str) -> Vec<i32> {
    let mut fields = spec.split(',');
    let mut fds: Vec<i32> = fields.next().unwrap_or("").split(':').filter_map(|n| n.parse().ok()).collect();
    fds.extend(fields.filter_map(|f| f.strip_prefix("live=")).filter_map(|n| n.parse::<i32>().ok()));
    fds
}

#[test]
fn chromium_exec_under_playwright_hands_the_browser_the_rings_descriptors_above_the_pipes() {
    let sandbox = Sandbox::new("botexec");
    let ring = sandbox.ring("exec");
    sandbox.run(&["create", &ring, "--capacity", "16MiB"]).succeeds();
    let wrapper = sandbox.path("chromium-for-playwright");
    sandbox
        .run(&["chromium-exec", "--ring", &ring, "--browser", "/usr/bin/chromium", "--write-wrapper"])
        .fails_with(2, "--write-wrapper");
    sandbox
        .run(&[
            "chromium-exec",
            "--ring",
            &ring,
            "--browser",
            "/usr/bin/chromium",
            "--write-wrapper",
            wrapper.to_str().unwrap(),
        ])
        .succeeds();

    // Playwright logs the browser's stderr with DEBUG=pw:browser.
    let mut driver = start_driver(
        &sandbox,
        &["--executable", wrapper.to_str().unwrap(), "--url", "about:blank", "--seconds", "8"],
        &[("DEBUG", "pw:browser")],
    );
    let driver_guard = KillOnDrop(driver.id());
    let mut stderr = BufReader::new(driver.stderr.take().unwrap());
    let mut seen = String::new();
    let pid = loop {
        let mut line = String::new();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "the driver ended before the browser started:\n{seen}");
        seen.push_str(&line);
        if let Some(rest) = line.strip_prefix("bot: browser pid ") {
            break rest.split_whitespace().next().and_then(|p| p.parse::<u32>().ok()).expect("a pid");
        }
    };
    // In the browser process itself (the wrappers exec'd it: same pid).
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    assert!(exe.ends_with("chromium"), "pid {pid} runs {}", exe.display());
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    let args: Vec<String> = cmdline.split(|&b| b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
    assert!(args.iter().any(|a| a == "--remote-debugging-pipe"), "{args:?}");
    let spec = args.iter().find_map(|a| a.strip_prefix("--shmring-fds=")).expect("the switch was passed");
    let fds = spec_descriptors(spec);
    assert!(!fds.is_empty(), "{spec}");
    for &fd in &fds {
        assert!(fd >= 5, "descriptor {fd} of {spec} collides with the driver's 3 and 4");
        assert!(std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).is_ok(), "descriptor {fd} of {spec} is not open");
    }
    let memfd = std::fs::read_link(format!("/proc/{pid}/fd/{}", fds[0])).unwrap();
    assert!(memfd.to_string_lossy().starts_with(&format!("/memfd:shmring.{ring}")), "{}", memfd.display());
    // The driver's own pipe (Node makes it of a socket pair) is still
    // where it put it.
    for fd in [3, 4] {
        let target = std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).unwrap().to_string_lossy().into_owned();
        assert!(target.starts_with("pipe:") || target.starts_with("socket:"), "fd {fd} -> {target}");
    }

    // The rest of the run: the stock build is reported, and the driver
    // leaves cleanly.
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    seen.push_str(&rest);
    driver_guard.disarm();
    let status = driver.wait().unwrap();
    assert!(status.success(), "the driver failed:\n{seen}");
    assert!(
        seen.contains("does not contain the switch --shmring-fds: a stock build"),
        "the stock build is reported:\n{seen}"
    );
    assert!(seen.contains(&format!("shmring bridge {ring}")), "points to the bridge:\n{seen}");
    sandbox.run(&["rm", &ring]).succeeds();
}

#[test]
fn chromium_exec_without_a_ring_says_so() {
    let sandbox = Sandbox::new("botexecmissing");
    sandbox.run(&["chromium-exec", "--", "--headless"]).fails_with(2, "SHMRING_RING");
    sandbox.run(&["chromium-exec", "--ring", &sandbox.ring("none"), "--", "--headless"]).fails_with(3, "no ring named");
}
