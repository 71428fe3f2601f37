//! A real meeting recorded from a page that knows nothing of shmring:
//! headless Chromium (Debian's package) loads the extension (`extension/`,
//! written by the bridge with `--extension-dir`) and opens a meeting page
//! served by this test, in which each participant is a pair of peer
//! connections sending the fake camera and microphone over 127.0.0.1 only
//! (`loopback=1`, with [`LOOPBACK_WEBRTC`]). The extension
//! finds every remote track and sends it through the bridge (its own
//! process); this process is the ring's consumer. Fails, rather than skips,
//! when Chromium is missing.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::*;
use shmring_bridge::chromium::{self, Chromium, Launch, PageServer, LOOPBACK_WEBRTC};
use shmring_media::{Announcement, AudioFrame, PixelFormat, VideoFrame, KIND_ANNOUNCE, KIND_AUDIO, KIND_VIDEO};

/// One browser at a time: the machine has two cores, and a meeting of four
/// encodes and decodes four video streams.
static ONE_BROWSER: Mutex<()> = Mutex::new(());

const PAGES: &[(&str, &str)] =
    &[("/meeting.html", include_str!("pages/meeting.html")), ("/plain.html", include_str!("pages/plain.html"))];

/// A fresh directory for the extension the bridge writes.
fn extension_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "shmring-meeting-extension-{}-{}",
        std::process::id(),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// What one stream delivered to the ring.
#[derive(Default, Debug)]
struct Delivered {
    /// Its announce record, and how many records of it came before that.
    announcement: Option<Announcement>,
    before_announcement: u64,
    kind: u32,
    records: u64,
    sizes: BTreeSet<(u32, u32)>,
    /// Video frames whose luma is all zeros.
    blank: u64,
    samples: u64,
    /// Largest absolute sample value seen.
    peak: f32,
    /// When the last record arrived.
    last: Option<Instant>,
}

/// A stream as the extension announced it: `shmring-extension: stream N LABEL`.
#[derive(Debug, Clone)]
struct Announced {
    participant: String,
    kind: String,
    track: String,
}

fn announced(browser: &Chromium) -> BTreeMap<u32, Announced> {
    browser
        .console_lines("shmring-extension: stream ")
        .iter()
        .map(|line| {
            let rest = line.trim_start_matches("shmring-extension: stream ");
            let (id, label) = rest.split_once(' ').expect("`stream ID LABEL`");
            // The label is JSON inside Chromium's quoted console text.
            let label: serde_json::Value = serde_json::from_str(&label.replace("\\\"", "\"")).expect("a JSON label");
            let text = |key: &str| label[key].as_str().unwrap_or_else(|| panic!("{key} in {label}")).to_string();
            (
                id.parse().expect("a stream id"),
                Announced { participant: text("participant"), kind: text("kind"), track: text("track") },
            )
        })
        .collect()
}

/// Stream ids the extension has closed: `shmring-extension: closed stream N (...)`.
fn closed(browser: &Chromium) -> BTreeSet<u32> {
    browser
        .console_lines("shmring-extension: closed stream ")
        .iter()
        .filter_map(|line| line.trim_start_matches("shmring-extension: closed stream ").split(' ').next()?.parse().ok())
        .collect()
}

/// `meeting: participant I joined, stream ID` lines: participant -> stream id.
fn joined(browser: &Chromium) -> BTreeMap<u32, String> {
    browser
        .console_lines("meeting: participant ")
        .iter()
        .filter_map(|line| {
            let rest = line.trim_start_matches("meeting: participant ");
            let (who, stream) = rest.split_once(" joined, stream ")?;
            Some((who.parse().ok()?, stream.to_string()))
        })
        .collect()
}

