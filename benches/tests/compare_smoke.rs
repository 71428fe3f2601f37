//! Runs the whole comparison on tiny settings and checks that every
//! transport delivered every message intact and that the reports carry
//! every field. No speed is asserted.

use std::process::Command;

use serde_json::Value;

const FRAMES: u64 = 20;

const TRANSPORTS: [&str; 8] =
    ["shmring", "shmring-reserve", "shmring-untouched", "shmring-spin", "websocket", "uds", "tcp", "memcpy"];

const WORKLOADS: [&str; 5] = ["video-1080p30", "video-max", "small-64", "small-4k", "latency-64"];

const FIELDS: [&str; 11] = [
    "transport",
    "workload",
    "frames",
    "gb_per_s",
    "cpu_s_per_gb",
    "producer_cpu_ms_per_frame",
    "consumer_cpu_ms_per_frame",
    "p50_us",
    "p99_us",
    "p999_us",
    "lost",
];

#[test]
fn every_transport_delivers_every_frame_intact_and_reports_every_field() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    let json = dir.join("compare_smoke.json");
    let svg = dir.join("compare_smoke.svg");
    let output = Command::new(env!("CARGO_BIN_EXE_compare"))
        .args(["--quick", "--seconds", "1", "--frames", &FRAMES.to_string(), "--repeat", "2"])
        .arg("--json")
        .arg(&json)
        .arg("--svg")
        .arg(&svg)
        .output()
        .expect("run compare");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "compare failed\nstdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("| workload | transport |"), "no table on stdout:\n{stdout}");

    let document: Value = serde_json::from_str(&std::fs::read_to_string(&json).expect("json written")).expect("json");
    let machine = &document["machine"];
    assert!(machine["cores"].as_u64().is_some_and(|n| n >= 1), "machine: {machine}");
    assert!(machine["cpu_model"].as_str().is_some_and(|m| !m.is_empty()), "machine: {machine}");

    let results = document["results"].as_array().expect("results is a list");
    for workload in WORKLOADS {
        for transport in TRANSPORTS {
            let runs = |t: &str| match workload {
                "latency-64" => !matches!(t, "shmring-untouched" | "memcpy"),
                _ => t != "shmring-spin",
            };
            if !runs(transport) {
                continue;
            }
            let row = results
                .iter()
                .find(|r| r["transport"] == transport && r["workload"] == workload)
                .unwrap_or_else(|| panic!("no result for {transport} on {workload}"));
            for field in FIELDS {
                assert!(row.get(field).is_some(), "{transport}/{workload} lacks {field}: {row}");
            }
            let count = |field: &str| row[field].as_u64().unwrap_or_else(|| panic!("{field} in {row}"));
            assert_eq!(count("frames"), FRAMES, "{transport}/{workload} delivered {row}");
            assert_eq!(count("runs"), 2, "{transport}/{workload}: the median of both rounds: {row}");
            assert_eq!(count("lost"), 0, "{transport}/{workload}: {row}");
            assert_eq!(count("corrupt"), 0, "{transport}/{workload}: {row}");
            assert_eq!(count("out_of_order"), 0, "{transport}/{workload}: {row}");
            for field in ["gb_per_s", "cpu_s_per_gb", "producer_cpu_ms_per_frame"] {
                assert!(row[field].as_f64().is_some(), "{transport}/{workload}: {field} in {row}");
            }
            let measures_consumer = transport != "memcpy";
            assert_eq!(row["consumer_cpu_ms_per_frame"].is_f64(), measures_consumer, "{row}");
            let timed = measures_consumer && transport != "shmring-untouched";
            for field in ["p50_us", "p99_us", "p999_us"] {
                assert_eq!(row[field].is_f64(), timed, "{transport}/{workload}: {field} in {row}");
            }
        }
    }
    let chart = std::fs::read_to_string(&svg).expect("svg written");
    assert!(chart.starts_with("<svg") && chart.contains("websocket"), "svg: {}", &chart[..chart.len().min(200)]);
}
