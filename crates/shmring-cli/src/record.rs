//! `shmring record`: become a ring's consumer and record every stream
//! until stopped (see [`crate::encoder`]).

use std::time::Instant;

use shmring::{AccessPolicy, Consumer};

use crate::cli::{EncodeArgs, RecordArgs};
use crate::encoder::{interrupt_flag, progress_line, Encoder, EncoderConfig, StopRule};
use crate::failure::{Failure, Outcome};
use crate::stream_table::StreamTable;

impl From<&EncodeArgs> for EncoderConfig {
    fn from(args: &EncodeArgs) -> EncoderConfig {
        EncoderConfig {
            fps: args.fps.clamp(1, 240),
            video_stream: args.video_stream,
            audio_stream: args.audio_stream,
            ffmpeg: args.ffmpeg.clone(),
            preset: args.preset.clone(),
            splice: !args.copy,
            finish_timeout: args.finish_timeout,
            stall_timeout: args.stall_timeout,
            mix: !args.no_mix,
            end_after: args.end_after,
            ..EncoderConfig::new(args.output.clone())
        }
    }
}

pub fn record(args: RecordArgs) -> Outcome {
    let name = &args.name;
    shmring::validate_name(name).map_err(|e| Failure::ring(name, e))?;
    let (mut consumer, _server) = if args.create {
        let consumer =
            Consumer::create(name, &crate::host::ring_options(&args.shape)).map_err(|e| Failure::ring(name, e))?;
        let server = consumer.serve(AccessPolicy::default()).map_err(|e| Failure::ring(name, e))?;
        (consumer, Some(server))
    } else {
        (Consumer::connect(name).map_err(|e| Failure::ring(name, e))?, None)
    };
    consumer.set_kill_stuck_producers(args.stuck.kill_stuck_producers);
    let interrupted = interrupt_flag()?;
    let stop = StopRule {
        deadline: args.seconds.map(|s| Instant::now() + s),
        when_producers_leave: !args.keep_going,
        interrupted,
        ..StopRule::default()
    };
    let _span = tracing::info_span!("record", ring = %name).entered();
    eprintln!("recording ring {name} into {} (Ctrl-C to stop)", args.encode.output.display());
    let encoder = Encoder::new(&consumer, EncoderConfig::from(&args.encode));
    let report = encoder.run(&stop, |p| eprintln!("{}", progress_line(p)));
    StreamTable::withdraw(name);
    let report = report?;
    print!("{}", report.text());
    match &report.failure {
        Some(failure) => Err(Failure::failed(format!("recording failed: {failure}"))),
        None if report.segments.is_empty() => Err(Failure::failed("no video frame arrived: nothing was recorded")),
        None => Ok(()),
    }
}
