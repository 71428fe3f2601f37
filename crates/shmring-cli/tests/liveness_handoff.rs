//! `shmring chromium-exec` hands the ring's consumer a liveness watch for
//! the browser it starts: a stand-in browser runs its "renderer" in a pid
//! namespace of its own with the three descriptor numbers of
//! `--shmring-fds`, as the patched browser's renderers get them; killed
//! between claim and commit, its record is stepped over once every holder
//! of the watch's other half is gone, by a consumer that is neither the
//! launcher nor the host.

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{KillOnDrop, Sandbox};

#[test]
#[ignore = "entry point of the stand-in renderer the tests start"]
fn peer() {
    // The browser's switch, as the patch hands it to a renderer.
    let spec = std::env::var("SHMRING_TEST_FDS").expect("run by the other tests only");
    // SAFETY: the stand-in browser passed these descriptors to us.
    let fds = unsafe { shmring::RingFds::from_spec(&spec) }.unwrap();
    let mut producer = shmring::Producer::attach(fds).unwrap();
    let mut claim = producer.reserve(100_000).unwrap();
    claim[..1000].fill(0xee);
    println!("claimed {}", claim.position());
    std::thread::sleep(Duration::from_secs(3600));
}

fn stats(sandbox: &Sandbox, ring: &str) -> serde_json::Value {
    let run = sandbox.run(&["stat", ring, "--json"]);
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("stat --json: {e}: {}", run.stdout))
}

#[test]
fn renderer_of_a_browser_started_by_chromium_exec_killed_mid_claim_is_stepped_over() {
    let sandbox = Sandbox::new("handoff");
    let ring = sandbox.ring("browser");
    let mut host = sandbox.spawn(&["create", &ring, "--capacity", "4MiB"]);
    let host_guard = KillOnDrop(host.id());
    let mut cat = sandbox.command(&["cat", &ring, "--seconds", "60"]);
    let cat = cat.stdout(Stdio::null()).stderr(Stdio::null());
    // The host may need a moment to serve the name.
    let deadline = Instant::now() + Duration::from_secs(20);
    while sandbox.run(&["stat", &ring]).code != 0 {
        assert!(Instant::now() < deadline, "ring {ring} never appeared");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut cat = cat.spawn().unwrap();
    let cat_guard = KillOnDrop(cat.id());
    sandbox.wait_for_consumer(&ring);

    let browser = sandbox.path("browser.sh");
    let script = format!(
        "#!/bin/sh\nfor a in \"$@\"; do case \"$a\" in --shmring-fds=*) fds=\"${{a#--shmring-fds=}}\";; esac; done\n\
         echo \"switch $fds\"\n\
         SHMRING_TEST_FDS=\"$fds\" exec unshare --pid --fork --kill-child {} --ignored --exact peer --nocapture -q\n",
        std::env::current_exe().unwrap().display()
    );
    std::fs::write(&browser, script).unwrap();
    std::fs::set_permissions(&browser, std::fs::Permissions::from_mode(0o755)).unwrap();
    let browser = browser.to_str().unwrap();
    let mut launched = sandbox.command(&["chromium-exec", "--ring", &ring, "--browser", browser, "--", "--headless"]);
    let mut launched = launched.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let _launched = KillOnDrop(launched.id());
    let mut lines = BufReader::new(launched.stdout.take().unwrap()).lines();
    let switch = lines.next().unwrap().unwrap();
    let numbers: Vec<&str> = switch.trim_start_matches("switch ").split(':').collect();
    assert_eq!(numbers.len(), 3, "{switch}");
    assert_ne!(numbers[1], numbers[0], "the liveness half rides in the second place: {switch}");
    let claimed = lines.map(|line| line.unwrap()).find(|line| line.starts_with("claimed "));
    assert_eq!(claimed.as_deref(), Some("claimed 0"), "the renderer claimed the head");

    // chromium-exec exec'd the script, which exec'd unshare: the child
    // running this test binary is the renderer, pid 1 in its own namespace
    // (the other is chromium-exec's switch check).
    let children = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", launched.id())).unwrap();
    let renderer: i32 = children
        .split_whitespace()
        .find(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            String::from_utf8_lossy(&cmdline).contains("--exact")
        })
        .expect("the renderer runs")
        .parse()
        .unwrap();
    // Alive, it keeps its claim: stepped around after a stall check, never over.
    let deadline = Instant::now() + Duration::from_secs(20);
    while stats(&sandbox, &ring)["stalls"].as_u64() == Some(0) {
        assert!(Instant::now() < deadline, "the live claim was never reported");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(stats(&sandbox, &ring)["recovered"], 0);
    // SAFETY: kill(2) on the renderer our launcher started.
    unsafe { libc::kill(renderer, libc::SIGKILL) };
    let deadline = Instant::now() + Duration::from_secs(20);
    while stats(&sandbox, &ring)["recovered"].as_u64() != Some(1) {
        assert!(
            Instant::now() < deadline,
            "the dead renderer's claim was never stepped over: {}",
            stats(&sandbox, &ring)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let stats = stats(&sandbox, &ring);
    assert_eq!((stats["corrupt"].as_u64(), stats["stuck"].as_u64()), (Some(0), Some(0)), "{stats}");
    let status = launched.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut launched.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!stderr.contains("took no liveness watch"), "{stderr}");
    assert!(!status.success(), "the killed renderer ends unshare with it");
    for (child, guard) in [(&mut cat, cat_guard), (&mut host, host_guard)] {
        child.kill().unwrap();
        guard.disarm();
        child.wait().unwrap();
    }
}
