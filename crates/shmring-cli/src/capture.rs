//! Synthetic capture devices, each a producer process of its own: a camera
//! that paints I420 frames in place (the one write a renderer makes) and a
//! microphone that writes f32 planar chunks, both paced by the clock and
//! never blocking (a full ring drops the frame and counts it).
//!
//! Timestamps are `CLOCK_MONOTONIC` microseconds, the same clock in every
//! process, so the encoder can line video up with audio.

use std::time::{Duration, Instant};

use shmring::{Error, Producer, RingProducer};
use shmring_media::{
    reserve_audio, reserve_video, write_announce, Announcement, AudioMeta, MediaError, PixelFormat, SampleFormat,
    VideoMeta, KIND_AUDIO, KIND_VIDEO,
};

use crate::cli::{CameraArgs, MicrophoneArgs, ProducerTarget};
use crate::failure::{Failure, Outcome};
use crate::size::Resolution;

/// `CLOCK_MONOTONIC` in microseconds.
pub fn monotonic_us() -> i64 {
    // SAFETY: clock_gettime writes into the timespec we own.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec * 1_000_000 + ts.tv_nsec / 1_000
}

/// Attaches to the ring and, given a label, names the stream (`kind`).
fn attach(target: &ProducerTarget, kind: u32) -> Result<RingProducer, Failure> {
    let mut producer = match &target.ring {
        Some(name) => Producer::connect(name).map_err(|e| Failure::ring(name, e))?,
        // SAFETY: whoever started this process set SHMRING_FD to descriptors
        // it passed down to us for this purpose.
        None => unsafe { Producer::from_env() }.map_err(|e| Failure::ring("SHMRING_FD", e))?,
    };
    if let Some(label) = &target.label {
        let announcement =
            Announcement { stream_id: target.stream, kind, timestamp_us: monotonic_us(), label: label.clone() };
        write_announce(&mut producer, &announcement)
            .map_err(|e| Failure::failed(format!("cannot announce the stream: {e}")))?;
    }
    Ok(producer)
}

/// What a capture process did, printed as one JSON line on stdout at exit.
#[derive(Default)]
struct Tally {
    sent: u64,
    dropped: u64,
    late: u64,
    /// CPU spent producing, start-up and attaching excluded.
    cpu: Duration,
}

impl Tally {
    fn print(&self, role: &str) {
        let cpu_us = self.cpu.as_micros() as u64;
        let line = serde_json::json!({
            "role": role, "sent": self.sent, "dropped": self.dropped, "late": self.late, "cpu_us": cpu_us,
        });
        println!("{line}");
    }
}

/// The clock both ways: `(instant, CLOCK_MONOTONIC us)` of the first
/// tick, waiting for `--start-at-us` if given.
fn start_clock(target: &ProducerTarget) -> (Instant, i64) {
    if let Some(at) = target.start_at_us {
        let wait = at - monotonic_us();
        if wait > 0 && wait < 60_000_000 {
            std::thread::sleep(Duration::from_micros(wait as u64));
        }
        return (Instant::now(), at.max(monotonic_us() - 60_000_000));
    }
    (Instant::now(), monotonic_us())
}

/// Sleeps until `deadline`; false when it had already passed by more than
/// one `interval` (the tick is late and skipped).
fn wait_for(deadline: Instant, interval: Duration) -> bool {
    let now = Instant::now();
    if now < deadline {
        std::thread::sleep(deadline - now);
        return true;
    }
    now - deadline < interval
}

/// Whether a failed write ends the capture (`Err`) or only this frame.
fn on_write_error(error: MediaError, tally: &mut Tally) -> Result<(), Failure> {
    match error {
        MediaError::Ring(Error::Dropped) | MediaError::Ring(Error::Full) | MediaError::Ring(Error::Timeout) => {
            tally.dropped += 1;
            Ok(())
        }
        MediaError::Ring(e @ Error::ConsumerGone { .. }) => Err(Failure::failed(e)),
        other => Err(Failure::failed(format!("cannot write a frame: {other}"))),
    }
}

/// Calls `tick(n, start_us)` for ticks `0..ticks`, one every `interval`
/// from the start time (skipping ticks that are already late), counts what
/// was written and dropped, and prints the tally as `role` at the end. A
/// full ring costs the tick; a gone consumer or a bad frame ends the run.
fn pace(
    role: &str,
    target: &ProducerTarget,
    interval: Duration,
    ticks: u64,
    mut tick: impl FnMut(u64, i64) -> Result<(), MediaError>,
) -> Outcome {
    let mut tally = Tally::default();
    let (start, start_us) = start_clock(target);
    let cpu_before = crate::process::own_cpu();
    let mut result = Ok(());
    for n in 0..ticks {
        if !wait_for(start + interval * n as u32, interval) {
            tally.late += 1;
            continue;
        }
        match tick(n, start_us) {
            Ok(()) => tally.sent += 1,
            Err(e) => {
                if let Err(fatal) = on_write_error(e, &mut tally) {
                    result = Err(fatal);
                    break;
                }
            }
        }
    }
    tally.cpu = crate::process::own_cpu().saturating_sub(cpu_before);
    tally.print(role);
    result
}

