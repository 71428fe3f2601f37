//! `shmring-bridge`: serves a browser bridge into an existing ring until
//! SIGINT or SIGTERM.
//!
//! ```text
//! shmring-bridge NAME [--listen 127.0.0.1:8787]     attach by name
//! SHMRING_FD=3:4:5 shmring-bridge [--listen ...]    attach from inherited descriptors
//! shmring-bridge NAME --extension-dir DIR           and write the meeting extension
//! ```
//!
//! The first line on stdout is `listening on ADDRESS`; with `--stats-every`
//! a JSON line of counters follows every so often, and one last line
//! (`{"final": ...}`) when the bridge stops.

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use shmring::RingFds;
use shmring_bridge::{serve_until_signal, BridgeConfig, RingSource};

#[derive(Parser, Debug)]
#[command(name = "shmring-bridge", version, about = "WebSocket bridge from browsers into a shmring ring")]
struct Args {
    /// Ring to attach to by name (its consumer must serve it). Without it,
    /// the descriptors come from --fd or $SHMRING_FD.
    name: Option<String>,
    /// Inherited descriptors, MEMFD:DATA_SEM:SPACE_SEM.
    #[arg(long, conflicts_with = "name")]
    fd: Option<String>,
    /// Address to listen on.
    #[arg(long, default_value_t = SocketAddr::from(([127, 0, 0, 1], shmring_bridge::DEFAULT_PORT)))]
    listen: SocketAddr,
    /// Worker threads (default: CPUs, at most 4).
    #[arg(long)]
    workers: Option<usize>,
    /// Messages in flight per worker (producer slots per worker).
    #[arg(long)]
    in_flight: Option<usize>,
    /// Connections held at once.
    #[arg(long)]
    max_connections: Option<usize>,
    /// Longest binary message (default: the ring's largest record).
    #[arg(long)]
    max_message: Option<usize>,
    /// Time a reserved message has to arrive in full, in milliseconds.
    #[arg(long)]
    message_timeout_ms: Option<u64>,
    /// Silence after which a connection is closed, in seconds.
    #[arg(long)]
    idle_timeout_s: Option<u64>,
    /// Time to complete the HTTP request, in seconds.
    #[arg(long)]
    handshake_timeout_s: Option<u64>,
    /// Allow WebSocket connections from this origin only (repeatable; the
    /// bridge's own pages are always allowed). Default: any origin.
    #[arg(long = "allow-origin")]
    allow_origins: Vec<String>,
    /// Do not serve the capture page, the JS client and /stats.
    #[arg(long)]
    no_pages: bool,
    /// A browser profile directory (on tmpfs) under which pages' frame
    /// files are looked for (repeatable). Without one there is no file
    /// lane: pages send their frames as binary messages.
    #[arg(long = "profile-dir")]
    profile_dirs: Vec<std::path::PathBuf>,
    /// Print the counters as a JSON line every this many seconds.
    #[arg(long)]
    stats_every: Option<f64>,
    /// Write the meeting extension into this directory, pointed at this
    /// bridge, for Chromium's `--load-extension`.
    #[arg(long)]
    extension_dir: Option<std::path::PathBuf>,
}

fn config(args: &Args) -> BridgeConfig {
    let mut config = BridgeConfig::listening_on(args.listen);
    if let Some(n) = args.workers {
        config.workers = n;
    }
    if let Some(n) = args.in_flight {
        config.in_flight_per_worker = n;
    }
    if let Some(n) = args.max_connections {
        config.max_connections = n;
    }
    config.max_message = args.max_message;
    if let Some(ms) = args.message_timeout_ms {
        config.message_timeout = Duration::from_millis(ms);
    }
    if let Some(s) = args.idle_timeout_s {
        config.idle_timeout = Duration::from_secs(s);
    }
    if let Some(s) = args.handshake_timeout_s {
        config.handshake_timeout = Duration::from_secs(s);
    }
    if !args.allow_origins.is_empty() {
        config.allowed_origins = Some(args.allow_origins.clone());
    }
    config.serve_pages = !args.no_pages;
    config.profile_dirs = args.profile_dirs.clone();
    config
}

fn print_line(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let args = Args::parse();
    let source = match (&args.name, &args.fd) {
        (Some(name), _) => RingSource::Name(name.clone()),
        (None, spec) => {
            let Some(spec) = spec.clone().or_else(|| std::env::var("SHMRING_FD").ok()) else {
                eprintln!("shmring-bridge: give a ring NAME, --fd MEMFD:DATA:SPACE, or set SHMRING_FD");
                return ExitCode::FAILURE;
            };
            // SAFETY: the descriptors named on our command line or in
            // SHMRING_FD were passed to this process for this purpose, and
            // nothing else here owns them.
            match unsafe { RingFds::from_spec(&spec) } {
                Ok(fds) => RingSource::Fds(fds),
                Err(e) => {
                    eprintln!("shmring-bridge: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
    };
    let extension_failed = std::cell::Cell::new(false);
    let stats_every = args.stats_every.filter(|s| *s > 0.0).map(Duration::from_secs_f64);
    let result = serve_until_signal(config(&args), source, |bridge| {
        let addr = bridge.local_addr();
        if let Some(dir) = &args.extension_dir {
            if let Err(e) = shmring_bridge::extension::write(dir, &format!("ws://{addr}/")) {
                eprintln!("shmring-bridge: cannot write the extension into {}: {e}", dir.display());
                extension_failed.set(true);
                // The signal is blocked and taken by the wait that follows:
                // the bridge stops as on SIGTERM.
                let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGTERM);
                return;
            }
        }
        print_line(&format!("listening on {addr}"));
        eprintln!("shmring-bridge: WebSocket ws://{addr}/  capture page http://{addr}/  counters http://{addr}/stats");
        if let Some(interval) = stats_every {
            let stats = bridge.stats_source();
            std::thread::spawn(move || loop {
                std::thread::sleep(interval);
                print_line(&serde_json::json!({ "stats": stats() }).to_string());
            });
        }
    });
    match result {
        Ok(_) if extension_failed.get() => ExitCode::FAILURE,
        Ok(stats) => {
            print_line(&serde_json::json!({ "final": stats }).to_string());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("shmring-bridge: {e}");
            ExitCode::FAILURE
        }
    }
}
