//! The main job in one command: producer processes write synthetic 1080p
//! I420 frames and audio records into one ring, one consumer reads them in
//! place, and the demo prints what it measured.
//!
//! ```text
//! cargo run --release --example demo -- [--seconds 5] [--video 2] [--audio 1] [--unpaced]
//! ```

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use shmring::{Consumer, FullPolicy, Producer, RingOptions};

const VIDEO_FRAME: usize = 1920 * 1080 * 3 / 2; // 3,110,400 bytes of I420
const AUDIO_RECORD: usize = 480 * 2 * 4; // 10 ms of 48 kHz stereo f32
const KIND_VIDEO: u32 = 1;
const KIND_AUDIO: u32 = 2;

struct Args {
    seconds: f64,
    video: u32,
    audio: u32,
    paced: bool,
    role: Option<(String, u32)>,
}

fn parse_args() -> Args {
    let mut args = Args { seconds: 5.0, video: 2, audio: 1, paced: true, role: None };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| usage(&format!("{arg} needs a value")));
        match arg.as_str() {
            "--seconds" => args.seconds = value().parse().unwrap_or_else(|_| usage("--seconds takes a number")),
            "--video" => args.video = value().parse().unwrap_or_else(|_| usage("--video takes a count")),
            "--audio" => args.audio = value().parse().unwrap_or_else(|_| usage("--audio takes a count")),
            "--unpaced" => args.paced = false,
            "--role" => {
                let role = value();
                let id = value().parse().unwrap_or_else(|_| usage("--role KIND ID"));
                args.role = Some((role, id));
            }
            "-h" | "--help" => usage(""),
            other => usage(&format!("unknown argument {other}")),
        }
    }
    args
}

fn usage(problem: &str) -> ! {
    if !problem.is_empty() {
        eprintln!("error: {problem}");
    }
    eprintln!("usage: demo [--seconds S] [--video N] [--audio N] [--unpaced]");
    std::process::exit(if problem.is_empty() { 0 } else { 2 });
}

