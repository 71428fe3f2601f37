//! Loom models of the protocol, run with
//! `RUSTFLAGS="--cfg loom" cargo test -p shmring --release --lib loom`.
//!
//! They drive the real `Producer` and `Consumer` over a heap backing whose
//! atomics are loom's, so every interleaving (within the preemption bound)
//! of claim, commit, peek and release is explored, and a lost wake-up shows
//! as a deadlock.

use std::sync::Arc;

use loom::thread;

use crate::backing::heap::HeapBacking;
use crate::backing::Backing;
use crate::consumer::Consumer;
use crate::producer::{FullPolicy, Producer};

const CAPACITY: u64 = 4096;
/// Long enough never to trigger dead-producer checks inside a model.
const NO_STALL_CHECKS_US: u64 = 3_600_000_000;

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(3);
    builder.check(f);
}

fn ring() -> Arc<HeapBacking> {
    Arc::new(HeapBacking::new(CAPACITY, NO_STALL_CHECKS_US))
}

fn join(backing: &Arc<HeapBacking>) -> Producer<HeapBacking> {
    Producer::join(backing.clone(), std::process::id(), 0).unwrap()
}

/// Two producers each publish one record while the consumer polls: both
/// arrive exactly once, intact, and all space is released at the end.
#[test]
fn loom_two_producers_one_consumer_every_record_once() {
    model(|| {
        let backing = ring();
        let consumer = Consumer::start(backing.clone()).unwrap();
        let handles: Vec<_> = (0..2u8)
            .map(|id| {
                let mut producer = join(&backing);
                thread::spawn(move || {
                    producer.send(u32::from(id), &[id; 8]).unwrap();
                })
            })
            .collect();
        let mut seen = [false; 2];
        let mut received = 0;
        while received < 2 {
            match consumer.try_recv().unwrap() {
                Some(frame) => {
                    let id = frame.kind() as usize;
                    assert!(!seen[id], "record delivered twice");
                    seen[id] = true;
                    assert_eq!(frame.to_vec(), &[id as u8; 8], "torn payload");
                    received += 1;
                }
                None => thread::yield_now(),
            }
        }
        for handle in handles {
            handle.join().unwrap();
        }
        assert!(consumer.try_recv().unwrap().is_none());
        let header = backing.header();
        use crate::sync::Ordering::Relaxed;
        assert_eq!(header.read.position.load(Relaxed), header.write.position.load(Relaxed));
    });
}

/// The consumer sleeps on "data available" while a producer publishes: the
/// waiter flag and the fences must never lose the wake-up (a lost one is a
/// deadlock loom reports).
#[test]
fn loom_sleeping_consumer_is_always_woken() {
    model(|| {
        let backing = ring();
        let consumer = Consumer::start(backing.clone()).unwrap();
        let mut producer = join(&backing);
        let handle = thread::spawn(move || {
            producer.send(7, &[7; 8]).unwrap();
        });
        let frame = consumer.recv().unwrap();
        assert_eq!(frame.kind(), 7);
        drop(frame);
        handle.join().unwrap();
    });
}

/// A producer blocked on a full ring sleeps on "space available"; the
/// consumer's release must wake it.
#[test]
fn loom_blocked_producer_is_woken_by_release() {
    model(|| {
        let backing = ring();
        let consumer = Consumer::start(backing.clone()).unwrap();
        let mut producer = join(&backing);
        producer.set_full_policy(FullPolicy::Block(std::time::Duration::from_secs(3600)));
        // One record that fills the ring exactly.
        let max = producer.max_payload();
        producer.send(1, &vec![1; max]).unwrap();
        let handle = thread::spawn(move || {
            producer.send(2, &[2; 8]).unwrap();
        });
        let first = consumer.recv().unwrap();
        assert_eq!(first.kind(), 1);
        drop(first);
        let second = consumer.recv().unwrap();
        assert_eq!(second.to_vec(), [2; 8]);
        drop(second);
        handle.join().unwrap();
    });
}

/// Frames released out of order: `read` moves only over the released
/// prefix, so a producer can never overwrite a frame still held.
#[test]
fn loom_out_of_order_release_never_frees_held_frames() {
    model(|| {
        let backing = ring();
        let consumer = Consumer::start(backing.clone()).unwrap();
        let mut producer = join(&backing);
        // Three records of 1024 + 64 bytes fill 3264 of 4096 bytes.
        for kind in 0..3 {
            producer.send(kind, &[kind as u8; 1024]).unwrap();
        }
        let handle = thread::spawn(move || {
            // Needs the first record's space: succeeds only once it is
            // released (drop policy: may also be dropped, never corrupt).
            let _ = producer.send(9, &[9; 1024]);
            producer
        });
        let a = consumer.try_recv().unwrap().unwrap();
        let b = consumer.try_recv().unwrap().unwrap();
        drop(b);
        // `a` still held: its bytes must be intact whatever the producer does.
        assert!(a.to_vec().iter().all(|&x| x == 0));
        drop(a);
        let c = consumer.try_recv().unwrap().unwrap();
        assert!(c.to_vec().iter().all(|&x| x == 2));
        drop(c);
        let producer = handle.join().unwrap();
        let dropped = producer.stats().drops;
        match consumer.try_recv().unwrap() {
            Some(d) => {
                assert_eq!(dropped, 0);
                assert!(d.to_vec().iter().all(|&x| x == 9));
            }
            None => assert_eq!(dropped, 1),
        };
    });
}

