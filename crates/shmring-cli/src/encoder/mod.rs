//! The recording bot's encoder: consumes every stream of a ring and feeds
//! real ffmpeg processes, producing MP4 files (H.264 and AAC).
//!
//! The encoder is a demultiplexer: each record goes, by its stream id, to
//! the [`Recorder`] of the participant that stream belongs to (streams are
//! paired by the participant their announced labels name; see
//! [`streams`]), and every audio chunk also goes to the [`Mixer`]. Each
//! recorder has its own timeline, files and ffmpeg; the mixer writes one
//! file of everyone's audio. Nothing here blocks: ffmpeg's pipes are
//! written as far as they take, so a slow file never holds up the ring or
//! another participant.
//!
//! Modules, in the order a frame meets them: [`streams`] (who is who),
//! [`pipes`] (a video frame held in the ring until ffmpeg has read it),
//! [`pcm`] (audio copied out), [`recorder`] and [`timeline`] (placing
//! frames and samples), [`mixer`], [`segment`] and [`ffmpeg`] (one file
//! and its process), [`outputs`] (file names), [`report`].

pub mod ffmpeg;
mod mixer;
mod outputs;
pub mod pcm;
pub mod pipes;
mod recorder;
mod report;
mod segment;
mod streams;
mod timeline;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use shmring::{Frame, MappedRing, RingConsumer};
use shmring_media::{Announcement, AudioFrame, KIND_ANNOUNCE, KIND_AUDIO, KIND_VIDEO};

use crate::failure::Failure;
use crate::process;
use crate::stream_table::{StreamKind, StreamRow, StreamTable};

use mixer::Mixer;
use outputs::Outputs;
use pcm::Pcm;
use pipes::VideoSource;
use recorder::Recorder;
pub use report::{per, progress_line, Counters, ParticipantReport, Report, StopReason, StreamReport};
use segment::SegmentSettings;
use streams::Streams;

/// When the encoder stops.
#[derive(Clone, Debug, Default)]
pub struct StopRule {
    pub deadline: Option<Instant>,
    /// Stop once producers have come and every one has left (and the ring
    /// is drained).
    pub when_producers_leave: bool,
    pub interrupted: Arc<AtomicBool>,
    /// Raised when no producer will write any more (the bridge has
    /// exited): stop once the ring is drained.
    pub producers_done: Arc<AtomicBool>,
}

/// Encoder settings.
#[derive(Clone, Debug)]
pub struct EncoderConfig {
    /// A file (the first participant's; see [`outputs`]) or a directory.
    pub output: PathBuf,
    pub fps: u32,
    /// Record only this video stream (default: every one).
    pub video_stream: Option<u32>,
    /// Record only this audio stream (default: every one).
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
    /// Write every participant's audio mixed into one more file.
    pub mix: bool,
    /// A participant that sends nothing for this long has left: its file
    /// is finished (a return starts a new one).
    pub end_after: Duration,
}

impl EncoderConfig {
    /// The defaults of `shmring record` for `output`.
    pub fn new(output: PathBuf) -> EncoderConfig {
        EncoderConfig {
            output,
            fps: 30,
            video_stream: None,
            audio_stream: None,
            ffmpeg: PathBuf::from("ffmpeg"),
            preset: "ultrafast".to_string(),
            splice: true,
            finish_timeout: Duration::from_secs(60),
            stall_timeout: Duration::from_secs(10),
            mix: true,
            end_after: Duration::from_secs(5),
        }
    }

