//! Criterion micro-benchmarks of one ring in one process.
//!
//! - `send_recv`: send then receive and drop, one thread, 64 B to one
//!   1080p frame;
//! - `producers`: 1 and 2 producer threads against the consumer thread;
//! - `wakeup`: one-way hand-over time measured as half a ping-pong between
//!   two threads over two rings, with a receiver that always sleeps on the
//!   semaphore (no spinning), one that uses `recv` as shipped (adaptive
//!   spin, then sleep) and one that busy-polls `try_recv`, next to a bare
//!   semaphore ping-pong (the operating system's floor for sleep/wake) and
//!   a bare cache-line ping-pong (the hardware floor for busy-polling);
//! - `frame_1080p`: `send` vs `reserve` + fill vs a plain memcpy into a
//!   ring-sized buffer, side by side; and copying a held frame out
//!   (`copy_out`: relaxed atomic word loads, safe against a producer that
//!   writes meanwhile) vs a memcpy of the same bytes through the `unsafe`
//!   slice (`copy_out_memcpy`);
//! - `consumer`: `recv` + drop with the payload untouched;
//! - `media_parse`: checking the header of a 1080p I420 video frame and of
//!   a 10 ms stereo audio chunk held in the ring.
//!
//! Run with `cargo bench -p shmring-benches --bench ring`.

#![deny(unsafe_op_in_unsafe_fn)]

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use shmring::{Consumer, FullPolicy, MappedRing, Producer, RingOptions};
use shmring_benches::FRAME_1080P;
use shmring_media::VideoMeta;
use shmring_media::{write_audio, write_video_i420, AudioFrame, AudioMeta, AudioSamples, I420Planes, VideoFrame};

const CAPACITY: u64 = 64 << 20;
const SIZES: [usize; 3] = [64, 4096, FRAME_1080P];

fn ring() -> Consumer<MappedRing> {
    ring_of(CAPACITY)
}

fn ring_of(capacity: u64) -> Consumer<MappedRing> {
    let options = RingOptions { prefault: true, ..RingOptions::with_capacity(capacity) };
    Consumer::create_anonymous(&options).expect("create ring")
}

fn blocking_producer(consumer: &Consumer<MappedRing>) -> Producer<MappedRing> {
    let mut producer = consumer.producer().expect("producer");
    producer.set_full_policy(FullPolicy::Block(Duration::from_secs(10)));
    producer
}

fn size_label(len: usize) -> String {
    match len {
        FRAME_1080P => "1080p".to_string(),
        _ => format!("{len}B"),
    }
}

fn send_recv(c: &mut Criterion) {
    let mut group = c.benchmark_group("send_recv");
    let consumer = ring();
    let mut producer = blocking_producer(&consumer);
    for len in SIZES {
        let payload = vec![0x5a; len];
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_function(BenchmarkId::from_parameter(size_label(len)), |b| {
            b.iter(|| {
                producer.send(1, black_box(&payload)).expect("send");
                let frame = consumer.try_recv().expect("recv").expect("a frame");
                black_box(frame.len());
            })
        });
    }
    group.finish();
}

/// `iters` messages from `producers` threads, received by this thread.
fn run_producers(consumer: &Consumer<MappedRing>, producers: usize, len: usize, iters: u64) -> Duration {
    let handles: Vec<Producer<MappedRing>> = (0..producers).map(|_| blocking_producer(consumer)).collect();
    let share = iters / producers as u64;
    let total = share * producers as u64;
    let start = Instant::now();
    std::thread::scope(|scope| {
        for mut producer in handles {
            scope.spawn(move || {
                let payload = vec![0x5a; len];
                for _ in 0..share {
                    producer.send(1, &payload).expect("send");
                }
            });
        }
        for _ in 0..total {
            let frame = consumer.recv().expect("recv");
            black_box(frame.len());
        }
    });
    start.elapsed()
}

fn producers(c: &mut Criterion) {
    let mut group = c.benchmark_group("producers");
    let consumer = ring();
    for len in SIZES {
        for producers in [1, 2] {
            group.throughput(Throughput::Bytes(len as u64));
            let id = BenchmarkId::new(format!("{producers}p"), size_label(len));
            group.bench_function(id, |b| b.iter_custom(|iters| run_producers(&consumer, producers, len, iters)));
        }
    }
    group.finish();
}

/// How the receiving side of a ping-pong waits for the next message.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Wait {
    /// `recv` with spinning turned off: every wait sleeps on the semaphore.
    Sleep,
    /// `recv` as shipped: a short spin when messages stream, then sleep.
    Adaptive,
    /// `try_recv` in a loop: never sleeps.
    BusyPoll,
}

fn receive(consumer: &Consumer<MappedRing>, wait: Wait) -> usize {
    if wait == Wait::BusyPoll {
        loop {
            if let Some(frame) = consumer.try_recv().expect("recv") {
                return black_box(frame.len());
            }
            std::hint::spin_loop();
        }
    }
    black_box(consumer.recv().expect("recv").len())
}

