//! The producer side: claim space with a CAS on `write`, fill it in place,
//! publish it with one Release store of the record's stamp.

use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::backing::Backing;
use crate::error::{Error, Result};
use crate::layout::{
    committed_stamp, consumer_state, owner_state, record_size, skipped_stamp, slot_owner, slot_state, Geometry, Header,
    ProducerSlot, MAX_PRODUCERS, NO_CLAIM,
};
use crate::liveness::{self, Liveness};
use crate::signal::Signal;
use crate::sync::{fence, Ordering};

/// What a producer does when the ring has no room for its record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum FullPolicy {
    /// Drop the frame and count it ([`Error::Dropped`]). The default: a
    /// renderer thread must never block.
    #[default]
    Drop,
    /// Sleep until space is freed, at most this long, then drop and count
    /// ([`Error::Timeout`]).
    Block(Duration),
    /// Return [`Error::Full`] at once and count a rejection.
    Fail,
}

/// How often a producer facing a full ring may check whether the consumer
/// still lives (a `kill(pid, 0)` and a `/proc` read).
const CONSUMER_CHECK_INTERVAL: Duration = Duration::from_millis(100);
/// Longest single sleep while blocked, so a dead consumer is noticed.
const BLOCK_SLICE: Duration = Duration::from_millis(50);

/// A handle that writes records into one ring. Each handle owns one slot of
/// the ring's producer table; use one handle per thread (`Producer` is
/// `Send`, not `Sync`).
pub struct Producer<B: Backing> {
    backing: Arc<B>,
    geometry: Geometry,
    slot: usize,
    /// Private copy of `read`; the shared one is read only when this one
    /// says the ring may be full.
    cached_read: u64,
    sequence: u64,
    policy: FullPolicy,
    last_consumer_check: Option<Instant>,
    consumer_gone: bool,
    counters: LocalCounters,
    /// `Producer` is not `Sync`: the slot's counters have a single writer.
    _not_sync: PhantomData<std::cell::Cell<()>>,
}

#[derive(Default, Clone, Copy)]
struct LocalCounters {
    frames: u64,
    bytes: u64,
    drops: u64,
    rejected: u64,
    data_posts: u64,
    waits: u64,
}

impl<B: Backing> Producer<B> {
    /// Takes a free slot of the producer table and returns a handle.
    pub(crate) fn join(backing: Arc<B>, pid: u32, start_time: u64) -> Result<Self> {
        Producer::join_in(backing, pid, start_time, liveness::own_pid_namespace())
    }

    /// As [`Producer::join`], for a process whose pid namespace is known
    /// already (no `/proc` read).
    fn join_in(backing: Arc<B>, pid: u32, start_time: u64, pid_namespace: u64) -> Result<Self> {
        let geometry = *backing.geometry();
        let header = backing.header();
        let slot = take_free_slot(header, pid)
            .or_else(|| {
                // Every slot taken: give back those of dead producers whose
                // last claim the consumer has already passed, then retry.
                // Acquire: SYNC POINT: pairs with the consumer's Release
                // store of `read`.
                crate::recovery::free_dead_slots(header, header.read.position.load(Ordering::Acquire));
                take_free_slot(header, pid)
            })
            .ok_or(Error::TooManyProducers { max: MAX_PRODUCERS })?;
        let s = &header.slots[slot];
        s.start_time.store(start_time, Ordering::Relaxed);
        s.pid_namespace.store(pid_namespace, Ordering::Relaxed);
        s.inflight_size.store(0, Ordering::Relaxed);
        s.inflight_pos.store(NO_CLAIM, Ordering::Relaxed);
        for counter in [&s.frames, &s.bytes, &s.drops, &s.rejected, &s.data_posts, &s.waits] {
            counter.store(0, Ordering::Relaxed);
        }
        s.generation.fetch_add(1, Ordering::Relaxed);
        // Release: SYNC POINT: pairs with the Acquire load of `state` in the
        // consumer's registry scans; the identity above is visible first.
        s.owner.store(slot_owner(slot_state::ACTIVE, pid), Ordering::Release);
        // Acquire: SYNC POINT: pairs with the consumer's Release store of
        // `read`; space before it is ours to overwrite.
        let cached_read = header.read.position.load(Ordering::Acquire);
        Ok(Producer {
            backing,
            geometry,
            slot,
            cached_read,
            sequence: 0,
            policy: FullPolicy::default(),
            last_consumer_check: None,
            consumer_gone: false,
            counters: LocalCounters::default(),
            _not_sync: PhantomData,
        })
    }

