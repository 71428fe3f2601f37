//! The consumer process: opens the endpoint, spawns the producer process,
//! receives and checks every message, and reports both sides.

use std::io::{BufReader, Read};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixListener;
use std::process::{Child, Stdio};
use std::time::Duration;

use crate::clock::now_ns;
use crate::payload::{self, kind, HEADER_LEN};
use crate::usage::CpuTime;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use shmring::{Consumer, RingOptions};
use tungstenite::Message;

use super::plan::{Transport, Workload};
use super::producer::{ProducerReport, RING_CAPACITY};
use super::sockets;
use super::Relaunch;

/// What the consumer process measured.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ConsumerReport {
    /// Data messages received intact.
    pub frames: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Messages that failed the check (wrong header, length or samples).
    pub corrupt: u64,
    /// Messages whose sequence was not the next one expected.
    pub out_of_order: u64,
    /// `CLOCK_MONOTONIC` ns when the last data message was received.
    pub end_ns: u64,
    /// CPU used from the first message received to the END message.
    pub cpu: CpuTime,
    /// Send-to-receipt latency, when the payload was read.
    pub latency: Option<Latency>,
    /// Times the consumer went to sleep for lack of data (shmring only).
    pub sleeps: Option<u64>,
    /// Times a producer slept for lack of space (shmring only).
    pub producer_waits: Option<u64>,
    /// How the consumer waited and read.
    pub note: String,
}

/// Latency percentiles in microseconds.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub struct Latency {
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
}

/// Both sides of one run, as the consumer process prints it.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RunReport {
    pub producer: ProducerReport,
    pub consumer: Option<ConsumerReport>,
}

/// What the consumer role needs to know.
pub struct ConsumerArgs {
    pub transport: Transport,
    pub workload: Workload,
    pub duration: Duration,
    pub max_frames: u64,
}

/// Counts what arrives, the same way for every transport.
struct Tally {
    next_sequence: u64,
    report: ConsumerReport,
    histogram: Histogram<u64>,
    cpu_start: Option<CpuTime>,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            next_sequence: 0,
            report: ConsumerReport::default(),
            // 1 ns to 100 s at 3 significant figures.
            histogram: Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("valid histogram bounds"),
            cpu_start: None,
        }
    }

    /// CPU is counted from the first timed message on, so process start-up,
    /// the warm-up and the wait for the producer are left out. Returns
    /// whether this is the first one.
    fn started(&mut self) -> bool {
        if self.cpu_start.is_none() {
            self.cpu_start = Some(CpuTime::now());
            return true;
        }
        false
    }

    /// A message read in full: check it, time it. Returns `true` at END.
    fn message(&mut self, message: &[u8], received_ns: u64) -> bool {
        match payload::verify(message) {
            Ok(header) if header.kind == kind::WARMUP => {}
            Ok(header) if header.kind == kind::END => return true,
            Ok(header) => {
                self.started();
                self.sequence(header.sequence, message.len(), received_ns);
                self.histogram.saturating_record(received_ns.saturating_sub(header.send_ns));
            }
            Err(_) => self.report.corrupt += 1,
        }
        false
    }

    /// A message whose payload is left untouched (shmring only: the record
    /// carries kind, length and sequence). Returns `true` at END.
    fn untouched(&mut self, kind: u32, sequence: u64, len: usize, received_ns: u64) -> bool {
        match kind {
            kind::END => return true,
            kind::WARMUP => {}
            _ => {
                if self.started() {
                    // Record sequences count the warm-up too.
                    self.next_sequence = sequence;
                }
                self.sequence(sequence, len, received_ns);
            }
        }
        false
    }

    fn sequence(&mut self, sequence: u64, len: usize, received_ns: u64) {
        if sequence != self.next_sequence {
            self.report.out_of_order += 1;
        }
        self.next_sequence = sequence + 1;
        self.report.frames += 1;
        self.report.bytes += len as u64;
        self.report.end_ns = received_ns;
    }

    fn finish(mut self, note: String, timed: bool) -> ConsumerReport {
        self.report.cpu = CpuTime::now().since(self.cpu_start.unwrap_or_else(CpuTime::now));
        self.report.note = note;
        if timed && !self.histogram.is_empty() {
            let us = |ns: u64| ns as f64 / 1000.0;
            let h = &self.histogram;
            self.report.latency = Some(Latency {
                p50_us: us(h.value_at_quantile(0.5)),
                p99_us: us(h.value_at_quantile(0.99)),
                p999_us: us(h.value_at_quantile(0.999)),
                max_us: us(h.max()),
            });
        }
        self.report
    }
}

