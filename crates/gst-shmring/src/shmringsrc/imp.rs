//! The element: properties, negotiation, and `create`, which turns the
//! ring's next frame into a buffer (see the module docs of `shmringsrc`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{LazyLock, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use gst_base::subclass::base_src::CreateSuccess;
use gst_base::subclass::prelude::*;
use shmring::{Interrupter, MappedRing, RingFds};

use super::counters::Counters;
use super::payload::{self, Copier, NegotiatedInfo, Payload};
use super::ring_stream::{Received, RingStream, Waited};
use super::settings::{Kind, Selector, Settings, DEFAULT_MAX_HELD};
use super::shape::{CapsKey, Shape};
use super::timing::{self, Continuity, Monotonic, Placed};

static CAT: LazyLock<gst::DebugCategory> =
    LazyLock::new(|| gst::DebugCategory::new("shmringsrc", gst::DebugColorFlags::empty(), Some("shmring ring source")));

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
struct Streaming {
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

#[derive(Default)]
pub struct ShmringSrc {
    settings: Mutex<Settings>,
    streaming: Mutex<Option<Streaming>>,
    /// What `caps` answers once a frame has told the shape.
    caps: Mutex<Option<gst::Caps>>,
    /// `(min, max)` latency once known.
    latency: Mutex<Option<(gst::ClockTime, Option<gst::ClockTime>)>>,
    flushing: AtomicBool,
    /// Interrupts the streaming thread's wait on the ring (`unlock`).
    interrupter: Mutex<Option<Interrupter<MappedRing>>>,
    /// Whether downstream reads `VideoMeta` (the last allocation query).
    video_meta: AtomicBool,
    counters: Counters,
    /// Descriptors taken from `fd-spec` at the first start, duplicated for
    /// later ones (the numbers are not ours to take twice).
    taken_fds: Mutex<Option<(String, RingFds)>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poison| poison.into_inner())
}

#[glib::object_subclass]
impl ObjectSubclass for ShmringSrc {
    const NAME: &'static str = "GstShmringSrc";
    type Type = super::ShmringSrc;
    type ParentType = gst_base::PushSrc;
}

impl ObjectImpl for ShmringSrc {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            vec![
                glib::ParamSpecString::builder("ring")
                    .nick("Ring")
                    .blurb("Name of the ring to consume (served by `shmring create` or a ring owner)")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("fd-spec")
                    .nick("Descriptor spec")
                    .blurb(
                        "Descriptors of an inherited ring instead of a name, written as in SHMRING_FD (the \
                         memfd's number); the element takes ownership of them",
                    )
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("stream")
                    .nick("Stream")
                    .blurb("Stream id (a number) or label (from the ring's announcements); empty: the first stream")
                    .default_value(Some(""))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("kind", Kind::Video)
                    .nick("Kind")
                    .blurb("Which records to take: video frames or audio chunks")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("max-held")
                    .nick("Max held")
                    .blurb(
                        "Frames downstream may hold in the ring at once; further frames are copied into a pool \
                         (0: copy every frame)",
                    )
                    .minimum(0)
                    .maximum(4096)
                    .default_value(DEFAULT_MAX_HELD)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt64::builder("timeout")
                    .nick("Timeout")
                    .blurb("Post an error when no frame of the stream arrives for this long, in ns (0: wait for ever)")
                    .default_value(0)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("eos-when-producers-leave")
                    .nick("EOS when producers leave")
                    .blurb("End the stream once every producer has left the ring and it is drained")
                    .default_value(false)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoxed::builder::<gst::Structure>("stats")
                    .nick("Statistics")
                    .blurb("Buffers pushed in place and copied, frames missing, records stepped over")
                    .read_only()
                    .build(),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut settings = lock(&self.settings);
        match pspec.name() {
            "ring" => {
                settings.ring = value.get::<Option<String>>().expect("type checked upstream").filter(|s| !s.is_empty())
            }
            "fd-spec" => {
                settings.fd_spec =
                    value.get::<Option<String>>().expect("type checked upstream").filter(|s| !s.is_empty())
            }
            "stream" => {
                settings.stream = value.get::<Option<String>>().expect("type checked upstream").unwrap_or_default()
            }
            "kind" => settings.kind = value.get().expect("type checked upstream"),
            "max-held" => settings.max_held = value.get().expect("type checked upstream"),
            "timeout" => settings.timeout = value.get().expect("type checked upstream"),
            "eos-when-producers-leave" => {
                settings.eos_when_producers_leave = value.get().expect("type checked upstream")
            }
            other => unreachable!("no writable property {other}"),
        }
        gst::debug!(CAT, imp = self, "{} set to {:?}", pspec.name(), value);
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let settings = lock(&self.settings);
        match pspec.name() {
            "ring" => settings.ring.to_value(),
            "fd-spec" => settings.fd_spec.to_value(),
            "stream" => settings.stream.to_value(),
            "kind" => settings.kind.to_value(),
            "max-held" => settings.max_held.to_value(),
            "timeout" => settings.timeout.to_value(),
            "eos-when-producers-leave" => settings.eos_when_producers_leave.to_value(),
            "stats" => self.counters.structure().to_value(),
            other => unreachable!("no property {other}"),
        }
    }

