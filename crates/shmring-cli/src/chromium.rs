//! `shmring chromium`: start Chromium and record what its pages receive.
//!
//! For a Chromium built with the patch series in `chromium-patch/`, it
//! creates a ring, starts the browser with the ring's segment inherited and
//! `--shmring-fds=MEMFD:MEMFD:MEMFD` (the series' three places, from when
//! the ring had two semaphores besides), and consumes what the renderers
//! write (recording it with `-o`). For a stock build it takes the bridge's
//! way instead ([`crate::chromium_stock`]).
//!
//! A stock Chromium ignores switches it does not know, silently. So the
//! launcher looks at the program the browser really runs (after any
//! wrapper script has exec'd it) for the switch's name: with `--build auto`
//! (the default) in a short headless start of its own before the real
//! one; with `--build patched`, in the real start, saying at once when it
//! is missing and giving up after `--attach-timeout` if no renderer has
//! attached, pointing to the bridge instead of waiting forever.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use shmring::{AccessPolicy, Consumer, InheritableFds};
use shmring_media::{KIND_AUDIO, KIND_VIDEO};

use crate::cli::{ChromiumArgs, ChromiumBuild};
use crate::encoder::{interrupt_flag, Encoder, EncoderConfig, StopRule};
use crate::failure::{Failure, Outcome};
use crate::host::ring_options;
use crate::process;

/// The switch the patched browser takes (`switches::kShmringFds`).
pub const SWITCH: &str = "shmring-fds";

/// `--shmring-fds=...` for a ring's inherited descriptors. The patch series
/// takes three descriptor numbers (segment and two semaphores) and hands
/// every renderer a copy of each; the ring needs only the segment now (its
/// signalling words are inside), so the segment goes in the first and last
/// places, and the second carries the producer half of the browser's
/// liveness pair when there is one (else the segment again). Every renderer
/// then holds a copy of that half, which carries its token, and attaches
/// with it (see `RingFds::from_spec`): the watch's hang-up confirms that the
/// browser and all its renderers are gone.
pub fn switch_for(inherited: &InheritableFds) -> String {
    let (memfd, live) = inherited.descriptors();
    format!("--{SWITCH}={memfd}:{}:{memfd}", live.unwrap_or(memfd))
}

/// The runtime feature that exposes the JS API in a patched build.
pub const BLINK_FEATURE: &str = "Shmring";

/// Whether a browser build knows the switch.
#[derive(Debug, PartialEq, Eq)]
pub enum Support {
    Known(PathBuf),
    Unknown(PathBuf),
    Undetermined(String),
}

impl Support {
    /// What the launchers print about it (a warning for a stock build).
    pub fn describe(&self, ring: &str) -> String {
        match self {
            Support::Unknown(exe) => format!(
                "warning: {} does not contain the switch --{SWITCH}: a stock build, which ignores it, so no \
                 renderer will write into the ring; {}",
                exe.display(),
                stock_hint(ring)
            ),
            Support::Known(exe) => format!("{} knows --{SWITCH}", exe.display()),
            Support::Undetermined(why) => format!("cannot tell whether the browser knows --{SWITCH}: {why}"),
        }
    }
}

/// What to do instead with a stock browser.
fn stock_hint(ring: &str) -> String {
    format!(
        "build Chromium with the patches in chromium-patch/, or use the browser bridge, which works with stock \
         Chromium: `shmring bridge {ring}` and the JS client in crates/shmring-bridge/js/"
    )
}

