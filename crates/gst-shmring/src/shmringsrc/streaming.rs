//! What the element holds between `start` and `stop`, and the steps of
//! `create`: wait for the stream's next frame, lease or copy it, read the
//! frame rate, negotiate its caps, stamp and flag its buffer.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;

use super::counters::Counters;
use super::imp::{lock, ShmringSrc, CAT};
use super::payload::{self, Copier, NegotiatedInfo, Payload};
use super::ring_stream::{Received, RingStream, Waited};
use super::settings::Settings;
use super::shape::{CapsKey, Shape};
use super::timing::{self, Continuity, Monotonic, Placed};

/// How long one wait on the ring lasts before the element looks at its
/// `timeout` and at the ring's producers again (`unlock` interrupts a wait
/// at once).
const WAIT_SLICE: Duration = Duration::from_millis(250);
/// How long the first video frame waits for a second one, whose capture
/// time gives the frame rate.
const RATE_LOOKAHEAD: Duration = Duration::from_secs(1);

/// A frame received and made ready (leased or copied), not yet stamped.
struct Prepared {
    payload: Payload,
    shape: Shape,
    capture_us: i64,
    number: u64,
}

/// The caps in force.
struct Negotiated {
    key: CapsKey,
    info: NegotiatedInfo,
    frame_duration: Option<gst::ClockTime>,
}

/// Everything between `start` and `stop`.
pub struct Streaming {
    ring: RingStream,
    copier: Copier,
    continuity: Continuity,
    monotonic: Monotonic,
    negotiated: Option<Negotiated>,
    /// The video frame rate, once read; kept over size changes.
    fps: Option<gst::Fraction>,
    /// A frame received ahead (to read the frame rate), pushed next.
    pending: Option<Prepared>,
    last_frame: Instant,
    max_held: usize,
    capacity: u64,
}

impl Streaming {
    pub fn new(ring: RingStream, max_held: usize, capacity: u64) -> Streaming {
        Streaming {
            ring,
            copier: Copier::default(),
            continuity: Continuity::default(),
            monotonic: Monotonic::default(),
            negotiated: None,
            fps: None,
            pending: None,
            last_frame: Instant::now(),
            max_held,
            capacity,
        }
    }

    /// Ends streaming: the pool's buffers go.
    pub fn close(mut self) {
        self.copier.clear();
    }
}

impl ShmringSrc {
    /// The next buffer of the stream, caps negotiated for it.
    pub(super) fn next_buffer(
        &self,
        streaming: &mut Streaming,
        settings: &Settings,
    ) -> Result<gst::Buffer, gst::FlowError> {
        loop {
            let prepared = match streaming.pending.take() {
                Some(prepared) => prepared,
                None => self.next_prepared(streaming, settings, None)?.ok_or(gst::FlowError::Error)?,
            };
            if streaming.negotiated.as_ref().map(|n| &n.key) != Some(&prepared.shape.key()) {
                let fps = self.frame_rate(streaming, settings, &prepared)?;
                self.negotiate_shape(streaming, &prepared.shape, fps)?;
            }
            if let Some(buffer) = self.finish(streaming, prepared)? {
                return Ok(buffer);
            }
        }
    }

