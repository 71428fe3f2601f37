//! A meeting of synthetic devices recorded by `shmring record`: labelled
//! cameras and microphones (each its own process) that come and go, one
//! file per participant, a file of everyone's audio mixed, every record of
//! every stream accounted for; and what `stat` shows of the streams, with
//! whatever it reads about them treated as hostile.

mod common;

use std::time::Duration;

use common::{assert_close, ffprobe, rows, wait_for, Sandbox};

fn label(participant: &str, kind: &str) -> String {
    serde_json::json!({ "participant": participant, "kind": kind }).to_string()
}

#[test]
fn each_participant_is_recorded_into_its_own_files_and_everyone_into_the_mix() {
    let sandbox = Sandbox::new("meet");
    let name = sandbox.ring("meeting");
    let out = sandbox.path("recording");
    let dir = format!("{}/", out.display());
    sandbox.run(&["create", &name, "--capacity", "64MiB"]).succeeds();
    let recorder = sandbox.spawn(&["record", &name, "-o", &dir, "--end-after", "1s"]);
    sandbox.wait_for_consumer(&name);
    let device = |role: &str, stream: &str, seconds: &str, label: &str, extra: &[&str]| {
        let mut args = vec![role, "--ring", &name, "--stream", stream, "--seconds", seconds, "--label", label];
        args.extend_from_slice(extra);
        sandbox.spawn(&args)
    };
    let small = ["--size", "640x360"];
    // Alice is there from the start; Bob joins 1.5 s in, and his camera
    // changes size 1.2 s after that; Carol speaks with no camera; a
    // participant named with escape codes tries to drive a terminal.
    let alice = [
        device("camera", "1", "4.5s", &label("alice", "video"), &small),
        device("microphone", "2", "4.5s", &label("alice", "audio"), &[]),
    ];
    let carol = device("microphone", "6", "2s", &label("carol", "audio"), &[]);
    let mallory = device("microphone", "7", "2s", "\u{1b}[2J\u{1b}[31mred", &[]);
    std::thread::sleep(Duration::from_millis(1500));
    let switch = ["--size", "640x360", "--switch-to", "320x240", "--switch-at", "1.2s"];
    let bob = [
        device("camera", "3", "2.4s", &label("bob", "video"), &switch),
        device("microphone", "4", "2.4s", &label("bob", "audio"), &[]),
    ];
    std::thread::sleep(Duration::from_millis(500));

    // Meanwhile, `stat` names every stream by its label, from another process.
    let stat = sandbox.run(&["stat", &name]);
    stat.succeeds();
    assert!(stat.stdout.contains(&label("alice", "video")), "{}", stat.stdout);
    assert!(stat.stdout.contains(&label("bob", "audio")), "{}", stat.stdout);
    assert!(!stat.stdout.contains('\u{1b}'), "no escape code reaches the terminal: {:?}", stat.stdout);
    assert!(stat.stdout.contains("\\u{1b}[2J\\u{1b}[31mred"), "{}", stat.stdout);
    let json: serde_json::Value = serde_json::from_str(&sandbox.run(&["stat", &name, "--json"]).stdout).unwrap();
    assert_eq!(json["streams_state"], "known", "{json}");
    let video = json["streams"].as_array().unwrap().iter().find(|s| s["id"] == 1).expect("stream 1");
    assert_eq!(video["kind"], "video");
    assert!(video["output"].as_str().is_some_and(|o| o.starts_with("participant-")), "{video}");
    assert!(video["records"].as_u64().unwrap() > 30, "{video}");
    let top = sandbox.run(&["top", &name, "--interval", "1100ms", "--count", "1"]);
    top.succeeds();
    let alice_row = top.stdout.lines().find(|l| l.trim_start().starts_with("1  video")).expect("stream 1 in top");
    let rate: f64 = alice_row.split_whitespace().nth(2).unwrap().parse().unwrap();
    assert!(rate > 15.0, "alice's camera at about 30 frames/s: {}", top.stdout);

    for device in alice.into_iter().chain(bob).chain([carol, mallory]) {
        wait_for(device, Duration::from_secs(30), "a device").succeeds();
    }
    let run = wait_for(recorder, Duration::from_secs(60), "record");
    run.succeeds();
    println!("{}", run.stdout);
    let rows = rows(&run.stdout);

    // Every record of every stream is recorded or counted as dropped, in
    // the participant's file and in the mix.
    assert_eq!(rows.len(), 6, "{rows:?}");
    for (id, row) in &rows {
        let c = &row.counts;
        assert_eq!(c["received"], c["recorded"] + c["dropped"], "stream {id}: {row:?}");
        if row.kind == "audio" {
            assert_eq!(c["received"], c["mixed"] + c["not mixed"], "stream {id}: {row:?}");
            assert!(c["mixed"] * 100 >= c["received"] * 95, "stream {id}: {row:?}");
        } else {
            assert!(c["recorded"] * 100 >= c["received"] * 95, "stream {id}: {row:?}");
        }
    }
    // Paired by label, numbered in the order they came.
    let participant = |id: u32| rows[&id].participant;
    assert_eq!(participant(1), participant(2), "alice's camera and microphone");
    assert_eq!(participant(3), participant(4), "bob's camera and microphone");
    assert_ne!(participant(3), participant(1));
    assert_ne!(participant(6), participant(7), "carol and mallory");
    let mut numbers: Vec<u64> = rows.values().map(|r| r.participant).collect();
    numbers.dedup();
    assert_eq!(numbers.iter().max(), Some(&4), "four participants: {rows:?}");
    assert_eq!(rows[&6].output, "no file", "carol has no video: her voice is in the mix only");
    let alice_file = format!("participant-{}.mp4", participant(1));
    assert_eq!(rows[&1].output, alice_file);
    let bob_file = format!("participant-{}", participant(3));
    assert_eq!(rows[&3].output, format!("{bob_file}.1.mp4"), "bob's second camera size");
    assert!(run.stdout.contains("(no video: its audio is in the mix only)"), "{}", run.stdout);
    assert!(!run.stdout.contains('\u{1b}'), "{:?}", run.stdout);

    let alice = ffprobe(&out.join(&alice_file));
    assert_close("alice's file", alice.duration, 4.5, 0.10);
    assert_eq!(alice.video.as_ref().map(|v| (v.0, v.1)), Some((640, 360)));
    assert_eq!(alice.audio, Some(("aac".to_string(), 48_000)));
    let before = ffprobe(&out.join(format!("{bob_file}.mp4")));
    let after = ffprobe(&out.join(format!("{bob_file}.1.mp4")));
    assert_eq!(before.video.as_ref().map(|v| (v.0, v.1)), Some((640, 360)));
    assert_eq!(after.video.as_ref().map(|v| (v.0, v.1)), Some((320, 240)));
    assert!(before.audio.is_some() && after.audio.is_some(), "bob's voice in both of his files");
    assert_close("bob's files", before.duration + after.duration, 2.4, 0.10);
    let mix = ffprobe(&out.join("mix.m4a"));
    assert!(mix.video.is_none());
    assert_eq!(mix.audio, Some(("aac".to_string(), 48_000)));
    assert_close("the mix", mix.duration, 4.5, 0.10);
    let files: Vec<String> =
        std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(files.len(), 4, "alice's, bob's two, the mix: {files:?}");
    sandbox.run(&["rm", &name]).succeeds();
}

