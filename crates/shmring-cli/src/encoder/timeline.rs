//! Where frames and samples land in the recording. The output has a
//! constant frame rate and continuous audio, while producers deliver
//! frames with jitter, gaps (drops) and occasionally a clock that jumps.
//! Placement is by timestamp: a video frame goes to the output slot its
//! timestamp rounds to (missed slots are filled by repeating the previous
//! frame); an audio chunk goes to the sample position its timestamp names
//! (gaps become silence, overlaps are trimmed).

/// A jump larger than this (either way) is a new clock, not a gap.
const MAX_GAP_SECONDS: i128 = 10;

/// Timestamps come from producers and may be anything: arithmetic on them
/// is done in i128 and brought back into range here.
fn saturate(value: i128) -> i64 {
    value.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

/// The video side: output frame slots at `fps`.
#[derive(Debug)]
pub struct VideoClock {
    fps: u32,
    origin_us: Option<i64>,
    next: u64,
    resets: u64,
}

/// Where a video frame goes.
#[derive(Debug, PartialEq, Eq)]
pub enum VideoSlot {
    /// Its slot was already written (a late or duplicate frame).
    Late,
    /// Write it after repeating the previous frame `repeats` times.
    At { repeats: u64 },
}

impl VideoClock {
    pub fn new(fps: u32) -> VideoClock {
        VideoClock { fps: fps.max(1), origin_us: None, next: 0, resets: 0 }
    }

    /// The timestamp of output slot 0, once the first frame has set it.
    pub fn origin_us(&self) -> Option<i64> {
        self.origin_us
    }

    /// Output slots filled so far.
    pub fn next(&self) -> u64 {
        self.next
    }

    /// How often timestamps jumped and the clock started over.
    pub fn resets(&self) -> u64 {
        self.resets
    }

    /// Places a frame stamped `timestamp_us`.
    pub fn place(&mut self, timestamp_us: i64) -> VideoSlot {
        let origin = *self.origin_us.get_or_insert(timestamp_us);
        let fps = i128::from(self.fps);
        let offset = i128::from(timestamp_us) - i128::from(origin);
        // Round to the nearest slot: jitter of up to half a frame is absorbed.
        let index = (offset * fps + 500_000).div_euclid(1_000_000);
        let next = i128::from(self.next);
        let gap = index - next;
        if gap < -MAX_GAP_SECONDS * fps || gap > MAX_GAP_SECONDS * fps {
            // A new clock: this frame takes the next slot.
            self.origin_us = Some(saturate(i128::from(timestamp_us) - next * 1_000_000 / fps));
            self.resets += 1;
            self.next += 1;
            return VideoSlot::At { repeats: 0 };
        }
        if gap < 0 {
            return VideoSlot::Late;
        }
        self.next = (index + 1) as u64;
        VideoSlot::At { repeats: gap as u64 }
    }

    /// Fills `frames` more slots (repeats of the last frame, when video
    /// stalls while audio goes on).
    pub fn advance(&mut self, frames: u64) {
        self.next += frames;
    }

    /// The sample position (at `rate`) where output slot `slot` begins.
    pub fn sample_at(&self, slot: u64, rate: u32) -> u64 {
        (u128::from(slot) * u128::from(rate) / u128::from(self.fps)) as u64
    }

    /// Slots that `samples` samples at `rate` span, rounded down.
    pub fn slots_for(&self, samples: u64, rate: u32) -> u64 {
        (u128::from(samples) * u128::from(self.fps) / u128::from(rate.max(1))) as u64
    }
}

/// The audio side: sample positions at `rate`, on the video's clock.
#[derive(Clone, Debug)]
pub struct AudioClock {
    rate: u32,
    /// Timestamp of sample 0 (the video origin, unless audio runs on
    /// another clock).
    origin_us: Option<i64>,
    /// Samples placed so far (real or silence).
    written: u64,
    resets: u64,
}

/// Where an audio chunk goes.
#[derive(Debug, PartialEq, Eq)]
pub enum AudioSlot {
    /// All its samples fall where audio was already placed.
    Late,
    /// Insert `silence` samples, then the chunk without its first `skip`.
    At { silence: u64, skip: u64 },
}

impl AudioClock {
    pub fn new(rate: u32) -> AudioClock {
        AudioClock { rate: rate.max(1), origin_us: None, written: 0, resets: 0 }
    }

    pub fn rate(&self) -> u32 {
        self.rate
    }

    /// Samples placed so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    pub fn resets(&self) -> u64 {
        self.resets
    }

    fn position(&self, origin: i64, timestamp_us: i64) -> i128 {
        let offset = i128::from(timestamp_us) - i128::from(origin);
        (offset * i128::from(self.rate) + 500_000).div_euclid(1_000_000)
    }

    /// Places a chunk of `frames` samples stamped `timestamp_us`.
    /// `video_origin_us` is slot 0 of the video; `now` is the sample
    /// position the recording has reached, used to tell a chunk on another
    /// clock from one that is merely late or early.
    pub fn place(&mut self, timestamp_us: i64, frames: u64, video_origin_us: i64, now: u64) -> AudioSlot {
        let rate = i128::from(self.rate);
        let tolerance = rate / 50; // 20 ms of jitter is not a gap.
        let origin = *self.origin_us.get_or_insert_with(|| {
            let position = (i128::from(timestamp_us) - i128::from(video_origin_us)) * rate / 1_000_000;
            if (position - i128::from(now)).abs() > 5 * rate {
                // Another clock: line this chunk up with the present.
                self.resets += 1;
                saturate(i128::from(timestamp_us) - i128::from(now) * 1_000_000 / rate)
            } else {
                video_origin_us
            }
        });
        let mut position = self.position(origin, timestamp_us);
        let written = i128::from(self.written);
        if (position - written).abs() > MAX_GAP_SECONDS * rate {
            self.origin_us = Some(saturate(i128::from(timestamp_us) - written * 1_000_000 / rate));
            self.resets += 1;
            position = written;
        }
        let frames_i = i128::from(frames);
        if position + frames_i <= written && written - position > tolerance {
            return AudioSlot::Late;
        }
        let (silence, skip) = if (position - written).abs() <= tolerance {
            (0, 0)
        } else if position > written {
            ((position - written) as u64, 0)
        } else {
            (0, (written - position).min(frames_i) as u64)
        };
        self.written += silence + (frames - skip);
        AudioSlot::At { silence, skip }
    }

    /// Places `samples` of silence (audio stalled while video goes on).
    pub fn pad(&mut self, samples: u64) {
        self.written += samples;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRAME_US: i64 = 33_333;

    #[test]
    fn steady_frames_fill_consecutive_slots() {
        let mut clock = VideoClock::new(30);
        for n in 0..90 {
            assert_eq!(clock.place(1_000_000 + n * FRAME_US), VideoSlot::At { repeats: 0 }, "frame {n}");
        }
        assert_eq!(clock.next(), 90);
    }

    #[test]
    fn jitter_is_absorbed_and_gaps_repeat_the_previous_frame() {
        let mut clock = VideoClock::new(30);
        assert_eq!(clock.place(0), VideoSlot::At { repeats: 0 });
        assert_eq!(clock.place(FRAME_US + 9_000), VideoSlot::At { repeats: 0 });
        assert_eq!(clock.place(2 * FRAME_US - 7_000), VideoSlot::At { repeats: 0 });
        // Frames 3 and 4 were dropped upstream.
        assert_eq!(clock.place(5 * FRAME_US), VideoSlot::At { repeats: 2 });
        // A duplicate of frame 5 is late.
        assert_eq!(clock.place(5 * FRAME_US + 1_000), VideoSlot::Late);
        assert_eq!(clock.next(), 6);
    }

    #[test]
    fn a_clock_jump_starts_over_instead_of_filling_minutes() {
        let mut clock = VideoClock::new(30);
        clock.place(0);
        clock.place(FRAME_US);
        assert_eq!(clock.place(3_600_000_000), VideoSlot::At { repeats: 0 });
        assert_eq!(clock.place(3_600_000_000 + FRAME_US), VideoSlot::At { repeats: 0 });
        assert_eq!((clock.next(), clock.resets()), (4, 1));
        assert_eq!(clock.place(-5_000_000_000), VideoSlot::At { repeats: 0 });
        assert_eq!(clock.resets(), 2);
    }

    #[test]
    fn contiguous_chunks_place_without_silence() {
        let mut audio = AudioClock::new(48_000);
        for n in 0..100i64 {
            let slot = audio.place(n * 10_000, 480, 0, (n * 480) as u64);
            assert_eq!(slot, AudioSlot::At { silence: 0, skip: 0 }, "chunk {n}");
        }
        assert_eq!(audio.written(), 48_000);
    }

    #[test]
    fn gaps_become_silence_and_overlaps_are_trimmed() {
        let mut audio = AudioClock::new(48_000);
        assert_eq!(audio.place(0, 480, 0, 0), AudioSlot::At { silence: 0, skip: 0 });
        // 100 ms missing.
        assert_eq!(audio.place(110_000, 480, 0, 480), AudioSlot::At { silence: 4_800, skip: 0 });
        assert_eq!(audio.written(), 5_760);
        // Jitter under 20 ms is not a gap: placed right after.
        assert_eq!(audio.place(115_000, 480, 0, 5_760), AudioSlot::At { silence: 0, skip: 0 });
        assert_eq!(audio.written(), 6_240);
        // A 40 ms chunk that overlaps what was placed by 25 ms: trimmed.
        assert_eq!(audio.place(105_000, 1_920, 0, 6_240), AudioSlot::At { silence: 0, skip: 1_200 });
        assert_eq!(audio.written(), 6_960);
        // Entirely in the past.
        assert_eq!(audio.place(0, 480, 0, 6_960), AudioSlot::Late);
        assert_eq!(audio.written(), 6_960);
    }

    #[test]
    fn audio_on_another_clock_is_lined_up_with_the_present() {
        let mut audio = AudioClock::new(48_000);
        // Video started at t = 1000 s; audio stamps count from zero.
        assert_eq!(audio.place(0, 480, 1_000_000_000, 96_000), AudioSlot::At { silence: 96_000, skip: 0 });
        assert_eq!(audio.resets(), 1);
        assert_eq!(audio.place(10_000, 480, 1_000_000_000, 96_480), AudioSlot::At { silence: 0, skip: 0 });
    }

    #[test]
    fn hostile_timestamps_never_overflow() {
        let mut clock = VideoClock::new(30);
        let mut audio = AudioClock::new(48_000);
        for ts in [i64::MIN, i64::MAX, 0, i64::MIN + 1, i64::MAX - 1, -1] {
            let _ = clock.place(ts);
            let origin = clock.origin_us().unwrap();
            let _ = audio.place(ts, 480, origin, clock.sample_at(clock.next(), 48_000));
            let _ = audio.place(ts, u64::from(u32::MAX), i64::MIN, u64::MAX / 2);
        }
        assert!(clock.resets() >= 2);
    }

    #[test]
    fn slots_and_samples_convert_both_ways() {
        let clock = VideoClock::new(30);
        assert_eq!(clock.sample_at(30, 48_000), 48_000);
        assert_eq!(clock.sample_at(1, 48_000), 1_600);
        assert_eq!(clock.slots_for(48_000, 48_000), 30);
        assert_eq!(clock.slots_for(1_599, 48_000), 0);
    }
}
