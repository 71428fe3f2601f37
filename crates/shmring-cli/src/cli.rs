//! The command line: every command, its arguments and its help.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::size::{parse_duration, parse_resolution, parse_size, Resolution};

const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  the command failed while running (I/O, ffmpeg, frames lost)
  2  bad usage or a bad argument (ring name, size)
  3  no such ring (nobody serves its rendezvous socket)
  4  the ring is corrupt or of an incompatible version
  5  the ring name is taken by a live process, or the ring already has a consumer

Logging: RUST_LOG=info (or debug, trace; per module: RUST_LOG=shmring=debug).";

/// Shared-memory rings for real-time media: create them, look into them,
/// record them with ffmpeg.
#[derive(Debug, Parser)]
#[command(name = "shmring", version, after_help = EXIT_CODES)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a named ring and keep it alive in the background until `shmring rm`.
    Create(CreateArgs),
    /// Hold a ring in the foreground (what `create` starts in the background).
    #[command(hide = true)]
    Hold(HoldArgs),
    /// Remove a ring: stop the process holding it, or clear what a dead one left.
    Rm(RmArgs),
    /// List (and remove, unless --dry-run) what crashed rings left behind.
    Gc(GcArgs),
    /// Show a ring's header, cursors, counters and producers, without disturbing it.
    Stat(StatArgs),
    /// A live view of a ring, refreshed every second.
    Top(TopArgs),
    /// Consume one stream of a ring and write its raw frames to stdout (for ffmpeg).
    Cat(CatArgs),
    /// Consume a ring and encode its video and audio into an MP4 with ffmpeg.
    Record(RecordArgs),
    /// The main job in one command: camera and microphone processes -> ring -> encoder -> MP4.
    Demo(DemoArgs),
    /// A synthetic camera: paints 1080p I420 frames in place into a ring (a producer process).
    Camera(CameraArgs),
    /// A synthetic microphone: writes 48 kHz stereo f32 chunks into a ring (a producer process).
    Microphone(MicrophoneArgs),
    /// Serve a WebSocket bridge so that stock browsers write into a ring (a producer of it).
    Bridge(BridgeArgs),
    /// Start Chromium and record what its pages receive: a patched build through
    /// `--shmring-fds`, a stock one through the bridge and the meeting extension.
    Chromium(ChromiumArgs),
    /// Exec a browser with a named ring's descriptors at 5 and above: an `executablePath` for Playwright or Puppeteer.
    ChromiumExec(ChromiumExecArgs),
    /// Compare shmring with loopback WebSocket, Unix socket and TCP (`shmring bench --help`); `shmring bench bot`: the whole bot per pipeline.
    #[command(disable_help_flag = true)]
    Bench(BenchArgs),
}

#[derive(Debug, Args)]
pub struct RmArgs {
    /// Ring name: 1-48 characters from A-Z a-z 0-9 . _ -
    pub name: String,
    /// Also stop an owner that is not a `shmring create` holder (sends it SIGTERM).
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args, Clone)]
pub struct RingShape {
    /// Data capacity (a power of two): 64MiB, 256MiB, 1GiB, ...
    #[arg(long, default_value = "256MiB", value_parser = parse_size)]
    pub capacity: u64,
    /// Use huge pages when the system has a pool (falls back to normal pages).
    #[arg(long)]
    pub hugepages: bool,
    /// Touch every page at creation so the first frames do not fault.
    #[arg(long)]
    pub prefault: bool,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Ring name: 1-48 characters from A-Z a-z 0-9 . _ -
    pub name: String,
    #[command(flatten)]
    pub shape: RingShape,
    /// Stay in the foreground instead of holding the ring in the background.
    #[arg(long)]
    pub foreground: bool,
}

#[derive(Debug, Args)]
pub struct HoldArgs {
    pub name: String,
    #[command(flatten)]
    pub shape: RingShape,
    /// Descriptor to write "ready" (or the error) to once the ring exists.
    #[arg(long)]
    pub ready_fd: Option<i32>,
}

