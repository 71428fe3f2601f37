//! A real WebRTC meeting recorded end to end by the real `shmring chromium
//! --build stock` process: Debian's Chromium opens a meeting page served by
//! this test (four participants over loopback peer connections, each with
//! the fake camera and microphone; the page knows nothing of shmring), the
//! launcher loads the extension, starts the bridge, puts the profile on
//! tmpfs and records one file per participant and the mix. Participant 1
//! leaves mid-meeting, participant 4 joins late and participant 2's camera
//! is scaled down halfway (a size change). Every frame the page captured is
//! followed: sent by the extension (or counted as skipped), committed by
//! the bridge (or counted as dropped), recorded by the encoder (or counted
//! as dropped). Loss under load is allowed but always counted and printed.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{assert_close, ffprobe, rows, wait_for, Sandbox};
use shmring_bridge::chromium::{console_messages, PageServer, FLAGS, LOOPBACK_WEBRTC};

const PAGES: &[(&str, &str)] = &[("/meeting.html", include_str!("../../shmring-bridge/tests/pages/meeting.html"))];

/// The meeting: participant 1 leaves at 5 s, participant 4 joins at 2.5 s,
/// participant 2 sends half its size from 3.5 s, everyone leaves at 8 s.
const MEETING: &str = "participants=4&loopback=1&playout=none&seconds=8&leave=1@5&join=4@2.5&rescale=2@3.5:2";
/// The launcher's own limit, only a hang guard: the test interrupts it
/// (Ctrl-C, as a user ends a recording) once the page has ended the meeting
/// and the extension has closed every stream, however long a loaded
/// machine took to get there.
const LAUNCHER_SECONDS: &str = "90";
/// The streams the meeting has: a video and an audio stream per participant.
const STREAMS: usize = 8;

/// A stream as the extension reported it in the browser's log.
#[derive(Debug, Default)]
struct PageStream {
    /// The page's stream id of its participant (the label's `participant`).
    participant: String,
    kind: String,
    /// When the bridge accepted it (its first frame is on the way).
    started: Option<f64>,
    /// When the extension closed it, and its sender's counters then.
    closed: Option<f64>,
    stats: serde_json::Value,
}

/// The extension's `stream N LABEL` and `closed stream N (...) STATS` lines.
fn page_streams(log: &str) -> BTreeMap<u32, PageStream> {
    let json = |text: &str| -> serde_json::Value {
        serde_json::from_str(&text.replace("\\\"", "\"")).unwrap_or_else(|e| panic!("JSON in {text}: {e}"))
    };
    let mut streams: BTreeMap<u32, PageStream> = BTreeMap::new();
    for m in console_messages(log, "shmring-extension: stream ") {
        let rest = m.text.trim_start_matches("shmring-extension: stream ");
        let (id, label) = rest.split_once(' ').expect("`stream ID LABEL`");
        let label = json(label);
        let stream = streams.entry(id.parse().expect("a stream id")).or_default();
        stream.participant = label["participant"].as_str().expect("participant").to_string();
        stream.kind = label["kind"].as_str().expect("kind").to_string();
        stream.started = m.at;
    }
    for m in console_messages(log, "shmring-extension: closed stream ") {
        let rest = m.text.trim_start_matches("shmring-extension: closed stream ");
        let id: u32 = rest.split(' ').next().unwrap().parse().expect("a stream id");
        let stats = &rest[rest.find(") {").expect("`(WHY, code N) STATS`") + 2..];
        let stream = streams.entry(id).or_default();
        stream.closed = m.at;
        stream.stats = json(stats);
    }
    streams
}

/// `meeting: participant I joined, stream ID`: the page's stream id -> I.
fn page_participants(log: &str) -> BTreeMap<String, u32> {
    console_messages(log, "meeting: participant ")
        .iter()
        .filter_map(|m| {
            let (who, stream) = m.text.trim_start_matches("meeting: participant ").split_once(" joined, stream ")?;
            Some((stream.to_string(), who.parse().ok()?))
        })
        .collect()
}

