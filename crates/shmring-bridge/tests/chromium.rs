//! End to end with a real browser: headless Chromium (Debian's package)
//! opens the bridge's capture page, which takes the fake 1080p30 camera and
//! the fake microphone and sends both tracks through the JS client, by
//! each lane (the file lane, WebSocket payloads, and the fall back from one
//! to the other); this process is the ring's consumer and checks every
//! record. Fails, rather than skips, when Chromium is missing.

mod common;

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::*;
use shmring_bridge::chromium::{self, Chromium, Launch};
use shmring_bridge::process_usage;
use shmring_media::{
    Announcement, AudioFrame, PixelFormat, SampleFormat, VideoFrame, KIND_ANNOUNCE, KIND_AUDIO, KIND_VIDEO,
};

/// How long frames are collected once the first video frame is in.
const WINDOW: Duration = Duration::from_secs(6);

#[derive(Default)]
struct Track {
    /// `(frame number, timestamp)` of each record, in arrival order.
    records: Vec<(u64, i64)>,
    samples: u64,
}

/// What one run of the capture page delivered.
struct Run {
    stats: serde_json::Value,
    page: Vec<String>,
    video_frames: u64,
}

/// Opens the capture page in headless Chromium (fake 1080p30 camera and
/// microphone) with `lane`, the bridge given the browser's profile
/// directory or not, and `extra_args` for the browser; checks every record
/// the ring's consumer gets for `collect_for` after the first video frame, and
/// the page's clean close.
fn run(lane: &str, with_profile_dir: bool, extra_args: &[&str], collect_for: Duration) -> Run {
    // One browser at a time: the frame rate and the CPU figures are the
    // lane's, not those of browsers competing for two cores.
    static ONE_BROWSER: Mutex<()> = Mutex::new(());
    let _turn = ONE_BROWSER.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let binary = chromium::find().expect(
        "Chromium is required for this test (Debian: apt-get install chromium; or set CHROMIUM=/path/to/chromium)",
    );
    let consumer = ring(64 << 20);
    let profile = chromium::fresh_profile_dir();
    let profile_arg = profile.display().to_string();
    let bridge_args: &[&str] = if with_profile_dir { &["--profile-dir", &profile_arg] } else { &[] };
    let bridge = BridgeProcess::start(&consumer, bridge_args);
    // The page closes its streams by itself a little after the window ends.
    let seconds = collect_for.as_secs_f64() + 1.5;
    let url =
        chromium::capture_url(bridge.addr, &format!("width=1920&height=1080&fps=30&seconds={seconds}&lane={lane}"));
    let launch = Launch { profile: Some(profile), extra_args: extra_args.iter().map(|a| a.to_string()).collect() };
    let mut browser = Chromium::launch_with(&binary, &url, &launch).expect("launch Chromium");

    let mut video: BTreeMap<u32, Track> = BTreeMap::new();
    let mut audio: BTreeMap<u32, Track> = BTreeMap::new();
    let mut announced: BTreeMap<u32, u32> = BTreeMap::new();
    let launched = Instant::now();
    let mut window: Option<(Instant, process_usage::Usage, process_usage::Usage)> = None;
    let mut in_window = 0u64;
    loop {
        let now = Instant::now();
        if let Some((start, ..)) = window {
            if now >= start + collect_for {
                break;
            }
        } else if now > launched + Duration::from_secs(20) || browser.exited() {
            panic!(
                "no video within 20 s; page said:\n{}\nChromium's log ends:\n{}",
                browser.page_log().join("\n"),
                browser.log_tail(30)
            );
        }
        let Some(frame) = consumer.recv_timeout(Duration::from_millis(100)).expect("no corrupt records") else {
            continue;
        };
        match frame.kind() {
            KIND_VIDEO => {
                let v = VideoFrame::parse(&frame).expect("a valid video header");
                assert_eq!((v.width(), v.height(), v.format()), (1920, 1080, PixelFormat::I420));
                assert_eq!(frame.len(), 128 + 1920 * 1080 * 3 / 2, "a packed I420 frame");
                assert_eq!((v.y_stride(), v.u_stride(), v.v_stride()), (1920, 960, 960));
                let y = v.y();
                assert!((0..y.len()).step_by(4099).any(|i| y.load_u8(i) != Some(0)), "the camera's picture, not zeros");
                video.entry(v.stream_id()).or_default().records.push((v.frame_number(), v.timestamp_us()));
                if window.is_none() {
                    let usage =
                        (process_usage::of_process(bridge.pid()).unwrap(), process_usage::of_tree(browser.pid()));
                    window = Some((Instant::now(), usage.0, usage.1));
                } else {
                    in_window += 1;
                }
            }
            KIND_AUDIO => {
                let a = AudioFrame::parse(&frame).expect("a valid audio header");
                assert_eq!((a.sample_rate(), a.format()), (48_000, SampleFormat::F32Planar));
                assert!(a.channels() >= 1 && a.frame_count() > 0);
                assert_eq!(a.channels_f32().count(), a.channels() as usize);
                let track = audio.entry(a.stream_id()).or_default();
                track.records.push((a.frame_number(), a.timestamp_us()));
                track.samples += u64::from(a.frame_count());
            }
            KIND_ANNOUNCE => {
                let a = Announcement::parse(&frame).expect("a valid announcement");
                assert!(announced.insert(a.stream_id, a.kind).is_none(), "stream {} announced once", a.stream_id);
            }
            other => panic!("record of kind {other}"),
        }
    }
    let (start, bridge_before, chromium_before) = window.expect("video arrived");
    let elapsed = start.elapsed();
    let bridge_after = process_usage::of_process(bridge.pid()).unwrap();
    let chromium_after = process_usage::of_tree(browser.pid());
    // The JS client closes both sockets cleanly (1000) once it is done;
    // frames go on arriving until then, and are let go.
    let deadline = Instant::now() + Duration::from_secs(10);
    let page = loop {
        drop(drain(&consumer));
        let page = browser.page_log();
        if page.iter().any(|line| line.contains("shmring-capture: done")) && bridge.stats()["client_closes"] == 2 {
            break page;
        }
        assert!(Instant::now() < deadline, "the page did not finish cleanly:\n{}", page.join("\n"));
        std::thread::sleep(Duration::from_millis(50));
    };
    drop(browser);
    let stats = bridge.stop();

    assert_eq!(video.len(), 1, "one video stream");
    assert_eq!(audio.len(), 1, "one audio stream");
    let (video_id, video) = video.into_iter().next().unwrap();
    let (audio_id, audio) = audio.into_iter().next().unwrap();
    assert_ne!(video_id, audio_id, "each connection is its own stream");
    assert_eq!(announced, BTreeMap::from([(video_id, KIND_VIDEO), (audio_id, KIND_AUDIO)]), "both streams announced");
    for (name, track) in [("video", &video), ("audio", &audio)] {
        assert!(
            track.records.windows(2).all(|w| w[1].0 > w[0].0 && w[1].1 > w[0].1),
            "{name} frame numbers and timestamps go forward"
        );
    }
    let fps = in_window as f64 / elapsed.as_secs_f64();
    let span_us = video.records.last().unwrap().1 - video.records[0].1;
    let timestamp_fps = (video.records.len() - 1) as f64 / (span_us as f64 / 1e6);
    let audio_seconds = audio.samples as f64 / 48_000.0;
    let per_frame = |before: process_usage::Usage, after: process_usage::Usage| {
        (after.cpu - before.cpu).as_secs_f64() * 1e3 / in_window as f64
    };
    println!("Chromium -> bridge -> ring, lane={lane}, 1920x1080 I420 at 30 fps, over {:.1} s:", elapsed.as_secs_f64());
    println!("  video frames      {in_window} ({fps:.1} fps arriving; {timestamp_fps:.1} fps by timestamps)");
    println!("  audio records     {} ({audio_seconds:.1} s of samples)", audio.records.len());
    println!("  bridge CPU        {:.3} ms per video frame", per_frame(bridge_before, bridge_after));
    println!(
        "  Chromium CPU      {:.2} ms per video frame (all its processes)",
        per_frame(chromium_before, chromium_after)
    );
    println!("  bridge counters   {stats}");
    println!("  page said         {}", page.last().cloned().unwrap_or_default());

    let wanted_us = (collect_for.as_micros() as i64 * 5 / 6).min(5_000_000);
    assert!(span_us >= wanted_us, "at least {wanted_us} us of video ({span_us} us)");
    assert!(fps >= 25.0, "{fps:.1} frames per second arrived; page said:\n{}", page.join("\n"));
    assert!(timestamp_fps >= 25.0, "{timestamp_fps:.1} fps by timestamps");
    assert!(audio_seconds >= 0.8 * elapsed.as_secs_f64(), "{audio_seconds:.1} s of audio in {elapsed:?}");
    assert_eq!(stats["abandoned"], 0, "no message broke off");
    assert_eq!(stats["closes_sent"], serde_json::json!([]), "the bridge closed nothing itself");
    assert!(page.iter().any(|line| line.contains("video socket closed 1000")), "{page:?}");
    Run { stats, page, video_frames: video.records.len() as u64 }
}