#[derive(Debug, Args)]
pub struct GcArgs {
    /// Only list what would be removed.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StatFormat {
    Text,
    Json,
    Prometheus,
}

#[derive(Debug, Args)]
pub struct StatArgs {
    /// Ring name.
    pub name: String,
    /// Machine-readable JSON.
    #[arg(long, conflicts_with = "prometheus")]
    pub json: bool,
    /// Prometheus text exposition format.
    #[arg(long)]
    pub prometheus: bool,
}

impl StatArgs {
    pub fn format(&self) -> StatFormat {
        if self.json {
            StatFormat::Json
        } else if self.prometheus {
            StatFormat::Prometheus
        } else {
            StatFormat::Text
        }
    }
}

#[derive(Debug, Args)]
pub struct TopArgs {
    /// Ring name.
    pub name: String,
    /// Time between refreshes.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub interval: Duration,
    /// Stop after this many refreshes (default: until interrupted).
    #[arg(long)]
    pub count: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MediaKind {
    Video,
    Audio,
}

#[derive(Debug, Args)]
pub struct CatArgs {
    /// Ring name.
    pub name: String,
    /// What to write.
    #[arg(long, value_enum, default_value = "video")]
    pub kind: MediaKind,
    /// Stream id to write (default: the first stream of that kind that arrives).
    #[arg(long)]
    pub stream: Option<u32>,
    /// Stop after this many frames (video) or chunks (audio).
    #[arg(long)]
    pub frames: Option<u64>,
    /// Stop after this long.
    #[arg(long, value_parser = parse_duration)]
    pub seconds: Option<Duration>,
    /// Frame rate written into the printed ffmpeg arguments.
    #[arg(long, default_value_t = 30)]
    pub fps: u32,
    #[command(flatten)]
    pub stuck: StuckProducers,
}

/// What a consumer command does about a producer that holds a claim.
#[derive(Debug, Args, Clone, Copy, Default)]
pub struct StuckProducers {
    /// SIGKILL a producer that holds a claim past the ring's stall timeout
    /// while alive (same user, same pid namespace), and skip its record
    /// once it is dead. Without it, such a producer is reported and its
    /// record waited for.
    #[arg(long)]
    pub kill_stuck_producers: bool,
}

#[derive(Debug, Args, Clone)]
pub struct EncodeArgs {
    /// Where to write: a file for the first participant (later ones get
    /// OUT.participant-N.mp4, the mix OUT.mix.m4a), or a directory (an
    /// existing one, or a path ending in /) for participant-N.mp4 and
    /// mix.m4a. A change of resolution starts a participant's next file:
    /// OUT.1.mp4, OUT.2.mp4, ...
    #[arg(short, long, default_value = "recording.mp4")]
    pub output: PathBuf,
    /// Output frame rate: frames are placed by timestamp, gaps filled by repeating the last frame.
    #[arg(long, default_value_t = 30)]
    pub fps: u32,
    /// Record only this video stream (default: every one, each participant
    /// in its own file; streams pair by the participant their labels name).
    #[arg(long)]
    pub video_stream: Option<u32>,
    /// Record only this audio stream (default: every one).
    #[arg(long)]
    pub audio_stream: Option<u32>,
    /// Write no file of everyone's audio mixed.
    #[arg(long)]
    pub no_mix: bool,
    /// A participant that sends nothing for this long has left: its file
    /// is finished (a return starts the next one).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub end_after: Duration,
    /// The ffmpeg program.
    #[arg(long, default_value = "ffmpeg")]
    pub ffmpeg: PathBuf,
    /// x264 preset.
    #[arg(long, default_value = "ultrafast")]
    pub preset: String,
    /// Copy video into ffmpeg's pipe with writev instead of handing it the
    /// ring's pages with vmsplice.
    #[arg(long)]
    pub copy: bool,
    /// How long ffmpeg may take to finish a file once its input ends.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub finish_timeout: Duration,
    /// Give up on an ffmpeg that takes nothing for this long while frames
    /// wait (the frames it holds would otherwise fill the ring).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub stall_timeout: Duration,
}

#[derive(Debug, Args)]
pub struct RecordArgs {
    /// Ring name (held by `shmring create`, or created here with --create).
    pub name: String,
    #[command(flatten)]
    pub encode: EncodeArgs,
    /// Create the ring (and serve it by name) instead of attaching to an existing one.
    #[arg(long)]
    pub create: bool,
    #[command(flatten)]
    pub shape: RingShape,
    /// Stop after this long (default: when every producer has left, or on Ctrl-C).
    #[arg(long, value_parser = parse_duration)]
    pub seconds: Option<Duration>,
    /// Keep recording when every producer has left (until --seconds or Ctrl-C).
    #[arg(long)]
    pub keep_going: bool,
    #[command(flatten)]
    pub stuck: StuckProducers,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// How long the camera and microphone run.
    #[arg(long, default_value = "6s", value_parser = parse_duration)]
    pub seconds: Duration,
    /// Camera resolution.
    #[arg(long, default_value = "1920x1080", value_parser = parse_resolution)]
    pub size: Resolution,
    /// Switch the camera to this resolution halfway (the encoder starts a second file).
    #[arg(long, value_parser = parse_resolution)]
    pub switch_to: Option<Resolution>,
    #[command(flatten)]
    pub encode: DemoEncodeArgs,
    /// Ring capacity.
    #[arg(long, default_value = "256MiB", value_parser = parse_size)]
    pub capacity: u64,
}

#[derive(Debug, Args)]
pub struct DemoEncodeArgs {
    /// The MP4 to write.
    #[arg(short, long, default_value = "demo.mp4")]
    pub output: PathBuf,
    /// The ffmpeg program.
    #[arg(long, default_value = "ffmpeg")]
    pub ffmpeg: PathBuf,
    /// Copy video into ffmpeg's pipe (writev) instead of splicing the ring's pages.
    #[arg(long)]
    pub copy: bool,
}

#[derive(Debug, Args, Clone)]
pub struct ProducerTarget {
    /// Attach to this ring by name (default: the descriptors in SHMRING_FD).
    #[arg(long)]
    pub ring: Option<String>,
    /// How long to produce.
    #[arg(long, default_value = "6s", value_parser = parse_duration)]
    pub seconds: Duration,
    /// Stream id written into every header.
    #[arg(long, default_value_t = 1)]
    pub stream: u32,
    /// Name the stream first with an announce record carrying this label
    /// (e.g. `{"participant":"alice"}`: streams of one participant are
    /// recorded into one file).
    #[arg(long)]
    pub label: Option<String>,
    /// Start at this CLOCK_MONOTONIC time in microseconds (so that several
    /// devices start together).
    #[arg(long, hide = true)]
    pub start_at_us: Option<i64>,
}

#[derive(Debug, Args)]
pub struct CameraArgs {
    #[command(flatten)]
    pub target: ProducerTarget,
    /// Frame size.
    #[arg(long, default_value = "1920x1080", value_parser = parse_resolution)]
    pub size: Resolution,
    /// Frames per second.
    #[arg(long, default_value_t = 30)]
    pub fps: u32,
    /// Change to this size after --switch-at.
    #[arg(long, value_parser = parse_resolution, requires = "switch_at")]
    pub switch_to: Option<Resolution>,
    /// When to change size.
    #[arg(long, value_parser = parse_duration)]
    pub switch_at: Option<Duration>,
}

#[derive(Debug, Args)]
pub struct MicrophoneArgs {
    #[command(flatten)]
    pub target: ProducerTarget,
    /// Sample rate.
    #[arg(long, default_value_t = 48_000)]
    pub rate: u32,
    /// Channels.
    #[arg(long, default_value_t = 2)]
    pub channels: u32,
    /// Chunk length in milliseconds.
    #[arg(long, default_value_t = 10)]
    pub chunk_ms: u32,
}

#[derive(Debug, Args)]
pub struct BridgeArgs {
    /// Ring name (its consumer, or `shmring create`, must serve it).
    pub name: String,
    /// Address to listen on (keep it on loopback).
    #[arg(long, default_value_t = std::net::SocketAddr::from(([127, 0, 0, 1], shmring_bridge::DEFAULT_PORT)))]
    pub listen: std::net::SocketAddr,
    /// Worker threads (default: CPUs, at most 4).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Connections held at once.
    #[arg(long, default_value_t = 4096)]
    pub max_connections: usize,
    /// Time a message has to arrive in full once its ring slot is reserved.
    #[arg(long, default_value = "500ms", value_parser = parse_duration)]
    pub message_timeout: Duration,
    /// Silence after which a connection is closed.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub idle_timeout: Duration,
    /// Accept WebSocket connections from this origin only (repeatable; default: any).
    #[arg(long = "allow-origin")]
    pub allow_origins: Vec<String>,
    /// Do not serve the capture page, the JS client and /stats.
    #[arg(long)]
    pub no_pages: bool,
    /// A browser profile directory (on tmpfs) under which pages' frame
    /// files are looked for: the file lane (repeatable; without one, pages
    /// send frames as WebSocket payloads).
    #[arg(long = "profile-dir")]
    pub profile_dirs: Vec<PathBuf>,
}

/// Which way the browser's frames reach the ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ChromiumBuild {
    /// Look at the build first: patched if it knows --shmring-fds, else stock.
    Auto,
    /// Renderers write into the ring (`--shmring-fds`); fails on a stock build.
    Patched,
    /// The bridge serves the ring, the profile goes on tmpfs, and the
    /// meeting extension sends every remote track of every page.
    Stock,
}

