//! The recording bot's encoder: consumes video and audio from a ring and
//! feeds a real ffmpeg through two pipes, producing MP4 files (H.264 and
//! AAC).
//!
//! - Video is written to ffmpeg straight from the ring: each record stays
//!   held until its last byte is in the pipe. Frames are placed by
//!   timestamp on a constant-rate timeline; a missed slot repeats the
//!   previous frame.
//! - Audio is converted to interleaved f32 (ffmpeg's `f32le`) as it
//!   arrives; gaps become silence, and it is fed no further than the video
//!   has reached, so that each file's audio ends where its video ends.
//! - A change of resolution or pixel format closes the current file and
//!   starts the next (`OUT.1.mp4`, ...): a recording bot keeps each camera
//!   size in its own file rather than rescaling.
//! - If ffmpeg dies, the error is reported with what it printed; the
//!   encoder goes on draining the ring (producers keep running) and counts
//!   every later frame as dropped.

pub mod ffmpeg;
pub mod pipes;
mod report;
mod timeline;

use std::collections::VecDeque;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use shmring::{AccessPolicy, Consumer, Frame, MappedRing, RingConsumer};
use shmring_media::{AudioFrame, PixelFormat, KIND_ANNOUNCE, KIND_AUDIO, KIND_VIDEO};

use crate::cli::{EncodeArgs, RecordArgs};
use crate::failure::{Failure, Outcome};
use crate::process::{self, Exit};

use ffmpeg::{Ffmpeg, SegmentFormat};
use pipes::{ByteQueue, VideoInfo, VideoPipe, VideoSource, VideoWrite};
pub use report::{per, progress_line, Counters, Report, SegmentReport, StopReason};
use timeline::{AudioClock, AudioSlot, VideoClock, VideoSlot};

/// How long the first file waits for an audio chunk (to learn the audio
/// format) after the first video frame, before it starts with 48 kHz
/// stereo silence.
const AUDIO_FORMAT_WAIT: Duration = Duration::from_secs(1);
/// Audio or video running this far ahead of the other means the other
/// stalled: silence or repeated frames catch it up.
const STALL: Duration = Duration::from_secs(1);
/// A frame kept only to be repeated is copied out of the ring after this.
const HOLD_LAST_FRAME: Duration = Duration::from_millis(300);
/// Most audio waiting for ffmpeg.
const AUDIO_BACKLOG: Duration = Duration::from_secs(2);

/// When the encoder stops.
#[derive(Clone, Debug)]
pub struct StopRule {
    pub deadline: Option<Instant>,
    /// Stop once producers have come and every one has left (and the ring
    /// is drained).
    pub when_producers_leave: bool,
    pub interrupted: Arc<AtomicBool>,
}

/// Encoder settings.
#[derive(Clone, Debug)]
pub struct EncoderConfig {
    pub output: PathBuf,
    pub fps: u32,
    pub video_stream: Option<u32>,
    pub audio_stream: Option<u32>,
    pub ffmpeg: PathBuf,
    pub preset: String,
    /// Hand video to ffmpeg with `vmsplice` (no copy) rather than `writev`.
    pub splice: bool,
    /// How long a closed file's ffmpeg may take to read what is left and
    /// finish the file before it is killed and the file reported failed.
    pub finish_timeout: Duration,
    /// How long ffmpeg may take nothing while frames wait for it.
    pub stall_timeout: Duration,
}

impl From<&EncodeArgs> for EncoderConfig {
    fn from(args: &EncodeArgs) -> EncoderConfig {
        EncoderConfig {
            output: args.output.clone(),
            fps: args.fps.clamp(1, 240),
            video_stream: args.video_stream,
            audio_stream: args.audio_stream,
            ffmpeg: args.ffmpeg.clone(),
            preset: args.preset.clone(),
            splice: !args.copy,
            finish_timeout: args.finish_timeout,
            stall_timeout: args.stall_timeout,
        }
    }
}

