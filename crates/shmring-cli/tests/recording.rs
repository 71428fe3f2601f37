//! End to end: producer processes -> ring -> `shmring record` -> a real
//! ffmpeg -> MP4 files that ffprobe checks; and what happens when ffmpeg
//! dies or is missing.

mod common;

use std::time::Duration;

use common::{ffprobe, tally, wait_for, Sandbox};

/// The number after `label` on the report line that starts with `line`.
fn count(report: &str, line: &str, label: &str) -> u64 {
    let found = report.lines().find(|l| l.trim_start().starts_with(line)).unwrap_or_else(|| panic!("{line}: {report}"));
    found
        .split(label)
        .nth(1)
        .and_then(|rest| rest.split([',', ' ', '(', ')']).find(|w| !w.is_empty()))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{label} in {found:?}"))
}

/// Waits for `record` (`recorder`) to start its ffmpeg, and gives its pid.
fn ffmpeg_of(recorder: &std::process::Child) -> i32 {
    (0..200)
        .find_map(|_| {
            std::thread::sleep(Duration::from_millis(25));
            ffmpeg_child(recorder.id())
        })
        .expect("record starts ffmpeg")
}

/// Every video frame received is accounted for: encoded, or dropped and
/// counted (a loaded machine may make ffmpeg fall behind); nearly all are
/// encoded.
fn assert_video_accounted(report: &str, sent: u64) {
    let received = count(report, "video  ", "video");
    let encoded = count(report, "video  ", "received, ");
    let dropped = count(report, "video dropped", "video dropped");
    assert_eq!(received, sent, "{report}");
    assert_eq!(encoded + dropped, received, "{report}");
    assert!(encoded * 100 >= received * 95, "{report}");
}

fn assert_close(what: &str, found: f64, expected: f64, tolerance: f64) {
    assert!(
        (found - expected).abs() <= tolerance * expected,
        "{what}: {found}, expected {expected} +- {:.0}%",
        tolerance * 100.0
    );
}

#[test]
fn camera_and_microphone_processes_are_recorded_into_an_mp4() {
    let sandbox = Sandbox::new("record");
    let name = sandbox.ring("bot");
    let out = sandbox.path("meeting.mp4");
    sandbox.run(&["create", &name, "--capacity", "256MiB"]).succeeds();
    let recorder = sandbox.spawn(&["record", &name, "-o", out.to_str().unwrap()]);
    sandbox.wait_for_consumer(&name);
    let camera = sandbox.spawn(&["camera", "--ring", &name, "--seconds", "6"]);
    let microphone = sandbox.spawn(&["microphone", "--ring", &name, "--seconds", "6"]);
    let camera = wait_for(camera, Duration::from_secs(30), "camera");
    camera.succeeds();
    wait_for(microphone, Duration::from_secs(30), "microphone").succeeds();
    assert_eq!(tally(&camera).0, 180, "{}", camera.stdout);

    // The recorder stops by itself once both producers have left.
    let run = wait_for(recorder, Duration::from_secs(60), "record");
    run.succeeds();
    assert!(run.stdout.contains("every producer left"), "{}", run.stdout);
    assert_video_accounted(&run.stdout, 180);
    // The microphone may start before the camera's first frame: the
    // recording starts at that frame, and earlier chunks are counted.
    let placed = count(&run.stdout, "audio  ", "received, ");
    let early = count(&run.stdout, "audio dropped", "before the first video frame ");
    assert_eq!(placed + early, 600, "{}", run.stdout);
    assert_eq!(count(&run.stdout, "audio dropped", "audio dropped"), early, "no other audio lost: {}", run.stdout);
    assert!(run.stdout.contains("180 frames, 6.00 s of audio"), "{}", run.stdout);

    let probed = ffprobe(&out);
    assert_close("duration", probed.duration, 6.0, 0.10);
    let (width, height, fps, frames) = probed.video.expect("a video stream");
    assert_eq!((width, height), (1920, 1080));
    assert_close("frame rate", fps, 30.0, 0.02);
    assert_close("frames", frames as f64, 180.0, 0.10);
    let (codec, rate) = probed.audio.expect("an audio stream");
    assert_eq!((codec.as_str(), rate), ("aac", 48_000));
    // Every frame in the file is the camera's frame for that slot: none
    // corrupted or out of order on the way (video goes to ffmpeg spliced
    // from the ring's own pages).
    let numbers = common::painted_frame_numbers(&out, 1920);
    assert_eq!(numbers.len() as u64, frames);
    common::assert_on_timeline(&numbers, 0, "meeting.mp4");
    sandbox.run(&["rm", &name]).succeeds();
}