    /// Another producer of the same ring and mapping, with a slot of its
    /// own (for another thread), without mapping the segment again. It
    /// takes this producer's identity (pid, start time, pid namespace)
    /// instead of reading `/proc` again (only a full producer table makes
    /// it check other processes' liveness).
    pub fn try_clone(&self) -> Result<Self> {
        let header = self.backing.header();
        let slot = &header.slots[self.slot];
        let pid = crate::layout::owner_pid(slot.owner.load(Ordering::Relaxed));
        let start_time = slot.start_time.load(Ordering::Relaxed);
        let pid_namespace = slot.pid_namespace.load(Ordering::Relaxed);
        let mut clone = Producer::join_in(self.backing.clone(), pid, start_time, pid_namespace)?;
        clone.policy = self.policy;
        Ok(clone)
    }

    /// Sets what happens when the ring is full.
    pub fn set_full_policy(&mut self, policy: FullPolicy) {
        self.policy = policy;
    }

    /// The current full-ring policy.
    pub fn full_policy(&self) -> FullPolicy {
        self.policy
    }

    /// The largest payload one record can carry.
    pub fn max_payload(&self) -> usize {
        self.geometry.max_payload as usize
    }

    /// This handle's slot in the producer table (shown by `stat`, and
    /// carried by every record it writes).
    pub fn slot(&self) -> usize {
        self.slot
    }

    /// Copies `payload` into the ring as one record of `kind` and publishes
    /// it. On a full ring, follows the [`FullPolicy`].
    pub fn send(&mut self, kind: u32, payload: &[u8]) -> Result<()> {
        let mut reservation = self.reserve(payload.len())?;
        reservation.copy_from_slice(payload);
        reservation.set_kind(kind);
        reservation.commit();
        Ok(())
    }

