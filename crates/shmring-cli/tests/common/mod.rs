//! Running the real `shmring` binary in tests: each test gets its own
//! runtime directory (rendezvous sockets, owner files) and ring names no
//! other test uses.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A test's private corner: a runtime directory and a scratch directory.
pub struct Sandbox {
    pub dir: tempfile::TempDir,
    pub runtime: PathBuf,
    prefix: String,
}

impl Sandbox {
    pub fn new(test: &str) -> Sandbox {
        let dir = tempfile::tempdir().expect("tempdir");
        let runtime = dir.path().join("run");
        Sandbox { runtime, dir, prefix: format!("t{}-{test}", std::process::id()) }
    }

    /// A ring name unique to this test run.
    pub fn ring(&self, suffix: &str) -> String {
        format!("{}-{suffix}", self.prefix)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `shmring ARGS` with this sandbox's runtime directory.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_shmring"));
        command.args(args).env("SHMRING_RUNTIME_DIR", &self.runtime).env("RUST_LOG", "warn").stdin(Stdio::null());
        command
    }

    /// Runs `shmring ARGS` to completion.
    pub fn run(&self, args: &[&str]) -> Run {
        let output = self.command(args).output().expect("run shmring");
        Run::from(output, args)
    }

    /// Waits until ring `name` has a consumer attached (seen by `stat`).
    pub fn wait_for_consumer(&self, name: &str) {
        for _ in 0..400 {
            let stat = self.run(&["stat", name, "--json"]);
            if stat.code == 0 {
                let json: serde_json::Value = serde_json::from_str(&stat.stdout).expect("stat --json");
                if json["consumer"]["state"] == "attached" {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("no consumer attached to {name}");
    }

    /// Starts `shmring ARGS` in the background, output captured.
    pub fn spawn(&self, args: &[&str]) -> Child {
        self.command(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn shmring")
    }
}

impl Drop for Sandbox {
    /// Stops whatever still owns a ring of this sandbox (a holder left
    /// behind by a failed assertion), so no test leaks a daemon.
    fn drop(&mut self) {
        let Ok(entries) = std::fs::read_dir(&self.runtime) else { return };
        for entry in entries.flatten() {
            if entry.path().extension().is_none_or(|e| e != "owner") {
                continue;
            }
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
            if let Some(pid) = text.split_whitespace().next().and_then(|p| p.parse::<i32>().ok()) {
                // SAFETY: kill has no memory-safety preconditions.
                unsafe { libc::kill(pid, libc::SIGTERM) };
            }
        }
    }
}

/// Kills process `pid` when dropped, unless disarmed first: a background
/// peer is never left running by a test that fails before stopping it.
/// Disarm it before the child is reaped (its pid could then be reused).
pub struct KillOnDrop(pub u32);

impl KillOnDrop {
    pub fn disarm(mut self) {
        self.0 = 0;
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if self.0 != 0 {
            // SAFETY: kill has no memory-safety preconditions; the child
            // has not been reaped, so the pid is still ours.
            unsafe { libc::kill(self.0 as i32, libc::SIGKILL) };
        }
    }
}

/// What a finished command did.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub bytes: Vec<u8>,
    pub args: String,
}

impl Run {
    pub fn from(output: Output, args: &[&str]) -> Run {
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            bytes: output.stdout,
            args: args.join(" "),
        }
    }

    /// Asserts the exit code, and that stderr mentions `needle`.
    pub fn fails_with(&self, code: i32, needle: &str) -> &Run {
        assert_eq!(
            self.code, code,
            "`shmring {}`: exit {}\nstdout: {}\nstderr: {}",
            self.args, self.code, self.stdout, self.stderr
        );
        assert!(self.stderr.contains(needle), "`shmring {}`: stderr lacks {needle:?}: {}", self.args, self.stderr);
        self
    }

    pub fn succeeds(&self) -> &Run {
        assert_eq!(
            self.code, 0,
            "`shmring {}` failed ({})\nstdout: {}\nstderr: {}",
            self.args, self.code, self.stdout, self.stderr
        );
        self
    }
}

/// What a camera or microphone process said it did: (sent, dropped).
pub fn tally(device: &Run) -> (u64, u64) {
    let tally: serde_json::Value = serde_json::from_str(device.stdout.trim()).expect("the tally line");
    (tally["sent"].as_u64().unwrap(), tally["dropped"].as_u64().unwrap())
}

/// Waits for `child` with a limit, killing it when the limit passes (a
/// hang is a failure, not a stuck test).
pub fn wait_for(child: Child, limit: Duration, what: &str) -> Run {
    let pid = child.id();
    let started = Instant::now();
    let watchdog = std::thread::spawn(move || {
        while started.elapsed() < limit {
            std::thread::sleep(Duration::from_millis(50));
            // Signal 0: is it still running?
            // SAFETY: kill has no memory-safety preconditions.
            if unsafe { libc::kill(pid as i32, 0) } != 0 {
                return false;
            }
        }
        // SAFETY: as above.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        true
    });
    let output = child.wait_with_output().expect("wait");
    let killed = watchdog.join().unwrap_or(false);
    assert!(!killed, "{what} did not finish within {limit:?}: {}", String::from_utf8_lossy(&output.stderr));
    Run::from(output, &[what])
}

/// ffprobe's view of a file: (duration, width, height, fps, frames, audio codec, rate).
#[derive(Debug)]
pub struct Probed {
    pub duration: f64,
    pub video: Option<(u64, u64, f64, u64)>,
    pub audio: Option<(String, u64)>,
}

pub fn ffprobe(path: &Path) -> Probed {
    let output = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-show_entries"])
        .arg("format=duration:stream=codec_type,codec_name,width,height,avg_frame_rate,nb_read_frames,sample_rate")
        .args(["-of", "json"])
        .arg(path)
        .output()
        .expect("ffprobe runs (Debian's ffmpeg package)");
    assert!(output.status.success(), "ffprobe {}: {}", path.display(), String::from_utf8_lossy(&output.stderr));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).expect("ffprobe json");
    let number = |v: &serde_json::Value| v.as_str().and_then(|s| s.parse::<f64>().ok()).or(v.as_f64()).unwrap_or(0.0);
    let mut probed = Probed { duration: number(&json["format"]["duration"]), video: None, audio: None };
    for stream in json["streams"].as_array().expect("streams") {
        match stream["codec_type"].as_str() {
            Some("video") => {
                let rate = stream["avg_frame_rate"].as_str().unwrap_or("0/1");
                let (n, d) = rate.split_once('/').unwrap_or(("0", "1"));
                let fps = n.parse::<f64>().unwrap_or(0.0) / d.parse::<f64>().unwrap_or(1.0);
                probed.video = Some((
                    stream["width"].as_u64().unwrap_or(0),
                    stream["height"].as_u64().unwrap_or(0),
                    fps,
                    number(&stream["nb_read_frames"]) as u64,
                ));
            }
            Some("audio") => {
                probed.audio = Some((
                    stream["codec_name"].as_str().unwrap_or("").to_string(),
                    number(&stream["sample_rate"]) as u64,
                ))
            }
            _ => {}
        }
    }
    probed
}

/// The frame numbers the synthetic camera painted into each frame of a
/// video file (32 black or white blocks along the top), decoded by ffmpeg:
/// what the encoder really delivered, frame by frame.
pub fn painted_frame_numbers(path: &Path, width: usize) -> Vec<u64> {
    let output = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(path)
        .args(["-vf", "crop=iw:16:0:0", "-f", "rawvideo", "-pix_fmt", "gray", "-"])
        .output()
        .expect("ffmpeg runs");
    assert!(output.status.success(), "decode {}: {}", path.display(), String::from_utf8_lossy(&output.stderr));
    let block = width / 32;
    output
        .stdout
        .chunks_exact(width * 16)
        .map(|frame| {
            let row = &frame[8 * width..9 * width];
            (0..32).fold(0u64, |n, bit| n << 1 | u64::from(row[bit * block + block / 2] > 128))
        })
        .collect()
}

/// Checks that `numbers` (one per output frame, starting at slot `first`)
/// follow the timeline: never backwards, and nearly all exactly the slot
/// (a dropped frame's slot shows the previous frame).
pub fn assert_on_timeline(numbers: &[u64], first: u64, what: &str) {
    assert!(!numbers.is_empty(), "{what}: no frames decoded");
    assert!(numbers.windows(2).all(|w| w[0] <= w[1]), "{what}: frame numbers go backwards: {numbers:?}");
    let exact = numbers.iter().enumerate().filter(|(i, &n)| n == first + *i as u64).count();
    assert!(
        exact * 100 >= numbers.len() * 95,
        "{what}: only {exact} of {} frames in their slot: {numbers:?}",
        numbers.len()
    );
}

/// A summary row of `record`: `stream ID  KIND of participant N (...) -> FILE: counts`.
#[derive(Debug)]
pub struct Row {
    pub kind: String,
    pub participant: u64,
    pub output: String,
    pub counts: BTreeMap<String, u64>,
}

pub fn rows(report: &str) -> BTreeMap<u32, Row> {
    report
        .lines()
        .filter_map(|line| line.trim_start().strip_prefix("stream "))
        .map(|rest| {
            let mut words = rest.split_whitespace();
            let id: u32 = words.next().unwrap().parse().unwrap();
            let kind = words.next().unwrap().to_string();
            let participant = rest.split("of participant ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
            let (head, tail) = rest.split_once(": ").unwrap();
            let output = head.rsplit("-> ").next().unwrap().to_string();
            // `175 received, 175 recorded, ...; 423 mixed, 0 not mixed; FORMAT`
            let mut counts = BTreeMap::new();
            for part in tail.split([',', ';']) {
                let part = part.trim();
                if let Some((n, what)) = part.split_once(' ') {
                    if let Ok(n) = n.parse::<u64>() {
                        counts.insert(what.to_string(), n);
                    }
                }
            }
            (id, Row { kind, participant, output, counts })
        })
        .collect()
}

pub fn assert_close(what: &str, found: f64, expected: f64, tolerance: f64) {
    assert!(
        (found - expected).abs() <= tolerance * expected,
        "{what}: {found}, expected {expected} +- {:.0}%",
        tolerance * 100.0
    );
}

/// Fails (never skips) when Debian's Chromium is missing.
pub fn require_chromium() {
    assert!(
        Path::new("/usr/bin/chromium").exists(),
        "Debian's chromium package is required (apt-get install -y chromium)"
    );
}
