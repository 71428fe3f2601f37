//! `bridge-load`: the bridge under load, measured.
//!
//! 1. Many small streams, as in the published proxy load test: 3,000
//!    WebSocket connections each sending a 1 KiB message (an s16 audio
//!    chunk with its header) 100 times a second, 300,000 messages/s, for
//!    30 s, from a Rust load generator on loopback, into a ring whose
//!    consumer (a thread of this process) checks every record. Reported:
//!    the fraction delivered, the bridge's memory and CPU.
//! 2. Real headless Chromium, back to back: the 1080p30 camera, then the
//!    microphone, each captured only (copied out as a sender does, sent
//!    nowhere), sent as WebSocket payloads, and sent through the file lane;
//!    Chromium's CPU (all its processes) and the bridge's CPU per frame,
//!    beside one memcpy of a frame (`lanes`).
//!
//! The bridge runs as its own process (this binary again, in its bridge
//! role), so its CPU and memory are its own. Prints a table and writes
//! JSON (`--json`, default `target/bridge-load.json`).
//!
//! ```text
//! cargo run --release -p shmring-bridge --bin bridge-load
//! cargo run --release -p shmring-bridge --bin bridge-load -- --connections 300 --seconds 5 --chromium-seconds 0
//! cargo run --release -p shmring-bridge --bin bridge-load -- --skip-load      # the lanes only
//! ```

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::json;
use shmring::{Consumer, RingConsumer, RingFds, RingOptions};
use shmring_bridge::client::{encode_frame, write_audio_header, Client};
use shmring_bridge::process_usage::{self, Usage};
use shmring_bridge::{serve_until_signal, BridgeConfig, RingSource};
use shmring_media::{AudioFrame, AudioMeta, SampleFormat, KIND_AUDIO};

#[derive(Parser, Debug)]
#[command(name = "bridge-load", about = "Load and Chromium measurements of the shmring bridge")]
struct Args {
    /// Concurrent WebSocket connections of the load run.
    #[arg(long, default_value_t = 3000)]
    connections: usize,
    /// Messages per second on each connection.
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    /// Length of the load run, in seconds.
    #[arg(long, default_value_t = 30.0)]
    seconds: f64,
    /// Load generator threads.
    #[arg(long, default_value_t = 2)]
    generator_threads: usize,
    /// Length of the Chromium run, in seconds (0: skip it).
    #[arg(long, default_value_t = 10.0)]
    chromium_seconds: f64,
    /// Bridge worker threads (default: the bridge's own default).
    #[arg(long)]
    workers: Option<usize>,
    /// Ring capacity of the load run in MiB (a power of two). The bridge
    /// maps it twice, and its pages count in the bridge's RSS: 8 MiB holds
    /// about 25 ms of the 300,000 msg/s load.
    #[arg(long, default_value_t = 8)]
    load_ring_mib: u64,
    /// Where to write the JSON report.
    #[arg(long, default_value = "target/bridge-load.json")]
    json: PathBuf,
    /// Rounds of the browser's lanes (each lane once per round; medians
    /// printed when more than one).
    #[arg(long, default_value_t = 1)]
    rounds: usize,
    /// Measure the browser's lanes only (no many-connection load run).
    #[arg(long)]
    skip_load: bool,
    /// Also measure WebSocket payloads through this bridge binary (an
    /// earlier `shmring-bridge` build, attached from SHMRING_FD), beside
    /// this build's, in the same run.
    #[arg(long)]
    compare_bridge: Option<PathBuf>,
    /// Internal: run as the bridge process (descriptors in SHMRING_FD).
    #[arg(long, hide = true)]
    serve_bridge: bool,
    /// Internal: the bridge role's profile directories (the file lane).
    #[arg(long = "profile-dir", hide = true)]
    profile_dirs: Vec<PathBuf>,
}

mod lanes;

/// Payload of each load message: 480 mono s16 samples and the header.
const MESSAGE_FRAMES: u32 = 480;
const MESSAGE_LEN: usize = 1024;
const DECLARATION: &str = r#"{"type":"declare","kind":"audio","format":"s16","sample_rate":48000,"channels":1}"#;

