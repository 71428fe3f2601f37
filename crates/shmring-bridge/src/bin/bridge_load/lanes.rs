//! The browser's lanes measured back to back in one run: headless Chromium
//! at 1080p30 (fake camera) and with the fake microphone, each track alone,
//! doing only what a sender does before it sends (capture and copy out),
//! then sending as WebSocket payloads, then through the file lane. For
//! each: Chromium's CPU (all its processes) and the bridge's CPU per frame
//! (per audio chunk), beside a plain copy of one frame in this process.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::json;
use shmring::{Consumer, RingConsumer, RingOptions};
use shmring_bridge::chromium::{self, Chromium, Launch};
use shmring_bridge::process_usage::{self, Usage};
use shmring_media::{AudioFrame, VideoFrame, KIND_AUDIO, KIND_VIDEO};

use super::{Args, BridgeChild};

/// One measured run of the capture page.
struct Phase {
    lane: &'static str,
    kind: &'static str,
}

const PHASES: [Phase; 6] = [
    Phase { lane: "capture-only", kind: "video" },
    Phase { lane: "websocket", kind: "video" },
    Phase { lane: "file", kind: "video" },
    Phase { lane: "capture-only", kind: "audio" },
    Phase { lane: "websocket", kind: "audio" },
    Phase { lane: "file", kind: "audio" },
];

/// Bytes of a 1080p I420 message (header and planes).
const FRAME_LEN: usize = 128 + 1920 * 1080 * 3 / 2;

/// CPU time of the calling thread.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec into the local it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// CPU time of one `memcpy` of a 1080p message, from a 32 MiB source to a
/// 64 MiB destination taken in turn (as a file lane's file and a ring are),
/// so that neither stays in cache.
fn memcpy_per_frame() -> Duration {
    let source: Vec<u8> = (0..32usize << 20).map(|i| i as u8).collect();
    let mut dest = vec![1u8; 64 << 20];
    let (src_slots, dst_slots) = (source.len() / FRAME_LEN, dest.len() / FRAME_LEN);
    const COPIES: usize = 400;
    let start = thread_cpu();
    for i in 0..COPIES {
        let (s, d) = ((i % src_slots) * FRAME_LEN, (i % dst_slots) * FRAME_LEN);
        dest[d..d + FRAME_LEN].copy_from_slice(&source[s..s + FRAME_LEN]);
        std::hint::black_box(&mut dest);
    }
    (thread_cpu() - start) / COPIES as u32
}

/// CPU time of one `pwrite` of a 1080p message into a 32 MiB file on
/// tmpfs (what the page's worker does), and of one `pread` of it back into
/// a 64 MiB buffer (what the bridge does), each in turn over the file: the
/// floors of each side's per-frame cost in the file lane.
fn file_copies_per_frame(dir: &Path) -> (Duration, Duration) {
    use std::os::unix::fs::FileExt;
    let path = dir.join("floor");
    let file = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path).unwrap();
    file.set_len(32 << 20).unwrap();
    let frame: Vec<u8> = (0..FRAME_LEN).map(|i| i as u8).collect();
    let mut dest = vec![1u8; 64 << 20];
    let (file_slots, dst_slots) = ((32 << 20) / FRAME_LEN, dest.len() / FRAME_LEN);
    const COPIES: usize = 400;
    // One lap first: tmpfs allocates a page on its first write.
    for i in 0..file_slots {
        file.write_all_at(&frame, (i * FRAME_LEN) as u64).unwrap();
    }
    let start = thread_cpu();
    for i in 0..COPIES {
        file.write_all_at(&frame, ((i % file_slots) * FRAME_LEN) as u64).unwrap();
    }
    let write = (thread_cpu() - start) / COPIES as u32;
    let start = thread_cpu();
    for i in 0..COPIES {
        let d = (i % dst_slots) * FRAME_LEN;
        file.read_exact_at(&mut dest[d..d + FRAME_LEN], ((i % file_slots) * FRAME_LEN) as u64).unwrap();
        std::hint::black_box(&mut dest);
    }
    let read = (thread_cpu() - start) / COPIES as u32;
    let _ = std::fs::remove_file(&path);
    (write, read)
}

