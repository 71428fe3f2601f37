//! The file lane against a bridge process: the test plays the page (it
//! writes frames into a frame file under a profile directory on tmpfs and
//! sends the control messages), and is the ring's consumer. Whole frames
//! arrive byte for byte; the file is found only where and as it may be;
//! hostile control messages and a file changed under the bridge close that
//! stream with a reason and a counter, and nothing partial reaches the ring
//! while other streams go on.

mod common;

use std::os::unix::fs::FileExt;
use std::time::Duration;

use common::*;
use shmring_media::{AudioFrame, PixelFormat, KIND_AUDIO, KIND_VIDEO};

const HD: (u32, u32) = (1920, 1080);
/// Five 1080p frames per lap.
const FILE_SIZE: u64 = 16 << 20;

fn hd_page(bridge: &BridgeProcess, profile: &Profile, index: u32) -> FilePage {
    let mut page = FilePage::create(bridge, &profile.file_path(index), FILE_SIZE);
    page.client.declare(&video_declaration("I420", HD.0, HD.1)).unwrap();
    let answer = page.declare_file();
    assert_eq!(answer["ok"], true, "{answer}");
    page
}

fn close_of(page: &mut FilePage) -> (u16, String) {
    page.client.recv_close().expect("a close frame")
}

#[test]
fn frames_written_to_the_file_arrive_whole_and_are_acknowledged() {
    let consumer = ring(64 << 20);
    let profile = Profile::new("flow");
    let bridge = BridgeProcess::start(&consumer, &["--profile-dir", &profile.arg()]);
    let mut page = hd_page(&bridge, &profile, 0);
    assert_eq!(page.capacity(), FILE_SIZE - 4096);
    // Twelve frames: more than two laps of the file, each frame placed
    // where it fits without crossing the end, after the bridge has
    // acknowledged the bytes it overwrites.
    for n in 0..12 {
        let frame = patterned_video(PixelFormat::I420, HD.0, HD.1, n);
        page.send(&frame, n);
        let (kind, payload) = next_record(&consumer, Duration::from_secs(10)).expect("the frame");
        assert_eq!(kind, KIND_VIDEO);
        assert_eq!(payload.len(), frame.len());
        assert_eq!(check_patterned_video(&payload).0, n);
    }
    assert!(page.position > 2 * page.capacity(), "the file was gone round twice");
    // An acknowledgement each time a quarter of the file has been taken.
    let released: Vec<u64> = page.acks.iter().map(|a| a["released"].as_u64().unwrap()).collect();
    assert!(released.len() >= 4, "{released:?}");
    assert!(released.windows(2).all(|w| w[1] - w[0] >= page.capacity() / 4), "{released:?}");

    // Audio through a file too, on its own stream.
    let mut audio = FilePage::create(&bridge, &profile.file_path(1), 2 << 20);
    audio.client.declare(SMALL_AUDIO_DECLARATION).unwrap();
    assert_eq!(audio.declare_file()["ok"], true);
    for n in 0..300 {
        audio.send(&small_audio(n), n);
    }
    for n in 0..300 {
        let (kind, payload) = next_record(&consumer, Duration::from_secs(10)).expect("the chunk");
        assert_eq!(kind, KIND_AUDIO);
        let chunk = AudioFrame::from_payload(&payload).unwrap();
        assert_eq!(chunk.frame_number(), n);
        assert_eq!(payload[64..], small_audio(n)[64..]);
    }
    let stats = bridge.stop();
    assert_eq!((stats["file_lanes"].as_u64(), stats["file_messages"].as_u64()), (Some(2), Some(312)), "{stats}");
    assert_eq!(stats["messages"], 312);
    assert_eq!(stats["abandoned"], 0);
}

