//! One participant's recording: its video and the audio paired with it,
//! placed on one timeline and fed to one ffmpeg per file.
//!
//! - Video frames are placed by timestamp on a constant-rate timeline; a
//!   missed slot repeats the previous frame. Each frame is written to
//!   ffmpeg straight from the ring (see [`super::pipes`]).
//! - Audio is placed by timestamp on the same timeline; gaps become
//!   silence, and it is fed no further than the video has reached, so that
//!   each file's audio ends where its video ends.
//! - The recording starts at the first video frame (a little earlier audio
//!   is kept in case it belongs to that frame).
//! - A change of resolution or pixel format closes the file and starts the
//!   next (`BASE.1.mp4`, ...): each camera size in its own file.
//! - A participant that sends nothing for a while has left: its file is
//!   finished; if it comes back, a new file starts on a new timeline.
//! - If ffmpeg fails, the error is kept, and every later frame of this
//!   participant is counted as dropped (other participants go on).

use std::collections::VecDeque;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::outputs::segment_path;
use super::pcm::Pcm;
use super::pipes::{VideoInfo, VideoSource};
use super::report::{Counters, SegmentReport};
use super::segment::{Segment, SegmentFailure, SegmentSettings, VideoKey};
use super::timeline::{AudioClock, AudioSlot, VideoClock, VideoSlot};

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
/// Audio kept from before the first video frame.
const EARLY_AUDIO: Duration = Duration::from_millis(500);

/// What a recorder did.
#[derive(Clone, Debug, Default)]
pub struct RecorderReport {
    pub counters: Counters,
    pub segments: Vec<SegmentReport>,
    pub failure: Option<String>,
}

/// One participant's files.
pub struct Recorder<'c> {
    settings: SegmentSettings,
    /// The participant's first file; later ones are numbered from it.
    base: PathBuf,
    video: VideoClock,
    audio: Option<AudioClock>,
    audio_channels: u32,
    /// The format of audio seen before the first video frame.
    early_audio_format: Option<(u32, u32)>,
    /// Chunks that came before the first video frame.
    early_audio: VecDeque<Pcm>,
    /// Interleaved f32 samples placed on the timeline and not yet handed
    /// to a file; the first is sample `audio_start`.
    audio_pending: VecDeque<f32>,
    audio_start: u64,
    segments: Vec<Segment<'c>>,
    last_frame: Option<(Rc<VideoSource<'c>>, Instant)>,
    first_video_at: Option<Instant>,
    failure: Option<String>,
    pub counters: Counters,
    /// When a record of this participant last came.
    last_input: Instant,
    scratch: Vec<u8>,
}

