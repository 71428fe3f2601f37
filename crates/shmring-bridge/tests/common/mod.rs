//! Shared by the bridge's integration tests: the bridge runs as its own
//! process (the `shmring-bridge` binary), a producer of a ring that the test
//! process creates and consumes; frames carry a pattern the consumer can
//! check byte for byte.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use shmring::{Consumer, MappedRing, RingConsumer, RingOptions};
use shmring_bridge::client::{video_message, write_audio_header, Client, ServerMessage};
use shmring_media::{
    Announcement, AudioMeta, PixelFormat, SampleFormat, VideoFrame, VideoLayout, VideoMeta, KIND_ANNOUNCE,
};

/// A ring the test consumes.
pub fn ring(capacity: u64) -> RingConsumer {
    Consumer::create_anonymous(&RingOptions::with_capacity(capacity)).expect("create a ring")
}

/// The bridge binary, running as a producer of a ring of this process.
pub struct BridgeProcess {
    child: Child,
    pub addr: SocketAddr,
    lines: Receiver<String>,
}

impl BridgeProcess {
    /// Starts the bridge on `consumer`'s ring (descriptors passed down in
    /// `SHMRING_FD`), listening on an ephemeral port, with extra `args`.
    pub fn start(consumer: &RingConsumer, args: &[&str]) -> BridgeProcess {
        let fds = consumer.fds().inheritable().expect("inheritable descriptors");
        let mut child = Command::new(env!("CARGO_BIN_EXE_shmring-bridge"))
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .env("SHMRING_FD", fds.spec())
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn shmring-bridge");
        drop(fds); // the child has its copies
        let stdout = child.stdout.take().expect("piped stdout");
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let first = lines.recv_timeout(Duration::from_secs(20)).expect("the bridge prints its address");
        let addr = first.strip_prefix("listening on ").expect("a `listening on` line").parse().expect("an address");
        BridgeProcess { child, addr, lines }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The bridge's counters, from `GET /stats`.
    pub fn stats(&self) -> serde_json::Value {
        let body = http_get(self.addr, "/stats");
        serde_json::from_str(&body).expect("stats are JSON")
    }

    /// Polls the counters until `done` holds (or panics after `timeout`).
    pub fn wait_for(
        &self,
        timeout: Duration,
        what: &str,
        done: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + timeout;
        loop {
            let stats = self.stats();
            if done(&stats) {
                return stats;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}; counters: {stats}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then the final counters it prints.
    pub fn stop(mut self) -> serde_json::Value {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let status = self.child.wait().expect("wait for the bridge");
        assert!(status.success(), "bridge exited with {status}");
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            if let Ok(value) = serde_json::from_str::<serde_json::Value>(&line) {
                if let Some(stats) = value.get("final") {
                    return stats.clone();
                }
            }
        }
        panic!("the bridge printed no final counters");
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for BridgeProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A plain HTTP GET; returns the body.
pub fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read the response");
    let (head, body) = response.split_once("\r\n\r\n").expect("a response head");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    body.to_string()
}

/// Byte `i` of plane data of frame `frame_number`.
fn pattern(frame_number: u64, i: usize) -> u8 {
    (i as u64).wrapping_mul(31).wrapping_add(frame_number.wrapping_mul(7)) as u8
}

/// A video message whose planes carry a pattern of its frame number.
pub fn patterned_video(format: PixelFormat, width: u32, height: u32, frame_number: u64) -> Vec<u8> {
    let meta = VideoMeta { stream_id: 0, timestamp_us: frame_number as i64 * 33_333, frame_number };
    let mut message = video_message(format, width, height, &meta);
    let layout = VideoLayout::new(format, width, height).unwrap();
    let start = layout.plane_range(0).start;
    for (i, byte) in message[start..].iter_mut().enumerate() {
        *byte = pattern(frame_number, i);
    }
    message
}

/// Checks a received video payload against [`patterned_video`]; returns
/// its frame number and stream id.
pub fn check_patterned_video(payload: &[u8]) -> (u64, u32) {
    let frame = VideoFrame::from_payload(payload).expect("a valid video frame");
    let number = frame.frame_number();
    assert_eq!(frame.timestamp_us(), number as i64 * 33_333);
    let start = frame.header().plane_offset[0] as usize;
    let mismatch = payload[start..].iter().enumerate().position(|(i, &b)| b != pattern(number, i));
    assert_eq!(mismatch, None, "frame {number} differs from what was sent");
    (number, frame.stream_id())
}

/// A 1 KiB audio message (480 mono s16 samples) numbered `frame_number`.
pub fn small_audio(frame_number: u64) -> Vec<u8> {
    let mut message = vec![0u8; 1024];
    let meta =
        AudioMeta { stream_id: 0, timestamp_us: frame_number as i64 * 10_000, frame_number, sample_rate: 48_000 };
    write_audio_header(&mut message, SampleFormat::S16Interleaved, 48_000, 1, 480, &meta);
    for (i, byte) in message[64..].iter_mut().enumerate() {
        *byte = pattern(frame_number, i);
    }
    message
}

pub const SMALL_AUDIO_DECLARATION: &str =
    r#"{"type":"declare","kind":"audio","format":"s16","sample_rate":48000,"channels":1}"#;

pub fn video_declaration(format: &str, width: u32, height: u32) -> String {
    format!(r#"{{"type":"declare","kind":"video","format":"{format}","width":{width},"height":{height}}}"#)
}

/// Media records the consumer has now, without waiting: `(kind, payload)`.
/// Announcements (one per declared stream) are checked and left out.
pub fn drain(consumer: &Consumer<MappedRing>) -> Vec<(u32, Vec<u8>)> {
    drain_with_announcements(consumer).into_iter().filter(|(kind, payload)| !is_announcement(*kind, payload)).collect()
}

/// Every record the consumer has now, announcements included.
pub fn drain_with_announcements(consumer: &Consumer<MappedRing>) -> Vec<(u32, Vec<u8>)> {
    let mut records = Vec::new();
    while let Some(frame) = consumer.try_recv().expect("no corrupt records") {
        records.push((frame.kind(), frame.to_vec()));
    }
    records
}

/// Waits up to `timeout` for the next media record (announcements are
/// checked and stepped over).
pub fn next_record(consumer: &Consumer<MappedRing>, timeout: Duration) -> Option<(u32, Vec<u8>)> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let (kind, payload) =
            consumer.recv_timeout(left).expect("no corrupt records").map(|frame| (frame.kind(), frame.to_vec()))?;
        if !is_announcement(kind, &payload) {
            return Some((kind, payload));
        }
    }
}

/// Whether a record is an announcement (which must then be a valid one).
pub fn is_announcement(kind: u32, payload: &[u8]) -> bool {
    if kind != KIND_ANNOUNCE {
        return false;
    }
    Announcement::from_payload(payload).expect("a valid announcement");
    true
}

/// A browser profile as the file lane sees one: a fresh directory on tmpfs
/// (removed on drop) holding a page's frame file where Chromium keeps an
/// origin-private file (`Default/File System/000/t/00/00000000`).
pub struct Profile {
    pub dir: std::path::PathBuf,
}

impl Profile {
    pub fn new(what: &str) -> Profile {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::path::PathBuf::from(format!("/dev/shm/shmring-test-{what}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("Default/File System/000/t/00")).expect("create the profile");
        Profile { dir }
    }

    pub fn arg(&self) -> String {
        self.dir.display().to_string()
    }

    /// Where a page's frame file lives.
    pub fn file_path(&self, index: u32) -> std::path::PathBuf {
        self.dir.join(format!("Default/File System/000/t/00/{index:08}"))
    }
}

impl Drop for Profile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A page of the file lane, played by the test: it writes frames into its
/// frame file as the JS client's worker does and sends the control
/// messages over its WebSocket.
pub struct FilePage {
    pub client: Client,
    pub file: std::fs::File,
    pub path: std::path::PathBuf,
    pub token: [u8; 16],
    pub size: u64,
    /// Data position of the next frame.
    pub position: u64,
    /// Everything before this has been acknowledged.
    pub released: u64,
    /// Acknowledgements received.
    pub acks: Vec<serde_json::Value>,
}

impl FilePage {
    /// Creates the frame file at `path` (size `size`, header with a fresh
    /// token) and connects to `bridge`.
    pub fn create(bridge: &BridgeProcess, path: &std::path::Path, size: u64) -> FilePage {
        use std::os::unix::fs::FileExt;
        let file = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(path).unwrap();
        file.set_len(size).unwrap();
        let token: [u8; 16] = std::array::from_fn(|_| rand_byte());
        file.write_all_at(&shmring_bridge::frame_file::file_header(&token, size), 0).unwrap();
        FilePage {
            client: Client::connect(bridge.addr).unwrap(),
            file,
            path: path.to_path_buf(),
            token,
            size,
            position: 0,
            released: 0,
            acks: Vec::new(),
        }
    }

    pub fn token_hex(&self) -> String {
        self.token.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Declares the file; returns the bridge's answer.
    pub fn declare_file(&mut self) -> serde_json::Value {
        let message = format!(r#"{{"type":"file","token":"{}","size":{}}}"#, self.token_hex(), self.size);
        self.client.send_text(&message).unwrap();
        self.next_notice("file")
    }

    /// The next notice of `kind` (others, such as drop notices, are skipped).
    pub fn next_notice(&mut self, kind: &str) -> serde_json::Value {
        loop {
            match self.client.recv().expect("a notice from the bridge") {
                ServerMessage::Text(text) => {
                    let notice: serde_json::Value = serde_json::from_str(&text).unwrap();
                    if notice["type"] == kind {
                        return notice;
                    }
                }
                ServerMessage::Close { code, reason } => panic!("closed with {code} {reason} waiting for {kind}"),
                _ => {}
            }
        }
    }

    pub fn capacity(&self) -> u64 {
        self.size - shmring_bridge::frame_file::DATA_OFFSET
    }

    /// Writes `message` at the next position that holds it without
    /// crossing the end of the data region, once the bytes there have been
    /// acknowledged (waiting for acknowledgements as it must); returns that
    /// position.
    pub fn write(&mut self, message: &[u8]) -> u64 {
        use std::os::unix::fs::FileExt;
        let capacity = self.capacity();
        let len = message.len() as u64;
        let mut at = self.position;
        if at % capacity + len > capacity {
            at += capacity - at % capacity; // to the start of the next lap
        }
        while at + len - self.released > capacity {
            let ack = self.next_notice("ack");
            let released = ack["released"].as_u64().unwrap();
            assert!(released > self.released, "acknowledgements go forward: {ack}");
            self.released = released;
            self.acks.push(ack);
        }
        self.file.write_all_at(message, shmring_bridge::frame_file::DATA_OFFSET + at % capacity).unwrap();
        self.position = at + len;
        at
    }

    pub fn send_control(&mut self, position: u64, length: u64, frame_number: u64) {
        let control =
            format!(r#"{{"type":"frame","position":{position},"length":{length},"frame_number":{frame_number}}}"#);
        self.client.send_text(&control).unwrap();
    }

    /// Writes a frame and sends its control message.
    pub fn send(&mut self, message: &[u8], frame_number: u64) {
        let at = self.write(message);
        self.send_control(at, message.len() as u64, frame_number);
    }
}

fn rand_byte() -> u8 {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new().build_hasher().finish() as u8
}
