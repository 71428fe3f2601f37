//! consumer_cpu: the Rust side of the Python consumer's CPU comparison
//! (`crates/shmring-py/bench/consumer_cpu.py`). Creates ring NAME and
//! serves it by name, prints `ready`, then receives video frames as the
//! Python consumer does (receive, read the media header, take the Y plane
//! as a view, drop; the pixels are never read) until no frame has come for
//! `--idle` seconds. Prints one JSON line: frames, and the CPU this process
//! spent from the first frame to the last (`getrusage`, all threads).
//!
//! ```text
//! consumer_cpu NAME [--capacity BYTES] [--idle SECONDS] [--backlog]
//! ```
//!
//! With `--backlog` it waits for a line on stdin before receiving (the
//! producer has filled the ring by then) and takes the frames back to
//! back: the cost of a frame without the sleep and wake-up around it.

#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

use std::process::ExitCode;
use std::time::{Duration, Instant};

use shmring::{Consumer, RingOptions};
use shmring_media::VideoFrame;

/// User + system CPU seconds of this process so far.
fn cpu_seconds() -> f64 {
    // SAFETY: an all-zero `rusage` is a valid value of this plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid, writable rusage; RUSAGE_SELF cannot fail.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let seconds = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

fn run() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let name = args.next().ok_or("usage: consumer_cpu NAME [--capacity BYTES] [--idle SECONDS]")?;
    let (mut capacity, mut idle, mut backlog) = (256u64 << 20, Duration::from_secs(3), false);
    while let Some(flag) = args.next() {
        if flag == "--backlog" {
            backlog = true;
            continue;
        }
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--capacity" => capacity = value.parse().map_err(|e| format!("--capacity: {e}"))?,
            "--idle" => idle = Duration::from_secs_f64(value.parse().map_err(|e| format!("--idle: {e}"))?),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    let consumer = Consumer::create(&name, &RingOptions::with_capacity(capacity)).map_err(|e| e.to_string())?;
    let _server = consumer.serve(Default::default()).map_err(|e| e.to_string())?;
    println!("ready");
    if backlog {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map_err(|e| e.to_string())?;
        idle = Duration::from_millis(200);
    }
    let (mut frames, mut first, mut last) = (0u64, None, (0.0, Instant::now()));
    let mut views = 0usize;
    loop {
        let wait = if first.is_some() { idle } else { idle * 10 };
        let Some(frame) = consumer.recv_timeout(wait).map_err(|e| e.to_string())? else { break };
        if backlog && first.is_none() {
            // The first frame comes after a long sleep: start the clock on it.
            drop(frame);
            first = Some((cpu_seconds(), Instant::now()));
            frames += 1;
            continue;
        }
        let video = VideoFrame::parse(&frame).map_err(|e| e.to_string())?;
        // The Y plane as a view (pointer and length), as numpy gets it.
        let y = video.y();
        views = views.wrapping_add(y.as_ptr() as usize ^ y.len());
        drop(frame);
        let now = (cpu_seconds(), Instant::now());
        first.get_or_insert(now);
        last = now;
        frames += 1;
    }
    let (cpu, wall) = match first {
        Some(first) => (last.0 - first.0, last.1.duration_since(first.1).as_secs_f64()),
        None => (0.0, 0.0),
    };
    std::hint::black_box(views);
    println!(r#"{{"role":"rust","frames":{frames},"cpu_s":{cpu},"wall_s":{wall},"backlog":{backlog}}}"#);
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("consumer_cpu: {e}");
            ExitCode::FAILURE
        }
    }
}
