//! `shmringsrc` in a real GStreamer pipeline in this process, fed by a
//! producer in this process: stream selection, timestamps, gaps, timeouts
//! and how fast the element lets go when the pipeline stops. (The plugin
//! file, with separate producer processes, is tested by
//! crates/shmring-cli/tests/gstreamer.rs.)

use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use gst::prelude::*;
use shmring::{AccessPolicy, Producer, RendezvousServer, RingHost, RingOptions, RingProducer};
use shmring_media::{write_announce, write_video_i420, Announcement, I420Planes, VideoMeta, KIND_VIDEO};

fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        let runtime = std::env::temp_dir().join(format!("gst-shmring-element-{}", std::process::id()));
        std::fs::create_dir_all(&runtime).unwrap();
        // SAFETY: set once, before any test thread reads the environment
        // (everything below runs after this `Once`).
        unsafe { std::env::set_var("SHMRING_RUNTIME_DIR", &runtime) };
        gst::init().unwrap();
        gstshmring::plugin_register_static().unwrap();
    });
}

/// A ring served by name, as `shmring create` holds one.
struct Ring {
    name: String,
    host: RingHost,
    _server: RendezvousServer,
}

impl Ring {
    fn new(test: &str) -> Ring {
        init();
        let name = format!("el-{}-{test}", std::process::id());
        let host = RingHost::create(&name, &RingOptions::with_capacity(1 << 22)).unwrap();
        let server = host.serve(AccessPolicy::default()).unwrap();
        Ring { name, host, _server: server }
    }

    fn producer(&self) -> RingProducer {
        Producer::connect(&self.name).unwrap()
    }

