//! `shmring.Producer` and `shmring.Reservation`: writing records from
//! Python, by copy (`send`) or in place (`reserve`, fill a writable
//! memoryview, `commit`).
//!
//! A Rust reservation borrows its producer mutably for as long as it
//! lives, which a Python object cannot express. So the producer lives in
//! a heap cell of its own (a raw pointer from `Box::into_raw`), a
//! reservation borrows it for `'static`, and the Python producer refuses
//! every call while a reservation is open; the reservation holds the
//! Python producer alive, and the cell is freed only when neither is left.

use std::os::raw::c_int;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use pyo3::buffer::PyBuffer;
use pyo3::exceptions::PyValueError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

use shmring::{FullPolicy, MappedRing, RingFds, RingProducer, RingView};
use shmring_media::{write_announce, Announcement, KIND_AUDIO, KIND_VIDEO};

use crate::errors::{raise, OrRaise};
use crate::stats::stats_dict;
use crate::wait;

type RingReservation = shmring::Reservation<'static, MappedRing>;

/// A producer of a ring.
#[pyclass(module = "shmring", name = "Producer", frozen)]
pub struct Producer {
    cell: Mutex<Cell>,
    view: RingView,
    max_payload: usize,
    slot: usize,
}

/// The producer's heap cell and who may touch it.
struct Cell {
    /// From `Box::into_raw`; null once closed.
    producer: *mut RingProducer,
    /// A `Reservation` object borrows `*producer`: nothing else may touch it.
    reserving: bool,
}

// SAFETY: the cell owns the producer it points to (a `Box` made raw), and
// `RingProducer` is `Send`; the pointer is only dereferenced under the
// mutex, or by the one open reservation while `reserving` bars every other
// use.
unsafe impl Send for Cell {}

impl Drop for Cell {
    fn drop(&mut self) {
        // A reservation keeps the Python producer (and so this cell) alive
        // while it is open.
        debug_assert!(!self.reserving, "a cell is dropped only with no reservation open");
        if !self.producer.is_null() {
            // SAFETY: made by `Box::into_raw` in `Producer::new`, freed
            // only here or in `close` (which nulls it), borrowed by nobody.
            drop(unsafe { Box::from_raw(self.producer) });
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poison| poison.into_inner())
}

fn closed() -> PyErr {
    raise(|e| &e.closed, "the producer was closed")
}

fn busy() -> PyErr {
    raise(|e| &e.exported, "a reservation of this producer is open: commit or abort it first")
}

fn policy_name(policy: FullPolicy) -> &'static str {
    match policy {
        FullPolicy::Drop => "drop",
        FullPolicy::Fail => "fail",
        FullPolicy::Block(_) => "block",
    }
}

impl Producer {
    pub fn new(producer: RingProducer, view: RingView) -> Producer {
        Producer {
            max_payload: producer.max_payload(),
            slot: producer.slot(),
            view,
            cell: Mutex::new(Cell { producer: Box::into_raw(Box::new(producer)), reserving: false }),
        }
    }

    fn attach_fds(fds: RingFds) -> shmring::Result<Producer> {
        let view = RingView::open(&fds.memfd)?;
        Ok(Producer::new(RingProducer::attach(fds)?, view))
    }

    /// `f` of the producer, unless it is closed or lent to a reservation.
    fn with<T>(&self, f: impl FnOnce(&mut RingProducer) -> PyResult<T>) -> PyResult<T> {
        let cell = lock(&self.cell);
        if cell.reserving {
            return Err(busy());
        }
        if cell.producer.is_null() {
            return Err(closed());
        }
        let producer = cell.producer;
        // SAFETY: a live boxed producer (not null), borrowed by nobody else
        // (no reservation open, and the mutex held until `f` returns).
        f(unsafe { &mut *producer })
    }

