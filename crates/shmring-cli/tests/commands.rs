//! The operator's commands against real rings held by real processes:
//! create, stat, top, cat, rm, gc, and their errors.

mod common;

use std::io::Read;
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{wait_for, Sandbox};

#[test]
fn bad_ring_names_are_refused_with_the_usage_exit_code() {
    let sandbox = Sandbox::new("badname");
    for args in [
        &["create", "bad/name"][..],
        &["stat", "bad/name"],
        &["top", "a*b", "--count", "1"],
        &["cat", "a b"],
        &["rm", ".hidden"],
        &["record", "bad/name"],
    ] {
        sandbox.run(args).fails_with(2, "bad ring name");
    }
    let long = "x".repeat(49);
    sandbox.run(&["create", &long]).fails_with(2, "longer than 48 bytes");
    sandbox.run(&["create", "ok", "--capacity", "12 parsecs"]).fails_with(2, "--capacity");
    sandbox.run(&["create", "ok-cap", "--capacity", "1000000"]).fails_with(2, "power of two");
}

#[test]
fn a_missing_ring_is_reported_as_such() {
    let sandbox = Sandbox::new("missing");
    let name = sandbox.ring("nothing");
    for args in [&["stat", &name][..], &["top", &name, "--count", "1"], &["cat", &name], &["record", &name]] {
        sandbox.run(args).fails_with(3, "no ring named");
    }
    sandbox.run(&["rm", &name]).fails_with(3, "no ring named");
}

#[test]
fn create_stat_top_and_rm_a_ring_from_other_processes() {
    let sandbox = Sandbox::new("roundtrip");
    let name = sandbox.ring("ring");
    let created = sandbox.run(&["create", &name, "--capacity", "16MiB"]);
    created.succeeds();
    assert!(created.stdout.contains("16 MiB") && created.stdout.contains("held by pid"), "{}", created.stdout);

    // The name is taken while the holder lives.
    sandbox.run(&["create", &name]).fails_with(5, "in use");

    let stat = sandbox.run(&["stat", &name]);
    stat.succeeds();
    assert!(stat.stdout.contains(&format!("ring        {name} (layout v")), "{}", stat.stdout);
    assert!(stat.stdout.contains("16 MiB of data") && stat.stdout.contains("consumer    none yet"), "{}", stat.stdout);

    let json: serde_json::Value = serde_json::from_str(&sandbox.run(&["stat", &name, "--json"]).stdout).unwrap();
    assert_eq!(json["name"], name.as_str());
    assert_eq!(json["capacity"], 16u64 << 20);
    assert_eq!(json["max_payload"], (16u64 << 20) - 64);
    assert_eq!(json["consumer"]["state"], "none");
    assert_eq!(json["committed_frames"], 0);
    assert_eq!(json["producers"].as_array().unwrap().len(), 0);

    let prometheus = sandbox.run(&["stat", &name, "--prometheus"]);
    prometheus.succeeds();
    assert!(
        prometheus.stdout.contains(&format!("shmring_capacity_bytes{{ring=\"{name}\"}} 16777216")),
        "{}",
        prometheus.stdout
    );
    assert!(prometheus.stdout.contains("# TYPE shmring_committed_frames_total counter"));

    let top = sandbox.run(&["top", &name, "--count", "2", "--interval", "100ms"]);
    top.succeeds();
    assert_eq!(top.stdout.matches(&format!("ring {name}")).count(), 2, "{}", top.stdout);
    assert!(top.stdout.contains("frames/s"), "{}", top.stdout);

    let removed = sandbox.run(&["rm", &name]);
    removed.succeeds();
    assert!(removed.stdout.contains("removed ring"), "{}", removed.stdout);
    sandbox.run(&["stat", &name]).fails_with(3, "no ring named");
    // And the name is free again.
    sandbox.run(&["create", &name, "--capacity", "1MiB"]).succeeds();
    sandbox.run(&["rm", &name]).succeeds();
}

