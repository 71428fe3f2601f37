//! Every participant's audio mixed into one file (stereo AAC in an `.m4a`).
//!
//! The mix has its own timeline, in samples at the rate of the first audio
//! stream, starting with that stream's first chunk. Each stream is placed
//! on it by timestamp with the same rules as a participant's audio (gaps
//! are left silent, overlaps trimmed; see [`AudioClock`]). A stream whose
//! first chunk is stamped within [`SAME_CLOCK`] of the present on the first
//! stream's clock shares that clock and lines up exactly; any other (its
//! own clock, as Chromium's remote audio tracks count from when each track
//! started) is lined up with the present when it first comes. Mixing is a sum, clamped to [-1, 1] when
//! written. What lies more than [`MIX_LATENCY`] behind the present is final
//! and goes to ffmpeg; a chunk for a part already written is cut (counted
//! late), one far ahead of the present is dropped (counted ahead).

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use super::pcm::Pcm;
use super::report::SegmentReport;
use super::segment::{Segment, SegmentSettings};
use super::timeline::{AudioClock, AudioSlot};

/// How long the mix waits for late chunks before writing a stretch.
pub const MIX_LATENCY: Duration = Duration::from_secs(2);
/// A chunk starting further than this ahead of the present is dropped.
const MIX_AHEAD: Duration = Duration::from_secs(3);
/// The mix is stereo.
const CHANNELS: usize = 2;
/// How far from the present a stream's first stamp may be, on the first
/// stream's clock, for the two to be taken as one clock.
const SAME_CLOCK: Duration = Duration::from_millis(500);

/// One stream's part in the mix.
#[derive(Clone, Debug, Default)]
pub struct MixInput {
    clock: Option<AudioClock>,
    /// The stamp, on this stream's clock, of the mix's sample 0.
    origin_us: i64,
    /// Chunks mixed in (maybe cut), and dropped: late, ahead of the
    /// present, unusable (another sample rate, or longer than a second),
    /// after the mix failed.
    pub mixed: u64,
    pub late: u64,
    pub ahead: u64,
    pub unusable: u64,
    pub after_failure: u64,
}

impl MixInput {
    pub fn dropped(&self) -> u64 {
        self.late + self.ahead + self.unusable + self.after_failure
    }
}

/// What the mix did.
#[derive(Clone, Debug)]
pub struct MixReport {
    pub file: SegmentReport,
    pub inputs: BTreeMap<u32, MixInput>,
}

/// The mix and the ffmpeg writing it.
pub struct Mixer<'c> {
    settings: SegmentSettings,
    /// Set by the first chunk: its arrival, its timestamp, the mix's rate.
    origin: Option<(Instant, i64, u32)>,
    inputs: BTreeMap<u32, MixInput>,
    /// Summed samples, interleaved stereo; the first is sample `start`.
    buffer: VecDeque<f32>,
    start: u64,
    segment: Segment<'c>,
    failure: Option<String>,
    scratch: Vec<u8>,
}