/// Takes one record into `streams`.
fn take(consumer: &shmring::RingConsumer, streams: &mut BTreeMap<u32, Delivered>, timeout: Duration) {
    let Some(frame) = consumer.recv_timeout(timeout).expect("no corrupt records") else {
        return;
    };
    match frame.kind() {
        KIND_VIDEO => {
            let v = VideoFrame::parse(&frame).expect("a valid video header");
            assert_eq!(v.format(), PixelFormat::I420, "WebRTC decodes to I420");
            let stream = streams.entry(v.stream_id()).or_default();
            let y = v.y();
            if (0..y.len()).step_by(97).all(|i| y.load_u8(i) == Some(0)) {
                stream.blank += 1;
            }
            stream.kind = KIND_VIDEO;
            stream.records += 1;
            stream.sizes.insert((v.width(), v.height()));
            stream.last = Some(Instant::now());
        }
        KIND_AUDIO => {
            let a = AudioFrame::parse(&frame).expect("a valid audio header");
            let stream = streams.entry(a.stream_id()).or_default();
            stream.kind = KIND_AUDIO;
            stream.records += 1;
            stream.samples += u64::from(a.frame_count());
            let peak = a.channels_f32().flat_map(|c| c.iter()).fold(0f32, |m, s| m.max(s.abs()));
            stream.peak = stream.peak.max(peak);
            stream.last = Some(Instant::now());
        }
        KIND_ANNOUNCE => {
            let a = Announcement::parse(&frame).expect("a valid announcement");
            let stream = streams.entry(a.stream_id).or_default();
            assert!(stream.announcement.is_none(), "stream {} announced once", a.stream_id);
            stream.before_announcement = stream.records;
            stream.announcement = Some(a);
        }
        other => panic!("record of kind {other}"),
    }
}

struct Meeting {
    consumer: shmring::RingConsumer,
    bridge: BridgeProcess,
    browser: Chromium,
    extension: PathBuf,
    _pages: PageServer,
}

impl Meeting {
    fn open(page: &str, query: &str) -> Meeting {
        let binary = chromium::find().expect(
            "Chromium is required for this test (Debian: apt-get install chromium; or set CHROMIUM=/path/to/chromium)",
        );
        let consumer = ring(32 << 20);
        let extension = extension_dir();
        let bridge = BridgeProcess::start(&consumer, &["--extension-dir", extension.to_str().unwrap()]);
        let pages = PageServer::start(PAGES).expect("serve the pages");
        let extra_args = vec![format!("--load-extension={}", extension.display()), LOOPBACK_WEBRTC.to_string()];
        let launch = Launch { extra_args, ..Launch::default() };
        let browser = Chromium::launch_with(&binary, &pages.url(page, query), &launch).expect("launch Chromium");
        Meeting { consumer, bridge, browser, extension, _pages: pages }
    }

    /// Takes records until `done` says so (checked every 250 ms), or panics
    /// after `timeout`.
    fn run_until(
        &mut self,
        streams: &mut BTreeMap<u32, Delivered>,
        timeout: Duration,
        what: &str,
        mut done: impl FnMut(&Chromium, &BTreeMap<u32, Delivered>) -> bool,
    ) {
        let deadline = Instant::now() + timeout;
        let mut checked = Instant::now();
        loop {
            take(&self.consumer, streams, Duration::from_millis(50));
            if checked.elapsed() >= Duration::from_millis(250) {
                checked = Instant::now();
                if done(&self.browser, streams) {
                    return;
                }
                assert!(
                    Instant::now() < deadline && !self.browser.exited(),
                    "timed out waiting for {what}; delivered {streams:?}\nconsole:\n{}\nChromium's log ends:\n{}",
                    self.browser.console().join("\n"),
                    self.browser.log_tail(20)
                );
            }
        }
    }
}

impl Drop for Meeting {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.extension);
    }
}