#[test]
fn rm_refuses_to_stop_a_consumer_that_owns_its_ring_unless_forced() {
    let sandbox = Sandbox::new("rmforce");
    let name = sandbox.ring("rec");
    let out = sandbox.path("x.mp4");
    let recorder = sandbox.spawn(&[
        "record",
        &name,
        "--create",
        "--capacity",
        "8MiB",
        "--keep-going",
        "-o",
        out.to_str().unwrap(),
    ]);
    wait_until_served(&sandbox, &name);
    sandbox.run(&["rm", &name]).fails_with(5, "--force");
    sandbox.run(&["rm", &name, "--force"]).succeeds();
    let run = wait_for(recorder, Duration::from_secs(20), "record");
    // It was stopped before any frame: nothing recorded, said clearly.
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("no video frame arrived"), "{}", run.stderr);
}

fn wait_until_served(sandbox: &Sandbox, name: &str) {
    for _ in 0..200 {
        if sandbox.run(&["stat", name]).code == 0 {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("ring {name} never appeared");
}

/// Maps the segment of a ring this process holds, writable, and scribbles
/// on its header as a hostile peer could.
fn scribble(host: &shmring::RingHost, offset: usize, bytes: &[u8]) {
    let fd = host.fds().memfd.as_raw_fd();
    // SAFETY: a fresh shared mapping of the first page of a memfd at least
    // that long; written within the page and unmapped before returning.
    unsafe {
        let page = libc::mmap(std::ptr::null_mut(), 4096, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, fd, 0);
        assert_ne!(page, libc::MAP_FAILED);
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), page.cast::<u8>().add(offset), bytes.len());
        libc::munmap(page, 4096);
    }
}

#[test]
fn a_corrupt_ring_is_refused_with_the_corrupt_exit_code() {
    let sandbox = Sandbox::new("corrupt");
    // The rendezvous directory is read from the environment by the library.
    std::env::set_var("SHMRING_RUNTIME_DIR", &sandbox.runtime);
    let name = sandbox.ring("bad");
    let host = shmring::RingHost::create(&name, &shmring::RingOptions::with_capacity(1 << 20)).unwrap();
    let _server = host.serve(Default::default()).unwrap();
    sandbox.run(&["stat", &name]).succeeds();

    // A wrong layout version (the word after the magic).
    let version_offset = std::mem::offset_of!(shmring::layout::Identity, layout_version);
    scribble(&host, version_offset, &99u32.to_le_bytes());
    sandbox.run(&["stat", &name]).fails_with(4, "layout version 99");
    sandbox.run(&["cat", &name]).fails_with(4, "layout version 99");

    // No magic at all.
    scribble(&host, 0, b"NOTARING");
    sandbox.run(&["stat", &name, "--json"]).fails_with(4, "not a shmring segment");
    sandbox.run(&["top", &name, "--count", "1"]).fails_with(4, "not a shmring segment");
    sandbox.run(&["record", &name]).fails_with(4, "not a shmring segment");
}

#[test]
fn cat_writes_raw_frames_that_ffmpeg_reads_with_the_arguments_it_prints() {
    let sandbox = Sandbox::new("cat");
    let name = sandbox.ring("cam");
    sandbox.run(&["create", &name, "--capacity", "64MiB"]).succeeds();
    let cat = sandbox.spawn(&["cat", &name, "--frames", "12"]);
    sandbox.wait_for_consumer(&name);
    let camera = sandbox.spawn(&["camera", "--ring", &name, "--seconds", "3", "--size", "320x240", "--stream", "4"]);
    let run = wait_for(cat, Duration::from_secs(20), "cat");
    run.succeeds();
    let (w, h) = (320usize, 240usize);
    let frame_len = w * h * 3 / 2;
    assert_eq!(run.bytes.len(), 12 * frame_len);
    let input = "-f rawvideo -pix_fmt yuv420p -video_size 320x240 -framerate 30";
    assert!(run.stderr.contains(&format!("ffmpeg input: {input} -i -")), "{}", run.stderr);
    assert!(run.stderr.contains("wrote 12 frames") && run.stderr.contains("of stream 4"), "{}", run.stderr);

    // Every frame is the camera's: its number in the blocks along the top,
    // and the scrolling gradient that number implies on row 20.
    let mut previous = None;
    for frame in run.bytes.chunks(frame_len) {
        let block = w / 32;
        let number = (0..32).fold(0u64, |n, bit| n << 1 | u64::from(frame[bit * block + block / 2] > 128));
        if let Some(p) = previous {
            assert!(number > p, "frame numbers go up: {p} then {number}");
        }
        previous = Some(number);
        let row = &frame[20 * w..21 * w];
        for (x, &px) in row.iter().enumerate() {
            assert_eq!(usize::from(px), 16 + (x + 4 * number as usize) % 220, "frame {number} pixel {x}");
        }
    }
    wait_for(camera, Duration::from_secs(20), "camera").succeeds();

    // The printed arguments are what ffmpeg needs to read those bytes.
    let raw = sandbox.path("frames.yuv");
    std::fs::write(&raw, &run.bytes).unwrap();
    let mp4 = sandbox.path("cat.mp4");
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(input.split(' '))
        .arg("-i")
        .arg(&raw)
        .args(["-c:v", "libx264", "-preset", "ultrafast"])
        .arg(&mp4)
        .status()
        .expect("ffmpeg runs (Debian's ffmpeg package)");
    assert!(status.success());
    let probed = common::ffprobe(&mp4);
    assert_eq!(probed.video.map(|v| (v.0, v.1, v.3)), Some((320, 240, 12)));
    sandbox.run(&["rm", &name]).succeeds();
}