/// A progress snapshot, once a second.
pub struct Progress<'a> {
    pub elapsed: Duration,
    pub counters: &'a Counters,
    pub video_out: u64,
    pub fill_percent: f64,
    pub backlog_frames: usize,
    pub files: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SegmentState {
    /// Taking frames (ffmpeg may not have started yet).
    Open,
    /// No more input: writing what is queued, then closing the pipes.
    Closing,
    /// Pipes closed, waiting for ffmpeg to finish the file.
    Draining,
    Done,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct VideoKey {
    format: PixelFormat,
    width: u32,
    height: u32,
}

/// One output file and its ffmpeg.
struct Segment<'c> {
    report: SegmentReport,
    key: VideoKey,
    ffmpeg: Option<Ffmpeg>,
    state: SegmentState,
    video: VecDeque<VideoWrite<'c>>,
    /// How `video` reaches ffmpeg (spliced frames stay held until read).
    pipe: VideoPipe<'c>,
    /// Bytes of the frames queued in `video`, counting repeats.
    video_backlog: usize,
    audio: ByteQueue,
    /// When the last chance to finish ends (ffmpeg is killed after it).
    drain_deadline: Option<Instant>,
    /// Bytes ffmpeg has read from both pipes, and when that last grew.
    taken: u64,
    last_progress: Instant,
}

impl Segment<'_> {
    /// Whether anything waits for ffmpeg to read it.
    fn has_pending(&self) -> bool {
        !self.video.is_empty() || !self.audio.is_empty() || self.pipe.in_flight() > 0
    }
}

impl Segment<'_> {
    fn queued_frames(&self) -> usize {
        self.video.iter().map(|w| w.times as usize).sum()
    }
}

/// An audio chunk converted to interleaved f32.
struct Pcm {
    timestamp_us: i64,
    rate: u32,
    channels: u32,
    frames: u64,
    samples: Vec<f32>,
}

/// The encoder over one ring's consumer.
pub struct Encoder<'c> {
    consumer: &'c RingConsumer,
    config: EncoderConfig,
    video: VideoClock,
    audio: Option<AudioClock>,
    audio_channels: u32,
    /// The format of audio seen before the first video frame.
    early_audio_format: Option<(u32, u32)>,
    /// Chunks that came before the first video frame (at most 0.5 s).
    early_audio: VecDeque<Pcm>,
    /// Interleaved f32 samples placed on the timeline and not yet handed
    /// to a file; the first is sample `audio_start`.
    audio_pending: VecDeque<f32>,
    audio_start: u64,
    segments: Vec<Segment<'c>>,
    last_frame: Option<(Rc<VideoSource<'c>>, Instant)>,
    first_video_at: Option<Instant>,
    video_stream: Option<u32>,
    audio_stream: Option<u32>,
    last_video_number: Option<u64>,
    last_audio_number: Option<u64>,
    failure: Option<String>,
    counters: Counters,
    saw_producer: bool,
    last_producer_check: Option<Instant>,
    video_budget: usize,
    scratch: Vec<u8>,
}