    /// Reserves `len` bytes, lending the producer to the reservation.
    fn reserve_slot(&self, py: Python<'_>, len: usize) -> PyResult<RingReservation> {
        let producer = {
            let mut cell = lock(&self.cell);
            if cell.reserving {
                return Err(busy());
            }
            if cell.producer.is_null() {
                return Err(closed());
            }
            cell.reserving = true;
            cell.producer
        };
        struct Lent(*mut RingProducer);
        // SAFETY: the pointer goes with the exclusive loan just taken.
        unsafe impl Send for Lent {}
        let lent = Lent(producer);
        let reserved = py.detach(move || {
            let lent = lent;
            // SAFETY: the producer is live and lent to this reservation
            // alone (`reserving` set above bars every other use) until the
            // reservation ends (`end_reservation`), and the cell outlives
            // it: the `Reservation` object holds this Python producer.
            unsafe { &mut *lent.0 }.reserve(len)
        });
        match reserved {
            Ok(reservation) => Ok(reservation),
            Err(e) => {
                lock(&self.cell).reserving = false;
                Err(e).or_raise()
            }
        }
    }

    /// Called when a reservation has ended (committed, aborted, dropped).
    fn end_reservation(&self) {
        lock(&self.cell).reserving = false;
    }
}

#[pymethods]
impl Producer {
    /// Attaches to ring `name` through its consumer's rendezvous socket.
    #[staticmethod]
    fn attach(py: Python<'_>, name: &str) -> PyResult<Producer> {
        let name = name.to_string();
        py.detach(move || Producer::attach_fds(RingFds::request(&name)?)).or_raise()
    }

    /// Attaches from inherited descriptors: `spec` is "MEMFD" (optionally
    /// ",token=HEX,live=FD", a liveness pair its launcher made), by default
    /// `SHMRING_FD`. The descriptors
    /// become the producer's.
    #[staticmethod]
    #[pyo3(signature = (spec = None))]
    fn from_fds(spec: Option<&str>) -> PyResult<Producer> {
        Producer::attach_fds(crate::inherited_fds(spec)?).or_raise()
    }

    /// Copies `data` (any contiguous buffer) into the ring as one record
    /// of `kind`. On a full ring the full policy applies: `Dropped` (the
    /// default; counted), `Full`, or a wait then `Timeout`.
    #[pyo3(signature = (data, kind = 0, flags = 0))]
    fn send(&self, py: Python<'_>, data: PyBuffer<u8>, kind: u32, flags: u32) -> PyResult<()> {
        let mut reservation = self.reserve_slot(py, data.len_bytes())?;
        reservation.set_kind(kind);
        reservation.set_flags(flags);
        let copied = data.copy_to_slice(py, &mut reservation);
        if copied.is_ok() {
            reservation.commit();
        } else {
            drop(reservation);
        }
        self.end_reservation();
        copied
    }

    /// Claims `len` bytes of the ring to fill in place: write them through
    /// `memoryview(reservation)` (or `write`), then `commit()`. Leaving a
    /// `with` block commits (aborts on an exception); a reservation
    /// dropped uncommitted becomes a skip record the consumer steps over.
    #[pyo3(signature = (len, kind = 0, flags = 0))]
    fn reserve(slf: &Bound<'_, Self>, len: usize, kind: u32, flags: u32) -> PyResult<Reservation> {
        let mut reservation = slf.get().reserve_slot(slf.py(), len)?;
        reservation.set_kind(kind);
        reservation.set_flags(flags);
        let data = reservation.as_mut_ptr();
        Ok(Reservation {
            open: Mutex::new(Open { reservation: Some(reservation), exports: 0, data, kind, flags }),
            producer: slf.clone().unbind(),
            len,
        })
    }

    /// Announces stream `stream` of `kind` ("video" or "audio") under
    /// `label`, for every consumer to name what it receives.
    #[pyo3(signature = (stream, kind, label, timestamp_us = 0))]
    fn announce(&self, stream: u32, kind: &str, label: String, timestamp_us: i64) -> PyResult<()> {
        let kind = match kind {
            "video" => KIND_VIDEO,
            "audio" => KIND_AUDIO,
            other => return Err(PyValueError::new_err(format!("kind must be \"video\" or \"audio\", not {other:?}"))),
        };
        let announcement = Announcement { stream_id: stream, kind, timestamp_us, label };
        self.with(|producer| write_announce(producer, &announcement).or_raise())
    }

