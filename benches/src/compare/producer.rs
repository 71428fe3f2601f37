//! The producer process: connects to the consumer's endpoint and sends the
//! workload's messages, paced or flat out, then an END message.

use std::io::Write;
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use crate::clock::{now_ns, sleep_until_ns};
use crate::payload::{self, kind, HEADER_LEN};
use crate::usage::CpuTime;
use crate::CHROMIUM_WS_FRAGMENT;
use serde::{Deserialize, Serialize};
use shmring::{FullPolicy, MappedRing, Producer};
use tungstenite::protocol::frame::coding::{Data, OpCode};
use tungstenite::protocol::frame::Frame;
use tungstenite::{Bytes, Message, WebSocket};

use super::plan::{Transport, Workload};
use super::sockets;

/// Bytes of the buffer the `memcpy` floor copies into: the ring's capacity.
pub const RING_CAPACITY: usize = 64 << 20;

/// What the producer process measured.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ProducerReport {
    /// Data messages attempted.
    pub frames: u64,
    /// Messages the transport refused (a full ring past the block timeout).
    pub dropped: u64,
    /// `CLOCK_MONOTONIC` ns when the first message was handed over.
    pub start_ns: u64,
    /// `CLOCK_MONOTONIC` ns after the END message was handed over.
    pub end_ns: u64,
    /// CPU used from the first send to the end.
    pub cpu: CpuTime,
    /// What the transport did (socket buffers, WebSocket path).
    pub note: String,
}

/// Where the producer sends.
pub struct ProducerArgs {
    pub transport: Transport,
    pub workload: Workload,
    pub duration: Duration,
    pub max_frames: u64,
    /// Socket path or `host:port`; shmring reads `SHMRING_FD` instead.
    pub addr: Option<String>,
}

/// One way of handing a message of `len` bytes to the consumer. The source
/// frame stands for a decoded picture already in the producer's memory.
trait Sink {
    /// Stamps and sends message `sequence`. `Ok(false)`: dropped.
    fn send(&mut self, kind: u32, sequence: u64, len: usize) -> Result<bool, String>;
    fn note(&self) -> String {
        String::new()
    }
}

struct ShmSend {
    producer: Producer<MappedRing>,
    source: Vec<u8>,
}

impl Sink for ShmSend {
    fn send(&mut self, kind: u32, sequence: u64, len: usize) -> Result<bool, String> {
        let message = &mut self.source[..len];
        payload::stamp(message, kind, sequence, now_ns());
        match self.producer.send(kind, message) {
            Ok(()) => Ok(true),
            Err(shmring::Error::Dropped | shmring::Error::Timeout) => Ok(false),
            Err(e) => Err(format!("send: {e}")),
        }
    }
    fn note(&self) -> String {
        "Producer::send (one copy into the ring)".to_string()
    }
}

struct ShmReserve {
    producer: Producer<MappedRing>,
}

impl Sink for ShmReserve {
    fn send(&mut self, kind: u32, sequence: u64, len: usize) -> Result<bool, String> {
        let send_ns = now_ns();
        let mut slot = match self.producer.reserve(len) {
            Ok(slot) => slot,
            Err(shmring::Error::Dropped | shmring::Error::Timeout) => return Ok(false),
            Err(e) => return Err(format!("reserve: {e}")),
        };
        // The frame is produced where the consumer will read it. As for
        // every transport, producing it means stamping the header and the
        // sample words; the rest of the picture (a decoder's output) is
        // charged to no transport.
        payload::stamp(&mut slot, kind, sequence, send_ns);
        slot.set_kind(kind);
        slot.commit();
        Ok(true)
    }
    fn note(&self) -> String {
        "reserve, stamp in place, commit (no copy; GB/s counts frames handed over, pixels not rewritten)".to_string()
    }
}

struct StreamSink<S: Write> {
    stream: S,
    source: Vec<u8>,
    note: String,
}

impl<S: Write> Sink for StreamSink<S> {
    fn send(&mut self, kind: u32, sequence: u64, len: usize) -> Result<bool, String> {
        let message = &mut self.source[..len];
        payload::stamp(message, kind, sequence, now_ns());
        self.stream.write_all(message).map_err(|e| format!("write: {e}"))?;
        Ok(true)
    }
    fn note(&self) -> String {
        self.note.clone()
    }
}

