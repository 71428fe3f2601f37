//! The browser's lanes measured back to back in one run: headless Chromium
//! at 1080p30 (fake camera) and with the fake microphone, each track alone,
//! doing only what a sender does before it sends (capture and copy out),
//! then sending as WebSocket payloads, then through the file lane. For
//! each: Chromium's CPU (all its processes) and the bridge's CPU per frame
//! (per audio chunk), beside a plain copy of one frame in this process.
//!
//! The file lane runs twice: with the profile on `/dev/shm` (tmpfs of 4 KiB
//! pages), and on a tmpfs mounted with `huge=within_size` (2 MiB pages: a
//! frame's `pwrite` and `pread` then walk two pages, not 760), when this
//! process may mount one (root); `pwrite`/`pread` floors for both.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::json;
use shmring::{Consumer, RingConsumer, RingOptions};
use shmring_bridge::chromium::{self, Chromium, Launch};
use shmring_bridge::process_usage::{self, Usage};
use shmring_bridge::profile_fs::{self, ProfileDir};
use shmring_media::{AudioFrame, VideoFrame, KIND_AUDIO, KIND_VIDEO};

use super::{Args, BridgeChild};

/// One measured run of the capture page.
struct Phase {
    lane: &'static str,
    kind: &'static str,
    /// The profile on the huge-page tmpfs.
    huge: bool,
    /// Against the bridge binary given with `--compare-bridge` (an earlier
    /// build, say) instead of this build's.
    other_bridge: bool,
}