    /// Claims room for a record of `len` payload bytes and hands it out to
    /// be filled in place. [`Reservation::commit`] publishes it; dropping
    /// the reservation publishes a skip record instead, which the consumer
    /// steps over.
    pub fn reserve(&mut self, len: usize) -> Result<Reservation<'_, B>> {
        let len = len as u64;
        if len > self.geometry.max_payload {
            return Err(Error::TooLarge { len, max: self.geometry.max_payload });
        }
        let size = record_size(len);
        // The clock is read only once the ring turns out full: a claim
        // that succeeds at once (the common case) never pays for it.
        let mut deadline = None;
        let position = loop {
            if let Some(position) = self.try_claim(size) {
                break position;
            }
            if let Some(gone) = self.consumer_gone_check() {
                self.count_drop();
                return Err(gone);
            }
            match self.policy {
                FullPolicy::Drop => {
                    self.count_drop();
                    return Err(Error::Dropped);
                }
                FullPolicy::Fail => {
                    self.counters.rejected += 1;
                    self.slot_line().rejected.store(self.counters.rejected, Ordering::Relaxed);
                    return Err(Error::Full);
                }
                FullPolicy::Block(timeout) => {
                    let now = Instant::now();
                    let deadline = *deadline.get_or_insert(now + timeout);
                    if now >= deadline {
                        self.count_drop();
                        return Err(Error::Timeout);
                    }
                    self.sleep_for_space(size, (deadline - now).min(BLOCK_SLICE));
                }
            }
        };
        let sequence = self.sequence;
        self.sequence += 1;
        Ok(Reservation { producer: self, position, len, kind: 0, flags: 0, sequence, published: false })
    }

    /// Whether the consumer named in the header still lives (`true` while
    /// none has attached yet). Costs a syscall and a `/proc` read.
    pub fn consumer_alive(&self) -> bool {
        consumer_liveness(self.backing.header()).is_ok()
    }

    fn slot_line(&self) -> &ProducerSlot {
        &self.backing.header().slots[self.slot]
    }

    fn header(&self) -> &Header {
        self.backing.header()
    }

    pub(crate) fn backing(&self) -> &Arc<B> {
        &self.backing
    }

    fn count_drop(&mut self) {
        self.counters.drops += 1;
        self.sequence += 1;
        self.slot_line().drops.store(self.counters.drops, Ordering::Relaxed);
    }

    /// One attempt to claim `size` bytes; `None` when the ring is full.
    fn try_claim(&mut self, size: u64) -> Option<u64> {
        let header = self.backing.header();
        let capacity = self.geometry.capacity;
        let slot = &header.slots[self.slot];
        let mut write = header.write.position.load(Ordering::Relaxed);
        // Cursors are shared memory: checked arithmetic, so a corrupt
        // header makes the ring look full instead of panicking.
        let fits =
            |write: u64, read: u64| write.checked_sub(read).is_some_and(|used| used.saturating_add(size) <= capacity);
        loop {
            if !fits(write, self.cached_read) {
                // Acquire: SYNC POINT: pairs with the Release store of
                // `read` in `Consumer::release`: the consumer is done with
                // every byte before it, so we may overwrite them.
                self.cached_read = header.read.position.load(Ordering::Acquire);
                if write < self.cached_read {
                    // Our `write` is older than the consumer's progress.
                    let current = header.write.position.load(Ordering::Relaxed);
                    if current == write {
                        return None; // read passed write: corrupt cursors
                    }
                    write = current;
                    continue;
                }
                if !fits(write, self.cached_read) {
                    return None;
                }
            }
            // Announce the claim before making it, so a consumer that finds
            // this record stalled can tell whose it is even if we die
            // right after the CAS.
            slot.inflight_size.store(size, Ordering::Relaxed);
            // Release: SYNC POINT: pairs with the Acquire load of
            // `inflight_pos` in the consumer's stall recovery; orders the
            // size before the position.
            slot.inflight_pos.store(write, Ordering::Release);
            match header.write.position.compare_exchange_weak(
                write,
                write.wrapping_add(size),
                // Release: SYNC POINT: pairs with the consumer's Acquire load
                // of `write`; whoever sees the claim sees its announcement.
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some(write),
                Err(current) => {
                    write = current;
                    crate::sync::spin_hint();
                }
            }
        }
    }

    fn sleep_for_space(&mut self, size: u64, timeout: Duration) {
        let header = self.backing.header();
        let waiters = &header.waiters.producers_waiting;
        waiters.fetch_add(1, Ordering::Relaxed);
        // SeqCst fence: SYNC POINT: the Dekker pair of the fence in
        // `Consumer::release`: either the consumer sees our announcement
        // or we see its new `read` below.
        fence(Ordering::SeqCst);
        let read = header.read.position.load(Ordering::Acquire);
        let write = header.write.position.load(Ordering::Relaxed);
        let room = write.checked_sub(read).is_some_and(|used| used.saturating_add(size) <= self.geometry.capacity);
        if !room {
            self.counters.waits += 1;
            self.slot_line().waits.store(self.counters.waits, Ordering::Relaxed);
            self.backing.space_available().wait(timeout);
        }
        let left = waiters.fetch_sub(1, Ordering::Relaxed) - 1;
        if left > 0 && room {
            // Pass a wake-up on: the consumer posts once per release.
            self.backing.space_available().post();
        }
    }

    /// Rate-limited check of the consumer, made only when the ring is full.
    fn consumer_gone_check(&mut self) -> Option<Error> {
        let now = Instant::now();
        let due = self.last_consumer_check.is_none_or(|t| now.duration_since(t) >= CONSUMER_CHECK_INTERVAL);
        if due {
            self.last_consumer_check = Some(now);
            self.consumer_gone = consumer_liveness(self.header()).is_err();
        }
        if self.consumer_gone {
            let pid = self.header().consumer.pid.load(Ordering::Relaxed);
            return Some(Error::ConsumerGone { pid });
        }
        None
    }

    fn wake_consumer(&mut self) {
        let waiting = &self.backing.header().waiters.consumer_waiting;
        // SeqCst fence: SYNC POINT: the Dekker pair of the fence in
        // `Consumer::recv_deadline`: either the consumer's re-check sees the
        // stamp stored above, or we see its announcement here.
        fence(Ordering::SeqCst);
        if waiting.load(Ordering::Relaxed) != 0 && waiting.swap(0, Ordering::Relaxed) != 0 {
            self.backing.data_available().post();
            self.counters.data_posts += 1;
            self.slot_line().data_posts.store(self.counters.data_posts, Ordering::Relaxed);
        }
    }
}

