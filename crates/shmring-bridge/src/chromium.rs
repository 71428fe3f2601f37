//! Headless Chromium (Debian's `chromium` package) opened at a bridge's
//! capture page with a fake camera and microphone: how the E2E test and the
//! load bench drive a real browser, with no automation framework. The page
//! runs by itself; its progress lines (`shmring-capture: ...`) reach
//! Chromium's log, which is kept for diagnostics.

use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

/// The flags every launch uses: headless, and nothing that reaches for the
/// network (without them Chromium stalls on a closed network), a fake
/// 30 fps camera and microphone allowed without a prompt, no throttling of
/// a page nobody looks at.
pub const FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-fake-device-for-media-stream=fps=30",
    "--use-fake-ui-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
    "--disable-background-timer-throttling",
    "--disable-renderer-backgrounding",
    "--enable-logging=stderr",
    "--v=0",
];

/// Lets WebRTC gather 127.0.0.1 host candidates (Chromium gathers none by
/// default), so a meeting page whose peers keep to them never leaves the
/// loopback interface.
pub const LOOPBACK_WEBRTC: &str = "--allow-loopback-in-peer-connection";

/// Serves fixed pages (`(path, html)`) over plain HTTP on an ephemeral
/// loopback port until dropped: a test's own pages, that know nothing of
/// the bridge.
pub struct PageServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl PageServer {
    pub fn start(pages: &'static [(&'static str, &'static str)]) -> io::Result<PageServer> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopping.load(Ordering::Relaxed) {
                    break;
                }
                if let Ok(stream) = stream {
                    let _ = serve_page(stream, pages);
                }
            }
        });
        Ok(PageServer { addr, stop })
    }

    /// The URL of `page` with `query`.
    pub fn url(&self, page: &str, query: &str) -> String {
        format!("http://{}{page}?{query}", self.addr)
    }
}

impl Drop for PageServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(self.addr); // wakes the accept loop
    }
}

fn serve_page(mut stream: TcpStream, pages: &[(&str, &str)]) -> io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut request = String::new();
    BufReader::new(&stream).read_line(&mut request)?;
    let path = request.split_whitespace().nth(1).unwrap_or("/");
    let path = path.split('?').next().unwrap_or(path);
    let (status, body) = match pages.iter().find(|(name, _)| *name == path) {
        Some((_, body)) => ("200 OK", *body),
        None => ("404 Not Found", ""),
    };
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// The browser binary: `$CHROMIUM` if set, else the first of `chromium`,
/// `chromium-browser`, `google-chrome` found on `PATH`.
pub fn find() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("CHROMIUM") {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .flat_map(|name| std::env::split_paths(&path).map(move |dir| dir.join(name)))
        .find(|candidate| candidate.is_file())
}

/// The capture page of the bridge at `addr`, with query `query` (see
/// `js/capture.html` for its parameters).
pub fn capture_url(addr: SocketAddr, query: &str) -> String {
    format!("http://{addr}/?{query}")
}

/// A fresh profile directory's path (not created yet): on tmpfs
/// (`/dev/shm`) where there is one, as the file lane wants, else in the
/// temporary directory (see [`crate::profile_fs`] for a tmpfs of its own).
/// Give it to the bridge (`--profile-dir`) and to [`Chromium::launch_with`].
pub fn fresh_profile_dir() -> PathBuf {
    crate::profile_fs::fresh_dir("shmring-bridge-chromium")
}

/// A console message in Chromium's log (`--enable-logging=stderr`).
#[derive(Clone, Debug, PartialEq)]
pub struct ConsoleMessage {
    /// The time of day it was logged at, in seconds (from the line's
    /// `[pid:tid:MMDD/HHMMSS.micro:...]` prefix), if the line has one.
    pub at: Option<f64>,
    /// The message, from the prefix asked for on.
    pub text: String,
}

