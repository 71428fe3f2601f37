//! Time: producers stamp each frame with its capture time on
//! `CLOCK_MONOTONIC` (microseconds, the same clock in every process); the
//! element maps it onto the pipeline clock and gives the running time as
//! PTS. Also the frame-number bookkeeping that flags gaps, and the frame
//! rate read from the first two frames' stamps.

use gst::prelude::*;

/// `CLOCK_MONOTONIC`, in nanoseconds.
pub fn monotonic_ns() -> i128 {
    // SAFETY: clock_gettime only writes the timespec we own.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: CLOCK_MONOTONIC exists on every Linux; `ts` is valid.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec)
}

/// Where a capture time falls in the pipeline's running time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placed {
    At(gst::ClockTime),
    /// Captured before the pipeline started playing (a frame left in the
    /// ring from before): it has no running time.
    BeforeStart,
    /// No clock or base time yet.
    Unknown,
}

/// Maps `capture_us` (`CLOCK_MONOTONIC`) onto `element`'s running time.
///
/// The offset between the two clocks is sampled at each call: with the
/// system clock (monotonic, GStreamer's default) it is constant; with
/// another pipeline clock (an audio device's) it follows that clock's
/// drift.
pub fn place(element: &gst::Element, capture_us: i64) -> Placed {
    let (Some(clock), Some(base)) = (element.clock(), element.base_time()) else {
        return Placed::Unknown;
    };
    let Some(clock_now) = clock.time() else {
        return Placed::Unknown;
    };
    let clock_now = i128::from(clock_now.nseconds());
    let monotonic_now = monotonic_ns();
    let capture = i128::from(capture_us) * 1000;
    let running = clock_now - (monotonic_now - capture) - i128::from(base.nseconds());
    match u64::try_from(running) {
        Ok(ns) if ns <= gst::ClockTime::MAX.nseconds() => Placed::At(gst::ClockTime::from_nseconds(ns)),
        Ok(_) => Placed::Unknown,
        Err(_) => Placed::BeforeStart,
    }
}

/// What one frame number says about the stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    /// Frames missing just before this one (dropped upstream).
    pub missing: u64,
    /// The stream does not continue smoothly here.
    pub discont: bool,
}

/// Follows one stream's frame numbers.
#[derive(Debug, Default)]
pub struct Continuity {
    next: Option<u64>,
}

impl Continuity {
    pub fn observe(&mut self, number: u64) -> Step {
        let step = match self.next {
            None => Step { missing: 0, discont: true },
            Some(next) if number == next => Step { missing: 0, discont: false },
            Some(next) if number > next => Step { missing: number - next, discont: true },
            // Backwards: a producer that started over.
            Some(_) => Step { missing: 0, discont: true },
        };
        self.next = number.checked_add(1);
        step
    }

    /// The next frame starts a new run (after a renegotiation, say).
    pub fn restart(&mut self) {
        self.next = None;
    }
}

/// Keeps PTS from going backwards: a producer's clock is not trusted to.
#[derive(Debug, Default)]
pub struct Monotonic {
    last: Option<gst::ClockTime>,
}

impl Monotonic {
    /// `pts`, or the last one if `pts` is earlier; and whether it was.
    pub fn clamp(&mut self, pts: gst::ClockTime) -> (gst::ClockTime, bool) {
        match self.last {
            Some(last) if pts < last => (last, true),
            _ => {
                self.last = Some(pts);
                (pts, false)
            }
        }
    }
}

/// Frame rates that producers use: the nearest one within 1% is taken.
const COMMON_RATES: [(i32, i32); 14] = [
    (5, 1),
    (10, 1),
    (12, 1),
    (15, 1),
    (24_000, 1001),
    (24, 1),
    (25, 1),
    (30_000, 1001),
    (30, 1),
    (48, 1),
    (50, 1),
    (60_000, 1001),
    (60, 1),
    (120, 1),
];

