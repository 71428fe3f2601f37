//! Lanes: a small fixed set of `Producer`s behind one thread-safe handle.
//!
//! A `shmring::Producer` belongs to one thread at a time (it owns a slot of
//! the ring's producer table and keeps private cursors). C++ callers share
//! one producer object across threads, so the shim keeps `LANES` of them,
//! each guarded by a busy flag that a caller claims with one CAS and gives
//! back with one store. Nothing ever waits: when every lane is busy the
//! frame is dropped and counted, exactly like a full ring. A lane attaches
//! its producer the first time it is claimed, so a handle used by one
//! thread costs one producer slot and one mapping.

use std::cell::{Cell, UnsafeCell};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use shmring::{MappedRing, Producer, RingFds, RingProducer};

/// Producers per handle: more C++ threads than this writing at the same
/// instant drop frames (counted as `dropped_busy`).
pub const LANES: usize = 8;

/// Shim-level counters, all relaxed: each is a statistic on its own.
#[derive(Default)]
pub struct LaneCounters {
    pub frames: AtomicU64,
    pub bytes: AtomicU64,
    pub dropped_full: AtomicU64,
    pub dropped_busy: AtomicU64,
    pub consumer_gone: AtomicU64,
    pub invalid: AtomicU64,
    pub errors: AtomicU64,
    pub lanes_attached: AtomicU32,
}

struct Lane {
    busy: AtomicBool,
    /// Only touched by the thread that set `busy` (see `LaneGuard`).
    producer: UnsafeCell<Option<RingProducer>>,
}

/// The lanes of one C++ producer handle.
pub struct Lanes {
    /// Descriptors kept to attach more lanes (each lane maps the ring).
    fds: RingFds,
    /// The first lane's mapping, which the lanes share: what the handle
    /// as a whole asks (geometry, counters, prefault) needs no lane.
    pub ring: Arc<MappedRing>,
    lanes: [Lane; LANES],
    pub counters: LaneCounters,
}

// SAFETY: `Lanes` is shared between threads through `Arc`. Its only
// non-`Sync` part is each lane's `UnsafeCell<Option<RingProducer>>`, which is
// accessed exclusively by the thread that won the lane's `busy` CAS (Acquire)
// until it stores `false` (Release), so no two threads ever touch one
// producer at once, and each handover is ordered. `RingProducer` is `Send`.
unsafe impl Sync for Lanes {}

thread_local! {
    /// The lane this thread used last: threads settle on distinct lanes
    /// and mostly win their CAS at the first try.
    static PREFERRED: Cell<usize> = const { Cell::new(usize::MAX) };
}
static NEXT_START: AtomicUsize = AtomicUsize::new(0);

impl Lanes {
    /// Attaches the first lane at once (so a bad descriptor is reported at
    /// attach time) and keeps `fds` for the others.
    pub fn attach(fds: RingFds) -> shmring::Result<Arc<Lanes>> {
        let first = Producer::attach(fds.try_clone()?)?;
        let lanes = std::array::from_fn(|_| Lane { busy: AtomicBool::new(false), producer: UnsafeCell::new(None) });
        let lanes = Lanes { fds, ring: Arc::clone(first.ring()), lanes, counters: LaneCounters::default() };
        // SAFETY: nobody else can see `lanes` yet.
        unsafe { *lanes.lanes[0].producer.get() = Some(first) };
        lanes.counters.lanes_attached.store(1, Ordering::Relaxed);
        Ok(Arc::new(lanes))
    }

    /// Another producer on the first lane's mapping of the ring, so the
    /// lanes of one handle share one mapping (one set of page tables, one
    /// first lap of page faults). `None` when the first lane is in use
    /// right now: the caller maps the ring again rather than wait.
    fn clone_first(&self) -> Option<shmring::Result<RingProducer>> {
        let first = &self.lanes[0];
        // Acquire: SYNC POINT: pairs with the Release store of `false` in
        // `LaneGuard::drop`, as in `claim`.
        first.busy.compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed).ok()?;
        // SAFETY: winning lane 0's `busy` CAS makes this the only accessor
        // of its cell until the store below (see `impl Sync`).
        let clone = unsafe { &*first.producer.get() }.as_ref().map(Producer::try_clone);
        // Release: SYNC POINT: pairs with the Acquire CAS in `claim`.
        first.busy.store(false, Ordering::Release);
        clone
    }

    /// Claims a free lane without waiting, or `None` if all are busy.
    pub fn claim(self: &Arc<Self>) -> Option<LaneGuard> {
        let start = PREFERRED.with(|p| {
            if p.get() == usize::MAX {
                p.set(NEXT_START.fetch_add(1, Ordering::Relaxed) % LANES);
            }
            p.get()
        });
        (0..LANES).map(|i| (start + i) % LANES).find_map(|index| {
            self.lanes[index]
                .busy
                // Acquire: SYNC POINT: pairs with the Release store of
                // `false` in `LaneGuard::drop`: the previous holder's use of
                // the producer happens before ours.
                .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
                .then(|| {
                    PREFERRED.with(|p| p.set(index));
                    LaneGuard { lanes: Arc::clone(self), index }
                })
        })
    }
}