    /// Waits for the next frame of the stream, as long as it takes or
    /// until `deadline`, and makes it ready: leased in place, or copied
    /// when downstream holds too much of the ring.
    fn next_prepared(
        &self,
        streaming: &mut Streaming,
        settings: &Settings,
        deadline: Option<Instant>,
    ) -> Result<Option<Prepared>, gst::FlowError> {
        loop {
            if self.flushing.load(Ordering::SeqCst) {
                return Err(gst::FlowError::Flushing);
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                return Ok(None);
            }
            if settings.timeout > 0
                && now.duration_since(streaming.last_frame) >= Duration::from_nanos(settings.timeout)
            {
                gst::element_imp_error!(
                    self,
                    gst::ResourceError::Read,
                    ("no frame of {} for {:.3} s (timeout)", streaming.ring.describe(), settings.timeout as f64 / 1e9),
                    ["set timeout=0 to wait for ever"]
                );
                return Err(gst::FlowError::Error);
            }
            let waited = streaming.ring.wait(WAIT_SLICE, settings.eos_when_producers_leave, &self.counters);
            match waited {
                Err(text) => {
                    gst::element_imp_error!(self, gst::ResourceError::Read, ("{text}"), ["the ring stops this stream"]);
                    return Err(gst::FlowError::Error);
                }
                Ok(Waited::Nothing) => continue,
                Ok(Waited::Interrupted) => {
                    Counters::bump(&self.counters.interrupted_waits);
                    continue;
                }
                Ok(Waited::Corrupt(text)) => {
                    gst::element_imp_warning!(
                        self,
                        gst::StreamError::Decode,
                        ("{text}"),
                        ["the record was counted and stepped over"]
                    );
                    continue;
                }
                Ok(Waited::ProducersLeft) => {
                    gst::info!(CAT, imp = self, "every producer left and the ring is drained: end of stream");
                    self.post_stats();
                    return Err(gst::FlowError::Eos);
                }
                Ok(Waited::Frame(received)) => {
                    streaming.last_frame = Instant::now();
                    let (max_held, capacity) = (streaming.max_held, streaming.capacity);
                    return prepare(received, max_held, capacity, &mut streaming.copier, &self.counters).map(Some);
                }
            }
        }
    }

    /// The frame rate for the caps of `prepared`'s shape: known already,
    /// or read from the capture times of this frame and the next one
    /// (which is kept to be pushed after it).
    fn frame_rate(
        &self,
        streaming: &mut Streaming,
        settings: &Settings,
        prepared: &Prepared,
    ) -> Result<gst::Fraction, gst::FlowError> {
        if !matches!(prepared.shape, Shape::Video(_)) {
            return Ok(gst::Fraction::new(0, 1));
        }
        if let Some(fps) = streaming.fps {
            return Ok(fps);
        }
        let next = match streaming.pending.take() {
            Some(next) => Some(next),
            None => self.next_prepared(streaming, settings, Some(Instant::now() + RATE_LOOKAHEAD))?,
        };
        let fps = next
            .as_ref()
            .filter(|next| next.shape.key() == prepared.shape.key())
            .map_or(gst::Fraction::new(0, 1), |next| {
                timing::frame_rate((prepared.number, prepared.capture_us), (next.number, next.capture_us))
            });
        gst::debug!(CAT, imp = self, "frame rate {fps} from the first two frames");
        streaming.pending = next;
        streaming.fps = Some(fps);
        Ok(fps)
    }

    /// Sets the caps of `shape` and negotiates them downstream.
    fn negotiate_shape(
        &self,
        streaming: &mut Streaming,
        shape: &Shape,
        fps: gst::Fraction,
    ) -> Result<(), gst::FlowError> {
        let not_negotiated = |what: String| {
            gst::element_imp_error!(
                self,
                gst::CoreError::Negotiation,
                ("{what}"),
                ["caps from the frame's media header"]
            );
            gst::FlowError::NotNegotiated
        };
        let (caps, info, frame_duration) = match shape {
            Shape::Video(video) => {
                let info = video.info(fps).map_err(|e| not_negotiated(format!("{video:?}: {e}")))?;
                let caps = info.to_caps().map_err(|e| not_negotiated(e.to_string()))?;
                (caps, NegotiatedInfo::Video(info), timing::frame_duration(fps))
            }
            Shape::Audio(audio) => {
                let info = audio.info().map_err(|e| not_negotiated(format!("{audio:?}: {e}")))?;
                let caps = info.to_caps().map_err(|e| not_negotiated(e.to_string()))?;
                (caps, NegotiatedInfo::Audio(info), Some(audio.duration()))
            }
        };
        let renegotiation = streaming.negotiated.is_some();
        gst::info!(CAT, imp = self, "caps {caps}");
        *lock(&self.caps) = Some(caps.clone());
        let min = frame_duration.unwrap_or(gst::ClockTime::ZERO);
        let frames_in_ring = streaming.capacity / (shape.range().len().max(1) as u64);
        *lock(&self.latency) = Some((min, Some(min * frames_in_ring.max(1))));
        if !self.obj().negotiate() {
            return Err(not_negotiated(format!("downstream refused {caps}")));
        }
        streaming.negotiated = Some(Negotiated { key: shape.key(), info, frame_duration });
        streaming.continuity.restart();
        if renegotiation {
            Counters::bump(&self.counters.renegotiations);
        }
        let _ = self.obj().post_message(gst::message::Latency::builder().src(&*self.obj()).build());
        Ok(())
    }