/// Takes a FREE slot for `pid` (state JOINING), if there is one.
fn take_free_slot(header: &Header, pid: u32) -> Option<usize> {
    (0..MAX_PRODUCERS).find(|&i| {
        let owner = &header.slots[i].owner;
        let current = owner.load(Ordering::Relaxed);
        owner_state(current) == slot_state::FREE
            && owner
                // Acquire: SYNC POINT: pairs with the Release store of FREE
                // when a slot is given back (`Producer::drop`,
                // `recovery::free_dead_slots`): its old owner's stores are
                // behind us.
                .compare_exchange(current, slot_owner(slot_state::JOINING, pid), Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
    })
}

/// Checks the consumer line: `Err(pid)` when a consumer attached and is
/// now gone (dead, or closed the ring).
pub(crate) fn consumer_liveness(header: &Header) -> std::result::Result<(), u32> {
    let line = &header.consumer;
    // Acquire: SYNC POINT: pairs with the Release store of ATTACHED in
    // `Consumer::start` (and of CLOSED in `Consumer::drop`): the pid, start
    // time and namespace read below are the ones stored before it.
    let state = line.state.load(Ordering::Acquire);
    let pid = line.pid.load(Ordering::Relaxed);
    match state {
        consumer_state::ATTACHED => {
            if !liveness::pid_comparable(line.pid_namespace.load(Ordering::Relaxed)) {
                // Its pid means nothing in our namespace: only a clean
                // close (CLOSED, in shared memory) can tell us it is gone.
                return Ok(());
            }
            let start = line.start_time.load(Ordering::Relaxed);
            match liveness::check(pid, start) {
                Liveness::Alive => Ok(()),
                Liveness::Dead => Err(pid),
            }
        }
        consumer_state::CLOSED => Err(pid),
        _ => Ok(()),
    }
}

impl<B: Backing> Drop for Producer<B> {
    fn drop(&mut self) {
        let header = self.backing.header();
        let retired = &header.retired;
        let c = self.counters;
        retired.frames.fetch_add(c.frames, Ordering::Relaxed);
        retired.bytes.fetch_add(c.bytes, Ordering::Relaxed);
        retired.drops.fetch_add(c.drops, Ordering::Relaxed);
        retired.rejected.fetch_add(c.rejected, Ordering::Relaxed);
        retired.data_posts.fetch_add(c.data_posts, Ordering::Relaxed);
        retired.waits.fetch_add(c.waits, Ordering::Relaxed);
        let slot = &header.slots[self.slot];
        slot.inflight_pos.store(NO_CLAIM, Ordering::Relaxed);
        // Release: SYNC POINT: pairs with the Acquire CAS in `join` (and
        // the consumer's Acquire load of `state`): our last stores are
        // visible to the slot's next owner.
        slot.owner.store(slot_owner(slot_state::FREE, 0), Ordering::Release);
    }
}

/// Room for one record, claimed and not yet published. Fill it through
/// `DerefMut`, then [`commit`](Reservation::commit). Dropping it without
/// commit publishes a skip record.
pub struct Reservation<'a, B: Backing> {
    producer: &'a mut Producer<B>,
    position: u64,
    len: u64,
    kind: u32,
    flags: u32,
    sequence: u64,
    published: bool,
}