#[test]
fn the_demo_records_and_starts_a_new_file_when_the_resolution_changes() {
    let sandbox = Sandbox::new("demo");
    let out = sandbox.path("demo.mp4");
    let demo = sandbox.spawn(&["demo", "--seconds", "5", "--switch-to", "1280x720", "-o", out.to_str().unwrap()]);
    let run = wait_for(demo, Duration::from_secs(90), "demo");
    run.succeeds();
    assert_video_accounted(&run.stdout, 150);
    assert!(run.stderr.contains("files 2"), "progress lines while it runs: {}", run.stderr);
    let first = ffprobe(&out);
    let second = ffprobe(&sandbox.path("demo.1.mp4"));
    assert_eq!(first.video.as_ref().map(|v| (v.0, v.1)), Some((1920, 1080)));
    assert_eq!(second.video.as_ref().map(|v| (v.0, v.1)), Some((1280, 720)));
    let frames = first.video.unwrap().3 + second.video.unwrap().3;
    assert_close("frames over both files", frames as f64, 150.0, 0.05);
    assert_close("duration over both files", first.duration + second.duration, 5.0, 0.10);
    assert!(first.audio.is_some() && second.audio.is_some(), "audio in both files");
    let before = common::painted_frame_numbers(&out, 1920);
    let after = common::painted_frame_numbers(&sandbox.path("demo.1.mp4"), 1280);
    common::assert_on_timeline(&before, 0, "demo.mp4");
    common::assert_on_timeline(&after, before.len() as u64, "demo.1.mp4");
    assert_eq!(after[0], 75, "the camera switched size at frame 75 (2.5 s)");
}

/// The ffmpeg that `record` (pid `parent`) started for the video file
/// (not the one writing the mix of everyone's audio).
fn ffmpeg_child(parent: u32) -> Option<i32> {
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else { continue };
        let comm = &stat[open + 1..close];
        let ppid = stat[close + 1..].split_whitespace().nth(1).and_then(|p| p.parse::<u32>().ok());
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let video = cmdline.split(|&b| b == 0).any(|arg| arg == b"rawvideo");
        if comm == "ffmpeg" && ppid == Some(parent) && video {
            return Some(pid);
        }
    }
    None
}

#[test]
fn when_ffmpeg_dies_the_error_is_clear_and_producers_keep_running() {
    let sandbox = Sandbox::new("ffdies");
    let name = sandbox.ring("bot");
    let out = sandbox.path("dies.mp4");
    sandbox.run(&["create", &name, "--capacity", "64MiB"]).succeeds();
    let recorder = sandbox.spawn(&["record", &name, "-o", out.to_str().unwrap()]);
    sandbox.wait_for_consumer(&name);
    let camera = sandbox.spawn(&["camera", "--ring", &name, "--seconds", "5", "--size", "640x360"]);
    let microphone = sandbox.spawn(&["microphone", "--ring", &name, "--seconds", "5"]);
    let ffmpeg = ffmpeg_of(&recorder);
    std::thread::sleep(Duration::from_millis(1500));
    // SAFETY: kill has no memory-safety preconditions.
    assert_eq!(unsafe { libc::kill(ffmpeg, libc::SIGKILL) }, 0);

    // The producers never notice: the encoder goes on draining the ring.
    let camera = wait_for(camera, Duration::from_secs(30), "camera");
    camera.succeeds();
    assert_eq!(tally(&camera), (150, 0), "{}", camera.stdout);
    wait_for(microphone, Duration::from_secs(30), "microphone").succeeds();

    let run = wait_for(recorder, Duration::from_secs(60), "record");
    run.fails_with(1, "recording failed");
    assert!(run.stderr.contains("killed by signal 9"), "{}", run.stderr);
    // The tracing events an operator's log collector sees (RUST_LOG=warn).
    assert!(run.stderr.contains("ERROR") && run.stderr.contains("encoding failed"), "{}", run.stderr);
    assert!(run.stderr.contains("WARN") && run.stderr.contains("frames dropped in the last second"), "{}", run.stderr);
    // Every frame after the failure is counted, none silently lost.
    let after = count(&run.stdout, "video dropped", "after failure ");
    assert!(after >= 60, "frames after ffmpeg died are counted as dropped: {}", run.stdout);
    assert!(run.stdout.contains("150 received"), "{}", run.stdout);
    sandbox.run(&["rm", &name]).succeeds();
}

