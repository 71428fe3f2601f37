//! What a recording did: every frame accounted for, per file and in all.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use shmring::Stats;
use shmring_media::PixelFormat;

use super::Progress;
use crate::process::Exit;

/// Why the encoder stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// Producers came, all left, and the ring was drained.
    ProducersLeft,
    /// `--seconds` ran out.
    Deadline,
    /// SIGINT or SIGTERM.
    Interrupted,
}

impl StopReason {
    fn text(self) -> &'static str {
        match self {
            StopReason::ProducersLeft => "every producer left and the ring was drained",
            StopReason::Deadline => "the time was up",
            StopReason::Interrupted => "interrupted",
        }
    }
}

/// Where every frame and chunk went.
#[derive(Clone, Debug, Default)]
pub struct Counters {
    pub video_received: u64,
    /// Frames queued for ffmpeg (repeats not counted).
    pub video_queued: u64,
    /// Queued frames thrown away when ffmpeg failed.
    pub video_discarded: u64,
    /// Output slots filled by repeating the previous frame.
    pub video_repeats: u64,
    /// Frames whose slot was already written.
    pub video_late: u64,
    /// Frames dropped because ffmpeg was behind.
    pub video_behind: u64,
    pub video_after_failure: u64,
    pub video_invalid: u64,
    /// Frames of streams other than the one recorded (not dropped: ignored).
    pub video_other_stream: u64,
    /// Frame numbers missing in the stream (lost before the encoder).
    pub video_gaps: u64,
    pub audio_received: u64,
    pub audio_placed: u64,
    pub audio_late: u64,
    pub audio_behind: u64,
    /// Chunks before the first video frame (the recording starts there).
    pub audio_early: u64,
    pub audio_after_failure: u64,
    /// Chunks of another sample rate or channel count than the file's.
    pub audio_other_format: u64,
    pub audio_invalid: u64,
    pub audio_other_stream: u64,
    pub audio_gaps: u64,
    /// Samples of silence inserted for missing audio.
    pub silence_samples: u64,
    /// Frames copied out of the ring to be repeated later.
    pub copied_out: u64,
    /// Announce records (streams named by their producers).
    pub announcements: u64,
    /// Records of no media kind.
    pub other_kind: u64,
    /// Corrupt records the consumer stepped over.
    pub corrupt: u64,
    /// Times a stream's timestamps jumped and its clock started over.
    pub clock_resets: u64,
}

impl Counters {
    pub fn video_dropped(&self) -> u64 {
        self.video_late + self.video_behind + self.video_after_failure + self.video_invalid + self.video_discarded
    }

    pub fn audio_dropped(&self) -> u64 {
        self.audio_late
            + self.audio_behind
            + self.audio_early
            + self.audio_after_failure
            + self.audio_other_format
            + self.audio_invalid
    }
}

/// One output file.
#[derive(Clone, Debug, Default)]
pub struct SegmentReport {
    pub path: PathBuf,
    pub width: u32,
    pub height: u32,
    pub pixel_format: Option<PixelFormat>,
    /// Output frames written (repeats included).
    pub frames: u64,
    pub samples: u64,
    pub sample_rate: u32,
    pub channels: u32,
    pub ffmpeg: Option<Exit>,
    pub error: Option<String>,
    /// Video went to ffmpeg with vmsplice (no copy on the encoder's side).
    pub spliced: bool,
}

/// The whole recording.
#[derive(Clone, Debug)]
pub struct Report {
    pub counters: Counters,
    pub segments: Vec<SegmentReport>,
    pub ring: Stats,
    pub stop: StopReason,
    pub elapsed: Duration,
    pub encoder_cpu: Duration,
    pub failure: Option<String>,
}

impl Report {
    /// Output frames over every file.
    pub fn frames_out(&self) -> u64 {
        self.segments.iter().map(|s| s.frames).sum()
    }

    /// CPU of every ffmpeg.
    pub fn ffmpeg_cpu(&self) -> Duration {
        self.segments.iter().filter_map(|s| s.ffmpeg.as_ref()).map(|e| e.cpu).sum()
    }