fn ping_pong_ring(wait: Wait) -> Consumer<MappedRing> {
    let mut ring = ring_of(1 << 20);
    if wait == Wait::Sleep {
        ring.set_spin_limit(Duration::ZERO);
    }
    ring
}

/// Half the round trip of a 64-byte message bounced between two threads
/// over two rings.
fn ping_pong(iters: u64, wait: Wait) -> Duration {
    let ping = ping_pong_ring(wait);
    let pong = ping_pong_ring(wait);
    let mut to_peer = blocking_producer(&ping);
    let mut to_us = blocking_producer(&pong);
    let payload = [0u8; 64];
    std::thread::scope(|scope| {
        scope.spawn(move || {
            for _ in 0..iters {
                receive(&ping, wait);
                to_us.send(1, &payload).expect("send");
            }
        });
        let start = Instant::now();
        for _ in 0..iters {
            to_peer.send(1, &payload).expect("send");
            receive(&pong, wait);
        }
        start.elapsed() / 2
    })
}

/// The hardware floor for a busy-polled hand-over: one cache line bounced
/// between two cores.
fn cacheline_ping_pong(iters: u64) -> Duration {
    let line = Arc::new(AtomicU64::new(0));
    std::thread::scope(|scope| {
        let peer = line.clone();
        scope.spawn(move || {
            for i in 0..iters {
                // Acquire/Release: SYNC POINT: each side's Acquire load pairs
                // with the other side's Release store of the next turn.
                while peer.load(Ordering::Acquire) != 2 * i + 1 {
                    std::hint::spin_loop();
                }
                peer.store(2 * i + 2, Ordering::Release);
            }
        });
        let start = Instant::now();
        for i in 0..iters {
            // SYNC POINT: as in the peer's loop above.
            line.store(2 * i + 1, Ordering::Release);
            while line.load(Ordering::Acquire) != 2 * i + 2 {
                std::hint::spin_loop();
            }
        }
        start.elapsed() / 2
    })
}

/// An unnamed POSIX semaphore of this process (the kind of object the
/// ring sleeps on, without the ring).
struct BareSemaphore(Box<std::cell::UnsafeCell<libc::sem_t>>);

// SAFETY: a `sem_t` is made to be posted and waited on from any thread; it
// is only ever handed to `sem_*`, and it never moves (boxed).
unsafe impl Sync for BareSemaphore {}

impl BareSemaphore {
    fn new() -> Self {
        // SAFETY: an all-zero `sem_t` is only storage; `sem_init` below
        // initialises it before any other use.
        let sem = BareSemaphore(Box::new(std::cell::UnsafeCell::new(unsafe { std::mem::zeroed() })));
        // SAFETY: initialises the boxed storage as a process-private
        // semaphore of value 0.
        assert_eq!(unsafe { libc::sem_init(sem.0.get(), 0, 0) }, 0, "sem_init");
        sem
    }
    fn post(&self) {
        // SAFETY: an initialised semaphore that outlives the call.
        unsafe { libc::sem_post(self.0.get()) };
    }
    fn wait(&self) {
        // SAFETY: as in `post`; EINTR is retried.
        while unsafe { libc::sem_wait(self.0.get()) } != 0 {}
    }
}

impl Drop for BareSemaphore {
    fn drop(&mut self) {
        // SAFETY: nobody waits on it any more (the threads have joined).
        unsafe { libc::sem_destroy(self.0.get()) };
    }
}

/// The operating system's floor for a sleeping hand-over: two threads
/// bouncing the turn over two semaphores, each sleeping until posted.
fn semaphore_ping_pong(iters: u64) -> Duration {
    let (ping, pong) = (BareSemaphore::new(), BareSemaphore::new());
    std::thread::scope(|scope| {
        scope.spawn(|| {
            for _ in 0..iters {
                ping.wait();
                pong.post();
            }
        });
        let start = Instant::now();
        for _ in 0..iters {
            ping.post();
            pong.wait();
        }
        start.elapsed() / 2
    })
}

fn wakeup(c: &mut Criterion) {
    let mut group = c.benchmark_group("wakeup");
    group.bench_function("sleeping_receiver", |b| b.iter_custom(|iters| ping_pong(iters, Wait::Sleep)));
    group.bench_function("adaptive_receiver", |b| b.iter_custom(|iters| ping_pong(iters, Wait::Adaptive)));
    group.bench_function("busy_poll_receiver", |b| b.iter_custom(|iters| ping_pong(iters, Wait::BusyPoll)));
    group.bench_function("semaphore_floor", |b| b.iter_custom(semaphore_ping_pong));
    group.bench_function("cacheline_floor", |b| b.iter_custom(cacheline_ping_pong));
    group.finish();
}