#[test]
fn the_file_is_found_only_under_profile_dirs_as_a_regular_file_of_the_bridges_user() {
    let consumer = ring(16 << 20);
    let profile = Profile::new("find");
    let elsewhere = Profile::new("elsewhere");

    // No profile directory given: no file lane, and the page is told why.
    let bridge = BridgeProcess::start(&consumer, &[]);
    let mut page = FilePage::create(&bridge, &profile.file_path(0), FILE_SIZE);
    let answer = page.declare_file();
    assert_eq!(answer["ok"], false);
    assert!(answer["reason"].as_str().unwrap().contains("--profile-dir"), "{answer}");
    drop(bridge);

    let bridge = BridgeProcess::start(&consumer, &["--profile-dir", &profile.arg()]);
    let refused = |page: &mut FilePage, what: &str| {
        let answer = page.declare_file();
        assert_eq!(answer["ok"], false, "{what}: {answer}");
        assert!(answer["reason"].as_str().unwrap().contains("no file with this token"), "{what}: {answer}");
    };
    // A file outside every profile directory.
    let mut outside = FilePage::create(&bridge, &elsewhere.file_path(0), FILE_SIZE);
    refused(&mut outside, "outside");
    // A link inside the profile to that file, and a link to its directory.
    std::os::unix::fs::symlink(elsewhere.file_path(0), profile.dir.join("link")).unwrap();
    std::os::unix::fs::symlink(elsewhere.dir.join("Default"), profile.dir.join("Linked")).unwrap();
    refused(&mut outside, "through links");
    // The right place, the wrong token.
    let mut wrong = FilePage::create(&bridge, &profile.file_path(1), FILE_SIZE);
    wrong.token[0] ^= 1;
    refused(&mut wrong, "another token");
    // The right token, the wrong size declared.
    let mut sized = FilePage::create(&bridge, &profile.file_path(2), FILE_SIZE);
    sized.size += 4096;
    refused(&mut sized, "another size");
    // A file of another user.
    let mut foreign = FilePage::create(&bridge, &profile.file_path(3), FILE_SIZE);
    std::os::unix::fs::chown(&foreign.path, Some(54_321), Some(54_321)).unwrap();
    refused(&mut foreign, "another user's file");
    // And the real thing still works beside all of them.
    let mut good = FilePage::create(&bridge, &profile.file_path(4), FILE_SIZE);
    good.client.declare(SMALL_AUDIO_DECLARATION).unwrap();
    assert_eq!(good.declare_file()["ok"], true);
    good.send(&small_audio(0), 0);
    assert!(next_record(&consumer, Duration::from_secs(5)).is_some());
    let stats = bridge.stop();
    assert_eq!((stats["file_lanes"].as_u64(), stats["file_lanes_refused"].as_u64()), (Some(1), Some(5)), "{stats}");
}