struct WsSink {
    socket: WebSocket<TcpStream>,
    source: Vec<u8>,
}

impl Sink for WsSink {
    fn send(&mut self, kind: u32, sequence: u64, len: usize) -> Result<bool, String> {
        let message = &mut self.source[..len];
        payload::stamp(message, kind, sequence, now_ns());
        let err = |e: tungstenite::Error| format!("websocket write: {e}");
        if len <= CHROMIUM_WS_FRAGMENT {
            self.socket.send(Message::Binary(Bytes::copy_from_slice(message))).map_err(err)?;
            return Ok(true);
        }
        // As Chromium does: the message leaves as frames of at most
        // 131,000 bytes, each copied out of the sender's buffer (Chromium's
        // data pipe) and written with its own header and syscall;
        // tungstenite masks each one as it formats it (client role).
        let fragments = message.len().div_ceil(CHROMIUM_WS_FRAGMENT);
        for (i, chunk) in message.chunks(CHROMIUM_WS_FRAGMENT).enumerate() {
            let opcode = if i == 0 { OpCode::Data(Data::Binary) } else { OpCode::Data(Data::Continue) };
            let frame = Frame::message(Bytes::copy_from_slice(chunk), opcode, i + 1 == fragments);
            self.socket.write(Message::Frame(frame)).map_err(err)?;
        }
        self.socket.flush().map_err(err)?;
        Ok(true)
    }
    fn note(&self) -> String {
        format!(
            "tungstenite client: write(Message::Frame) of {CHROMIUM_WS_FRAGMENT}-byte fragments \
             (Binary + Continue opcodes), masked; default 128 KiB write buffer (two fragments per write syscall)"
        )
    }
}

struct MemcpySink {
    ring: Vec<u8>,
    at: usize,
    source: Vec<u8>,
}

impl Sink for MemcpySink {
    fn send(&mut self, kind: u32, sequence: u64, len: usize) -> Result<bool, String> {
        let message = &mut self.source[..len];
        payload::stamp(message, kind, sequence, now_ns());
        if self.at + len > self.ring.len() {
            self.at = 0;
        }
        self.ring[self.at..self.at + len].copy_from_slice(message);
        std::hint::black_box(&mut self.ring[self.at]);
        // Payloads are 64-byte aligned in the ring too.
        self.at = (self.at + len).next_multiple_of(64);
        Ok(true)
    }
    fn note(&self) -> String {
        "copy_from_slice into a 64 MiB buffer (no consumer)".to_string()
    }
}

/// A frame-sized buffer with every page written, so the first sends do not
/// pay for page faults.
fn source_frame(len: usize) -> Vec<u8> {
    vec![0x5a; len.max(HEADER_LEN)]
}

fn connect(args: &ProducerArgs) -> Result<Box<dyn Sink>, String> {
    let len = args.workload.message_len();
    let addr = || args.addr.clone().ok_or_else(|| "--addr is required".to_string());
    Ok(match args.transport {
        Transport::Shmring | Transport::ShmringReserve | Transport::ShmringUntouched | Transport::ShmringSpin => {
            // SAFETY: the consumer process spawned us with SHMRING_FD naming
            // descriptors it made inheritable for us alone.
            let mut producer = unsafe { Producer::from_env() }.map_err(|e| format!("attach: {e}"))?;
            // Lossless: wait for space rather than drop (the default policy
            // drops, as a renderer must); a drop still counts if it happens.
            producer.set_full_policy(FullPolicy::Block(Duration::from_secs(10)));
            if args.transport == Transport::ShmringReserve {
                Box::new(ShmReserve { producer })
            } else {
                Box::new(ShmSend { producer, source: source_frame(len) })
            }
        }
        Transport::Uds => {
            let stream = UnixStream::connect(addr()?).map_err(|e| format!("connect: {e}"))?;
            let (snd, rcv) = sockets::set_buffers(&stream, sockets::SOCKET_BUFFER);
            let note = format!("write_all per message; SO_SNDBUF {snd}, SO_RCVBUF {rcv}");
            Box::new(StreamSink { stream, source: source_frame(len), note })
        }
        Transport::Tcp => {
            let stream = TcpStream::connect(addr()?).map_err(|e| format!("connect: {e}"))?;
            stream.set_nodelay(true).map_err(|e| format!("nodelay: {e}"))?;
            let (snd, rcv) = sockets::set_buffers(&stream, sockets::SOCKET_BUFFER);
            let note = format!("write_all per message, TCP_NODELAY; SO_SNDBUF {snd}, SO_RCVBUF {rcv}");
            Box::new(StreamSink { stream, source: source_frame(len), note })
        }
        Transport::Websocket => {
            let addr = addr()?;
            let stream = TcpStream::connect(&addr).map_err(|e| format!("connect: {e}"))?;
            stream.set_nodelay(true).map_err(|e| format!("nodelay: {e}"))?;
            let (socket, _) =
                tungstenite::client(format!("ws://{addr}/"), stream).map_err(|e| format!("handshake: {e}"))?;
            Box::new(WsSink { socket, source: source_frame(len) })
        }
        // Written once so its pages are mapped before the run, like the
        // prefaulted ring.
        Transport::Memcpy => Box::new(MemcpySink { ring: vec![0xa5; RING_CAPACITY], at: 0, source: source_frame(len) }),
    })
}

