//! Leases: received frames that outlive the consumer's borrow, for code
//! that lets go of a frame on another thread or at another time (a
//! GStreamer buffer freed by a streaming thread, a numpy array collected by
//! Python's garbage collector).
//!
//! A [`Lease`] owns what it needs (the ring's mapping, the record's place)
//! and is `Send + 'static`. Dropping it anywhere files the record's release
//! with the consumer; the consumer takes the releases on its own thread at
//! its next call (a `recv` waiting for data is woken for it), so `read`
//! still advances in ring order and the consumer's hot path stays free of
//! locks. A cap on leases held at once turns a consumer that keeps too many
//! into a clear error ([`Error::TooManyHeld`]) instead of a full ring.
//!
//! ```
//! use shmring::{Consumer, RingOptions};
//!
//! let consumer = Consumer::create_anonymous(&RingOptions::with_capacity(1 << 16))?;
//! let mut producer = consumer.producer()?;
//! producer.send(1, b"for another thread")?;
//! let lease = consumer.recv()?.into_lease().map_err(|_| "too many leases held")?;
//! let copy = std::thread::spawn(move || lease.bytes().to_vec()).join().unwrap(); // dropped there
//! assert_eq!(copy, b"for another thread");
//! assert_eq!(consumer.held(), 0, "the release was taken at this call");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::backing::Backing;
use crate::frame::{Received, SharedBytes};
use crate::signal::Signal;

/// See [`Consumer::set_lease_limit`](crate::Consumer::set_lease_limit).
pub const DEFAULT_LEASE_LIMIT: usize = 64;

/// What a consumer shares with its leases.
pub(crate) struct LeaseTable {
    /// Positions of records whose leases were dropped, not yet taken by
    /// the consumer.
    released: Mutex<Vec<u64>>,
    /// Whether `released` may hold something: the consumer looks at this
    /// word on every call and takes the lock only when it is set.
    pending: AtomicBool,
    /// Leases alive now.
    live: AtomicUsize,
    limit: AtomicUsize,
}

impl LeaseTable {
    pub(crate) fn new() -> Self {
        LeaseTable {
            released: Mutex::new(Vec::new()),
            pending: AtomicBool::new(false),
            live: AtomicUsize::new(0),
            limit: AtomicUsize::new(DEFAULT_LEASE_LIMIT),
        }
    }

    pub(crate) fn set_limit(&self, limit: usize) {
        self.limit.store(limit, Ordering::Relaxed);
    }

    /// Counts one more lease, or says why not.
    pub(crate) fn admit(&self) -> Result<(), crate::Error> {
        let limit = self.limit.load(Ordering::Relaxed);
        self.live
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |live| (live < limit).then_some(live + 1))
            .map(drop)
            .map_err(|held| crate::Error::TooManyHeld { held, limit })
    }

    /// Takes back an `admit` that no lease came of.
    pub(crate) fn withdraw(&self) {
        self.live.fetch_sub(1, Ordering::Relaxed);
    }

    /// Leases alive now.
    pub(crate) fn live(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }

    /// The positions released since the last call, if any (the consumer's
    /// thread, on each of its calls).
    pub(crate) fn take_released(&self) -> Option<Vec<u64>> {
        // Acquire: SYNC POINT: pairs with the Release store of `pending` in
        // `Lease::drop`; the lock below orders the positions themselves.
        if !self.pending.load(Ordering::Acquire) {
            return None;
        }
        let mut released = self.released.lock().unwrap_or_else(|poison| poison.into_inner());
        self.pending.store(false, Ordering::Relaxed);
        Some(std::mem::take(&mut *released))
    }

    /// Whether releases wait to be taken (the consumer's re-check before
    /// it sleeps; see the fence there).
    pub(crate) fn has_released(&self) -> bool {
        self.pending.load(Ordering::Relaxed)
    }
}

