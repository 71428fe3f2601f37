//! The bridge against clients that break the protocol, stall, disconnect
//! or overrun the ring. The bridge runs as its own process; the test
//! process is the ring's consumer and checks that it never sees a partial
//! or altered frame: only whole frames, byte for byte, or nothing (a skip
//! record, which the consumer steps over by itself).

mod common;

use std::io::Write;
use std::net::Shutdown;
use std::time::{Duration, Instant};

use common::*;
use shmring_bridge::client::{audio_message, encode_frame, Client, ServerMessage, CHROMIUM_FRAGMENT};
use shmring_media::{AudioMeta, PixelFormat, SampleFormat, KIND_AUDIO, KIND_VIDEO};

const HD: (u32, u32) = (1920, 1080);

fn declared_hd(bridge: &BridgeProcess) -> Client {
    let mut client = Client::connect(bridge.addr).unwrap();
    client.declare(&video_declaration("I420", HD.0, HD.1)).unwrap();
    client
}

fn text_notice(message: ServerMessage) -> serde_json::Value {
    match message {
        ServerMessage::Text(text) => serde_json::from_str(&text).unwrap(),
        other => panic!("expected a notice, got {other:?}"),
    }
}

#[test]
fn whole_frames_arrive_byte_for_byte_with_the_bridges_stream_id() {
    let consumer = ring(64 << 20);
    let bridge = BridgeProcess::start(&consumer, &[]);
    let mut client = declared_hd(&bridge);
    let mut other = Client::connect(bridge.addr).unwrap();
    let ready = other.declare(SMALL_AUDIO_DECLARATION).unwrap();
    for n in 0..3 {
        client.send_binary(&patterned_video(PixelFormat::I420, HD.0, HD.1, n), CHROMIUM_FRAGMENT).unwrap();
        other.send_binary(&small_audio(n), CHROMIUM_FRAGMENT).unwrap();
    }
    let mut video = Vec::new();
    let mut audio = 0;
    while video.len() < 3 || audio < 3 {
        let (kind, payload) = next_record(&consumer, Duration::from_secs(10)).expect("six records");
        match kind {
            KIND_VIDEO => video.push(check_patterned_video(&payload)),
            KIND_AUDIO => {
                let chunk = shmring_media::AudioFrame::from_payload(&payload).unwrap();
                assert_eq!(u64::from(chunk.stream_id()), ready["stream_id"].as_u64().unwrap());
                assert_eq!(payload, {
                    let mut expected = small_audio(chunk.frame_number());
                    expected[8..12].copy_from_slice(&chunk.stream_id().to_ne_bytes());
                    expected
                });
                audio += 1;
            }
            other => panic!("record of kind {other}"),
        }
    }
    assert_eq!(video.iter().map(|v| v.0).collect::<Vec<_>>(), [0, 1, 2]);
    assert!(video.iter().all(|v| v.1 == video[0].1) && u64::from(video[0].1) != ready["stream_id"].as_u64().unwrap());
    let stats = bridge.stop();
    assert_eq!(stats["messages"], 6);
    assert_eq!(stats["abandoned"], 0);
}

#[test]
fn oversize_messages_close_with_1009_and_reach_nothing() {
    let consumer = ring(1 << 20); // largest record: 1 MiB - 64
    let bridge = BridgeProcess::start(&consumer, &[]);

    // A declaration whose frames cannot fit.
    let mut client = Client::connect(bridge.addr).unwrap();
    client.send_text(&video_declaration("I420", HD.0, HD.1)).unwrap();
    let (code, reason) = client.recv_close().unwrap();
    assert_eq!(code, 1009, "{reason}");

    // A frame header longer than any record.
    let mut client = Client::connect(bridge.addr).unwrap();
    client.declare(SMALL_AUDIO_DECLARATION).unwrap();
    let mut bytes = Vec::new();
    encode_frame(false, 2, &[0; 16], Some([1, 2, 3, 4]), &mut bytes);
    bytes[1] = 0x80 | 127; // 64-bit length follows
    bytes.splice(2..2, (2u64 << 20).to_be_bytes());
    client.write_raw(&bytes[..14]).unwrap();
    assert_eq!(client.recv_close().unwrap().0, 1009);

    // An audio header that describes a chunk longer than any record.
    let mut client = Client::connect(bridge.addr).unwrap();
    client.declare(SMALL_AUDIO_DECLARATION).unwrap();
    let meta = AudioMeta { sample_rate: 48_000, ..Default::default() };
    let mut header = audio_message(SampleFormat::S16Interleaved, 48_000, 1, 1, &meta);
    header[40..44].copy_from_slice(&(1u32 << 20).to_ne_bytes()); // frame_count
    client.send_frame(false, 2, &header[..64]).unwrap();
    let (code, reason) = client.recv_close().unwrap();
    assert_eq!(code, 1009, "{reason}");

    std::thread::sleep(Duration::from_millis(100));
    assert!(drain(&consumer).is_empty());
    assert_eq!(consumer.stats().skipped, 0, "nothing was even reserved");
    assert_eq!(bridge.stop()["closes_sent"], serde_json::json!([{"code": 1009, "count": 3}]));
}