#[test]
fn a_missing_ffmpeg_is_named_with_the_package_to_install() {
    let sandbox = Sandbox::new("noffmpeg");
    let name = sandbox.ring("bot");
    sandbox.run(&["create", &name, "--capacity", "16MiB"]).succeeds();
    let recorder = sandbox.spawn(&["record", &name, "--ffmpeg", "/nonexistent/ffmpeg", "-o", "/dev/null"]);
    sandbox.wait_for_consumer(&name);
    let camera = sandbox.spawn(&["camera", "--ring", &name, "--seconds", "2", "--size", "320x240"]);
    wait_for(camera, Duration::from_secs(30), "camera").succeeds();
    let run = wait_for(recorder, Duration::from_secs(30), "record");
    run.fails_with(1, "apt-get install -y ffmpeg");
    sandbox.run(&["demo", "--ffmpeg", "/nonexistent/ffmpeg"]).fails_with(1, "apt-get install -y ffmpeg");
    sandbox.run(&["rm", &name]).succeeds();
}

#[test]
fn frames_spliced_into_ffmpeg_stay_intact_in_a_ring_that_wraps_every_few_frames() {
    // 640x360 frames are 368,640 bytes: a 2 MiB ring holds five, while
    // ffmpeg's pipe holds about three. Releasing a spliced frame before
    // ffmpeg has read it would let the camera paint over it.
    let sandbox = Sandbox::new("wraps");
    let name = sandbox.ring("small");
    let out = sandbox.path("small.mp4");
    sandbox.run(&["create", &name, "--capacity", "2MiB"]).succeeds();
    let recorder = sandbox.spawn(&["record", &name, "-o", out.to_str().unwrap()]);
    sandbox.wait_for_consumer(&name);
    let camera = sandbox.spawn(&["camera", "--ring", &name, "--seconds", "4", "--size", "640x360"]);
    let camera = wait_for(camera, Duration::from_secs(30), "camera");
    camera.succeeds();
    let run = wait_for(recorder, Duration::from_secs(60), "record");
    run.succeeds();
    assert!(run.stdout.contains("spliced into ffmpeg's pipe"), "{}", run.stdout);
    let numbers = common::painted_frame_numbers(&out, 640);
    assert!(numbers.len() >= 110, "{} frames: {}", numbers.len(), run.stdout);
    // Drops are allowed here (the ring is tiny), corruption is not: every
    // decoded number is one the camera sent, in order.
    assert!(numbers.windows(2).all(|w| w[0] <= w[1]) && numbers.iter().all(|&n| n < 120), "{numbers:?}");
    sandbox.run(&["rm", &name]).succeeds();
}