#[test]
fn every_participants_video_and_audio_arrive_with_distinct_labels() {
    let _one = ONE_BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    // The page plays no remote audio itself: the extension must make
    // Chromium pull it.
    let mut meeting = Meeting::open("/meeting.html", "participants=4&seconds=10&playout=none&loopback=1");
    let mut streams = BTreeMap::new();
    meeting.run_until(
        &mut streams,
        Duration::from_secs(60),
        "the meeting to end and every sender to close",
        |browser, _| {
            let announced = announced(browser);
            !browser.console_lines("meeting: ended").is_empty() && announced.len() == 8 && closed(browser).len() == 8
        },
    );
    // Whatever was still in flight.
    std::thread::sleep(Duration::from_millis(300));
    while meeting.consumer.try_recv().expect("no corrupt records").is_some() {}
    let announced = announced(&meeting.browser);
    let joined = joined(&meeting.browser);
    let stats = meeting.bridge.stats();
    println!("streams {streams:#?}\nannounced {announced:#?}\nbridge {stats}");

    assert_eq!(joined.len(), 4, "the page says four joined");
    let participants: BTreeSet<&str> = announced.values().map(|a| a.participant.as_str()).collect();
    let expected: BTreeSet<&str> = joined.values().map(String::as_str).collect();
    assert_eq!(participants, expected, "each label names the participant's stream");
    let tracks: BTreeSet<&str> = announced.values().map(|a| a.track.as_str()).collect();
    assert_eq!(tracks.len(), 8, "eight distinct tracks");
    for participant in &participants {
        let kinds: BTreeSet<&str> =
            announced.values().filter(|a| a.participant == *participant).map(|a| a.kind.as_str()).collect();
        assert_eq!(kinds, BTreeSet::from(["audio", "video"]), "participant {participant}");
    }
    for (id, label) in &announced {
        let stream = streams.get(id).unwrap_or_else(|| panic!("stream {id} ({label:?}) delivered nothing"));
        match label.kind.as_str() {
            "video" => {
                assert_eq!(stream.kind, KIND_VIDEO, "stream {id}");
                assert!(stream.records >= 30, "stream {id}: {} video frames", stream.records);
                assert!(
                    stream.blank * 2 < stream.records,
                    "stream {id}: {} of {} frames blank",
                    stream.blank,
                    stream.records
                );
            }
            _ => {
                assert_eq!(stream.kind, KIND_AUDIO, "stream {id}");
                assert!(stream.samples >= 48_000, "stream {id}: {} samples", stream.samples);
                assert!(stream.peak > 0.1, "stream {id}: the microphone's tone, not silence (peak {})", stream.peak);
            }
        }
    }
    assert_eq!(streams.len(), 8, "no stream the extension did not announce");
    // The ring names every stream itself, with the label the extension gave.
    for (id, stream) in &streams {
        let announcement = stream.announcement.as_ref().unwrap_or_else(|| panic!("stream {id} announced in the ring"));
        assert_eq!(announcement.kind, stream.kind, "stream {id}");
        assert_eq!(stream.before_announcement, 0, "stream {id}: announced before its first frame");
        let label: serde_json::Value = serde_json::from_str(&announcement.label).expect("a JSON label");
        assert_eq!(label["participant"], announced[id].participant.as_str(), "stream {id}");
        assert_eq!(label["track"], announced[id].track.as_str(), "stream {id}");
        assert_eq!(label["kind"], announced[id].kind.as_str(), "stream {id}");
    }
    assert_eq!(stats["announcements"], 8, "{stats}");
    assert_eq!(stats["client_closes"], 8, "every sender closed its stream itself: {stats}");
    assert_eq!(stats["closes_sent"], serde_json::json!([]), "the bridge closed nothing itself");
}