#[test]
fn malformed_headers_close_with_1007() {
    let consumer = ring(64 << 20);
    let bridge = BridgeProcess::start(&consumer, &[]);
    let good = patterned_video(PixelFormat::I420, 64, 48, 1);
    let expect_1007 = |mutate: &dyn Fn(&mut Vec<u8>), what: &str| {
        let mut client = Client::connect(bridge.addr).unwrap();
        client.declare(&video_declaration("I420", 64, 48)).unwrap();
        let mut message = good.clone();
        mutate(&mut message);
        client.send_binary(&message, 1000).unwrap();
        let (code, reason) = client.recv_close().unwrap();
        assert_eq!(code, 1007, "{what}: {reason}");
        reason
    };
    expect_1007(&|m| m[0] ^= 0xff, "bad magic");
    expect_1007(&|m| m[4] = 9, "bad version");
    expect_1007(&|m| m[32..36].copy_from_slice(&32u32.to_ne_bytes()), "width not as declared");
    expect_1007(&|m| m[12..16].copy_from_slice(&2u32.to_ne_bytes()), "pixel format not as declared");
    // Passes the bridge's own checks, fails shmring-media's reader: the U
    // plane's offset is not 64-byte aligned. The slot was reserved, so the
    // ring gets a skip record, never the frame.
    let reason = expect_1007(&|m| m[52..56].copy_from_slice(&(128 + 64 * 48 + 1u32).to_ne_bytes()), "misaligned plane");
    assert!(reason.contains("bad media header"), "{reason}");
    let reason = expect_1007(&|m| m.truncate(100), "shorter than the header");
    assert!(reason.contains("shorter than its 128-byte media header"), "{reason}");

    // Frame numbers must go forward.
    let mut client = Client::connect(bridge.addr).unwrap();
    client.declare(&video_declaration("I420", 64, 48)).unwrap();
    client.send_binary(&good, 1000).unwrap();
    client.send_binary(&good, 1000).unwrap();
    assert_eq!(client.recv_close().unwrap().0, 1007);

    // A bad declaration.
    let mut client = Client::connect(bridge.addr).unwrap();
    client.send_text(r#"{"type":"declare","kind":"video","format":"YUY2","width":64,"height":48}"#).unwrap();
    assert_eq!(client.recv_close().unwrap().0, 1007);

    let records = drain(&consumer);
    assert_eq!(records.len(), 1, "only the one good frame");
    assert_eq!(check_patterned_video(&records[0].1).0, 1);
    assert!(consumer.stats().skipped >= 1);
}

#[test]
fn wrong_lengths_close_with_1007_and_leave_only_skips() {
    let consumer = ring(64 << 20);
    let bridge = BridgeProcess::start(&consumer, &[]);
    let frame = patterned_video(PixelFormat::I420, HD.0, HD.1, 0);

    // Longer than the header describes: refused when the extra frame starts.
    let mut client = declared_hd(&bridge);
    let mut longer = frame.clone();
    longer.extend_from_slice(&[0; 100]);
    client.send_binary(&longer, CHROMIUM_FRAGMENT).unwrap();
    let (code, reason) = client.recv_close().unwrap();
    assert_eq!(code, 1007, "{reason}");

    // Shorter: the final fragment ends the message early.
    let mut client = declared_hd(&bridge);
    client.send_binary(&frame[..frame.len() - 1], CHROMIUM_FRAGMENT).unwrap();
    let (code, reason) = client.recv_close().unwrap();
    assert_eq!(code, 1007, "{reason}");
    assert!(reason.contains("its header describes 3110528"), "{reason}");

    std::thread::sleep(Duration::from_millis(100));
    assert!(drain(&consumer).is_empty(), "no partial frame reaches the consumer");
    assert_eq!(consumer.stats().skipped, 2);
    let stats = bridge.stop();
    assert_eq!(stats["abandoned"], 2);
    assert_eq!(stats["messages"], 0);
}

#[test]
fn text_where_binary_is_expected_closes_with_1003() {
    let consumer = ring(1 << 20);
    let bridge = BridgeProcess::start(&consumer, &[]);
    let mut client = Client::connect(bridge.addr).unwrap();
    client.declare(SMALL_AUDIO_DECLARATION).unwrap();
    client.send_text("hello").unwrap();
    let (code, reason) = client.recv_close().unwrap();
    assert_eq!(code, 1003, "{reason}");

    // Binary before any declaration.
    let mut client = Client::connect(bridge.addr).unwrap();
    client.send_binary(&small_audio(0), CHROMIUM_FRAGMENT).unwrap();
    assert_eq!(client.recv_close().unwrap().0, 1003);

    // A declaration again is not "text where binary is expected": it
    // changes the stream (a new frame size).
    let mut client = Client::connect(bridge.addr).unwrap();
    client.declare(&video_declaration("I420", 64, 48)).unwrap();
    client.send_binary(&patterned_video(PixelFormat::I420, 64, 48, 0), 1000).unwrap();
    client.declare(&video_declaration("I420", 32, 16)).unwrap();
    client.send_binary(&patterned_video(PixelFormat::I420, 32, 16, 1), 1000).unwrap();
    let first = next_record(&consumer, Duration::from_secs(5)).unwrap();
    let second = next_record(&consumer, Duration::from_secs(5)).unwrap();
    assert_eq!(check_patterned_video(&first.1).0, 0);
    assert_eq!(check_patterned_video(&second.1).0, 1);
    assert_eq!(shmring_media::VideoFrame::from_payload(&second.1).unwrap().width(), 32);
}

#[test]
fn protocol_violations_close_with_1002() {
    let consumer = ring(1 << 20);
    let bridge = BridgeProcess::start(&consumer, &[]);
    let cases: [(&str, Vec<u8>); 4] = [
        ("unmasked", {
            let mut b = Vec::new();
            encode_frame(true, 2, b"abc", None, &mut b);
            b
        }),
        ("compressed (RSV1) although permessage-deflate was declined", {
            let mut b = Vec::new();
            encode_frame(true, 2, b"abc", Some([1, 2, 3, 4]), &mut b);
            b[0] |= 0x40;
            b
        }),
        ("continuation without a message", {
            let mut b = Vec::new();
            encode_frame(true, 0, b"abc", Some([1, 2, 3, 4]), &mut b);
            b
        }),
        ("reserved opcode", {
            let mut b = Vec::new();
            encode_frame(true, 2, b"", Some([1, 2, 3, 4]), &mut b);
            b[0] = 0x83;
            b
        }),
    ];
    for (what, bytes) in cases {
        let mut client = Client::connect(bridge.addr).unwrap();
        client.declare(SMALL_AUDIO_DECLARATION).unwrap();
        client.write_raw(&bytes).unwrap();
        let (code, reason) = client.recv_close().unwrap();
        assert_eq!(code, 1002, "{what}: {reason}");
    }
    assert!(drain(&consumer).is_empty());
}

#[test]
fn pings_are_answered_and_a_client_close_is_echoed() {
    let consumer = ring(1 << 20);
    let bridge = BridgeProcess::start(&consumer, &[]);
    let mut client = Client::connect(bridge.addr).unwrap();
    client.declare(SMALL_AUDIO_DECLARATION).unwrap();
    // A ping between the fragments of a message, as RFC 6455 allows.
    let message = small_audio(0);
    client.send_frame(false, 2, &message[..500]).unwrap();
    client.send_frame(true, 9, b"are you there").unwrap();
    client.send_frame(true, 0, &message[500..]).unwrap();
    assert_eq!(client.recv().unwrap(), ServerMessage::Pong(b"are you there".to_vec()));
    let (_, payload) = next_record(&consumer, Duration::from_secs(5)).unwrap();
    assert_eq!(&payload[64..], &message[64..]);
    client.close(1000).unwrap();
    assert_eq!(client.recv_close().unwrap().0, 1000);
    // One connection stays open: the `/stats` request being answered.
    let stats = bridge.wait_for(Duration::from_secs(5), "the close", |s| s["connections_open"] == 1);
    assert_eq!(stats["client_closes"], 1);
}

#[test]
fn invalid_close_frames_fail_the_connection_as_rfc_6455_requires() {
    let consumer = ring(1 << 20);
    let bridge = BridgeProcess::start(&consumer, &[]);
    let with_reason = |code: u16, reason: &[u8]| [&code.to_be_bytes()[..], reason].concat();
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("a one-byte payload", vec![0x03], 1002),
        ("code 0", with_reason(0, b""), 1002),
        ("code 999", with_reason(999, b""), 1002),
        ("code 1004 (reserved)", with_reason(1004, b""), 1002),
        ("code 1005 (never sent)", with_reason(1005, b""), 1002),
        ("code 1006 (never sent)", with_reason(1006, b""), 1002),
        ("code 1015 (never sent)", with_reason(1015, b""), 1002),
        ("code 1016 (unassigned)", with_reason(1016, b""), 1002),
        ("code 2999 (unassigned)", with_reason(2999, b""), 1002),
        ("code 5000", with_reason(5000, b""), 1002),
        ("a reason that is not UTF-8", with_reason(1000, &[b'o', b'k', 0xed, 0xa0, 0x80]), 1007),
        ("a valid code, echoed", with_reason(1001, b"leaving"), 1001),
        ("a private code, echoed", with_reason(4321, "fini é".as_bytes()), 4321),
        ("no status, answered with 1000", Vec::new(), 1000),
    ];
    for (what, payload, expected) in &cases {
        let mut client = Client::connect(bridge.addr).unwrap();
        client.declare(SMALL_AUDIO_DECLARATION).unwrap();
        client.send_frame(true, 8, payload).unwrap();
        let (code, reason) = client.recv_close().unwrap();
        assert_eq!(code, *expected, "{what}: {reason}");
    }
    let stats = bridge.stop();
    assert_eq!(stats["client_closes"], 3, "only the valid closes count as the client's: {stats}");
    let sent = |code: u16| {
        stats["closes_sent"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["code"] == code)
            .map_or(0, |c| c["count"].as_u64().unwrap())
    };
    assert_eq!((sent(1002), sent(1007)), (10, 1), "{stats}");
}

