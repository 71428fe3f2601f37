//! What a recording did: every frame accounted for, per file and in all.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use shmring::Stats;
use shmring_media::PixelFormat;

use super::mixer::{MixInput, MixReport};
use super::recorder::RecorderReport;
use super::Progress;
use crate::process::Exit;
use crate::stream_table::{printable, StreamKind, StreamRow};

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
    /// Adds `other`'s counts to these.
    pub fn add(&mut self, other: &Counters) {
        let Counters {
            video_received,
            video_queued,
            video_discarded,
            video_repeats,
            video_late,
            video_behind,
            video_after_failure,
            video_invalid,
            video_other_stream,
            video_gaps,
            audio_received,
            audio_placed,
            audio_late,
            audio_behind,
            audio_early,
            audio_after_failure,
            audio_other_format,
            audio_invalid,
            audio_other_stream,
            audio_gaps,
            silence_samples,
            copied_out,
            announcements,
            other_kind,
            corrupt,
            clock_resets,
        } = other;
        self.video_received += video_received;
        self.video_queued += video_queued;
        self.video_discarded += video_discarded;
        self.video_repeats += video_repeats;
        self.video_late += video_late;
        self.video_behind += video_behind;
        self.video_after_failure += video_after_failure;
        self.video_invalid += video_invalid;
        self.video_other_stream += video_other_stream;
        self.video_gaps = self.video_gaps.saturating_add(*video_gaps);
        self.audio_received += audio_received;
        self.audio_placed += audio_placed;
        self.audio_late += audio_late;
        self.audio_behind += audio_behind;
        self.audio_early += audio_early;
        self.audio_after_failure += audio_after_failure;
        self.audio_other_format += audio_other_format;
        self.audio_invalid += audio_invalid;
        self.audio_other_stream += audio_other_stream;
        self.audio_gaps = self.audio_gaps.saturating_add(*audio_gaps);
        self.silence_samples += silence_samples;
        self.copied_out += copied_out;
        self.announcements += announcements;
        self.other_kind += other_kind;
        self.corrupt += corrupt;
        self.clock_resets += clock_resets;
    }

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

/// One participant: its streams and what its recorder did.
#[derive(Clone, Debug)]
pub struct ParticipantReport {
    /// The participant its labels name (`None`: unannounced streams).
    pub name: Option<String>,
    pub video: Option<u32>,
    pub audio: Option<u32>,
    pub recorder: RecorderReport,
}

/// One stream: where its records went.
#[derive(Clone, Debug)]
pub struct StreamReport {
    /// Counts as published for `stat`: `used` is what went into the
    /// participant's file, `dropped` what did not.
    pub row: StreamRow,
    /// Index into [`Report::participants`].
    pub participant: usize,
    /// What the mix did with it (audio streams, when mixing).
    pub mixed: Option<MixInput>,
}

/// The whole recording.
#[derive(Clone, Debug)]
pub struct Report {
    /// Over every stream.
    pub counters: Counters,
    /// Every participant's files, participant by participant.
    pub segments: Vec<SegmentReport>,
    pub participants: Vec<ParticipantReport>,
    pub streams: Vec<StreamReport>,
    pub mix: Option<MixReport>,
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

    /// CPU of every ffmpeg (the mix's included).
    pub fn ffmpeg_cpu(&self) -> Duration {
        let files = self.segments.iter().chain(self.mix.as_ref().map(|m| &m.file));
        files.filter_map(|s| s.ffmpeg.as_ref()).map(|e| e.cpu).sum()
    }

    pub fn text(&self) -> String {
        let c = &self.counters;
        let mut out = String::new();
        let _ = writeln!(out, "  stopped         after {:.1} s: {}", self.elapsed.as_secs_f64(), self.stop.text());
        let _ = writeln!(
            out,
            "  video           {} received, {} encoded, {} frames in the output ({} repeats filling gaps), {} copied out of the ring",
            c.video_received,
            c.video_queued.saturating_sub(c.video_discarded),
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
            let audio = s.audio_seconds();
            let _ = writeln!(
                out,
                "  output          {} {}x{} {}: {} frames, {:.2} s of audio, {}",
                s.path.display(),
                s.width,
                s.height,
                s.pixel_format.map_or("?", crate::encoder::ffmpeg::ffmpeg_pix_fmt),
                s.frames,
                audio,
                s.status()
            );
        }
        if let Some(mix) = &self.mix {
            let streams = mix.inputs.values().filter(|i| i.mixed > 0).count();
            let _ = writeln!(
                out,
                "  mix             {}: {:.2} s of {streams} audio stream(s) mixed, {}",
                mix.file.path.display(),
                mix.file.audio_seconds(),
                mix.file.status()
            );
        }
        if self.participants.len() > 1 || self.participants.iter().any(|p| p.name.is_some()) {
            for (index, p) in self.participants.iter().enumerate() {
                let name = p.name.as_deref().map_or("not announced".to_string(), |n| printable(n, 60));
                let id = |s: Option<u32>| s.map_or("none".to_string(), |s| s.to_string());
                let _ = writeln!(
                    out,
                    "  participant {:<3} {name}: video stream {}, audio stream {}, {} file(s){}",
                    index + 1,
                    id(p.video),
                    id(p.audio),
                    p.recorder.segments.len(),
                    if p.video.is_none() { " (no video: its audio is in the mix only)" } else { "" }
                );
            }
        }
        for stream in &self.streams {
            let _ = writeln!(out, "{}", self.stream_line(stream));
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

impl Report {
    /// A stream's summary row.
    fn stream_line(&self, stream: &StreamReport) -> String {
        let row = &stream.row;
        let label = row.label.as_deref().map_or("not announced".to_string(), |l| printable(l, 100));
        let output = row.output.as_deref().unwrap_or("no file");
        let mut line = format!(
            "  stream {:<8} {} of participant {} ({label}) -> {output}: {} received, {} recorded, {} dropped, {} missing upstream",
            row.id,
            row.kind.name(),
            stream.participant + 1,
            row.records,
            row.used,
            row.dropped,
            row.missing
        );
        if let (StreamKind::Audio, Some(mixed)) = (row.kind, &stream.mixed) {
            let _ = write!(line, "; {} mixed, {} not mixed", mixed.mixed, mixed.dropped());
        }
        let _ = write!(line, "; {}", printable(&row.format, 40));
        line
    }
}

impl SegmentReport {
    /// Seconds of audio written.
    pub fn audio_seconds(&self) -> f64 {
        if self.sample_rate > 0 {
            self.samples as f64 / f64::from(self.sample_rate)
        } else {
            0.0
        }
    }

    /// How its ffmpeg ended.
    pub fn status(&self) -> String {
        match (&self.ffmpeg, &self.error) {
            (_, Some(error)) => format!("FAILED: {error}"),
            (Some(exit), None) => format!("ffmpeg {}", exit.description),
            (None, None) => "ffmpeg never started".to_string(),
        }
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