    /// What a full ring does to a record: "drop" (count it and raise
    /// `Dropped`), "fail" (raise `Full`), or "block" (wait up to `timeout`
    /// seconds for space, then drop it and raise `Timeout`).
    #[pyo3(signature = (policy, timeout = None))]
    fn set_full_policy(&self, policy: &str, timeout: Option<f64>) -> PyResult<()> {
        let policy = match (policy, wait::seconds(timeout)?) {
            ("drop", None) => FullPolicy::Drop,
            ("fail", None) => FullPolicy::Fail,
            ("block", Some(timeout)) => FullPolicy::Block(timeout),
            ("block", None) => FullPolicy::Block(Duration::from_secs(u64::from(u32::MAX))),
            _ => {
                return Err(PyValueError::new_err(format!(
                    "policy must be \"drop\", \"fail\" or \"block\" (with a timeout only for \"block\"), not {policy:?}"
                )))
            }
        };
        self.with(|producer| {
            producer.set_full_policy(policy);
            Ok(())
        })
    }

    /// The full-ring policy: "drop", "fail" or "block".
    #[getter]
    fn full_policy(&self) -> PyResult<&'static str> {
        self.with(|producer| Ok(policy_name(producer.full_policy())))
    }

    /// The largest payload one record can carry.
    #[getter]
    fn max_payload(&self) -> usize {
        self.max_payload
    }

    /// This producer's slot in the ring's producer table.
    #[getter]
    fn slot(&self) -> usize {
        self.slot
    }

    /// The ring's counters, as `shmring stat --json` prints them.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        stats_dict(py, &self.view.stats(), self.view.geometry())
    }

    /// Gives the producer's slot back. Refused while a reservation is open.
    fn close(&self) -> PyResult<()> {
        let mut cell = lock(&self.cell);
        if cell.reserving {
            return Err(busy());
        }
        let producer = std::mem::replace(&mut cell.producer, std::ptr::null_mut());
        if !producer.is_null() {
            // SAFETY: made by `Box::into_raw`, not lent (checked above), and
            // no longer reachable from the cell.
            drop(unsafe { Box::from_raw(producer) });
        }
        Ok(())
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, _exc: &Bound<'_, PyTuple>) -> PyResult<bool> {
        self.close()?;
        Ok(false)
    }
}

/// Room for one record, claimed in the ring and not yet published.
#[pyclass(module = "shmring", name = "Reservation", frozen)]
pub struct Reservation {
    open: Mutex<Open>,
    producer: Py<Producer>,
    len: usize,
}

struct Open {
    /// `None` once committed or aborted.
    reservation: Option<RingReservation>,
    exports: usize,
    /// Where the reserved bytes start.
    data: *mut u8,
    /// What was set on the reservation, to read back.
    kind: u32,
    flags: u32,
}

// SAFETY: `data` points into the reservation (exclusively ours until it is
// committed or aborted), which is `Send`; both are used under the mutex.
unsafe impl Send for Open {}

fn finished() -> PyErr {
    raise(|e| &e.released, "the reservation was committed or aborted")
}

impl Reservation {
    fn open(&self) -> MutexGuard<'_, Open> {
        lock(&self.open)
    }

    /// Ends the reservation: publishes it (`commit`) or a skip record.
    fn finish(&self, commit: bool) -> PyResult<()> {
        let mut open = self.open();
        if open.exports > 0 {
            let message = format!(
                "the reservation is still borrowed by {} memoryview(s) or array(s): release them first",
                open.exports
            );
            return Err(raise(|e| &e.exported, message));
        }
        let Some(reservation) = open.reservation.take() else {
            return Err(finished());
        };
        if commit {
            reservation.commit();
        } else {
            drop(reservation);
        }
        drop(open);
        self.producer.get().end_reservation();
        Ok(())
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        // Exports hold this object alive, so none is left here.
        let reservation = self.open.get_mut().unwrap_or_else(|poison| poison.into_inner()).reservation.take();
        if let Some(reservation) = reservation {
            drop(reservation); // a skip record
            self.producer.get().end_reservation();
        }
    }
}