    fn constructed(&self) {
        self.parent_constructed();
        let obj = self.obj();
        obj.set_live(true);
        obj.set_format(gst::Format::Time);
    }
}

impl GstObjectImpl for ShmringSrc {}

impl ElementImpl for ShmringSrc {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "shmring source",
                "Source/Video/Audio",
                "Pushes one video or audio stream of a shmring shared-memory ring, each buffer wrapping its frame \
                 in place",
                "shmring developers",
            )
        });
        Some(&*METADATA)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            let mut caps = template_caps(Kind::Video);
            caps.merge(template_caps(Kind::Audio));
            vec![gst::PadTemplate::new("src", gst::PadDirection::Src, gst::PadPresence::Always, &caps)
                .expect("a valid pad template")]
        });
        TEMPLATES.as_ref()
    }
}

/// Every caps the element can produce for `kind`.
fn template_caps(kind: Kind) -> gst::Caps {
    match kind {
        Kind::Video => gst_video::VideoCapsBuilder::new()
            .format_list([
                gst_video::VideoFormat::I420,
                gst_video::VideoFormat::Nv12,
                gst_video::VideoFormat::Rgba,
                gst_video::VideoFormat::Bgra,
            ])
            .build(),
        Kind::Audio => gst::Caps::builder("audio/x-raw")
            .field(
                "format",
                gst::List::new([gst_audio::AudioFormat::F32le.to_str(), gst_audio::AudioFormat::S16le.to_str()]),
            )
            .field("layout", gst::List::new(["non-interleaved", "interleaved"]))
            .field("rate", gst::IntRange::new(1, i32::MAX))
            .field("channels", gst::IntRange::new(1, i32::MAX))
            .build(),
    }
}