impl<'c> Encoder<'c> {
    pub fn new(consumer: &'c RingConsumer, config: EncoderConfig) -> Encoder<'c> {
        let capacity = consumer.geometry().capacity as usize;
        Encoder {
            consumer,
            video: VideoClock::new(config.fps),
            video_stream: config.video_stream,
            audio_stream: config.audio_stream,
            config,
            audio: None,
            audio_channels: 0,
            early_audio_format: None,
            early_audio: VecDeque::new(),
            audio_pending: VecDeque::new(),
            audio_start: 0,
            segments: Vec::new(),
            last_frame: None,
            first_video_at: None,
            last_video_number: None,
            last_audio_number: None,
            failure: None,
            counters: Counters::default(),
            saw_producer: false,
            last_producer_check: None,
            // Frames waiting for ffmpeg hold ring space: at most a quarter.
            video_budget: capacity / 4,
            scratch: Vec::new(),
        }
    }

    /// Runs until `stop` says so, calling `progress` about once a second.
    pub fn run(mut self, stop: &StopRule, mut progress: impl FnMut(&Progress<'_>)) -> Result<Report, Failure> {
        let started = Instant::now();
        let cpu_before = process::own_cpu();
        let mut next_progress = started + Duration::from_secs(1);
        let mut logged_drops = (0, 0);
        let reason = loop {
            if let Some(reason) = self.should_stop(stop) {
                break reason;
            }
            let mut received = 0;
            while received < 256 {
                match self.consumer.try_recv() {
                    Ok(Some(frame)) => {
                        self.accept(frame);
                        received += 1;
                    }
                    Ok(None) => break,
                    Err(error) => self.on_ring_error(error)?,
                }
            }
            self.maintain();
            let waiting = self.pump();
            if received == 0 {
                if waiting {
                    self.wait_for_pipes(Duration::from_millis(2));
                } else {
                    match self.consumer.recv_timeout(Duration::from_millis(20)) {
                        Ok(Some(frame)) => self.accept(frame),
                        Ok(None) => {}
                        Err(error) => self.on_ring_error(error)?,
                    }
                }
            }
            let now = Instant::now();
            if now >= next_progress {
                next_progress = now + Duration::from_secs(1);
                progress(&self.progress(now.duration_since(started)));
                self.log_drops(&mut logged_drops);
            }
        };
        self.finish();
        let counters = self.counters.clone();
        let failure = self.failure.clone();
        let segments = std::mem::take(&mut self.segments).into_iter().map(|s| s.report).collect();
        let ring = self.consumer.stats();
        drop(self);
        Ok(Report {
            counters,
            segments,
            ring,
            stop: reason,
            elapsed: started.elapsed(),
            encoder_cpu: process::own_cpu().saturating_sub(cpu_before),
            failure,
        })
    }

    /// One event a second at most when frames were dropped, never one per
    /// frame.
    fn log_drops(&self, logged: &mut (u64, u64)) {
        let now = (self.counters.video_dropped(), self.counters.audio_dropped());
        if now != *logged {
            tracing::warn!(
                video = now.0 - logged.0,
                audio = now.1 - logged.1,
                ffmpeg_behind = self.counters.video_behind,
                invalid = self.counters.video_invalid + self.counters.audio_invalid,
                "frames dropped in the last second"
            );
            *logged = now;
        }
    }

    fn on_ring_error(&mut self, error: shmring::Error) -> Result<(), Failure> {
        match error {
            shmring::Error::Corrupt { position, reason } => {
                // Counted by the consumer and stepped over; note and go on.
                self.counters.corrupt += 1;
                tracing::warn!(position, %reason, "corrupt record in the ring");
                Ok(())
            }
            other => Err(Failure::failed(format!("reading the ring: {other}"))),
        }
    }

    fn should_stop(&mut self, stop: &StopRule) -> Option<StopReason> {
        if stop.interrupted.load(Ordering::Relaxed) {
            return Some(StopReason::Interrupted);
        }
        let now = Instant::now();
        if stop.deadline.is_some_and(|d| now >= d) {
            return Some(StopReason::Deadline);
        }
        if !stop.when_producers_leave {
            return None;
        }
        if self.last_producer_check.is_some_and(|t| now.duration_since(t) < Duration::from_millis(100)) {
            return None;
        }
        self.last_producer_check = Some(now);
        let stats = self.consumer.stats();
        if !stats.producers.is_empty() {
            self.saw_producer = true;
            return None;
        }
        // Every claim has been handed to us (or stepped over): nothing in flight.
        let drained = stats.peek == stats.write;
        (self.saw_producer && drained).then_some(StopReason::ProducersLeft)
    }

    fn progress(&self, elapsed: Duration) -> Progress<'_> {
        Progress {
            elapsed,
            counters: &self.counters,
            video_out: self.segments.iter().map(|s| s.report.frames).sum(),
            fill_percent: 100.0 * self.consumer.used_bytes() as f64 / self.consumer.geometry().capacity as f64,
            backlog_frames: self.segments.iter().map(Segment::queued_frames).sum(),
            files: self.segments.len(),
        }
    }

    fn accept(&mut self, frame: Frame<'c, MappedRing>) {
        self.saw_producer = true;
        match frame.kind() {
            KIND_VIDEO => self.on_video(frame),
            KIND_AUDIO => self.on_audio(frame),
            KIND_ANNOUNCE => self.counters.announcements += 1,
            _ => self.counters.other_kind += 1,
        }
    }

    fn on_video(&mut self, frame: Frame<'c, MappedRing>) {
        self.counters.video_received += 1;
        let (info, source) = match VideoSource::parse(frame) {
            Ok(parsed) => parsed,
            Err(error) => {
                self.counters.video_invalid += 1;
                if self.counters.video_invalid == 1 {
                    // The first one in full; later ones in the per-second summary.
                    tracing::warn!(%error, "invalid video frame");
                }
                return;
            }
        };
        if *self.video_stream.get_or_insert(info.stream_id) != info.stream_id {
            self.counters.video_other_stream += 1;
            return;
        }
        if let Some(last) = self.last_video_number {
            self.counters.video_gaps += info.frame_number.saturating_sub(last + 1);
        }
        self.last_video_number = Some(info.frame_number);
        if self.failure.is_some() {
            self.counters.video_after_failure += 1;
            return;
        }
        let key = VideoKey { format: info.format, width: info.width, height: info.height };
        let open = self.segments.last().filter(|s| s.state == SegmentState::Open);
        if open
            .is_some_and(|s| s.key == key && s.video_backlog + source.len() > self.video_budget.max(2 * source.len()))
        {
            // ffmpeg is behind: drop the frame (its slot is filled by a
            // repeat when the next frame is placed).
            self.counters.video_behind += 1;
            return;
        }
        self.first_video_at.get_or_insert_with(Instant::now);
        let repeats = match self.video.place(info.timestamp_us) {
            VideoSlot::Late => {
                self.counters.video_late += 1;
                return;
            }
            VideoSlot::At { repeats } => repeats,
        };
        let slot = self.video.next() - 1;
        self.place_early_audio();
        self.repeat_last(repeats);
        let needs_new = self.segments.last().is_none_or(|s| s.state != SegmentState::Open || s.key != key);
        if needs_new {
            self.start_segment(key, &info, slot);
        }
        let source = Rc::new(source);
        let segment = self.segments.last_mut().expect("an open segment");
        segment.video_backlog += source.len();
        segment.video.push_back(VideoWrite::new(source.clone(), 1));
        self.counters.video_queued += 1;
        self.last_frame = Some((source, Instant::now()));
    }

    /// Repeats the last frame into `count` slots of the open file.
    fn repeat_last(&mut self, count: u64) {
        if count == 0 {
            return;
        }
        let (Some((last, _)), Some(segment)) =
            (self.last_frame.as_ref(), self.segments.last_mut().filter(|s| s.state == SegmentState::Open))
        else {
            return;
        };
        segment.video_backlog += last.len() * count as usize;
        segment.video.push_back(VideoWrite::new(last.clone(), count));
        self.counters.video_repeats += count;
    }

    /// Closes the open file at `slot` and opens the next for frames `key`.
    fn start_segment(&mut self, key: VideoKey, info: &VideoInfo, slot: u64) {
        if let Some(current) = self.segments.last().filter(|s| s.state == SegmentState::Open) {
            tracing::info!(
                from = %format!("{}x{}", current.key.width, current.key.height),
                to = %format!("{}x{}", key.width, key.height),
                "video size changed: next file"
            );
            self.close_open_segment(slot);
        }
        self.last_frame = None;
        let index = self.segments.len();
        let path = ffmpeg::segment_path(&self.config.output, index);
        let segment = Segment {
            report: SegmentReport {
                path,
                width: info.width,
                height: info.height,
                pixel_format: Some(info.format),
                sample_rate: self.audio.as_ref().map_or(0, AudioClock::rate),
                ..SegmentReport::default()
            },
            key,
            ffmpeg: None,
            state: SegmentState::Open,
            video: VecDeque::new(),
            pipe: VideoPipe::new(self.config.splice),
            video_backlog: 0,
            audio: ByteQueue::default(),
            drain_deadline: None,
            taken: 0,
            last_progress: Instant::now(),
        };
        self.segments.push(segment);
        if index > 0 {
            self.start_ffmpeg();
        }
    }

    /// Ends the open file at output slot `end_slot`: pads its audio up to
    /// there and hands it everything placed before that point.
    fn close_open_segment(&mut self, end_slot: u64) {
        if self.segments.last().is_none_or(|s| s.state != SegmentState::Open) {
            return;
        }
        if let Some(audio) = self.audio.as_mut() {
            let end_sample = self.video.sample_at(end_slot, audio.rate());
            if audio.written() < end_sample {
                let missing = end_sample - audio.written();
                audio.pad(missing);
                self.audio_pending
                    .extend(std::iter::repeat_n(0.0, (missing * u64::from(self.audio_channels)) as usize));
                self.counters.silence_samples += missing;
            }
            self.hand_audio(end_sample);
        }
        let segment = self.segments.last_mut().expect("checked above");
        segment.state = SegmentState::Closing;
        segment.drain_deadline = Some(Instant::now() + self.config.finish_timeout);
        if segment.ffmpeg.is_none() {
            // Never started: nothing to encode.
            segment.state = SegmentState::Done;
            segment.video.clear();
        }
    }

    fn start_ffmpeg(&mut self) {
        if self.audio.is_none() {
            let (rate, channels) = self.early_audio_format.unwrap_or((48_000, 2));
            self.audio = Some(AudioClock::new(rate));
            self.audio_channels = channels;
        }
        let audio = self.audio.as_ref().expect("set above");
        let segment = self.segments.last_mut().expect("a segment to start");
        let format = SegmentFormat {
            pixel_format: segment.key.format,
            width: segment.key.width,
            height: segment.key.height,
            fps: self.config.fps,
            sample_rate: audio.rate(),
            channels: self.audio_channels,
            preset: self.config.preset.clone(),
        };
        segment.report.sample_rate = audio.rate();
        segment.report.channels = self.audio_channels;
        match Ffmpeg::spawn(&self.config.ffmpeg, &format, &segment.report.path) {
            Ok(ffmpeg) => {
                tracing::info!(pid = ffmpeg.pid(), file = %segment.report.path.display(), "encoding");
                segment.ffmpeg = Some(ffmpeg);
                segment.last_progress = Instant::now();
            }
            Err(error) => {
                let index = self.segments.len() - 1;
                self.fail(index, error.to_string());
            }
        }
    }

    fn on_audio(&mut self, frame: Frame<'c, MappedRing>) {
        self.counters.audio_received += 1;
        let chunk = match AudioFrame::parse(&frame) {
            Ok(chunk) => chunk,
            Err(error) => {
                self.counters.audio_invalid += 1;
                if self.counters.audio_invalid == 1 {
                    tracing::warn!(%error, "invalid audio chunk");
                }
                return;
            }
        };
        if *self.audio_stream.get_or_insert(chunk.stream_id()) != chunk.stream_id() {
            self.counters.audio_other_stream += 1;
            return;
        }
        if let Some(last) = self.last_audio_number {
            self.counters.audio_gaps += chunk.frame_number().saturating_sub(last + 1);
        }
        self.last_audio_number = Some(chunk.frame_number());
        if self.failure.is_some() {
            self.counters.audio_after_failure += 1;
            return;
        }
        let mut samples = Vec::with_capacity(chunk.frame_count() as usize * chunk.channels() as usize);
        pipes::push_interleaved(&chunk, 0, &mut samples);
        let pcm = Pcm {
            timestamp_us: chunk.timestamp_us(),
            rate: chunk.sample_rate(),
            channels: chunk.channels(),
            frames: u64::from(chunk.frame_count()),
            samples,
        };
        if self.video.origin_us().is_none() {
            // The recording starts with its first video frame: keep a
            // little audio in case that frame's own audio came first.
            self.early_audio_format.get_or_insert((pcm.rate, pcm.channels));
            let held: u64 = self.early_audio.iter().map(|p| p.frames).sum();
            if held > u64::from(pcm.rate) / 2 {
                self.early_audio.pop_front();
                self.counters.audio_early += 1;
            }
            self.early_audio.push_back(pcm);
            return;
        }
        self.place_audio(pcm);
    }

    /// Audio that arrived before the first video frame: what overlaps the
    /// recording is placed, the rest counted as early.
    fn place_early_audio(&mut self) {
        let Some(origin) = self.video.origin_us() else { return };
        while let Some(pcm) = self.early_audio.pop_front() {
            let end_us =
                i128::from(pcm.timestamp_us) + i128::from(pcm.frames) * 1_000_000 / i128::from(pcm.rate.max(1));
            if end_us <= i128::from(origin) {
                self.counters.audio_early += 1;
            } else {
                self.place_audio(pcm);
            }
        }
    }

    /// Puts a chunk on the audio timeline.
    fn place_audio(&mut self, pcm: Pcm) {
        let Some(origin) = self.video.origin_us() else { return };
        let format = (pcm.rate, pcm.channels);
        if self.audio.is_none() {
            self.early_audio_format = Some(format);
            self.audio = Some(AudioClock::new(format.0));
            self.audio_channels = format.1;
        }
        let audio = self.audio.as_mut().expect("set above");
        if format != (audio.rate(), self.audio_channels) {
            self.counters.audio_other_format += 1;
            return;
        }
        let backlog = self.audio_pending.len() as u64 / u64::from(self.audio_channels.max(1));
        if backlog > AUDIO_BACKLOG.as_secs() * u64::from(audio.rate()) {
            self.counters.audio_behind += 1;
            return;
        }
        let now = self.video.sample_at(self.video.next(), audio.rate());
        let (silence, skip) = match audio.place(pcm.timestamp_us, pcm.frames, origin, now) {
            AudioSlot::Late => {
                self.counters.audio_late += 1;
                return;
            }
            AudioSlot::At { silence, skip } => (silence, skip),
        };
        let channels = self.audio_channels as usize;
        self.audio_pending.extend(std::iter::repeat_n(0.0, silence as usize * channels));
        self.counters.silence_samples += silence;
        let start = (skip as usize * channels).min(pcm.samples.len());
        self.audio_pending.extend(&pcm.samples[start..]);
        self.counters.audio_placed += 1;
    }

    /// Moves placed audio before sample `until` into the open file.
    fn hand_audio(&mut self, until: u64) {
        let channels = self.audio_channels as usize;
        let Some(segment) = self.segments.last_mut().filter(|s| s.state == SegmentState::Open) else { return };
        if until <= self.audio_start || channels == 0 {
            return;
        }
        let available = (self.audio_pending.len() / channels) as u64;
        let count = (until - self.audio_start).min(available) as usize;
        self.scratch.clear();
        for sample in self.audio_pending.drain(..count * channels) {
            self.scratch.extend_from_slice(&sample.to_le_bytes());
        }
        segment.audio.push(&self.scratch);
        segment.report.samples += count as u64;
        self.audio_start += count as u64;
    }

    /// Starts the first ffmpeg when its audio format is known, catches up
    /// a stalled side, feeds audio as far as video has reached, copies a
    /// long-held last frame out of the ring, and notices ffmpeg exits.
    fn maintain(&mut self) {
        let waiting_start = self.segments.len() == 1
            && self.segments[0].ffmpeg.is_none()
            && self.segments[0].state == SegmentState::Open
            && self.failure.is_none();
        if waiting_start
            && (self.audio.is_some() || self.first_video_at.is_some_and(|t| t.elapsed() >= AUDIO_FORMAT_WAIT))
        {
            self.start_ffmpeg();
        }
        if let Some(audio) = self.audio.as_mut() {
            let rate = audio.rate();
            let stall = STALL.as_millis() as u64 * u64::from(rate) / 1000;
            let slack = u64::from(rate) / 5;
            let video_at = self.video.sample_at(self.video.next(), rate);
            if video_at > audio.written() + stall {
                // Audio stalled while video goes on: silence up to near now.
                let missing = video_at - slack - audio.written();
                audio.pad(missing);
                self.audio_pending
                    .extend(std::iter::repeat_n(0.0, (missing * u64::from(self.audio_channels)) as usize));
                self.counters.silence_samples += missing;
            } else if audio.written() > video_at + stall && self.last_frame.is_some() && self.failure.is_none() {
                // Video stalled while audio goes on: hold the last picture.
                let frames = self.video.slots_for(audio.written() - slack - video_at, rate);
                self.video.advance(frames);
                self.repeat_last(frames);
            }
            let until = self.video.sample_at(self.video.next(), rate);
            self.hand_audio(until);
        }
        if let Some((last, since)) = &self.last_frame {
            let pressed = self.consumer.used_bytes() > self.consumer.geometry().capacity / 2;
            if last.in_the_ring() && Rc::strong_count(last) == 1 && (since.elapsed() > HOLD_LAST_FRAME || pressed) {
                self.last_frame = Some((Rc::new(last.copy_out()), *since));
                self.counters.copied_out += 1;
            }
        }
        let now = Instant::now();
        for index in 0..self.segments.len() {
            let segment = &self.segments[index];
            let closing = matches!(segment.state, SegmentState::Closing | SegmentState::Draining);
            if closing && segment.drain_deadline.is_some_and(|d| now > d) {
                // A hung ffmpeg must not hold the ring (or the exit) forever.
                let limit = self.config.finish_timeout.as_secs_f64();
                self.fail(index, format!("ffmpeg did not take the rest and finish the file within {limit:.1} s"));
                continue;
            }
            let stalled = matches!(segment.state, SegmentState::Open | SegmentState::Closing)
                && segment.ffmpeg.is_some()
                && segment.has_pending()
                && now.duration_since(segment.last_progress) > self.config.stall_timeout;
            if stalled {
                // Frames it holds pin the ring's oldest space: a hung ffmpeg
                // would fill the ring. Give up on it loudly instead.
                let limit = self.config.stall_timeout.as_secs_f64();
                self.fail(index, format!("ffmpeg took nothing for {limit:.1} s (hung or stopped?)"));
                continue;
            }
            let segment = &mut self.segments[index];
            let exited = match segment.ffmpeg.as_mut() {
                Some(ffmpeg) if segment.state != SegmentState::Done => ffmpeg.poll_exit().cloned(),
                _ => None,
            };
            if let Some(exit) = exited {
                let state = self.segments[index].state;
                if state == SegmentState::Draining {
                    self.segment_done(index, Some(exit));
                } else {
                    self.fail(index, format!("ffmpeg {} while the file was still being written", exit.description));
                }
            }
        }
    }

    /// Writes what every file has queued, without blocking. Returns whether
    /// anything is still waiting for a pipe.
    fn pump(&mut self) -> bool {
        let mut waiting = false;
        for index in 0..self.segments.len() {
            let segment = &mut self.segments[index];
            if matches!(segment.state, SegmentState::Done | SegmentState::Draining) {
                continue;
            }
            let Some(ffmpeg) = segment.ffmpeg.as_mut() else {
                waiting |= !segment.video.is_empty();
                continue;
            };
            let mut error = None;
            if let Some(fd) = ffmpeg.video.as_ref() {
                let before: usize = segment.video.iter().map(|w| w.source.len() * w.times as usize).sum();
                match segment.pipe.write(fd.as_fd(), &mut segment.video) {
                    Ok(frames) => segment.report.frames += frames,
                    Err(e) => error = Some(format!("video pipe: {e}")),
                }
                segment.pipe.reclaim(fd.as_fd());
                segment.report.spliced = segment.pipe.splicing();
                let after: usize = segment.video.iter().map(|w| w.source.len() * w.times as usize).sum();
                segment.video_backlog = segment.video_backlog.saturating_sub(before - after);
            }
            if let (None, Some(fd)) = (&error, ffmpeg.audio.as_ref()) {
                if let Err(e) = segment.audio.write_to(fd.as_fd()) {
                    error = Some(format!("audio pipe: {e}"));
                }
            }
            // Progress is ffmpeg reading, not our writes into free pipe space.
            let unread = |fd: Option<&std::os::fd::OwnedFd>| fd.and_then(|fd| pipes::unread(fd.as_fd())).unwrap_or(0);
            let taken = (segment.pipe.bytes_written() + segment.audio.bytes_written())
                .saturating_sub(unread(ffmpeg.video.as_ref()) + unread(ffmpeg.audio.as_ref()));
            if taken > segment.taken {
                segment.taken = taken;
                segment.last_progress = Instant::now();
            }
            if let Some(error) = error {
                self.fail(index, format!("ffmpeg stopped reading ({error})"));
                continue;
            }
            let segment = &mut self.segments[index];
            let empty = segment.video.is_empty() && segment.audio.is_empty();
            // Spliced frames must be read before the pipe closes and their
            // ring space is released.
            if segment.state == SegmentState::Closing && empty && segment.pipe.in_flight() == 0 {
                if let Some(ffmpeg) = segment.ffmpeg.as_mut() {
                    ffmpeg.close_inputs();
                }
                segment.state = SegmentState::Draining;
            }
            waiting |= !empty;
        }
        waiting
    }

    /// Sleeps until a pipe with queued data can take more, or `timeout`.
    fn wait_for_pipes(&self, timeout: Duration) {
        let mut fds: Vec<libc::pollfd> = Vec::new();
        for segment in &self.segments {
            let Some(ffmpeg) = segment.ffmpeg.as_ref() else { continue };
            use std::os::fd::AsRawFd;
            if let (false, Some(fd)) = (segment.video.is_empty(), ffmpeg.video.as_ref()) {
                fds.push(libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLOUT, revents: 0 });
            }
            if let (false, Some(fd)) = (segment.audio.is_empty(), ffmpeg.audio.as_ref()) {
                fds.push(libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLOUT, revents: 0 });
            }
        }
        if fds.is_empty() {
            std::thread::sleep(timeout);
            return;
        }
        // SAFETY: poll reads and writes the array of pollfds we own.
        unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout.as_millis() as libc::c_int) };
    }

    /// ffmpeg of file `index` failed: report it, drop what was queued, and
    /// count every later frame as dropped.
    fn fail(&mut self, index: usize, reason: String) {
        let segment = &mut self.segments[index];
        let discarded = segment.video.len() as u64;
        segment.video.clear();
        segment.video_backlog = 0;
        segment.audio.clear();
        self.counters.video_discarded += discarded;
        let (exit, stderr) = segment.ffmpeg.take().map(Ffmpeg::abort).unwrap_or((None, String::new()));
        // ffmpeg is gone and its pipes with it: nothing references the
        // spliced frames' pages any more, so their ring space can go.
        segment.pipe = VideoPipe::new(false);
        let mut message = format!("{}: {reason}", segment.report.path.display());
        if !stderr.is_empty() {
            message.push_str(&format!("; ffmpeg said: {stderr}"));
        }
        tracing::error!(%message, "encoding failed");
        segment.report.error = Some(message.clone());
        segment.report.ffmpeg = exit;
        segment.state = SegmentState::Done;
        self.last_frame = None;
        self.audio_pending.clear();
        if self.failure.is_none() {
            self.failure = Some(message);
        }
    }

    fn segment_done(&mut self, index: usize, exit: Option<Exit>) {
        let segment = &mut self.segments[index];
        let (waited, stderr) = segment.ffmpeg.take().map(Ffmpeg::wait).unwrap_or((None, String::new()));
        let exit = exit.or(waited);
        segment.state = SegmentState::Done;
        if exit.as_ref().is_some_and(|e| !e.success) {
            let message = format!(
                "{}: ffmpeg {} ({stderr})",
                segment.report.path.display(),
                exit.as_ref().map(|e| e.description.as_str()).unwrap_or("failed")
            );
            segment.report.error = Some(message.clone());
            self.failure.get_or_insert(message);
        }
        segment.report.ffmpeg = exit;
    }

    /// Ends the recording: audio up to the end of video, every file closed
    /// and finished by its ffmpeg.
    fn finish(&mut self) {
        if self.segments.len() == 1 && self.segments[0].ffmpeg.is_none() && self.failure.is_none() {
            // Frames came, but not long enough to learn the audio format.
            self.start_ffmpeg();
        }
        let end = self.video.next();
        self.close_open_segment(end);
        self.last_frame = None;
        loop {
            self.maintain();
            let waiting = self.pump();
            if self.segments.iter().all(|s| s.state == SegmentState::Done) {
                break;
            }
            if waiting {
                self.wait_for_pipes(Duration::from_millis(5));
            } else {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        self.counters.clock_resets = self.video.resets() + self.audio.as_ref().map_or(0, AudioClock::resets);
    }
}

/// `shmring record`: become the ring's consumer and encode until stopped.
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
    };
    let _span = tracing::info_span!("record", ring = %name).entered();
    eprintln!("recording ring {name} into {} (Ctrl-C to stop)", args.encode.output.display());
    let encoder = Encoder::new(&consumer, EncoderConfig::from(&args.encode));
    let report = encoder.run(&stop, |p| eprintln!("{}", progress_line(p)))?;
    print!("{}", report.text());
    match &report.failure {
        Some(failure) => Err(Failure::failed(format!("recording failed: {failure}"))),
        None if report.segments.is_empty() => Err(Failure::failed("no video frame arrived: nothing was recorded")),
        None => Ok(()),
    }
}

/// A flag raised by SIGINT or SIGTERM, so that a recording ends with a
/// finished file rather than a truncated one.
pub fn interrupt_flag() -> Result<Arc<AtomicBool>, Failure> {
    let flag = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, flag.clone())?;
    }
    Ok(flag)
}