/// Exclusive use of one lane until dropped.
pub struct LaneGuard {
    lanes: Arc<Lanes>,
    index: usize,
}

impl LaneGuard {
    /// The lane's producer, attached now if this is the lane's first use.
    pub fn producer(&mut self) -> shmring::Result<&mut RingProducer> {
        // SAFETY: this guard won the lane's `busy` CAS and has not released
        // it, so it is the only accessor of the cell (see `impl Sync`).
        let cell = unsafe { &mut *self.lanes.lanes[self.index].producer.get() };
        if cell.is_none() {
            let producer = match self.lanes.clone_first() {
                Some(clone) => clone?,
                None => Producer::attach(self.lanes.fds.try_clone()?)?,
            };
            *cell = Some(producer);
            self.lanes.counters.lanes_attached.fetch_add(1, Ordering::Relaxed);
        }
        Ok(cell.as_mut().expect("attached above"))
    }

    /// The producer with a lifetime detached from this guard, for a
    /// reservation that travels together with the guard.
    ///
    /// # Safety
    ///
    /// The caller must stop using the returned reference (drop whatever
    /// borrows from it) before this guard is dropped, and must not call
    /// `producer` again while it is in use.
    pub unsafe fn producer_detached(&mut self) -> shmring::Result<&'static mut RingProducer> {
        let producer: *mut RingProducer = self.producer()?;
        // SAFETY: the producer lives in `Lanes`, kept alive (and never
        // moved: it sits in an `Arc`) by this guard; exclusivity lasts until
        // the guard drops, which the caller promises to outlive.
        Ok(unsafe { &mut *producer })
    }

    /// The shared counters.
    pub fn counters(&self) -> &LaneCounters {
        &self.lanes.counters
    }
}

impl Drop for LaneGuard {
    fn drop(&mut self) {
        // Release: SYNC POINT: pairs with the Acquire CAS in `Lanes::claim`;
        // our use of the producer is visible to the next holder.
        self.lanes.lanes[self.index].busy.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shmring::{Consumer, RingOptions};

    #[test]
    fn claims_are_exclusive_and_released_on_drop() {
        let consumer = Consumer::create_anonymous(&RingOptions::with_capacity(1 << 16)).unwrap();
        let lanes = Lanes::attach(consumer.fds().try_clone().unwrap()).unwrap();
        let held: Vec<LaneGuard> = (0..LANES).map(|_| lanes.claim().expect("a free lane")).collect();
        let mut seen: Vec<usize> = held.iter().map(|g| g.index).collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..LANES).collect::<Vec<_>>(), "every lane handed out once");
        assert!(lanes.claim().is_none(), "all busy: no waiting, no sharing");
        drop(held);
        assert!(lanes.claim().is_some());
    }

    #[test]
    fn lanes_share_the_first_lanes_mapping_unless_it_is_busy() {
        let consumer = Consumer::create_anonymous(&RingOptions::with_capacity(1 << 16)).unwrap();
        let name = consumer.name().to_string();
        let mappings =
            || std::fs::read_to_string("/proc/self/maps").unwrap().lines().filter(|l| l.contains(&name)).count();
        let lanes = Lanes::attach(consumer.fds().try_clone().unwrap()).unwrap();
        let with_first_lane = mappings();
        let mut held: Vec<LaneGuard> = (0..LANES).map(|_| lanes.claim().unwrap()).collect();
        let first = held.iter().position(|g| g.index == 0).unwrap();
        let mut first = held.swap_remove(first);
        // Lane 0 busy: a new lane maps the ring again rather than wait.
        held[0].producer().unwrap();
        assert!(mappings() > with_first_lane, "a busy first lane is never waited for");
        drop(held.remove(0));
        // Lane 0 free: the other lanes take producers on its mapping.
        first.producer().unwrap();
        drop(first);
        let before = mappings();
        for guard in &mut held {
            guard.producer().unwrap().send(1, b"x").unwrap();
        }
        assert_eq!(mappings(), before, "new lanes reuse the first lane's mapping");
        assert_eq!(lanes.counters.lanes_attached.load(Ordering::Relaxed), 1 + 1 + held.len() as u32);
        for _ in 0..held.len() {
            assert_eq!(consumer.try_recv().unwrap().unwrap().to_vec(), b"x");
        }
    }
}