impl BaseSrcImpl for ShmringSrc {
    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let settings = lock(&self.settings).clone();
        let selector = Selector::parse(&settings.stream);
        let ring = match (&settings.ring, &settings.fd_spec) {
            (Some(name), None) => RingStream::connect(name, settings.kind, selector)
                .map_err(|e| gst::error_msg!(gst::ResourceError::OpenRead, ("ring {name:?}: {e}")))?,
            (None, Some(spec)) => {
                let fds = self.fds_for(spec)?;
                RingStream::attach(fds, settings.kind, selector)
                    .map_err(|e| gst::error_msg!(gst::ResourceError::OpenRead, ("ring of fd-spec {spec:?}: {e}")))?
            }
            (Some(_), Some(_)) => {
                return Err(gst::error_msg!(gst::ResourceError::Settings, ("set ring or fd-spec, not both")));
            }
            (None, None) => {
                return Err(gst::error_msg!(
                    gst::ResourceError::NotFound,
                    ("no ring to read: set ring (a ring's name) or fd-spec (inherited descriptors)")
                ));
            }
        };
        let max_held = settings.max_held as usize;
        ring.consumer().set_lease_limit(max_held);
        *lock(&self.interrupter) = Some(ring.consumer().interrupter());
        let capacity = ring.consumer().geometry().capacity;
        gst::info!(
            CAT,
            imp = self,
            "consuming ring {} ({capacity} bytes), {}",
            ring.consumer().name(),
            ring.describe()
        );
        self.counters.reset();
        *lock(&self.caps) = None;
        *lock(&self.latency) = None;
        *lock(&self.streaming) = Some(Streaming {
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
        });
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        *lock(&self.interrupter) = None;
        if let Some(mut streaming) = lock(&self.streaming).take() {
            streaming.copier.clear();
            self.post_stats();
        }
        *lock(&self.caps) = None;
        Ok(())
    }

    fn is_seekable(&self) -> bool {
        false
    }

    fn unlock(&self) -> Result<(), gst::ErrorMessage> {
        self.flushing.store(true, Ordering::SeqCst);
        if let Some(interrupter) = lock(&self.interrupter).as_ref() {
            interrupter.interrupt();
        }
        Ok(())
    }

    fn unlock_stop(&self) -> Result<(), gst::ErrorMessage> {
        self.flushing.store(false, Ordering::SeqCst);
        Ok(())
    }

    fn caps(&self, filter: Option<&gst::Caps>) -> Option<gst::Caps> {
        let caps = lock(&self.caps).clone().unwrap_or_else(|| template_caps(lock(&self.settings).kind));
        Some(match filter {
            Some(filter) => filter.intersect_with_mode(&caps, gst::CapsIntersectMode::First),
            None => caps,
        })
    }

    fn negotiate(&self) -> Result<(), gst::LoggableError> {
        // The first frame tells the caps; `create` negotiates then.
        if lock(&self.caps).is_none() {
            return Ok(());
        }
        self.parent_negotiate()
    }

    fn decide_allocation(&self, query: &mut gst::query::Allocation) -> Result<(), gst::LoggableError> {
        let video_meta = query.find_allocation_meta::<gst_video::VideoMeta>().is_some();
        self.video_meta.store(video_meta, Ordering::Relaxed);
        gst::debug!(CAT, imp = self, "downstream reads VideoMeta: {video_meta}");
        self.parent_decide_allocation(query)
    }

    fn query(&self, query: &mut gst::QueryRef) -> bool {
        if let gst::QueryViewMut::Latency(latency) = query.view_mut() {
            if let Some((min, max)) = *lock(&self.latency) {
                latency.set(true, min, max);
                return true;
            }
        }
        BaseSrcImplExt::parent_query(self, query)
    }
}

impl PushSrcImpl for ShmringSrc {
    fn create(&self, _buffer: Option<&mut gst::BufferRef>) -> Result<CreateSuccess, gst::FlowError> {
        let settings = lock(&self.settings).clone();
        let mut guard = lock(&self.streaming);
        let streaming = guard.as_mut().ok_or(gst::FlowError::Flushing)?;
        loop {
            let prepared = match streaming.pending.take() {
                Some(prepared) => prepared,
                None => self.next_prepared(streaming, &settings, None)?.ok_or(gst::FlowError::Error)?,
            };
            if streaming.negotiated.as_ref().map(|n| &n.key) != Some(&prepared.shape.key()) {
                let fps = self.frame_rate(streaming, &settings, &prepared)?;
                self.negotiate_shape(streaming, &prepared.shape, fps)?;
            }
            if let Some(buffer) = self.finish(streaming, prepared)? {
                return Ok(CreateSuccess::NewBuffer(buffer));
            }
        }
    }
}

impl ShmringSrc {
    /// The ring descriptors `fd-spec` names: taken at the first start,
    /// duplicated for the later ones.
    fn fds_for(&self, spec: &str) -> Result<RingFds, gst::ErrorMessage> {
        let mut taken = lock(&self.taken_fds);
        let failed = |e: shmring::Error| gst::error_msg!(gst::ResourceError::OpenRead, ("fd-spec {spec:?}: {e}"));
        if let Some((taken_spec, fds)) = taken.as_ref() {
            if taken_spec == spec {
                return fds.try_clone().map_err(failed);
            }
        }
        // SAFETY: the `fd-spec` property's contract: whoever set it handed
        // these descriptors to this element, and to nothing else. They are
        // taken once; later starts use duplicates of them.
        let fds = unsafe { RingFds::from_spec(spec) }.map_err(failed)?;
        let ours = fds.try_clone().map_err(failed)?;
        *taken = Some((spec.to_string(), fds));
        Ok(ours)
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

    fn post_stats(&self) {
        let message = gst::message::Element::builder(self.counters.structure()).src(&*self.obj()).build();
        let _ = self.obj().post_message(message);
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