/// The latest progress line's count of `kind` frames the page handled
/// (`sent`, or `captured` where it sends nothing).
fn page_count(page: &[String], kind: &str, field: &str) -> Option<u64> {
    page.iter().rev().find_map(|line| {
        let at = line.find(&format!("{kind}#"))?;
        let start = at + line[at..].find('{')?;
        let end = start + line[start..].find('}')? + 1;
        let stats: serde_json::Value = serde_json::from_str(&line[start..end]).ok()?;
        stats[field].as_u64()
    })
}

struct Measured {
    frames: u64,
    seconds: f64,
    chromium: Duration,
    bridge: Duration,
    lane_line: String,
}

fn measure(
    binary: &Path,
    bridge: &BridgeChild,
    consumer: &RingConsumer,
    profile: PathBuf,
    phase: &Phase,
    seconds: f64,
) -> Result<Measured, String> {
    let other = if phase.kind == "video" { "audio" } else { "video" };
    let query =
        format!("width=1920&height=1080&fps=30&seconds={}&lane={}&{other}=0&report=100", seconds + 8.0, phase.lane);
    let launch = Launch { profile: Some(profile), extra_args: Vec::new() };
    let browser = Chromium::launch_with(binary, &chromium::capture_url(bridge.addr, &query), &launch)
        .map_err(|e| format!("launching Chromium: {e}"))?;
    let record_kind = if phase.kind == "video" { KIND_VIDEO } else { KIND_AUDIO };
    let sends = phase.lane != "capture-only";
    let field = if sends { "sent" } else { "captured" };
    // Warm up: the stream started (and its first record arrived), then 2 s.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut first = None;
    while first.is_none_or(|t: Instant| t.elapsed() < Duration::from_secs(2)) {
        if Instant::now() > deadline {
            return Err(format!("no {} within 30 s; page said:\n{}", phase.kind, browser.page_log().join("\n")));
        }
        let arrived = match consumer.recv_timeout(Duration::from_millis(20)) {
            Ok(Some(record)) => record.kind() == record_kind,
            _ => false,
        };
        let started = page_count(&browser.page_log(), phase.kind, field).is_some_and(|n| n > 0);
        if first.is_none() && started && (arrived || !sends) {
            first = Some(Instant::now());
        }
    }
    let before =
        (process_usage::of_tree(browser.pid()), bridge.usage(), page_count(&browser.page_log(), phase.kind, field));
    let start = Instant::now();
    let mut records = 0u64;
    let mut bad = 0u64;
    while start.elapsed().as_secs_f64() < seconds {
        if let Ok(Some(record)) = consumer.recv_timeout(Duration::from_millis(20)) {
            if record.kind() == record_kind {
                records += 1;
                let ok = match record_kind {
                    KIND_VIDEO => VideoFrame::parse(&record).is_ok_and(|v| (v.width(), v.height()) == (1920, 1080)),
                    _ => AudioFrame::parse(&record).is_ok(),
                };
                bad += u64::from(!ok);
            }
        }
    }
    let wall = start.elapsed().as_secs_f64();
    let after =
        (process_usage::of_tree(browser.pid()), bridge.usage(), page_count(&browser.page_log(), phase.kind, field));
    let page = browser.page_log();
    drop(browser);
    while let Ok(Some(_)) = consumer.try_recv() {}
    if bad > 0 {
        return Err(format!("{bad} bad records"));
    }
    let frames = if sends { records } else { after.2.unwrap_or(0).saturating_sub(before.2.unwrap_or(0)) };
    let lane_line = page.iter().find(|l| l.contains(&format!("{} lane ", phase.kind))).cloned().unwrap_or_default();
    let cpu = |a: Usage, b: Usage| b.cpu.saturating_sub(a.cpu);
    Ok(Measured { frames, seconds: wall, chromium: cpu(before.0, after.0), bridge: cpu(before.1, after.1), lane_line })
}