/// A received record that owns its place in the ring: `Send + 'static`,
/// dropped on any thread. Made by [`Frame::into_lease`](crate::Frame::into_lease).
///
/// It keeps the ring mapped, so it stays valid after the consumer is
/// dropped (its space is then simply never released: a later consumer
/// receives the record again). Its bytes are a [`SharedBytes`] view: copy
/// them out, or hand [`as_ptr`](Lease::as_ptr) and [`len`](Lease::len) to
/// a buffer protocol whose owner holds the lease.
pub struct Lease<B: Backing> {
    table: Arc<LeaseTable>,
    backing: Arc<B>,
    data: *const u8,
    record: Received,
}

// SAFETY: a lease only reads its record (through `SharedBytes`, with
// atomics) and files its release through the `Mutex` of the table; the
// backing it holds is `Send + Sync`, and the record stays mapped and
// unreused until the consumer takes that release.
unsafe impl<B: Backing> Send for Lease<B> {}
// SAFETY: as above; `&Lease` gives reads only.
unsafe impl<B: Backing> Sync for Lease<B> {}

impl<B: Backing> Lease<B> {
    /// A lease on a record the consumer handed out and counted (`admit`).
    pub(crate) fn new(table: Arc<LeaseTable>, backing: Arc<B>, data: *const u8, record: Received) -> Self {
        Lease { table, backing, data, record }
    }

    /// The record kind the producer set.
    pub fn kind(&self) -> u32 {
        self.record.kind
    }
    /// The application flags the producer set.
    pub fn flags(&self) -> u32 {
        self.record.flags
    }
    /// Absolute ring position of the record.
    pub fn position(&self) -> u64 {
        self.record.position
    }
    /// Producer-table slot of the producer that wrote it.
    pub fn producer(&self) -> u32 {
        self.record.producer
    }
    /// That producer's sequence number for this record.
    pub fn sequence(&self) -> u64 {
        self.record.sequence
    }
    /// Payload bytes.
    pub fn len(&self) -> usize {
        self.record.len
    }
    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.record.len == 0
    }
    /// Where the payload starts, for a buffer protocol (its owner must
    /// keep the lease; see [`SharedBytes::as_ptr`]).
    pub fn as_ptr(&self) -> *const u8 {
        self.data
    }
    /// The payload, where it lies in the ring.
    pub fn bytes(&self) -> SharedBytes<'_> {
        // SAFETY: as in `Frame::bytes`: a published, checked record of
        // `len` bytes in a mapping this lease keeps alive (`backing`), not
        // reused before the consumer takes this lease's release.
        unsafe { SharedBytes::from_raw_parts(self.data, self.record.len) }
    }
}

impl<B: Backing> Drop for Lease<B> {
    fn drop(&mut self) {
        let table = &self.table;
        table.released.lock().unwrap_or_else(|poison| poison.into_inner()).push(self.record.position);
        // Release: SYNC POINT: pairs with the Acquire load of `pending` in
        // `LeaseTable::take_released`.
        table.pending.store(true, Ordering::Release);
        table.live.fetch_sub(1, Ordering::Relaxed);
        // SeqCst fence: SYNC POINT: the Dekker pair of the fence in
        // `Consumer::recv_deadline`: either the consumer sees `pending` in
        // its re-check before sleeping, or we see it waiting and wake it.
        crate::sync::fence(Ordering::SeqCst);
        let waiters = &self.backing.header().waiters;
        if waiters.consumer_waiting.load(Ordering::Relaxed) != 0 {
            // Release: SYNC POINT: pairs with the consumer's Acquire load of
            // `data_seq` before it sleeps, as in `Producer::wake_consumer`.
            waiters.data_seq.fetch_add(1, Ordering::Release);
            self.backing.signal().wake(&waiters.data_seq, false);
        }
    }
}

impl<B: Backing> std::fmt::Debug for Lease<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("position", &self.record.position)
            .field("len", &self.record.len)
            .field("kind", &self.record.kind)
            .finish()
    }
}
