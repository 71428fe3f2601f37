//! One output file and the ffmpeg that writes it: what is queued for its
//! pipes, writing it without blocking, and watching ffmpeg (a stall, an
//! early exit, a file that never finishes). A participant's recorder has
//! one segment per camera size; the mix has one, without video.

use std::collections::VecDeque;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use shmring_media::PixelFormat;

use super::ffmpeg::{Ffmpeg, SegmentFormat, VideoFormat};
use super::pipes::{self, ByteQueue, VideoPipe, VideoSource, VideoWrite};
use super::report::SegmentReport;
use crate::process::Exit;

/// How every file is encoded and how long ffmpeg is waited for.
#[derive(Clone, Debug)]
pub struct SegmentSettings {
    pub ffmpeg: PathBuf,
    pub preset: String,
    pub fps: u32,
    /// Hand video to ffmpeg with `vmsplice` (no copy) rather than `writev`.
    pub splice: bool,
    /// How long a closed file's ffmpeg may take to read what is left and
    /// finish the file before it is killed and the file reported failed.
    pub finish_timeout: Duration,
    /// How long ffmpeg may take nothing while frames wait for it.
    pub stall_timeout: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SegmentState {
    /// Taking frames (ffmpeg may not have started yet).
    Open,
    /// No more input: writing what is queued, then closing the pipes.
    Closing,
    /// Pipes closed, waiting for ffmpeg to finish the file.
    Draining,
    Done,
}

/// The pictures a file holds: one format and size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VideoKey {
    pub format: PixelFormat,
    pub width: u32,
    pub height: u32,
}

/// A file that failed: what to report, and how many queued frames went
/// with it.
#[derive(Debug)]
pub struct SegmentFailure {
    pub message: String,
    pub discarded: u64,
}

/// One output file and its ffmpeg.
pub struct Segment<'c> {
    pub report: SegmentReport,
    /// `None`: an audio-only file.
    pub key: Option<VideoKey>,
    pub state: SegmentState,
    ffmpeg: Option<Ffmpeg>,
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