fn count(stats: &serde_json::Value, key: &str) -> u64 {
    stats[key].as_u64().unwrap_or_else(|| panic!("{key} in {stats}"))
}

/// Whether `dir` is a mount point of a tmpfs mounted with `huge=within_size`.
fn huge_tmpfs_mounted_at(dir: &str) -> bool {
    let mounts = std::fs::read_to_string("/proc/self/mounts").expect("/proc/self/mounts");
    mounts.lines().any(|line| {
        let fields: Vec<&str> = line.split(' ').collect();
        fields.len() > 3 && fields[1] == dir && fields[2] == "tmpfs" && fields[3].contains("huge=within_size")
    })
}

#[test]
fn a_meeting_of_four_is_recorded_per_participant_by_shmring_chromium() {
    common::require_chromium();
    let sandbox = Sandbox::new("meeting-rec");
    let server = PageServer::start(PAGES).expect("the page server");
    let url = server.url("/meeting.html", MEETING);
    let out = sandbox.path("recording");
    let dir = format!("{}/", out.display());
    let mut args = vec!["chromium", "--build", "stock", "-o", &dir, "--seconds", LAUNCHER_SECONDS, "--"];
    args.extend_from_slice(FLAGS);
    args.extend([LOOPBACK_WEBRTC, url.as_str()]);
    // As root: the profile tmpfs of a launcher killed before it could
    // unmount it, which this one removes (its pid is gone).
    // SAFETY: geteuid has no preconditions.
    // (Root in a container may not mount: then neither may the launcher.)
    let abandoned = (unsafe { libc::geteuid() } == 0).then(|| {
        let mut gone = std::process::Command::new("true").spawn().unwrap();
        gone.wait().unwrap();
        let dir = format!("/dev/shm/shmring-bridge-chromium-{}-1", gone.id());
        std::fs::create_dir_all(&dir).unwrap();
        let mount = ["-t", "tmpfs", "-o", "huge=within_size", "tmpfs", &dir];
        let mounted = std::process::Command::new("mount").args(mount).status().is_ok_and(|s| s.success());
        if !mounted {
            let _ = std::fs::remove_dir(&dir);
        }
        mounted.then_some(dir)
    });
    let abandoned = abandoned.flatten();
    let mut launcher = sandbox.spawn(&args);

    // Its stderr as it comes: where the profile went is checked while the
    // browser runs.
    let stderr = launcher.stderr.take().expect("piped");
    let log = Arc::new(Mutex::new(String::new()));
    let (profile_line, profile_said) = std::sync::mpsc::channel();
    let (meeting_over, meeting_ended) = std::sync::mpsc::channel();
    let reader = {
        let log = log.clone();
        std::thread::spawn(move || {
            let (mut ended, mut closed) = (false, 0);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.starts_with("chromium: profile on") || line.contains("cannot mount a tmpfs") {
                    let _ = profile_line.send(line.clone());
                }
                ended |= line.contains("\"meeting: ended\"");
                closed += usize::from(line.contains("shmring-extension: closed stream "));
                if ended && closed == STREAMS {
                    let _ = meeting_over.send(());
                }
                let mut log = log.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        })
    };
    let said = profile_said.recv_timeout(Duration::from_secs(30)).expect("the launcher says where the profile is");
    let profile = said.rsplit(' ').next().unwrap().to_string();
    if said.starts_with("chromium: profile on its own tmpfs mounted huge=within_size") {
        assert!(huge_tmpfs_mounted_at(&profile), "{profile} is a huge=within_size tmpfs: {said}");
        if let Some(abandoned) = &abandoned {
            assert!(!huge_tmpfs_mounted_at(abandoned), "{abandoned}, a gone launcher's, is unmounted");
            assert!(!std::path::Path::new(abandoned).exists(), "and removed: {abandoned}");
            assert!(log.lock().unwrap().contains("the profile of a launcher that is gone"), "it says so");
        }
    } else {
        assert!(said.contains("warning: cannot mount a tmpfs with huge=within_size"), "{said}");
        assert!(profile.starts_with("/dev/shm/"), "the fallback is /dev/shm: {said}");
    }
    let over = meeting_ended.recv_timeout(Duration::from_secs(80));
    // SAFETY: kill has no memory-safety preconditions; the launcher has
    // not been reaped, so the pid is still ours.
    unsafe { libc::kill(launcher.id() as i32, libc::SIGINT) };
    let run = wait_for(launcher, Duration::from_secs(120), "shmring chromium");
    reader.join().unwrap();
    let log = log.lock().unwrap().clone();
    assert!(over.is_ok(), "the meeting ended and every stream was closed\nstdout: {}\nstderr: {log}", run.stdout);
    assert_eq!(run.code, 0, "shmring chromium failed\nstdout: {}\nstderr: {log}", run.stdout);
    println!("{}", run.stdout);
    assert!(!huge_tmpfs_mounted_at(&profile), "the profile's tmpfs is unmounted at the end");
    assert!(!std::path::Path::new(&profile).exists(), "the profile is removed at the end");

    // What the page's side did: every stream closed by the page (the
    // meeting ended before the launcher's limit), video on the file lane.
    let page = page_streams(&log);
    let who = page_participants(&log);
    assert_eq!(who.len(), 4, "four participants joined: {who:?}");
    assert_eq!(page.len(), STREAMS, "a video and an audio stream each: {page:#?}");
    for (id, stream) in &page {
        assert!(stream.started.is_some() && stream.closed.is_some(), "stream {id} declared and closed: {stream:?}");
        let s = &stream.stats;
        let skipped = count(s, "skippedBackpressure") + count(s, "skippedAfterDrop") + count(s, "unsupported");
        assert_eq!(
            count(s, "captured"),
            count(s, "sent") + skipped,
            "stream {id}: every captured frame sent or counted"
        );
        if skipped > 0 {
            println!("stream {id}: {skipped} frames skipped in the page (counted): {s}");
        }
        let lane = if stream.kind == "video" { "file" } else { "websocket" };
        assert_eq!(s["lane"], lane, "stream {id} ({}) lane: {s}", stream.kind);
    }
    let sent = |kind: &str| page.values().filter(|s| s.kind == kind).map(|s| count(&s.stats, "sent")).sum::<u64>();

    // The bridge: every record sent committed or counted as dropped, all
    // of the video read from the page's frame files.
    let counters = run.stdout.lines().find_map(|l| l.trim_start().strip_prefix("bridge counters ")).expect("counters");
    let bridge: serde_json::Value = serde_json::from_str(counters).expect("the bridge's counters");
    let bridge_lost = count(&bridge, "dropped_full") + count(&bridge, "dropped_busy") + count(&bridge, "abandoned");
    assert_eq!(sent("video") + sent("audio"), count(&bridge, "messages") + bridge_lost, "{bridge}");
    assert_eq!(count(&bridge, "file_lanes"), 4, "one file lane per video stream: {bridge}");
    assert_eq!(count(&bridge, "file_lanes_refused"), 0, "{bridge}");
    assert_eq!(count(&bridge, "file_errors") + count(&bridge, "bad_controls"), 0, "{bridge}");
    if bridge_lost > 0 {
        println!("bridge: {bridge_lost} records dropped (counted)");
    }

    // The encoder: every record the bridge committed received, and
    // recorded or counted as dropped; most of them recorded.
    let rows = rows(&run.stdout);
    assert_eq!(rows.len(), STREAMS, "{rows:?}");
    let received: u64 = rows.values().map(|r| r.counts["received"]).sum();
    assert_eq!(received, count(&bridge, "messages"), "the encoder received what the bridge committed");
    let video_received: u64 = rows.values().filter(|r| r.kind == "video").map(|r| r.counts["received"]).sum();
    assert!(video_received <= count(&bridge, "file_messages"), "the video came through the file lane: {bridge}");
    for (id, row) in &rows {
        let c = &row.counts;
        assert_eq!(c["received"], c["recorded"] + c["dropped"], "stream {id}: {row:?}");
        // A loaded machine makes frames late; they are counted, and most
        // must still be in the files.
        assert!(c["recorded"] * 4 >= c["received"] * 3, "stream {id}: most recorded: {row:?}");
        assert!(c["received"] > 0, "stream {id}: {row:?}");
    }

    // Files: one or more per participant (a new one per size), the mix.
    let files: Vec<String> =
        std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(files.contains(&"mix.m4a".to_string()), "{files:?}");
    let mut participant_of_stream = BTreeMap::new();
    for (id, row) in &rows {
        let stream = &page[id];
        assert_eq!(row.kind, stream.kind, "stream {id}");
        participant_of_stream.insert(row.participant, who[&stream.participant]);
    }
    assert_eq!(participant_of_stream.len(), 4, "four participants recorded: {rows:?}");
    let mut spans = BTreeMap::new();
    for (&recorded_as, &page_participant) in &participant_of_stream {
        let prefix = format!("participant-{recorded_as}");
        let mut mine: Vec<&String> = files
            .iter()
            .filter(|f| {
                f.strip_prefix(&prefix)
                    .is_some_and(|rest| rest == ".mp4" || rest.ends_with(".mp4") && rest.starts_with('.'))
            })
            .collect();
        mine.sort_by_key(|f| (f.len(), (*f).clone()));
        assert!(!mine.is_empty(), "participant {page_participant}'s files: {files:?}");
        let probed: Vec<_> = mine.iter().map(|f| ffprobe(&out.join(f))).collect();
        for (file, p) in mine.iter().zip(&probed) {
            assert!(p.video.is_some(), "{file}: a video stream: {p:?}");
            assert_eq!(p.audio.as_ref().map(|a| a.1), Some(48_000), "{file}: 48 kHz audio: {p:?}");
        }
        // As long as the page sent its video: from the bridge's acceptance
        // of the stream to the extension's close, in the browser's log.
        let video = rows
            .iter()
            .find(|(_, r)| r.participant == recorded_as && r.kind == "video")
            .map(|(id, _)| &page[id])
            .expect("a video stream");
        let span = video.closed.unwrap() - video.started.unwrap();
        let total: f64 = probed.iter().map(|p| p.duration).sum();
        assert_close(&format!("participant {page_participant}'s files {mine:?}"), total, span, 0.10);
        spans.insert(page_participant, span);
        if page_participant == 2 {
            assert!(mine.len() >= 2, "participant 2's size change starts a new file: {mine:?}");
            let sizes: Vec<_> = probed.iter().map(|p| p.video.as_ref().map(|v| (v.0, v.1)).unwrap()).collect();
            assert!(sizes.contains(&(640, 360)) && sizes.contains(&(320, 180)), "{sizes:?}");
        }
    }
    // Compared with participant 3, there from start to end (all of them
    // wait alike for their connection, however loaded the machine):
    // participant 1 left 3 s early, participant 4 came 2.5 s late.
    assert!(spans[&1] < spans[&3] - 2.0, "participant 1 left at 5 s of 8: {spans:?}");
    assert!(spans[&4] < spans[&3] - 1.5, "participant 4 joined at 2.5 s of 8: {spans:?}");
    assert!((spans[&2] - spans[&3]).abs() < 1.0, "participants 2 and 3 stayed alike: {spans:?}");
    let mix = ffprobe(&out.join("mix.m4a"));
    assert!(mix.video.is_none());
    assert_eq!(mix.audio, Some(("aac".to_string(), 48_000)));
    let longest = page.values().filter_map(|s| Some(s.closed? - s.started?)).fold(0.0, f64::max);
    assert_close("the mix", mix.duration, longest, 0.10);
}