fn main() {
    let args = Args::parse();
    if args.serve_bridge {
        serve_bridge(&args);
        return;
    }
    shmring_bridge::raise_open_file_limit();
    let mut report = serde_json::Map::new();
    report.insert("machine".into(), machine());
    if !args.skip_load {
        let load = load_run(&args);
        report.insert("load".into(), load);
    }
    if args.chromium_seconds > 0.0 {
        report.insert("chromium_lanes".into(), lanes::run(&args));
    }
    let report = serde_json::Value::Object(report);
    if let Some(dir) = args.json.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    std::fs::write(&args.json, serde_json::to_string_pretty(&report).unwrap()).expect("write the JSON report");
    println!("\nwrote {}", args.json.display());
}

/// The bridge role: attach from SHMRING_FD, listen on an ephemeral port.
fn serve_bridge(args: &Args) {
    let spec = std::env::var("SHMRING_FD").expect("SHMRING_FD");
    // SAFETY: the parent passed these descriptors to this process for this
    // purpose; nothing else here owns them.
    let fds = unsafe { RingFds::from_spec(&spec) }.expect("descriptors");
    let mut config = BridgeConfig::listening_on("127.0.0.1:0".parse().unwrap());
    config.max_connections = args.connections + 100;
    config.profile_dirs = args.profile_dirs.clone();
    if let Some(workers) = args.workers {
        config.workers = workers;
    }
    let stats = serve_until_signal(config, RingSource::Fds(fds), |bridge| {
        println!("listening on {}", bridge.local_addr());
        let _ = io::stdout().flush();
    })
    .expect("bridge");
    println!("{}", json!({ "final": stats }));
}

struct BridgeChild {
    child: Child,
    addr: SocketAddr,
    stdout: BufReader<std::process::ChildStdout>,
}

impl BridgeChild {
    fn start(consumer: &RingConsumer, args: &Args) -> BridgeChild {
        BridgeChild::start_with(consumer, args, &[])
    }

    /// Another bridge binary (`shmring-bridge`), on an ephemeral port.
    fn start_binary(consumer: &RingConsumer, binary: &std::path::Path) -> BridgeChild {
        let mut command = Command::new(binary);
        command.args(["--listen", "127.0.0.1:0"]);
        BridgeChild::spawn(consumer, command)
    }

    /// The bridge role with `extra` arguments.
    fn start_with(consumer: &RingConsumer, args: &Args, extra: &[String]) -> BridgeChild {
        let mut command = Command::new(std::env::current_exe().unwrap());
        command.arg("--serve-bridge").arg("--connections").arg(args.connections.to_string()).args(extra);
        if let Some(workers) = args.workers {
            command.arg("--workers").arg(workers.to_string());
        }
        BridgeChild::spawn(consumer, command)
    }

    /// Runs `command` as a bridge of `consumer`'s ring (descriptors in
    /// SHMRING_FD) and reads the address it prints first.
    fn spawn(consumer: &RingConsumer, mut command: Command) -> BridgeChild {
        let fds = consumer.fds().inheritable().expect("inheritable descriptors");
        let mut child = command
            .env("SHMRING_FD", fds.spec())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn the bridge");
        drop(fds);
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).expect("the bridge's address");
        let addr = line.trim().strip_prefix("listening on ").expect("listening on").parse().unwrap();
        BridgeChild { child, addr, stdout }
    }

    fn usage(&self) -> Usage {
        process_usage::of_process(self.child.id()).expect("the bridge's /proc")
    }

    fn stop(mut self) -> serde_json::Value {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let mut rest = String::new();
        let _ = self.stdout.read_to_string(&mut rest);
        let _ = self.child.wait();
        rest.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find_map(|v| v.get("final").cloned())
            .unwrap_or_default()
    }
}

fn machine() -> serde_json::Value {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    json!({
        "cpus": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "loadavg_at_start": load.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
    })
}

