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

/// Without the right to mount (run as `nobody` when the test is root), the
/// stock path says it cannot mount the huge-page tmpfs and why, and puts
/// the profile in `/dev/shm` instead, removed at the end.
#[test]
fn without_the_right_to_mount_the_stock_path_says_its_profile_is_in_dev_shm() {
    common::require_chromium();
    let home = tempfile::tempdir().expect("tempdir");
    // Writable by the unprivileged user the launcher runs as.
    std::fs::set_permissions(home.path(), std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    // A copy there too: the build's own directory may be closed to others.
    let shmring = home.path().join("shmring");
    std::fs::copy(env!("CARGO_BIN_EXE_shmring"), &shmring).unwrap();
    std::fs::set_permissions(&shmring, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    // SAFETY: geteuid has no preconditions.
    let mut command = if unsafe { libc::geteuid() } == 0 {
        let mut command = std::process::Command::new("setpriv");
        command.args(["--reuid=65534", "--regid=65534", "--clear-groups"]).arg(&shmring);
        command
    } else {
        std::process::Command::new(&shmring)
    };
    command
        .args(["chromium", "--build", "stock", "--seconds", "2", "--"])
        .args(shmring_bridge::chromium::FLAGS)
        .arg("about:blank")
        .env("HOME", home.path())
        .env("SHMRING_RUNTIME_DIR", home.path().join("run"))
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let launcher = command.spawn().expect("setpriv (util-linux) runs the launcher");
    let run = wait_for(launcher, Duration::from_secs(60), "shmring chromium as nobody");
    assert_eq!(run.code, 0, "stdout: {}\nstderr: {}", run.stdout, run.stderr);
    let said = run
        .stderr
        .lines()
        .find(|l| l.contains("warning: cannot mount a tmpfs with huge=within_size for the profile"))
        .unwrap_or_else(|| panic!("the warning: {}", run.stderr));
    assert!(said.contains("it takes root"), "{said}");
    let profile = said.split("profile in ").nth(1).and_then(|r| r.split(',').next()).expect("where it went");
    assert!(profile.starts_with("/dev/shm/shmring-bridge-chromium-"), "{said}");
    assert!(!std::path::Path::new(profile).exists(), "removed at the end: {profile}");
    assert!(!run.stderr.contains("profile on its own tmpfs"), "{}", run.stderr);
}
