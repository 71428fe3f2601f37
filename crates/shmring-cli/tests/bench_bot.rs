//! `shmring bench bot --quick`: every pipeline runs for real (Debian's
//! Chromium, the Python receiver with `websockets`, the bridge, the
//! recorder, the C++ fake renderer, ffmpeg), each recording passes ffprobe,
//! and the JSON and the chart are written. A pipeline that cannot run fails
//! the bench, and so this test. Figures are printed, never asserted.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The fake renderer built beside this binary (`cargo test --workspace`
/// builds it), or `$SHMRING_FAKE_RENDERER`.
fn fake_renderer() -> PathBuf {
    let path = std::env::var_os("SHMRING_FAKE_RENDERER")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_BIN_EXE_shmring")).with_file_name("fake_renderer"));
    assert!(
        path.exists(),
        "{} is missing: build it with `cargo build -p shmring-examples` (or test the workspace)",
        path.display()
    );
    path
}

#[test]
fn quick_bench_runs_every_pipeline_and_each_recording_passes_ffprobe() {
    let dir = tempfile::tempdir().unwrap();
    let json_path = dir.path().join("bot.json");
    let svg_path = dir.path().join("bot.svg");
    let output = Command::new(env!("CARGO_BIN_EXE_shmring"))
        .args(["bench", "bot", "--quick", "--json"])
        .arg(&json_path)
        .arg("--svg")
        .arg(&svg_path)
        .arg("--fake-renderer")
        .arg(fake_renderer())
        .env("SHMRING_RUNTIME_DIR", dir.path().join("run"))
        .output()
        .expect("run shmring bench bot");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}\n{stderr}");
    assert!(output.status.success(), "the bench failed:\n{stdout}\n{stderr}");

    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
    assert_eq!(json["failures"].as_array().map(Vec::len), Some(0), "{}", json["failures"]);
    let pipelines = json["pipelines"].as_array().expect("pipelines");
    let names: Vec<&str> = pipelines.iter().filter_map(|p| p["pipeline"].as_str()).collect();
    assert_eq!(names, ["capture-only", "websocket-python", "bridge-websocket", "bridge-file", "patched-renderer"]);
    for pipeline in pipelines {
        let name = pipeline["pipeline"].as_str().unwrap();
        assert!(pipeline["frames_recorded"].as_u64().unwrap() > 0, "{name}: nothing recorded: {pipeline}");
        assert!(pipeline["total"].as_f64().unwrap() > 0.0, "{name}: no CPU counted: {pipeline}");
        if name == "capture-only" {
            continue;
        }
        let probe = &pipeline["probe"];
        assert_eq!((probe["width"].as_u64(), probe["height"].as_u64()), (Some(1920), Some(1080)), "{name}: {probe}");
        assert!(probe["video_frames"].as_u64().unwrap() > 0, "{name}: {probe}");
        assert_eq!(probe["audio_codec"], "aac", "{name}: {probe}");
        // The same audio in every row: Chromium's fake microphone is mono,
        // and so are the Python receiver's input and the fake renderer's.
        assert_eq!(probe["audio_channels"].as_u64(), Some(1), "{name}: {probe}");
        assert!(pipeline["cpu_s_per_recorded_minute"]["ffmpeg"].as_f64().unwrap() > 0.0, "{name}: {pipeline}");
    }
    let lane =
        |name: &str| pipelines.iter().find(|p| p["pipeline"] == name).unwrap()["lane"].as_str().unwrap().to_string();
    assert!(lane("bridge-file").starts_with("file"), "{}", lane("bridge-file"));
    assert!(lane("bridge-websocket").starts_with("websocket"), "{}", lane("bridge-websocket"));
    assert_eq!(json["targets"].as_array().map(Vec::len), Some(2), "{}", json["targets"]);
    // Where and when: a shared machine's figures mean little without them.
    assert!(json["date"].as_str().is_some_and(|d| d.ends_with("UTC")), "{}", json["date"]);
    assert!(json["load_average_windows"]["max"].as_f64().is_some(), "{}", json["load_average_windows"]);
    assert!(json["runs"].as_array().unwrap().iter().all(|r| r["load_average"].as_f64().is_some()), "{}", json["runs"]);
    // Which filesystem the profiles were on: the huge-page tmpfs of their
    // own when the test may mount (root), else /dev/shm, said either way.
    let profiles = json["profile_filesystem"].as_str().expect("profile_filesystem");
    if stderr.contains("warning: cannot mount a tmpfs with huge=within_size for the profiles") {
        assert!(profiles.starts_with("/dev/shm (tmpfs"), "{profiles}");
    } else {
        assert_eq!(profiles, "a tmpfs of its own mounted huge=within_size", "{stderr}");
    }
    assert!(stdout.contains(&format!("Profiles: every browser's on {profiles}")), "{stdout}");
    assert!(
        json["headline"]
            .as_str()
            .is_some_and(|h| h.contains("the CPU per recorded minute of the WebSocket-to-Python bot")
                && h.contains(&format!("profiles on {profiles}"))
                && h.contains("Targets (bridge-file against websocket-python, same run): whole bot <= 0.60x")),
        "{}",
        json["headline"]
    );
    assert!(stdout.contains("| websocket-python |") && stdout.contains("simulated, no browser"), "{stdout}");
    let svg = std::fs::read_to_string(&svg_path).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("bridge-file") && svg.contains("ffmpeg"), "the chart");
}
