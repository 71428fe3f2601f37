//! The transport comparison: shmring against loopback WebSocket, Unix
//! socket and TCP, and a memcpy floor, in real separate processes. The
//! `compare` binary is a thin wrapper around [`main`]; another binary (the
//! `shmring bench` subcommand) can host it the same way through
//! [`Relaunch`].
//!
//! ```text
//! cargo run --release -p shmring-benches --bin compare -- [--quick] [--json FILE] [--svg FILE]
//!     [--seconds S] [--frames N] [--repeat N] [--transports a,b,..] [--workloads a,b,..]
//! ```
//!
//! For every transport and workload this process spawns itself as the
//! consumer (`--role consumer`), which opens its endpoint and spawns itself
//! again as the producer (`--role producer`). Each measures its own CPU with
//! `getrusage(RUSAGE_SELF)` and the reports travel back as JSON lines on
//! stdout. The Markdown table goes to stdout, progress to stderr.

mod chart;
mod consumer;
mod plan;
mod producer;
mod report;
mod sockets;

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use crate::machine::Machine;

use consumer::{ConsumerArgs, RunReport};
use plan::{Limits, Transport, Workload, TRANSPORTS, WORKLOADS};
use producer::{ProducerArgs, ProducerReport};
use report::{Document, Row};

/// How the comparison starts its producer and consumer processes: this
/// program again, with `prefix` before the role arguments (for a host binary
/// where the comparison is a subcommand), and how to show the command.
#[derive(Clone, Debug)]
pub struct Relaunch {
    /// Arguments that lead back into [`main`] (e.g. `["bench"]`).
    pub prefix: Vec<String>,
    /// The command printed with the results.
    pub display: String,
}

impl Default for Relaunch {
    fn default() -> Self {
        Relaunch { prefix: Vec::new(), display: "cargo run --release -p shmring-benches --bin compare --".to_string() }
    }
}

impl Relaunch {
    /// A command that runs this program in another role.
    fn command(&self) -> Result<Command, String> {
        let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
        let mut command = Command::new(exe);
        command.args(&self.prefix);
        Ok(command)
    }
}

const USAGE: &str = "usage: compare [--quick] [--json FILE] [--svg FILE] [--seconds S] [--frames N] \
[--repeat N] [--transports a,b,..] [--workloads a,b,..]
  --quick        paced video 3 s, other runs 1 s (default 10 s and 3 s)
  --seconds S    every run lasts S seconds
  --frames N     at most N messages per run
  --repeat N     N rounds over every run; each figure is the median run (default 1)
  --transports   shmring, shmring-reserve, shmring-untouched, shmring-spin, websocket, uds, tcp, memcpy
  --workloads    video-1080p30, video-max, small-64, small-4k, latency-64 (also: video, small)";

struct Options {
    json: Option<PathBuf>,
    svg: Option<PathBuf>,
    limits: Limits,
    repeat: usize,
    transports: Vec<Transport>,
    workloads: Vec<Workload>,
    command: String,
}

enum Role {
    Compare(Options),
    Producer(ProducerArgs),
    Consumer(ConsumerArgs),
}

fn parse_list<T>(value: &str, parse: impl Fn(&str) -> Result<Vec<T>, String>) -> Result<Vec<T>, String> {
    let mut out = Vec::new();
    for item in value.split(',').filter(|s| !s.is_empty()) {
        out.extend(parse(item)?);
    }
    Ok(out)
}

fn parse_workloads(item: &str) -> Result<Vec<Workload>, String> {
    Ok(match item {
        "video" => vec![Workload::Video1080p30, Workload::VideoMax],
        "small" => vec![Workload::Small64, Workload::Small4k, Workload::Latency],
        _ => vec![item.parse()?],
    })
}