impl<'c> Mixer<'c> {
    pub fn new(settings: SegmentSettings, path: std::path::PathBuf) -> Mixer<'c> {
        let report = SegmentReport { path, ..SegmentReport::default() };
        Mixer {
            segment: Segment::new(report, None, false),
            settings,
            origin: None,
            inputs: BTreeMap::new(),
            buffer: VecDeque::new(),
            start: 0,
            failure: None,
            scratch: Vec::new(),
        }
    }

    /// The sample position of the present on the mix's timeline.
    fn now(&self) -> u64 {
        self.origin.map_or(0, |(at, _, rate)| (at.elapsed().as_secs_f64() * f64::from(rate)) as u64)
    }

    /// Mixes in a chunk of stream `stream`.
    pub fn add(&mut self, stream: u32, pcm: &Pcm) {
        if self.origin.is_none() {
            self.origin = Some((Instant::now(), pcm.timestamp_us, pcm.rate.max(1)));
            if let Err(failure) = self.segment.start(&self.settings, pcm.rate.max(1), CHANNELS as u32) {
                self.failure = Some(failure.message);
            }
        }
        let (_, origin_us, rate) = self.origin.expect("set above");
        let now = self.now();
        let input = self.inputs.entry(stream).or_default();
        if self.failure.is_some() {
            input.after_failure += 1;
            return;
        }
        if pcm.rate != rate || pcm.frames > u64::from(rate) {
            input.unusable += 1;
            return;
        }
        if input.clock.is_none() {
            let on_first_clock = (i128::from(pcm.timestamp_us) - i128::from(origin_us)) * i128::from(rate) / 1_000_000;
            let tolerance = SAME_CLOCK.as_millis() as i128 * i128::from(rate) / 1000;
            input.origin_us = if (on_first_clock - i128::from(now)).abs() <= tolerance {
                origin_us
            } else {
                let now_us = i128::from(now) * 1_000_000 / i128::from(rate);
                (i128::from(pcm.timestamp_us) - now_us).clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
            };
            input.clock = Some(AudioClock::new(rate));
        }
        let clock = input.clock.as_mut().expect("set above");
        let before = clock.written();
        let (silence, skip) = match clock.place(pcm.timestamp_us, pcm.frames, input.origin_us, now) {
            AudioSlot::Late => {
                input.late += 1;
                return;
            }
            AudioSlot::At { silence, skip } => (silence, skip),
        };
        let at = before + silence;
        if at > now + MIX_AHEAD.as_millis() as u64 * u64::from(rate) / 1000 {
            input.ahead += 1;
            return;
        }
        // What falls before `start` was written already: cut.
        let first = skip.saturating_add(self.start.saturating_sub(at));
        if first >= pcm.frames {
            input.late += 1;
            return;
        }
        let offset = (at + (first - skip) - self.start) as usize;
        let end = offset + (pcm.frames - first) as usize;
        if self.buffer.len() < end * CHANNELS {
            self.buffer.resize(end * CHANNELS, 0.0);
        }
        for (i, frame) in (first as usize..pcm.frames as usize).enumerate() {
            let (left, right) = pcm.stereo(frame);
            self.buffer[(offset + i) * CHANNELS] += left;
            self.buffer[(offset + i) * CHANNELS + 1] += right;
        }
        input.mixed += 1;
    }

    /// Writes what is final (or, at the end, everything) to ffmpeg.
    fn flush(&mut self, all: bool) {
        let Some((_, _, rate)) = self.origin else { return };
        let latency = MIX_LATENCY.as_millis() as u64 * u64::from(rate) / 1000;
        let until = if all { u64::MAX } else { self.now().saturating_sub(latency) };
        let count = (until.saturating_sub(self.start) as usize).min(self.buffer.len() / CHANNELS);
        if count == 0 || self.failure.is_some() {
            return;
        }
        self.scratch.clear();
        for sample in self.buffer.drain(..count * CHANNELS) {
            self.scratch.extend_from_slice(&sample.clamp(-1.0, 1.0).to_le_bytes());
        }
        self.segment.queue_audio(&self.scratch, count as u64);
        self.start += count as u64;
    }

    /// Moves final audio along and watches ffmpeg.
    pub fn maintain(&mut self) {
        if self.segment.is_open() {
            self.flush(false);
        }
        match self.segment.supervise(&self.settings) {
            Ok(None) => {}
            Ok(Some(error)) => {
                self.failure.get_or_insert(error);
            }
            Err(failure) => {
                self.failure.get_or_insert(failure.message);
            }
        }
    }

    pub fn pump(&mut self) -> bool {
        match self.segment.pump() {
            Ok(waiting) => waiting,
            Err(failure) => {
                self.failure.get_or_insert(failure.message);
                false
            }
        }
    }

    pub fn poll_fds(&self, fds: &mut Vec<libc::pollfd>) {
        self.segment.poll_fds(fds);
    }

    /// The recording ends: everything mixed goes to the file.
    pub fn finish(&mut self) {
        if self.segment.is_open() {
            self.flush(true);
        }
        self.segment.close(self.settings.finish_timeout);
    }

    pub fn is_done(&self) -> bool {
        self.segment.is_done()
    }

    /// Whether any audio came (and so a file was started).
    pub fn started(&self) -> bool {
        self.origin.is_some()
    }

    pub fn failure(&self) -> Option<&str> {
        self.failure.as_deref()
    }

    pub fn input(&self, stream: u32) -> Option<&MixInput> {
        self.inputs.get(&stream)
    }

    pub fn report(&self) -> MixReport {
        MixReport { file: self.segment.report.clone(), inputs: self.inputs.clone() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> SegmentSettings {
        SegmentSettings {
            ffmpeg: "/nonexistent/ffmpeg".into(),
            preset: "ultrafast".into(),
            fps: 30,
            splice: false,
            finish_timeout: Duration::from_secs(1),
            stall_timeout: Duration::from_secs(1),
        }
    }

    fn chunk(timestamp_us: i64, value: f32, channels: u32) -> Pcm {
        Pcm { timestamp_us, rate: 48_000, channels, frames: 480, samples: vec![value; 480 * channels as usize] }
    }

    /// A mixer whose output is kept here (no ffmpeg runs): the buffer.
    fn mixer() -> Mixer<'static> {
        let mut mixer = Mixer::new(settings(), "/nonexistent/mix.m4a".into());
        mixer.origin = Some((Instant::now(), 1_000_000, 48_000));
        mixer
    }

    #[test]
    fn streams_on_one_clock_add_up_sample_for_sample() {
        let mut mixer = mixer();
        for n in 0..3 {
            mixer.add(1, &chunk(1_000_000 + n * 10_000, 0.25, 2));
            mixer.add(2, &chunk(1_000_000 + n * 10_000, 0.5, 1));
        }
        assert_eq!(mixer.buffer.len(), 3 * 480 * CHANNELS);
        assert!(mixer.buffer.iter().all(|&s| s == 0.75), "{:?}", &mixer.buffer.as_slices().0[..4]);
        assert_eq!((mixer.inputs[&1].mixed, mixer.inputs[&2].mixed), (3, 3));
    }

    #[test]
    fn a_stream_joining_later_lands_at_its_time_and_gaps_stay_silent() {
        let mut mixer = mixer();
        mixer.add(1, &chunk(1_000_000, 0.25, 2));
        // Stream 2 starts 30 ms after the origin: samples 1440.. hold it.
        mixer.add(2, &chunk(1_030_000, 0.5, 2));
        assert_eq!(mixer.buffer.len(), (1440 + 480) * CHANNELS);
        assert_eq!(mixer.buffer[479 * CHANNELS], 0.25);
        assert_eq!(mixer.buffer[480 * CHANNELS], 0.0, "nobody spoke there");
        assert_eq!(mixer.buffer[1440 * CHANNELS], 0.5);
    }

    #[test]
    fn a_stream_on_its_own_clock_is_lined_up_with_the_present() {
        let mut mixer = mixer();
        // As if the mix had started 1 s ago.
        mixer.origin = Some((Instant::now() - Duration::from_secs(1), 1_000_000, 48_000));
        mixer.add(1, &chunk(1_000_000, 0.25, 2));
        // A stream counting from its own start (stamp 0.9 s, 1.9 s before
        // the present on the first clock) lands near the present, 1 s in.
        mixer.add(2, &chunk(900_000, 0.5, 2));
        let at = mixer.buffer.iter().step_by(CHANNELS).position(|&s| s == 0.5).expect("mixed in") as i64;
        assert!((at - 48_000).abs() < 4_800, "at sample {at}");
    }

    #[test]
    fn written_audio_is_final_late_chunks_are_cut_and_far_future_ones_dropped() {
        let mut mixer = mixer();
        for n in 0..6 {
            mixer.add(1, &chunk(1_000_000 + n * 10_000, 0.25, 2));
        }
        // As if the first 1800 samples had been written out.
        mixer.buffer.drain(..1800 * CHANNELS);
        mixer.start = 1800;
        mixer.add(2, &chunk(1_000_000, 0.5, 2));
        assert_eq!(mixer.inputs[&2].late, 1, "entirely before what is final");
        // Samples 1440..1920: the part before 1800 is cut.
        mixer.add(3, &chunk(1_030_000, 0.5, 2));
        assert_eq!(mixer.inputs[&3].mixed, 1);
        assert_eq!(mixer.buffer[0], 0.75, "sample 1800 has both");
        assert_eq!(mixer.buffer[120 * CHANNELS], 0.25, "stream 3 ended at 1920");
        // A hostile stamp a minute ahead of the first: lined up or dropped,
        // never a minute of buffer.
        mixer.add(4, &chunk(61_000_000, 0.5, 2));
        mixer.add(4, &chunk(71_000_000, 0.5, 2));
        assert!(mixer.buffer.len() < 48_000 * 3 * CHANNELS);
        let mut other = chunk(1_020_000, 0.5, 2);
        other.rate = 44_100;
        mixer.add(5, &other);
        assert_eq!(mixer.inputs[&5].unusable, 1);
    }
}