const PHASES: [Phase; 8] = [
    Phase { lane: "capture-only", kind: "video", huge: false, other_bridge: false },
    Phase { lane: "websocket", kind: "video", huge: false, other_bridge: false },
    Phase { lane: "websocket", kind: "video", huge: false, other_bridge: true },
    Phase { lane: "file", kind: "video", huge: false, other_bridge: false },
    Phase { lane: "file", kind: "video", huge: true, other_bridge: false },
    Phase { lane: "capture-only", kind: "audio", huge: false, other_bridge: false },
    Phase { lane: "websocket", kind: "audio", huge: false, other_bridge: false },
    Phase { lane: "file", kind: "audio", huge: false, other_bridge: false },
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

/// A progress line's count of `kind` frames the page handled (`sent`, or
/// `captured` where it sends nothing).
fn line_count(line: &str, kind: &str, field: &str) -> Option<u64> {
    let at = line.find(&format!("{kind}#"))?;
    let start = at + line[at..].find('{')?;
    let end = start + line[start..].find('}')? + 1;
    let stats: serde_json::Value = serde_json::from_str(&line[start..end]).ok()?;
    stats[field].as_u64()
}

/// The latest progress line's count.
fn page_count(page: &[String], kind: &str, field: &str) -> Option<u64> {
    page.iter().rev().find_map(|line| line_count(line, kind, field))
}

/// The page's own rate of handled frames between the first and the last
/// progress line of `lines` (the lines it logged during a window), timed by
/// Chromium's log stamps.
fn page_rate(lines: &[(f64, String)], kind: &str, field: &str) -> Option<f64> {
    let counted: Vec<(f64, u64)> =
        lines.iter().filter_map(|(t, line)| Some((*t, line_count(line, kind, field)?))).collect();
    let (first, last) = (counted.first()?, counted.last()?);
    (last.0 > first.0).then(|| (last.1 - first.1) as f64 / (last.0 - first.0))
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
    let query = format!("width=1920&height=1080&fps=30&seconds={}&lane={}&{other}=0", seconds + 8.0, phase.lane);
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
    let before = (process_usage::of_tree(browser.pid()), bridge.usage(), browser.page_log_timed().len());
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
    let after = (process_usage::of_tree(browser.pid()), bridge.usage(), browser.page_log_timed());
    let page = browser.page_log();
    drop(browser);
    while let Ok(Some(_)) = consumer.try_recv() {}
    if bad > 0 {
        return Err(format!("{bad} bad records"));
    }
    // Where nothing reaches the ring, the page's own count gives the rate.
    let in_window = &after.2[before.2.min(after.2.len())..];
    let frames = if sends {
        records
    } else {
        (page_rate(in_window, phase.kind, field).ok_or("no progress lines in the window")? * wall).round() as u64
    };
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
    let huge =
        ProfileDir::mount(profile_fs::fresh_dir("shmring-huge-profiles")).map_err(|e| e.to_string()).and_then(|dir| {
            match dir.mount_error() {
                None => Ok(dir),
                Some(e) => Err(format!("cannot mount a tmpfs with huge pages ({e}); run as root for this phase")),
            }
        });
    let mut bridge_args = vec!["--profile-dir".to_string(), profiles.display().to_string()];
    if let Ok(huge) = &huge {
        bridge_args.extend(["--profile-dir".to_string(), huge.path().display().to_string()]);
    }
    let bridge = BridgeChild::start_with(&consumer, args, &bridge_args);
    let other_bridge = args.compare_bridge.as_ref().map(|path| BridgeChild::start_binary(&consumer, path));
    let mut memcpy = memcpy_per_frame();
    let (pwrite, pread) = file_copies_per_frame(&profiles);
    let huge_copies = huge.as_ref().ok().map(|h| file_copies_per_frame(h.path()));
    let seconds = args.chromium_seconds;
    let rounds = args.rounds.max(1);
    println!(
        "\nchromium lanes: 1080p30 camera, then microphone, {seconds} s each, back to back, {rounds} round(s) ..."
    );
    let ms = |d: Duration, n: u64| d.as_secs_f64() * 1e3 / n.max(1) as f64;
    let mut rows = Vec::new();
    let mut baseline: Option<f64> = None;
    println!(
        "  {:<13} {:<6} {:>7} {:>22} {:>24}  lane",
        "lane", "track", "per s", "Chromium ms per frame", "bridge ms per frame"
    );
    // Each round measures every phase once, its ratios against its own
    // capture-only runs and its own memcpy: load that comes and goes on a
    // shared machine then moves a round, not one lane against another.
    let phases = (0..rounds).flat_map(|round| PHASES.iter().map(move |phase| (round, phase)));
    let mut last_round = usize::MAX;
    for (round, phase) in phases {
        if round != last_round {
            if round > 0 {
                memcpy = memcpy_per_frame();
            }
            last_round = round;
            baseline = None;
        }
        let name = format!(
            "{}{}{}",
            phase.lane,
            if phase.huge { " 2M" } else { "" },
            if phase.other_bridge { " (cmp)" } else { "" }
        );
        let bridge = match (&other_bridge, phase.other_bridge) {
            (_, false) => &bridge,
            (Some(other), true) => other,
            (None, true) => continue,
        };
        let base = match (&huge, phase.huge) {
            (_, false) => profiles.as_path(),
            (Ok(huge), true) => huge.path(),
            (Err(e), true) => {
                println!("  {name:<13} {:<6} skipped: {e}", phase.kind);
                rows.push(json!({"lane": phase.lane, "kind": phase.kind, "huge_pages": true, "skipped": e}));
                continue;
            }
        };
        let profile = base.join(format!("{}-{}", phase.lane, phase.kind));
        let measured = match measure(&binary, bridge, &consumer, profile, phase, seconds) {
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
            name,
            phase.kind,
            measured.frames as f64 / measured.seconds,
            chromium_ms,
            vs_capture,
            bridge_ms,
            vs_memcpy,
            measured.lane_line.split_once(" lane ").map_or("", |(_, l)| l).trim_end_matches('"'),
        );
        rows.push(json!({
            "round": round,
            "name": name,
            "memcpy_ms": memcpy.as_secs_f64() * 1e3,
            "lane": phase.lane,
            "kind": phase.kind,
            "huge_pages": phase.huge,
            "bridge": if phase.other_bridge { args.compare_bridge.as_ref().map(|p| p.display().to_string()) } else { None },
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
    let summary = medians(&rows);
    if rounds > 1 {
        println!("  median of {rounds} rounds (ratios taken within each round):");
        for row in &summary {
            println!(
                "  {:<17} {:<6} {:>12.2} ({:>4.2}x cap) {:>12.3} ({:>5.2}x cpy)",
                row["name"].as_str().unwrap_or(""),
                row["kind"].as_str().unwrap_or(""),
                row["chromium_cpu_ms_per_frame"].as_f64().unwrap_or(f64::NAN),
                row["chromium_vs_capture_only"].as_f64().unwrap_or(f64::NAN),
                row["bridge_cpu_ms_per_frame"].as_f64().unwrap_or(f64::NAN),
                row["bridge_vs_memcpy_of_a_1080p_frame"].as_f64().unwrap_or(f64::NAN),
            );
        }
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
    if let Some((w, r)) = huge_copies {
        println!(
            "    on the huge-page tmpfs: pwrite {:.3} ms ({:.2}x); pread {:.3} ms ({:.2}x)",
            per(w),
            per(w) / per(memcpy),
            per(r),
            per(r) / per(memcpy)
        );
    }
    let bridge_stats = bridge.stop();
    if let Some(other) = other_bridge {
        other.stop();
    }
    let _ = std::fs::remove_dir_all(&profiles);
    drop(huge);
    json!({
        "memcpy_ms_per_1080p_frame": per(memcpy),
        "tmpfs_pwrite_ms_per_1080p_frame": per(pwrite),
        "tmpfs_pread_ms_per_1080p_frame": per(pread),
        "huge_tmpfs_pwrite_ms_per_1080p_frame": huge_copies.map(|(w, _)| per(w)),
        "huge_tmpfs_pread_ms_per_1080p_frame": huge_copies.map(|(_, r)| per(r)),
        "phases": rows,
        "medians": summary,
        "bridge_stats": bridge_stats,
    })
}

/// Per phase (by name and track), the median over rounds of each figure.
fn medians(rows: &[serde_json::Value]) -> Vec<serde_json::Value> {
    const FIGURES: [&str; 5] = [
        "chromium_cpu_ms_per_frame",
        "chromium_vs_capture_only",
        "bridge_cpu_ms_per_frame",
        "bridge_vs_memcpy_of_a_1080p_frame",
        "per_second",
    ];
    let mut keys: Vec<(String, String)> = Vec::new();
    for row in rows.iter().filter(|r| r.get("frames").is_some()) {
        let key = (row["name"].as_str().unwrap_or("").to_string(), row["kind"].as_str().unwrap_or("").to_string());
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    keys.into_iter()
        .map(|(name, kind)| {
            let mut out = serde_json::Map::new();
            out.insert("name".into(), json!(name));
            out.insert("kind".into(), json!(kind));
            for figure in FIGURES {
                let mut values: Vec<f64> = rows
                    .iter()
                    .filter(|r| r["name"] == name.as_str() && r["kind"] == kind.as_str())
                    .filter_map(|r| r[figure].as_f64())
                    .collect();
                values.sort_by(f64::total_cmp);
                let median = match values.len() {
                    0 => f64::NAN,
                    n if n % 2 == 1 => values[n / 2],
                    n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
                };
                out.insert(figure.into(), json!(median));
                out.insert(format!("{figure}_all"), json!(values));
            }
            serde_json::Value::Object(out)
        })
        .collect()
}
