//! The ring side of the element: attaching as the ring's consumer, picking
//! one stream out of its records, reading each frame's media header once,
//! and telling a quiet ring from one that has ended.

use std::time::{Duration, Instant};

use shmring::{Consumer, Error, MappedRing, RingConsumer, RingFds};
use shmring_media::{Announcement, AudioFrame, VideoFrame, KIND_ANNOUNCE};

use super::counters::Counters;
use super::settings::{Kind, Selector};
use super::shape::{AudioShape, Shape, VideoShape};

pub type RingFrame<'a> = shmring::Frame<'a, MappedRing>;
pub type RingLease = shmring::Lease<MappedRing>;

/// How often a quiet ring is looked at: whether its producers left,
/// whether its owner is gone.
const CHECK_INTERVAL: Duration = Duration::from_millis(250);
/// How long a named ring must stay quiet before the element asks whether
/// its owner is gone.
const REMOVED_AFTER: Duration = Duration::from_secs(1);
/// Corrupt records in a row that make the ring unusable, not one bad
/// record.
const CORRUPT_IN_A_ROW: u32 = 8;

/// A frame of the wanted stream, its header read and checked.
pub struct Received<'a> {
    pub frame: RingFrame<'a>,
    pub shape: Shape,
    pub capture_us: i64,
    pub number: u64,
    /// Bytes of the ring in use (not yet released), this frame included.
    pub ring_used: u64,
}

pub enum Waited<'a> {
    Frame(Received<'a>),
    /// Nothing arrived within the slice.
    Nothing,
    /// The wait ended before its slice did, with nothing: an
    /// [`Interrupter`](shmring::Interrupter) cut it short (`unlock`).
    Interrupted,
    /// The ring refused a record (counted, stepped over): the text to warn
    /// with.
    Corrupt(String),
    /// Every producer left and the ring is drained.
    ProducersLeft,
}

pub struct RingStream {
    consumer: RingConsumer,
    /// The name the ring was attached by, to notice its removal.
    name: Option<String>,
    kind: Kind,
    selector: Selector,
    /// The stream followed, once known.
    stream_id: Option<u32>,
    watch: Watch,
}

/// What the element has seen of the ring lately.
struct Watch {
    saw_producer: bool,
    last_record: Instant,
    last_check: Instant,
    corrupt_in_a_row: u32,
}

impl RingStream {
    /// Becomes the consumer of ring `name` (served by `shmring create` or
    /// another owner).
    pub fn connect(name: &str, kind: Kind, selector: Selector) -> Result<RingStream, Error> {
        let consumer = Consumer::connect(name)?;
        Ok(RingStream::new(consumer, Some(name.to_string()), kind, selector))
    }

    /// Becomes the consumer of the ring whose descriptors these are.
    pub fn attach(fds: RingFds, kind: Kind, selector: Selector) -> Result<RingStream, Error> {
        Ok(RingStream::new(Consumer::attach(fds)?, None, kind, selector))
    }

    fn new(consumer: RingConsumer, name: Option<String>, kind: Kind, selector: Selector) -> RingStream {
        let now = Instant::now();
        let stream_id = match selector {
            Selector::Id(id) => Some(id),
            _ => None,
        };
        RingStream {
            consumer,
            name,
            kind,
            selector,
            stream_id,
            watch: Watch { saw_producer: false, last_record: now, last_check: now, corrupt_in_a_row: 0 },
        }
    }

    pub fn consumer(&self) -> &RingConsumer {
        &self.consumer
    }

    pub fn describe(&self) -> String {
        match self.stream_id {
            Some(id) => format!("stream {id}"),
            None => self.selector.describe(),
        }
    }