fn spawn_producer(
    args: &ConsumerArgs,
    relaunch: &Relaunch,
    addr: Option<&str>,
    shmring_fd: Option<&str>,
) -> Result<Child, String> {
    let mut command = relaunch.command()?;
    command
        .args(["--role", "producer", "--transport", args.transport.name(), "--workload", args.workload.name()])
        .args(["--duration-ms", &args.duration.as_millis().to_string()])
        .args(["--max-frames", &args.max_frames.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    if let Some(addr) = addr {
        command.args(["--addr", addr]);
    }
    if let Some(spec) = shmring_fd {
        command.env("SHMRING_FD", spec);
    }
    command.spawn().map_err(|e| format!("spawn producer: {e}"))
}

fn producer_report(child: Child) -> Result<ProducerReport, String> {
    let output = child.wait_with_output().map_err(|e| format!("wait for producer: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().last().unwrap_or("");
    if !output.status.success() {
        return Err(format!("producer failed ({}): {line}", output.status));
    }
    serde_json::from_str(line).map_err(|e| format!("producer report {line:?}: {e}"))
}

/// Runs the consumer role (and, through it, the producer process).
pub fn run(args: &ConsumerArgs, relaunch: &Relaunch) -> Result<RunReport, String> {
    let (consumer, child) = match args.transport {
        t if t.is_shmring() => shmring(args, relaunch)?,
        Transport::Uds => uds(args, relaunch)?,
        Transport::Tcp => tcp(args, relaunch)?,
        Transport::Websocket => websocket(args, relaunch)?,
        _ => return Err(format!("{} has no consumer process", args.transport)),
    };
    let producer = producer_report(child)?;
    Ok(RunReport { producer, consumer: Some(consumer) })
}

fn shmring(args: &ConsumerArgs, relaunch: &Relaunch) -> Result<(ConsumerReport, Child), String> {
    let options = RingOptions { prefault: true, ..RingOptions::with_capacity(RING_CAPACITY as u64) };
    let ring = Consumer::create_anonymous(&options).map_err(|e| format!("create ring: {e}"))?;
    let child = {
        let fds = ring.fds().inheritable().map_err(|e| format!("inheritable fds: {e}"))?;
        spawn_producer(args, relaunch, None, Some(fds.spec()))?
        // `fds` closes here: only the child keeps the duplicates.
    };
    let spin = args.transport == Transport::ShmringSpin;
    let touch = args.transport.touches_payload();
    let mut tally = Tally::new();
    let mut stats_at_start = None;
    loop {
        let frame = if spin {
            loop {
                match ring.try_recv() {
                    Ok(Some(frame)) => break frame,
                    Ok(None) => std::hint::spin_loop(),
                    Err(e) => return Err(format!("try_recv: {e}")),
                }
            }
        } else {
            ring.recv().map_err(|e| format!("recv: {e}"))?
        };
        let received_ns = now_ns();
        let end = if touch {
            // SAFETY: the only producer is this comparison's own child, which
            // writes through `shmring::Producer` and never touches a record
            // after publishing it; checking in place is what is measured.
            tally.message(unsafe { frame.bytes().as_slice() }, received_ns)
        } else {
            tally.untouched(frame.kind(), frame.sequence(), frame.len(), received_ns)
        };
        drop(frame);
        if end {
            break;
        }
        if stats_at_start.is_none() && tally.cpu_start.is_some() {
            stats_at_start = Some(ring.stats());
        }
    }
    let wait = if spin { "busy-poll try_recv" } else { "recv (sleeps on the data futex word when empty)" };
    let read = if touch { "payload checked in place" } else { "payload untouched (recv + drop)" };
    let mut report = tally.finish(format!("{wait}; {read}"), touch);
    if let Some(start) = stats_at_start {
        let end = ring.stats();
        report.sleeps = Some(end.consumer_sleeps - start.consumer_sleeps);
        report.producer_waits = Some(end.producer_waits - start.producer_waits);
    }
    Ok((report, child))
}

/// Reads length-prefixed messages (the header carries the length) from a
/// byte stream into one reused buffer.
fn read_stream(stream: impl Read, note: String) -> Result<ConsumerReport, String> {
    let mut reader = BufReader::with_capacity(256 << 10, stream);
    let mut buffer = vec![0u8; HEADER_LEN];
    let mut tally = Tally::new();
    loop {
        buffer.resize(HEADER_LEN, 0);
        reader.read_exact(&mut buffer).map_err(|e| format!("read header: {e}"))?;
        let len = payload::read_header(&buffer).ok_or("bad header on the stream")?.len as usize;
        if !(HEADER_LEN..=1 << 30).contains(&len) {
            return Err(format!("impossible message length {len}"));
        }
        buffer.resize(len, 0);
        reader.read_exact(&mut buffer[HEADER_LEN..]).map_err(|e| format!("read payload: {e}"))?;
        if tally.message(&buffer, now_ns()) {
            break;
        }
    }
    Ok(tally.finish(note, true))
}

fn uds(args: &ConsumerArgs, relaunch: &Relaunch) -> Result<(ConsumerReport, Child), String> {
    let path = std::env::temp_dir().join(format!("shmring-compare-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).map_err(|e| format!("bind {}: {e}", path.display()))?;
    let child = spawn_producer(args, relaunch, Some(&path.to_string_lossy()), None)?;
    let accepted = listener.accept();
    let _ = std::fs::remove_file(&path);
    let (stream, _) = accepted.map_err(|e| format!("accept: {e}"))?;
    let (snd, rcv) = sockets::set_buffers(&stream, sockets::SOCKET_BUFFER);
    let note = format!("blocking read through a 256 KiB BufReader; SO_SNDBUF {snd}, SO_RCVBUF {rcv}");
    Ok((read_stream(stream, note)?, child))
}

fn tcp_accept(args: &ConsumerArgs, relaunch: &Relaunch) -> Result<(TcpStream, Child), String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
    let addr = listener.local_addr().map_err(|e| format!("local_addr: {e}"))?.to_string();
    let child = spawn_producer(args, relaunch, Some(&addr), None)?;
    let (stream, _) = listener.accept().map_err(|e| format!("accept: {e}"))?;
    stream.set_nodelay(true).map_err(|e| format!("nodelay: {e}"))?;
    Ok((stream, child))
}

fn tcp(args: &ConsumerArgs, relaunch: &Relaunch) -> Result<(ConsumerReport, Child), String> {
    let (stream, child) = tcp_accept(args, relaunch)?;
    let (snd, rcv) = sockets::set_buffers(&stream, sockets::SOCKET_BUFFER);
    let note = format!("blocking read through a 256 KiB BufReader, TCP_NODELAY; SO_SNDBUF {snd}, SO_RCVBUF {rcv}");
    Ok((read_stream(stream, note)?, child))
}

fn websocket(args: &ConsumerArgs, relaunch: &Relaunch) -> Result<(ConsumerReport, Child), String> {
    let (stream, child) = tcp_accept(args, relaunch)?;
    let mut socket = tungstenite::accept(stream).map_err(|e| format!("websocket handshake: {e}"))?;
    let mut tally = Tally::new();
    loop {
        match socket.read() {
            Ok(Message::Binary(message)) => {
                if tally.message(&message, now_ns()) {
                    break;
                }
            }
            Ok(Message::Close(_)) | Err(tungstenite::Error::ConnectionClosed) => {
                return Err("websocket closed before END".to_string())
            }
            Ok(_) => {}
            Err(e) => return Err(format!("websocket read: {e}")),
        }
    }
    let note = "tungstenite server: read() unmasks and reassembles fragments into Message::Binary".to_string();
    Ok((tally.finish(note, true), child))
}