#[test]
fn a_participant_leaving_closes_its_streams_and_a_late_one_is_recorded() {
    let _one = ONE_BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    // Participant 2 leaves 5 s in; participant 3 joins 4 s in.
    let mut meeting = Meeting::open("/meeting.html", "participants=3&join=3@4&leave=2@5&seconds=12&loopback=1");
    let mut streams = BTreeMap::new();
    let stream_of = |announced: &BTreeMap<u32, Announced>, participant: &str, kind: &str| {
        announced.iter().find(|(_, a)| a.participant == participant && a.kind == kind).map(|(id, _)| *id)
    };
    let mut leaver = None;
    meeting.run_until(&mut streams, Duration::from_secs(60), "participant 2 to leave", |browser, _| {
        let joined = joined(browser);
        let Some(stream) = joined.get(&2) else { return false };
        let announced = announced(browser);
        let ids = [stream_of(&announced, stream, "video"), stream_of(&announced, stream, "audio")];
        let [Some(video), Some(audio)] = ids else { return false };
        leaver = Some((video, audio));
        let closed = closed(browser);
        closed.contains(&video) && closed.contains(&audio)
    });
    let (video, audio) = leaver.unwrap();
    assert!(meeting.browser.console_lines("meeting: ended").is_empty(), "participant 2 left mid-meeting");
    // Its senders have closed their sockets: nothing of it arrives any more,
    // while the others go on.
    let left_at = Instant::now();
    let (video_before, audio_before) = (streams[&video].records, streams[&audio].records);
    meeting.run_until(&mut streams, Duration::from_secs(60), "the meeting to end", |browser, _| {
        !browser.console_lines("meeting: ended").is_empty() && closed(browser).len() == announced(browser).len()
    });
    while meeting.consumer.try_recv().expect("no corrupt records").is_some() {}
    let announced = announced(&meeting.browser);
    let joined = joined(&meeting.browser);
    println!("streams {streams:#?}\nannounced {announced:#?}");
    assert_eq!(
        (streams[&video].records, streams[&audio].records),
        (video_before, audio_before),
        "participant 2 is gone"
    );
    assert!(video_before >= 30 && audio_before >= 100, "participant 2 was recorded before it left");
    let leave_lines = meeting.browser.console_lines(&format!("shmring-extension: closed stream {video} "));
    assert!(leave_lines.iter().any(|line| line.contains("track ended")), "{leave_lines:?}");

    assert_eq!(joined.len(), 3, "three took part");
    assert_eq!(announced.len(), 6, "two streams each: {announced:?}");
    for (who, stream) in &joined {
        for kind in ["video", "audio"] {
            let id = stream_of(&announced, stream, kind).unwrap_or_else(|| panic!("participant {who} {kind}"));
            let delivered = &streams[&id];
            assert!(delivered.records > 0, "participant {who} {kind}");
            if *who != 2 {
                assert!(delivered.last.unwrap() > left_at, "participant {who} {kind} went on after 2 left");
            }
        }
    }
    let late = &joined[&3];
    let late_video = &streams[&stream_of(&announced, late, "video").unwrap()];
    let late_audio = &streams[&stream_of(&announced, late, "audio").unwrap()];
    assert!(late_video.records >= 60, "the late joiner's video: {late_video:?}");
    assert!(late_audio.peak > 0.1, "the late joiner's audio: {late_audio:?}");
    let stats = meeting.bridge.stats();
    assert_eq!(stats["client_closes"], 6, "every sender closed its stream itself: {stats}");
}

#[test]
fn a_page_without_webrtc_is_left_alone() {
    let _one = ONE_BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    let mut meeting = Meeting::open("/plain.html", "");
    let mut streams = BTreeMap::new();
    meeting.run_until(&mut streams, Duration::from_secs(30), "the page to finish", |browser, _| {
        !browser.console_lines("plain: ok").is_empty() || !browser.console_lines("plain: failed").is_empty()
    });
    // Time for anything the extension might still do.
    std::thread::sleep(Duration::from_secs(1));
    let console = meeting.browser.console();
    println!("console:\n{}", console.join("\n"));
    let page = meeting.browser.console_lines("plain: ");
    assert!(
        page.iter().any(|line| line.starts_with("plain: ok: 100 items, 0 errors")),
        "the page ran as it does alone: {page:?}"
    );
    // Chromium's log does not say a message's level, so: nothing in the
    // console but the page's own lines (no uncaught exception, no refused
    // load, nothing from the extension).
    let foreign: Vec<&String> = console.iter().filter(|line| !line.contains("] \"plain: ")).collect();
    assert!(foreign.is_empty(), "only the page's own console lines: {foreign:?}");
    assert!(meeting.browser.console_lines("shmring-extension:").is_empty(), "the extension did nothing");
    let stats = meeting.bridge.stats();
    assert_eq!(stats["upgrades"], 0, "no stream was opened: {stats}");
    assert!(streams.is_empty() && meeting.consumer.try_recv().expect("no corrupt records").is_none());
}
