//! `shmring chromium` for a stock Chromium build (Debian's, say), which
//! knows no `--shmring-fds`: the page's frames come through the bridge.
//!
//! - The ring is created here, and `shmring bridge` (a child process, a
//!   producer of the ring) serves it on an ephemeral loopback port.
//! - The browser's profile goes on tmpfs, unless the arguments name a
//!   `--user-data-dir`: a tmpfs of its own mounted `huge=within_size` when
//!   this process may mount (root), where the file lane costs the browser
//!   least, else a fresh directory in `/dev/shm` (with a warning). The
//!   bridge looks for frame files there (`--profile-dir`): the file lane.
//! - The meeting extension is written beside the profile, pointed at the
//!   bridge, and loaded (`--load-extension`, which headless Chromium
//!   honours): it sends every remote WebRTC track of every page, labelled
//!   by participant, however the page was written.
//! - What arrives is recorded (`-o`) or counted, until `--seconds`, Ctrl-C
//!   or the browser's exit. Then the browser is stopped first and the
//!   bridge after it, so every frame the page sent is recorded (or counted
//!   as dropped) before the files are closed.
//! - At the end: CPU of each process (the browser with all its processes,
//!   the bridge, the encoder, every ffmpeg).

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use shmring::{AccessPolicy, Consumer};
use shmring_bridge::process_usage::{self, Usage};
use shmring_bridge::profile_fs::{ProfileDir, TMPFS_OPTIONS};

use crate::chromium::{count_frames, reap_orphans, stop_browser_group, BrowserWatch};
use crate::cli::ChromiumArgs;
use crate::encoder::{interrupt_flag, progress_line, Encoder, EncoderConfig, StopRule};
use crate::failure::{Failure, Outcome};
use crate::host::ring_options;
use crate::process::{self, Exit};

/// How long the bridge may take to say where it listens.
const BRIDGE_START: Duration = Duration::from_secs(20);

/// Where the browser keeps its profile, and the extension beside it.
struct Profile {
    /// Made for this run, with the extension in it: unmounted (when it is
    /// the profile's own tmpfs) and removed when this is dropped.
    _base: ProfileDir,
    /// The browser's `--user-data-dir`.
    data: PathBuf,
    extension: PathBuf,
}

impl Profile {
    /// The `--user-data-dir` among `args`, or a fresh one on tmpfs: a tmpfs
    /// of its own mounted with [`TMPFS_OPTIONS`] when this process may
    /// mount one (root), else a directory in `/dev/shm`.
    fn new(args: &[String]) -> Result<Profile, Failure> {
        let given = args.iter().find_map(|a| a.strip_prefix("--user-data-dir=")).map(PathBuf::from);
        let fresh = shmring_bridge::chromium::fresh_profile_dir();
        let made = match given {
            Some(_) => ProfileDir::create(fresh.clone()),
            None => ProfileDir::mount(fresh.clone()),
        };
        let base = made.map_err(|e| Failure::failed(format!("cannot make the profile {}: {e}", fresh.display())))?;
        for (point, pid) in base.reclaimed() {
            eprintln!("chromium: unmounted {}, the profile of a launcher that is gone (pid {pid})", point.display());
        }
        if given.is_none() {
            match base.mount_error() {
                None => eprintln!("chromium: profile on its own tmpfs mounted {TMPFS_OPTIONS} at {}", fresh.display()),
                Some(e) => eprintln!(
                    "chromium: warning: cannot mount a tmpfs with huge=within_size for the profile ({e}; \
                     it takes root): profile in {}, where the file lane costs the browser more CPU",
                    fresh.display()
                ),
            }
        }
        let profile = Profile {
            data: given.unwrap_or_else(|| fresh.join("data")),
            extension: fresh.join("extension"),
            _base: base,
        };
        std::fs::create_dir_all(&profile.data)
            .and_then(|()| std::fs::create_dir_all(&profile.extension))
            .map_err(|e| Failure::failed(format!("cannot make the profile {}: {e}", profile.data.display())))?;
        if shmring_bridge::frame_file::is_on_tmpfs(&profile.data) != Some(true) {
            eprintln!(
                "chromium: warning: the profile {} is not on tmpfs: frames go as WebSocket payloads (slower)",
                profile.data.display()
            );
        }
        Ok(profile)
    }
}