#[test]
fn stat_refuses_a_forged_stream_table_and_ignores_another_consumers() {
    let sandbox = Sandbox::new("forged");
    let name = sandbox.ring("bot");
    sandbox.run(&["create", &name, "--capacity", "16MiB"]).succeeds();
    let table = sandbox.runtime.join(format!("{name}.streams"));
    let stat = || sandbox.run(&["stat", &name]);
    assert!(stat().succeeds().stdout.contains("streams     unknown (the consumer publishes none)"));

    // `cat` consumes and publishes nothing: whatever lies there is foreign.
    let mut cat = sandbox.spawn(&["cat", &name, "--seconds", "30"]);
    let cat_guard = common::KillOnDrop(cat.id());
    sandbox.wait_for_consumer(&name);
    let pid: u64 = serde_json::from_str::<serde_json::Value>(&sandbox.run(&["stat", &name, "--json"]).stdout).unwrap()
        ["consumer"]["pid"]
        .as_u64()
        .unwrap();
    let valid = |pid: u64, label: &str| {
        serde_json::json!({
            "format": "shmring-streams/1", "consumer_pid": pid, "consumer_generation": 1, "elapsed_ms": 10,
            "streams": [{ "id": 1, "kind": "video", "label": label, "records": 1, "bytes": 1, "missing": 0,
                          "used": 1, "dropped": 0, "format": "2x2 I420", "output": null }],
        })
        .to_string()
    };
    std::fs::write(&table, valid(pid + 1, "x")).unwrap();
    assert!(stat().succeeds().stdout.contains("unknown (the table there is another consumer's)"));
    std::fs::write(&table, valid(pid, "cam\u{7}")).unwrap();
    let shown = stat();
    assert!(shown.succeeds().stdout.contains("cam\\u{7}"), "the table of the consumer attached: {}", shown.stdout);
    let forgeries: [&[u8]; 3] = [b"{not json", br#"{"format":"shmring-streams/1","consumer_pid":-4}"#, &[0xff; 100]];
    for forged in forgeries {
        std::fs::write(&table, forged).unwrap();
        assert!(stat().succeeds().stdout.contains("streams     unknown (refused the consumer's table:"));
    }
    std::fs::write(&table, vec![b' '; 2 << 20]).unwrap();
    assert!(stat().succeeds().stdout.contains("larger than"));
    std::fs::remove_file(&table).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", &table).unwrap();
    assert!(stat().succeeds().stdout.contains("refused the consumer's table"), "a link is not followed");
    std::fs::remove_file(&table).unwrap();
    let fifo = std::ffi::CString::new(table.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo reads the path we own.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    let json = sandbox.run(&["stat", &name, "--json"]);
    assert!(json.succeeds().stdout.contains("\"streams_state\": \"refused: "), "no hang on a FIFO: {}", json.stdout);
    std::fs::remove_file(&table).unwrap();
    cat_guard.disarm();
    cat.kill().unwrap();
    cat.wait().unwrap();
    sandbox.run(&["rm", &name]).succeeds();
}