impl<'c> Segment<'c> {
    pub fn new(report: SegmentReport, key: Option<VideoKey>, splice: bool) -> Segment<'c> {
        Segment {
            report,
            key,
            state: SegmentState::Open,
            ffmpeg: None,
            video: VecDeque::new(),
            pipe: VideoPipe::new(splice),
            video_backlog: 0,
            audio: ByteQueue::default(),
            drain_deadline: None,
            taken: 0,
            last_progress: Instant::now(),
        }
    }

    pub fn is_open(&self) -> bool {
        self.state == SegmentState::Open
    }

    pub fn is_done(&self) -> bool {
        self.state == SegmentState::Done
    }

    /// Whether its ffmpeg runs (or ran).
    pub fn started(&self) -> bool {
        self.ffmpeg.is_some()
    }

    /// Bytes of video waiting for ffmpeg (ring space it holds).
    pub fn video_backlog(&self) -> usize {
        self.video_backlog
    }

    /// Output frames waiting for ffmpeg.
    pub fn queued_frames(&self) -> usize {
        self.video.iter().map(|w| w.times as usize).sum()
    }

    /// Whether anything waits for ffmpeg to read it.
    fn has_pending(&self) -> bool {
        !self.video.is_empty() || !self.audio.is_empty() || self.pipe.in_flight() > 0
    }

    /// Starts ffmpeg, audio at `sample_rate` and `channels`.
    pub fn start(&mut self, settings: &SegmentSettings, sample_rate: u32, channels: u32) -> Result<(), SegmentFailure> {
        let format = SegmentFormat {
            video: self.key.map(|key| VideoFormat {
                pixel_format: key.format,
                width: key.width,
                height: key.height,
                fps: settings.fps,
            }),
            sample_rate,
            channels,
            preset: settings.preset.clone(),
        };
        self.report.sample_rate = sample_rate;
        self.report.channels = channels;
        match Ffmpeg::spawn(&settings.ffmpeg, &format, &self.report.path) {
            Ok(ffmpeg) => {
                tracing::info!(pid = ffmpeg.pid(), file = %self.report.path.display(), "encoding");
                self.ffmpeg = Some(ffmpeg);
                self.last_progress = Instant::now();
                Ok(())
            }
            Err(error) => Err(self.fail(error.to_string())),
        }
    }

    /// Queues a frame that came from the ring.
    pub fn queue_video(&mut self, source: Rc<VideoSource<'c>>) {
        self.video_backlog += source.len();
        self.video.push_back(VideoWrite::new(source, 1));
    }

    /// Queues `times` repeats of a frame (slots of frames that never came).
    pub fn queue_repeats(&mut self, source: Rc<VideoSource<'c>>, times: u64) {
        self.video_backlog += source.len() * times as usize;
        self.video.push_back(VideoWrite::repeats(source, times));
    }

    /// Queues `samples` sample frames of audio (`bytes` of f32le).
    pub fn queue_audio(&mut self, bytes: &[u8], samples: u64) {
        self.audio.push(bytes);
        self.report.samples += samples;
    }

    /// No more input: what is queued is written, then ffmpeg finishes the
    /// file. A file whose ffmpeg never started is done at once.
    pub fn close(&mut self, finish_timeout: Duration) {
        if self.state != SegmentState::Open {
            return;
        }
        self.state = SegmentState::Closing;
        self.drain_deadline = Some(Instant::now() + finish_timeout);
        if self.ffmpeg.is_none() {
            self.state = SegmentState::Done;
            self.video.clear();
            self.video_backlog = 0;
        }
    }

    /// Watches ffmpeg: a file that takes too long to finish, an ffmpeg that
    /// takes nothing, one that exits. `Err` when the file failed;
    /// `Ok(Some(error))` when it finished with an error.
    pub fn supervise(&mut self, settings: &SegmentSettings) -> Result<Option<String>, SegmentFailure> {
        let now = Instant::now();
        let closing = matches!(self.state, SegmentState::Closing | SegmentState::Draining);
        if closing && self.drain_deadline.is_some_and(|d| now > d) {
            // A hung ffmpeg must not hold the ring (or the exit) forever.
            let limit = settings.finish_timeout.as_secs_f64();
            return Err(self.fail(format!("ffmpeg did not take the rest and finish the file within {limit:.1} s")));
        }
        let stalled = matches!(self.state, SegmentState::Open | SegmentState::Closing)
            && self.ffmpeg.is_some()
            && self.has_pending()
            && now.duration_since(self.last_progress) > settings.stall_timeout;
        if stalled {
            // Frames it holds pin the ring's oldest space: a hung ffmpeg
            // would fill the ring. Give up on it loudly instead.
            let limit = settings.stall_timeout.as_secs_f64();
            return Err(self.fail(format!("ffmpeg took nothing for {limit:.1} s (hung or stopped?)")));
        }
        let exited = match self.ffmpeg.as_mut() {
            Some(ffmpeg) if self.state != SegmentState::Done => ffmpeg.poll_exit().cloned(),
            _ => None,
        };
        match exited {
            Some(exit) if self.state == SegmentState::Draining => Ok(self.finished(Some(exit))),
            Some(exit) => Err(self.fail(format!("ffmpeg {} while the file was still being written", exit.description))),
            None => Ok(None),
        }
    }

    /// Writes what is queued, without blocking. `Ok(true)` while something
    /// still waits for a pipe.
    pub fn pump(&mut self) -> Result<bool, SegmentFailure> {
        if matches!(self.state, SegmentState::Done | SegmentState::Draining) {
            return Ok(false);
        }
        let Some(ffmpeg) = self.ffmpeg.as_mut() else {
            return Ok(!self.video.is_empty());
        };
        let mut error = None;
        if let Some(fd) = ffmpeg.video.as_ref() {
            let before = queued_bytes(&self.video);
            match self.pipe.write(fd.as_fd(), &mut self.video) {
                Ok(frames) => self.report.frames += frames,
                Err(e) => error = Some(format!("video pipe: {e}")),
            }
            self.pipe.reclaim(fd.as_fd());
            self.report.spliced = self.pipe.splicing();
            let after = queued_bytes(&self.video);
            self.video_backlog = self.video_backlog.saturating_sub(before - after);
        }
        if let (None, Some(fd)) = (&error, ffmpeg.audio.as_ref()) {
            if let Err(e) = self.audio.write_to(fd.as_fd()) {
                error = Some(format!("audio pipe: {e}"));
            }
        }
        // Progress is ffmpeg reading, not our writes into free pipe space.
        let unread = |fd: Option<&OwnedFd>| fd.and_then(|fd| pipes::unread(fd.as_fd())).unwrap_or(0);
        let taken = (self.pipe.bytes_written() + self.audio.bytes_written())
            .saturating_sub(unread(ffmpeg.video.as_ref()) + unread(ffmpeg.audio.as_ref()));
        if taken > self.taken {
            self.taken = taken;
            self.last_progress = Instant::now();
        }
        if let Some(error) = error {
            return Err(self.fail(format!("ffmpeg stopped reading ({error})")));
        }
        let empty = self.video.is_empty() && self.audio.is_empty();
        // Spliced frames must be read before the pipe closes and their
        // ring space is released.
        if self.state == SegmentState::Closing && empty && self.pipe.in_flight() == 0 {
            if let Some(ffmpeg) = self.ffmpeg.as_mut() {
                ffmpeg.close_inputs();
            }
            self.state = SegmentState::Draining;
        }
        Ok(!empty)
    }

    /// The pipes with queued data, to wait on until they take more.
    pub fn poll_fds(&self, fds: &mut Vec<libc::pollfd>) {
        if matches!(self.state, SegmentState::Done | SegmentState::Draining) {
            return;
        }
        let Some(ffmpeg) = self.ffmpeg.as_ref() else { return };
        if let (false, Some(fd)) = (self.video.is_empty(), ffmpeg.video.as_ref()) {
            fds.push(libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLOUT, revents: 0 });
        }
        if let (false, Some(fd)) = (self.audio.is_empty(), ffmpeg.audio.as_ref()) {
            fds.push(libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLOUT, revents: 0 });
        }
    }

    /// ffmpeg failed: kill it, drop what was queued, and say why.
    pub fn fail(&mut self, reason: String) -> SegmentFailure {
        let discarded = self.video.iter().filter(|w| !w.repeat).count() as u64;
        self.video.clear();
        self.video_backlog = 0;
        self.audio.clear();
        let (exit, stderr) = self.ffmpeg.take().map(Ffmpeg::abort).unwrap_or((None, String::new()));
        // ffmpeg is gone and its pipes with it: nothing references the
        // spliced frames' pages any more, so their ring space can go.
        self.pipe = VideoPipe::new(false);
        let mut message = format!("{}: {reason}", self.report.path.display());
        if !stderr.is_empty() {
            message.push_str(&format!("; ffmpeg said: {stderr}"));
        }
        tracing::error!(%message, "encoding failed");
        self.report.error = Some(message.clone());
        self.report.ffmpeg = exit;
        self.state = SegmentState::Done;
        SegmentFailure { message, discarded }
    }

    /// ffmpeg has finished the file (or exited): reap it. Gives the error
    /// if it did not end well.
    fn finished(&mut self, exit: Option<Exit>) -> Option<String> {
        let (waited, stderr) = self.ffmpeg.take().map(Ffmpeg::wait).unwrap_or((None, String::new()));
        let exit = exit.or(waited);
        self.state = SegmentState::Done;
        let error = exit
            .as_ref()
            .filter(|e| !e.success)
            .map(|e| format!("{}: ffmpeg {} ({stderr})", self.report.path.display(), e.description.as_str()));
        self.report.error = error.clone();
        self.report.ffmpeg = exit;
        error
    }
}

/// Bytes of the frames in `queue`, counting repeats.
fn queued_bytes(queue: &VecDeque<VideoWrite<'_>>) -> usize {
    queue.iter().map(|w| w.source.len() * w.times as usize).sum()
}