pub fn camera(args: CameraArgs) -> Outcome {
    if args.fps == 0 || args.fps > 1000 {
        return Err(Failure::usage("--fps must be between 1 and 1000"));
    }
    let mut producer = attach(&args.target, KIND_VIDEO)?;
    let _ = producer.prefault();
    let interval = Duration::from_secs(1) / args.fps;
    let frames = (args.target.seconds.as_secs_f64() * f64::from(args.fps)).round() as u64;
    let switch_frame = args.switch_at.map(|at| (at.as_secs_f64() * f64::from(args.fps)).round() as u64);
    pace("camera", &args.target, interval, frames, |n, start_us| {
        let size = match (switch_frame, args.switch_to) {
            (Some(at), Some(to)) if n >= at => to,
            _ => args.size,
        };
        let meta = VideoMeta {
            stream_id: args.target.stream,
            timestamp_us: start_us + (n as i64 * 1_000_000) / i64::from(args.fps),
            frame_number: n,
        };
        paint(&mut producer, &meta, size)
    })
}

/// Paints frame `meta.frame_number` straight into a reserved slot: a
/// gradient that scrolls, a box that moves, and the frame number as 32
/// black or white blocks along the top, so every frame is recognisable.
fn paint(producer: &mut RingProducer, meta: &VideoMeta, size: Resolution) -> Result<(), MediaError> {
    let (w, h) = (size.width as usize, size.height as usize);
    let n = meta.frame_number as usize;
    let mut slot = reserve_video(producer, meta, PixelFormat::I420, size.width, size.height)?;
    let (y_stride, c_stride) = (slot.stride(0), slot.stride(1));
    let [y, u, v, _] = slot.planes_mut();
    let mut row = vec![0u8; w];
    for (x, px) in row.iter_mut().enumerate() {
        *px = (16 + ((x + 4 * n) % 220)) as u8;
    }
    for line in y.chunks_exact_mut(y_stride).take(h) {
        line[..w].copy_from_slice(&row);
    }
    let side = (h / 5).max(2);
    let travel = w.saturating_sub(side).max(1);
    let left = (8 * n) % travel;
    let top = h / 2 - side / 2;
    for line in y.chunks_exact_mut(y_stride).skip(top).take(side) {
        line[left..left + side].fill(235);
    }
    let block = (w / 32).max(1);
    for line in y.chunks_exact_mut(y_stride).take((h / 32).max(1)) {
        for bit in 0..32.min(w / block) {
            let on = (n >> (31 - bit)) & 1 == 1;
            line[bit * block..(bit + 1) * block].fill(if on { 235 } else { 16 });
        }
    }
    let (cu, cv) = (128 + ((n % 64) as i32 - 32) as u8 as i32, 128 - ((n % 48) as i32 - 24));
    let (cu, cv) = (cu.clamp(16, 240) as u8, cv.clamp(16, 240) as u8);
    let chroma_rows = h.div_ceil(2);
    for line in u.chunks_exact_mut(c_stride).take(chroma_rows) {
        line.fill(cu);
    }
    for line in v.chunks_exact_mut(c_stride).take(chroma_rows) {
        line.fill(cv);
    }
    slot.commit();
    Ok(())
}

pub fn microphone(args: MicrophoneArgs) -> Outcome {
    if args.chunk_ms == 0 || args.chunk_ms > 1000 || args.rate == 0 || args.channels == 0 {
        return Err(Failure::usage("--rate, --channels and --chunk-ms (1-1000) must be positive"));
    }
    let mut producer = attach(&args.target, KIND_AUDIO)?;
    let interval = Duration::from_millis(u64::from(args.chunk_ms));
    let frames_per_chunk = args.rate * args.chunk_ms / 1000;
    let chunks = (args.target.seconds.as_millis() / u128::from(args.chunk_ms)) as u64;
    pace("microphone", &args.target, interval, chunks, |n, start_us| {
        let first_sample = n * u64::from(frames_per_chunk);
        let meta = AudioMeta {
            stream_id: args.target.stream,
            timestamp_us: start_us + (first_sample as i64 * 1_000_000) / i64::from(args.rate),
            frame_number: n,
            sample_rate: args.rate,
        };
        let mut slot = reserve_audio(&mut producer, &meta, SampleFormat::F32Planar, args.channels, frames_per_chunk)?;
        // A tone per channel: 440 Hz, 660 Hz, 880 Hz, ...
        for (channel, plane) in slot.channels_f32_mut().enumerate() {
            let step = std::f64::consts::TAU * 220.0 * (channel as f64 + 2.0) / f64::from(args.rate);
            for (i, sample) in plane.iter_mut().enumerate() {
                *sample = (0.2 * ((first_sample + i as u64) as f64 * step).sin()) as f32;
            }
        }
        slot.commit();
        Ok(())
    })
}
