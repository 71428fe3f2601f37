//! `shmring chromium-exec`: an executable to give Playwright or Puppeteer
//! as the browser's `executablePath`. Those drivers start the browser
//! themselves, with descriptors 3 and 4 taken by `--remote-debugging-pipe`
//! and no way to pass more, and they pass only browser switches. So the
//! ring's name comes from the environment (`SHMRING_RING`, baked into a
//! tiny wrapper script by `--write-wrapper`) or `--ring`; this program
//! attaches to the ring by name, hands the ring's consumer the watch of a
//! liveness pair for the browser (its renderers live in other pid
//! namespaces), places the ring's descriptors and the pair's other half at
//! 5 or above without close-on-exec, adds `--shmring-fds=SPEC`, and execs
//! the real browser in its own place (same pid, same stdio, same pipes).
//!
//! A stock Chromium ignores the switch. As `shmring chromium` does, a
//! short-lived watcher process looks at the program the pid runs once the
//! exec chain has settled and says on stderr (which the driver logs)
//! whether that build knows the switch.

use std::ffi::OsString;
use std::os::fd::RawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use shmring::RingFds;

use crate::chromium::{switch_for, switch_support, BLINK_FEATURE};
use crate::cli::ChromiumExecArgs;
use crate::failure::{Failure, Outcome};

/// The environment variable naming the ring when no `--ring` is given.
pub const RING_ENV: &str = "SHMRING_RING";

/// Descriptors the drivers own (`--remote-debugging-pipe`): the ring's go
/// above them.
const DRIVER_FDS: [RawFd; 2] = [3, 4];

pub fn run(args: ChromiumExecArgs) -> Outcome {
    let ring = match args.ring.clone().or_else(|| std::env::var(RING_ENV).ok()) {
        Some(ring) => ring,
        None => return Err(Failure::usage(format!("name the ring with --ring or {RING_ENV}"))),
    };
    if let Some(pid) = args.report_switch_of {
        report_switch(pid, &ring);
        return Ok(());
    }
    if let Some(path) = &args.write_wrapper {
        return write_wrapper(path, &ring, &args.browser);
    }
    exec_browser(&ring, &args.browser, &args.browser_args)
}

/// Writes an executable script that runs this program for ring `ring`
/// with `browser`, passing every argument on: the `executablePath`.
fn write_wrapper(path: &Path, ring: &str, browser: &Path) -> Outcome {
    shmring::validate_name(ring).map_err(|e| Failure::ring(ring, e))?;
    let own = std::env::current_exe().map_err(|e| Failure::failed(format!("cannot find this program: {e}")))?;
    let mut script = String::from("#!/bin/sh\n# Written by `shmring chromium-exec --write-wrapper`: a browser for Playwright or Puppeteer\n# that inherits the descriptors of shmring ring ");
    script.push_str(ring);
    script.push('\n');
    // Where the ring's rendezvous socket is looked for, when not the default.
    if let Some(dir) = std::env::var_os("SHMRING_RUNTIME_DIR") {
        script.push_str(&format!("SHMRING_RUNTIME_DIR={}\nexport SHMRING_RUNTIME_DIR\n", shell_quote(&dir)));
    }
    script.push_str(&format!(
        "exec {} chromium-exec --ring {ring} --browser {} -- \"$@\"\n",
        shell_quote(own.as_os_str()),
        shell_quote(browser.as_os_str())
    ));
    std::fs::write(path, script).map_err(|e| Failure::failed(format!("cannot write {}: {e}", path.display())))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| Failure::failed(format!("cannot make {} executable: {e}", path.display())))?;
    println!("{}", path.display());
    Ok(())
}

/// `'...'` with every `'` closed, escaped and reopened.
fn shell_quote(text: &std::ffi::OsStr) -> String {
    format!("'{}'", text.to_string_lossy().replace('\'', r"'\''"))
}

