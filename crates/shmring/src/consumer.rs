//! The consumer side: hand out published records in ring order, borrowed
//! in place, and free their space when the last borrow ends.
//!
//! The consumer is the trusted side. Everything it reads from the segment
//! (cursors, stamps, lengths, slot numbers) may have been written by a
//! broken or hostile producer, so each value is checked before it is used
//! and the consumer's own cursors live in private memory: the shared copies
//! are only ever stored, for producers and `stat`, never trusted on read.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::backing::Backing;
use crate::error::{Error, Result};
use crate::frame::{Frame, Received};
use crate::interrupt::Interrupter;
use crate::layout::{
    classify_stamp, consumer_owner, consumer_state, owner_state, record_size, Geometry, Header, StampState,
    MAX_PRODUCERS,
};
use crate::lease::{Lease, LeaseTable};
use crate::liveness::{self, Liveness, ProducerWatch};
use crate::recovery;
use crate::stall::Pending;
use crate::watches::WatchSet;

/// See [`Consumer::set_spin_limit`]: a few times the cost of a sleep and a
/// wake-up, so spinning never costs much more than sleeping would.
pub const DEFAULT_SPIN_LIMIT: Duration = Duration::from_micros(20);
use crate::signal::Signal;
use crate::sync::{fence, AtomicU32, Ordering};

/// Reads records from one ring. There is one consumer per ring.
pub struct Consumer<B: Backing> {
    pub(crate) backing: Arc<B>,
    pub(crate) geometry: Geometry,
    pub(crate) stall_timeout: Duration,
    spin_limit: Duration,
    /// The owner word this consumer wrote (ATTACHED, its generation).
    owner: u64,
    /// This process's pid namespace: slots of producers in it are judged
    /// by pid.
    pub(crate) own_namespace: u64,
    /// Liveness descriptors of producers, handed over by their launchers
    /// (shared with the rendezvous thread that registers them).
    pub(crate) watches: Arc<WatchSet>,
    pub(crate) kill_stuck: bool,
    pub(crate) state: RefCell<State>,
    /// Shared with the leases made of its frames (see `lease`).
    leases: Arc<LeaseTable>,
    /// Set by an [`Interrupter`], taken by the wait it interrupts.
    interrupt: Arc<AtomicU32>,
}

pub(crate) struct State {
    /// Next record to hand out.
    pub(crate) peek: u64,
    /// Everything before it has been released.
    pub(crate) read: u64,
    /// Private copy of `write`; the shared one is read only when this one
    /// says the ring may be empty.
    pub(crate) cached_write: u64,
    /// Records handed out or stepped over and not yet released, in ring
    /// order: `read` advances over the released prefix.
    pub(crate) held: VecDeque<Held>,
    /// Records stepped around while their live producer holds them: `read`
    /// stops at the first, later records are delivered meanwhile.
    pub(crate) pending: Vec<Pending>,
    /// When the owners of pending records were last checked.
    pub(crate) pending_checked: Option<Instant>,
    /// When the head record was first seen claimed but unpublished.
    pub(crate) stall_since: Option<Instant>,
    /// How long the last wait in `recv` lasted, to decide whether to spin.
    last_wait: Duration,
    pub(crate) counters: Counters,
}

#[derive(Clone, Copy)]
pub(crate) struct Held {
    pub position: u64,
    pub end: u64,
    pub released: bool,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub frames: u64,
    pub bytes: u64,
    pub skipped: u64,
    pub recovered: u64,
    pub corrupt: u64,
    pub sleeps: u64,
    pub space_posts: u64,
    pub stalls: u64,
    pub late: u64,
    pub killed: u64,
}