/// The frame rate that frames `first` and `second` (frame number, capture
/// microseconds) of one stream imply: the nearest common rate within 1%, else the
/// nearest whole rate within 1%, else 0/1 (variable rate).
pub fn frame_rate(first: (u64, i64), second: (u64, i64)) -> gst::Fraction {
    let frames = second.0.saturating_sub(first.0);
    let micros = second.1.saturating_sub(first.1);
    if frames == 0 || micros <= 0 {
        return gst::Fraction::new(0, 1);
    }
    let rate = frames as f64 * 1e6 / micros as f64;
    let error = |n: f64| (rate - n).abs() / n;
    let nearest = COMMON_RATES
        .iter()
        .map(|&(n, d)| ((n, d), error(f64::from(n) / f64::from(d))))
        .min_by(|a, b| a.1.total_cmp(&b.1));
    if let Some(((n, d), e)) = nearest {
        if e <= 0.01 {
            return gst::Fraction::new(n, d);
        }
    }
    let whole = rate.round();
    if (1.0..=1000.0).contains(&whole) && error(whole) <= 0.01 {
        return gst::Fraction::new(whole as i32, 1);
    }
    gst::Fraction::new(0, 1)
}

/// One frame at `fps`, if the rate is known.
pub fn frame_duration(fps: gst::Fraction) -> Option<gst::ClockTime> {
    let (n, d) = (u64::try_from(fps.numer()).ok()?, u64::try_from(fps.denom()).ok()?);
    if n == 0 {
        return None;
    }
    gst::ClockTime::SECOND.nseconds().mul_div_floor(d, n).map(gst::ClockTime::from_nseconds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn camera_stamps_give_common_rates() {
        // `start + n * 1_000_000 / fps`, as `shmring camera` stamps them.
        assert_eq!(frame_rate((0, 1_000_000), (1, 1_033_333)), gst::Fraction::new(30, 1));
        assert_eq!(frame_rate((4, 0), (6, 80_000)), gst::Fraction::new(25, 1));
        assert_eq!(frame_rate((0, 0), (1, 33_366)), gst::Fraction::new(30_000, 1001));
        assert_eq!(frame_rate((0, 0), (1, 1_000_000 / 7)), gst::Fraction::new(7, 1));
    }

    #[test]
    fn irregular_or_impossible_stamps_give_a_variable_rate() {
        assert_eq!(frame_rate((0, 0), (1, 23_500)), gst::Fraction::new(0, 1));
        assert_eq!(frame_rate((3, 0), (3, 1000)), gst::Fraction::new(0, 1));
        assert_eq!(frame_rate((0, 5000), (1, 1000)), gst::Fraction::new(0, 1));
    }

    #[test]
    fn gaps_and_restarts_are_discontinuities() {
        let mut c = Continuity::default();
        assert_eq!(c.observe(10), Step { missing: 0, discont: true });
        assert_eq!(c.observe(11), Step { missing: 0, discont: false });
        assert_eq!(c.observe(14), Step { missing: 2, discont: true });
        assert_eq!(c.observe(3), Step { missing: 0, discont: true });
        assert_eq!(c.observe(4), Step { missing: 0, discont: false });
        c.restart();
        assert_eq!(c.observe(5), Step { missing: 0, discont: true });
    }

    #[test]
    fn pts_never_goes_backwards() {
        let mut m = Monotonic::default();
        let t = gst::ClockTime::from_mseconds;
        assert_eq!(m.clamp(t(10)), (t(10), false));
        assert_eq!(m.clamp(t(5)), (t(10), true));
        assert_eq!(m.clamp(t(20)), (t(20), false));
    }

    #[test]
    fn frame_durations() {
        assert_eq!(frame_duration(gst::Fraction::new(30, 1)), Some(gst::ClockTime::from_nseconds(33_333_333)));
        assert_eq!(frame_duration(gst::Fraction::new(0, 1)), None);
    }
}
