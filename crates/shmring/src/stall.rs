//! What the consumer does while a record stays unpublished past the stall
//! timeout. A producer whose death is confirmed loses the record (it is
//! stepped over and counted as recovered); any other producer keeps it, for
//! as long as it takes: the record is *stepped around*, so records
//! committed after it are delivered, while `read` stops at it and no byte
//! of it can be reused. The stall becomes visible to producers only once
//! the ring fills behind it. A record committed late is delivered then,
//! flagged ([`Frame::is_late`]); one its producer dies on is recovered.

use std::time::Instant;

use crate::backing::Backing;
use crate::consumer::{Consumer, State};
use crate::error::Result;
use crate::frame::Frame;
use crate::layout::{classify_stamp, owner_pid, record_size, StampState};
use crate::liveness::{self, Judge, Verdict};
use crate::recovery::{self, StallVerdict};
use crate::sync::Ordering;

/// A record stepped around while its producer holds it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Pending {
    pub position: u64,
    pub end: u64,
    /// Whether its producer was sent SIGKILL.
    pub killed: bool,
}

impl<B: Backing> Consumer<B> {
    /// Judges producers by this consumer's namespace and watches.
    pub(crate) fn with_judge<T>(&self, f: impl FnOnce(&Judge<'_>) -> T) -> T {
        self.watches.with(|watches| f(&Judge { own_namespace: self.own_namespace, watches }))
    }

    /// The head record is claimed but unpublished. Returns whether the head
    /// moved (stepped over or around, or published meanwhile).
    pub(crate) fn on_stall(&self, st: &mut State) -> Result<bool> {
        let now = Instant::now();
        let since = *st.stall_since.get_or_insert(now);
        if now.duration_since(since) < self.stall_timeout {
            return Ok(false);
        }
        let head = st.peek;
        let verdict = self.with_judge(|judge| {
            recovery::examine_stall(self.header(), &self.geometry, self.backing.as_ref(), head, st.cached_write, judge)
        });
        match verdict {
            StallVerdict::Published => Ok(true),
            StallVerdict::Owner { size, slot, verdict: Verdict::Dead } => {
                self.recover(st, head, size, slot);
                self.step_over(st, head, head + size);
                // Producers that died together often left claims back to
                // back: check the next stalled head at once.
                st.stall_since = now.checked_sub(self.stall_timeout);
                self.free_dead_slots_in(st);
                Ok(true)
            }
            StallVerdict::Owner { size, slot, verdict } => {
                st.counters.stalls += 1;
                self.header().consumed.stalls.store(st.counters.stalls, Ordering::Relaxed);
                #[cfg(feature = "tracing")]
                tracing::warn!(
                    position = head,
                    size,
                    slot,
                    pid = owner_pid(self.header().slots[slot].owner.load(Ordering::Relaxed)),
                    confirmable = verdict == Verdict::Alive,
                    stalled_ms = now.duration_since(since).as_millis() as u64,
                    "a live producer holds its claim past the stall timeout; delivering the records after it"
                );
                let _ = (slot, verdict);
                st.pending.push(Pending { position: head, end: head + size, killed: false });
                self.header().consumed.stuck.store(st.pending.len() as u64, Ordering::Relaxed);
                st.held.push_back(crate::consumer::Held { position: head, end: head + size, released: false });
                st.peek = head + size;
                self.header().peek.position.store(st.peek, Ordering::Relaxed);
                st.stall_since = None;
                Ok(true)
            }
            StallVerdict::Unclaimed => {
                Err(self.corrupt(st, head, "unpublished record that no producer claims".to_string()))
            }
        }
    }

    fn recover(&self, st: &mut State, position: u64, size: u64, slot: usize) {
        st.counters.recovered += 1;
        self.header().consumed.recovered.store(st.counters.recovered, Ordering::Relaxed);
        #[cfg(feature = "tracing")]
        tracing::warn!(
            position,
            size,
            slot,
            pid = owner_pid(self.header().slots[slot].owner.load(Ordering::Relaxed)),
            "producer died between claim and commit; record recovered"
        );
        let _ = (position, size, slot);
    }

    /// Delivers a pending record its producer committed, releases one it
    /// skipped, recovers one whose producer is confirmed dead. Stamps are
    /// looked at on every call; owners once per stall timeout.
    pub(crate) fn resolve_pending(&self, st: &mut State) -> Result<Option<Frame<'_, B>>> {
        if st.pending.is_empty() {
            return Ok(None);
        }
        let now = Instant::now();
        let check_owners = st.pending_checked.is_none_or(|t| now.duration_since(t) >= self.stall_timeout);
        if check_owners {
            st.pending_checked = Some(now);
        }
        let mut index = 0;
        while index < st.pending.len() {
            let pending = st.pending[index];
            let record = self.backing.record(pending.position);
            // Acquire: SYNC POINT: pairs with the Release store of the stamp
            // in `Producer::publish_fields`, as in `try_recv`.
            let stamp = record.stamp.load(Ordering::Acquire);
            match classify_stamp(stamp, pending.position, self.geometry.salt) {
                StampState::Committed => {
                    self.settle(st, index);
                    let len = u64::from(record.len.load(Ordering::Relaxed));
                    let producer = record.producer.load(Ordering::Relaxed);
                    if len > self.geometry.max_payload
                        || record_size(len) != pending.end - pending.position
                        || producer as usize >= crate::layout::MAX_PRODUCERS
                    {
                        self.release_now(st, pending.position);
                        let reason =
                            format!("late record of {len} bytes does not fit the claim it was stepped around as");
                        return Err(self.corrupt_counted(st, pending.position, reason));
                    }
                    st.counters.late += 1;
                    self.header().consumed.late.store(st.counters.late, Ordering::Relaxed);
                    return Ok(Some(self.frame(st, pending.position, len, producer, true)));
                }
                StampState::Skipped => {
                    self.settle(st, index);
                    st.counters.skipped += 1;
                    self.header().consumed.skipped.store(st.counters.skipped, Ordering::Relaxed);
                    self.release_now(st, pending.position);
                    continue;
                }
                StampState::Unpublished if check_owners => {
                    if self.owner_gone(st, index) {
                        continue;
                    }
                }
                StampState::Unpublished => {}
            }
            index += 1;
        }
        Ok(None)
    }