#[test]
fn abrupt_disconnect_mid_message_leaves_a_skip_and_the_bridge_serving() {
    let consumer = ring(64 << 20);
    let bridge = BridgeProcess::start(&consumer, &[]);
    let frame = patterned_video(PixelFormat::I420, HD.0, HD.1, 0);
    let mut client = declared_hd(&bridge);
    // Half of the frame, then the connection drops (RST or FIN).
    let mut bytes = Vec::new();
    encode_frame(false, 2, &frame[..CHROMIUM_FRAGMENT], Some([9, 8, 7, 6]), &mut bytes);
    encode_frame(false, 0, &frame[CHROMIUM_FRAGMENT..10 * CHROMIUM_FRAGMENT], Some([5, 4, 3, 2]), &mut bytes);
    client.write_raw(&bytes[..bytes.len() - 1000]).unwrap();
    bridge.wait_for(Duration::from_secs(5), "the message in flight", |s| s["in_flight"] == 1);
    client.stream().shutdown(Shutdown::Both).unwrap();
    drop(client);
    bridge.wait_for(Duration::from_secs(5), "the disconnect", |s| s["disconnects"] == 1 && s["in_flight"] == 0);

    // The ring goes on: a new connection's frame arrives whole.
    let mut client = declared_hd(&bridge);
    client.send_binary(&patterned_video(PixelFormat::I420, HD.0, HD.1, 1), CHROMIUM_FRAGMENT).unwrap();
    let (_, payload) = next_record(&consumer, Duration::from_secs(10)).expect("the second frame");
    assert_eq!(check_patterned_video(&payload).0, 1);
    assert_eq!(consumer.stats().skipped, 1, "the broken message became a skip record");
    assert_eq!(bridge.stop()["abandoned"], 1);
}