#[pymethods]
impl Reservation {
    /// Publishes the record. Refused while memoryviews or arrays over the
    /// reservation are alive.
    fn commit(&self) -> PyResult<()> {
        self.finish(true)
    }

    /// Gives the space up (a skip record the consumer never sees).
    fn abort(&self) -> PyResult<()> {
        self.finish(false)
    }

    /// Copies `data` into the reservation at `offset`.
    #[pyo3(signature = (data, offset = 0))]
    fn write(&self, py: Python<'_>, data: PyBuffer<u8>, offset: usize) -> PyResult<()> {
        let mut open = self.open();
        let reservation = open.reservation.as_mut().ok_or_else(finished)?;
        let end = offset.checked_add(data.len_bytes()).filter(|&end| end <= self.len).ok_or_else(|| {
            PyValueError::new_err(format!(
                "{} bytes at offset {offset} do not fit a reservation of {}",
                data.len_bytes(),
                self.len
            ))
        })?;
        data.copy_to_slice(py, &mut reservation[offset..end])
    }

    /// The record kind the consumer will see.
    #[getter]
    fn get_kind(&self) -> u32 {
        self.open().kind
    }

    #[setter]
    fn set_kind(&self, kind: u32) -> PyResult<()> {
        let mut open = self.open();
        open.reservation.as_mut().ok_or_else(finished)?.set_kind(kind);
        open.kind = kind;
        Ok(())
    }

    /// Application flags carried with the record.
    #[getter]
    fn get_flags(&self) -> u32 {
        self.open().flags
    }

    #[setter]
    fn set_flags(&self, flags: u32) -> PyResult<()> {
        let mut open = self.open();
        open.reservation.as_mut().ok_or_else(finished)?.set_flags(flags);
        open.flags = flags;
        Ok(())
    }

    /// Whether it is still open (neither committed nor aborted).
    #[getter]
    fn is_open(&self) -> bool {
        self.open().reservation.is_some()
    }

    /// Bytes reserved.
    fn __len__(&self) -> usize {
        self.len
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    /// Commits on a clean exit, aborts on an exception.
    #[pyo3(signature = (exc_type, _exc = None, _tb = None))]
    fn __exit__(
        &self,
        exc_type: Option<&Bound<'_, PyAny>>,
        _exc: Option<&Bound<'_, PyAny>>,
        _tb: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        if !self.is_open() {
            return Ok(false);
        }
        self.finish(exc_type.is_none_or(|t| t.is_none()))?;
        Ok(false)
    }

    /// Exports the reserved bytes, writable, with this reservation as the
    /// exporter.
    ///
    /// # Safety
    ///
    /// Called by CPython with a `Py_buffer` to fill.
    unsafe fn __getbuffer__(slf: Bound<'_, Self>, view: *mut ffi::Py_buffer, flags: c_int) -> PyResult<()> {
        let this = slf.get();
        let mut open = this.open();
        if open.reservation.is_none() {
            return Err(finished());
        }
        // SAFETY: `view` is CPython's to fill; `data..data + len` is the
        // claimed space, ours alone until commit or abort, both refused
        // while `exports > 0`; `view.obj` keeps this object (and through
        // it the producer and the mapping) alive.
        let status = unsafe {
            ffi::PyBuffer_FillInfo(view, slf.as_ptr(), open.data.cast(), this.len as ffi::Py_ssize_t, 0, flags)
        };
        if status == -1 {
            return Err(PyErr::fetch(slf.py()));
        }
        open.exports += 1;
        Ok(())
    }

    /// # Safety
    ///
    /// Called by CPython when an export made by `__getbuffer__` ends.
    unsafe fn __releasebuffer__(&self, _view: *mut ffi::Py_buffer) {
        let mut open = self.open();
        open.exports = open.exports.saturating_sub(1);
    }
}
