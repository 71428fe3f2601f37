//! Edge cases of the protocol on a heap-backed ring (no memfd, no mmap),
//! so they also run under miri:
//! `cargo +nightly miri test -p shmring --no-default-features --lib`.

use std::sync::Arc;
use std::time::Duration;

use crate::backing::heap::HeapBacking;
use crate::backing::Backing;
use crate::consumer::Consumer;
use crate::error::Error;
use crate::layout::{committed_stamp, record_size};
use crate::producer::{FullPolicy, Producer};
use crate::sync::Ordering;

const CAPACITY: u64 = 4096;

fn ring_with_stall(stall_us: u64) -> (Arc<HeapBacking>, Consumer<HeapBacking>, Producer<HeapBacking>) {
    let backing = Arc::new(HeapBacking::new(CAPACITY, stall_us));
    let consumer = Consumer::start(backing.clone()).unwrap();
    let producer = Producer::join(backing.clone(), std::process::id(), 0).unwrap();
    (backing, consumer, producer)
}

fn ring() -> (Arc<HeapBacking>, Consumer<HeapBacking>, Producer<HeapBacking>) {
    ring_with_stall(250_000)
}

/// Fills the ring to the last byte with records 0..4 of `[i; 960]` (four
/// records of 1024 - 64 payload bytes are 4096 bytes) and makes the
/// producer fail, not drop, when full.
fn fill_exactly(producer: &mut Producer<HeapBacking>) {
    producer.set_full_policy(FullPolicy::Fail);
    for i in 0..4u8 {
        producer.send(u32::from(i), &[i; 960]).unwrap();
    }
    assert!(matches!(producer.send(9, &[]), Err(Error::Full)));
}

#[test]
fn exactly_full_ring_accepts_the_last_byte_and_refuses_one_more() {
    let (_b, consumer, mut producer) = ring();
    fill_exactly(&mut producer);
    let frame = consumer.try_recv().unwrap().unwrap();
    assert_eq!(frame.to_vec(), &[0; 960][..]);
    // Still held: no space yet.
    assert!(matches!(producer.send(9, &[]), Err(Error::Full)));
    drop(frame);
    producer.send(9, &[9; 960]).unwrap();
    assert_eq!(producer.stats().rejected, 2);
}

#[test]
fn record_of_maximum_size_round_trips_and_one_byte_more_is_refused() {
    let (_b, consumer, mut producer) = ring();
    let max = producer.max_payload();
    assert_eq!(max as u64, CAPACITY - 64);
    let payload: Vec<u8> = (0..max).map(|i| (i * 7) as u8).collect();
    producer.send(3, &payload).unwrap();
    let frame = consumer.try_recv().unwrap().unwrap();
    assert_eq!(frame.to_vec(), &payload[..]);
    drop(frame);
    assert!(
        matches!(producer.send(3, &vec![0; max + 1]), Err(Error::TooLarge { len, max: m }) if len == max as u64 + 1 && m == max as u64)
    );
}

#[test]
fn records_wrap_around_the_end_contiguously_for_many_laps() {
    let (_b, consumer, mut producer) = ring();
    // 1000-byte payloads (1088-byte records) never divide the capacity, so
    // records straddle the end at ever-changing offsets.
    for n in 0..40u32 {
        let payload: Vec<u8> = (0..1000).map(|i| (i as u32 ^ n) as u8).collect();
        producer.send(n, &payload).unwrap();
        let frame = consumer.try_recv().unwrap().unwrap();
        assert_eq!(frame.kind(), n);
        assert_eq!(frame.to_vec(), &payload[..]);
        assert_eq!(frame.bytes().as_ptr() as usize % 64, 0, "payloads are 64-byte aligned");
    }
}

#[test]
fn frames_released_out_of_order_free_space_in_ring_order() {
    let (backing, consumer, mut producer) = ring();
    for i in 0..3u8 {
        producer.send(u32::from(i), &[i; 100]).unwrap();
    }
    let a = consumer.try_recv().unwrap().unwrap();
    let b = consumer.try_recv().unwrap().unwrap();
    let c = consumer.try_recv().unwrap().unwrap();
    assert_eq!(consumer.held(), 3);
    let read = || backing.header().read.position.load(Ordering::Relaxed);
    drop(c);
    drop(b);
    assert_eq!(read(), 0, "space behind a held frame must stay reserved");
    assert_eq!(a.to_vec(), &[0; 100][..]);
    drop(a);
    assert_eq!(read(), 3 * record_size(100));
    assert_eq!(consumer.held(), 0);
}

