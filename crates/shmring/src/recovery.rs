//! Who owns a stalled record, and what may be freed: the winner of the
//! claim (a slot whose `claimed_pos` names it) or, when it died before
//! saying so, the producers that announced it; records whose size must be
//! taken from an announcement are checked to end on a real boundary; and a
//! safe point after anything corrupt.
//!
//! Nothing here depends on zeroed memory: a record's owner is known from the
//! announcement each producer stores in its slot before its claim, and a
//! boundary is recognised by a stamp that encodes its own position.

use crate::backing::Backing;
use crate::layout::{
    classify_stamp, owner_generation, owner_state, slot_owner, slot_state, Geometry, Header, StampState, NO_CLAIM,
    RECORD_ALIGN, RECORD_HEADER_SPAN,
};
use crate::liveness::{Judge, Verdict};
use crate::sync::Ordering;

/// What a stalled record turned out to be.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum StallVerdict {
    /// It was published while we looked.
    Published,
    /// It spans `size` bytes and belongs to the producer of `slot`, judged
    /// `verdict`. Several announcers and no winner: the smallest plausible
    /// size, owned by a live one if any lives.
    Owner { size: u64, slot: usize, verdict: Verdict },
    /// No producer claims it: the segment is corrupt.
    Unclaimed,
}

pub(crate) fn examine_stall<B: Backing>(
    header: &Header,
    geometry: &Geometry,
    backing: &B,
    head: u64,
    write: u64,
    judge: &Judge<'_>,
) -> StallVerdict {
    let mut winner = None;
    let mut announcers = Vec::new();
    for (index, slot) in header.slots.iter().enumerate() {
        // Acquire: SYNC POINT: pairs with the Release CAS to ACTIVE in
        // `Producer::join_as`: the slot's identity is visible.
        let owner = slot.owner.load(Ordering::Acquire);
        if owner_state(owner) != slot_state::ACTIVE {
            continue;
        }
        // Acquire: SYNC POINT: pairs with the Release store of
        // `claimed_pos` in `Producer::try_claim` (and of NO_CLAIM in
        // `publish_fields`).
        let claimed = slot.claimed_pos.load(Ordering::Acquire);
        // Acquire: SYNC POINT: pairs with the Release store of
        // `inflight_pos` in `Producer::cas_claim`: its size is visible.
        let announced = slot.inflight_pos.load(Ordering::Acquire);
        let size = slot.inflight_size.load(Ordering::Relaxed);
        if claimed == head {
            winner = Some((index, owner, size));
            break;
        }
        if announced == head {
            announcers.push((index, owner, size));
        }
    }
    // Acquire: SYNC POINT: pairs with the Release store of the stamp in
    // `Producer::publish_fields`.
    let stamp = backing.record(head).stamp.load(Ordering::Acquire);
    if classify_stamp(stamp, head, geometry.salt) != StampState::Unpublished {
        return StallVerdict::Published;
    }
    let fits = |size: u64| fits(geometry, head, size, write);
    if let Some((slot, owner, size)) = winner {
        // The winner's own announcement is its size: no other record's
        // boundary is needed (one read stale could make a live record look
        // unclaimed, and stepping over that would free bytes its producer
        // still writes).
        if !fits(size) {
            return StallVerdict::Unclaimed;
        }
        return StallVerdict::Owner { size, slot, verdict: judge.slot(&header.slots[slot], owner) };
    }
    // No winner said so: it died between its CAS and that store, and the
    // others lost theirs (or stopped just after). A record of the smallest
    // plausible size ends where a real record starts; a live announcer may
    // still be its owner, so it is waited for while one lives.
    announcers.retain(|&(_, _, size)| fits(size));
    let judged: Vec<(usize, u64, Verdict)> =
        announcers.iter().map(|&(slot, owner, size)| (slot, size, judge.slot(&header.slots[slot], owner))).collect();
    let plausible: Vec<_> = judged
        .iter()
        .copied()
        .filter(|&(_, size, _)| plausible_end(header, geometry, backing, head, size, write))
        .collect();
    // Recovering needs a size that ends on a boundary; waiting for a live
    // announcer does not (its boundary may just not be visible yet).
    let choose = |set: &[(usize, u64, Verdict)]| {
        let size = set.iter().map(|&(_, size, _)| size).min()?;
        let owner = set.iter().copied().find(|&(_, _, verdict)| verdict != Verdict::Dead).unwrap_or(set[0]);
        Some(StallVerdict::Owner { size, slot: owner.0, verdict: owner.2 })
    };
    let live: Vec<_> = judged.iter().copied().filter(|&(_, _, verdict)| verdict != Verdict::Dead).collect();
    choose(&plausible).or_else(|| choose(&live)).unwrap_or(StallVerdict::Unclaimed)
}