impl<B: Backing> Consumer<B> {
    /// Becomes the consumer of `backing`, resuming at its `read` cursor:
    /// records that an earlier consumer received but did not release are
    /// handed out again.
    pub(crate) fn start(backing: Arc<B>) -> Result<Self> {
        let geometry = *backing.geometry();
        let header = backing.header();
        // Acquire: SYNC POINT: pairs with the Release store of `read` by an
        // earlier consumer (its frames were finished with).
        let read = header.read.position.load(Ordering::Acquire);
        // Acquire: SYNC POINT: pairs with the producers' Release CAS on
        // `write`.
        let write = header.write.position.load(Ordering::Acquire);
        if read % crate::layout::RECORD_ALIGN != 0 || read > write || write - read > geometry.capacity {
            return Err(Error::Corrupt {
                position: read,
                reason: format!("cursors out of order: read {read}, write {write}, capacity {}", geometry.capacity),
            });
        }
        let own_namespace = liveness::own_pid_namespace();
        let owner = take_consumer_line(header, own_namespace)?;
        header.peek.position.store(read, Ordering::Relaxed);
        let c = &header.consumed;
        let counters = Counters {
            frames: c.frames.load(Ordering::Relaxed),
            bytes: c.bytes.load(Ordering::Relaxed),
            skipped: c.skipped.load(Ordering::Relaxed),
            recovered: c.recovered.load(Ordering::Relaxed),
            corrupt: c.corrupt.load(Ordering::Relaxed),
            sleeps: c.sleeps.load(Ordering::Relaxed),
            space_posts: c.space_posts.load(Ordering::Relaxed),
            stalls: c.stalls.load(Ordering::Relaxed),
            late: c.late.load(Ordering::Relaxed),
            killed: c.killed.load(Ordering::Relaxed),
        };
        // Records a previous consumer stepped around are unpublished again
        // from here: they stall the head and are judged anew.
        c.stuck.store(0, Ordering::Relaxed);
        #[cfg(feature = "tracing")]
        tracing::info!(read, write, capacity = geometry.capacity, "consumer attached");
        Ok(Consumer {
            // Loom has no clock: a zero timeout (always passed) keeps the
            // stall paths of a model deterministic.
            stall_timeout: Duration::from_micros(if cfg!(loom) {
                geometry.stall_timeout_us
            } else {
                geometry.stall_timeout_us.max(1)
            }),
            spin_limit: if cfg!(loom) { Duration::ZERO } else { DEFAULT_SPIN_LIMIT },
            owner,
            own_namespace,
            watches: Arc::new(WatchSet::new()),
            kill_stuck: false,
            backing,
            geometry,
            state: RefCell::new(State {
                peek: read,
                read,
                cached_write: read,
                held: VecDeque::new(),
                pending: Vec::new(),
                pending_checked: None,
                stall_since: None,
                last_wait: Duration::ZERO,
                counters,
            }),
            leases: Arc::new(LeaseTable::new()),
            interrupt: Arc::new(AtomicU32::new(0)),
        })
    }

    /// The ring's geometry (capacity, largest payload).
    pub fn geometry(&self) -> &Geometry {
        &self.geometry
    }

    /// How long an unpublished head record may stall before its producer's
    /// liveness is checked: a dead producer's record is then stepped over,
    /// a live one's is stepped around (later records are delivered, `read`
    /// waits for it) and reported. Also how often the owners of such
    /// records are checked again.
    pub fn set_stall_timeout(&mut self, timeout: Duration) {
        self.stall_timeout = timeout;
    }

    /// Confirms the death of the producer that a launcher started with the
    /// other half of `watch` (see [`liveness_pair`](crate::liveness_pair)):
    /// its slots carry the watch's token, and the descriptor's hang-up is
    /// its death. The only way to confirm the death of a producer in
    /// another pid namespace (a sandboxed renderer): without a watch, its
    /// claims are waited for as long as it takes, and reported.
    pub fn watch_producer(&self, watch: ProducerWatch) {
        self.watches.add_local(watch);
    }

    /// How many liveness watches this consumer holds (handed over in
    /// process, registered by launchers, fed by the ring's host).
    pub fn watch_count(&self) -> usize {
        self.watches.with(|watches| watches.len())
    }

    /// Lets the consumer SIGKILL a producer that holds a claim past the
    /// stall timeout while alive (a deadlocked thread, a leaked
    /// reservation), when it runs as the same user in the consumer's pid
    /// namespace, and step over its record once it is dead. Off by default.
    pub fn set_kill_stuck_producers(&mut self, allowed: bool) {
        self.kill_stuck = allowed;
    }