#[test]
fn reservation_dropped_without_commit_becomes_a_skip_record() {
    let (_b, consumer, mut producer) = ring();
    {
        let mut r = producer.reserve(50).unwrap();
        r[0] = 1;
    }
    producer.send(2, b"after").unwrap();
    let frame = consumer.try_recv().unwrap().unwrap();
    assert_eq!(frame.to_vec(), b"after");
    assert_eq!(frame.sequence(), 1, "the skipped reservation took sequence 0");
    drop(frame);
    assert_eq!(consumer.stats().skipped, 1);
}

#[test]
fn drop_policy_counts_drops_and_leaves_sequence_gaps() {
    let (_b, consumer, mut producer) = ring();
    producer.send(0, &[0; 3000]).unwrap();
    assert!(matches!(producer.send(1, &[1; 3000]), Err(Error::Dropped)));
    let frame = consumer.try_recv().unwrap().unwrap();
    drop(frame);
    producer.send(2, &[2; 3000]).unwrap();
    let frame = consumer.try_recv().unwrap().unwrap();
    assert_eq!(frame.sequence(), 2, "the drop shows as a gap");
    drop(frame);
    let stats = consumer.stats();
    assert_eq!((stats.drops, stats.committed_frames, stats.consumed_frames), (1, 2, 2));
}

#[test]
fn block_policy_times_out_then_drops() {
    let (_b, _consumer, mut producer) = ring();
    producer.set_full_policy(FullPolicy::Block(Duration::from_millis(30)));
    producer.send(0, &[0; 3000]).unwrap();
    let started = std::time::Instant::now();
    assert!(matches!(producer.send(1, &[1; 3000]), Err(Error::Timeout)));
    assert!(started.elapsed() >= Duration::from_millis(30));
    assert_eq!(producer.stats().drops, 1);
}

#[test]
fn consumer_sees_nothing_until_the_stamp_is_published() {
    let (_b, consumer, mut producer) = ring();
    let mut r = producer.reserve(8).unwrap();
    r.copy_from_slice(b"in place");
    assert!(consumer.try_recv().unwrap().is_none());
    r.commit();
    assert_eq!(consumer.try_recv().unwrap().unwrap().to_vec(), b"in place");
}

#[test]
fn lying_length_is_reported_as_corrupt_and_skipped() {
    let (backing, consumer, mut producer) = ring();
    producer.send(1, &[1; 64]).unwrap();
    producer.send(2, &[2; 64]).unwrap();
    // A hostile producer rewrites the first record's length.
    backing.record(0).len.store(1 << 30, Ordering::Relaxed);
    match consumer.try_recv() {
        Err(Error::Corrupt { position: 0, reason }) => assert!(reason.contains("length")),
        other => panic!("expected Corrupt, got {other:?}"),
    }
    let frame = consumer.try_recv().unwrap().unwrap();
    assert_eq!(frame.kind(), 2, "the consumer resumes at the next record");
    drop(frame);
    assert_eq!(consumer.stats().corrupt, 1);
}

#[test]
fn length_running_past_write_is_corrupt() {
    let (backing, consumer, mut producer) = ring();
    producer.send(1, &[1; 64]).unwrap();
    backing.record(0).len.store(2000, Ordering::Relaxed);
    assert!(matches!(consumer.try_recv(), Err(Error::Corrupt { position: 0, .. })));
    assert!(consumer.try_recv().unwrap().is_none());
}

#[test]
fn write_cursor_moved_backwards_is_corrupt_not_a_hang() {
    let (backing, consumer, mut producer) = ring();
    producer.send(1, &[1; 64]).unwrap();
    drop(consumer.try_recv().unwrap().unwrap());
    backing.header().write.position.store(64, Ordering::Relaxed);
    assert!(matches!(consumer.try_recv(), Err(Error::Corrupt { .. })));
    backing.header().write.position.store(1 << 40, Ordering::Relaxed);
    assert!(matches!(consumer.try_recv(), Err(Error::Corrupt { .. })));
}

#[test]
fn unpublished_record_nobody_claims_is_corrupt_after_the_stall_timeout() {
    let (backing, consumer, _producer) = ring_with_stall(1_000);
    // A hostile producer moves `write` without announcing a claim.
    backing.header().write.position.store(128, Ordering::Relaxed);
    assert!(consumer.try_recv().unwrap().is_none());
    std::thread::sleep(Duration::from_millis(5));
    assert!(matches!(consumer.try_recv(), Err(Error::Corrupt { position: 0, .. })));
    assert!(consumer.try_recv().unwrap().is_none());
}

