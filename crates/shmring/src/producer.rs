//! The producer side: claim space with a CAS on `write`, fill it in place,
//! publish it with one Release store of the record's stamp.

use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::backing::Backing;
use crate::error::{Error, Result};
use crate::layout::{
    committed_stamp, consumer_state, owner_generation, owner_state, record_size, skipped_stamp, slot_owner, slot_state,
    Geometry, Header, ProducerSlot, MAX_PRODUCERS, NO_CLAIM,
};
use crate::liveness::{self, Liveness};
use crate::signal::Signal;
use crate::sync::{fence, Ordering};

/// Who a producer is, as its slot tells the consumer. Read once when a
/// process attaches: afterwards a producer never opens a file, reads
/// `/proc` or signals a process it cannot check (a sandbox forbids all
/// three).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Identity {
    pub pid: u32,
    /// 0: unknown (no `/proc`).
    pub start_time: u64,
    /// 0: unknown.
    pub pid_namespace: u64,
    /// The liveness token its launcher gave it (0: none).
    pub liveness_token: u64,
}

impl Identity {
    /// This process, as far as it can tell (a sandbox hides `/proc`).
    pub(crate) fn own(liveness_token: u64) -> Self {
        Identity {
            pid: liveness::own_pid(),
            start_time: liveness::own_start_time(),
            pid_namespace: liveness::own_pid_namespace(),
            liveness_token,
        }
    }
}

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
/// still lives (a `kill(pid, 0)` and a `/proc` read, made only when both
/// live in one pid namespace that this producer could read at attach).
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
    /// The owner word this handle wrote into its slot (state ACTIVE): every
    /// later transition is a CAS from it.
    owner: u64,
    /// Boxed: read only when cloning and on a full ring.
    identity: Box<Identity>,
    /// The reservation handed out and not published yet. A reservation
    /// passed to `mem::forget` never publishes itself: the next `reserve`
    /// (or the producer's drop) publishes it as a skip record.
    /// Kept as plain words (position [`NO_CLAIM`] when none): copying an
    /// `Option` of the fields compiles to a `memcpy` call, which a
    /// sanitizer of a C++ host sees without the atomics that order it.
    unpublished_position: u64,
    unpublished_len: u64,
    unpublished_sequence: u64,
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
    /// Takes a free slot of the producer table and returns a handle (the
    /// pid namespace is this process's, read from `/proc`).
    #[cfg(test)]
    pub(crate) fn join(backing: Arc<B>, pid: u32, start_time: u64) -> Result<Self> {
        let identity = Identity { pid, start_time, pid_namespace: liveness::own_pid_namespace(), liveness_token: 0 };
        Producer::join_as(backing, identity)
    }

    /// Takes a free slot of the producer table for a producer that says it
    /// is `identity`. A full table is never cleared here (telling dead
    /// producers from live ones takes `/proc` and signals, which a
    /// sandboxed producer must not use): the consumer is asked to give back
    /// the slots of producers whose death it can confirm, and the caller
    /// may try again later.
    pub(crate) fn join_as(backing: Arc<B>, identity: Identity) -> Result<Self> {
        let geometry = *backing.geometry();
        let header = backing.header();
        let (slot, owner) = loop {
            let Some((slot, joining)) = take_free_slot(header, identity.pid) else {
                let waiters = &header.waiters;
                waiters.slots_wanted.store(1, Ordering::Relaxed);
                waiters.data_seq.fetch_add(1, Ordering::Release);
                backing.signal().wake(&waiters.data_seq, false);
                return Err(Error::TooManyProducers { max: MAX_PRODUCERS });
            };
            let s = &header.slots[slot];
            s.start_time.store(identity.start_time, Ordering::Relaxed);
            s.pid_namespace.store(identity.pid_namespace, Ordering::Relaxed);
            s.liveness_token.store(identity.liveness_token, Ordering::Relaxed);
            s.inflight_size.store(0, Ordering::Relaxed);
            s.inflight_pos.store(NO_CLAIM, Ordering::Relaxed);
            s.claimed_pos.store(NO_CLAIM, Ordering::Relaxed);
            for counter in [&s.frames, &s.bytes, &s.drops, &s.rejected, &s.data_posts, &s.waits] {
                counter.store(0, Ordering::Relaxed);
            }
            let active = slot_owner(slot_state::ACTIVE, owner_generation(joining), identity.pid);
            // Release: SYNC POINT: pairs with the Acquire loads of `owner`
            // in the consumer's registry scans; the identity above is
            // visible first. Only a peer scribbling on the table makes it
            // fail: then take another slot.
            if s.owner.compare_exchange(joining, active, Ordering::Release, Ordering::Relaxed).is_ok() {
                break (slot, active);
            }
        };
        // Acquire: SYNC POINT: pairs with the consumer's Release store of
        // `read`; space before it is ours to overwrite.
        let cached_read = header.read.position.load(Ordering::Acquire);
        Ok(Producer {
            backing,
            geometry,
            slot,
            owner,
            identity: Box::new(identity),
            unpublished_position: NO_CLAIM,
            unpublished_len: 0,
            unpublished_sequence: 0,
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
    /// takes this producer's identity (pid, start time, pid namespace,
    /// liveness token) as read at attach, from private memory: nothing is
    /// read from `/proc` again.
    pub fn try_clone(&self) -> Result<Self> {
        let mut clone = Producer::join_as(self.backing.clone(), *self.identity)?;
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
        self.publish_forgotten();
        // The clock is read only once the ring turns out full: a claim
        // that succeeds at once (the common case) never pays for it.
        let mut deadline = None;
        let position = loop {
            if let Some(position) = self.try_claim(size)? {
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
        (self.unpublished_position, self.unpublished_len, self.unpublished_sequence) = (position, len, sequence);
        Ok(Reservation { producer: self, position, len, kind: 0, flags: 0, sequence, published: false })
    }

    /// Whether the consumer named in the header still lives (`true` while
    /// none has attached yet, and when it cannot be checked from here: a
    /// closed ring is the only sign of a consumer in another namespace).
    /// Costs a syscall and a `/proc` read when it can be checked.
    pub fn consumer_alive(&self) -> bool {
        consumer_liveness(self.backing.header(), self.identity.pid_namespace).is_ok()
    }

    /// A reservation given to `mem::forget` left its record unpublished:
    /// publish it as a skip record, so it never stalls the consumer. Its
    /// bytes are no longer borrowed (the forgotten guard held the only
    /// borrow of this producer).
    fn publish_forgotten(&mut self) {
        if self.unpublished_position != NO_CLAIM {
            let fields = ReservationFields {
                position: self.unpublished_position,
                len: self.unpublished_len,
                kind: 0,
                flags: 0,
                sequence: self.unpublished_sequence,
            };
            self.publish_fields(fields, false);
        }
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
    fn try_claim(&mut self, size: u64) -> Result<Option<u64>> {
        let claimed = self.cas_claim(size);
        let slot = self.slot_line();
        let Some(position) = claimed else {
            // Withdraw the announcement: a stale one would name us as a
            // possible owner of a record someone else claimed. Release,
            // as every store to the claim words: SYNC POINT: pairs with
            // the Acquire loads in `recovery::examine_stall`; whoever reads
            // it sees everything this producer published before.
            slot.inflight_pos.store(NO_CLAIM, Ordering::Release);
            return Ok(None);
        };
        // Release: SYNC POINT: pairs with the Acquire load of `claimed_pos`
        // in `recovery::examine_stall`: we won this position.
        slot.claimed_pos.store(position, Ordering::Release);
        if !self.backing.local_claims().enter(self.slot, position, position + size) {
            // `write` went backwards under us: another producer of this
            // process holds these bytes. Never hand them out twice.
            // Release: SYNC POINT: as above.
            slot.claimed_pos.store(NO_CLAIM, Ordering::Release);
            // Release: SYNC POINT: as above.
            slot.inflight_pos.store(NO_CLAIM, Ordering::Release);
            return Err(Error::Corrupt {
                position,
                reason: "the write cursor moved backwards over a claim of this process".into(),
            });
        }
        Ok(Some(position))
    }

    /// The CAS loop of a claim; `None` when the ring is full.
    fn cas_claim(&mut self, size: u64) -> Option<u64> {
        let header = self.backing.header();
        let capacity = self.geometry.capacity;
        let slot = &header.slots[self.slot];
        let mut write = header.write.position.load(Ordering::Relaxed);
        // Cursors are shared memory: checked arithmetic, so a corrupt
        // header makes the ring look full instead of panicking.
        let fits =
            |write: u64, read: u64| write.checked_sub(read).is_some_and(|used| used.saturating_add(size) <= capacity);
        loop {
            if write % crate::layout::RECORD_ALIGN != 0 {
                return None; // a peer broke the cursor: never claim off the record grid
            }
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

    /// Sleeps until the consumer frees space (or `timeout`). The consumer
    /// wakes every sleeping producer at once, so no wake-up is ever handed
    /// on between producers.
    fn sleep_for_space(&mut self, size: u64, timeout: Duration) {
        let header = self.backing.header();
        let waiters = &header.waiters;
        // Acquire: SYNC POINT: pairs with the consumer's Release bump of
        // `space_seq` in `Consumer::advance_read`.
        let seq = waiters.space_seq.load(Ordering::Acquire);
        waiters.producers_waiting.fetch_add(1, Ordering::Relaxed);
        // SeqCst fence: SYNC POINT: the Dekker pair of the fence in
        // `Consumer::advance_read`: either the consumer sees our
        // announcement (and bumps `space_seq` after our load above) or we
        // see its new `read` below.
        fence(Ordering::SeqCst);
        let read = header.read.position.load(Ordering::Acquire);
        let write = header.write.position.load(Ordering::Relaxed);
        let room = write.checked_sub(read).is_some_and(|used| used.saturating_add(size) <= self.geometry.capacity);
        if !room {
            self.counters.waits += 1;
            self.slot_line().waits.store(self.counters.waits, Ordering::Relaxed);
            self.backing.signal().wait(&waiters.space_seq, seq, timeout);
        }
        waiters.producers_waiting.fetch_sub(1, Ordering::Relaxed);
    }

    /// Rate-limited check of the consumer, made only when the ring is full.
    fn consumer_gone_check(&mut self) -> Option<Error> {
        let now = Instant::now();
        let due = self.last_consumer_check.is_none_or(|t| now.duration_since(t) >= CONSUMER_CHECK_INTERVAL);
        if due {
            self.last_consumer_check = Some(now);
            self.consumer_gone = consumer_liveness(self.header(), self.identity.pid_namespace).is_err();
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
            let seq = &self.backing.header().waiters.data_seq;
            // Release: SYNC POINT: pairs with the consumer's Acquire load of
            // `data_seq` before it sleeps: a bump after that load makes its
            // sleep return at once.
            seq.fetch_add(1, Ordering::Release);
            self.backing.signal().wake(seq, false);
            self.counters.data_posts += 1;
            self.slot_line().data_posts.store(self.counters.data_posts, Ordering::Relaxed);
        }
    }
}

/// Takes a FREE slot for `pid` (state JOINING, next generation), if there
/// is one, and returns it with the owner word written.
fn take_free_slot(header: &Header, pid: u32) -> Option<(usize, u64)> {
    (0..MAX_PRODUCERS).find_map(|i| {
        let owner = &header.slots[i].owner;
        let current = owner.load(Ordering::Relaxed);
        let joining = slot_owner(slot_state::JOINING, owner_generation(current).wrapping_add(1), pid);
        (owner_state(current) == slot_state::FREE
            && owner
                // Acquire: SYNC POINT: pairs with the Release CAS to FREE
                // when a slot is given back (`Producer::drop`,
                // `recovery::free_dead_slots`): its old owner's stores are
                // behind us.
                .compare_exchange(current, joining, Ordering::Acquire, Ordering::Relaxed)
                .is_ok())
        .then_some((i, joining))
    })
}

/// Checks the consumer line: `Err(pid)` when a consumer attached and is
/// now gone (dead, or closed the ring). `own_namespace` is the producer's
/// pid namespace as read at attach: the consumer's pid is checked only when
/// it is the same one.
pub(crate) fn consumer_liveness(header: &Header, own_namespace: u64) -> std::result::Result<(), u32> {
    let line = &header.consumer;
    // Acquire: SYNC POINT: pairs with the Release store of ATTACHED in
    // `Consumer::start` (and of CLOSED in `Consumer::drop`): the pid, start
    // time and namespace read below are the ones stored before it.
    let state = owner_state(line.owner.load(Ordering::Acquire));
    let pid = line.pid.load(Ordering::Relaxed);
    match state {
        consumer_state::ATTACHED => {
            if !liveness::same_namespace(own_namespace, line.pid_namespace.load(Ordering::Relaxed)) {
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
        self.publish_forgotten();
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
        // Release, both: SYNC POINT: pairs with the Acquire loads in
        // `recovery::examine_stall`: a consumer that reads "no claim" here
        // sees the stamps this producer published before (a Relaxed store
        // would not carry them, and a record it published would look
        // unclaimed).
        slot.inflight_pos.store(NO_CLAIM, Ordering::Release);
        slot.claimed_pos.store(NO_CLAIM, Ordering::Release);
        let free = slot_owner(slot_state::FREE, owner_generation(self.owner), 0);
        // Release: SYNC POINT: pairs with the Acquire CAS in
        // `take_free_slot` (and the consumer's Acquire loads of `owner`):
        // our last stores are visible to the slot's next owner. A CAS, so
        // a slot given away meanwhile is never freed under its new owner.
        let _ = slot.owner.compare_exchange(self.owner, free, Ordering::Release, Ordering::Relaxed);
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
#[derive(Clone, Copy)]
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
        self.unpublished_position = NO_CLAIM;
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
        self.backing.local_claims().leave(self.slot);
        // Release: SYNC POINT: pairs with the Acquire load of `claimed_pos`
        // in `recovery::examine_stall`: whoever sees the claim gone sees
        // the stamp stored above.
        self.slot_line().claimed_pos.store(NO_CLAIM, Ordering::Release);
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