    /// How long `recv` may busy-poll before it sleeps, when its previous
    /// wait was no longer than this (records are streaming in). Zero never
    /// spins. Default [`DEFAULT_SPIN_LIMIT`].
    pub fn set_spin_limit(&mut self, limit: Duration) {
        self.spin_limit = limit;
    }

    /// The next published record, if there is one now.
    ///
    /// `Err(Error::Corrupt { .. })` reports a record or cursor the consumer
    /// refused; it has been counted and, where a safe point exists, stepped
    /// over, so the next call continues after it.
    pub fn try_recv(&self) -> Result<Option<Frame<'_, B>>> {
        self.take_lease_releases();
        let mut st = self.state.borrow_mut();
        // Every pass either returns or moves `peek` forward by at least one
        // record, and `peek` never passes `write`: the loop is bounded by
        // capacity / 64 passes even against a hostile producer.
        loop {
            if let Some(frame) = self.resolve_pending(&mut st)? {
                return Ok(Some(frame));
            }
            let head = st.peek;
            if head == st.cached_write {
                let write = self.load_write(&mut st)?;
                if write == head {
                    st.stall_since = None;
                    self.give_back_slots_if_wanted(&st);
                    return Ok(None);
                }
            }
            let record = self.backing.record(head);
            // Acquire: SYNC POINT: pairs with the Release store of the stamp
            // in `Producer::publish_fields`: the payload and header fields
            // written before it are visible.
            let stamp = record.stamp.load(Ordering::Acquire);
            let state = classify_stamp(stamp, head, self.geometry.salt);
            if state == StampState::Unpublished {
                match self.on_stall(&mut st)? {
                    true => continue,
                    false => return Ok(None),
                }
            }
            st.stall_since = None;
            let len = u64::from(record.len.load(Ordering::Relaxed));
            if len > self.geometry.max_payload {
                return Err(self.corrupt(&mut st, head, format!("length {len} exceeds the largest payload")));
            }
            let end = head + record_size(len);
            if end > st.cached_write && end > self.load_write(&mut st)? {
                return Err(self.corrupt(&mut st, head, format!("record of {len} bytes runs past the write cursor")));
            }
            let producer = record.producer.load(Ordering::Relaxed);
            if producer as usize >= MAX_PRODUCERS {
                return Err(self.corrupt(&mut st, head, format!("producer slot {producer} out of range")));
            }
            if state == StampState::Skipped {
                st.counters.skipped += 1;
                self.header().consumed.skipped.store(st.counters.skipped, Ordering::Relaxed);
                self.step_over(&mut st, head, end);
                continue;
            }
            st.peek = end;
            st.held.push_back(Held { position: head, end, released: false });
            // Relaxed: `peek` is published for introspection only.
            self.header().peek.position.store(end, Ordering::Relaxed);
            return Ok(Some(self.frame(&mut st, head, len, producer, false)));
        }
    }

    /// Counts and hands out the published record at `position` (already in
    /// `held`), `late` when its producer committed it after the consumer
    /// stepped around it.
    pub(crate) fn frame(&self, st: &mut State, position: u64, len: u64, producer: u32, late: bool) -> Frame<'_, B> {
        let record = self.backing.record(position);
        st.counters.frames += 1;
        st.counters.bytes += len;
        let header = self.header();
        header.consumed.frames.store(st.counters.frames, Ordering::Relaxed);
        header.consumed.bytes.store(st.counters.bytes, Ordering::Relaxed);
        let received = Received {
            position,
            len: len as usize,
            kind: record.kind.load(Ordering::Relaxed),
            flags: record.flags.load(Ordering::Relaxed),
            producer,
            sequence: record.sequence.load(Ordering::Relaxed),
            late,
        };
        Frame::new(self, self.backing.payload(position), received)
    }

    /// Waits for the next record, as long as it takes, or until an
    /// [`Interrupter`] interrupts the wait (`Err(Error::Interrupted)`).
    pub fn recv(&self) -> Result<Frame<'_, B>> {
        self.recv_deadline(None)?.ok_or(Error::Interrupted)
    }

    /// Waits at most `timeout` for the next record; `Ok(None)` when the
    /// time is up or an [`Interrupter`] interrupted the wait.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Option<Frame<'_, B>>> {
        self.recv_deadline(Some(Instant::now() + timeout))
    }

    fn recv_deadline(&self, deadline: Option<Instant>) -> Result<Option<Frame<'_, B>>> {
        let waiting = &self.header().waiters.consumer_waiting;
        let mut wait_began = None;
        loop {
            if let Some(frame) = self.try_recv()? {
                if let Some(began) = wait_began {
                    self.state.borrow_mut().last_wait = Instant::now().saturating_duration_since(began);
                }
                return Ok(Some(frame));
            }
            if self.take_interrupt() {
                return Ok(None);
            }
            let began = *wait_began.get_or_insert_with(Instant::now);
            if self.spin(began, deadline) {
                continue;
            }
            let mut slice = self.stall_timeout.min(Duration::from_millis(100));
            if let Some(since) = self.state.borrow().stall_since {
                // Wake when the stalled head is due for a liveness check.
                let due = (since + self.stall_timeout).saturating_duration_since(Instant::now());
                slice = slice.min(due + Duration::from_micros(100));
            }
            let seq = &self.header().waiters.data_seq;
            // Acquire: SYNC POINT: pairs with the Release bump of `data_seq`
            // in `Producer::wake_consumer`: a bump after this load makes the
            // sleep below return at once.
            let expected = seq.load(Ordering::Acquire);
            if let Some(deadline) = deadline {
                let now = Instant::now();
                if now >= deadline {
                    return Ok(None);
                }
                slice = slice.min(deadline - now);
            }
            waiting.store(1, Ordering::Relaxed);
            // SeqCst fence: SYNC POINT: the Dekker pair of the fences in
            // `Producer::wake_consumer`, `Lease::drop` and
            // `Interrupter::interrupt`: either we see the new stamp (the
            // released lease, the interrupt) in the re-check below, or that
            // side sees our announcement and wakes us.
            fence(Ordering::SeqCst);
            if self.head_published() || self.leases.has_released() || self.interrupt.load(Ordering::Relaxed) != 0 {
                waiting.store(0, Ordering::Relaxed);
                continue;
            }
            {
                let mut st = self.state.borrow_mut();
                st.counters.sleeps += 1;
                self.header().consumed.sleeps.store(st.counters.sleeps, Ordering::Relaxed);
            }
            self.backing.signal().wait(seq, expected, slice);
            waiting.store(0, Ordering::Relaxed);
        }
    }

    /// Busy-polls the head for a while before the first sleep of a wait,
    /// when the previous wait was short: a producer streaming records is
    /// then followed without a semaphore post and a wake-up per record,
    /// while a paced one (a frame every 33 ms) costs no spinning. Returns
    /// whether to try receiving again.
    fn spin(&self, began: Instant, deadline: Option<Instant>) -> bool {
        let limit = self.spin_limit;
        if limit.is_zero() || self.state.borrow().last_wait > limit {
            return false;
        }
        let until = deadline.map_or(began + limit, |deadline| deadline.min(began + limit));
        loop {
            if self.head_published() {
                return true;
            }
            if Instant::now() >= until {
                return false;
            }
            for _ in 0..32 {
                crate::sync::spin_hint();
            }
        }
    }

    /// Whether the record at `peek` is published (re-check before sleep).
    fn head_published(&self) -> bool {
        let head = self.state.borrow().peek;
        // Acquire: SYNC POINT: pairs with the Release store of the stamp in
        // `Producer::publish_fields`.
        let stamp = self.backing.record(head).stamp.load(Ordering::Acquire);
        classify_stamp(stamp, head, self.geometry.salt) != StampState::Unpublished
    }

    /// Number of records handed out and not yet released (leases
    /// included).
    pub fn held(&self) -> usize {
        self.take_lease_releases();
        self.state.borrow().held.iter().filter(|h| !h.released).count()
    }

    /// Bytes between `read` and `write`: in use by records not yet
    /// released, published or not.
    pub fn used_bytes(&self) -> u64 {
        self.take_lease_releases();
        let st = self.state.borrow();
        st.cached_write.saturating_sub(st.read)
    }

    pub(crate) fn header(&self) -> &Header {
        self.backing.header()
    }

    /// Loads and checks the shared `write` cursor.
    fn load_write(&self, st: &mut State) -> Result<u64> {
        // Acquire: SYNC POINT: pairs with the Release CAS on `write` in
        // `Producer::try_claim`: claims we see come with their announcements.
        let write = self.header().write.position.load(Ordering::Acquire);
        if write < st.cached_write
            || write % crate::layout::RECORD_ALIGN != 0
            || write - st.read > self.geometry.capacity
        {
            let reason = format!(
                "write cursor {write} is impossible (read {}, previous write {}, capacity {})",
                st.read, st.cached_write, self.geometry.capacity
            );
            let position = st.peek;
            st.counters.corrupt += 1;
            self.header().consumed.corrupt.store(st.counters.corrupt, Ordering::Relaxed);
            #[cfg(feature = "tracing")]
            tracing::error!(position, %reason, "corrupt cursor");
            return Err(Error::Corrupt { position, reason });
        }
        st.cached_write = write;
        Ok(write)
    }

    /// Counts a corrupt record at `position`, steps to the next safe point
    /// after it, and returns the error to report.
    pub(crate) fn corrupt(&self, st: &mut State, position: u64, reason: String) -> Error {
        st.counters.corrupt += 1;
        self.header().consumed.corrupt.store(st.counters.corrupt, Ordering::Relaxed);
        #[cfg(feature = "tracing")]
        tracing::error!(position, %reason, "corrupt record");
        let safe =
            recovery::next_safe_point(self.header(), &self.geometry, self.backing.as_ref(), position, st.cached_write);
        self.step_over(st, position, safe);
        st.stall_since = None;
        Error::Corrupt { position, reason }
    }

    /// Moves `peek` from `position` to `end` over a range nobody will read
    /// (skip record, recovered or corrupt record): it is released at once.
    pub(crate) fn step_over(&self, st: &mut State, position: u64, end: u64) {
        debug_assert_eq!(st.peek, position);
        st.peek = end;
        self.header().peek.position.store(end, Ordering::Relaxed);
        st.held.push_back(Held { position, end, released: true });
        self.advance_read(st);
    }

    /// Frees the record at `position` (a dropped [`Frame`]).
    pub(crate) fn release(&self, position: u64) {
        let mut st = self.state.borrow_mut();
        if let Some(held) = st.held.iter_mut().find(|h| h.position == position) {
            held.released = true;
        }
        self.advance_read(&mut st);
    }

    pub(crate) fn advance_read(&self, st: &mut State) {
        let before = st.read;
        while let Some(front) = st.held.front().copied() {
            if !front.released {
                break;
            }
            st.held.pop_front();
            st.read = front.end;
        }
        if st.read == before {
            return;
        }
        let header = self.header();
        // Release: SYNC POINT: pairs with the Acquire load of `read` in
        // `Producer::try_claim`: we are done reading everything before it.
        header.read.position.store(st.read, Ordering::Release);
        // SeqCst fence: SYNC POINT: the Dekker pair of the fence in
        // `Producer::sleep_for_space`.
        fence(Ordering::SeqCst);
        if header.waiters.producers_waiting.load(Ordering::Relaxed) != 0 {
            let seq = &header.waiters.space_seq;
            // Release: SYNC POINT: pairs with the Acquire load of
            // `space_seq` in `Producer::sleep_for_space`. Every sleeper is
            // woken: each re-checks the room it needs.
            seq.fetch_add(1, Ordering::Release);
            self.backing.signal().wake(seq, true);
            st.counters.space_posts += 1;
            header.consumed.space_posts.store(st.counters.space_posts, Ordering::Relaxed);
        }
    }

    /// The shared backing (for stats and descriptors).
    pub(crate) fn backing(&self) -> &Arc<B> {
        &self.backing
    }

    /// Most leases alive at once; another is refused with
    /// [`Error::TooManyHeld`]. Default [`DEFAULT_LEASE_LIMIT`](crate::DEFAULT_LEASE_LIMIT).
    pub fn set_lease_limit(&self, limit: usize) {
        self.leases.set_limit(limit);
    }

    /// A handle that interrupts this consumer's waits from any thread (see
    /// [`Interrupter`]).
    pub fn interrupter(&self) -> Interrupter<B> {
        Interrupter::new(self.interrupt.clone(), self.backing.clone())
    }

    /// Takes a pending interrupt, if there is one. Interrupts that come
    /// while one is being taken are taken with it.
    fn take_interrupt(&self) -> bool {
        // Acquire: SYNC POINT: pairs with the Release store in
        // `Interrupter::interrupt`: what the interrupting thread did before
        // (a flushing flag, say) is seen by the caller's next look.
        let pending = self.interrupt.load(Ordering::Acquire) != 0;
        if pending {
            self.interrupt.store(0, Ordering::Relaxed);
        }
        pending
    }

    /// Leases of this consumer's frames alive now.
    pub fn leases(&self) -> usize {
        self.leases.live()
    }

    /// The next record as a [`Lease`], waiting at most `timeout`.
    /// `Err(Error::TooManyHeld { .. })` when the lease limit is reached:
    /// then nothing was received.
    pub fn recv_lease_timeout(&self, timeout: Duration) -> Result<Option<Lease<B>>> {
        self.leases.admit()?;
        match self.recv_timeout(timeout) {
            Ok(Some(frame)) => Ok(Some(frame.into_admitted_lease())),
            other => {
                self.leases.withdraw();
                other.map(|_| None)
            }
        }
    }

    pub(crate) fn lease_table(&self) -> &Arc<LeaseTable> {
        &self.leases
    }

    /// Releases the records whose leases were dropped since the last call,
    /// here on the consumer's thread, in ring order.
    fn take_lease_releases(&self) {
        let Some(released) = self.leases.take_released() else { return };
        let mut st = self.state.borrow_mut();
        for position in released {
            if let Some(held) = st.held.iter_mut().find(|h| h.position == position) {
                held.released = true;
            }
        }
        self.advance_read(&mut st);
    }
}

