//! What the consumer does when the head record stays unpublished: find who
//! claimed it in the producer table, wait for it while it lives, step over
//! its record once it is dead, and find a safe point after anything corrupt.
//!
//! Nothing here depends on zeroed memory: a record's owner is known from the
//! announcement each producer stores in its slot before its claim, and a
//! boundary is recognised by a stamp that encodes its own position.

use crate::backing::Backing;
use crate::layout::{
    classify_stamp, owner_pid, owner_state, slot_owner, slot_state, Geometry, Header, StampState, NO_CLAIM,
    RECORD_ALIGN, RECORD_HEADER_SPAN,
};
use crate::liveness::{self, Liveness};
use crate::sync::Ordering;

/// What a stalled head turned out to be.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum StallVerdict {
    /// It was published while we looked.
    Published,
    /// Its producer lives: it is slow, not dead. Wait.
    OwnerAlive,
    /// Its producer died before publishing (or, when `presumed`, its
    /// liveness cannot be checked and it held the record past the
    /// unverifiable stall timeout); the record spans `size` bytes.
    OwnerDead { size: u64, pid: u32, presumed: bool },
    /// No producer claims it: the segment is corrupt.
    Unclaimed,
}

pub(crate) fn examine_stall<B: Backing>(
    header: &Header,
    geometry: &Geometry,
    backing: &B,
    head: u64,
    write: u64,
    unverifiable_expired: bool,
) -> StallVerdict {
    let mut dead = Vec::new();
    for slot in &header.slots {
        // Acquire: SYNC POINT: pairs with the Release store of ACTIVE in
        // `Producer::join`: the slot's pid and start time are visible.
        let owner = slot.owner.load(Ordering::Acquire);
        if owner_state(owner) == slot_state::FREE {
            continue;
        }
        // Acquire: SYNC POINT: pairs with the Release store of
        // `inflight_pos` in `Producer::try_claim`: its size is visible.
        if slot.inflight_pos.load(Ordering::Acquire) != head {
            continue;
        }
        let size = slot.inflight_size.load(Ordering::Relaxed);
        let pid = owner_pid(owner);
        if !liveness::pid_comparable(slot.pid_namespace.load(Ordering::Relaxed)) {
            // Its pid names some other process here (or none): waiting
            // forever could wedge the ring, trusting the pid could skip a
            // live producer. Wait the longer timeout, then presume.
            if !unverifiable_expired {
                return StallVerdict::OwnerAlive;
            }
            dead.push((size, pid, true));
            continue;
        }
        let start = slot.start_time.load(Ordering::Relaxed);
        if liveness::check(pid, start) == Liveness::Alive {
            return StallVerdict::OwnerAlive;
        }
        dead.push((size, pid, false));
    }
    // Acquire: SYNC POINT: pairs with the Release store of the stamp in
    // `Producer::publish_fields`.
    let stamp = backing.record(head).stamp.load(Ordering::Acquire);
    if classify_stamp(stamp, head, geometry.salt) != StampState::Unpublished {
        return StallVerdict::Published;
    }
    // Two dead slots may name the same head (one lost its CAS there, then
    // died): keep the size that ends on a real boundary.
    dead.into_iter()
        .find(|&(size, _, _)| plausible_end(header, geometry, backing, head, size, write))
        .map(|(size, pid, presumed)| StallVerdict::OwnerDead { size, pid, presumed })
        .unwrap_or(StallVerdict::Unclaimed)
}

/// Whether a record of `size` bytes at `head` would end where another
/// record starts (or at `write`).
fn plausible_end<B: Backing>(
    header: &Header,
    geometry: &Geometry,
    backing: &B,
    head: u64,
    size: u64,
    write: u64,
) -> bool {
    if size < RECORD_HEADER_SPAN || size % RECORD_ALIGN != 0 || size > geometry.capacity {
        return false;
    }
    let end = head + size;
    if end > write {
        return false;
    }
    end == write || is_boundary(header, geometry, backing, end)
}