/// Whether a record of `size` bytes at `head` is well formed and claimed.
fn fits(geometry: &Geometry, head: u64, size: u64, write: u64) -> bool {
    size >= RECORD_HEADER_SPAN && size % RECORD_ALIGN == 0 && size <= geometry.capacity && head + size <= write
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
    if !fits(geometry, head, size, write) {
        return false;
    }
    let end = head + size;
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
            // Acquire: SYNC POINT: pairs with the Release CAS to ACTIVE in
            // `Producer::join_as`.
            owner_state(slot.owner.load(Ordering::Acquire)) != slot_state::FREE
                // Acquire: SYNC POINT: pairs with the Release store of
                // `inflight_pos` in `Producer::cas_claim`.
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
        // Acquire: SYNC POINT: pairs with the Release CAS to ACTIVE in
        // `Producer::join_as`, as in `is_boundary`.
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

/// Gives back the slots of producers whose death is confirmed and whose
/// last claim is settled: behind `peek` and not among the `pending`
/// records still waited for. Their counters are folded into the retired
/// totals. JOINING slots are never taken back (only their joiner knows who
/// it is yet). Returns how many were freed.
pub(crate) fn free_dead_slots(header: &Header, peek: u64, pending: &[u64], judge: &Judge<'_>) -> usize {
    let mut freed = 0;
    for slot in &header.slots {
        // Acquire: SYNC POINT: pairs with the Release CAS to ACTIVE in
        // `Producer::join_as`.
        let owner = slot.owner.load(Ordering::Acquire);
        if owner_state(owner) != slot_state::ACTIVE || judge.slot(slot, owner) != Verdict::Dead {
            continue;
        }
        // Acquire: SYNC POINT: pairs with the Release stores of
        // `claimed_pos` and `inflight_pos` in `Producer::try_claim`.
        let claimed = slot.claimed_pos.load(Ordering::Acquire);
        // Acquire: SYNC POINT: as above.
        let announced = slot.inflight_pos.load(Ordering::Acquire);
        let unsettled = |claim: u64| claim != NO_CLAIM && (claim >= peek || pending.contains(&claim));
        if unsettled(claimed) || unsettled(announced) {
            continue;
        }
        let counts = [&slot.frames, &slot.bytes, &slot.drops, &slot.rejected, &slot.data_posts, &slot.waits]
            .map(|c| c.load(Ordering::Relaxed));
        let free = slot_owner(slot_state::FREE, owner_generation(owner), 0);
        // Release: SYNC POINT: pairs with the Acquire CAS in
        // `producer::take_free_slot`. A CAS on the whole owner word: a slot
        // whose generation moved on is left to its new owner.
        if slot.owner.compare_exchange(owner, free, Ordering::Release, Ordering::Relaxed).is_ok() {
            let r = &header.retired;
            let totals = [&r.frames, &r.bytes, &r.drops, &r.rejected, &r.data_posts, &r.waits];
            for (total, count) in totals.into_iter().zip(counts) {
                total.fetch_add(count, Ordering::Relaxed);
            }
            freed += 1;
            #[cfg(feature = "tracing")]
            tracing::info!(pid = crate::layout::owner_pid(owner), "freed the slot of a dead producer");
        }
    }
    freed
}