fn cpu_seconds(who: libc::c_int) -> f64 {
    // SAFETY: getrusage writes into the zeroed struct we own.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `who` is RUSAGE_SELF or RUSAGE_CHILDREN.
    unsafe { libc::getrusage(who, &mut usage) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// A producer process: writes each frame in place (the one copy a renderer
/// makes anyway), paced like a camera or as fast as the ring allows.
fn run_producer(kind: &str, id: u32, seconds: f64, paced: bool) {
    // SAFETY: the parent passed the ring's descriptors in SHMRING_FD.
    let mut producer = unsafe { Producer::from_env() }.unwrap_or_else(|e| {
        eprintln!("producer {id}: {e}");
        std::process::exit(1)
    });
    if !paced {
        producer.set_full_policy(FullPolicy::Block(Duration::from_secs(1)));
    }
    let (len, record_kind, interval) = match kind {
        "video" => (VIDEO_FRAME, KIND_VIDEO, Duration::from_nanos(1_000_000_000 / 30)),
        _ => (AUDIO_RECORD, KIND_AUDIO, Duration::from_millis(10)),
    };
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(seconds);
    let mut n: u64 = 0;
    while Instant::now() < end {
        if paced {
            let due = start + interval * n as u32;
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        match producer.reserve(len) {
            Ok(mut frame) => {
                // A recognisable frame: stream id and counter up front, a
                // gradient that changes every frame behind them.
                let shade = (n as u8).wrapping_mul(3);
                frame.fill(shade);
                frame[..4].copy_from_slice(&id.to_le_bytes());
                frame[4..12].copy_from_slice(&n.to_le_bytes());
                frame.set_kind(record_kind);
                frame.commit();
            }
            Err(shmring::Error::Dropped | shmring::Error::Timeout) => {}
            Err(e) => {
                eprintln!("producer {id}: {e}");
                std::process::exit(1);
            }
        }
        n += 1;
    }
}

fn main() {
    let args = parse_args();
    if let Some((kind, id)) = &args.role {
        run_producer(kind, *id, args.seconds, args.paced);
        return;
    }
    let capacity = 64 << 20;
    let consumer = Consumer::create_anonymous(&RingOptions::with_capacity(capacity)).unwrap_or_else(|e| {
        eprintln!("error: {e}");
        std::process::exit(1)
    });
    let inherit = consumer.fds().inheritable().expect("duplicate ring descriptors");
    let exe = std::env::current_exe().expect("own path");
    let spawn = |kind: &str, id: u32| -> Child {
        let mut cmd = Command::new(&exe);
        cmd.args(["--role", kind, &id.to_string(), "--seconds", &args.seconds.to_string()]);
        if !args.paced {
            cmd.arg("--unpaced");
        }
        cmd.env("SHMRING_FD", inherit.spec()).spawn().expect("spawn producer")
    };
    let mut children: Vec<Child> = (0..args.video).map(|i| spawn("video", i)).collect();
    children.extend((0..args.audio).map(|i| spawn("audio", args.video + i)));
    drop(inherit);
    println!(
        "shmring demo: {} video + {} audio producer processes -> 1 consumer, ring {} MiB, {} for {:.1} s",
        args.video,
        args.audio,
        capacity >> 20,
        if args.paced { "video paced at 30 fps, audio every 10 ms" } else { "unpaced" },
        args.seconds
    );
    let cpu_before = cpu_seconds(libc::RUSAGE_SELF);
    let started = Instant::now();
    let (mut video, mut audio, mut bytes, mut bad) = (0u64, 0u64, 0u64, 0u64);
    let mut next_seq = vec![0u64; (args.video + args.audio) as usize];
    let mut last_report = Instant::now();
    loop {
        match consumer.recv_timeout(Duration::from_millis(200)) {
            Ok(Some(frame)) => {
                // A few fields read where they lie (producers may still
                // write the ring, so as single loads, not through a slice).
                let data = frame.bytes();
                let id = data.load_u32(0).map_or(usize::MAX, |id| u32::from_le(id) as usize);
                let n = data.load_u64(4).map_or(0, u64::from_le);
                let shade = Some((n as u8).wrapping_mul(3));
                let intact = id < next_seq.len()
                    && n >= next_seq[id]
                    && data.load_u8(12) == shade
                    && data.load_u8(frame.len() - 1) == shade
                    && data.load_u8(frame.len() / 2) == shade;
                if !intact {
                    bad += 1;
                } else {
                    next_seq[id] = n + 1;
                }
                match frame.kind() {
                    KIND_VIDEO => video += 1,
                    _ => audio += 1,
                }
                bytes += frame.len() as u64;
            }
            Ok(None) => {
                if children.iter_mut().all(|c| matches!(c.try_wait(), Ok(Some(_)))) {
                    break;
                }
            }
            Err(e) => {
                eprintln!("consumer: {e}");
                bad += 1;
            }
        }
        if last_report.elapsed() >= Duration::from_secs(1) {
            last_report = Instant::now();
            let s = consumer.stats();
            eprint!(
                "\r  {:4.1} s  video {video:6}  audio {audio:6}  dropped {:4}  ring {:5.1}% full ",
                started.elapsed().as_secs_f64(),
                s.drops,
                s.fill_percent()
            );
        }
    }
    eprintln!();
    let elapsed = started.elapsed().as_secs_f64();
    let consumer_cpu = cpu_seconds(libc::RUSAGE_SELF) - cpu_before;
    let mut failed = false;
    for mut child in children {
        failed |= !child.wait().map(|s| s.success()).unwrap_or(false);
    }
    let producer_cpu = cpu_seconds(libc::RUSAGE_CHILDREN);
    let stats = consumer.stats();
    let frames = video + audio;
    println!(
        "  received        {video} video frames ({:.1}/s), {audio} audio records ({:.1}/s)",
        video as f64 / elapsed,
        audio as f64 / elapsed
    );
    println!("  throughput      {:.3} GB/s ({:.1} MB/s)", bytes as f64 / elapsed / 1e9, bytes as f64 / elapsed / 1e6);
    println!("  dropped (full)  {}", stats.drops);
    println!("  corrupt         {bad}");
    println!(
        "  consumer CPU    {consumer_cpu:.3} s = {:.2} us per frame (receives in place, checks 3 bytes of each)",
        1e6 * consumer_cpu / frames.max(1) as f64
    );
    println!(
        "  producer CPU    {producer_cpu:.3} s = {:.1} us per video frame incl. writing its {VIDEO_FRAME} bytes",
        1e6 * producer_cpu / video.max(1) as f64
    );
    println!("  consumer slept  {} times, woken by producers {} times", stats.consumer_sleeps, stats.data_posts);
    if failed || bad > 0 || stats.consumed_frames != stats.committed_frames {
        eprintln!("demo FAILED: producers failed or frames were corrupt or lost");
        std::process::exit(1);
    }
}
