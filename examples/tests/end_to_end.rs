//! The consumer spawns real producer processes (the C++ fake renderer and
//! the shim's C++ harness) with the ring's descriptors inherited, and
//! verifies every frame they write.

use std::process::{Command, Output};

fn consumer(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_consumer")).args(args).output().expect("run consumer")
}

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

/// The number after `key=` on the consumer's summary line.
fn summary_number(log: &str, key: &str) -> u64 {
    let line = log.lines().find(|l| l.starts_with("consumer: verified")).expect("summary line");
    let field = line.split_whitespace().find_map(|f| f.strip_prefix(key)).unwrap_or_else(|| panic!("{key} in {line}"));
    field.trim_end_matches(',').parse().expect("a number")
}

#[test]
fn fake_renderer_for_ten_seconds_every_frame_verified_and_resolution_change_seen() {
    let output = consumer(&["--renderer", env!("CARGO_BIN_EXE_fake_renderer"), "--", "--seconds", "10"]);
    let log = text(&output);
    println!("{log}");
    assert!(output.status.success(), "consumer failed:\n{log}");
    assert!(log.contains("consumer: OK"));
    assert!(log.contains("stream=3 kind=video") && log.contains("sizes=640x360->960x540"), "{log}");
    for stream in ["stream=1 kind=video", "stream=2 kind=video", "stream=4 kind=audio"] {
        let line = log.lines().find(|l| l.starts_with(&format!("consumer: {stream}"))).expect(stream);
        let received: u64 = line
            .split_whitespace()
            .find_map(|f| f.strip_prefix("received="))
            .and_then(|v| v.parse().ok())
            .expect("received count");
        assert!(received > 0, "{line}");
    }
    assert_eq!(summary_number(&log, "corrupt="), 0);
    // The measurement is printed, never asserted.
    assert!(log.contains("bench 1080p_i420"), "{log}");
}

#[test]
fn full_ring_drops_frames_counts_them_and_every_written_frame_arrives() {
    // 8 MiB holds two 1080p frames: unpaced producers must overrun it. The
    // frames after stream 3's resolution change may all be dropped here.
    let output = consumer(&[
        "--capacity",
        "8388608",
        "--no-resize-check",
        "--renderer",
        env!("CARGO_BIN_EXE_fake_renderer"),
        "--",
        "--frames",
        "120",
        "--fps",
        "0",
    ]);
    let log = text(&output);
    println!("{log}");
    assert!(output.status.success(), "consumer failed:\n{log}");
    assert!(summary_number(&log, "drops=") > 0, "the ring never filled:\n{log}");
    assert!(log.contains("dropped_full="));
}

#[test]
fn a_single_wrong_pixel_fails_the_consumer() {
    let output =
        consumer(&["--renderer", env!("CARGO_BIN_EXE_fake_renderer"), "--", "--frames", "8", "--corrupt-frame", "5"]);
    let log = text(&output);
    assert!(!output.status.success(), "corruption went unnoticed:\n{log}");
    assert!(log.contains("CORRUPT stream 2 frame 5: plane 2"), "{log}");
}

#[test]
fn cxx_harness_built_with_chromium_flags_passes_and_its_frames_verify() {
    let output = consumer(&["--renderer", env!("CARGO_BIN_EXE_shim_test"), "--fd-via", "env"]);
    let log = text(&output);
    println!("{log}");
    assert!(output.status.success(), "harness or consumer failed:\n{log}");
    assert!(log.contains(" 0 failed"), "{log}");
    // One abandoned slot, and the eight that held every lane while the
    // handle's own calls ran: each a skip record.
    assert_eq!(summary_number(&log, "skipped="), 1 + 8, "abandoned slots are skip records");
}

#[test]
fn renderer_without_descriptors_reports_attach_failure() {
    let output = Command::new(env!("CARGO_BIN_EXE_fake_renderer"))
        .env_remove("SHMRING_FD")
        .args(["--frames", "1"])
        .output()
        .expect("run fake_renderer");
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot attach: attach failed"));
}
