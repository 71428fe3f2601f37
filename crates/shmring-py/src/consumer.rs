//! `shmring.Consumer`: the one reader of a ring, handing out [`Frame`]s.
//!
//! The Rust consumer is single-threaded; here it sits behind a mutex so any
//! Python thread may call it. Only a waiting `recv` holds that mutex for
//! long, and it holds no GIL meanwhile. Frames never take it: a frame's
//! lease files its release with the consumer's lease table, which the
//! consumer takes at its next call, so dropping a frame on one thread never
//! waits for a `recv` on another.

use std::collections::HashMap;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

use shmring::{AccessPolicy, HugePages, RendezvousServer, RingConsumer, RingOptions, RingView};

use crate::errors::{raise, ring_error, OrRaise};
use crate::frame::{Frame, RingLease};
use crate::media::Media;
use crate::producer::Producer;
use crate::stats::stats_dict;
use crate::wait::{self, Failure};

/// Frames a consumer may hold at once unless told otherwise: enough for a
/// pipeline that keeps a few frames in flight, few enough that a loop that
/// forgets to drop them fails at once instead of filling the ring.
pub const DEFAULT_MAX_FRAMES: usize = 8;

/// Default capacity of a ring created from Python.
const DEFAULT_CAPACITY: u64 = 64 << 20;

struct Ring {
    /// Dropped first: no producer attaches to a ring being closed.
    _server: Option<RendezvousServer>,
    consumer: RingConsumer,
}

/// The consumer of a ring.
#[pyclass(module = "shmring", name = "Consumer", frozen)]
pub struct Consumer {
    /// `None` once closed.
    ring: Mutex<Option<Ring>>,
    /// A read-only mapping of the header, for `stats()` without the
    /// consumer's lock (the numbers `shmring stat` reads).
    view: RingView,
    /// Announced labels by stream id.
    labels: Mutex<HashMap<u32, Arc<str>>>,
    /// The lease limit last set (the consumer keeps it; this says it).
    max_frames: AtomicUsize,
    name: String,
    /// The segment's descriptor (the consumer's own).
    memfd: i32,
    capacity: u64,
    max_payload: u64,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poison| poison.into_inner())
}

fn closed() -> PyErr {
    raise(|e| &e.closed, "the consumer was closed")
}

impl Consumer {
    fn start(consumer: RingConsumer, server: Option<RendezvousServer>, max_frames: usize) -> PyResult<Consumer> {
        consumer.set_lease_limit(max_frames);
        let fds = consumer.fds();
        let view = RingView::open(&fds.memfd).or_raise()?;
        let memfd = fds.memfd.as_raw_fd();
        let geometry = *consumer.geometry();
        Ok(Consumer {
            name: consumer.name().to_string(),
            memfd,
            capacity: geometry.capacity,
            max_payload: geometry.max_payload,
            view,
            labels: Mutex::new(HashMap::new()),
            max_frames: AtomicUsize::new(max_frames),
            ring: Mutex::new(Some(Ring { _server: server, consumer })),
        })
    }

    /// A lease on the next record if there is one now, without waiting.
    /// `None` also when another thread is waiting in `recv` (it will get
    /// the record).
    fn lease_now(&self) -> PyResult<Option<RingLease>> {
        let ring = match self.ring.try_lock() {
            Ok(ring) => ring,
            Err(std::sync::TryLockError::Poisoned(poison)) => poison.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return Ok(None),
        };
        let ring = ring.as_ref().ok_or_else(closed)?;
        ring.consumer.recv_lease_timeout(Duration::ZERO).or_raise()
    }

    /// Waits up to `slice` for a lease (called without the GIL).
    fn lease_within(&self, slice: Duration) -> Result<Option<RingLease>, Failure> {
        let ring = lock(&self.ring);
        let ring = ring.as_ref().ok_or(Failure::Closed)?;
        ring.consumer.recv_lease_timeout(slice).map_err(Failure::Ring)
    }

