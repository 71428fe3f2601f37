//! The claims this process's producers hold in one mapping of a ring, in
//! process-local memory that no peer can write.
//!
//! A claim is a CAS on the shared `write` cursor, which a hostile peer may
//! move backwards: two honest producers of this process could then both
//! win the same bytes and hand out two `&mut [u8]` over them. So after
//! winning its CAS a producer records its range here and checks it against
//! the ranges the other producers of this mapping hold. Both sides store,
//! then load, all SeqCst: of two producers with overlapping claims at least
//! one sees the other's range and gives its claim up (both may: that only
//! costs frames, and only when a peer is already corrupting the ring).
//! Honest claims never overlap, so honest producers never give one up.

use crate::layout::MAX_PRODUCERS;
use crate::sync::{AtomicU64, Ordering};

/// `start` of a slot holding no claim.
const NONE: u64 = u64::MAX;

/// One range per producer slot: `start` is stored last and cleared first.
pub struct LocalClaims {
    start: [AtomicU64; MAX_PRODUCERS],
    end: [AtomicU64; MAX_PRODUCERS],
}

impl Default for LocalClaims {
    fn default() -> Self {
        LocalClaims::new()
    }
}

impl LocalClaims {
    pub fn new() -> Self {
        LocalClaims {
            start: core::array::from_fn(|_| AtomicU64::new(NONE)),
            end: core::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    /// Records that `slot` holds `start..end`; `false` (and nothing
    /// recorded) when another producer of this process holds bytes of it.
    pub fn enter(&self, slot: usize, start: u64, end: u64) -> bool {
        // SeqCst, both: SYNC POINT: the Dekker pair of the same stores by
        // the other producers' `enter`, and of the loads in `overlaps`.
        self.end[slot].store(end, Ordering::SeqCst);
        self.start[slot].store(start, Ordering::SeqCst);
        if self.overlaps(slot, start, end) {
            self.leave(slot);
            return false;
        }
        true
    }

    /// `slot` holds no claim any more (published, or given up).
    pub fn leave(&self, slot: usize) {
        // Release: SYNC POINT: pairs with the SeqCst loads in `overlaps`;
        // our use of the bytes is over before the range disappears.
        self.start[slot].store(NONE, Ordering::Release);
    }

    fn overlaps(&self, slot: usize, start: u64, end: u64) -> bool {
        (0..MAX_PRODUCERS).filter(|&other| other != slot).any(|other| {
            // A range read while its owner replaces it could pair an old
            // start with a new end: read start, end, start again until the
            // start holds still (honest starts only grow, so a repeated
            // value is the same claim). Give up judging after a few tries
            // and count it as an overlap.
            for _ in 0..16 {
                // SeqCst: SYNC POINT: see `enter`.
                let other_start = self.start[other].load(Ordering::SeqCst);
                if other_start == NONE {
                    return false;
                }
                // SeqCst: SYNC POINT: see `enter`.
                let other_end = self.end[other].load(Ordering::SeqCst);
                // SeqCst: SYNC POINT: see `enter`.
                if self.start[other].load(Ordering::SeqCst) == other_start {
                    return start < other_end && other_start < end;
                }
            }
            true
        })
    }
}