fn lane_line<'a>(page: &'a [String], kind: &str) -> &'a str {
    page.iter().find(|line| line.contains(&format!("{kind} lane "))).map_or("", |line| line.as_str())
}

#[test]
fn chromium_sends_1080p30_video_and_audio_as_websocket_payloads() {
    let run = run("websocket", false, &[], WINDOW);
    assert!(lane_line(&run.page, "video").contains("video lane websocket: asked for WebSocket payloads"));
    assert_eq!((run.stats["file_lanes"].as_u64(), run.stats["file_messages"].as_u64()), (Some(0), Some(0)));
}

#[test]
fn chromium_sends_1080p30_video_through_the_file_lane() {
    let run = run("file", true, &[], WINDOW);
    let line = lane_line(&run.page, "video");
    assert!(line.contains("video lane file: file lane"), "the page must not fall back: {line}");
    assert!(!line.contains("tmpfs"), "the profile is on tmpfs: {line}");
    let stats = &run.stats;
    // Every video record came through the file (audio as payloads).
    let file_messages = stats["file_messages"].as_u64().unwrap();
    assert!(
        file_messages >= run.video_frames,
        "{file_messages} records read from the file, {} video frames seen",
        run.video_frames
    );
    assert_eq!((stats["file_errors"].as_u64(), stats["bad_controls"].as_u64()), (Some(0), Some(0)), "{stats}");
}