/// Runs every phase against one bridge (given the browsers' profile
/// directory) and prints the comparison.
pub fn run(args: &Args) -> serde_json::Value {
    let Some(binary) = chromium::find() else {
        println!("\nchromium: not found (install Debian's chromium); skipped");
        return json!({ "skipped": "chromium not found" });
    };
    let profiles = chromium::fresh_profile_dir();
    std::fs::create_dir_all(&profiles).expect("the profiles' directory");
    let consumer = Consumer::create_anonymous(&RingOptions::with_capacity(64 << 20)).expect("ring");
    let bridge = BridgeChild::start_with(&consumer, args, &["--profile-dir".into(), profiles.display().to_string()]);
    let memcpy = memcpy_per_frame();
    let (pwrite, pread) = file_copies_per_frame(&profiles);
    let seconds = args.chromium_seconds;
    println!("\nchromium lanes: 1080p30 camera, then microphone, {seconds} s each, back to back ...");
    let ms = |d: Duration, n: u64| d.as_secs_f64() * 1e3 / n.max(1) as f64;
    let mut rows = Vec::new();
    let mut baseline: Option<f64> = None;
    println!(
        "  {:<13} {:<6} {:>7} {:>22} {:>24}  lane",
        "lane", "track", "per s", "Chromium ms per frame", "bridge ms per frame"
    );
    for phase in &PHASES {
        let profile = profiles.join(format!("{}-{}", phase.lane, phase.kind));
        let measured = match measure(&binary, &bridge, &consumer, profile, phase, seconds) {
            Ok(m) => m,
            Err(e) => {
                eprintln!("chromium lanes: {} {}: {e}", phase.lane, phase.kind);
                rows.push(json!({"lane": phase.lane, "kind": phase.kind, "failed": e}));
                continue;
            }
        };
        let chromium_ms = ms(measured.chromium, measured.frames);
        let bridge_ms = ms(measured.bridge, measured.frames);
        if phase.lane == "capture-only" {
            baseline = Some(chromium_ms);
        }
        let vs_capture = baseline.map_or(f64::NAN, |b| chromium_ms / b);
        let vs_memcpy = bridge_ms / (memcpy.as_secs_f64() * 1e3);
        println!(
            "  {:<13} {:<6} {:>7.1} {:>12.2} ({:>4.2}x cap) {:>12.3} ({:>5.2}x cpy)  {}",
            phase.lane,
            phase.kind,
            measured.frames as f64 / measured.seconds,
            chromium_ms,
            vs_capture,
            bridge_ms,
            vs_memcpy,
            measured.lane_line.split_once(" lane ").map_or("", |(_, l)| l).trim_end_matches('"'),
        );
        rows.push(json!({
            "lane": phase.lane,
            "kind": phase.kind,
            "seconds": measured.seconds,
            "frames": measured.frames,
            "per_second": measured.frames as f64 / measured.seconds,
            "chromium_cpu_ms_per_frame": chromium_ms,
            "chromium_vs_capture_only": vs_capture,
            "bridge_cpu_ms_per_frame": bridge_ms,
            "bridge_vs_memcpy_of_a_1080p_frame": vs_memcpy,
            "page_lane": measured.lane_line,
        }));
    }
    let per = |d: Duration| d.as_secs_f64() * 1e3;
    println!("  one 1080p frame (3,110,528 bytes) in this process, out of cache:");
    println!(
        "    memcpy {:.3} ms; pwrite into a tmpfs file {:.3} ms ({:.2}x); pread from it {:.3} ms ({:.2}x)",
        per(memcpy),
        per(pwrite),
        per(pwrite) / per(memcpy),
        per(pread),
        per(pread) / per(memcpy)
    );
    let bridge_stats = bridge.stop();
    let _ = std::fs::remove_dir_all(&profiles);
    json!({
        "memcpy_ms_per_1080p_frame": per(memcpy),
        "tmpfs_pwrite_ms_per_1080p_frame": per(pwrite),
        "tmpfs_pread_ms_per_1080p_frame": per(pread),
        "phases": rows,
        "bridge_stats": bridge_stats,
    })
}
