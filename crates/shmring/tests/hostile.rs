//! A hostile producer writes anything anywhere in the segment: cursors,
//! producer slots, record headers, payloads. Whatever it writes, the
//! consumer must answer every call with a frame, nothing, or an error —
//! never a panic, an out-of-bounds read or a hang. Property-based: the
//! default run tries `SHMRING_FUZZ_CASES` (default 3,000) mutation sets.

use std::os::fd::{AsFd, AsRawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use shmring::layout::{Header, LINE};
use shmring::{Consumer, Error, RingOptions};

const CAPACITY: u64 = 8192;

/// A writable mapping of a ring's segment, as a hostile producer has.
struct Scribbler {
    ptr: *mut u8,
    len: usize,
}

impl Scribbler {
    fn new(consumer: &Consumer<shmring::MappedRing>) -> Self {
        let header_size = std::mem::size_of::<Header>().next_multiple_of(4096);
        let len = header_size + CAPACITY as usize;
        // SAFETY: a fresh shared mapping of the sealed segment (exactly
        // this long); it aliases the consumer's mapping on purpose.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                consumer.fds().memfd.as_raw_fd(),
                0,
            )
        };
        assert_ne!(ptr, libc::MAP_FAILED);
        Scribbler { ptr: ptr.cast(), len }
    }

    fn write(&self, offset: usize, bytes: &[u8]) {
        let offset = offset % (self.len - bytes.len());
        // SAFETY: in bounds of our mapping; volatile because the consumer
        // reads the same memory through its own mapping.
        unsafe {
            for (i, b) in bytes.iter().enumerate() {
                std::ptr::write_volatile(self.ptr.add(offset + i), *b);
            }
        }
    }
}

