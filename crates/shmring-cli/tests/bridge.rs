//! `shmring bridge` as a producer of a named ring: a WebSocket client (the
//! bridge crate's own test client, speaking as the JS client does) sends
//! frames, and `shmring cat` in another process reads them from the ring.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::time::Duration;

use common::{wait_for, Sandbox};
use shmring_bridge::client::{video_message, Client};
use shmring_media::{PixelFormat, VideoMeta};

#[test]
fn frames_sent_to_the_bridge_reach_the_rings_consumer() {
    let sandbox = Sandbox::new("bridge");
    let name = sandbox.ring("web");
    sandbox.run(&["create", &name, "--capacity", "16MiB"]).succeeds();
    let cat = sandbox.spawn(&["cat", &name, "--frames", "5"]);
    let mut bridge = sandbox.spawn(&["bridge", &name, "--listen", "127.0.0.1:0"]);
    let guard = common::KillOnDrop(bridge.id());
    let mut first = String::new();
    BufReader::new(bridge.stdout.as_mut().unwrap()).read_line(&mut first).unwrap();
    let addr: SocketAddr = first.trim().strip_prefix("listening on ").expect("the address first").parse().unwrap();

    let mut client = Client::connect(addr).unwrap();
    client.declare(r#"{"type":"declare","kind":"video","format":"I420","width":320,"height":240}"#).unwrap();
    for n in 0..5u64 {
        let meta = VideoMeta { stream_id: 0, timestamp_us: n as i64 * 33_333, frame_number: n };
        let mut message = video_message(PixelFormat::I420, 320, 240, &meta);
        // The first row of the Y plane, right after the header.
        let luma = shmring_media::VIDEO_HEADER_SIZE;
        message[luma..luma + 320].fill(n as u8 + 100);
        // Fragmented as Chromium fragments a large message.
        client.send_binary(&message, 40_000).unwrap();
    }
    let run = wait_for(cat, Duration::from_secs(20), "cat");
    run.succeeds();
    let frame = 320 * 240 * 3 / 2;
    assert_eq!(run.bytes.len(), 5 * frame);
    for n in 0..5 {
        assert!(run.bytes[n * frame..n * frame + 320].iter().all(|&b| b == n as u8 + 100), "frame {n}");
    }
    assert!(run.stderr.contains("-video_size 320x240"), "{}", run.stderr);
    let _ = client.close(1000);
    let stats = stop(bridge, guard);
    assert_eq!(stats["messages"], 5, "{stats}");
    sandbox.run(&["rm", &name]).succeeds();
}

#[test]
fn with_a_profile_dir_frames_come_through_the_pages_file() {
    use std::os::unix::fs::FileExt;
    let sandbox = Sandbox::new("bridgefile");
    let name = sandbox.ring("file");
    sandbox.run(&["create", &name, "--capacity", "16MiB"]).succeeds();
    let profile = std::path::PathBuf::from(format!("/dev/shm/shmring-cli-profile-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&profile);
    std::fs::create_dir_all(profile.join("Default/File System/000/t/00")).unwrap();
    let cat = sandbox.spawn(&["cat", &name, "--frames", "3"]);
    let mut bridge =
        sandbox.spawn(&["bridge", &name, "--listen", "127.0.0.1:0", "--profile-dir", profile.to_str().unwrap()]);
    let guard = common::KillOnDrop(bridge.id());
    let mut first = String::new();
    BufReader::new(bridge.stdout.as_mut().unwrap()).read_line(&mut first).unwrap();
    let addr: SocketAddr = first.trim().strip_prefix("listening on ").expect("the address first").parse().unwrap();

    // The page's frame file, where Chromium keeps an origin-private file.
    let size = 4 << 20;
    let token = *b"cli-test-token!!";
    let file = std::fs::File::create(profile.join("Default/File System/000/t/00/00000000")).unwrap();
    file.set_len(size).unwrap();
    file.write_all_at(&shmring_bridge::frame_file::file_header(&token, size), 0).unwrap();
    let mut client = Client::connect(addr).unwrap();
    client.declare(r#"{"type":"declare","kind":"video","format":"I420","width":320,"height":240}"#).unwrap();
    let hex: String = token.iter().map(|b| format!("{b:02x}")).collect();
    client.send_text(&format!(r#"{{"type":"file","token":"{hex}","size":{size}}}"#)).unwrap();
    let mut position = 0;
    for n in 0..3u64 {
        let meta = VideoMeta { stream_id: 0, timestamp_us: n as i64 * 33_333, frame_number: n };
        let mut message = video_message(PixelFormat::I420, 320, 240, &meta);
        message[shmring_media::VIDEO_HEADER_SIZE..].fill(n as u8 + 100);
        file.write_all_at(&message, shmring_bridge::frame_file::DATA_OFFSET + position).unwrap();
        let control =
            format!(r#"{{"type":"frame","position":{position},"length":{},"frame_number":{n}}}"#, message.len());
        client.send_text(&control).unwrap();
        position += message.len() as u64;
    }
    let run = wait_for(cat, Duration::from_secs(20), "cat");
    run.succeeds();
    let frame = 320 * 240 * 3 / 2;
    assert_eq!(run.bytes.len(), 3 * frame);
    for n in 0..3 {
        assert!(run.bytes[n * frame..(n + 1) * frame].iter().all(|&b| b == n as u8 + 100), "frame {n}");
    }
    let _ = client.close(1000);
    let stats = stop(bridge, guard);
    assert_eq!((stats["file_lanes"].as_u64(), stats["file_messages"].as_u64()), (Some(1), Some(3)), "{stats}");
    let _ = std::fs::remove_dir_all(&profile);
    sandbox.run(&["rm", &name]).succeeds();
}

/// SIGTERM to `shmring bridge`, then the counters it prints as it stops.
fn stop(bridge: std::process::Child, guard: common::KillOnDrop) -> serde_json::Value {
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(bridge.id() as i32, libc::SIGTERM) };
    guard.disarm();
    let stopped = wait_for(bridge, Duration::from_secs(20), "bridge");
    stopped.succeeds();
    let line = stopped.stdout.lines().find(|l| l.starts_with("stopped: ")).expect("final counters");
    serde_json::from_str(line.trim_start_matches("stopped: ")).unwrap()
}

#[test]
fn the_bridge_says_when_its_ring_is_missing() {
    let sandbox = Sandbox::new("bridgemissing");
    sandbox.run(&["bridge", &sandbox.ring("none"), "--listen", "127.0.0.1:0"]).fails_with(3, "no ring named");
}