/// The console messages in Chromium's log text `log` that contain
/// `prefix`, each cut to start there (and to end before Chromium's
/// `", source: URL (line)` suffix).
pub fn console_messages(log: &str, prefix: &str) -> Vec<ConsoleMessage> {
    let time_of = |line: &str| -> Option<f64> {
        let stamp = line.strip_prefix('[')?.split(':').nth(2)?.split_once('/')?.1;
        let (hms, micro) = stamp.split_once('.')?;
        let hms: u32 = hms.parse().ok()?;
        let seconds = (hms / 10_000 * 3600 + hms / 100 % 100 * 60 + hms % 100) as f64;
        Some(seconds + micro.parse::<f64>().ok()? / 1e6)
    };
    log.lines()
        .filter_map(|line| {
            let message = &line[line.find("CONSOLE")?..];
            let message = &message[message.find(prefix)?..];
            // `"text", source: URL (line)`: the text ends at the last `", source: `.
            let text = message.rfind("\", source: ").map_or(message, |end| &message[..end]).to_string();
            Some(ConsoleMessage { at: time_of(line), text })
        })
        .collect()
}

/// How to start the browser beyond [`FLAGS`].
#[derive(Clone, Debug, Default)]
pub struct Launch {
    /// The profile directory (see [`fresh_profile_dir`], the default); the
    /// browser's own data goes into its `data` subdirectory. Removed when
    /// the browser is dropped.
    pub profile: Option<PathBuf>,
    /// More command-line switches (`--incognito`, say).
    pub extra_args: Vec<String>,
}

/// A running headless Chromium with a fresh profile. Dropping it kills the
/// whole browser (its process group) and removes the profile.
#[derive(Debug)]
pub struct Chromium {
    child: Child,
    profile: PathBuf,
    log: PathBuf,
}

impl Chromium {
    /// Starts `binary` at `url` with a fresh profile.
    pub fn launch(binary: &Path, url: &str) -> io::Result<Chromium> {
        Chromium::launch_with(binary, url, &Launch::default())
    }

    /// Starts `binary` at `url` as `launch` says.
    pub fn launch_with(binary: &Path, url: &str, launch: &Launch) -> io::Result<Chromium> {
        let profile = launch.profile.clone().unwrap_or_else(fresh_profile_dir);
        fs::create_dir_all(&profile)?;
        let log = profile.join("chromium.log");
        let mut command = Command::new(binary);
        command
            .args(FLAGS)
            .arg(format!("--user-data-dir={}", profile.join("data").display()))
            .args(&launch.extra_args)
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&log)?)
            .process_group(0);
        // SAFETY: the closure runs in the child between fork and exec and
        // only calls prctl, which is async-signal-safe; it touches no
        // memory of the parent.
        unsafe {
            command.pre_exec(|| {
                // The browser dies with the process that launched it, even
                // if that one is killed before it can clean up.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            })
        };
        let child = command.spawn()?;
        Ok(Chromium { child, profile, log })
    }

    /// The browser process's pid (its renderers and helpers are its
    /// descendants; see [`crate::process_usage::of_tree`]).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the browser process has exited.
    pub fn exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// The capture page's progress lines so far.
    pub fn page_log(&self) -> Vec<String> {
        self.console_lines("shmring-capture:")
    }

    /// The capture page's progress lines so far, each with the time of day
    /// Chromium logged it at, in seconds (lines without one are left out).
    pub fn page_log_timed(&self) -> Vec<(f64, String)> {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        console_messages(&text, "shmring-capture:").into_iter().filter_map(|m| Some((m.at?, m.text))).collect()
    }

    /// The console messages so far that start with `prefix` (from the
    /// page or an extension), from `prefix` on.
    pub fn console_lines(&self, prefix: &str) -> Vec<String> {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        console_messages(&text, prefix).into_iter().map(|m| m.text).collect()
    }

    /// Every console line so far, as Chromium logs them.
    pub fn console(&self) -> Vec<String> {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        text.lines().filter(|line| line.contains(":CONSOLE")).map(str::to_string).collect()
    }

    /// The last `lines` lines of Chromium's log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Kills the browser and all its processes.
    pub fn kill(&mut self) {
        // The group outlives its leader while helpers remain, and its id
        // is not reused while it exists: killing it is always safe.
        let _ = killpg(Pid::from_raw(self.child.id() as i32), Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        self.kill();
        let _ = fs::remove_dir_all(&self.profile);
    }
}
