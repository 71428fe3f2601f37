//! Each stream is named in the ring: the bridge writes an announce record
//! (stream id, kind, the label the page declared) before the stream's first
//! frame, and again only when a declaration changes the kind or the label.
//! Labels that are not strings, or too long, close the connection.

mod common;

use std::time::Duration;

use common::*;
use shmring_bridge::client::{Client, CHROMIUM_FRAGMENT};
use shmring_media::{Announcement, PixelFormat, KIND_ANNOUNCE, KIND_AUDIO, KIND_VIDEO, MAX_LABEL};

fn labelled(declaration: &str, label: &str) -> String {
    let mut value: serde_json::Value = serde_json::from_str(declaration).unwrap();
    value["label"] = label.into();
    value.to_string()
}

fn announcements(records: &[(u32, Vec<u8>)]) -> Vec<Announcement> {
    records
        .iter()
        .filter(|(kind, _)| *kind == KIND_ANNOUNCE)
        .map(|(_, payload)| Announcement::from_payload(payload).expect("a valid announcement"))
        .collect()
}

#[test]
fn each_stream_is_announced_before_its_first_frame_and_again_when_its_label_changes() {
    let consumer = ring(16 << 20);
    let bridge = BridgeProcess::start(&consumer, &[]);
    let label = r#"{"participant":"p1","kind":"video"}"#;
    let mut video = Client::connect(bridge.addr).unwrap();
    let ready = video.declare(&labelled(&video_declaration("I420", 64, 48), label)).unwrap();
    let video_id = ready["stream_id"].as_u64().unwrap() as u32;
    let mut audio = Client::connect(bridge.addr).unwrap();
    let audio_id = audio.declare(SMALL_AUDIO_DECLARATION).unwrap()["stream_id"].as_u64().unwrap() as u32;
    video.send_binary(&patterned_video(PixelFormat::I420, 64, 48, 0), CHROMIUM_FRAGMENT).unwrap();
    audio.send_binary(&small_audio(0), CHROMIUM_FRAGMENT).unwrap();
    // A new size with the same label: no new announcement. A new label: one.
    video.declare(&labelled(&video_declaration("I420", 32, 24), label)).unwrap();
    video.send_binary(&patterned_video(PixelFormat::I420, 32, 24, 1), CHROMIUM_FRAGMENT).unwrap();
    video.declare(&labelled(&video_declaration("I420", 32, 24), "renamed")).unwrap();
    video.send_binary(&patterned_video(PixelFormat::I420, 32, 24, 2), CHROMIUM_FRAGMENT).unwrap();
    bridge.wait_for(Duration::from_secs(10), "four frames", |s| s["messages"] == 4);

    let records = drain_with_announcements(&consumer);
    let kinds: Vec<u32> = records.iter().map(|(kind, _)| *kind).collect();
    let named = announcements(&records);
    assert_eq!(named.len(), 3, "{kinds:?}");
    let first_video = kinds.iter().position(|&k| k == KIND_VIDEO).unwrap();
    let first_audio = kinds.iter().position(|&k| k == KIND_AUDIO).unwrap();
    let position_of = |id: u32, label: &str| {
        records.iter().position(|(kind, payload)| {
            *kind == KIND_ANNOUNCE && {
                let a = Announcement::from_payload(payload).unwrap();
                a.stream_id == id && a.label == label
            }
        })
    };
    assert!(position_of(video_id, label).unwrap() < first_video, "announced before its first frame: {kinds:?}");
    assert!(position_of(audio_id, "").unwrap() < first_audio, "an unlabelled stream is announced too");
    let renamed = position_of(video_id, "renamed").expect("the new label announced");
    assert!(renamed > first_video);
    let by_id = |id: u32| named.iter().filter(move |a| a.stream_id == id);
    assert!(by_id(video_id).all(|a| a.kind == KIND_VIDEO) && by_id(audio_id).all(|a| a.kind == KIND_AUDIO));
    assert!(named.iter().all(|a| a.timestamp_us > 0), "announcements carry the time");
    assert_eq!(bridge.stop()["announcements"], 3);
}

#[test]
fn labels_that_are_not_strings_or_too_long_close_with_1007() {
    let consumer = ring(1 << 20);
    let bridge = BridgeProcess::start(&consumer, &[]);
    let declaration = video_declaration("I420", 64, 48);
    let long = "x".repeat(MAX_LABEL + 1);
    let mut not_a_string: serde_json::Value = serde_json::from_str(&declaration).unwrap();
    not_a_string["label"] = serde_json::json!({"participant": 1});
    for (text, why) in
        [(labelled(&declaration, &long), "label of 1025 bytes"), (not_a_string.to_string(), "not a string")]
    {
        let mut client = Client::connect(bridge.addr).unwrap();
        client.send_text(&text).unwrap();
        let (code, reason) = client.recv_close().unwrap();
        assert_eq!(code, 1007, "{reason}");
        assert!(reason.contains(why), "{reason}");
    }
    // The longest label is fine.
    let mut client = Client::connect(bridge.addr).unwrap();
    client.declare(&labelled(&declaration, &"y".repeat(MAX_LABEL))).unwrap();
    bridge.wait_for(Duration::from_secs(5), "the announcement", |s| s["announcements"] == 1);
    let named = announcements(&drain_with_announcements(&consumer));
    assert_eq!(named.len(), 1);
    assert_eq!(named[0].label.len(), MAX_LABEL);
}
