//! consumer: creates a ring, spawns a renderer-like program (by default
//! `fake_renderer`, found beside this binary) with the ring's descriptors
//! inherited, and reads every frame as a typed, zero-copy view: each video
//! frame's pattern and counter, each audio chunk's samples are verified.
//! Drops show as gaps in the per-stream frame numbers (and in each
//! producer's ring sequence); the resolution change of stream 3 must be
//! seen. At the end every frame the renderer reports as written must have
//! arrived. Exits non-zero on any corruption or mismatch.
//!
//! ```text
//! consumer [--renderer PATH] [--capacity BYTES] [--fd-via flag|env]
//!          [--no-resize-check] [--timeout SECONDS] [-- RENDERER ARGS...]
//! ```

#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

mod pattern;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use shmring::{Consumer, RingOptions};
use shmring_media::{
    Announcement, AudioFrame, PixelFormat, SampleFormat, VideoFrame, KIND_ANNOUNCE, KIND_AUDIO, KIND_VIDEO,
};

struct Args {
    renderer: PathBuf,
    capacity: u64,
    fd_flag: bool,
    resize_check: bool,
    timeout: Duration,
    renderer_args: Vec<String>,
}

fn parse_args() -> Result<Args, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut args = Args {
        renderer: exe.with_file_name("fake_renderer"),
        capacity: 64 << 20,
        fd_flag: true,
        resize_check: true,
        timeout: Duration::from_secs(120),
        renderer_args: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--renderer" => args.renderer = value("--renderer")?.into(),
            "--capacity" => args.capacity = value("--capacity")?.parse().map_err(|e| format!("--capacity: {e}"))?,
            "--fd-via" => args.fd_flag = value("--fd-via")? == "flag",
            "--no-resize-check" => args.resize_check = false,
            "--timeout" => {
                args.timeout =
                    Duration::from_secs_f64(value("--timeout")?.parse().map_err(|e| format!("--timeout: {e}"))?)
            }
            "--" => args.renderer_args.extend(it.by_ref()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(args)
}

/// What one stream looked like from the consumer's side.
#[derive(Default)]
struct StreamSeen {
    kind: &'static str,
    received: u64,
    bytes: u64,
    last: Option<u64>,
    /// Frame numbers skipped between received frames (and before the first).
    gaps: u64,
    sizes: Vec<(u32, u32)>,
}

#[derive(Default)]
struct Verifier {
    streams: BTreeMap<u32, StreamSeen>,
    /// Last ring sequence seen per producer slot, and the gaps between.
    sequences: BTreeMap<u32, u64>,
    sequence_gaps: u64,
    corrupt: u64,
}

impl Verifier {
    fn fail(&mut self, what: String) {
        self.corrupt += 1;
        if self.corrupt <= 10 {
            eprintln!("consumer: CORRUPT {what}");
        }
    }

    fn sequence(&mut self, slot: u32, sequence: u64) {
        if let Some(last) = self.sequences.insert(slot, sequence) {
            // A slot's sequence restarts when a new producer takes it.
            if sequence > last {
                self.sequence_gaps += sequence - last - 1;
            }
        }
    }

    fn frame_number(&mut self, stream: u32, kind: &'static str, n: u64, bytes: usize, size: Option<(u32, u32)>) {
        let seen = self.streams.entry(stream).or_default();
        seen.kind = kind;
        let out_of_order = match seen.last {
            Some(last) if n <= last => Some(last),
            Some(last) => {
                seen.gaps += n - last - 1;
                None
            }
            None => {
                seen.gaps += n;
                None
            }
        };
        seen.last = Some(n);
        seen.received += 1;
        seen.bytes += bytes as u64;
        if let Some(size) = size {
            if seen.sizes.last() != Some(&size) {
                seen.sizes.push(size);
            }
        }
        if let Some(last) = out_of_order {
            self.fail(format!("stream {stream}: frame {n} after frame {last}"));
        }
    }

    fn check(&mut self, ramp: &pattern::Ramp, frame: &shmring::Frame<'_, shmring::MappedRing>) {
        self.sequence(frame.producer(), frame.sequence());
        match frame.kind() {
            KIND_VIDEO => match VideoFrame::parse(frame) {
                Ok(video) => {
                    let (stream, n) = (video.stream_id(), video.frame_number());
                    let size = (video.width(), video.height());
                    let expected: &[(u32, u32)] = match stream {
                        1 => &[(1920, 1080)],
                        2 => &[(1280, 720)],
                        3 => &[(640, 360), (960, 540)],
                        _ => &[],
                    };
                    if video.format() != PixelFormat::I420 {
                        self.fail(format!("stream {stream} frame {n}: format {:?}", video.format()));
                    } else if !expected.is_empty() && !expected.contains(&size) {
                        self.fail(format!("stream {stream} frame {n}: unexpected size {size:?}"));
                    } else if let Err(e) = ramp.check_video(&video) {
                        self.fail(format!("stream {stream} frame {n}: {e}"));
                    }
                    self.frame_number(stream, "video", n, frame.len(), Some(size));
                }
                Err(e) => self.fail(format!("video record at {}: {e}", frame.position())),
            },
            KIND_AUDIO => match AudioFrame::parse(frame) {
                Ok(audio) => {
                    let (stream, n) = (audio.stream_id(), audio.frame_number());
                    if audio.format() != SampleFormat::F32Planar || audio.sample_rate() != 48_000 {
                        self.fail(format!(
                            "stream {stream} chunk {n}: {:?} at {} Hz",
                            audio.format(),
                            audio.sample_rate()
                        ));
                    } else if let Err(e) = pattern::check_audio(&audio) {
                        self.fail(format!("stream {stream} chunk {n}: {e}"));
                    }
                    self.frame_number(stream, "audio", n, frame.len(), None);
                }
                Err(e) => self.fail(format!("audio record at {}: {e}", frame.position())),
            },
            KIND_ANNOUNCE => {
                if let Err(e) = Announcement::parse(frame) {
                    self.fail(format!("announcement at {}: {e}", frame.position()));
                }
            }
            kind => self.fail(format!("record of unknown kind {kind} at {}", frame.position())),
        }
    }
}

/// `stream=1 kind=video attempted=300 written=298 ...` from the renderer.
fn parse_report(line: &str) -> Option<(u32, BTreeMap<String, String>)> {
    let fields: BTreeMap<String, String> = line
        .split_whitespace()
        .filter_map(|f| f.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Some((fields.get("stream")?.parse().ok()?, fields))
}

fn run() -> Result<bool, String> {
    let args = parse_args()?;
    let consumer =
        Consumer::create_anonymous(&RingOptions { prefault: true, ..RingOptions::with_capacity(args.capacity) })
            .map_err(|e| format!("create ring: {e}"))?;
    let inherited = consumer.fds().inheritable().map_err(|e| format!("descriptors: {e}"))?;
    let mut command = Command::new(&args.renderer);
    command.env("SHMRING_FD", inherited.spec()).stdout(Stdio::piped());
    if args.fd_flag {
        command.arg("--shmring-fd").arg(inherited.spec());
    }
    command.args(&args.renderer_args);
    let mut child = command.spawn().map_err(|e| format!("spawn {}: {e}", args.renderer.display()))?;
    drop(inherited); // the child has its copies
    let stdout = child.stdout.take().expect("piped stdout");
    let reader = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .inspect(|line| println!("renderer: {line}"))
            .collect::<Vec<String>>()
    });

    let ramp = pattern::Ramp::new();
    let mut verifier = Verifier::default();
    let deadline = Instant::now() + args.timeout;
    let started = Instant::now();
    let status = loop {
        match consumer.recv_timeout(Duration::from_millis(50)) {
            Ok(Some(frame)) => verifier.check(&ramp, &frame),
            Ok(None) => {}
            Err(e) => verifier.fail(format!("ring: {e}")),
        }
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("renderer still running after {:?}; killed", args.timeout));
        }
    };
    // Everything the renderer committed is in the ring by now.
    loop {
        match consumer.try_recv() {
            Ok(Some(frame)) => verifier.check(&ramp, &frame),
            Ok(None) => break,
            Err(e) => verifier.fail(format!("ring: {e}")),
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let lines = reader.join().map_err(|_| "stdout reader panicked")?;
    let mut ok = status.success() && verifier.corrupt == 0;
    if !status.success() {
        eprintln!("consumer: renderer exited with {status}");
    }

    let mut reported = BTreeMap::new();
    for (stream, fields) in lines.iter().filter_map(|l| parse_report(l)) {
        reported.insert(stream, fields);
    }
    if reported.is_empty() {
        eprintln!("consumer: the renderer reported no streams");
        ok = false;
    }
    let mut total_frames = 0;
    let mut total_bytes = 0;
    for (&stream, fields) in &reported {
        let number = |k: &str| fields.get(k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        let (attempted, written) = (number("attempted"), number("written"));
        let seen = verifier.streams.remove(&stream).unwrap_or_default();
        total_frames += seen.received;
        total_bytes += seen.bytes;
        let trailing = attempted.saturating_sub(seen.last.map_or(0, |l| l + 1));
        let sizes: Vec<String> = seen.sizes.iter().map(|(w, h)| format!("{w}x{h}")).collect();
        println!(
            "consumer: stream={stream} kind={} received={} attempted={attempted} written={written} drops_seen={} \
             trailing_drops={trailing} sizes={}",
            seen.kind,
            seen.received,
            seen.gaps,
            sizes.join("->"),
        );
        if seen.received != written {
            eprintln!("consumer: stream {stream}: received {} frames, renderer wrote {written}", seen.received);
            ok = false;
        }
        if seen.received + seen.gaps + trailing != attempted {
            eprintln!("consumer: stream {stream}: received + drops != attempted");
            ok = false;
        }
        if stream == 3 && args.resize_check && seen.sizes.len() < 2 {
            eprintln!("consumer: stream 3 never changed resolution");
            ok = false;
        }
    }
    for (stream, seen) in &verifier.streams {
        eprintln!("consumer: stream {stream}: {} frames the renderer never reported", seen.received);
        ok = false;
    }
    let stats = consumer.stats();
    println!(
        "consumer: verified {total_frames} frames ({:.1} MB) in {elapsed:.1} s, corrupt={}, sequence_gaps={}, \
         ring drops={} skipped={} recovered={} corrupt_records={}",
        total_bytes as f64 / 1e6,
        verifier.corrupt,
        verifier.sequence_gaps,
        stats.drops,
        stats.skipped,
        stats.recovered,
        stats.corrupt,
    );
    if stats.corrupt != 0 {
        ok = false;
    }
    Ok(ok)
}

fn main() -> ExitCode {
    match run() {
        Ok(true) => {
            println!("consumer: OK");
            ExitCode::SUCCESS
        }
        Ok(false) => {
            println!("consumer: FAILED");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("consumer: {e}");
            ExitCode::from(2)
        }
    }
}