#[test]
fn claim_of_a_dead_producer_is_recovered_and_later_records_survive() {
    let (backing, consumer, mut producer) = ring_with_stall(1_000);
    // Slot of a "dead" producer: pid 0 is never alive. The handle is kept
    // (a killed process never drops its own) and only dropped at the end.
    let dead = Producer::join(backing.clone(), 0, 0).unwrap();
    let slot = &backing.header().slots[dead.slot()];
    // It claimed 192 bytes at 0 and died before publishing.
    slot.inflight_size.store(192, Ordering::Relaxed);
    // Release: SYNC POINT: as in `Producer::try_claim`, pairs with the
    // Acquire loads of `inflight_pos` and `write` in the consumer.
    slot.inflight_pos.store(0, Ordering::Release);
    backing.header().write.position.store(192, Ordering::Release);
    producer.send(5, b"survivor").unwrap();
    assert!(consumer.try_recv().unwrap().is_none(), "waits for the stall timeout first");
    std::thread::sleep(Duration::from_millis(5));
    let frame = consumer.try_recv().unwrap().unwrap();
    assert_eq!((frame.to_vec(), frame.position()), (b"survivor".to_vec(), 192));
    drop(frame);
    let stats = consumer.stats();
    assert_eq!(stats.recovered, 1);
    assert_eq!(
        crate::layout::owner_state(slot.owner.load(Ordering::Relaxed)),
        crate::layout::slot_state::FREE,
        "the dead producer's slot is given back"
    );
    drop(dead);
}

#[test]
fn claim_of_a_live_slow_producer_is_never_skipped() {
    let (_backing, consumer, mut producer) = ring_with_stall(1_000);
    let mut r = producer.reserve(16).unwrap();
    std::thread::sleep(Duration::from_millis(5));
    for _ in 0..3 {
        assert!(consumer.try_recv().unwrap().is_none());
        std::thread::sleep(Duration::from_millis(2));
    }
    r.copy_from_slice(b"slow but present");
    r.commit();
    assert_eq!(consumer.try_recv().unwrap().unwrap().to_vec(), b"slow but present");
    assert_eq!(consumer.stats().recovered, 0);
}

#[test]
fn stale_stamps_from_an_earlier_lap_never_look_committed() {
    let (backing, consumer, mut producer) = ring();
    for _ in 0..8 {
        producer.send(1, &[1; 960]).unwrap();
        drop(consumer.try_recv().unwrap().unwrap());
    }
    let write = backing.header().write.position.load(Ordering::Relaxed);
    // The record header at `write` still holds the stamp of a lap ago.
    let stale = backing.record(write).stamp.load(Ordering::Relaxed);
    assert_eq!(stale, committed_stamp(write - CAPACITY, backing.geometry().salt));
    backing.header().write.position.store(write + 1024, Ordering::Relaxed);
    assert!(consumer.try_recv().unwrap().is_none(), "a stale stamp is not a record");
}