#[derive(Debug, Args)]
pub struct ChromiumArgs {
    /// Ring name to create for the browser (default: chromium-PID).
    #[arg(long)]
    pub ring: Option<String>,
    /// Record what the browser's pages receive: a directory (DIR/ for
    /// participant-N.mp4 and mix.m4a) or a file (as `record -o`); default:
    /// count frames only.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Which path to take.
    #[arg(long, value_enum, default_value = "auto")]
    pub build: ChromiumBuild,
    /// Stop after this long (default: when the browser exits).
    #[arg(long, value_parser = parse_duration)]
    pub seconds: Option<Duration>,
    /// Give up if no renderer has attached to the ring after this long.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    pub attach_timeout: Duration,
    /// The browser to start.
    #[arg(long, default_value = "chromium")]
    pub browser: PathBuf,
    #[command(flatten)]
    pub shape: RingShape,
    /// Arguments passed to the browser (after `--`).
    #[arg(last = true)]
    pub browser_args: Vec<String>,
}

#[derive(Debug, Args)]
#[command(after_help = "Playwright: `shmring chromium-exec --ring bot-17 --write-wrapper /tmp/chromium-bot-17`, \
then chromium.launch({ executablePath: '/tmp/chromium-bot-17' }). The ring must exist (`shmring create` or \
`shmring record --create`).")]
pub struct ChromiumExecArgs {
    /// The ring to attach to (default: the SHMRING_RING environment variable).
    #[arg(long)]
    pub ring: Option<String>,
    /// The browser to exec.
    #[arg(long, default_value = "/usr/bin/chromium")]
    pub browser: PathBuf,
    /// Write an executable script at this path that runs this command for
    /// the ring and browser given (what a driver takes as executablePath), and exit.
    #[arg(long)]
    pub write_wrapper: Option<PathBuf>,
    /// Report whether the program this pid runs knows the switch (the watcher started before the exec).
    #[arg(long, hide = true)]
    pub report_switch_of: Option<u32>,
    /// The browser's arguments (after `--`), as the driver passes them.
    #[arg(last = true)]
    pub browser_args: Vec<std::ffi::OsString>,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Arguments of the comparison: [--quick] [--json FILE] [--svg FILE] [--seconds S] ...
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}