#[test]
fn a_stalled_message_is_given_up_so_other_streams_keep_flowing() {
    let consumer = ring(64 << 20);
    let bridge = BridgeProcess::start(&consumer, &["--message-timeout-ms", "200"]);
    let frame = patterned_video(PixelFormat::I420, HD.0, HD.1, 0);
    // The slow client's slot is reserved first, at the ring's head.
    let mut slow = declared_hd(&bridge);
    let mut bytes = Vec::new();
    encode_frame(false, 2, &frame[..CHROMIUM_FRAGMENT], Some([1, 1, 2, 2]), &mut bytes);
    slow.write_raw(&bytes).unwrap();
    bridge.wait_for(Duration::from_secs(5), "the slow message in flight", |s| s["in_flight"] == 1);

    // Another stream's frames flow past it once its slot is given up.
    let started = Instant::now();
    let mut fast = declared_hd(&bridge);
    for n in 10..15 {
        fast.send_binary(&patterned_video(PixelFormat::I420, HD.0, HD.1, n), CHROMIUM_FRAGMENT).unwrap();
    }
    for n in 10..15 {
        let (_, payload) = next_record(&consumer, Duration::from_secs(10)).expect("the fast stream's frames");
        assert_eq!(check_patterned_video(&payload).0, n);
    }
    println!("fast stream's frames arrived {:?} after the slow client stalled", started.elapsed());
    let notice = text_notice(slow.recv().unwrap());
    assert_eq!(notice["type"], "dropped");
    assert!(notice["reason"].as_str().unwrap().contains("not completed within 200 ms"), "{notice}");

    // The slow client finishes late: its frame is read and thrown away;
    // its next one arrives.
    let mut rest = Vec::new();
    encode_frame(true, 0, &frame[CHROMIUM_FRAGMENT..], Some([3, 3, 4, 4]), &mut rest);
    slow.write_raw(&rest).unwrap();
    slow.send_binary(&patterned_video(PixelFormat::I420, HD.0, HD.1, 1), CHROMIUM_FRAGMENT).unwrap();
    let (_, payload) = next_record(&consumer, Duration::from_secs(10)).expect("the slow stream's next frame");
    assert_eq!(check_patterned_video(&payload).0, 1);
    assert_eq!(consumer.stats().skipped, 1);
    let stats = bridge.stop();
    assert_eq!((stats["message_timeouts"].as_u64(), stats["messages"].as_u64()), (Some(1), Some(6)));
}