/// A producer holds its reservation while another publishes after it: with
/// a stall timeout of zero the consumer may step around the held record
/// at any point. Every record arrives once, intact, one overtaken by
/// the other flagged late, and all space is released at the end.
#[test]
fn loom_record_held_past_the_stall_timeout_is_delivered_late_not_lost() {
    // Every consumer pass with a held record reads the whole producer
    // table: a preemption bound of 2 keeps the model to minutes.
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(2);
    builder.check(|| {
        let backing = Arc::new(HeapBacking::new(CAPACITY, 0));
        let consumer = Consumer::start(backing.clone()).unwrap();
        let mut slow = join(&backing);
        let mut fast = join(&backing);
        let slow_thread = thread::spawn(move || {
            let mut r = slow.reserve(8).unwrap();
            r.copy_from_slice(&[1; 8]);
            r.set_kind(1);
            thread::yield_now();
            r.commit();
        });
        let fast_thread = thread::spawn(move || {
            fast.send(2, &[2; 8]).unwrap();
        });
        let mut delivered: Vec<(u32, u64)> = Vec::new();
        let mut receive = |frame: crate::Frame<'_, HeapBacking>| {
            let kind = frame.kind();
            assert_eq!(&frame.to_vec()[..], &[kind as u8; 8], "torn payload");
            assert!(delivered.iter().all(|&(k, _)| k != kind), "record delivered twice");
            // A record after it came first: it was stepped around, so it
            // is flagged late.
            let overtaken = delivered.iter().any(|&(_, position)| position > frame.position());
            assert!(frame.is_late() || !overtaken, "overtaken but not flagged late");
            delivered.push((kind, frame.position()));
        };
        // A few polls while the producers run (each may step around a held
        // record), then the rest once they are done: bounded, so the model
        // never spins.
        for _ in 0..3 {
            if let Some(frame) = consumer.try_recv().unwrap() {
                receive(frame);
            }
            thread::yield_now();
        }
        slow_thread.join().unwrap();
        fast_thread.join().unwrap();
        while let Some(frame) = consumer.try_recv().unwrap() {
            receive(frame);
        }
        assert_eq!(delivered.len(), 2, "a record was lost: {delivered:?} {:?}", consumer.stats());
        assert!(consumer.try_recv().unwrap().is_none());
        let header = backing.header();
        use crate::sync::Ordering::Relaxed;
        assert_eq!(header.read.position.load(Relaxed), header.write.position.load(Relaxed));
        assert_eq!(consumer.stats().corrupt, 0);
    });
}

/// Two producers sleep for space; one release frees room for both. The
/// consumer wakes every sleeper, so neither sleeps on (a wake-up handed on
/// from one producer to the next could be lost: a deadlock here).
#[test]
fn loom_one_release_wakes_every_blocked_producer() {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(2);
    builder.check(|| {
        let backing = ring();
        let consumer = Consumer::start(backing.clone()).unwrap();
        let mut filler = join(&backing);
        filler.send(0, &vec![0; filler.max_payload()]).unwrap();
        let blocked: Vec<_> = (1..=2u8)
            .map(|id| {
                let mut producer = join(&backing);
                producer.set_full_policy(FullPolicy::Block(std::time::Duration::from_secs(3600)));
                thread::spawn(move || producer.send(u32::from(id), &[id; 8]).unwrap())
            })
            .collect();
        drop(consumer.recv().unwrap());
        for _ in 0..2 {
            drop(consumer.recv().unwrap());
        }
        for handle in blocked {
            handle.join().unwrap();
        }
    });
}

/// Another thread interrupts a consumer asleep on "data available": the
/// flag and the fences must never lose the wake-up (loom's heap signal has
/// no timeout, so a lost one is a deadlock).
#[test]
fn loom_interrupt_always_wakes_a_sleeping_consumer() {
    model(|| {
        let backing = ring();
        let consumer = Consumer::start(backing.clone()).unwrap();
        let interrupter = consumer.interrupter();
        let handle = thread::spawn(move || interrupter.interrupt());
        assert!(matches!(consumer.recv(), Err(crate::Error::Interrupted)));
        handle.join().unwrap();
    });
}