    /// Waits up to `slice` for the next frame of the stream. Records of
    /// other streams are stepped over (counted); announcements resolve a
    /// label. `Err` is the text of an error that ends the stream.
    pub fn wait(&mut self, slice: Duration, watch_producers: bool, counters: &Counters) -> Result<Waited<'_>, String> {
        let deadline = Instant::now() + slice;
        let consumer = &self.consumer;
        loop {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            let frame = match consumer.recv_timeout(deadline - now) {
                Ok(Some(frame)) => frame,
                // `recv_timeout` gives nothing before its deadline only
                // when interrupted.
                Ok(None) if Instant::now() < deadline => return Ok(Waited::Interrupted),
                Ok(None) => break,
                Err(Error::Corrupt { position, reason }) => {
                    Counters::bump(&counters.corrupt);
                    self.watch.corrupt_in_a_row += 1;
                    let text = Error::Corrupt { position, reason }.to_string();
                    if self.watch.corrupt_in_a_row >= CORRUPT_IN_A_ROW {
                        return Err(format!("ring refused {CORRUPT_IN_A_ROW} records in a row; the last: {text}"));
                    }
                    return Ok(Waited::Corrupt(text));
                }
                Err(e) => return Err(e.to_string()),
            };
            self.watch.last_record = Instant::now();
            self.watch.corrupt_in_a_row = 0;
            // A record means a producer was there, whether or not a quiet
            // moment let `check_quiet_ring` see it attached.
            self.watch.saw_producer = true;
            if frame.kind() == KIND_ANNOUNCE {
                if let (Selector::Label(label), Ok(announced)) = (&self.selector, Announcement::parse(&frame)) {
                    if announced.label == *label && announced.kind == self.kind.record_kind() {
                        self.stream_id = Some(announced.stream_id);
                    }
                }
                continue;
            }
            if frame.kind() != self.kind.record_kind() {
                Counters::bump(&counters.other_streams);
                continue;
            }
            let Some((shape, stream_id, capture_us, number)) = read_header(&frame, self.kind) else {
                Counters::bump(&counters.invalid);
                continue;
            };
            let wanted = match (&self.selector, self.stream_id) {
                (Selector::First, None) => {
                    self.stream_id = Some(stream_id);
                    true
                }
                (_, Some(id)) => id == stream_id,
                (_, None) => false,
            };
            if !wanted {
                Counters::bump(&counters.other_streams);
                continue;
            }
            let ring_used = consumer.used_bytes();
            return Ok(Waited::Frame(Received { frame, shape, capture_us, number, ring_used }));
        }
        check_quiet_ring(consumer, &mut self.watch, self.name.as_deref(), watch_producers)
    }
}

/// On a quiet ring, now and then: have the producers left, is the ring's
/// owner gone?
fn check_quiet_ring<'a>(
    consumer: &RingConsumer,
    watch: &mut Watch,
    name: Option<&str>,
    watch_producers: bool,
) -> Result<Waited<'a>, String> {
    let now = Instant::now();
    if now.duration_since(watch.last_check) < CHECK_INTERVAL {
        return Ok(Waited::Nothing);
    }
    watch.last_check = now;
    let stats = consumer.stats();
    if !stats.producers.is_empty() {
        watch.saw_producer = true;
    } else if watch_producers && watch.saw_producer && stats.peek == stats.write {
        return Ok(Waited::ProducersLeft);
    }
    let quiet = now.duration_since(watch.last_record);
    if let Some(name) = name {
        if quiet >= REMOVED_AFTER && owner_gone(name) {
            return Err(format!(
                "ring {name:?} was removed (nothing serves it by name any more) and nothing arrived for {:.1} s",
                quiet.as_secs_f64()
            ));
        }
    }
    Ok(Waited::Nothing)
}

/// The shape, stream id, capture time and frame number in a frame's media
/// header, or `None` if the header is refused.
fn read_header(frame: &RingFrame<'_>, kind: Kind) -> Option<(Shape, u32, i64, u64)> {
    match kind {
        Kind::Video => {
            let video = VideoFrame::parse(frame).ok()?;
            Some((Shape::Video(VideoShape::of(&video)), video.stream_id(), video.timestamp_us(), video.frame_number()))
        }
        Kind::Audio => {
            let audio = AudioFrame::parse(frame).ok()?;
            Some((Shape::Audio(AudioShape::of(&audio)), audio.stream_id(), audio.timestamp_us(), audio.frame_number()))
        }
    }
}

/// Whether nothing serves ring `name` by name any more: its rendezvous
/// socket is gone, or nobody listens on it (its owner was killed).
fn owner_gone(name: &str) -> bool {
    let path = shmring::socket_path(name);
    if !path.exists() {
        return true;
    }
    matches!(
        std::os::unix::net::UnixStream::connect(&path),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused
    )
}