    /// Checks the owner of pending record `index`: recovers the record
    /// (and returns `true`) once its death is confirmed; kills it first
    /// when allowed.
    fn owner_gone(&self, st: &mut State, index: usize) -> bool {
        let pending = st.pending[index];
        let verdict = self.with_judge(|judge| {
            recovery::examine_stall(
                self.header(),
                &self.geometry,
                self.backing.as_ref(),
                pending.position,
                pending.end.max(st.cached_write),
                judge,
            )
        });
        match verdict {
            // Its stamp turned up meanwhile: the next pass delivers it.
            StallVerdict::Published => false,
            StallVerdict::Owner { slot, verdict: Verdict::Dead, size } => {
                self.settle(st, index);
                self.recover(st, pending.position, size, slot);
                self.release_now(st, pending.position);
                self.free_dead_slots_in(st);
                true
            }
            StallVerdict::Owner { slot, .. } => {
                if self.kill_stuck && !pending.killed && self.kill_stuck_producer(slot, pending) {
                    st.pending[index].killed = true;
                    st.counters.killed += 1;
                    self.header().consumed.killed.store(st.counters.killed, Ordering::Relaxed);
                }
                false
            }
            // Nobody seems to claim it now: a view of the table read
            // stale, or a peer scribbling on it. It was claimed when it was
            // stepped around, so it is waited for (dropping it would free
            // bytes its producer may still write); it stays counted as
            // stuck.
            StallVerdict::Unclaimed => false,
        }
    }

    /// SIGKILLs the live owner of a stuck record when it runs as our user
    /// in our pid namespace. Returns whether the signal was sent.
    fn kill_stuck_producer(&self, slot: usize, pending: Pending) -> bool {
        let line = &self.header().slots[slot];
        let pid = owner_pid(line.owner.load(Ordering::Relaxed));
        let checkable = liveness::same_namespace(self.own_namespace, line.pid_namespace.load(Ordering::Relaxed));
        // SAFETY: getuid has no preconditions.
        let same_user = liveness::uid_of(pid) == Some(unsafe { libc::getuid() });
        if !checkable || !same_user || pid == liveness::own_pid() || pid <= 1 {
            return false;
        }
        // SAFETY: kill(2) of a process we checked is ours and alive.
        let sent = unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) } == 0;
        #[cfg(feature = "tracing")]
        tracing::warn!(pid, position = pending.position, sent, "killed a producer stuck on its claim");
        let _ = pending;
        sent
    }

    /// Removes pending record `index` from the list.
    fn settle(&self, st: &mut State, index: usize) {
        st.pending.remove(index);
        self.header().consumed.stuck.store(st.pending.len() as u64, Ordering::Relaxed);
    }

    /// Releases the held record at `position` (nobody reads it).
    fn release_now(&self, st: &mut State, position: u64) {
        if let Some(held) = st.held.iter_mut().find(|h| h.position == position) {
            held.released = true;
        }
        self.advance_read(st);
    }

    /// Counts a corrupt record without moving `peek` (the record lies
    /// behind it already).
    fn corrupt_counted(&self, st: &mut State, position: u64, reason: String) -> crate::Error {
        st.counters.corrupt += 1;
        self.header().consumed.corrupt.store(st.counters.corrupt, Ordering::Relaxed);
        #[cfg(feature = "tracing")]
        tracing::error!(position, %reason, "corrupt record");
        crate::Error::Corrupt { position, reason }
    }

    /// Gives back the slots of producers whose death is confirmed and
    /// whose claims are settled.
    pub(crate) fn free_dead_slots_in(&self, st: &State) -> usize {
        let pending: Vec<u64> = st.pending.iter().map(|p| p.position).collect();
        let freed = self.with_judge(|judge| recovery::free_dead_slots(self.header(), st.peek, &pending, judge));
        self.watches.prune(self.header());
        freed
    }

    /// When a producer found the table full, gives back what can be.
    pub(crate) fn give_back_slots_if_wanted(&self, st: &State) {
        let wanted = &self.header().waiters.slots_wanted;
        if wanted.load(Ordering::Relaxed) != 0 {
            wanted.store(0, Ordering::Relaxed);
            self.free_dead_slots_in(st);
        }
    }

    /// Gives back the slots of producers whose death is confirmed (their
    /// records delivered or recovered) and returns how many. The consumer
    /// does this on its own when a producer finds the table full.
    pub fn free_dead_slots(&self) -> usize {
        let st = self.state.borrow();
        self.free_dead_slots_in(&st)
    }
}