#[test]
fn a_page_whose_file_the_bridge_cannot_reach_falls_back_to_payloads_and_says_so() {
    // Incognito: the origin private file system lives in memory, out of
    // the bridge's reach, though the page can use it.
    let run = run("auto", true, &["--incognito"], Duration::from_secs(3));
    let line = lane_line(&run.page, "video");
    assert!(
        line.contains("video lane websocket: no file lane: the bridge cannot use the file: no file with this token"),
        "{line}"
    );
    let stats = &run.stats;
    assert_eq!((stats["file_lanes"].as_u64(), stats["file_lanes_refused"].as_u64()), (Some(0), Some(1)), "{stats}");
    assert!(lane_line(&run.page, "audio").contains("audio lane websocket: audio goes as WebSocket payloads"));
    assert_eq!(stats["file_messages"], 0, "{stats}");
}

#[test]
fn a_page_without_an_origin_private_file_system_sends_payloads_and_says_so() {
    // Chromium's own switch for the origin private file system, off.
    let run = run("auto", true, &["--disable-blink-features=FileSystemAccessOriginPrivate"], Duration::from_secs(3));
    let line = lane_line(&run.page, "video");
    assert!(line.contains("video lane websocket: no file lane: no origin private file system here"), "{line}");
    let stats = &run.stats;
    assert_eq!((stats["file_lanes"].as_u64(), stats["file_lanes_refused"].as_u64()), (Some(0), Some(0)), "{stats}");
    assert_eq!(stats["file_messages"], 0, "{stats}");
}