/// Finds the program process `pid` runs once it has left any wrapper
/// script, and whether that program contains the switch's name.
pub fn switch_support(pid: u32) -> Support {
    let deadline = Instant::now() + Duration::from_secs(5);
    let exe = loop {
        match std::fs::read_link(format!("/proc/{pid}/exe")) {
            Ok(exe) => {
                let name = exe.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                let shell = matches!(name.as_str(), "sh" | "bash" | "dash" | "zsh" | "env");
                if !shell || Instant::now() > deadline {
                    break exe;
                }
            }
            Err(e) => return Support::Undetermined(format!("cannot see what pid {pid} runs: {e}")),
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    match file_contains(&exe, SWITCH.as_bytes()) {
        Ok(true) => Support::Known(exe),
        Ok(false) => Support::Unknown(exe),
        Err(e) => Support::Undetermined(format!("cannot read {}: {e}", exe.display())),
    }
}

/// Whether `needle` occurs in the file (read in blocks; no mapping of a
/// 300 MB browser needed).
fn file_contains(path: &Path, needle: &[u8]) -> std::io::Result<bool> {
    let mut file = std::fs::File::open(path)?;
    let finder = memchr::memmem::Finder::new(needle);
    let mut buffer = vec![0u8; 4 << 20];
    let mut kept = 0;
    loop {
        let n = file.read(&mut buffer[kept..])?;
        if n == 0 {
            return Ok(false);
        }
        let end = kept + n;
        if finder.find(&buffer[..end]).is_some() {
            return Ok(true);
        }
        // Keep the tail: the needle may straddle two blocks.
        kept = (needle.len() - 1).min(end);
        buffer.copy_within(end - kept..end, 0);
    }
}

pub fn launch(args: ChromiumArgs) -> Outcome {
    // Whatever the browser leaves behind (crash handler, zygote children)
    // is reparented to us, so that we can stop and reap it.
    // SAFETY: PR_SET_CHILD_SUBREAPER takes an integer flag and no pointers.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1) };
    match args.build {
        ChromiumBuild::Patched => launch_patched(args),
        ChromiumBuild::Stock => crate::chromium_stock::launch(args),
        ChromiumBuild::Auto => match probe(&args.browser) {
            Support::Known(exe) => {
                eprintln!("chromium: {} knows --{SWITCH}: the patched path", exe.display());
                launch_patched(args)
            }
            Support::Unknown(exe) => {
                eprintln!("chromium: {} is a stock build: the bridge and the extension", exe.display());
                crate::chromium_stock::launch(args)
            }
            Support::Undetermined(why) => {
                eprintln!("chromium: cannot tell the build ({why}): the bridge and the extension, which work with any");
                crate::chromium_stock::launch(args)
            }
        },
    }
}

/// Which build `browser` is: started headless on a blank page with a
/// throwaway profile, looked at, and stopped.
fn probe(browser: &Path) -> Support {
    let profile = std::env::temp_dir().join(format!("shmring-chromium-probe-{}", std::process::id()));
    let mut command = Command::new(browser);
    command
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("about:blank")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0);
    let support = match command.spawn() {
        Ok(child) => {
            let support = switch_support(child.id());
            stop_browser(child.id());
            support
        }
        Err(e) => Support::Undetermined(format!("cannot start {}: {e}", browser.display())),
    };
    let _ = std::fs::remove_dir_all(&profile);
    support
}

/// Stops the browser (pid `pid`, leader of its own process group) and
/// whatever it left reparented to us (see [`reap_orphans`]).
pub fn stop_browser(pid: u32) {
    stop_browser_group(pid);
    reap_orphans();
}

/// Stops the browser (pid `pid`, leader of its own process group): SIGTERM,
/// up to 5 s to exit, then SIGKILL for it and everything of its group.
pub fn stop_browser_group(pid: u32) {
    let _ = process::kill(pid, libc::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match process::wait(pid, false) {
            Ok(Some(_)) | Err(_) => break,
            Ok(None) if Instant::now() > deadline => {
                let _ = process::kill(pid, libc::SIGKILL);
                let _ = process::wait(pid, true);
                break;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
    // Renderers, zygote and helpers: the rest of the group.
    // SAFETY: kill with a negative pid signals the group we created.
    unsafe { libc::kill(-(pid as libc::pid_t), libc::SIGKILL) };
}

fn launch_patched(args: ChromiumArgs) -> Outcome {
    let name = args.ring.clone().unwrap_or_else(|| format!("chromium-{}", std::process::id()));
    let _span = tracing::info_span!("chromium", ring = %name).entered();
    let consumer = Consumer::create(&name, &ring_options(&args.shape)).map_err(|e| Failure::ring(&name, e))?;
    let _server = consumer.serve(AccessPolicy::default()).map_err(|e| Failure::ring(&name, e))?;
    // The browser's renderers run in pid namespaces of their own: only a
    // liveness descriptor they all hold can confirm their deaths.
    let (browser_half, watch) = shmring::liveness_pair().map_err(|e| Failure::ring(&name, e))?;
    consumer.watch_producer(watch);
    let fds = consumer.fds().with_liveness(browser_half).map_err(|e| Failure::ring(&name, e))?;
    let inherited = fds.inheritable().map_err(|e| Failure::ring(&name, e))?;
    let switch = switch_for(&inherited);
    let mut command = Command::new(&args.browser);
    command.args(&args.browser_args).arg(&switch).stdin(Stdio::null());
    // The JS API (`track.shmringAttach`) is behind the runtime feature
    // `Shmring` (status "test" in the patched runtime_enabled_features).
    if !args.browser_args.iter().any(|a| a.starts_with("--enable-blink-features")) {
        command.arg(format!("--enable-blink-features={BLINK_FEATURE}"));
    }
    // Its own process group: stopping the browser stops every child it made.
    command.process_group(0);
    let child = command.spawn().map_err(|e| {
        Failure::failed(format!(
            "cannot start {}: {e} (install Debian's chromium package: apt-get install -y chromium)",
            args.browser.display()
        ))
    })?;
    // From here only the browser and what it starts hold the half.
    drop((inherited, fds));
    let pid = child.id();
    eprintln!("chromium: started {} (pid {pid}) with {switch}, ring {name}", args.browser.display());
    let support = switch_support(pid);
    let stock_hint = stock_hint(&name);
    eprintln!("chromium: {}", support.describe(&name));
    let interrupted = interrupt_flag()?;
    let stop_browser = || stop_browser(pid);

    let attach_deadline = Instant::now() + args.attach_timeout;
    loop {
        if !consumer.stats().producers.is_empty() {
            break;
        }
        if let Ok(Some(exit)) = process::wait(pid, false) {
            // SAFETY: as above, for the group the browser leaves behind.
            unsafe { libc::kill(-(pid as libc::pid_t), libc::SIGKILL) };
            reap_orphans();
            return Err(Failure::failed(format!(
                "the browser {} before any renderer attached to ring {name}",
                exit.description
            )));
        }
        if interrupted.load(Ordering::Relaxed) {
            stop_browser();
            return Ok(());
        }
        if Instant::now() >= attach_deadline {
            stop_browser();
            let why = match &support {
                Support::Unknown(exe) => format!(
                    "{} is a stock Chromium build that does not know --{SWITCH} (it ignores the switch); {stock_hint}",
                    exe.display()
                ),
                _ => {
                    "a page must call track.shmringAttach(label) on a track (see chromium-patch/README.md)".to_string()
                }
            };
            return Err(Failure::failed(format!(
                "no renderer attached to ring {name} within {:.1} s: {why}",
                args.attach_timeout.as_secs_f64()
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("chromium: a renderer attached to ring {name}");
    let stop = StopRule {
        deadline: args.seconds.map(|s| Instant::now() + s),
        when_producers_leave: false,
        interrupted: interrupted.clone(),
        ..StopRule::default()
    };
    let outcome = match &args.output {
        Some(output) => {
            let config = EncoderConfig::new(output.clone());
            let watch = BrowserWatch { pid, interrupted: &interrupted };
            let report = Encoder::new(&consumer, config).run(&stop, |p| {
                watch.check();
                eprintln!("{}", crate::encoder::progress_line(p));
            })?;
            print!("{}", report.text());
            report.failure.map_or(Ok(()), |f| Err(Failure::failed(f)))
        }
        None => count_frames(&consumer, &stop, pid),
    };
    stop_browser();
    outcome
}

/// Kills and reaps what the browser left reparented to us (we are its
/// subreaper): helpers outside its process group, such as the crash
/// handler. Every child of ours goes: call it once nothing else of ours
/// (an ffmpeg, the bridge) runs.
pub fn reap_orphans() {
    let own = std::process::id();
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        for pid in children_of(own) {
            let _ = process::kill(pid, libc::SIGKILL);
        }
        let mut status = 0;
        // SAFETY: waitpid writes the status we own; -1 means any child.
        let reaped = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if reaped < 0 || Instant::now() > deadline {
            // ECHILD: no children left.
            return;
        }
        if reaped == 0 {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Pids whose parent is `parent`.
fn children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).ok().is_some_and(|stat| {
                let rest = stat.rsplit(')').next().unwrap_or("");
                rest.split_whitespace().nth(1).and_then(|p| p.parse::<u32>().ok()) == Some(parent)
            })
        })
        .collect()
}

/// Ends a recording (through its interrupt flag) when the browser exits.
pub struct BrowserWatch<'a> {
    pub pid: u32,
    pub interrupted: &'a std::sync::atomic::AtomicBool,
}

impl BrowserWatch<'_> {
    pub fn check(&self) {
        // Signal 0 only asks whether the process is still there.
        if process::kill(self.pid, 0).is_err() || matches!(process::wait(self.pid, false), Ok(Some(_))) {
            self.interrupted.store(true, Ordering::Relaxed);
        }
    }
}

/// Without `-o`: count what the renderers write until the browser exits.
pub fn count_frames(consumer: &shmring::RingConsumer, stop: &StopRule, pid: u32) -> Outcome {
    let (mut video, mut audio, mut bytes) = (0u64, 0u64, 0u64);
    let started = Instant::now();
    let mut next_line = started + Duration::from_secs(1);
    loop {
        if stop.interrupted.load(Ordering::Relaxed) || stop.deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        if stop.producers_done.load(Ordering::Relaxed) {
            let stats = consumer.stats();
            if stats.peek == stats.write {
                break;
            }
        } else if matches!(process::wait(pid, false), Ok(Some(_))) {
            break;
        }
        match consumer.recv_timeout(Duration::from_millis(100)) {
            Ok(Some(frame)) => {
                bytes += frame.len() as u64;
                match frame.kind() {
                    KIND_VIDEO => video += 1,
                    KIND_AUDIO => audio += 1,
                    _ => {}
                }
            }
            Ok(None) => {}
            Err(shmring::Error::Corrupt { .. }) => {}
            Err(e) => return Err(Failure::failed(e)),
        }
        if Instant::now() >= next_line {
            next_line += Duration::from_secs(1);
            eprintln!(
                "  {:>5.1} s  {video} video frames, {audio} audio chunks, {bytes} bytes",
                started.elapsed().as_secs_f64()
            );
        }
    }
    println!(
        "chromium: {video} video frames and {audio} audio chunks ({bytes} bytes) in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