    /// Waits until a consumer (the element) has attached.
    fn wait_for_consumer(&self) {
        let began = Instant::now();
        while self.host.stats().consumer_state != "attached" {
            assert!(began.elapsed() < Duration::from_secs(10), "shmringsrc never attached");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

fn monotonic_us() -> i64 {
    // SAFETY: clock_gettime only writes the timespec we own.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: CLOCK_MONOTONIC exists on Linux; `ts` is valid.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec * 1_000_000 + ts.tv_nsec / 1_000
}

/// A 64x48 I420 frame of stream `stream`, number `number`, captured at
/// `timestamp_us`.
fn send_frame(producer: &mut RingProducer, stream: u32, number: u64, timestamp_us: i64) {
    let (y, c) = (vec![number as u8; 64 * 48], vec![128u8; 32 * 24]);
    let planes = I420Planes { width: 64, height: 48, y: &y, y_stride: 64, u: &c, u_stride: 32, v: &c, v_stride: 32 };
    let meta = VideoMeta { stream_id: stream, timestamp_us, frame_number: number };
    write_video_i420(producer, &meta, &planes).unwrap();
}

/// What the sink saw of one buffer.
#[derive(Clone, Debug)]
struct Seen {
    offset: u64,
    pts: Option<gst::ClockTime>,
    arrival: Option<gst::ClockTime>,
    discont: bool,
}

/// `shmringsrc PROPERTIES ! fakesink`, playing, with every buffer the sink
/// gets recorded.
struct Pipeline {
    pipeline: gst::Pipeline,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Pipeline {
    fn start(properties: &str) -> Pipeline {
        let pipeline = gst::parse::launch(&format!("shmringsrc name=src {properties} ! fakesink name=sink sync=false"))
            .unwrap()
            .downcast::<gst::Pipeline>()
            .unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = pipeline.by_name("sink").unwrap();
        let pad = sink.static_pad("sink").unwrap();
        let (record, weak) = (seen.clone(), pipeline.downgrade());
        pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            if let Some(buffer) = info.buffer() {
                let arrival = weak.upgrade().and_then(|p| p.current_running_time());
                record.lock().unwrap().push(Seen {
                    offset: buffer.offset(),
                    pts: buffer.pts(),
                    arrival,
                    discont: buffer.flags().contains(gst::BufferFlags::DISCONT),
                });
            }
            gst::PadProbeReturn::Ok
        });
        // A start that fails is reported on the bus (see `error`).
        let _ = pipeline.set_state(gst::State::Playing);
        Pipeline { pipeline, seen }
    }

    fn wait_for_buffers(&self, count: usize) -> Vec<Seen> {
        let began = Instant::now();
        loop {
            let seen = self.seen.lock().unwrap().clone();
            if seen.len() >= count {
                return seen;
            }
            assert!(began.elapsed() < Duration::from_secs(10), "only {} of {count} buffers: {seen:?}", seen.len());
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn stats(&self) -> gst::Structure {
        self.pipeline.by_name("src").unwrap().property::<gst::Structure>("stats")
    }

    fn stat(&self, name: &str) -> u64 {
        self.stats().get::<u64>(name).unwrap()
    }

    /// The first error message on the bus within `limit`.
    fn error(&self, limit: Duration) -> Option<String> {
        let bus = self.pipeline.bus().unwrap();
        let message =
            bus.timed_pop_filtered(gst::ClockTime::from_nseconds(limit.as_nanos() as u64), &[gst::MessageType::Error])?;
        match message.view() {
            gst::MessageView::Error(error) => Some(error.error().to_string()),
            _ => None,
        }
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

/// Sends frames `numbers` of `stream`, one every 33 ms, stamped `age_us`
/// before they are sent; returns their capture times.
fn send_paced(
    producer: &mut RingProducer,
    stream: u32,
    numbers: impl IntoIterator<Item = u64>,
    age_us: i64,
) -> Vec<i64> {
    let mut captured = Vec::new();
    for number in numbers {
        let capture_us = monotonic_us() - age_us;
        send_frame(producer, stream, number, capture_us);
        captured.push(capture_us);
        std::thread::sleep(Duration::from_millis(33));
    }
    captured
}

#[test]
fn stopping_a_source_that_waits_for_frames_returns_at_once() {
    let ring = Ring::new("stop");
    let pipeline = Pipeline::start(&format!("ring={}", ring.name));
    ring.wait_for_consumer();
    // The streaming thread now waits on a ring nobody writes.
    std::thread::sleep(Duration::from_millis(300));
    let began = Instant::now();
    pipeline.pipeline.set_state(gst::State::Null).unwrap();
    println!("stopping took {:?}", began.elapsed());
    // The wait ended because `unlock` cut it short, not at the end of its
    // slice (which would also end a stop, only later).
    assert_eq!(pipeline.stat("interrupted-waits"), 1, "unlock did not interrupt the wait");
    assert_ne!(ring.host.stats().consumer_state, "attached", "the element let go of the ring");
}

#[test]
fn a_label_selects_its_stream_and_other_records_are_stepped_over() {
    let ring = Ring::new("label");
    let pipeline = Pipeline::start(&format!("ring={} stream=alice", ring.name));
    ring.wait_for_consumer();
    let mut producer = ring.producer();
    let now = monotonic_us();
    write_announce(
        &mut producer,
        &Announcement { stream_id: 7, kind: KIND_VIDEO, timestamp_us: now, label: "alice".into() },
    )
    .unwrap();
    for number in 0..4 {
        send_frame(&mut producer, 3, 100 + number, monotonic_us());
        producer.send(shmring_media::KIND_AUDIO, b"not video").unwrap();
        send_frame(&mut producer, 7, number, monotonic_us());
        std::thread::sleep(Duration::from_millis(33));
    }
    let seen = pipeline.wait_for_buffers(4);
    assert_eq!(seen.iter().map(|s| s.offset).collect::<Vec<_>>(), [0, 1, 2, 3], "only stream 7, in order");
    assert_eq!(pipeline.stat("other-streams"), 8, "stream 3's frames and the audio records");
    // 32-byte chroma rows are padded to 64 in the ring, and fakesink
    // reads no VideoMeta: each frame is copied into GStreamer's layout.
    assert_eq!((pipeline.stat("in-place"), pipeline.stat("copied-layout")), (0, 4));
}

#[test]
fn buffers_carry_capture_times_and_gaps_are_flagged() {
    let ring = Ring::new("stamps");
    let pipeline = Pipeline::start(&format!("ring={}", ring.name));
    ring.wait_for_consumer();
    // Playing for longer than the frames' age (younger frames would have
    // been captured before the pipeline started).
    std::thread::sleep(Duration::from_millis(400));
    let mut producer = ring.producer();
    // Captured 200 ms before they are sent: the PTS says so.
    let captured = send_paced(&mut producer, 1, [0, 1, 2, 5, 6], 200_000);
    let seen = pipeline.wait_for_buffers(5);
    // Each PTS is its frame's capture time on the pipeline's running time
    // (whenever the buffer got through): the clock's offset from
    // CLOCK_MONOTONIC read here as the element reads it, the base time
    // taken off.
    let clock = pipeline.pipeline.clock().expect("a playing pipeline has a clock");
    let base = pipeline.pipeline.base_time().expect("and a base time").nseconds() as i64;
    let offset_ns = clock.time().expect("the clock runs").nseconds() as i64 - monotonic_us() * 1000;
    for (buffer, capture_us) in seen.iter().zip(&captured) {
        let pts = buffer.pts.expect("a PTS").nseconds() as i64;
        let expected = capture_us * 1000 + offset_ns - base;
        // The two clocks are read a few instructions apart, here and in the
        // element; microseconds of the monotonic stamp are lost.
        assert!((pts - expected).abs() < 2_000_000, "PTS {pts} ns, capture time on the running time {expected} ns");
    }
    assert_eq!(seen.iter().map(|s| s.discont).collect::<Vec<_>>(), [true, false, false, true, false]);
    assert_eq!(pipeline.stat("missing"), 2);
    let caps = pipeline.pipeline.by_name("src").unwrap().static_pad("src").unwrap().current_caps().unwrap();
    let video = gst_video::VideoInfo::from_caps(&caps).unwrap();
    assert_eq!((video.width(), video.height(), video.fps()), (64, 48, gst::Fraction::new(30, 1)));
}

#[test]
fn with_do_timestamp_buffers_carry_their_arrival_time() {
    let ring = Ring::new("arrival");
    let pipeline = Pipeline::start(&format!("ring={} do-timestamp=true", ring.name));
    ring.wait_for_consumer();
    let mut producer = ring.producer();
    send_paced(&mut producer, 1, 0..4, 200_000);
    for buffer in pipeline.wait_for_buffers(4) {
        let (pts, arrival) = (buffer.pts.expect("a PTS"), buffer.arrival.expect("a running time"));
        let behind = arrival.nseconds() as i64 - pts.nseconds() as i64;
        assert!((0..50_000_000).contains(&behind), "PTS {pts} is {behind} ns before arrival {arrival}");
    }
}

#[test]
fn frames_captured_before_the_pipeline_started_are_not_pushed() {
    let ring = Ring::new("stale");
    let mut producer = ring.producer();
    // Left in the ring from before: captured a second before any
    // pipeline ran.
    for number in 0..3 {
        send_frame(&mut producer, 1, number, monotonic_us() - 1_000_000);
    }
    let pipeline = Pipeline::start(&format!("ring={}", ring.name));
    ring.wait_for_consumer();
    send_paced(&mut producer, 1, 3..7, 0);
    let seen = pipeline.wait_for_buffers(3);
    assert!(seen.iter().all(|s| s.offset >= 3), "{seen:?}");
    assert_eq!(pipeline.stat("before-start"), 3);
}

#[test]
fn no_frame_within_the_timeout_is_an_error_that_says_so() {
    let ring = Ring::new("timeout");
    let pipeline = Pipeline::start(&format!("ring={} timeout=200000000", ring.name));
    let error = pipeline.error(Duration::from_secs(5)).expect("an error message");
    assert!(error.contains("no frame of the first stream for 0.200 s"), "{error}");
}

#[test]
fn a_ring_that_does_not_exist_fails_the_start_with_the_library_text() {
    init();
    let pipeline = Pipeline::start("ring=no-such-ring-here");
    let error = pipeline.error(Duration::from_secs(5)).expect("an error message");
    assert!(error.contains("no-such-ring-here") && error.contains("rendezvous socket"), "{error}");
}

#[test]
fn a_corrupt_ring_ends_the_stream_with_the_library_text() {
    let ring = Ring::new("corrupt");
    let pipeline = Pipeline::start(&format!("ring={}", ring.name));
    ring.wait_for_consumer();
    let mut producer = ring.producer();
    send_paced(&mut producer, 1, 0..3, 0);
    pipeline.wait_for_buffers(3);

    // A hostile peer moves the shared write cursor off the record grid.
    let offset = std::mem::offset_of!(shmring::layout::Header, write);
    let fd = std::os::fd::AsRawFd::as_raw_fd(&ring.host.fds().memfd);
    // SAFETY: a fresh shared mapping of the first page of the ring's memfd
    // (its header, longer than a page); one aligned u64 inside the page is
    // read and written, and the page is unmapped before the block ends.
    unsafe {
        let page = libc::mmap(std::ptr::null_mut(), 4096, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, fd, 0);
        assert_ne!(page, libc::MAP_FAILED);
        let write = page.cast::<u8>().add(offset).cast::<u64>();
        write.write_volatile(write.read_volatile() + 1);
        libc::munmap(page, 4096);
    }

    let error = pipeline.error(Duration::from_secs(10)).expect("an error message");
    assert!(error.contains("corrupt record at position") && error.contains("write cursor"), "{error}");
    assert!(pipeline.stat("corrupt") >= 8, "{}", pipeline.stats());
}
