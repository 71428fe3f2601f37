//! The consumer's answers to stalled, stale, forgotten and hostile claims,
//! on a heap-backed ring (no memfd), so they also run under miri. Each test
//! writes the segment state an interleaving (or a hostile peer) leaves.

use std::sync::Arc;
use std::time::Duration;

use crate::backing::heap::HeapBacking;
use crate::backing::Backing;
use crate::consumer::Consumer;
use crate::layout::record_size;
use crate::producer::Producer;
use crate::sync::Ordering;

const CAPACITY: u64 = 4096;
/// Stall timeout of these rings, and how long the tests let it pass.
const STALL_US: u64 = 1_000;
const PAST_STALL: Duration = Duration::from_millis(5);

fn ring() -> (Arc<HeapBacking>, Consumer<HeapBacking>) {
    let backing = Arc::new(HeapBacking::new(CAPACITY, STALL_US));
    let consumer = Consumer::start(backing.clone()).unwrap();
    (backing, consumer)
}

fn live(backing: &Arc<HeapBacking>) -> Producer<HeapBacking> {
    Producer::join(backing.clone(), std::process::id(), 0).unwrap()
}

/// A producer whose death is confirmed: pid 0 never names a process.
fn dead(backing: &Arc<HeapBacking>) -> Producer<HeapBacking> {
    Producer::join(backing.clone(), 0, 0).unwrap()
}

fn read(backing: &HeapBacking) -> u64 {
    backing.header().read.position.load(Ordering::Relaxed)
}

/// Polls until a frame arrives (letting stall timeouts pass), at most 50 times.
fn next_frame(consumer: &Consumer<HeapBacking>) -> crate::frame::Frame<'_, HeapBacking> {
    for _ in 0..50 {
        if let Some(frame) = consumer.try_recv().unwrap() {
            return frame;
        }
        std::thread::sleep(PAST_STALL);
    }
    panic!("no frame arrived");
}

/// Announces (and, as a winner does, claims) `size` bytes at `position` in
/// `producer`'s slot, as a producer that stopped or died right there left it.
fn announce(backing: &HeapBacking, producer: &Producer<HeapBacking>, position: u64, size: u64) {
    let slot = &backing.header().slots[producer.slot()];
    slot.inflight_size.store(size, Ordering::Relaxed);
    // Release: SYNC POINT: as in `Producer::try_claim`, pairs with the
    // consumer's Acquire load of the announcement.
    slot.inflight_pos.store(position, Ordering::Release);
}

fn set_write(backing: &HeapBacking, position: u64) {
    // Release: SYNC POINT: as the CAS in `Producer::try_claim`, pairs with
    // the consumer's Acquire load of `write`.
    backing.header().write.position.store(position, Ordering::Release);
}

#[test]
fn records_committed_after_a_stalled_one_are_delivered_and_read_stops_at_it() {
    let (backing, consumer) = ring();
    let mut slow = live(&backing);
    let mut fast = live(&backing);
    let mut stalled = slow.reserve(100).unwrap();
    fast.send(2, b"after the stall").unwrap();
    assert!(consumer.try_recv().unwrap().is_none(), "waits one stall check first");
    let after = next_frame(&consumer);
    assert_eq!(&after.to_vec()[..], b"after the stall");
    drop(after);
    assert_eq!(read(&backing), 0, "space behind the stalled record stays reserved");
    stalled.copy_from_slice(&[7; 100]);
    stalled.commit();
    let late = next_frame(&consumer);
    assert_eq!((&late.to_vec()[..], late.position()), (&[7u8; 100][..], 0));
    assert!(late.is_late(), "a late commit is flagged");
    drop(late);
    assert_eq!(read(&backing), record_size(100) + record_size(15));
    let stats = consumer.stats();
    assert_eq!((stats.corrupt, stats.stalls, stats.late, stats.stuck), (0, 1, 1, 0));
}