impl<B: Backing> Reservation<'_, B> {
    /// Sets the record kind the consumer will see.
    pub fn set_kind(&mut self, kind: u32) {
        self.kind = kind;
    }

    /// Sets application flags carried with the record.
    pub fn set_flags(&mut self, flags: u32) {
        self.flags = flags;
    }

    /// Absolute ring position of this record.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// This producer's sequence number for the record.
    pub fn sequence(&self) -> u64 {
        self.sequence
    }

    /// Publishes the record.
    pub fn commit(mut self) {
        self.publish(true);
    }

    fn publish(&mut self, committed: bool) {
        if !self.published {
            self.published = true;
            let fields = ReservationFields::from(&*self);
            self.producer.publish_fields(fields, committed);
        }
    }
}

/// The fields of a reservation, detached from the borrow of its producer.
struct ReservationFields {
    position: u64,
    len: u64,
    kind: u32,
    flags: u32,
    sequence: u64,
}

impl<B: Backing> From<&Reservation<'_, B>> for ReservationFields {
    fn from(r: &Reservation<'_, B>) -> Self {
        ReservationFields { position: r.position, len: r.len, kind: r.kind, flags: r.flags, sequence: r.sequence }
    }
}

impl<B: Backing> Producer<B> {
    fn publish_fields(&mut self, r: ReservationFields, committed: bool) {
        let record = self.backing.record(r.position);
        record.len.store(r.len as u32, Ordering::Relaxed);
        record.kind.store(r.kind, Ordering::Relaxed);
        record.flags.store(r.flags, Ordering::Relaxed);
        record.producer.store(self.slot as u32, Ordering::Relaxed);
        record.sequence.store(r.sequence, Ordering::Relaxed);
        let salt = self.geometry.salt;
        let stamp = if committed { committed_stamp(r.position, salt) } else { skipped_stamp(r.position, salt) };
        // Release: SYNC POINT: pairs with the Acquire load of the stamp in
        // `Consumer::try_recv`; publishes the payload and the fields above.
        record.stamp.store(stamp, Ordering::Release);
        if committed {
            self.counters.frames += 1;
            self.counters.bytes += r.len;
            let slot = self.slot_line();
            slot.frames.store(self.counters.frames, Ordering::Relaxed);
            slot.bytes.store(self.counters.bytes, Ordering::Relaxed);
        }
        self.wake_consumer();
    }
}

impl<B: Backing> Drop for Reservation<'_, B> {
    fn drop(&mut self) {
        // Not committed: publish a skip record so the consumer never stalls.
        self.publish(false);
    }
}

impl<B: Backing> Deref for Reservation<'_, B> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: the claim gives this reservation exclusive use of `len`
        // payload bytes at `position` until it is published (the consumer
        // does not read past an unpublished stamp, other producers claim
        // disjoint ranges), and `len <= max_payload` was checked.
        unsafe { std::slice::from_raw_parts(self.producer.backing.payload(self.position), self.len as usize) }
    }
}

impl<B: Backing> DerefMut for Reservation<'_, B> {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`, and `&mut self` makes this the only view.
        unsafe { std::slice::from_raw_parts_mut(self.producer.backing.payload(self.position), self.len as usize) }
    }
}