#[test]
fn cat_writes_interleaved_audio() {
    let sandbox = Sandbox::new("cataudio");
    let name = sandbox.ring("mic");
    sandbox.run(&["create", &name, "--capacity", "4MiB"]).succeeds();
    let cat = sandbox.spawn(&["cat", &name, "--kind", "audio", "--frames", "20"]);
    sandbox.wait_for_consumer(&name);
    let mic = sandbox.spawn(&["microphone", "--ring", &name, "--seconds", "2"]);
    let run = wait_for(cat, Duration::from_secs(20), "cat");
    run.succeeds();
    assert!(run.stderr.contains("ffmpeg input: -f f32le -ar 48000 -ac 2 -i -"), "{}", run.stderr);
    assert_eq!(run.bytes.len(), 20 * 480 * 2 * 4);
    let samples: Vec<f32> = run.bytes.chunks(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
    // Left is a 440 Hz tone, right 660 Hz, amplitude 0.2, both continuous
    // from the first chunk on: recover the start from the first left sample
    // pair and check that every later pair follows.
    let left: Vec<f32> = samples.iter().step_by(2).copied().collect();
    let right: Vec<f32> = samples.iter().skip(1).step_by(2).copied().collect();
    assert!(left.iter().chain(&right).all(|s| s.abs() <= 0.2001));
    let energy = |s: &[f32]| s.iter().map(|x| x * x).sum::<f32>() / s.len() as f32;
    assert!((energy(&left) - 0.02).abs() < 0.002, "a 0.2 sine has mean square 0.02: {}", energy(&left));
    // Zero crossings per second give the frequency of each channel.
    let crossings = |s: &[f32]| s.windows(2).filter(|w| (w[0] < 0.0) != (w[1] < 0.0)).count() as f64;
    let seconds = left.len() as f64 / 48_000.0;
    assert!((crossings(&left) / seconds / 2.0 - 440.0).abs() < 15.0);
    assert!((crossings(&right) / seconds / 2.0 - 660.0).abs() < 15.0);
    wait_for(mic, Duration::from_secs(20), "microphone").succeeds();
    sandbox.run(&["rm", &name]).succeeds();
}

#[test]
fn gc_lists_and_removes_what_a_killed_holder_left() {
    let sandbox = Sandbox::new("gc");
    let dead = sandbox.ring("dead");
    let alive = sandbox.ring("alive");
    let created = sandbox.run(&["create", &dead, "--capacity", "1MiB"]);
    created.succeeds();
    sandbox.run(&["create", &alive, "--capacity", "1MiB"]).succeeds();
    let pid: i32 =
        created.stdout.split("held by pid ").nth(1).unwrap().split(';').next().unwrap().trim().parse().unwrap();
    // SAFETY: kill has no memory-safety preconditions.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    // Gone, or a zombie nobody has reaped yet: dead either way.
    let holder_dead = || {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map_or(true, |stat| stat.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z')))
    };
    while !holder_dead() {
        std::thread::sleep(Duration::from_millis(10));
    }
    let leftover = sandbox.runtime.join(format!("{dead}.owner")).display().to_string();
    assert!(std::path::Path::new(&leftover).exists(), "the crash left its owner file");

    let dry = sandbox.run(&["gc", "--dry-run"]);
    dry.succeeds();
    assert!(dry.stdout.lines().any(|l| l.starts_with("stale") && l.contains(&dead)), "{}", dry.stdout);
    assert!(dry.stdout.lines().any(|l| l.starts_with("kept") && l.contains(&alive)), "{}", dry.stdout);
    assert!(std::path::Path::new(&leftover).exists(), "--dry-run removes nothing");

    let gc = sandbox.run(&["gc"]);
    gc.succeeds();
    assert!(
        gc.stdout.lines().any(|l| l.starts_with("removed") && l.contains(&dead) && l.contains(&leftover)),
        "{}",
        gc.stdout
    );
    assert!(!std::path::Path::new(&leftover).exists());
    sandbox.run(&["stat", &alive]).succeeds();

    // From another runtime directory the live ring leaves nothing to find
    // (no named objects outside its own directory): untouched.
    let elsewhere = Sandbox::new("gc-elsewhere");
    let gc = elsewhere.run(&["gc"]);
    gc.succeeds();
    assert!(!gc.stdout.contains(&alive), "{}", gc.stdout);
    sandbox.run(&["stat", &alive]).succeeds();
    let again = sandbox.run(&["gc"]);
    assert!(!again.stdout.contains(&dead), "{}", again.stdout);
    sandbox.run(&["rm", &alive]).succeeds();
}

#[test]
fn stat_json_from_another_process_shows_counters_growing() {
    let sandbox = Sandbox::new("growing");
    let name = sandbox.ring("live");
    sandbox.run(&["create", &name, "--capacity", "64MiB"]).succeeds();
    let mut cat = sandbox
        .command(&["cat", &name, "--seconds", "6"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    sandbox.wait_for_consumer(&name);
    let camera = sandbox.spawn(&["camera", "--ring", &name, "--seconds", "4", "--size", "640x360"]);
    std::thread::sleep(Duration::from_millis(800));
    let read = |sandbox: &Sandbox| -> serde_json::Value {
        let stat = sandbox.run(&["stat", &name, "--json"]);
        stat.succeeds();
        serde_json::from_str(&stat.stdout).unwrap()
    };
    let first = read(&sandbox);
    std::thread::sleep(Duration::from_secs(1));
    let second = read(&sandbox);
    for counter in ["committed_frames", "committed_bytes", "consumed_frames", "consumed_bytes"] {
        let (a, b) = (first[counter].as_u64().unwrap(), second[counter].as_u64().unwrap());
        assert!(b > a, "{counter} grows: {a} then {b}");
    }
    let producers = second["producers"].as_array().unwrap();
    assert_eq!(producers.len(), 1);
    assert_eq!(producers[0]["pid"], camera.id());
    assert!(producers[0]["frames"].as_u64().unwrap() >= 20);
    assert_eq!(second["consumer"]["state"], "attached");
    wait_for(camera, Duration::from_secs(20), "camera").succeeds();
    let mut stderr = String::new();
    cat.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert!(cat.wait().unwrap().success(), "{stderr}");
    sandbox.run(&["rm", &name]).succeeds();
}

#[test]
fn bench_runs_the_comparison_with_this_binary_as_its_processes() {
    let sandbox = Sandbox::new("bench");
    let json = sandbox.path("bench.json");
    let run = sandbox.run(&[
        "bench",
        "--seconds",
        "1",
        "--frames",
        "10",
        "--transports",
        "shmring,uds",
        "--workloads",
        "video-1080p30",
        "--json",
        json.to_str().unwrap(),
    ]);
    run.succeeds();
    assert!(run.stdout.contains("shmring bench"), "the command shown is this one: {}", run.stdout);
    let document: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let results = document["results"].as_array().unwrap();
    for transport in ["shmring", "uds"] {
        let row = results.iter().find(|r| r["transport"] == transport).unwrap_or_else(|| panic!("{transport} ran"));
        assert_eq!((row["frames"].as_u64(), row["lost"].as_u64()), (Some(10), Some(0)), "{row}");
    }
}