#[test]
fn forgotten_reservation_is_skipped_not_corrupt() {
    let (backing, consumer) = ring();
    let mut producer = live(&backing);
    std::mem::forget(producer.reserve(10).unwrap());
    producer.send(2, b"next").unwrap();
    let frame = next_frame(&consumer);
    assert_eq!(&frame.to_vec()[..], b"next");
    drop(frame);
    let stats = consumer.stats();
    assert_eq!((stats.corrupt, stats.skipped), (0, 1));
}

#[test]
fn stale_announcement_of_a_live_producer_does_not_wedge_the_ring() {
    let (backing, consumer) = ring();
    // B won the CAS at 0 for 192 bytes and died before committing; A
    // announced 0 too, lost the CAS and stopped right there, still
    // announcing 0.
    let mut a = live(&backing);
    let b = dead(&backing);
    let mut other = live(&backing);
    announce(&backing, &b, 0, 192);
    announce(&backing, &a, 0, 192);
    set_write(&backing, 192);
    other.send(5, b"survivor").unwrap();
    let frame = next_frame(&consumer);
    assert_eq!((&frame.to_vec()[..], frame.position()), (&b"survivor"[..], 192));
    drop(frame);
    // A moves on: its next claim replaces the stale announcement, and B's
    // record is recovered.
    a.send(6, b"a again").unwrap();
    let frame = next_frame(&consumer);
    assert_eq!(&frame.to_vec()[..], b"a again");
    drop(frame);
    for _ in 0..50 {
        if consumer.stats().recovered == 1 {
            break;
        }
        let _ = consumer.try_recv().unwrap();
        std::thread::sleep(PAST_STALL);
    }
    assert_eq!(consumer.stats().recovered, 1);
    assert_eq!(consumer.stats().corrupt, 0);
    assert_eq!(read(&backing), backing.header().write.position.load(Ordering::Relaxed));
    drop(b);
}

#[test]
fn recovery_prefers_the_smallest_plausible_size_when_dead_slots_name_one_head() {
    let (backing, consumer) = ring();
    let mut other = live(&backing);
    // Two dead producers announce 0: the lower slot (stale) for 256 bytes,
    // the winner for 128. A record was published at 128, ending at 256.
    let stale = dead(&backing);
    let winner = dead(&backing);
    announce(&backing, &stale, 0, 256);
    announce(&backing, &winner, 0, 128);
    set_write(&backing, 128);
    other.send(5, b"survivor").unwrap();
    assert_eq!(backing.header().write.position.load(Ordering::Relaxed), 256);
    let frame = next_frame(&consumer);
    assert_eq!((&frame.to_vec()[..], frame.position()), (&b"survivor"[..], 128), "the record at 128 was stepped over");
    drop(frame);
    drop((stale, winner));
}

#[test]
fn slot_given_back_while_its_owner_lives_is_never_shared() {
    let (backing, consumer) = ring();
    // Its pid looks dead, but the handle lives on and will drop later.
    let presumed = dead(&backing);
    let slot = presumed.slot();
    assert_eq!(consumer.free_dead_slots(), 1);
    let second = live(&backing);
    assert_eq!(second.slot(), slot, "the freed slot is taken again");
    drop(presumed);
    let third = live(&backing);
    assert_ne!(third.slot(), second.slot(), "one slot, two owners");
    drop(consumer);
}

#[test]
fn write_moved_backwards_never_gives_two_reservations_the_same_bytes() {
    let (backing, _consumer) = ring();
    let mut a = live(&backing);
    let mut b = live(&backing);
    let first = a.reserve(100).unwrap();
    // A hostile peer moves `write` back over the live reservation.
    set_write(&backing, first.position());
    if let Ok(second) = b.reserve(100) {
        let (start, end) = (first.position(), first.position() + record_size(100));
        assert!(
            second.position() + record_size(100) <= start || second.position() >= end,
            "two reservations of one process share bytes {start}..{end}"
        );
    }
    drop(first);
}