#[test]
fn a_full_ring_drops_counts_and_tells_the_client() {
    let consumer = ring(8 << 20); // two 1080p frames fit, not three
    let bridge = BridgeProcess::start(&consumer, &[]);
    let mut client = declared_hd(&bridge);
    for n in 0..5 {
        client.send_binary(&patterned_video(PixelFormat::I420, HD.0, HD.1, n), CHROMIUM_FRAGMENT).unwrap();
    }
    let mut notices = Vec::new();
    while notices.len() < 3 {
        notices.push(text_notice(client.recv().unwrap()));
    }
    assert!(notices.iter().all(|n| n["type"] == "dropped" && n["reason"] == "ring full"), "{notices:?}");
    assert_eq!(notices.iter().map(|n| n["frame_number"].as_u64().unwrap()).collect::<Vec<_>>(), [2, 3, 4]);
    assert_eq!(notices[2]["dropped"], 3);
    let records = drain(&consumer);
    assert_eq!(records.iter().map(|r| check_patterned_video(&r.1).0).collect::<Vec<_>>(), [0, 1]);
    // With room again, frames flow.
    client.send_binary(&patterned_video(PixelFormat::I420, HD.0, HD.1, 5), CHROMIUM_FRAGMENT).unwrap();
    let (_, payload) = next_record(&consumer, Duration::from_secs(10)).unwrap();
    assert_eq!(check_patterned_video(&payload).0, 5);
    let stats = bridge.stop();
    assert_eq!((stats["dropped_full"].as_u64(), stats["messages"].as_u64()), (Some(3), Some(3)));
    assert_eq!(consumer.stats().drops, 3, "the ring counted the drops too");
}

#[test]
fn silent_connections_and_slow_requests_time_out() {
    let consumer = ring(1 << 20);
    let bridge = BridgeProcess::start(&consumer, &["--idle-timeout-s", "1", "--handshake-timeout-s", "1"]);
    // Half a request, then silence.
    let mut half = std::net::TcpStream::connect(bridge.addr).unwrap();
    half.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();
    // A WebSocket that never answers the bridge's ping.
    let mut silent = Client::connect(bridge.addr).unwrap();
    silent.declare(SMALL_AUDIO_DECLARATION).unwrap();
    let mut saw_ping = false;
    let (code, reason) = loop {
        match silent.recv().unwrap() {
            ServerMessage::Ping(_) => saw_ping = true,
            ServerMessage::Close { code, reason } => break (code, reason),
            _ => {}
        }
    };
    assert!(saw_ping);
    assert_eq!(code, 1008, "{reason}");
    // Both are gone; the one connection open is the `/stats` request.
    bridge.wait_for(Duration::from_secs(5), "both timeouts", |s| {
        s["handshake_timeouts"] == 1 && s["idle_timeouts"] == 1 && s["connections_open"] == 1
    });
}