/// What the consumer thread saw.
#[derive(Default, Debug)]
struct Received {
    records: u64,
    bytes: u64,
    bad: u64,
    /// Frame numbers skipped within a stream (messages lost on the way).
    gaps: u64,
    out_of_order: u64,
}

fn consume_audio(consumer: RingConsumer, stop: Arc<AtomicBool>) -> Received {
    let mut received = Received::default();
    let mut last: HashMap<u32, u64> = HashMap::new();
    let mut idle_since = None;
    loop {
        match consumer.recv_timeout(Duration::from_millis(20)) {
            Ok(Some(frame)) => {
                idle_since = None;
                received.records += 1;
                received.bytes += frame.len() as u64;
                match (frame.kind(), AudioFrame::parse(&frame)) {
                    (KIND_AUDIO, Ok(chunk)) if chunk.frame_count() == MESSAGE_FRAMES => {
                        let number = chunk.frame_number();
                        match last.insert(chunk.stream_id(), number) {
                            Some(prev) if number > prev + 1 => received.gaps += number - prev - 1,
                            Some(prev) if number <= prev => received.out_of_order += 1,
                            _ => {}
                        }
                    }
                    _ => received.bad += 1,
                }
            }
            Ok(None) => {
                // Stop once asked and the ring has been quiet for a while.
                let since = *idle_since.get_or_insert_with(Instant::now);
                if stop.load(Ordering::Acquire) && since.elapsed() > Duration::from_millis(500) {
                    return received;
                }
            }
            Err(e) => {
                eprintln!("consumer: {e}");
                received.bad += 1;
            }
        }
    }
}

/// One connection of the load generator.
struct LoadConnection {
    stream: TcpStream,
    next_due: Duration,
    frame_number: u64,
    /// Bytes of a message the socket did not take at once.
    pending: Vec<u8>,
}

#[derive(Default, Debug, Clone, Copy)]
struct Sent {
    messages: u64,
    /// Messages not sent at their time because the previous one was still
    /// queued (the socket was full): the load fell short by these.
    behind: u64,
    notices: u64,
}