    pub fn text(&self) -> String {
        let c = &self.counters;
        let mut out = String::new();
        let _ = writeln!(out, "  stopped         after {:.1} s: {}", self.elapsed.as_secs_f64(), self.stop.text());
        let _ = writeln!(
            out,
            "  video           {} received, {} encoded, {} frames in the output ({} repeats filling gaps), {} copied out of the ring",
            c.video_received,
            c.video_queued - c.video_discarded,
            self.frames_out(),
            c.video_repeats,
            c.copied_out
        );
        let _ = writeln!(
            out,
            "  video dropped   {} (ffmpeg behind {}, late {}, after failure {}, invalid {}); {} missing upstream, {} of other streams",
            c.video_dropped(),
            c.video_behind,
            c.video_late,
            c.video_after_failure + c.video_discarded,
            c.video_invalid,
            c.video_gaps,
            c.video_other_stream
        );
        let rate = self.segments.first().map_or(48_000, |s| s.sample_rate.max(1));
        let _ = writeln!(
            out,
            "  audio           {} received, {} placed, {:.2} s of silence inserted",
            c.audio_received,
            c.audio_placed,
            c.silence_samples as f64 / f64::from(rate)
        );
        let _ = writeln!(
            out,
            "  audio dropped   {} (ffmpeg behind {}, before the first video frame {}, late {}, after failure {}, other format {}, invalid {}); {} missing upstream",
            c.audio_dropped(),
            c.audio_behind,
            c.audio_early,
            c.audio_late,
            c.audio_after_failure,
            c.audio_other_format,
            c.audio_invalid,
            c.audio_gaps
        );
        let r = &self.ring;
        let _ = writeln!(
            out,
            "  ring            {} committed, {} consumed, {} dropped by producers (full), {} recovered, {} corrupt",
            r.committed_frames, r.consumed_frames, r.drops, r.recovered, r.corrupt
        );
        for s in &self.segments {
            let status = match (&s.ffmpeg, &s.error) {
                (_, Some(error)) => format!("FAILED: {error}"),
                (Some(exit), None) => format!("ffmpeg {}", exit.description),
                (None, None) => "ffmpeg never started".to_string(),
            };
            let audio = if s.sample_rate > 0 { s.samples as f64 / f64::from(s.sample_rate) } else { 0.0 };
            let _ = writeln!(
                out,
                "  output          {} {}x{} {}: {} frames, {:.2} s of audio, {status}",
                s.path.display(),
                s.width,
                s.height,
                s.pixel_format.map_or("?", crate::encoder::ffmpeg::ffmpeg_pix_fmt),
                s.frames,
                audio
            );
        }
        let how = if self.segments.iter().all(|s| s.spliced) {
            "ring pages spliced into ffmpeg's pipe, no copy"
        } else {
            "ring -> pipe with one copy"
        };
        let _ = writeln!(
            out,
            "  CPU encoder     {:.3} s = {:.0} us per video frame ({how}; with its share of audio)",
            self.encoder_cpu.as_secs_f64(),
            per(self.encoder_cpu, c.video_received)
        );
        let _ = writeln!(
            out,
            "  CPU ffmpeg      {:.3} s = {:.0} us per output frame (x264 + AAC)",
            self.ffmpeg_cpu().as_secs_f64(),
            per(self.ffmpeg_cpu(), self.frames_out())
        );
        out
    }
}

/// Microseconds of `cpu` per item.
pub fn per(cpu: Duration, items: u64) -> f64 {
    cpu.as_secs_f64() * 1e6 / items.max(1) as f64
}

/// The line printed once a second while recording.
pub fn progress_line(p: &Progress<'_>) -> String {
    let c = p.counters;
    format!(
        "  {:>5.1} s  video {:>5} in {:>5} out {:>3} dropped  audio {:>5} in {:>3} dropped  ring {:>5.1}%  backlog {:>3}  files {}",
        p.elapsed.as_secs_f64(),
        c.video_received,
        p.video_out,
        c.video_dropped(),
        c.audio_received,
        c.audio_dropped(),
        p.fill_percent,
        p.backlog_frames,
        p.files
    )
}