    fn segment_settings(&self) -> SegmentSettings {
        SegmentSettings {
            ffmpeg: self.ffmpeg.clone(),
            preset: self.preset.clone(),
            fps: self.fps.clamp(1, 240),
            splice: self.splice,
            finish_timeout: self.finish_timeout,
            stall_timeout: self.stall_timeout,
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

/// The encoder over one ring's consumer.
pub struct Encoder<'c> {
    consumer: &'c RingConsumer,
    config: EncoderConfig,
    settings: SegmentSettings,
    outputs: Outputs,
    streams: Streams,
    /// One per participant, by index in `streams.participants`.
    recorders: Vec<Recorder<'c>>,
    mixer: Option<Mixer<'c>>,
    /// Counts no recorder holds: records of no stream (invalid, other
    /// kinds), streams not chosen, announcements, corruption.
    unassigned: Counters,
    /// Progress totals, refreshed once a second.
    totals: Counters,
    saw_producer: bool,
    last_producer_check: Option<Instant>,
    /// Most ring space frames waiting for ffmpeg may hold, all files together.
    video_budget: usize,
    started: Instant,
}

impl<'c> Encoder<'c> {
    pub fn new(consumer: &'c RingConsumer, config: EncoderConfig) -> Encoder<'c> {
        let capacity = consumer.geometry().capacity as usize;
        let settings = config.segment_settings();
        let outputs = Outputs::new(&config.output);
        let mixer = config.mix.then(|| Mixer::new(settings.clone(), outputs.mix()));
        Encoder {
            consumer,
            streams: Streams::new(config.video_stream.is_some() || config.audio_stream.is_some()),
            settings,
            outputs,
            config,
            recorders: Vec::new(),
            mixer,
            unassigned: Counters::default(),
            totals: Counters::default(),
            saw_producer: false,
            last_producer_check: None,
            // Frames waiting for ffmpeg hold ring space: at most a quarter.
            video_budget: capacity / 4,
            started: Instant::now(),
        }
    }

    /// Runs until `stop` says so, calling `progress` about once a second.
    pub fn run(mut self, stop: &StopRule, mut progress: impl FnMut(&Progress<'_>)) -> Result<Report, Failure> {
        self.outputs.prepare().map_err(|e| Failure::failed(format!("{}: {e}", self.config.output.display())))?;
        let started = Instant::now();
        self.started = started;
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
                self.totals = self.total_counters();
                progress(&self.progress(now.duration_since(started)));
                self.log_drops(&mut logged_drops);
                self.publish_streams();
            }
        };
        self.finish();
        self.publish_streams();
        let mut report = self.report(reason, started.elapsed());
        report.encoder_cpu = process::own_cpu().saturating_sub(cpu_before);
        drop(self);
        Ok(report)
    }

    /// One event a second at most when frames were dropped, never one per
    /// frame.
    fn log_drops(&self, logged: &mut (u64, u64)) {
        let c = &self.totals;
        let now = (c.video_dropped(), c.audio_dropped());
        if now != *logged {
            tracing::warn!(
                video = now.0 - logged.0,
                audio = now.1 - logged.1,
                ffmpeg_behind = c.video_behind,
                invalid = c.video_invalid + c.audio_invalid,
                "frames dropped in the last second"
            );
            *logged = now;
        }
    }

    fn on_ring_error(&mut self, error: shmring::Error) -> Result<(), Failure> {
        match error {
            shmring::Error::Corrupt { position, reason } => {
                // Counted by the consumer and stepped over; note and go on.
                self.unassigned.corrupt += 1;
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
        if stop.producers_done.load(Ordering::Relaxed) {
            let stats = self.consumer.stats();
            // Every claim has been handed to us (or stepped over).
            return (stats.peek == stats.write).then_some(StopReason::ProducersLeft);
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
            counters: &self.totals,
            video_out: self.recorders.iter().map(Recorder::frames_out).sum(),
            fill_percent: 100.0 * self.consumer.used_bytes() as f64 / self.consumer.geometry().capacity as f64,
            backlog_frames: self.recorders.iter().map(Recorder::queued_frames).sum(),
            files: self.recorders.iter().map(Recorder::files).sum(),
        }
    }

    /// Hands a record to the recorder of its stream's participant.
    fn accept(&mut self, frame: Frame<'c, MappedRing>) {
        self.saw_producer = true;
        match frame.kind() {
            KIND_VIDEO => self.on_video(frame),
            KIND_AUDIO => self.on_audio(frame),
            KIND_ANNOUNCE => {
                self.unassigned.announcements += 1;
                match Announcement::parse(&frame) {
                    Ok(a) => {
                        let kind = if a.kind == KIND_VIDEO { StreamKind::Video } else { StreamKind::Audio };
                        self.streams.announce(a.stream_id, kind, a.label);
                    }
                    Err(error) => tracing::debug!(%error, "invalid announcement"),
                }
            }
            _ => self.unassigned.other_kind += 1,
        }
    }

    /// The recorder of participant `index`, made when it first appears.
    fn recorder(&mut self, index: usize) -> &mut Recorder<'c> {
        while self.recorders.len() <= index {
            let base = self.outputs.participant(self.recorders.len());
            self.recorders.push(Recorder::new(self.settings.clone(), base));
        }
        &mut self.recorders[index]
    }

    fn on_video(&mut self, frame: Frame<'c, MappedRing>) {
        let (info, source) = match VideoSource::parse(frame) {
            Ok(parsed) => parsed,
            Err(error) => {
                self.unassigned.video_received += 1;
                self.unassigned.video_invalid += 1;
                if self.unassigned.video_invalid == 1 {
                    // The first one in full; later ones in the per-second summary.
                    tracing::warn!(%error, "invalid video frame");
                }
                return;
            }
        };
        if self.config.video_stream.is_some_and(|id| id != info.stream_id) {
            self.unassigned.video_other_stream += 1;
            return;
        }
        let format = format!("{}x{} {:?}", info.width, info.height, info.format);
        let stream = self.streams.record(info.stream_id, StreamKind::Video, info.frame_number, source.len(), format);
        let participant = stream.participant;
        // The ring space other participants' queued frames hold counts
        // against this one's allowance.
        let held: usize = self.recorders.iter().map(Recorder::video_backlog).sum();
        let own = self.recorders.get(participant).map_or(0, Recorder::video_backlog);
        let allowance = self.video_budget.saturating_sub(held - own);
        self.recorder(participant).on_video(info, source, allowance);
    }

    fn on_audio(&mut self, frame: Frame<'c, MappedRing>) {
        let chunk = match AudioFrame::parse(&frame) {
            Ok(chunk) => chunk,
            Err(error) => {
                self.unassigned.audio_received += 1;
                self.unassigned.audio_invalid += 1;
                if self.unassigned.audio_invalid == 1 {
                    tracing::warn!(%error, "invalid audio chunk");
                }
                return;
            }
        };
        let id = chunk.stream_id();
        if self.config.audio_stream.is_some_and(|chosen| chosen != id) {
            self.unassigned.audio_other_stream += 1;
            return;
        }
        let format = format!("{} Hz {} ch", chunk.sample_rate(), chunk.channels());
        let participant =
            self.streams.record(id, StreamKind::Audio, chunk.frame_number(), frame.len(), format).participant;
        let pcm = Pcm::from_chunk(&chunk);
        drop(frame); // its ring space is free once copied out
        if let Some(mixer) = self.mixer.as_mut() {
            mixer.add(id, &pcm);
        }
        self.recorder(participant).on_audio(pcm);
    }

    /// Every recorder's and the mixer's upkeep; finishes the file of a
    /// participant that left.
    fn maintain(&mut self) {
        let pressed = self.consumer.used_bytes() > self.consumer.geometry().capacity / 2;
        for recorder in &mut self.recorders {
            if recorder.has_left(self.config.end_after) {
                recorder.end_take();
            }
            recorder.maintain(pressed);
        }
        if let Some(mixer) = self.mixer.as_mut() {
            mixer.maintain();
        }
    }

    /// Writes what every file has queued, without blocking. Returns whether
    /// anything is still waiting for a pipe.
    fn pump(&mut self) -> bool {
        let mut waiting = false;
        for recorder in &mut self.recorders {
            waiting |= recorder.pump();
        }
        if let Some(mixer) = self.mixer.as_mut() {
            waiting |= mixer.pump();
        }
        waiting
    }

    /// Sleeps until a pipe with queued data can take more, or `timeout`.
    fn wait_for_pipes(&self, timeout: Duration) {
        let mut fds: Vec<libc::pollfd> = Vec::new();
        for recorder in &self.recorders {
            recorder.poll_fds(&mut fds);
        }
        if let Some(mixer) = self.mixer.as_ref() {
            mixer.poll_fds(&mut fds);
        }
        if fds.is_empty() {
            std::thread::sleep(timeout);
            return;
        }
        // SAFETY: poll reads and writes the array of pollfds we own.
        unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout.as_millis() as libc::c_int) };
    }

    /// Ends the recording: every file closed and finished by its ffmpeg.
    fn finish(&mut self) {
        for recorder in &mut self.recorders {
            recorder.finish();
        }
        if let Some(mixer) = self.mixer.as_mut() {
            mixer.finish();
        }
        loop {
            self.maintain();
            let waiting = self.pump();
            let done = self.recorders.iter().all(Recorder::is_done) && self.mixer.as_ref().is_none_or(Mixer::is_done);
            if done {
                break;
            }
            if waiting {
                self.wait_for_pipes(Duration::from_millis(5));
            } else {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }

    /// Counts over every stream.
    fn total_counters(&self) -> Counters {
        let mut totals = self.unassigned.clone();
        for recorder in &self.recorders {
            totals.add(&recorder.counters);
        }
        for (_, stream) in self.streams.iter() {
            match stream.kind {
                StreamKind::Video => totals.video_gaps = totals.video_gaps.saturating_add(stream.missing),
                StreamKind::Audio => totals.audio_gaps = totals.audio_gaps.saturating_add(stream.missing),
            }
        }
        totals
    }

    /// Every stream's row: what its participant's recorder did with it.
    fn stream_rows(&self) -> Vec<(StreamRow, usize)> {
        let mut rows = Vec::new();
        for (id, stream) in self.streams.iter() {
            let Some(mut row) = self.streams.row(id, stream.kind) else { continue };
            if let Some(recorder) = self.recorders.get(stream.participant) {
                let c = &recorder.counters;
                (row.used, row.dropped) = match stream.kind {
                    StreamKind::Video => (c.video_queued.saturating_sub(c.video_discarded), c.video_dropped()),
                    StreamKind::Audio => (c.audio_placed, c.audio_dropped()),
                };
                row.output = recorder.current_file().and_then(|p| p.file_name()).map(|n| n.to_string_lossy().into());
            }
            rows.push((row, stream.participant));
        }
        rows
    }

    /// Publishes the streams seen so far for `stat` (a named ring only).
    fn publish_streams(&self) {
        let stats = self.consumer.stats();
        if !shmring::socket_path(&stats.name).exists() {
            return;
        }
        let table = StreamTable {
            consumer_pid: std::process::id(),
            consumer_generation: stats.consumer_generation,
            elapsed_ms: self.started.elapsed().as_millis() as u64,
            streams: self.stream_rows().into_iter().map(|(row, _)| row).collect(),
        };
        if let Err(error) = table.publish(&stats.name) {
            tracing::debug!(%error, "cannot publish the stream table");
        }
    }

    fn report(&self, stop: StopReason, elapsed: Duration) -> Report {
        let participants: Vec<ParticipantReport> = self
            .streams
            .participants
            .iter()
            .zip(&self.recorders)
            .map(|(p, recorder)| ParticipantReport {
                name: p.name.clone(),
                video: p.video,
                audio: p.audio,
                recorder: recorder.report(),
            })
            .collect();
        let mut counters = self.unassigned.clone();
        for participant in &participants {
            counters.add(&participant.recorder.counters);
        }
        let totals = self.total_counters();
        (counters.video_gaps, counters.audio_gaps) = (totals.video_gaps, totals.audio_gaps);
        let streams = self
            .stream_rows()
            .into_iter()
            .map(|(row, participant)| StreamReport {
                mixed: self
                    .mixer
                    .as_ref()
                    .filter(|_| row.kind == StreamKind::Audio)
                    .and_then(|m| m.input(row.id))
                    .cloned(),
                row,
                participant,
            })
            .collect();
        let failure = participants
            .iter()
            .find_map(|p| p.recorder.failure.clone())
            .or_else(|| self.mixer.as_ref().and_then(|m| m.failure().map(String::from)));
        Report {
            counters,
            segments: participants.iter().flat_map(|p| p.recorder.segments.iter().cloned()).collect(),
            participants,
            streams,
            mix: self.mixer.as_ref().filter(|m| m.started()).map(Mixer::report),
            ring: self.consumer.stats(),
            stop,
            elapsed,
            encoder_cpu: Duration::ZERO,
            failure,
        }
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