/// Takes the consumer line with one CAS on its owner word: refused while a
/// consumer that can be checked lives, or one that cannot be checked (in
/// another pid namespace) is attached, and when another consumer wins the
/// same CAS. Returns the owner word written.
fn take_consumer_line(header: &Header, own_namespace: u64) -> Result<u64> {
    let line = &header.consumer;
    // Acquire: SYNC POINT: pairs with the Release store of ATTACHED below
    // (by an earlier consumer): its pid and start time come with it.
    let current = line.owner.load(Ordering::Acquire);
    let pid = line.pid.load(Ordering::Relaxed);
    let in_use = || Error::InUse { name: header.name(), pid };
    if matches!(owner_state(current), consumer_state::ATTACHED | consumer_state::ATTACHING) {
        let checkable = liveness::same_namespace(own_namespace, line.pid_namespace.load(Ordering::Relaxed));
        if !checkable || liveness::check(pid, line.start_time.load(Ordering::Relaxed)) == Liveness::Alive {
            return Err(in_use());
        }
    }
    let generation = (current >> 32) as u32 + 1;
    line.owner
        // AcqRel: SYNC POINT: Acquire pairs with the previous owner's
        // Release (as above); Release orders nothing yet (the identity is
        // published by the store of ATTACHED).
        .compare_exchange(
            current,
            consumer_owner(consumer_state::ATTACHING, generation),
            Ordering::AcqRel,
            Ordering::Relaxed,
        )
        .map_err(|_| in_use())?;
    line.pid.store(liveness::own_pid(), Ordering::Relaxed);
    line.start_time.store(liveness::own_start_time(), Ordering::Relaxed);
    line.pid_namespace.store(own_namespace, Ordering::Relaxed);
    let owner = consumer_owner(consumer_state::ATTACHED, generation);
    // Release: SYNC POINT: pairs with the Acquire loads of `owner` in
    // `producer::consumer_liveness` and above; pid and start time first.
    line.owner.store(owner, Ordering::Release);
    Ok(owner)
}

impl<B: Backing> Drop for Consumer<B> {
    fn drop(&mut self) {
        let closed = consumer_owner(consumer_state::CLOSED, (self.owner >> 32) as u32);
        // Release: SYNC POINT: pairs with the Acquire load in
        // `producer::consumer_liveness`: producers learn the ring is closed.
        // A CAS: a consumer that took over the line is not closed by us.
        let _ = self.header().consumer.owner.compare_exchange(self.owner, closed, Ordering::Release, Ordering::Relaxed);
    }
}
