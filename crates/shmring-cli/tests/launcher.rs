//! The launcher against Debian's stock Chromium (installed by
//! scripts/test.sh): it starts the real browser with the ring's descriptors
//! and `--shmring-fds`, sees that this build does not know the switch,
//! says so and points to the bridge, and ends instead of waiting forever.

mod common;

use std::time::Duration;

use common::{wait_for, Sandbox};

#[test]
fn stock_chromium_is_reported_as_not_knowing_the_switch() {
    common::require_chromium();
    let sandbox = Sandbox::new("launcher");
    let profile = sandbox.path("profile");
    let ring = sandbox.ring("browser");
    // The flags the bridge's own Chromium tests run with (headless, nothing
    // that reaches for the network).
    let profile_flag = format!("--user-data-dir={}", profile.display());
    let mut args =
        vec!["chromium", "--build", "patched", "--ring", &ring, "--attach-timeout", "4s", "--capacity", "16MiB", "--"];
    args.extend_from_slice(shmring_bridge::chromium::FLAGS);
    args.extend([profile_flag.as_str(), "about:blank"]);
    let launcher = sandbox.spawn(&args);
    let run = wait_for(launcher, Duration::from_secs(60), "shmring chromium");
    run.fails_with(1, "does not contain the switch --shmring-fds");
    assert!(run.stderr.contains("with --shmring-fds="), "the switch was passed: {}", run.stderr);
    assert!(run.stderr.contains("no renderer attached to ring"), "{}", run.stderr);
    assert!(run.stderr.contains("shmring bridge"), "points to the bridge: {}", run.stderr);
    // The browser and everything it started are gone, and so is the ring.
    sandbox.run(&["stat", &ring]).fails_with(3, "no ring named");
}