    /// The buffer of `prepared`, stamped and flagged; `None` for a frame
    /// captured before the pipeline started.
    fn finish(&self, streaming: &mut Streaming, prepared: Prepared) -> Result<Option<gst::Buffer>, gst::FlowError> {
        let Prepared { payload, shape, capture_us, number } = prepared;
        let negotiated = streaming.negotiated.as_ref().ok_or(gst::FlowError::NotNegotiated)?;
        let pts = if self.obj().does_timestamp() {
            None
        } else {
            match timing::place(self.obj().upcast_ref(), capture_us) {
                Placed::At(pts) => {
                    let (pts, clamped) = streaming.monotonic.clamp(pts);
                    if clamped {
                        Counters::bump(&self.counters.backwards);
                    }
                    Some(pts)
                }
                Placed::BeforeStart => {
                    Counters::bump(&self.counters.before_start);
                    streaming.continuity.restart();
                    return Ok(None);
                }
                Placed::Unknown => None,
            }
        };
        let mut buffer = match payload {
            Payload::InPlace(lease) => {
                let video_meta = self.video_meta.load(Ordering::Relaxed);
                payload::in_place(lease, &shape, &negotiated.info, video_meta, &mut streaming.copier, &self.counters)?
            }
            Payload::Copied(buffer) => buffer,
        };
        let step = streaming.continuity.observe(number);
        Counters::add(&self.counters.missing, step.missing);
        {
            let buffer = buffer.get_mut().ok_or(gst::FlowError::Error)?;
            buffer.set_pts(pts);
            match &shape {
                Shape::Video(_) => {
                    buffer.set_duration(negotiated.frame_duration);
                    buffer.set_offset(number);
                    buffer.set_offset_end(number.saturating_add(1));
                }
                Shape::Audio(audio) => buffer.set_duration(audio.duration()),
            }
            if step.discont {
                buffer.set_flags(gst::BufferFlags::DISCONT);
                Counters::bump(&self.counters.discont);
            }
        }
        Counters::bump(&self.counters.buffers);
        gst::trace!(CAT, imp = self, "frame {number}: {buffer:?}");
        Ok(Some(buffer))
    }
}

/// Leases the frame in place when downstream may hold more of the ring,
/// else copies it (and counts the copy).
fn prepare(
    received: Received<'_>,
    max_held: usize,
    capacity: u64,
    copier: &mut Copier,
    counters: &Counters,
) -> Result<Prepared, gst::FlowError> {
    let Received { frame, shape, capture_us, number, ring_used } = received;
    let room = max_held > 0 && ring_used <= capacity / 2;
    let frame = if room {
        match frame.into_lease() {
            Ok(lease) => return Ok(Prepared { payload: Payload::InPlace(lease), shape, capture_us, number }),
            Err(frame) => frame,
        }
    } else {
        frame
    };
    Counters::bump(&counters.copied_held);
    let payload = Payload::Copied(copier.copy(frame.bytes(), &shape)?);
    Ok(Prepared { payload, shape, capture_us, number })
}
