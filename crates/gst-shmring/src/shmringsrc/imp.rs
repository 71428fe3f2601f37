//! The element's GObject and GStreamer faces: properties, pad template,
//! start/stop, unlock, caps, allocation, latency and `create`, whose steps
//! live in `streaming` (see the module docs of `shmringsrc`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{LazyLock, Mutex, MutexGuard};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use gst_base::subclass::base_src::CreateSuccess;
use gst_base::subclass::prelude::*;
use shmring::{Interrupter, MappedRing, RingFds};

use super::counters::Counters;
use super::properties;
use super::ring_stream::RingStream;
use super::settings::{Kind, Selector, Settings};
use super::shape::template_caps;
use super::streaming::Streaming;

pub(super) static CAT: LazyLock<gst::DebugCategory> =
    LazyLock::new(|| gst::DebugCategory::new("shmringsrc", gst::DebugColorFlags::empty(), Some("shmring ring source")));

#[derive(Default)]
pub struct ShmringSrc {
    pub(super) settings: Mutex<Settings>,
    pub(super) streaming: Mutex<Option<Streaming>>,
    /// What `caps` answers once a frame has told the shape.
    pub(super) caps: Mutex<Option<gst::Caps>>,
    /// `(min, max)` latency once known.
    pub(super) latency: Mutex<Option<(gst::ClockTime, Option<gst::ClockTime>)>>,
    pub(super) flushing: AtomicBool,
    /// Interrupts the streaming thread's wait on the ring (`unlock`).
    interrupter: Mutex<Option<Interrupter<MappedRing>>>,
    /// Whether downstream reads `VideoMeta` (the last allocation query).
    pub(super) video_meta: AtomicBool,
    pub(super) counters: Counters,
    /// Descriptors taken from `fd-spec` at the first start, duplicated for
    /// later ones (the numbers are not ours to take twice).
    taken_fds: Mutex<Option<(String, RingFds)>>,
}

pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
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
        properties::specs()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        properties::set(&mut lock(&self.settings), value, pspec);
        gst::debug!(CAT, imp = self, "{} set to {:?}", pspec.name(), value);
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        properties::get(&lock(&self.settings), pspec).unwrap_or_else(|| self.counters.structure().to_value())
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
        *lock(&self.streaming) = Some(Streaming::new(ring, max_held, capacity));
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        *lock(&self.interrupter) = None;
        if let Some(streaming) = lock(&self.streaming).take() {
            streaming.close();
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
        self.next_buffer(streaming, &settings).map(CreateSuccess::NewBuffer)
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

    pub(super) fn post_stats(&self) {
        let message = gst::message::Element::builder(self.counters.structure()).src(&*self.obj()).build();
        let _ = self.obj().post_message(message);
    }
}