fn frame_1080p(c: &mut Criterion) {
    let mut group = c.benchmark_group("frame_1080p");
    group.throughput(Throughput::Bytes(FRAME_1080P as u64));
    let consumer = ring();
    let mut producer = blocking_producer(&consumer);
    let source = vec![0x5a; FRAME_1080P];
    group.bench_function("send", |b| {
        b.iter(|| {
            producer.send(1, black_box(&source)).expect("send");
            drop(consumer.try_recv().expect("recv").expect("a frame"));
        })
    });
    let mut fill = 0u8;
    group.bench_function("reserve_fill", |b| {
        b.iter(|| {
            let mut slot = producer.reserve(FRAME_1080P).expect("reserve");
            fill = fill.wrapping_add(1);
            slot.fill(fill);
            slot.commit();
            drop(consumer.try_recv().expect("recv").expect("a frame"));
        })
    });
    let mut buffer = vec![0xa5u8; CAPACITY as usize];
    let mut at = 0;
    group.bench_function("memcpy", |b| {
        b.iter(|| {
            if at + FRAME_1080P > buffer.len() {
                at = 0;
            }
            buffer[at..at + FRAME_1080P].copy_from_slice(black_box(&source));
            at = (at + FRAME_1080P).next_multiple_of(64);
        })
    });
    producer.send(1, &source).expect("send");
    let held = consumer.try_recv().expect("recv").expect("a frame");
    let mut out = vec![0u8; FRAME_1080P];
    group.bench_function("copy_out", |b| b.iter(|| held.bytes().copy_to_slice(black_box(&mut out))));
    group.bench_function("copy_out_memcpy", |b| {
        b.iter(|| {
            // SAFETY: the only producer is this benchmark's, which never
            // writes a published record.
            out.copy_from_slice(unsafe { held.bytes().as_slice() });
            black_box(&mut out);
        })
    });
    drop(held);
    group.finish();
}

/// Time to receive and drop `iters` frames already in the ring, payload
/// untouched; filling the ring (reserve + commit, nothing written) is not
/// timed.
fn recv_drop(consumer: &Consumer<MappedRing>, producer: &mut Producer<MappedRing>, len: usize, iters: u64) -> Duration {
    let per_fill = ((CAPACITY as usize / (len + 64)) - 1).min(100_000) as u64;
    let mut left = iters;
    let mut timed = Duration::ZERO;
    while left > 0 {
        let batch = left.min(per_fill);
        for _ in 0..batch {
            producer.reserve(len).expect("reserve").commit();
        }
        let start = Instant::now();
        for _ in 0..batch {
            let frame = consumer.try_recv().expect("recv").expect("a frame");
            black_box(frame.kind());
        }
        timed += start.elapsed();
        left -= batch;
    }
    timed
}

fn consumer(c: &mut Criterion) {
    let mut group = c.benchmark_group("consumer_recv_drop_untouched");
    let consumer = ring();
    let mut producer = blocking_producer(&consumer);
    for len in SIZES {
        group.bench_function(BenchmarkId::from_parameter(size_label(len)), |b| {
            b.iter_custom(|iters| recv_drop(&consumer, &mut producer, len, iters))
        });
    }
    group.finish();
}

fn media_parse(c: &mut Criterion) {
    let mut group = c.benchmark_group("media_parse");
    let consumer = ring();
    let mut producer = blocking_producer(&consumer);
    let (width, height) = (1920u32, 1080u32);
    let (y, chroma) = (vec![16u8; (width * height) as usize], vec![128u8; (width * height / 4) as usize]);
    let planes = I420Planes {
        width,
        height,
        y: &y,
        y_stride: width as usize,
        u: &chroma,
        u_stride: width as usize / 2,
        v: &chroma,
        v_stride: width as usize / 2,
    };
    write_video_i420(&mut producer, &VideoMeta::default(), &planes).expect("write video");
    let channel = vec![0.25f32; 480];
    let meta = AudioMeta { sample_rate: 48_000, ..AudioMeta::default() };
    write_audio(&mut producer, &meta, AudioSamples::F32Planar(&[&channel, &channel])).expect("write audio");
    let video = consumer.try_recv().expect("recv").expect("a video frame");
    let audio = consumer.try_recv().expect("recv").expect("an audio chunk");
    group.bench_function("video_1080p", |b| {
        b.iter(|| black_box(VideoFrame::parse(black_box(&video)).expect("valid video").width()))
    });
    group.bench_function("audio_10ms_stereo", |b| {
        b.iter(|| black_box(AudioFrame::parse(black_box(&audio)).expect("valid audio").frame_count()))
    });
    group.finish();
}

fn config() -> Criterion {
    // Short runs: the numbers settle quickly and the machine is shared.
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! {
    name = benches;
    config = config();
    targets = send_recv, producers, wakeup, frame_1080p, consumer, media_parse
}
criterion_main!(benches);