#[test]
fn lying_and_garbage_frames_are_counted_and_the_recording_goes_on() {
    let sandbox = Sandbox::new("hostile");
    let name = sandbox.ring("bot");
    let out = sandbox.path("hostile.mp4");
    sandbox.run(&["create", &name, "--capacity", "64MiB"]).succeeds();
    let recorder = sandbox.spawn(&["record", &name, "-o", out.to_str().unwrap()]);
    sandbox.wait_for_consumer(&name);
    let camera = sandbox.spawn(&["camera", "--ring", &name, "--seconds", "3", "--size", "640x360"]);

    // A hostile producer in this process, attached by name like any other.
    std::env::set_var("SHMRING_RUNTIME_DIR", &sandbox.runtime);
    let mut evil = shmring::Producer::connect(&name).expect("attach by name");
    let video = shmring_media::KIND_VIDEO;
    let audio = shmring_media::KIND_AUDIO;
    let mut lying = vec![0u8; 4096];
    lying[..4].copy_from_slice(&shmring_media::VIDEO_MAGIC.to_le_bytes());
    lying[4..6].copy_from_slice(&shmring_media::MEDIA_VERSION.to_le_bytes());
    lying[6..8].copy_from_slice(&(shmring_media::VIDEO_HEADER_SIZE as u16).to_le_bytes());
    let mut sent = 0;
    for round in 0..30u32 {
        std::thread::sleep(Duration::from_millis(50));
        // Noise of every length, a video header whose planes lie past the
        // record, and an empty record, under both media kinds.
        let noise: Vec<u8> = (0..(round * 397) % 5000).map(|i| (i * 31 + round) as u8).collect();
        for (kind, payload) in [(video, &noise[..]), (audio, &noise[..]), (video, &lying[..]), (audio, &[][..])] {
            evil.send(kind, payload).expect("the ring takes the record");
            sent += 1;
        }
    }
    drop(evil);
    wait_for(camera, Duration::from_secs(30), "camera").succeeds();
    let run = wait_for(recorder, Duration::from_secs(60), "record");
    run.succeeds();
    let invalid = |line: &str| count(&run.stdout, line, "invalid ");
    assert_eq!(invalid("video dropped") + invalid("audio dropped"), sent, "{}", run.stdout);
    // The camera's 90 frames and the 60 hostile video records.
    assert!(run.stdout.contains("  video           150 received"), "{}", run.stdout);
    let numbers = common::painted_frame_numbers(&out, 640);
    common::assert_on_timeline(&numbers, 0, "hostile.mp4");
    sandbox.run(&["rm", &name]).succeeds();
}

#[test]
fn a_frozen_ffmpeg_is_given_up_on_and_the_ring_flows_again() {
    let sandbox = Sandbox::new("frozen");
    let name = sandbox.ring("bot");
    let out = sandbox.path("frozen.mp4");
    sandbox.run(&["create", &name, "--capacity", "16MiB"]).succeeds();
    let recorder = sandbox.spawn(&["record", &name, "--stall-timeout", "1s", "-o", out.to_str().unwrap()]);
    sandbox.wait_for_consumer(&name);
    let camera = sandbox.spawn(&["camera", "--ring", &name, "--seconds", "5", "--size", "640x360"]);
    let ffmpeg = ffmpeg_of(&recorder);
    std::thread::sleep(Duration::from_millis(500));
    // SAFETY: kill has no memory-safety preconditions.
    assert_eq!(unsafe { libc::kill(ffmpeg, libc::SIGSTOP) }, 0);

    let camera = wait_for(camera, Duration::from_secs(30), "camera");
    camera.succeeds();
    let (sent, dropped) = tally(&camera);
    assert_eq!(sent + dropped, 150, "{}", camera.stdout);
    let run = wait_for(recorder, Duration::from_secs(30), "record");
    run.fails_with(1, "ffmpeg took nothing for 1.0 s");
    // Once the frozen ffmpeg was given up on, the ring flowed again: the
    // camera's last frames reached the encoder (counted after the failure).
    let after = count(&run.stdout, "video dropped", "after failure ");
    assert!(after >= 60, "{}", run.stdout);
    assert_video_accounted_loosely(&run.stdout, sent);
    sandbox.run(&["rm", &name]).succeeds();
}

/// Every frame the camera got into the ring reached the encoder and is
/// counted as encoded or dropped.
fn assert_video_accounted_loosely(report: &str, sent: u64) {
    let line = report.lines().find(|l| l.trim_start().starts_with("video  ")).unwrap();
    assert!(line.contains(&format!("video           {sent} received")), "{report}");
}