/// Warm-up messages sent before the timed run: enough to go twice round a
/// ring (every page mapped in both processes, socket buffers grown), and a
/// bounded count for small messages.
fn warmup_count(len: usize) -> u64 {
    (2 * RING_CAPACITY / len).clamp(8, 20_000) as u64
}

/// How long the producer pauses after the warm-up, so the consumer has
/// drained it before the first timed message.
const SETTLE: Duration = Duration::from_millis(100);

/// How long before its deadline a busy-polling producer stops sleeping.
const SPIN_AHEAD_NS: u64 = 200_000;

/// Waits for `deadline_ns`. With `spin`, the last [`SPIN_AHEAD_NS`] are
/// busy-polled, so the producer's core is awake when it sends and the
/// busy-poll latency run measures the ring's hand-over, not the time a
/// halted core takes to come back (sleeping the rest of the interval leaves
/// the consumer's spinning the only steady load).
fn wait_until(deadline_ns: u64, spin: bool) {
    if spin {
        sleep_until_ns(deadline_ns.saturating_sub(SPIN_AHEAD_NS));
        while now_ns() < deadline_ns {
            std::hint::spin_loop();
        }
    } else {
        sleep_until_ns(deadline_ns);
    }
}

/// Runs the producer role; the report goes to stdout as one JSON line.
pub fn run(args: &ProducerArgs) -> Result<ProducerReport, String> {
    let mut sink = connect(args)?;
    let len = args.workload.message_len();
    let mut warmup = warmup_count(len);
    if args.max_frames != 0 {
        warmup = warmup.min(args.max_frames.max(8));
    }
    for sequence in 0..warmup {
        while !sink.send(kind::WARMUP, sequence, len)? {}
    }
    std::thread::sleep(SETTLE);
    let interval = args.workload.interval().map(|d| d.as_nanos() as u64);
    let duration = args.duration.as_nanos() as u64;
    let cpu_start = CpuTime::now();
    let start_ns = now_ns();
    let mut report = ProducerReport { start_ns, ..Default::default() };
    let mut sequence = 0u64;
    let spin = args.transport == Transport::ShmringSpin;
    loop {
        let due = match interval {
            Some(interval) => start_ns + sequence * interval,
            None => now_ns(),
        };
        let done =
            (args.max_frames != 0 && sequence >= args.max_frames) || (due - start_ns >= duration && sequence > 0);
        if interval.is_some() {
            // Paced: wait for the tick even after the last frame, so the
            // run lasts `frames * interval` and frames/s is the pace.
            wait_until(due, spin);
        }
        if done {
            break;
        }
        if !sink.send(kind::DATA, sequence, len)? {
            report.dropped += 1;
        }
        sequence += 1;
    }
    // The END message is never dropped: retry until the ring has room.
    while !sink.send(kind::END, sequence, HEADER_LEN)? {}
    report.frames = sequence;
    report.end_ns = now_ns();
    report.cpu = CpuTime::now().since(cpu_start);
    report.note = sink.note();
    Ok(report)
}