#[test]
fn two_producer_threads_deliver_everything_in_per_producer_order() {
    let per_producer: u32 = if cfg!(miri) { 30 } else { 20_000 };
    let backing = Arc::new(HeapBacking::new(1 << 16, 250_000));
    let consumer = Consumer::start(backing.clone()).unwrap();
    let threads: Vec<_> = (0..2u32)
        .map(|id| {
            let mut producer = Producer::join(backing.clone(), std::process::id(), 0).unwrap();
            producer.set_full_policy(FullPolicy::Block(Duration::from_secs(30)));
            std::thread::spawn(move || {
                for n in 0..per_producer {
                    let len = (n as usize * 37) % 700;
                    let mut r = producer.reserve(len).unwrap();
                    for (i, byte) in r.iter_mut().enumerate() {
                        *byte = (n as usize + i) as u8 ^ id as u8;
                    }
                    r.set_kind(id);
                    r.commit();
                }
            })
        })
        .collect();
    let mut next = [0u32; 2];
    while next.iter().sum::<u32>() < 2 * per_producer {
        let frame = match consumer.recv_timeout(Duration::from_secs(10)).unwrap() {
            Some(frame) => frame,
            None => panic!("stalled at {next:?}"),
        };
        let id = frame.kind() as usize;
        let n = next[id];
        assert_eq!(frame.sequence(), u64::from(n));
        assert_eq!(frame.len(), (n as usize * 37) % 700);
        assert!(frame.to_vec().iter().enumerate().all(|(i, &b)| b == (n as usize + i) as u8 ^ id as u8));
        next[id] += 1;
    }
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn cloned_producer_has_its_own_slot_and_sequence() {
    let (backing, consumer, mut producer) = ring();
    let mut clone = producer.try_clone().unwrap();
    assert_ne!(clone.slot(), producer.slot());
    // The clone carries the original's identity, taken from private memory
    // (a peer scribbling on the original's slot cannot change it).
    let identity = |slot: usize| {
        let s = &backing.header().slots[slot];
        (
            crate::layout::owner_pid(s.owner.load(Ordering::Relaxed)),
            s.pid_namespace.load(Ordering::Relaxed),
            s.start_time.load(Ordering::Relaxed),
        )
    };
    assert_eq!(identity(clone.slot()), identity(producer.slot()));
    producer.send(1, b"a").unwrap();
    clone.send(2, b"b").unwrap();
    let a = consumer.try_recv().unwrap().unwrap();
    let b = consumer.try_recv().unwrap().unwrap();
    assert_eq!((a.producer() as usize, a.sequence()), (producer.slot(), 0));
    assert_eq!((b.producer() as usize, b.sequence()), (clone.slot(), 0));
}

#[test]
fn copy_out_of_a_record_rewritten_meanwhile_reads_whole_words() {
    use std::sync::atomic::{AtomicBool, AtomicU64};
    let (_b, consumer, mut producer) = ring();
    producer.send(1, &[0x11; 512]).unwrap();
    let frame = consumer.try_recv().unwrap().unwrap();
    let bytes = frame.bytes();
    let stop = AtomicBool::new(false);
    let rounds = if cfg!(miri) { 8 } else { 5_000 };
    std::thread::scope(|scope| {
        scope.spawn(|| {
            // A producer writing a record after publishing it (hostile or
            // broken), a word at a time as its own process would.
            let words = bytes.as_ptr().cast_mut().cast::<u64>();
            for value in [0x2222_2222_2222_2222u64, 0x1111_1111_1111_1111].into_iter().cycle() {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                for w in 0..bytes.len() / 8 {
                    // SAFETY: in the record (512 bytes, 64-aligned), which
                    // the ring keeps mapped while `frame` lives.
                    unsafe { AtomicU64::from_ptr(words.add(w)) }.store(value, Ordering::Relaxed);
                }
            }
        });
        let mut copy = [0u8; 512];
        for _ in 0..rounds {
            bytes.copy_to_slice(&mut copy);
            for word in copy.chunks_exact(8) {
                assert!(word == [0x11; 8] || word == [0x22; 8], "a torn word: {word:?}");
            }
        }
        stop.store(true, Ordering::Relaxed);
    });
}

#[test]
fn views_copy_and_load_any_part_of_a_record_exactly() {
    let (_b, consumer, mut producer) = ring();
    let payload: Vec<u8> = (0..200u32).map(|i| (i * 7 + 3) as u8).collect();
    producer.send(1, &payload).unwrap();
    let frame = consumer.try_recv().unwrap().unwrap();
    let bytes = frame.bytes();
    assert_eq!(frame.to_vec(), payload);
    let step = if cfg!(miri) { 13 } else { 1 };
    for start in (0..=payload.len()).step_by(step) {
        for end in (start..=payload.len()).step_by(step) {
            let part = bytes.get(start..end).unwrap();
            assert_eq!(part.to_vec(), &payload[start..end], "{start}..{end}");
            let private = crate::SharedBytes::from(&payload[..]).get(start..end).unwrap();
            assert_eq!(private.to_vec(), &payload[start..end]);
        }
        let word = payload.get(start..start + 4).map(|b| u32::from_ne_bytes(b.try_into().unwrap()));
        assert_eq!(bytes.load_u32(start), word, "u32 at {start}");
        assert_eq!(bytes.load_u8(start), payload.get(start).copied());
    }
    assert!(bytes.get(..201).is_none() && bytes.get(190..210).is_none() && bytes.load_u64(193).is_none());
    let mut appended = vec![9];
    bytes.get(10..20).unwrap().append_to(&mut appended);
    assert_eq!(appended[1..], payload[10..20]);
    assert_eq!(appended[0], 9);
}

#[test]
fn lease_dropped_on_another_thread_frees_its_space_in_ring_order() {
    let (_b, consumer, mut producer) = ring();
    fill_exactly(&mut producer);
    let first = consumer.try_recv().unwrap().unwrap().into_lease().unwrap();
    let second = consumer.try_recv().unwrap().unwrap().into_lease().unwrap();
    assert_eq!((consumer.held(), consumer.leases()), (2, 2));
    // The younger lease goes first, on another thread: its space stays
    // reserved behind the older one.
    std::thread::spawn(move || assert_eq!(second.bytes().to_vec(), [1; 960])).join().unwrap();
    assert_eq!((consumer.held(), consumer.leases()), (1, 1));
    assert!(matches!(producer.send(9, &[]), Err(Error::Full)), "space is reused in ring order only");
    std::thread::spawn(move || drop(first)).join().unwrap();
    assert_eq!(consumer.held(), 0, "the consumer took both releases at this call");
    producer.send(9, &[9; 960]).unwrap();
    producer.send(9, &[9; 960]).unwrap();
    assert_eq!(consumer.try_recv().unwrap().unwrap().kind(), 2, "the next record in order");
}

#[test]
fn lease_limit_is_a_clear_error_and_consumes_nothing() {
    let (_b, consumer, mut producer) = ring();
    consumer.set_lease_limit(2);
    for i in 0..3u8 {
        producer.send(u32::from(i), &[i; 100]).unwrap();
    }
    let a = consumer.recv_lease_timeout(Duration::ZERO).unwrap().unwrap();
    let b = consumer.recv_lease_timeout(Duration::ZERO).unwrap().unwrap();
    match consumer.recv_lease_timeout(Duration::ZERO) {
        Err(Error::TooManyHeld { held: 2, limit: 2 }) => {}
        other => panic!("expected TooManyHeld, got {other:?}"),
    }
    let third = consumer.try_recv().unwrap().expect("the refused lease consumed no record");
    assert_eq!(third.kind(), 2);
    let third = third.into_lease().expect_err("at the limit, the frame is handed back");
    assert_eq!(third.to_vec(), [2; 100]);
    drop((a, b));
    let third = third.into_lease().expect("room again");
    assert_eq!((third.kind(), consumer.leases()), (2, 1));
}

#[test]
fn leases_outlive_their_consumer_safely() {
    let (backing, consumer, mut producer) = ring();
    producer.send(7, b"still mapped").unwrap();
    let lease = consumer.try_recv().unwrap().unwrap().into_lease().unwrap();
    // Only the lease holds the ring now.
    drop((consumer, producer, backing));
    assert_eq!((lease.kind(), lease.bytes().to_vec()), (7, b"still mapped".to_vec()));
    std::thread::spawn(move || drop(lease)).join().unwrap();
}

/// A consumer is moved between threads by its users (a GStreamer element
/// keeps it in a mutex); its interrupter and leases go anywhere.
#[test]
fn consumer_is_send_and_interrupter_is_send_and_sync() {
    fn send<T: Send>() {}
    fn send_sync<T: Send + Sync>() {}
    send::<Consumer<HeapBacking>>();
    send::<crate::ring::RingConsumer>();
    send_sync::<crate::interrupt::Interrupter<HeapBacking>>();
    send_sync::<crate::interrupt::Interrupter<crate::MappedRing>>();
}

#[test]
fn an_interrupt_ends_the_wait_at_once_and_only_once() {
    let (_backing, consumer, mut producer) = ring();
    let interrupter = consumer.interrupter();
    let waiting = std::thread::spawn({
        let interrupter = interrupter.clone();
        move || {
            std::thread::sleep(Duration::from_millis(if cfg!(miri) { 1 } else { 30 }));
            interrupter.interrupt();
        }
    });
    let began = std::time::Instant::now();
    assert!(consumer.recv_timeout(Duration::from_secs(30)).unwrap().is_none());
    assert!(began.elapsed() < Duration::from_secs(10), "woken by the interrupt, not the timeout");
    waiting.join().unwrap();
    // Taken: the next wait runs its course.
    let began = std::time::Instant::now();
    assert!(consumer.recv_timeout(Duration::from_millis(20)).unwrap().is_none());
    assert!(began.elapsed() >= Duration::from_millis(20));
    // Pending before the wait: taken by it. A frame already there still
    // comes first; `recv` reports the interrupt as an error.
    producer.send(1, b"first").unwrap();
    interrupter.interrupt();
    assert_eq!(consumer.recv().unwrap().to_vec(), b"first");
    assert!(matches!(consumer.recv(), Err(Error::Interrupted)));
}