impl<'c> Recorder<'c> {
    pub fn new(settings: SegmentSettings, base: PathBuf) -> Recorder<'c> {
        Recorder {
            video: VideoClock::new(settings.fps),
            settings,
            base,
            audio: None,
            audio_channels: 0,
            early_audio_format: None,
            early_audio: VecDeque::new(),
            audio_pending: VecDeque::new(),
            audio_start: 0,
            segments: Vec::new(),
            last_frame: None,
            first_video_at: None,
            failure: None,
            counters: Counters::default(),
            last_input: Instant::now(),
            scratch: Vec::new(),
        }
    }

    /// Bytes of video waiting for ffmpeg (ring space this recorder holds).
    pub fn video_backlog(&self) -> usize {
        self.segments.iter().map(Segment::video_backlog).sum()
    }

    pub fn queued_frames(&self) -> usize {
        self.segments.iter().map(Segment::queued_frames).sum()
    }

    pub fn files(&self) -> usize {
        self.segments.len()
    }

    pub fn frames_out(&self) -> u64 {
        self.segments.iter().map(|s| s.report.frames).sum()
    }

    /// The file being written, or the last one written.
    pub fn current_file(&self) -> Option<&std::path::Path> {
        self.segments.last().map(|s| s.report.path.as_path())
    }

    pub fn is_done(&self) -> bool {
        self.segments.iter().all(Segment::is_done)
    }

    /// Whether a file is open and nothing has come for `end_after`.
    pub fn has_left(&self, end_after: Duration) -> bool {
        let open = self.segments.last().is_some_and(Segment::is_open);
        open && self.last_input.elapsed() > end_after
    }

    /// A video frame of this participant, allowed to hold `allowance`
    /// bytes of ring space while it waits for ffmpeg.
    pub fn on_video(&mut self, info: VideoInfo, source: VideoSource<'c>, allowance: usize) {
        self.counters.video_received += 1;
        self.last_input = Instant::now();
        if self.failure.is_some() {
            self.counters.video_after_failure += 1;
            return;
        }
        let key = VideoKey { format: info.format, width: info.width, height: info.height };
        let open = self.segments.last().filter(|s| s.is_open());
        if open
            .is_some_and(|s| s.key == Some(key) && s.video_backlog() + source.len() > allowance.max(2 * source.len()))
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
        let needs_new = self.segments.last().is_none_or(|s| !s.is_open() || s.key != Some(key));
        if needs_new {
            self.start_segment(key, slot);
        }
        let source = Rc::new(source);
        let segment = self.segments.last_mut().expect("an open segment");
        segment.queue_video(source.clone());
        self.counters.video_queued += 1;
        self.last_frame = Some((source, Instant::now()));
    }

    /// An audio chunk of this participant.
    pub fn on_audio(&mut self, pcm: Pcm) {
        self.counters.audio_received += 1;
        self.last_input = Instant::now();
        if self.failure.is_some() {
            self.counters.audio_after_failure += 1;
            return;
        }
        if self.video.origin_us().is_none() {
            // The recording starts with its first video frame: keep a
            // little audio in case that frame's own audio came first.
            self.early_audio_format.get_or_insert((pcm.rate, pcm.channels));
            let held: u64 = self.early_audio.iter().map(|p| p.frames).sum();
            if held > EARLY_AUDIO.as_millis() as u64 * u64::from(pcm.rate) / 1000 {
                self.early_audio.pop_front();
                self.counters.audio_early += 1;
            }
            self.early_audio.push_back(pcm);
            return;
        }
        self.place_audio(pcm);
    }

    /// Repeats the last frame into `count` slots of the open file.
    fn repeat_last(&mut self, count: u64) {
        if count == 0 {
            return;
        }
        let (Some((last, _)), Some(segment)) =
            (self.last_frame.as_ref(), self.segments.last_mut().filter(|s| s.is_open()))
        else {
            return;
        };
        segment.queue_repeats(last.clone(), count);
        self.counters.video_repeats += count;
    }

    /// Closes the open file at `slot` and opens the next for frames `key`.
    fn start_segment(&mut self, key: VideoKey, slot: u64) {
        if let Some(current) = self.segments.last().filter(|s| s.is_open()) {
            let from = current.key.map(|k| format!("{}x{}", k.width, k.height)).unwrap_or_default();
            tracing::info!(%from, to = %format!("{}x{}", key.width, key.height), "video size changed: next file");
            self.close_open_segment(slot);
        }
        self.last_frame = None;
        let index = self.segments.len();
        let report = SegmentReport {
            path: segment_path(&self.base, index),
            width: key.width,
            height: key.height,
            pixel_format: Some(key.format),
            sample_rate: self.audio.as_ref().map_or(0, AudioClock::rate),
            ..SegmentReport::default()
        };
        self.segments.push(Segment::new(report, Some(key), self.settings.splice));
        if index > 0 {
            self.start_ffmpeg();
        }
    }

    /// Ends the open file at output slot `end_slot`: pads its audio up to
    /// there and hands it everything placed before that point.
    fn close_open_segment(&mut self, end_slot: u64) {
        if self.segments.last().is_none_or(|s| !s.is_open()) {
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
        let finish_timeout = self.settings.finish_timeout;
        self.segments.last_mut().expect("checked above").close(finish_timeout);
    }

    fn start_ffmpeg(&mut self) {
        if self.audio.is_none() {
            let (rate, channels) = self.early_audio_format.unwrap_or((48_000, 2));
            self.audio = Some(AudioClock::new(rate));
            self.audio_channels = channels;
        }
        let rate = self.audio.as_ref().expect("set above").rate();
        let segment = self.segments.last_mut().expect("a segment to start");
        if let Err(failure) = segment.start(&self.settings, rate, self.audio_channels) {
            self.on_failure(failure);
        }
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
        let Some(segment) = self.segments.last_mut().filter(|s| s.is_open()) else { return };
        if until <= self.audio_start || channels == 0 {
            return;
        }
        let available = (self.audio_pending.len() / channels) as u64;
        let count = (until - self.audio_start).min(available) as usize;
        self.scratch.clear();
        for sample in self.audio_pending.drain(..count * channels) {
            self.scratch.extend_from_slice(&sample.to_le_bytes());
        }
        segment.queue_audio(&self.scratch, count as u64);
        self.audio_start += count as u64;
    }

    /// Starts the first ffmpeg when its audio format is known, catches up
    /// a stalled side, feeds audio as far as video has reached, copies a
    /// long-held last frame out of the ring (at once when the ring is
    /// `pressed`), and watches each ffmpeg.
    pub fn maintain(&mut self, pressed: bool) {
        let waiting_start = self.segments.len() == 1
            && !self.segments[0].started()
            && self.segments[0].is_open()
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
            if last.in_the_ring() && Rc::strong_count(last) == 1 && (since.elapsed() > HOLD_LAST_FRAME || pressed) {
                self.last_frame = Some((Rc::new(last.copy_out()), *since));
                self.counters.copied_out += 1;
            }
        }
        for index in 0..self.segments.len() {
            match self.segments[index].supervise(&self.settings) {
                Ok(None) => {}
                Ok(Some(error)) => {
                    self.failure.get_or_insert(error);
                }
                Err(failure) => self.on_failure(failure),
            }
        }
    }

    /// Writes what every file has queued, without blocking. Returns whether
    /// anything is still waiting for a pipe.
    pub fn pump(&mut self) -> bool {
        let mut waiting = false;
        for index in 0..self.segments.len() {
            match self.segments[index].pump() {
                Ok(more) => waiting |= more,
                Err(failure) => self.on_failure(failure),
            }
        }
        waiting
    }

    pub fn poll_fds(&self, fds: &mut Vec<libc::pollfd>) {
        for segment in &self.segments {
            segment.poll_fds(fds);
        }
    }

    /// A file failed: drop what was queued for this participant and count
    /// every later frame as dropped.
    fn on_failure(&mut self, failure: SegmentFailure) {
        self.counters.video_discarded += failure.discarded;
        self.last_frame = None;
        self.audio_pending.clear();
        self.failure.get_or_insert(failure.message);
    }

    /// Ends what is being recorded: the open file gets audio up to the end
    /// of its video and is finished by its ffmpeg.
    fn close_take(&mut self) {
        let unstarted = self.segments.last().is_some_and(|s| s.is_open() && !s.started());
        if unstarted && self.failure.is_none() {
            // Frames came, but not long enough to learn the audio format.
            self.start_ffmpeg();
        }
        self.close_open_segment(self.video.next());
        self.last_frame = None;
    }

    /// The participant left: its file is finished, and a return starts a
    /// new file on a new timeline.
    pub fn end_take(&mut self) {
        tracing::info!(file = ?self.current_file(), "participant sent nothing for a while: file finished");
        self.close_take();
        self.counters.clock_resets += self.video.resets() + self.audio.as_ref().map_or(0, AudioClock::resets);
        self.video = VideoClock::new(self.settings.fps);
        self.audio = None;
        self.audio_pending.clear();
        self.audio_start = 0;
        self.counters.audio_early += self.early_audio.len() as u64;
        self.early_audio.clear();
        self.first_video_at = None;
    }

    /// The recording ends: close the open file.
    pub fn finish(&mut self) {
        self.close_take();
        self.counters.audio_early += self.early_audio.len() as u64;
        self.early_audio.clear();
    }

    pub fn report(&self) -> RecorderReport {
        let mut counters = self.counters.clone();
        counters.clock_resets += self.video.resets() + self.audio.as_ref().map_or(0, AudioClock::resets);
        RecorderReport {
            counters,
            segments: self.segments.iter().map(|s| s.report.clone()).collect(),
            failure: self.failure.clone(),
        }
    }
}
