//! Counters in the header, read as a snapshot from any process without
//! disturbing the ring (relaxed loads only, no writes).

use std::os::fd::AsFd;

use crate::backing::Backing;
use crate::consumer::Consumer;
use crate::error::Result;
use crate::layout::{consumer_state, owner_pid, owner_state, slot_state, Geometry, Header, NO_CLAIM};
use crate::producer::Producer;
use crate::segment::{self, HeaderView};
use crate::sync::Ordering;

/// A snapshot of a ring's state and counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub name: String,
    pub capacity: u64,
    pub max_payload: u64,
    pub write: u64,
    pub peek: u64,
    pub read: u64,
    pub consumer_pid: u32,
    /// "none", "attached" or "closed".
    pub consumer_state: &'static str,
    pub consumer_generation: u64,
    /// Records published by producers (live and detached).
    pub committed_frames: u64,
    pub committed_bytes: u64,
    /// Records handed to the consumer.
    pub consumed_frames: u64,
    pub consumed_bytes: u64,
    /// Frames dropped because the ring was full (drop policy, timeouts).
    pub drops: u64,
    /// Sends refused because the ring was full (fail policy).
    pub rejected: u64,
    /// Reservations dropped without commit.
    pub skipped: u64,
    /// Records of producers that died between claim and commit.
    pub recovered: u64,
    /// Corrupt records or cursors found by the consumer.
    pub corrupt: u64,
    /// Times the consumer slept waiting for data.
    pub consumer_sleeps: u64,
    /// Times a producer woke the consumer.
    pub data_posts: u64,
    /// Times a producer slept waiting for space.
    pub producer_waits: u64,
    /// Times the consumer woke waiting producers.
    pub space_posts: u64,
    /// Claims a live producer (or one whose death cannot be confirmed) held
    /// past the stall timeout: the records after them were delivered.
    pub stalls: u64,
    /// Records committed after later ones were delivered.
    pub late: u64,
    /// Records waiting on such a producer right now: `read` stops at the
    /// first, and the ring fills behind it.
    pub stuck: u64,
    /// Stuck producers the consumer killed (when allowed to).
    pub killed: u64,
    pub producers: Vec<ProducerStats>,
}

/// One attached producer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProducerStats {
    pub slot: usize,
    pub pid: u32,
    pub frames: u64,
    pub bytes: u64,
    pub drops: u64,
    pub rejected: u64,
    /// Position of the claim it is making, if any.
    pub last_claim: Option<u64>,
    /// Position of a claim it won and has not published yet.
    pub unpublished: Option<u64>,
}

impl Stats {
    /// Reads a snapshot from a header.
    pub fn read(header: &Header, geometry: &Geometry) -> Stats {
        let r = Ordering::Relaxed;
        let mut stats = Stats {
            name: header.name(),
            capacity: geometry.capacity,
            max_payload: geometry.max_payload,
            write: header.write.position.load(r),
            peek: header.peek.position.load(r),
            read: header.read.position.load(r),
            consumer_pid: header.consumer.pid.load(r),
            consumer_state: match owner_state(header.consumer.owner.load(r)) {
                consumer_state::ATTACHED | consumer_state::ATTACHING => "attached",
                consumer_state::CLOSED => "closed",
                _ => "none",
            },
            consumer_generation: header.consumer.owner.load(r) >> 32,
            committed_frames: header.retired.frames.load(r),
            committed_bytes: header.retired.bytes.load(r),
            consumed_frames: header.consumed.frames.load(r),
            consumed_bytes: header.consumed.bytes.load(r),
            drops: header.retired.drops.load(r),
            rejected: header.retired.rejected.load(r),
            skipped: header.consumed.skipped.load(r),
            recovered: header.consumed.recovered.load(r),
            corrupt: header.consumed.corrupt.load(r),
            consumer_sleeps: header.consumed.sleeps.load(r),
            data_posts: header.retired.data_posts.load(r),
            producer_waits: header.retired.waits.load(r),
            space_posts: header.consumed.space_posts.load(r),
            stalls: header.consumed.stalls.load(r),
            late: header.consumed.late.load(r),
            stuck: header.consumed.stuck.load(r),
            killed: header.consumed.killed.load(r),
            producers: Vec::new(),
        };
        for (index, slot) in header.slots.iter().enumerate() {
            // Acquire: SYNC POINT: pairs with the Release store of ACTIVE in
            // `Producer::join`: the slot's counters are its owner's.
            let owner = slot.owner.load(Ordering::Acquire);
            if owner_state(owner) != slot_state::ACTIVE {
                continue;
            }
            let p = ProducerStats {
                slot: index,
                pid: owner_pid(owner),
                frames: slot.frames.load(r),
                bytes: slot.bytes.load(r),
                drops: slot.drops.load(r),
                rejected: slot.rejected.load(r),
                last_claim: Some(slot.inflight_pos.load(r)).filter(|&p| p != NO_CLAIM),
                unpublished: Some(slot.claimed_pos.load(r)).filter(|&p| p != NO_CLAIM),
            };
            // Wrapping: a hostile producer may have written anything here.
            stats.committed_frames = stats.committed_frames.wrapping_add(p.frames);
            stats.committed_bytes = stats.committed_bytes.wrapping_add(p.bytes);
            stats.drops = stats.drops.wrapping_add(p.drops);
            stats.rejected = stats.rejected.wrapping_add(p.rejected);
            stats.data_posts = stats.data_posts.wrapping_add(slot.data_posts.load(r));
            stats.producer_waits = stats.producer_waits.wrapping_add(slot.waits.load(r));
            stats.producers.push(p);
        }
        stats
    }

    /// Bytes claimed and not yet released, as a percentage of capacity.
    pub fn fill_percent(&self) -> f64 {
        let used = self.write.saturating_sub(self.read).min(self.capacity);
        100.0 * used as f64 / self.capacity.max(1) as f64
    }
}

impl<B: Backing> Consumer<B> {
    /// A snapshot of the ring's counters.
    pub fn stats(&self) -> Stats {
        Stats::read(self.backing().header(), self.geometry())
    }
}

impl<B: Backing> Producer<B> {
    /// A snapshot of the ring's counters.
    pub fn stats(&self) -> Stats {
        Stats::read(self.backing().header(), self.backing().geometry())
    }
}

/// A read-only look at a ring from another process (what `shmring stat`
/// uses): maps the segment read-only and never writes to it.
pub struct RingView {
    view: HeaderView,
    geometry: Geometry,
}

impl RingView {
    /// Maps the segment `memfd` read-only and checks its header.
    pub fn open(memfd: impl AsFd) -> Result<RingView> {
        let len = segment::check_sealed(memfd.as_fd())?;
        if len < std::mem::size_of::<Header>() as u64 {
            return Err(crate::Error::BadSegment { reason: format!("segment of {len} bytes cannot hold a header") });
        }
        let view = HeaderView::map(memfd.as_fd(), len)?;
        // SAFETY: the view maps the whole sealed segment, page aligned and
        // at least a header long; an all-atomics header is valid for any
        // bytes.
        let header = unsafe { &*view.ptr().cast::<Header>() };
        let geometry = Geometry::validate(header, Some(len))?;
        Ok(RingView { view, geometry })
    }

    /// The geometry checked at open (header size, capacity, flags).
    pub fn geometry(&self) -> &Geometry {
        &self.geometry
    }

    /// A snapshot of the ring's counters.
    pub fn stats(&self) -> Stats {
        // SAFETY: as in `open`; the mapping lives as long as `self`.
        let header = unsafe { &*self.view.ptr().cast::<Header>() };
        Stats::read(header, &self.geometry)
    }
}