fn generate(mut conns: Vec<LoadConnection>, period: Duration, start: Instant, run: Duration) -> Sent {
    let mut sent = Sent::default();
    let mut message = vec![0u8; MESSAGE_LEN];
    for (i, byte) in message[64..].iter_mut().enumerate() {
        *byte = (i * 7) as u8;
    }
    let mut frame = Vec::with_capacity(MESSAGE_LEN + 16);
    let mut mask_state = 0x9e37_79b9_7f4a_7c15u64;
    let mut sink = [0u8; 4096];
    let mut last_read = Duration::ZERO;
    let mut last_pass = false;
    while !last_pass {
        // The pass that finds the run over still sends what fell due in it.
        let mut now = start.elapsed();
        if now >= run {
            now = run - Duration::from_nanos(1);
            last_pass = true;
        }
        for conn in conns.iter_mut() {
            if !conn.pending.is_empty() {
                match conn.stream.write(&conn.pending) {
                    Ok(n) => {
                        conn.pending.drain(..n);
                        if conn.pending.is_empty() {
                            sent.messages += 1;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => panic!("load connection failed: {e}"),
                }
            }
            while conn.next_due <= now {
                conn.next_due += period;
                if !conn.pending.is_empty() {
                    sent.behind += 1;
                    continue;
                }
                let meta = AudioMeta {
                    stream_id: 0,
                    timestamp_us: conn.frame_number as i64 * 10_000,
                    frame_number: conn.frame_number,
                    sample_rate: 48_000,
                };
                conn.frame_number += 1;
                write_audio_header(&mut message, SampleFormat::S16Interleaved, 48_000, 1, MESSAGE_FRAMES, &meta);
                mask_state ^= mask_state << 13;
                mask_state ^= mask_state >> 7;
                mask_state ^= mask_state << 17;
                frame.clear();
                encode_frame(true, 2, &message, Some((mask_state as u32).to_ne_bytes()), &mut frame);
                match conn.stream.write(&frame) {
                    Ok(n) if n == frame.len() => sent.messages += 1,
                    Ok(n) => conn.pending.extend_from_slice(&frame[n..]),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => conn.pending.extend_from_slice(&frame),
                    Err(e) => panic!("load connection failed: {e}"),
                }
            }
        }
        // Drop notices (and anything else the bridge says) are read and
        // counted now and then, so its replies never back up.
        if now >= last_read + Duration::from_millis(100) {
            last_read = now;
            for conn in conns.iter_mut() {
                while let Ok(n) = conn.stream.read(&mut sink) {
                    if n == 0 {
                        break;
                    }
                    sent.notices += sink[..n].windows(9).filter(|w| w == b"\"dropped\"").count() as u64;
                }
            }
        }
        let next = start + (now + Duration::from_millis(1)).min(run);
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    // Finish partial messages (at most a second).
    let deadline = Instant::now() + Duration::from_secs(1);
    while Instant::now() < deadline && conns.iter().any(|c| !c.pending.is_empty()) {
        for conn in conns.iter_mut().filter(|c| !c.pending.is_empty()) {
            if let Ok(n) = conn.stream.write(&conn.pending) {
                conn.pending.drain(..n);
                if conn.pending.is_empty() {
                    sent.messages += 1;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    sent
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn load_run(args: &Args) -> serde_json::Value {
    let consumer = Consumer::create_anonymous(&RingOptions::with_capacity(args.load_ring_mib << 20)).expect("ring");
    let bridge = BridgeChild::start(&consumer, args);
    let idle = bridge.usage();
    let stop = Arc::new(AtomicBool::new(false));
    let consumer_thread = {
        let stop = stop.clone();
        std::thread::spawn(move || consume_audio(consumer, stop))
    };

    let period = Duration::from_secs_f64(1.0 / args.rate);
    let run = Duration::from_secs_f64(args.seconds);
    let threads = args.generator_threads.max(1);
    let total = args.connections;
    println!("load: connecting {total} WebSockets to the bridge at {} ...", bridge.addr);
    // All connect, then all start at one instant: `connected`, then `go`
    // once the start time is set.
    let connected = Arc::new(Barrier::new(threads + 1));
    let go = Arc::new(Barrier::new(threads + 1));
    let start_at = Arc::new(std::sync::Mutex::new(None::<Instant>));
    let mut generators = Vec::new();
    for t in 0..threads {
        let (connected, go, start_at, addr) = (connected.clone(), go.clone(), start_at.clone(), bridge.addr);
        generators.push(std::thread::spawn(move || {
            let mine: Vec<usize> = (t..total).step_by(threads).collect();
            let conns: Vec<LoadConnection> = mine
                .iter()
                .map(|&i| {
                    let mut client = Client::connect(addr).expect("connect");
                    client.declare(DECLARATION).expect("declare");
                    let (stream, _) = client.into_parts();
                    stream.set_nonblocking(true).unwrap();
                    // Spread the connections' send times over one period.
                    let next_due = period.mul_f64(i as f64 / total as f64);
                    LoadConnection { stream, next_due, frame_number: 0, pending: Vec::new() }
                })
                .collect();
            connected.wait();
            go.wait();
            let start = start_at.lock().unwrap().expect("the start time is set before `go`");
            generate(conns, period, start, run)
        }));
    }
    connected.wait();
    let held = bridge.usage();
    let before = (bridge.usage(), process_usage::of_self().unwrap());
    let start = Instant::now();
    *start_at.lock().unwrap() = Some(start);
    go.wait();
    println!("load: {total} connections x {} msg/s x {MESSAGE_LEN} B for {} s ...", args.rate, args.seconds);
    let mut peak = held;
    while start.elapsed() < run {
        std::thread::sleep(Duration::from_millis(500));
        let now = bridge.usage();
        if now.rss > peak.rss {
            peak = now;
        }
    }
    let sent = generators.into_iter().map(|g| g.join().unwrap()).fold(Sent::default(), |a, b| Sent {
        messages: a.messages + b.messages,
        behind: a.behind + b.behind,
        notices: a.notices + b.notices,
    });
    let wall = start.elapsed();
    let after = (bridge.usage(), process_usage::of_self().unwrap());
    stop.store(true, Ordering::Release);
    let received = consumer_thread.join().unwrap();
    let bridge_stats = bridge.stop();

    let scheduled = sent.messages + sent.behind;
    let delivered = received.records as f64 / sent.messages.max(1) as f64;
    let bridge_cpu = (after.0.cpu - before.0.cpu).as_secs_f64();
    let bench_cpu = (after.1.cpu - before.1.cpu).as_secs_f64();
    let per_connection = (held.rss_anon as f64 - idle.rss_anon as f64) / total as f64;
    println!(
        "\n== {total} connections, {} msg/s each, {MESSAGE_LEN} B messages, {:.1} s",
        args.rate,
        wall.as_secs_f64()
    );
    let row = |k: &str, v: String| println!("  {k:<44} {v}");
    // Rates over the scheduled run (the wall time adds the final flush).
    let per_second = |n: u64| n as f64 / run.as_secs_f64();
    row("messages scheduled", format!("{scheduled} ({:.0}/s)", per_second(scheduled)));
    row(
        "messages sent (written whole to the socket)",
        format!("{} ({:.0}/s)", sent.messages, per_second(sent.messages)),
    );
    row("  not sent: generator's socket still full", format!("{}", sent.behind));
    row("records received by the ring's consumer", format!("{}", received.records));
    row("delivered fraction (received / sent)", format!("{:.5}", delivered));
    row(
        "  lost (frame-number gaps), bad, out of order",
        format!("{} {} {}", received.gaps, received.bad, received.out_of_order),
    );
    row("  bridge: dropped (ring full), drop notices", format!("{} {}", bridge_stats["dropped_full"], sent.notices));
    row(
        "bridge RSS idle / connections held / peak",
        format!("{:.1} / {:.1} / {:.1} MiB", mib(idle.rss), mib(held.rss), mib(peak.rss)),
    );
    row("  of which the ring (shared, mapped twice)", format!("{:.1} MiB", mib(peak.rss_shmem)));
    row("  private (heap, stacks) at peak", format!("{:.1} MiB", mib(peak.rss_anon)));
    row("  private per idle connection", format!("{per_connection:.0} B"));
    row("bridge CPU", format!("{bridge_cpu:.2} s = {:.0}% of one core", 100.0 * bridge_cpu / wall.as_secs_f64()));
    row("  per message", format!("{:.2} us", bridge_cpu * 1e6 / received.records.max(1) as f64));
    row(
        "load generator + consumer CPU (this process)",
        format!("{bench_cpu:.2} s = {:.0}% of one core", 100.0 * bench_cpu / wall.as_secs_f64()),
    );
    json!({
        "connections": total,
        "rate_per_connection": args.rate,
        "message_bytes": MESSAGE_LEN,
        "seconds": wall.as_secs_f64(),
        "scheduled": scheduled,
        "sent": sent.messages,
        "generator_behind": sent.behind,
        "received": received.records,
        "delivered_fraction": delivered,
        "lost": received.gaps,
        "bad": received.bad,
        "out_of_order": received.out_of_order,
        "drop_notices": sent.notices,
        "bridge_rss_idle_bytes": idle.rss,
        "bridge_rss_held_bytes": held.rss,
        "bridge_rss_peak_bytes": peak.rss,
        "bridge_rss_peak_shmem_bytes": peak.rss_shmem,
        "bridge_rss_peak_private_bytes": peak.rss_anon,
        "bridge_private_bytes_per_idle_connection": per_connection,
        "bridge_cpu_seconds": bridge_cpu,
        "bridge_cpu_cores": bridge_cpu / wall.as_secs_f64(),
        "bridge_cpu_us_per_message": bridge_cpu * 1e6 / received.records.max(1) as f64,
        "generator_and_consumer_cpu_seconds": bench_cpu,
        "bridge_stats": bridge_stats,
    })
}
