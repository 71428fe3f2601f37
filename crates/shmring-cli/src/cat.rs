//! `shmring cat`: become a ring's consumer and write one stream's raw
//! frames to stdout, in the layout ffmpeg's `rawvideo` / `f32le` inputs
//! read. Video is written straight from the ring.

use std::collections::VecDeque;
use std::io::Write;
use std::os::fd::AsFd;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use shmring::Consumer;
use shmring_media::{AudioFrame, KIND_AUDIO, KIND_VIDEO};

use crate::cli::{CatArgs, MediaKind};
use crate::encoder::ffmpeg::ffmpeg_pix_fmt;
use crate::encoder::interrupt_flag;
use crate::encoder::pcm::Pcm;
use crate::encoder::pipes::{self, VideoSource, VideoWrite};
use crate::failure::{Failure, Outcome};

/// What has been written so far, and the stream's shape.
#[derive(Default)]
struct Written {
    stream: Option<u32>,
    shape: Option<String>,
    frames: u64,
    bytes: u64,
}

pub fn cat(args: CatArgs) -> Outcome {
    let name = &args.name;
    shmring::validate_name(name).map_err(|e| Failure::ring(name, e))?;
    let _span = tracing::info_span!("cat", ring = %name).entered();
    let mut consumer = Consumer::connect(name).map_err(|e| Failure::ring(name, e))?;
    consumer.set_kill_stuck_producers(args.stuck.kill_stuck_producers);
    let interrupted = interrupt_flag()?;
    let deadline = args.seconds.map(|s| Instant::now() + s);
    // Our own descriptor for stdout: unbuffered, and writev straight from the ring.
    let mut out = std::fs::File::from(std::io::stdout().as_fd().try_clone_to_owned()?);
    let mut written = Written { stream: args.stream, ..Written::default() };
    let mut bytes: Vec<u8> = Vec::new();
    let wanted_kind = match args.kind {
        MediaKind::Video => KIND_VIDEO,
        MediaKind::Audio => KIND_AUDIO,
    };
    let outcome = loop {
        if interrupted.load(Ordering::Relaxed) || deadline.is_some_and(|d| Instant::now() >= d) {
            break Ok(());
        }
        if args.frames.is_some_and(|n| written.frames >= n) {
            break Ok(());
        }
        let frame = match consumer.recv_timeout(std::time::Duration::from_millis(100)) {
            Ok(Some(frame)) => frame,
            Ok(None) => continue,
            Err(shmring::Error::Corrupt { position, reason }) => {
                eprintln!("cat: skipped a corrupt record at {position}: {reason}");
                continue;
            }
            Err(e) => break Err(Failure::ring(name, e)),
        };
        if frame.kind() != wanted_kind {
            continue;
        }
        let result = if wanted_kind == KIND_VIDEO {
            let (info, source) = match VideoSource::parse(frame) {
                Ok(parsed) => parsed,
                Err(e) => {
                    eprintln!("cat: skipped an invalid video frame: {e}");
                    continue;
                }
            };
            if *written.stream.get_or_insert(info.stream_id) != info.stream_id {
                continue;
            }
            let shape = format!(
                "-f rawvideo -pix_fmt {} -video_size {}x{} -framerate {}",
                ffmpeg_pix_fmt(info.format),
                info.width,
                info.height,
                args.fps
            );
            if !same_shape(&mut written, shape) {
                eprintln!(
                    "cat: stream {} changed to {}x{}: stopping (a rawvideo input has one size)",
                    info.stream_id, info.width, info.height
                );
                break Ok(());
            }
            let len = source.len() as u64;
            let mut queue = VecDeque::from([VideoWrite::new(Rc::new(source), 1)]);
            // stdout blocks, so one call writes the whole frame (copied:
            // a reader we do not track may read it at any time).
            pipes::VideoPipe::new(false).write(out.as_fd(), &mut queue).map(|_| len)
        } else {
            let chunk = match AudioFrame::parse(&frame) {
                Ok(chunk) => chunk,
                Err(e) => {
                    eprintln!("cat: skipped an invalid audio chunk: {e}");
                    continue;
                }
            };
            if *written.stream.get_or_insert(chunk.stream_id()) != chunk.stream_id() {
                continue;
            }
            let shape = format!("-f f32le -ar {} -ac {}", chunk.sample_rate(), chunk.channels());
            if !same_shape(&mut written, shape) {
                eprintln!("cat: stream {} changed its audio format: stopping", chunk.stream_id());
                break Ok(());
            }
            bytes.clear();
            bytes.extend(Pcm::from_chunk(&chunk).samples.iter().flat_map(|s| s.to_le_bytes()));
            out.write_all(&bytes).map(|_| bytes.len() as u64)
        };
        match result {
            Ok(n) => {
                written.frames += 1;
                written.bytes += n;
            }
            // The reader went away (`| head`): a normal end.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => break Ok(()),
            Err(e) => break Err(Failure::failed(format!("writing to stdout: {e}"))),
        }
    };
    eprintln!(
        "cat: wrote {} {} ({} bytes) of stream {}",
        written.frames,
        if wanted_kind == KIND_VIDEO { "frames" } else { "chunks" },
        written.bytes,
        written.stream.map_or("-".to_string(), |s| s.to_string())
    );
    outcome
}

/// Records the first shape and prints the ffmpeg input arguments for it;
/// false when a later frame has another shape.
fn same_shape(written: &mut Written, shape: String) -> bool {
    match &written.shape {
        Some(first) => *first == shape,
        None => {
            eprintln!("cat: ffmpeg input: {shape} -i -");
            written.shape = Some(shape);
            true
        }
    }
}