impl Drop for Scribbler {
    fn drop(&mut self) {
        // SAFETY: unmaps the mapping made in `new`.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

#[derive(Debug, Clone)]
enum Target {
    /// Anywhere in the header lines before the producer table.
    Cursors,
    /// The producer table.
    Slots,
    /// The data region (record headers and payloads).
    Records,
}

fn target() -> impl Strategy<Value = Target> {
    prop_oneof![Just(Target::Cursors), Just(Target::Slots), Just(Target::Records)]
}

fn value() -> impl Strategy<Value = u64> {
    prop_oneof![
        any::<u64>(),
        0u64..4 * CAPACITY,
        Just(u64::MAX),
        Just(0),
        (0u64..256).prop_map(|n| n * 64),
        (0u64..256).prop_map(|n| n * 64 + 1),
    ]
}

fn cases() -> u32 {
    std::env::var("SHMRING_FUZZ_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(3_000)
}

/// Cases run so far, and when the current one began (ms since `EPOCH`).
static CASES_RUN: AtomicU64 = AtomicU64::new(0);
static CASE_STARTED_MS: AtomicU64 = AtomicU64::new(0);
static EPOCH: OnceLock<Instant> = OnceLock::new();

/// Turns a hang of the consumer into a failure: a case takes milliseconds,
/// so one still running after a minute is stuck (an endless loop in the
/// consumer would otherwise hang the suite rather than fail it).
fn start_case() {
    let epoch = *EPOCH.get_or_init(|| {
        std::thread::spawn(|| loop {
            std::thread::sleep(Duration::from_secs(1));
            let started = CASE_STARTED_MS.load(Ordering::Relaxed);
            let now = EPOCH.get().expect("set before the thread starts").elapsed().as_millis() as u64;
            if started != 0 && now.saturating_sub(started) > 60_000 {
                eprintln!("case {} has run for a minute: the consumer hangs", CASES_RUN.load(Ordering::Relaxed));
                std::process::abort();
            }
        });
        Instant::now()
    });
    CASES_RUN.fetch_add(1, Ordering::Relaxed);
    CASE_STARTED_MS.store((epoch.elapsed().as_millis() as u64).max(1), Ordering::Relaxed);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn consumer_survives_any_writes_into_the_segment(
        sizes in prop::collection::vec(0usize..3000, 0..6),
        writes in prop::collection::vec((target(), 0usize..8192, value()), 1..12),
        after in prop::collection::vec(0usize..3000, 0..4),
    ) {
        start_case();
        let options = RingOptions { stall_timeout: Duration::from_micros(1), ..RingOptions::with_capacity(CAPACITY) };
        let consumer = Consumer::create_anonymous(&options).unwrap();
        let mut producer = consumer.producer().unwrap();
        for (i, len) in sizes.iter().enumerate() {
            let _ = producer.send(i as u32, &vec![i as u8; *len]);
        }
        // Hold one frame across the scribbling, if there is one.
        let held = consumer.try_recv().ok().flatten();
        let scribbler = Scribbler::new(&consumer);
        let slots_at = 8 * LINE;
        let data_at = std::mem::size_of::<Header>().next_multiple_of(4096);
        for (target, offset, value) in &writes {
            let at = match target {
                Target::Cursors => offset % slots_at,
                Target::Slots => slots_at + offset % (std::mem::size_of::<Header>() - slots_at),
                Target::Records => data_at + offset % CAPACITY as usize,
            };
            scribbler.write(at & !7, &value.to_le_bytes());
        }
        for (i, len) in after.iter().enumerate() {
            let _ = producer.send(100 + i as u32, &vec![0x5a; *len]);
        }
        drop(held);
        // Every call returns; the loop is bounded, so a hang fails the test
        // by never finishing rather than by a timer.
        let mut frames = 0usize;
        let mut idle = 0;
        for _ in 0..200 {
            if idle == 3 {
                break;
            }
            match consumer.try_recv() {
                Ok(Some(frame)) => {
                    prop_assert!(frame.len() as u64 <= consumer.geometry().max_payload);
                    let _checksum: u64 = frame.to_vec().iter().map(|&b| u64::from(b)).sum();
                    frames += 1;
                    idle = 0;
                }
                Ok(None) => {
                    // Let the 1 us stall timeout pass, so recovery runs.
                    std::thread::sleep(Duration::from_micros(2));
                    idle += 1;
                }
                Err(Error::Corrupt { .. }) => idle = 0,
                Err(other) => prop_assert!(false, "unexpected error {other}"),
            }
        }
        let stats = consumer.stats();
        prop_assert!(stats.consumed_frames >= frames as u64);
    }
}

/// Where the payload of the record at `position` lies in the segment file.
fn payload_at(consumer: &shmring::RingConsumer, position: u64) -> u64 {
    let geometry = consumer.geometry();
    geometry.header_size + position % geometry.capacity + shmring::layout::RECORD_HEADER_SPAN
}

/// Writes `bytes` at `at` of the segment through its descriptor, as a
/// producer that misbehaves after publishing could: the consumer's mapping
/// sees the same pages.
fn rewrite(segment: std::os::fd::BorrowedFd<'_>, at: u64, bytes: &[u8]) {
    // SAFETY: writes from a live slice into the segment file (sealed
    // against resizing, so in bounds or refused).
    let written = unsafe { libc::pwrite(segment.as_raw_fd(), bytes.as_ptr().cast(), bytes.len(), at as i64) };
    assert_eq!(written, bytes.len() as isize, "pwrite into the segment");
}

#[test]
fn text_checked_in_a_copy_stays_valid_when_the_producer_rewrites_the_record() {
    let consumer = Consumer::create_anonymous(&RingOptions::with_capacity(CAPACITY)).unwrap();
    let mut producer = consumer.producer().unwrap();
    let greeting = "grüß dich";
    producer.send(1, greeting.as_bytes()).unwrap();
    let frame = consumer.recv().unwrap();
    let text = String::from_utf8(frame.to_vec()).expect("valid UTF-8 when checked");
    rewrite(consumer.fds().memfd.as_fd(), payload_at(&consumer, frame.position()), &[0xff; 11]);
    assert_eq!(frame.to_vec(), [0xff; 11], "the rewrite reaches the consumer's mapping");
    assert_eq!(text, greeting);
    assert!(std::str::from_utf8(text.as_bytes()).is_ok(), "what was checked stays true");
}

/// Reads the first word of `bytes`, lets `between` run, reads it again: a
/// parser that looks at a field twice.
#[inline(never)]
fn read_twice(bytes: shmring::SharedBytes<'_>, between: impl FnOnce()) -> (Option<u64>, Option<u64>) {
    let first = bytes.load_u64(0);
    between();
    (first, bytes.load_u64(0))
}

#[test]
fn a_field_read_twice_sees_the_rewrite_in_between() {
    let consumer = Consumer::create_anonymous(&RingOptions::with_capacity(CAPACITY)).unwrap();
    let mut producer = consumer.producer().unwrap();
    producer.send(1, &1u64.to_ne_bytes()).unwrap();
    let frame = consumer.recv().unwrap();
    let at = payload_at(&consumer, frame.position());
    let between = || rewrite(consumer.fds().memfd.as_fd(), at, &2u64.to_ne_bytes());
    assert_eq!(read_twice(frame.bytes(), between), (Some(1), Some(2)), "the second read is a real read");
}

#[test]
fn copying_a_record_while_the_producer_rewrites_it_gives_only_bytes_it_wrote() {
    let consumer = Consumer::create_anonymous(&RingOptions::with_capacity(CAPACITY)).unwrap();
    let mut producer = consumer.producer().unwrap();
    producer.send(1, &[0x11; 4096]).unwrap();
    let frame = consumer.recv().unwrap();
    let (segment, at) = (consumer.fds().memfd.as_fd(), payload_at(&consumer, frame.position()));
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let patterns = [[0x22u8; 4096], [0x11; 4096]];
            for pattern in patterns.iter().cycle() {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                rewrite(segment, at, pattern);
            }
        });
        let mut copy = vec![0u8; 4096];
        let mut mixed = 0;
        for _ in 0..2_000 {
            frame.bytes().copy_to_slice(&mut copy);
            if let Some(byte) = copy.iter().find(|&&b| b != 0x11 && b != 0x22) {
                panic!("a byte neither pattern wrote: {byte:#x}");
            }
            mixed += usize::from(copy.iter().any(|&b| b != copy[0]));
        }
        stop.store(true, Ordering::Relaxed);
        eprintln!("{mixed} of 2000 copies mixed the two patterns");
    });
}