fn parse(args: &[String], relaunch: &Relaunch) -> Result<Role, String> {
    let mut role = None;
    let mut quick = false;
    let mut seconds: Option<f64> = None;
    let mut duration_ms: Option<u64> = None;
    let mut max_frames = 0u64;
    let mut repeat = 1usize;
    let mut json = None;
    let mut svg = None;
    let mut transports: Vec<Transport> = TRANSPORTS.to_vec();
    let mut workloads: Vec<Workload> = WORKLOADS.to_vec();
    let mut transport = None;
    let mut workload = None;
    let mut addr = None;
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || it.next().cloned().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--quick" => quick = true,
            "--json" => json = Some(PathBuf::from(value()?)),
            "--svg" => svg = Some(PathBuf::from(value()?)),
            "--seconds" => seconds = Some(value()?.parse().map_err(|_| "--seconds takes a number")?),
            "--frames" | "--max-frames" => max_frames = value()?.parse().map_err(|_| "--frames takes a count")?,
            "--repeat" => {
                repeat = value()?.parse().map_err(|_| "--repeat takes a count")?;
                if repeat == 0 {
                    return Err("--repeat takes a count of at least 1".to_string());
                }
            }
            "--transports" => transports = parse_list(&value()?, |s| Ok(vec![s.parse()?]))?,
            "--workloads" => workloads = parse_list(&value()?, parse_workloads)?,
            "--role" => role = Some(value()?),
            "--transport" => transport = Some(value()?.parse::<Transport>()?),
            "--workload" => workload = Some(value()?.parse::<Workload>()?),
            "--duration-ms" => duration_ms = Some(value()?.parse().map_err(|_| "--duration-ms takes a count")?),
            "--addr" => addr = Some(value()?),
            "-h" | "--help" => return Err(USAGE.to_string()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    let duration = Duration::from_millis(duration_ms.unwrap_or(1000));
    let need = |what: &str| format!("--role needs --{what}");
    match role.as_deref() {
        None => {
            let (paced, other) = if quick { (3.0, 1.0) } else { (10.0, 3.0) };
            let limits = Limits {
                paced_video: Duration::from_secs_f64(seconds.unwrap_or(paced)),
                other: Duration::from_secs_f64(seconds.unwrap_or(other)),
                max_frames,
            };
            // The command that reproduces the run (output paths left out).
            let mut command = vec![relaunch.display.clone()];
            let mut rest = args.iter();
            while let Some(arg) = rest.next() {
                if arg == "--json" || arg == "--svg" {
                    rest.next();
                } else {
                    command.push(arg.clone());
                }
            }
            Ok(Role::Compare(Options { json, svg, limits, repeat, transports, workloads, command: command.join(" ") }))
        }
        Some("producer") => Ok(Role::Producer(ProducerArgs {
            transport: transport.ok_or_else(|| need("transport"))?,
            workload: workload.ok_or_else(|| need("workload"))?,
            duration,
            max_frames,
            addr,
        })),
        Some("consumer") => Ok(Role::Consumer(ConsumerArgs {
            transport: transport.ok_or_else(|| need("transport"))?,
            workload: workload.ok_or_else(|| need("workload"))?,
            duration,
            max_frames,
        })),
        Some(other) => Err(format!("unknown role {other:?}")),
    }
}

/// Runs one transport on one workload in child processes.
fn run_one(
    relaunch: &Relaunch,
    transport: Transport,
    workload: Workload,
    limits: &Limits,
) -> Result<RunReport, String> {
    let duration = limits.for_workload(workload);
    let role = if transport == Transport::Memcpy { "producer" } else { "consumer" };
    let mut child = relaunch
        .command()?
        .args(["--role", role, "--transport", transport.name(), "--workload", workload.name()])
        .args(["--duration-ms", &duration.as_millis().to_string()])
        .args(["--max-frames", &limits.max_frames.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn: {e}"))?;
    // A run that hangs must not hang the comparison.
    let deadline = Instant::now() + duration + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| format!("wait: {e}"))? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err("timed out".to_string());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stdout = String::new();
    if let Some(mut out) = child.stdout.take() {
        out.read_to_string(&mut stdout).map_err(|e| format!("read report: {e}"))?;
    }
    let line = stdout.lines().last().unwrap_or("");
    if !status.success() {
        return Err(format!("{status}: {line}"));
    }
    if transport == Transport::Memcpy {
        let producer: ProducerReport = serde_json::from_str(line).map_err(|e| format!("report {line:?}: {e}"))?;
        return Ok(RunReport { producer, consumer: None });
    }
    serde_json::from_str(line).map_err(|e| format!("report {line:?}: {e}"))
}

fn compare(options: Options, relaunch: &Relaunch) -> Result<bool, String> {
    let machine = Machine::detect();
    let cells: Vec<(Workload, Transport)> = options
        .workloads
        .iter()
        .flat_map(|&w| options.transports.iter().filter(move |t| t.runs(w)).map(move |&t| (w, t)))
        .collect();
    // Rounds over every cell rather than repeats back to back, so that a
    // burst of other work on a shared machine disturbs one run of a cell,
    // not all of them.
    let mut runs: Vec<Vec<Row>> = vec![Vec::new(); cells.len()];
    let mut failures = Vec::new();
    for round in 1..=options.repeat {
        if options.repeat > 1 {
            eprintln!("round {round} of {}", options.repeat);
        }
        for (&(workload, transport), cell) in cells.iter().zip(&mut runs) {
            eprint!("{workload:>14} {transport:<18} ");
            match run_one(relaunch, transport, workload, &options.limits) {
                Ok(run) => {
                    let row = Row::new(transport, workload, &run);
                    eprintln!(
                        "{} frames, {:.3} GB/s, {:.3} CPU s/GB, lost {}",
                        row.frames, row.gb_per_s, row.cpu_s_per_gb, row.lost
                    );
                    cell.push(row);
                }
                Err(e) => {
                    eprintln!("FAILED: {e}");
                    failures.push(format!("{workload} {transport} (round {round}): {e}"));
                }
            }
        }
    }
    let rows: Vec<Row> = runs.into_iter().filter_map(report::median_run).collect();
    let recv_drop_ms = if options.transports.contains(&Transport::ShmringUntouched) {
        match recv_drop_cost() {
            Ok(ms) => Some(ms),
            Err(e) => {
                failures.push(format!("recv + drop cost: {e}"));
                None
            }
        }
    } else {
        None
    };
    let targets = report::targets(&rows, recv_drop_ms);
    println!("## Transport comparison\n");
    println!(
        "Machine: {} cores, {}, Linux {}; load average {:.2} before the runs, {:.2} after.",
        machine.cores,
        machine.cpu_model,
        machine.kernel,
        machine.load_average,
        crate::machine::load_average()
    );
    println!("Command: `{}`\n", options.command);
    if options.repeat > 1 {
        println!(
            "Each row is the median of {} runs (by CPU s/GB; latency-64 by p50), taken in {} rounds over every \
             transport and workload.\n",
            options.repeat, options.repeat
        );
    }
    print!("{}", report::table(&rows));
    println!();
    print!("{}", report::targets_table(&targets));
    println!();
    println!("How each transport ran:\n");
    let mut seen = Vec::new();
    for row in &rows {
        if !seen.contains(&row.transport) {
            seen.push(row.transport.clone());
            let consumer = if row.consumer_note.is_empty() { "-" } else { &row.consumer_note };
            println!("- `{}`: producer: {}; consumer: {}", row.transport, row.producer_note, consumer);
        }
    }
    println!(
        "\nCPU is user + system time of each process (getrusage), producer from its first send, consumer \
         from its first receipt; CPU s/GB adds both. Latency is CLOCK_MONOTONIC from the producer's hand-over \
         to the consumer's receipt. Every consumer except shmring-untouched checks a sample word per 4 KiB \
         page of every message; lost = sent - received intact."
    );
    for failure in &failures {
        println!("\nFAILED: {failure}");
    }
    let document = Document { machine: &machine, command: options.command.clone(), results: &rows, targets };
    if let Some(path) = &options.json {
        let text = serde_json::to_string_pretty(&document).map_err(|e| format!("json: {e}"))?;
        std::fs::write(path, text + "\n").map_err(|e| format!("write {}: {e}", path.display()))?;
    }
    if let Some(path) = &options.svg {
        chart::write(&rows, path)?;
    }
    Ok(failures.is_empty())
}

/// Runs the comparison, or one of its roles when started by it. `args`
/// are the arguments after the program name (and after `relaunch.prefix`).
pub fn main(args: &[String], relaunch: &Relaunch) -> ExitCode {
    let role = match parse(args, relaunch) {
        Ok(role) => role,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let result = match role {
        Role::Compare(options) => {
            compare(options, relaunch).map(|ok| if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Role::Producer(args) => producer::run(&args).and_then(|report| print_json(&report)),
        Role::Consumer(args) => consumer::run(&args, relaunch).and_then(|report| print_json(&report)),
    };
    result.unwrap_or_else(|e| {
        eprintln!("compare: {e}");
        ExitCode::FAILURE
    })
}

/// The consumer's own cost per frame with the payload untouched, without the
/// wake-ups a sleeping consumer pays: rounds of 20 1080p records are
/// committed (nothing written into them), then received and dropped under
/// the clock. Milliseconds per frame, averaged over every round.
pub fn recv_drop_cost() -> Result<f64, String> {
    use shmring::{Consumer, RingOptions};
    const ROUNDS: usize = 200;
    const BATCH: usize = 20;
    let options = RingOptions { prefault: true, ..RingOptions::with_capacity(producer::RING_CAPACITY as u64) };
    let ring = Consumer::create_anonymous(&options).map_err(|e| format!("create ring: {e}"))?;
    let mut producer = ring.producer().map_err(|e| format!("producer: {e}"))?;
    let mut timed = Duration::ZERO;
    for _ in 0..ROUNDS {
        for _ in 0..BATCH {
            producer.reserve(crate::FRAME_1080P).map_err(|e| format!("reserve: {e}"))?.commit();
        }
        let start = Instant::now();
        for _ in 0..BATCH {
            let frame = ring.try_recv().map_err(|e| format!("recv: {e}"))?.ok_or("frame missing")?;
            std::hint::black_box(frame.kind());
        }
        timed += start.elapsed();
    }
    Ok(timed.as_secs_f64() * 1e3 / (ROUNDS * BATCH) as f64)
}

fn print_json(value: &impl serde::Serialize) -> Result<ExitCode, String> {
    println!("{}", serde_json::to_string(value).map_err(|e| format!("json: {e}"))?);
    Ok(ExitCode::SUCCESS)
}