/// Makes the child get SIGKILL when this thread ends, whatever ends it, so
/// a killed launcher leaves no browser or bridge behind. Called from the
/// main thread, which lives as long as the launcher.
fn die_with_us(command: &mut Command) {
    // SAFETY: the closure runs between fork and exec and only calls
    // prctl, which is async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    };
}

/// `shmring bridge` serving the ring, in its own process.
struct BridgeChild {
    child: Child,
    addr: std::net::SocketAddr,
    /// Its stdout, line by line: it ends with `stopped: COUNTERS`.
    lines: std::sync::mpsc::Receiver<String>,
}

/// How the bridge ended: its exit, and its counters (JSON) once it said them.
struct BridgeEnd {
    exit: Option<Exit>,
    counters: Option<String>,
}

impl BridgeChild {
    fn start(ring: &str, profile: &Path) -> Result<BridgeChild, Failure> {
        let exe = std::env::current_exe().map_err(|e| Failure::failed(format!("cannot find this program: {e}")))?;
        let mut command = Command::new(exe);
        command
            .args(["bridge", ring, "--listen", "127.0.0.1:0", "--profile-dir"])
            .arg(profile)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            // Its own group: a Ctrl-C meant for us does not stop it before
            // the browser's last frames are in.
            .process_group(0);
        die_with_us(&mut command);
        let mut child = command.spawn().map_err(|e| Failure::failed(format!("cannot start the bridge: {e}")))?;
        let stdout = child.stdout.take().expect("piped");
        let (sender, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let first = lines.recv_timeout(BRIDGE_START).unwrap_or_default();
        match first.strip_prefix("listening on ").and_then(|a| a.parse().ok()) {
            Some(addr) => Ok(BridgeChild { child, addr, lines }),
            None => {
                let _ = child.kill();
                let exit = child.wait().map(|s| s.to_string()).unwrap_or_default();
                Err(Failure::failed(format!("the bridge did not start ({exit}): {first}")))
            }
        }
    }

    /// SIGTERM, and its exit with its CPU time and counters.
    fn stop(self) -> BridgeEnd {
        let pid = self.child.id();
        let _ = process::kill(pid, libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        let exit = loop {
            match process::wait(pid, false) {
                Ok(Some(exit)) => break Some(exit),
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
                _ => {
                    let _ = process::kill(pid, libc::SIGKILL);
                    break process::wait(pid, true).ok().flatten();
                }
            }
        };
        // Its stdout is closed now: the reader ends after the last line.
        let counters = self.lines.iter().find_map(|line| line.strip_prefix("stopped: ").map(str::to_string));
        BridgeEnd { exit, counters }
    }
}

/// What the processes around the encoder used.
struct Usages {
    browser: Usage,
    bridge: BridgeEnd,
}

pub fn launch(args: ChromiumArgs) -> Outcome {
    let name = args.ring.clone().unwrap_or_else(|| format!("chromium-{}", std::process::id()));
    let _span = tracing::info_span!("chromium", ring = %name).entered();
    let consumer = Consumer::create(&name, &ring_options(&args.shape)).map_err(|e| Failure::ring(&name, e))?;
    let _server = consumer.serve(AccessPolicy::default()).map_err(|e| Failure::ring(&name, e))?;
    let profile = Profile::new(&args.browser_args)?;
    let bridge = BridgeChild::start(&name, &profile.data)?;
    let bridge_url = format!("ws://{}/", bridge.addr);
    shmring_bridge::extension::write(&profile.extension, &bridge_url)
        .map_err(|e| Failure::failed(format!("cannot write the extension: {e}")))?;

    let mut command = Command::new(&args.browser);
    if !args.browser_args.iter().any(|a| a.starts_with("--user-data-dir=")) {
        command.arg(format!("--user-data-dir={}", profile.data.display()));
    }
    command
        .arg(format!("--load-extension={}", profile.extension.display()))
        .args(&args.browser_args)
        .stdin(Stdio::null())
        .process_group(0);
    die_with_us(&mut command);
    let child = command.spawn().map_err(|e| {
        Failure::failed(format!(
            "cannot start {}: {e} (install Debian's chromium package: apt-get install -y chromium)",
            args.browser.display()
        ))
    })?;
    let pid = child.id();
    eprintln!(
        "chromium: started {} (pid {pid}), stock build: profile {}, extension {} sending to {bridge_url}, ring {name}",
        args.browser.display(),
        profile.data.display(),
        profile.extension.display()
    );

    let interrupted = interrupt_flag()?;
    let browser_gone = Arc::new(AtomicBool::new(false));
    let producers_done = Arc::new(AtomicBool::new(false));
    let deadline = args.seconds.map(|s| Instant::now() + s);
    // Ends the run in order: the browser first, the bridge once every
    // frame the page sent is in the ring; the encoder then drains the ring.
    let conductor = {
        let (interrupted, browser_gone, producers_done) =
            (interrupted.clone(), browser_gone.clone(), producers_done.clone());
        std::thread::spawn(move || {
            let mut browser = Usage::default();
            loop {
                let done = interrupted.load(Ordering::Relaxed)
                    || browser_gone.load(Ordering::Relaxed)
                    || deadline.is_some_and(|d| Instant::now() >= d);
                if done {
                    break;
                }
                // Sampled as it runs: a stopped browser's processes are gone.
                browser = process_usage::of_tree(pid);
                std::thread::sleep(Duration::from_millis(100));
            }
            // Its orphans (the crash handler) wait until our own children
            // (ffmpeg, the bridge) are done.
            stop_browser_group(pid);
            let bridge = bridge.stop();
            producers_done.store(true, Ordering::Relaxed);
            Usages { browser, bridge }
        })
    };
    let stop = StopRule {
        // Only if stopping the browser and the bridge hangs.
        deadline: deadline.map(|d| d + Duration::from_secs(60)),
        when_producers_leave: false,
        interrupted: Arc::new(AtomicBool::new(false)),
        producers_done: producers_done.clone(),
    };
    let watch = BrowserWatch { pid, interrupted: &browser_gone };
    let outcome = match &args.output {
        Some(output) => {
            let config = EncoderConfig::new(output.clone());
            let report = Encoder::new(&consumer, config).run(&stop, |p| {
                watch.check();
                eprintln!("{}", progress_line(p));
            });
            let usages = conductor.join().expect("the conductor thread");
            let report = report?;
            print!("{}", report.text());
            print_usages(&usages);
            report.failure.map_or(Ok(()), |f| Err(Failure::failed(f)))
        }
        None => {
            let counted = count_frames(&consumer, &stop, pid);
            let usages = conductor.join().expect("the conductor thread");
            print_usages(&usages);
            counted
        }
    };
    drop(child);
    reap_orphans();
    outcome
}

fn print_usages(usages: &Usages) {
    println!(
        "  CPU chromium    {:.3} s (the browser and all its processes; resident {:.0} MB)",
        usages.browser.cpu.as_secs_f64(),
        usages.browser.rss as f64 / 1e6
    );
    match &usages.bridge.exit {
        Some(exit) => println!("  CPU bridge      {:.3} s (bridge {})", exit.cpu.as_secs_f64(), exit.description),
        None => println!("  CPU bridge      unknown (not reaped)"),
    }
    // What reached the ring and what the bridge dropped (ring full, no
    // slot, abandoned), and how many records came through the file lane.
    match &usages.bridge.counters {
        Some(counters) => println!("  bridge counters {counters}"),
        None => println!("  bridge counters unknown (it said none)"),
    }
}