fn exec_browser(ring: &str, browser: &Path, browser_args: &[OsString]) -> Outcome {
    // Keep 3 and 4 taken while the ring's descriptors are received and
    // duplicated, so that none of them lands there; placeholders are
    // close-on-exec, so a browser started without the pipes gets 3 and 4
    // free again.
    let placeholders = hold_driver_fds()?;
    let fds = watched(ring, RingFds::request(ring).map_err(|e| Failure::ring(ring, e))?);
    let inherited = fds.inheritable().map_err(|e| Failure::ring(ring, e))?;
    let switch = switch_for(&inherited);
    drop(placeholders);

    let mut command = Command::new(browser);
    command.args(browser_args).arg(&switch);
    if !browser_args.iter().any(|a| a.to_string_lossy().starts_with("--enable-blink-features")) {
        command.arg(format!("--enable-blink-features={BLINK_FEATURE}"));
    }
    eprintln!("chromium-exec: {} with {switch} (ring {ring})", browser.display());
    watch_switch_support(ring);
    // exec only returns on failure; the ring's descriptors (kept open by
    // `inherited` and `fds` until then) pass to the browser.
    let error = command.exec();
    drop((inherited, fds));
    Err(Failure::failed(format!(
        "cannot run {}: {error} (install Debian's chromium package: apt-get install -y chromium)",
        browser.display()
    )))
}

/// The ring's descriptors with the producer half of a liveness pair whose
/// watch the ring's consumer (or the host serving its name) now holds. The
/// browser's renderers run in pid namespaces of their own, where their pids
/// mean nothing to the consumer: this half, which the browser and every
/// renderer hold, is what confirms they are gone once it hangs up. When the
/// watch is refused, the browser runs unwatched, as before: its renderers'
/// unfinished claims are then waited for, never presumed dead.
fn watched(ring: &str, fds: RingFds) -> RingFds {
    let handed = shmring::liveness_pair().and_then(|(browser_half, watch)| {
        shmring::rendezvous::hand_over_watch(ring, &watch)?;
        fds.with_liveness(browser_half)
    });
    handed.unwrap_or_else(|e| {
        eprintln!(
            "chromium-exec: warning: ring {ring} took no liveness watch for the browser ({e}): claims its renderers \
             leave unfinished when they die will be waited for"
        );
        fds
    })
}

/// Placeholders (close-on-exec) on whichever of the drivers' descriptors
/// are free in this process.
fn hold_driver_fds() -> Result<Vec<std::os::fd::OwnedFd>, Failure> {
    use std::os::fd::FromRawFd;
    let null = std::fs::File::open("/dev/null").map_err(|e| Failure::failed(format!("/dev/null: {e}")))?;
    let mut held = Vec::new();
    for fd in DRIVER_FDS {
        // SAFETY: F_GETFD only asks whether `fd` is open.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } >= 0 {
            continue;
        }
        // SAFETY: dup3 onto a number that is not open (checked above; this
        // process has one thread here) creates a descriptor we own.
        let placed = unsafe { libc::dup3(std::os::fd::AsRawFd::as_raw_fd(&null), fd, libc::O_CLOEXEC) };
        if placed != fd {
            return Err(Failure::failed(format!("cannot hold descriptor {fd}: {}", std::io::Error::last_os_error())));
        }
        // SAFETY: `placed` was just created for us.
        held.push(unsafe { std::os::fd::OwnedFd::from_raw_fd(placed) });
    }
    Ok(held)
}

/// Starts the watcher: this program again, asked to report what this pid
/// runs once it has exec'd the browser. It gets no descriptor but stdio
/// (the drivers' pipes must close when the browser exits).
fn watch_switch_support(ring: &str) {
    let Ok(own) = std::env::current_exe() else { return };
    let pid = std::process::id();
    let mut command = Command::new(own);
    command.args(["chromium-exec", "--ring", ring, "--report-switch-of", &pid.to_string()]).stdin(Stdio::null());
    // SAFETY: the hook runs between fork and exec and only calls
    // close_range, which is async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            if libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    if let Err(e) = command.spawn() {
        eprintln!("chromium-exec: cannot start the switch check: {e}");
    }
}

/// The watcher: waits until `pid` runs neither this program nor a shell,
/// then says whether that program knows the switch.
fn report_switch(pid: u32, ring: &str) {
    let own = std::env::current_exe().ok();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while std::fs::read_link(format!("/proc/{pid}/exe")).ok().as_deref() == own.as_deref()
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    eprintln!("chromium-exec: {}", switch_support(pid).describe(ring));
}