    /// The Python frame of `lease`: its media header read, the label of its
    /// stream attached (an announcement updates the labels first).
    fn frame(&self, py: Python<'_>, lease: RingLease) -> PyResult<Py<Frame>> {
        let media = Media::read(lease.kind(), lease.bytes());
        let label = match &media {
            Media::Announce(announcement) => {
                let label: Arc<str> = announcement.label.as_str().into();
                lock(&self.labels).insert(announcement.stream_id, label.clone());
                Some(label)
            }
            other => other.stream().and_then(|stream| lock(&self.labels).get(&stream).cloned()),
        };
        Py::new(py, Frame::new(lease, media, label))
    }

    fn with_ring<T>(&self, f: impl FnOnce(&mut Ring) -> PyResult<T>) -> PyResult<T> {
        let mut ring = lock(&self.ring);
        f(ring.as_mut().ok_or_else(closed)?)
    }
}

#[pymethods]
impl Consumer {
    /// Creates ring `name` and becomes its consumer. Producers attach by
    /// name (the ring's rendezvous socket is served while the consumer
    /// lives, unless `serve=False`) or from its descriptors (`fds`).
    #[staticmethod]
    #[allow(clippy::too_many_arguments)] // Python keyword arguments
    #[pyo3(signature = (name, capacity = DEFAULT_CAPACITY, *, max_frames = DEFAULT_MAX_FRAMES, serve = true,
        hugepages = false, prefault = false, stall_timeout = 0.25))]
    fn create(
        py: Python<'_>,
        name: &str,
        capacity: u64,
        max_frames: usize,
        serve: bool,
        hugepages: bool,
        prefault: bool,
        stall_timeout: f64,
    ) -> PyResult<Consumer> {
        let options = RingOptions {
            capacity,
            hugepages: if hugepages { HugePages::IfAvailable } else { HugePages::Never },
            prefault,
            stall_timeout: wait::seconds(Some(stall_timeout))?.unwrap_or_default(),
        };
        let name = name.to_string();
        let (consumer, server) = py
            .detach(move || {
                let consumer = shmring::Consumer::create(&name, &options)?;
                let server = if serve { Some(consumer.serve(AccessPolicy::default())?) } else { None };
                Ok::<_, shmring::Error>((consumer, server))
            })
            .or_raise()?;
        Consumer::start(consumer, server, max_frames)
    }

    /// Creates a ring with no name: producers get its descriptors
    /// (`fds`, `fd_spec`) or are made here (`producer()`).
    #[staticmethod]
    #[pyo3(signature = (capacity = DEFAULT_CAPACITY, *, max_frames = DEFAULT_MAX_FRAMES))]
    fn create_anonymous(capacity: u64, max_frames: usize) -> PyResult<Consumer> {
        let consumer = shmring::Consumer::create_anonymous(&RingOptions::with_capacity(capacity)).or_raise()?;
        Consumer::start(consumer, None, max_frames)
    }

    /// Becomes the consumer of ring `name` (held by `shmring create`, or
    /// left by a consumer that died), through its rendezvous socket.
    /// Records the previous consumer received and did not release are
    /// received again.
    #[staticmethod]
    #[pyo3(signature = (name, *, max_frames = DEFAULT_MAX_FRAMES))]
    fn attach(py: Python<'_>, name: &str, max_frames: usize) -> PyResult<Consumer> {
        let name = name.to_string();
        let consumer = py.detach(move || shmring::Consumer::connect(&name)).or_raise()?;
        Consumer::start(consumer, None, max_frames)
    }

    /// Becomes the consumer of the ring whose descriptors this process
    /// inherited: `spec` is "MEMFD" (see `shmring::RingFds::from_spec`), by
    /// default the `SHMRING_FD` environment variable. The descriptors
    /// become the consumer's: they are closed when it closes.
    #[staticmethod]
    #[pyo3(signature = (spec = None, *, max_frames = DEFAULT_MAX_FRAMES))]
    fn from_fds(spec: Option<&str>, max_frames: usize) -> PyResult<Consumer> {
        let fds = crate::inherited_fds(spec)?;
        let consumer = shmring::Consumer::attach(fds).or_raise()?;
        Consumer::start(consumer, None, max_frames)
    }

    /// The next frame, waiting for at most `timeout` seconds (for ever with
    /// None). Raises `Timeout` when none came, `TooManyHeld` when
    /// `max_frames` frames are alive (nothing is received then), `Corrupt`
    /// for a record the consumer refused (it was stepped over). The wait
    /// releases the GIL and is interrupted by signals (Ctrl-C).
    #[pyo3(signature = (timeout = None))]
    fn recv(slf: &Bound<'_, Self>, timeout: Option<f64>) -> PyResult<Py<Frame>> {
        let (py, this) = (slf.py(), slf.get());
        let timeout = wait::seconds(timeout)?;
        if let Some(lease) = this.lease_now()? {
            return this.frame(py, lease);
        }
        match wait::wait_for(py, timeout, |slice| this.lease_within(slice))? {
            Some(lease) => this.frame(py, lease),
            None => Err(ring_error(shmring::Error::Timeout)),
        }
    }

    /// The next frame if one is there now, else None.
    fn try_recv(slf: &Bound<'_, Self>) -> PyResult<Option<Py<Frame>>> {
        let this = slf.get();
        // Blocking on the lock (not `lease_now`): "nothing now" must mean
        // the ring is empty, not that another thread is waiting.
        let lease = this.with_ring(|ring| ring.consumer.recv_lease_timeout(Duration::ZERO).or_raise())?;
        lease.map(|lease| this.frame(slf.py(), lease)).transpose()
    }

    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    /// Waits for the next frame (iteration ends only by an exception).
    fn __next__(slf: &Bound<'_, Self>) -> PyResult<Py<Frame>> {
        Consumer::recv(slf, None)
    }

    /// The ring's counters, as `shmring stat --json` prints them.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        stats_dict(py, &self.view.stats(), self.view.geometry())
    }

    /// Frames of this consumer alive now (each holds its ring space).
    #[getter]
    fn frames_held(&self) -> PyResult<usize> {
        self.with_ring(|ring| Ok(ring.consumer.leases()))
    }

    /// Most frames alive at once; `recv` raises `TooManyHeld` past it.
    #[getter]
    fn get_max_frames(&self) -> usize {
        self.max_frames.load(Ordering::Relaxed)
    }

    #[setter]
    fn set_max_frames(&self, limit: usize) -> PyResult<()> {
        self.with_ring(|ring| {
            ring.consumer.set_lease_limit(limit);
            // Relaxed: a plain setting, read back by the getter only.
            self.max_frames.store(limit, Ordering::Relaxed);
            Ok(())
        })
    }

    /// Announced labels by stream id (from the announcements received).
    #[getter]
    fn labels<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let dict = PyDict::new(py);
        for (stream, label) in lock(&self.labels).iter() {
            dict.set_item(stream, label.as_ref())?;
        }
        Ok(dict)
    }

    /// A producer in this process, with a slot of its own.
    fn producer(&self) -> PyResult<Producer> {
        let (producer, view) = self.with_ring(|ring| {
            let producer = ring.consumer.producer().or_raise()?;
            let view = RingView::open(&ring.consumer.fds().memfd).or_raise()?;
            Ok((producer, view))
        })?;
        Ok(Producer::new(producer, view))
    }

    /// The ring's name.
    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    /// Data capacity in bytes.
    #[getter]
    fn capacity(&self) -> u64 {
        self.capacity
    }

    /// The largest payload one record can carry.
    #[getter]
    fn max_payload(&self) -> u64 {
        self.max_payload
    }

    /// The ring's descriptors (the memfd: the signalling lives in it), to
    /// hand a child process (`subprocess.Popen(pass_fds=...)`); they stay
    /// this consumer's.
    #[getter]
    fn fds<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(py, [self.memfd])
    }

    /// What a child given `fds` reads from `SHMRING_FD`.
    #[getter]
    fn fd_spec(&self) -> String {
        self.memfd.to_string()
    }

    /// Whether `close()` was called.
    #[getter]
    fn closed(&self) -> bool {
        lock(&self.ring).is_none()
    }

    /// Stops consuming: the ring is marked closed for its producers, and a
    /// named ring's names are removed. Frames still alive stay readable.
    fn close(&self, py: Python<'_>) {
        let ring = lock(&self.ring).take();
        py.detach(move || drop(ring));
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, py: Python<'_>, _exc: &Bound<'_, PyTuple>) -> bool {
        self.close(py);
        false
    }

    fn __repr__(&self) -> String {
        let state = if self.closed() { "closed" } else { "open" };
        format!("<shmring.Consumer {:?} {} bytes, {state}>", self.name, self.capacity)
    }
}