#[test]
fn the_capture_page_and_client_are_served() {
    let consumer = ring(1 << 20);
    let bridge = BridgeProcess::start(&consumer, &[]);
    assert!(http_get(bridge.addr, "/").contains("BridgeSender"));
    assert!(http_get(bridge.addr, "/shmring-bridge.js").contains("export class BridgeSender"));
    assert_eq!(bridge.stats()["pages_served"], 2);
}

#[test]
fn origins_outside_the_allow_list_are_refused() {
    let consumer = ring(1 << 20);
    let bridge = BridgeProcess::start(&consumer, &["--allow-origin", "https://meet.example"]);
    assert!(Client::connect_with_origin(bridge.addr, Some("https://evil.example")).is_err());
    assert!(Client::connect_with_origin(bridge.addr, Some("https://meet.example")).is_ok());
    let own = format!("http://127.0.0.1:{}", bridge.addr.port());
    assert!(Client::connect_with_origin(bridge.addr, Some(&own)).is_ok());
    assert!(Client::connect(bridge.addr).is_ok(), "no Origin: not a browser page");
}

#[test]
fn a_killed_bridge_does_not_wedge_the_consumer() {
    let consumer = ring(64 << 20);
    let mut bridge = BridgeProcess::start(&consumer, &[]);
    let frame = patterned_video(PixelFormat::I420, HD.0, HD.1, 0);
    let mut client = declared_hd(&bridge);
    let mut bytes = Vec::new();
    encode_frame(false, 2, &frame[..CHROMIUM_FRAGMENT], Some([1, 2, 3, 4]), &mut bytes);
    client.write_raw(&bytes).unwrap();
    bridge.wait_for(Duration::from_secs(5), "the message in flight", |s| s["in_flight"] == 1);
    bridge.kill(); // SIGKILL between claim and commit
                   // Another producer's record, behind the dead claim, still arrives:
                   // the consumer finds the claim's owner dead and steps over it.
    let mut producer = consumer.producer().unwrap();
    producer.send(99, b"after the crash").unwrap();
    let (kind, payload) = next_record(&consumer, Duration::from_secs(10)).expect("the consumer recovered");
    assert_eq!((kind, payload.as_slice()), (99, &b"after the crash"[..]));
    assert_eq!(consumer.stats().recovered, 1);
}

#[test]
fn connections_wait_for_a_free_producer_when_all_are_in_flight() {
    let consumer = ring(64 << 20);
    // One worker with one producer: one message in flight at a time.
    let args = ["--workers", "1", "--in-flight", "1", "--message-timeout-ms", "300"];
    let bridge = BridgeProcess::start(&consumer, &args);
    let mut holder = declared_hd(&bridge);
    let mut waiter = Client::connect(bridge.addr).unwrap();
    waiter.declare(SMALL_AUDIO_DECLARATION).unwrap();
    assert_eq!(bridge.stats()["producers"], 1);

    let frame = patterned_video(PixelFormat::I420, HD.0, HD.1, 0);
    let mut bytes = Vec::new();
    encode_frame(false, 2, &frame[..CHROMIUM_FRAGMENT], Some([7, 7, 7, 7]), &mut bytes);
    holder.write_raw(&bytes).unwrap();
    bridge.wait_for(Duration::from_secs(5), "the held producer", |s| s["in_flight"] == 1);
    waiter.send_binary(&small_audio(0), CHROMIUM_FRAGMENT).unwrap();
    // The waiter's message waits (in the kernel) for the producer; it is
    // neither dropped nor written while the holder keeps it...
    assert!(next_record(&consumer, Duration::from_millis(100)).is_none());
    // ...and goes in once the holder's slot is given up.
    let (kind, payload) = next_record(&consumer, Duration::from_secs(10)).expect("the waiter's message");
    assert_eq!((kind, &payload[64..]), (KIND_AUDIO, &small_audio(0)[64..]));
    let stats = bridge.stop();
    assert_eq!((stats["dropped_busy"].as_u64(), stats["message_timeouts"].as_u64()), (Some(0), Some(1)));
}