#[test]
fn hostile_control_messages_close_with_their_code_and_reach_nothing() {
    let consumer = ring(64 << 20);
    let profile = Profile::new("hostile");
    let bridge = BridgeProcess::start(&consumer, &["--profile-dir", &profile.arg()]);
    let frame = patterned_video(PixelFormat::I420, HD.0, HD.1, 1);
    let len = frame.len() as u64;
    let capacity = FILE_SIZE - 4096;

    type Case = (&'static str, u16, &'static str, fn(&mut FilePage, &[u8]));
    let cases: [Case; 11] = [
        ("more than one lap of the file ahead", 1007, "more than one lap", |page, frame| {
            page.write(frame);
            page.send_control(FILE_SIZE, frame.len() as u64, 1);
        }),
        ("crossing the end of the data region", 1007, "crosses the end", |page, frame| {
            page.send_control(FILE_SIZE - 4096 - 1000, frame.len() as u64, 1);
        }),
        ("overlapping the previous frame", 1007, "overlaps", |page, frame| {
            page.send(frame, 1);
            let at = page.write(frame);
            page.send_control(at - 64, frame.len() as u64, 2);
        }),
        ("a replay", 1007, "overlaps or repeats", |page, frame| {
            page.send(frame, 1);
            page.send_control(0, frame.len() as u64, 2);
        }),
        ("a stale frame number", 1007, "does not follow", |page, frame| {
            page.send(frame, 1);
            let at = page.write(frame);
            page.send_control(at, frame.len() as u64, 1);
        }),
        ("a length shorter than the header says", 1007, "its header describes", |page, frame| {
            let at = page.write(frame);
            page.send_control(at, frame.len() as u64 - 64, 1);
        }),
        ("a frame number other than the header's", 1007, "its header says 1", |page, frame| {
            let at = page.write(frame);
            page.send_control(at, frame.len() as u64, 5);
        }),
        ("a header the declaration does not allow", 1007, "frame of 1920x1080", |page, frame| {
            page.client.declare(&video_declaration("I420", 1280, 720)).unwrap();
            let at = page.write(frame);
            page.send_control(at, frame.len() as u64, 1);
        }),
        ("a length over the largest record", 1009, "exceeds the largest record", |page, _| {
            page.send_control(0, 1 << 40, 1);
        }),
        ("a second file declaration", 1007, "second file declaration", |page, _| {
            let message = format!(r#"{{"type":"file","token":"{}","size":{}}}"#, page.token_hex(), page.size);
            page.client.send_text(&message).unwrap();
        }),
        ("a malformed control message", 1007, "bad frame", |page, _| {
            page.client.send_text(r#"{"type":"frame","position":"zero","length":1,"frame_number":1}"#).unwrap();
        }),
    ];
    assert!(len < capacity);
    for (index, (what, code, reason, act)) in cases.iter().enumerate() {
        let mut page = hd_page(&bridge, &profile, index as u32);
        act(&mut page, &frame);
        let (got, said) = close_of(&mut page);
        assert_eq!(got, *code, "{what}: {said}");
        assert!(said.contains(reason), "{what}: {said}");
        // Only the frames sent whole before the hostile message arrived.
        for (kind, payload) in drain(&consumer) {
            assert_eq!((kind, check_patterned_video(&payload).0), (KIND_VIDEO, 1), "{what}");
        }
    }
    // A page that declared no file, and one that declared no stream.
    let mut no_file = FilePage::create(&bridge, &profile.file_path(90), FILE_SIZE);
    no_file.client.declare(&video_declaration("I420", HD.0, HD.1)).unwrap();
    no_file.send_control(0, len, 1);
    assert!(close_of(&mut no_file).1.contains("no file lane is open"));
    let mut undeclared = FilePage::create(&bridge, &profile.file_path(91), FILE_SIZE);
    assert_eq!(undeclared.declare_file()["ok"], true);
    undeclared.send_control(0, len, 1);
    assert!(close_of(&mut undeclared).1.contains("before the stream was declared"));

    // The bridge goes on serving.
    let mut good = hd_page(&bridge, &profile, 99);
    good.send(&frame, 1);
    let (_, payload) = next_record(&consumer, Duration::from_secs(5)).expect("a frame after all that");
    assert_eq!(check_patterned_video(&payload).0, 1);
    let stats = bridge.stop();
    assert_eq!(stats["bad_controls"], 13, "{stats}");
    let sent = |code: u16| {
        let codes = stats["closes_sent"].as_array().unwrap();
        codes.iter().find(|c| c["code"] == code).map_or(0, |c| c["count"].as_u64().unwrap())
    };
    assert_eq!((sent(1007), sent(1009)), (12, 1), "{stats}");
}

#[test]
fn a_file_truncated_replaced_or_swapped_for_a_link_closes_its_stream_only() {
    let consumer = ring(64 << 20);
    let profile = Profile::new("lost");
    let decoy = Profile::new("decoy");
    let bridge = BridgeProcess::start(&consumer, &["--profile-dir", &profile.arg()]);
    // Another stream flows all along.
    let mut other = FilePage::create(&bridge, &profile.file_path(50), 2 << 20);
    other.client.declare(SMALL_AUDIO_DECLARATION).unwrap();
    assert_eq!(other.declare_file()["ok"], true);
    let mut other_sent = 0;
    let mut records = Vec::new();

    type Change = (&'static str, &'static str, fn(&FilePage, &Profile));
    let changes: [Change; 3] = [
        ("truncated", "truncated or resized", |page, _| page.file.set_len(FILE_SIZE / 2).unwrap()),
        ("replaced", "removed or replaced", |page, _| {
            // A new file of the same size and header, renamed over the old.
            let fresh = page.path.with_extension("new");
            std::fs::copy(&page.path, &fresh).unwrap();
            std::fs::rename(&fresh, &page.path).unwrap();
        }),
        ("swapped for a link", "removed or replaced", |page, decoy| {
            let target = decoy.file_path(0);
            std::fs::copy(&page.path, &target).unwrap();
            std::fs::remove_file(&page.path).unwrap();
            std::os::unix::fs::symlink(&target, &page.path).unwrap();
        }),
    ];
    for (index, (what, reason, change)) in changes.iter().enumerate() {
        let mut page = hd_page(&bridge, &profile, index as u32);
        for n in 0..3 {
            page.send(&patterned_video(PixelFormat::I420, HD.0, HD.1, n), n);
            other.send(&small_audio(other_sent), other_sent);
            other_sent += 1;
        }
        // Changed once the bridge has taken those frames.
        for _ in 0..6 {
            records.push(next_record(&consumer, Duration::from_secs(10)).expect("a frame sent before the change"));
        }
        change(&page, &decoy);
        // The page goes on writing (to its old file, as a browser holding it
        // open would) and sending control messages.
        let frame = patterned_video(PixelFormat::I420, HD.0, HD.1, 3);
        let at = page.write(&frame);
        page.send_control(at, frame.len() as u64, 3);
        let (code, said) = close_of(&mut page);
        assert_eq!(code, 1007, "{what}: {said}");
        assert!(said.contains(reason), "{what}: {said}");
        other.send(&small_audio(other_sent), other_sent);
        other_sent += 1;
    }
    records.extend(drain(&consumer));
    let video: Vec<u64> =
        records.iter().filter(|r| r.0 == KIND_VIDEO).map(|(_, payload)| check_patterned_video(payload).0).collect();
    assert_eq!(video, [0, 1, 2].repeat(3), "only the frames read before each change");
    assert_eq!(records.iter().filter(|r| r.0 == KIND_AUDIO).count() as u64, other_sent, "the other stream went on");
    // The other page's file is untouched by all of it.
    let mut probe = [0u8; 8];
    other.file.read_exact_at(&mut probe, 0).unwrap();
    assert_eq!(&probe, b"SHMRFILE");
    let stats = bridge.stop();
    assert_eq!(stats["file_errors"], 3, "{stats}");
    assert_eq!(stats["abandoned"], 3, "each read given up became a skip record: {stats}");
}

#[test]
fn a_profile_dir_off_tmpfs_is_warned_about_at_start_and_to_the_page() {
    // The build's own directory is on disk, not tmpfs.
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("profile-on-disk-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let consumer = ring(16 << 20);
    let fds = consumer.fds().inheritable().unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_shmring-bridge"))
        .args(["--listen", "127.0.0.1:0", "--profile-dir", dir.to_str().unwrap(), "--no-pages"])
        .env("SHMRING_FD", fds.spec())
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = nix::unistd::Pid::from_raw(output.id() as i32);
    std::thread::sleep(Duration::from_millis(500));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let output = output.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("profile directory is not on tmpfs"), "{stderr}");

    let bridge = BridgeProcess::start(&consumer, &["--profile-dir", dir.to_str().unwrap()]);
    let mut page = FilePage::create(&bridge, &dir.join("frames"), 2 << 20);
    let answer = page.declare_file();
    assert_eq!(answer["ok"], true, "{answer}");
    assert!(answer["warning"].as_str().unwrap().contains("not on tmpfs"), "{answer}");
    drop(bridge);
    let _ = std::fs::remove_dir_all(&dir);
}