/// A position where a record starts: its stamp is published for it, or a
/// producer announced a claim there.
fn is_boundary<B: Backing>(header: &Header, geometry: &Geometry, backing: &B, position: u64) -> bool {
    // Acquire: SYNC POINT: pairs with the Release store of the stamp in
    // `Producer::publish_fields`.
    let stamp = backing.record(position).stamp.load(Ordering::Acquire);
    classify_stamp(stamp, position, geometry.salt) != StampState::Unpublished
        || header.slots.iter().any(|slot| {
            owner_state(slot.owner.load(Ordering::Acquire)) != slot_state::FREE
                // Acquire: SYNC POINT: pairs with the Release store of
                // `inflight_pos` in `Producer::try_claim`.
                && slot.inflight_pos.load(Ordering::Acquire) == position
        })
}

/// The first record boundary after the corrupt record at `position`, or
/// `write` when there is none. Scans at most capacity / 64 positions.
pub(crate) fn next_safe_point<B: Backing>(
    header: &Header,
    geometry: &Geometry,
    backing: &B,
    position: u64,
    write: u64,
) -> u64 {
    let announced: Vec<u64> = header
        .slots
        .iter()
        // Acquire: SYNC POINT: pairs with the Release store of ACTIVE in
        // `Producer::join`, as in `is_boundary`.
        .filter(|slot| owner_state(slot.owner.load(Ordering::Acquire)) != slot_state::FREE)
        // Acquire: SYNC POINT: as in `is_boundary`.
        .map(|slot| slot.inflight_pos.load(Ordering::Acquire))
        .filter(|&p| p > position && p < write)
        .collect();
    let mut candidate = position + RECORD_ALIGN;
    while candidate < write {
        // Acquire: SYNC POINT: as in `is_boundary`.
        let stamp = backing.record(candidate).stamp.load(Ordering::Acquire);
        if classify_stamp(stamp, candidate, geometry.salt) != StampState::Unpublished || announced.contains(&candidate)
        {
            return candidate;
        }
        candidate += RECORD_ALIGN;
    }
    write
}

/// Gives back the slots of dead producers whose last claim lies behind
/// `peek` (their records were delivered or recovered). Their counters are
/// folded into the retired totals. Returns how many were freed.
pub(crate) fn free_dead_slots(header: &Header, peek: u64) -> usize {
    let mut freed = 0;
    for slot in &header.slots {
        // Acquire: SYNC POINT: pairs with the Release store of ACTIVE in
        // `Producer::join`.
        let owner = slot.owner.load(Ordering::Acquire);
        let (state, pid) = (owner_state(owner), owner_pid(owner));
        // A JOINING slot has not written its start time yet: judge it by
        // its pid alone (and only give it back once that process is gone).
        let start = if state == slot_state::ACTIVE { slot.start_time.load(Ordering::Relaxed) } else { 0 };
        // A producer whose pid cannot be checked keeps its slot, even one
        // presumed dead: if it lives after all, two owners of one slot
        // would confuse every later stall. (A slot lost per crashed
        // sandboxed producer; the table has 64.)
        let unverifiable =
            state == slot_state::ACTIVE && !liveness::pid_comparable(slot.pid_namespace.load(Ordering::Relaxed));
        if state == slot_state::FREE || unverifiable || liveness::check(pid, start) == Liveness::Alive {
            continue;
        }
        // Acquire: SYNC POINT: pairs with the Release store of
        // `inflight_pos` in `Producer::try_claim`.
        let claim = slot.inflight_pos.load(Ordering::Acquire);
        if state == slot_state::ACTIVE && claim != NO_CLAIM && claim >= peek {
            continue;
        }
        let counts = [&slot.frames, &slot.bytes, &slot.drops, &slot.rejected, &slot.data_posts, &slot.waits]
            .map(|c| c.load(Ordering::Relaxed));
        // A dead owner cannot race us, but a joining producer may: only one
        // CAS wins the slot back, and the counters were read before it.
        if slot
            .owner
            // Release: SYNC POINT: pairs with the Acquire CAS in
            // `producer::take_free_slot`.
            .compare_exchange(owner, slot_owner(slot_state::FREE, 0), Ordering::Release, Ordering::Relaxed)
            .is_ok()
        {
            let r = &header.retired;
            let totals = [&r.frames, &r.bytes, &r.drops, &r.rejected, &r.data_posts, &r.waits];
            for (total, count) in totals.into_iter().zip(counts) {
                total.fetch_add(count, Ordering::Relaxed);
            }
            freed += 1;
            #[cfg(feature = "tracing")]
            tracing::info!(pid, "freed the slot of a dead producer");
        }
    }
    freed
}
