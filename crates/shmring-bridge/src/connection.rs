//! One client connection: its HTTP request, then the WebSocket session
//! whose binary messages are read from the socket straight into reserved
//! ring slots.
//!
//! A connection owns no read buffer. Bytes are read into the worker's
//! scratch buffer and parsed from there (frame headers, text, control
//! frames, the media header), except for the bulk of a binary message: once
//! its header has been checked and its slot reserved, each fragment's
//! payload is read by the kernel directly into the slot (`readv` with the
//! slot first and a few bytes of scratch after it, for the next frame
//! header) and unmasked there, while it is still in cache. What an idle
//! connection holds is this struct: a few hundred bytes.

use std::borrow::Cow;
use std::io::{self, IoSliceMut, Read, Write};
use std::net::Shutdown;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use mio::net::TcpStream;

use crate::frames::{self, FrameHead, Opcode, MAX_CONTROL_PAYLOAD, MAX_HEADER};
use crate::http::{Answer, Parsed, Site, MAX_REQUEST};
use crate::inflight::{InFlight, Pool};
use crate::protocol::{
    dropped_notice, parse_text, ready_notice, HeaderError, MessagePlan, StreamSpec, TextError, MAX_MEDIA_HEADER,
    MAX_TEXT, STREAM_ID_OFFSET,
};
use crate::stats::Counters;

/// A frame payload at least this long is read straight into its slot;
/// shorter runs come through the scratch buffer (one small copy).
const DIRECT_MIN: usize = 2048;
/// A message longer than this makes the next read stop after the next
/// message's headers, so its body too can be read in place.
const LARGE_MESSAGE: usize = 64 * 1024;
/// Output (replies, notices, pongs) allowed to queue for a client that does
/// not read; past it notices and pongs are not queued, and past four times
/// it the connection is dropped.
const OUTBOX_SOFT_LIMIT: usize = 16 * 1024;
/// While a large message is being read, the socket wakes the worker only
/// once this much of it (or all that is left) has arrived (SO_RCVLOWAT):
/// three wake-ups per 1080p frame instead of one per TCP segment (1 MiB
/// measured 0.60-0.70 ms of bridge CPU per frame against 0.87 ms at 256 KiB).
const LOW_WATER: usize = 1024 * 1024;
/// How long a closing connection may take to read our close frame and hang up.
const CLOSE_LINGER: Duration = Duration::from_secs(2);

/// The limits a connection enforces, resolved against the ring.
#[derive(Clone, Debug)]
pub(crate) struct Limits {
    pub max_message: usize,
    pub handshake_timeout: Duration,
    pub message_timeout: Duration,
    pub idle_timeout: Duration,
}

/// What a connection may touch in its worker.
pub(crate) struct Env<'a> {
    pub pool: &'a mut Pool,
    pub counters: &'a Counters,
    pub limits: &'a Limits,
    pub site: &'a Site,
    pub next_stream_id: &'a AtomicU32,
    pub now: Instant,
}

/// Why a session ends.
#[derive(Debug)]
enum End {
    /// The bridge closes with `code` and a reason.
    Close { code: u16, reason: Cow<'static, str> },
    /// The client sent a close frame with `code`.
    ClientClosed { code: u16 },
}

fn close(code: u16, reason: impl Into<Cow<'static, str>>) -> End {
    End::Close { code, reason: reason.into() }
}

/// Close codes (RFC 6455 section 7.4.1).
pub(crate) mod code {
    pub const NORMAL: u16 = 1000;
    pub const GOING_AWAY: u16 = 1001;
    pub const PROTOCOL_ERROR: u16 = 1002;
    pub const UNSUPPORTED_DATA: u16 = 1003;
    pub const INVALID_PAYLOAD: u16 = 1007;
    pub const POLICY: u16 = 1008;
    pub const TOO_BIG: u16 = 1009;
    pub const INTERNAL: u16 = 1011;
}

/// Frames queued for the client.
#[derive(Default)]
struct Outbox {
    buf: Vec<u8>,
    sent: usize,
}

impl Outbox {
    fn pending(&self) -> usize {
        self.buf.len() - self.sent
    }

    fn has_room(&self) -> bool {
        self.pending() < OUTBOX_SOFT_LIMIT
    }

    /// Writes until done or the socket is full.
    fn flush(&mut self, stream: &mut TcpStream) -> io::Result<()> {
        while self.sent < self.buf.len() {
            match stream.write(&self.buf[self.sent..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.sent += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        if self.sent == self.buf.len() {
            self.sent = 0;
            self.buf.clear();
            if self.buf.capacity() > 1024 {
                self.buf = Vec::new(); // an idle connection keeps no buffer
            }
        }
        Ok(())
    }
}

/// The frame being read.
#[derive(Clone, Copy)]
struct CurrentFrame {
    opcode: Opcode,
    fin: bool,
    /// Payload bytes still to come.
    remaining: u64,
    /// Payload bytes read so far (the mask's phase).
    offset: u64,
    key: [u8; 4],
}

/// The data message being read.
enum Message {
    None,
    Text(Vec<u8>),
    /// Collecting the media header (in `Session::media_head`); `frames_len`
    /// is the sum of the lengths of the message's frames seen so far.
    Header {
        frames_len: u64,
    },
    /// Reading into a reserved slot.
    Body {
        inflight: InFlight,
        plan: MessagePlan,
        written: usize,
        frames_len: u64,
        reserved_at: Instant,
    },
    /// Reading and throwing away a message that has no slot (ring full,
    /// or its slot given up after `message_timeout`).
    Discard {
        plan: MessagePlan,
        seen: u64,
        frames_len: u64,
    },
}

struct Session {
    stream_id: u32,
    spec: Option<StreamSpec>,
    head: [u8; MAX_HEADER],
    head_len: usize,
    frame: Option<CurrentFrame>,
    message: Message,
    message_started: Option<Instant>,
    media_head: [u8; MAX_MEDIA_HEADER],
    media_head_len: usize,
    control: [u8; MAX_CONTROL_PAYLOAD],
    control_len: usize,
    last_frame_number: Option<u64>,
    dropped: u64,
    last_message_large: bool,
}

enum State {
    Request { buf: Vec<u8>, deadline: Instant },
    Open(Box<Session>),
    Closing { deadline: Instant, write_shut: bool },
    Done,
}

/// One client connection.
pub(crate) struct Connection {
    pub stream: TcpStream,
    state: State,
    out: Outbox,
    last_read: Instant,
    ping_outstanding: bool,
    /// The socket's SO_RCVLOWAT as last set.
    low_water: usize,
    /// Waiting for a free producer before reading on.
    pub parked: bool,
}

fn retry<T>(mut op: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    loop {
        match op() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

impl Connection {
    pub(crate) fn new(stream: TcpStream, now: Instant, limits: &Limits) -> Connection {
        Connection {
            stream,
            state: State::Request { buf: Vec::new(), deadline: now + limits.handshake_timeout },
            out: Outbox::default(),
            last_read: now,
            ping_outstanding: false,
            low_water: 1,
            parked: false,
        }
    }

    /// Whether the worker should drop this connection.
    pub(crate) fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// Reads what the socket has, until it would block (or the connection
    /// must wait for a producer: then `parked` is set).
    pub(crate) fn on_readable(&mut self, env: &mut Env<'_>, scratch: &mut [u8]) {
        self.parked = false;
        loop {
            let drained = match self.state {
                State::Done => return,
                State::Request { .. } => self.read_request(env, scratch),
                State::Closing { .. } => self.read_and_discard(env, scratch),
                State::Open(ref session) => {
                    if session.needs_producer() && !env.pool.has_free() {
                        self.parked = true;
                        break;
                    }
                    self.read_open(env, scratch)
                }
            };
            // Lowering the low-water mark with bytes already queued may
            // not raise a new edge: read once more after lowering it.
            if drained && !self.sync_low_water() {
                break;
            }
        }
        self.on_writable(env);
    }

    /// Sets SO_RCVLOWAT for what the session waits for next: a good part
    /// of a large message's body, or any byte. Returns whether it lowered it.
    fn sync_low_water(&mut self) -> bool {
        let wanted = match &self.state {
            State::Open(session) => session.body_left().map_or(1, |left| left.clamp(1, LOW_WATER)),
            _ => 1,
        };
        // Only worth a system call when it changes by much: at the start
        // and end of a large message.
        let stale =
            wanted != self.low_water && (wanted < DIRECT_MIN || self.low_water < DIRECT_MIN || wanted < self.low_water);
        if stale && set_receive_low_water(&self.stream, wanted).is_ok() {
            let lowered = wanted < self.low_water;
            self.low_water = wanted;
            return lowered;
        }
        false
    }

    /// Flushes queued output; finishes a close once it is written.
    pub(crate) fn on_writable(&mut self, env: &mut Env<'_>) {
        if matches!(self.state, State::Done) {
            return;
        }
        if self.out.flush(&mut self.stream).is_err() || self.out.pending() > 4 * OUTBOX_SOFT_LIMIT {
            self.finish(env);
            return;
        }
        if let State::Closing { write_shut, .. } = &mut self.state {
            if !*write_shut && self.out.pending() == 0 {
                *write_shut = true;
                // We are done writing; the client's reply (its close frame,
                // EOF) is read and discarded until the linger ends.
                let _ = self.stream.shutdown(Shutdown::Write);
            }
        }
    }

    /// Timeouts, pings. Called by the worker every tick.
    pub(crate) fn on_tick(&mut self, env: &mut Env<'_>, scratch: &mut [u8]) {
        let now = env.now;
        let idle = env.limits.idle_timeout;
        let result = match &mut self.state {
            State::Done => return,
            State::Request { deadline, .. } => {
                if now >= *deadline {
                    Counters::bump(&env.counters.handshake_timeouts);
                    self.finish(env);
                }
                return;
            }
            State::Closing { deadline, .. } => {
                if now >= *deadline {
                    self.finish(env);
                }
                return;
            }
            State::Open(session) => {
                let silent = now.saturating_duration_since(self.last_read);
                if silent >= idle {
                    Counters::bump(&env.counters.idle_timeouts);
                    Err(close(code::POLICY, format!("no data for {} s", idle.as_secs())))
                } else {
                    if silent >= idle / 2 && !self.ping_outstanding && self.out.has_room() {
                        frames::push_ping(b"shmring", &mut self.out.buf);
                        self.ping_outstanding = true;
                    }
                    session.on_tick(env, &mut self.out)
                }
            }
        };
        if let Err(end) = result {
            self.end_session(end, env);
        }
        if self.sync_low_water() {
            // Bytes may be queued below the old mark (see `on_readable`).
            self.on_readable(env, scratch);
        }
        self.on_writable(env);
    }

    /// Closes at shutdown: a close frame with 1001, best effort.
    pub(crate) fn shut_down(&mut self, env: &mut Env<'_>) {
        if let State::Open(_) = self.state {
            self.end_session(close(code::GOING_AWAY, "bridge shutting down"), env);
            let _ = self.out.flush(&mut self.stream);
        }
        self.finish(env);
    }

    /// Drops the connection now (abandoning a message in flight).
    fn finish(&mut self, env: &mut Env<'_>) {
        if let State::Open(session) = &mut self.state {
            session.abandon(env);
        }
        if !matches!(self.state, State::Done) {
            Counters::bump(&env.counters.closed);
        }
        self.state = State::Done;
    }

    fn end_session(&mut self, end: End, env: &mut Env<'_>) {
        let State::Open(session) = &mut self.state else {
            return;
        };
        session.abandon(env);
        match end {
            End::Close { code, reason } => {
                tracing::debug!(stream_id = session.stream_id, code, %reason, "closing connection");
                frames::push_close(code, &reason, &mut self.out.buf);
                env.counters.close_sent(code);
            }
            End::ClientClosed { code } => {
                Counters::bump(&env.counters.client_closes);
                // Echo the client's code; an empty close (1005) gets 1000.
                let echo = if frames::close_code_allowed(code) { code } else { code::NORMAL };
                frames::push_close(echo, "", &mut self.out.buf);
            }
        }
        self.state = State::Closing { deadline: env.now + CLOSE_LINGER, write_shut: false };
    }

    /// Reads the HTTP request. Returns whether the socket is drained.
    fn read_request(&mut self, env: &mut Env<'_>, scratch: &mut [u8]) -> bool {
        let State::Request { buf, .. } = &mut self.state else { unreachable!() };
        // `buf` stays shorter than MAX_REQUEST: a request head that reaches
        // it is answered with 431 below.
        let room = (MAX_REQUEST + 1 - buf.len()).min(scratch.len());
        let n = match retry(|| self.stream.read(&mut scratch[..room])) {
            Ok(0) => {
                self.finish(env);
                return true;
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(_) => {
                self.finish(env);
                return true;
            }
        };
        buf.extend_from_slice(&scratch[..n]);
        let Parsed::Done { consumed, answer } = env.site.parse(buf) else {
            return n < room;
        };
        let request = std::mem::take(buf);
        self.last_read = env.now;
        match answer {
            Answer::Reply { response, ok } => {
                Counters::bump(if ok { &env.counters.pages_served } else { &env.counters.bad_requests });
                self.out.buf.extend_from_slice(&response);
                self.state = State::Closing { deadline: env.now + CLOSE_LINGER, write_shut: false };
            }
            Answer::Upgrade { response } => self.upgrade(env, response, request, consumed),
        }
        false
    }

    fn upgrade(&mut self, env: &mut Env<'_>, response: Vec<u8>, mut request: Vec<u8>, consumed: usize) {
        Counters::bump(&env.counters.upgrades);
        self.out.buf.extend_from_slice(&response);
        let stream_id = env.next_stream_id.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(stream_id, peer = ?self.stream.peer_addr().ok(), "WebSocket open");
        let mut session = Box::new(Session::new(stream_id));
        // Bytes a client sent right after its request (a browser waits for
        // our 101; a script may not) are the session's first bytes.
        let result = session.feed(&mut request[consumed..], env, &mut self.out);
        self.state = State::Open(session);
        if let Err(end) = result {
            self.end_session(end, env);
        }
    }

    /// Reads after our close (or HTTP reply) until the client hangs up.
    fn read_and_discard(&mut self, env: &mut Env<'_>, scratch: &mut [u8]) -> bool {
        match retry(|| self.stream.read(scratch)) {
            Ok(0) => {
                self.finish(env);
                true
            }
            Ok(n) => n < scratch.len(),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => true,
            Err(_) => {
                self.finish(env);
                true
            }
        }
    }

    /// One read of an open session. Returns whether the socket is drained.
    fn read_open(&mut self, env: &mut Env<'_>, scratch: &mut [u8]) -> bool {
        let State::Open(session) = &mut self.state else { unreachable!() };
        let direct = session.direct_len();
        let (result, requested) = match direct {
            Some(len) => {
                let tail = if session.frame_is_final() { scratch.len() } else { MAX_HEADER };
                let dst = session.direct_buf(len);
                let mut bufs = [IoSliceMut::new(dst), IoSliceMut::new(&mut scratch[..tail])];
                (retry(|| self.stream.read_vectored(&mut bufs)), len + tail)
            }
            None => {
                let want = session.read_size(scratch.len());
                (retry(|| self.stream.read(&mut scratch[..want])), want)
            }
        };
        let n = match result {
            Ok(0) => {
                if session.message_in_progress() {
                    tracing::debug!(stream_id = session.stream_id, "client disconnected mid-message");
                }
                Counters::bump(&env.counters.disconnects);
                self.finish(env);
                return true;
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(_) => {
                Counters::bump(&env.counters.disconnects);
                self.finish(env);
                return true;
            }
        };
        self.last_read = env.now;
        self.ping_outstanding = false;
        let mut outcome = Ok(());
        let in_scratch = match direct {
            Some(len) => {
                let in_slot = n.min(len);
                outcome = session.direct_filled(in_slot, env, &mut self.out);
                // What did not fit in the slot went to the front of scratch.
                n - in_slot
            }
            None => n,
        };
        let tail = &mut scratch[..in_scratch];
        if outcome.is_ok() && !tail.is_empty() {
            outcome = session.feed(tail, env, &mut self.out);
        }
        if let Err(end) = outcome {
            self.end_session(end, env);
            return false; // go on reading: now discarding until the client hangs up
        }
        n < requested
    }
}

impl Session {
    fn new(stream_id: u32) -> Session {
        Session {
            stream_id,
            spec: None,
            head: [0; MAX_HEADER],
            head_len: 0,
            frame: None,
            message: Message::None,
            message_started: None,
            media_head: [0; MAX_MEDIA_HEADER],
            media_head_len: 0,
            control: [0; MAX_CONTROL_PAYLOAD],
            control_len: 0,
            last_frame_number: None,
            dropped: 0,
            last_message_large: false,
        }
    }

    /// Whether the next bytes may start a message body (which needs a
    /// producer from the pool).
    fn needs_producer(&self) -> bool {
        matches!(self.message, Message::None | Message::Header { .. })
    }

    fn message_in_progress(&self) -> bool {
        !matches!(self.message, Message::None)
    }

    fn frame_is_final(&self) -> bool {
        self.frame.is_some_and(|f| f.fin)
    }

    /// How many bytes of the current frame can be read straight into the
    /// slot, if that is worth it.
    fn direct_len(&self) -> Option<usize> {
        let frame = self.frame.filter(|f| !f.opcode.is_control())?;
        let Message::Body { plan, written, .. } = &self.message else {
            return None;
        };
        let len = usize::try_from(frame.remaining).ok()?.min(plan.len - written);
        (len >= DIRECT_MIN).then_some(len)
    }

    fn direct_buf(&mut self, len: usize) -> &mut [u8] {
        let Message::Body { inflight, written, .. } = &mut self.message else { unreachable!() };
        &mut inflight.bytes_mut()[*written..*written + len]
    }

    /// Payload bytes of the message being read into a slot that have not
    /// arrived yet.
    fn body_left(&self) -> Option<usize> {
        match &self.message {
            Message::Body { plan, written, .. } if plan.len > LARGE_MESSAGE => Some(plan.len - written),
            _ => None,
        }
    }

    /// How much to read into scratch: between the fragments of a message
    /// in a slot, only the next frame header; after a large message, only
    /// up to the end of the next message's headers, so that bodies go in
    /// place.
    fn read_size(&self, scratch: usize) -> usize {
        let header = self.spec.map_or(0, |s| s.header_len());
        match (&self.message, self.frame) {
            (Message::Body { .. }, None) => MAX_HEADER - self.head_len,
            (Message::None, None) if self.last_message_large => (MAX_HEADER - self.head_len) + header,
            (Message::Header { .. }, Some(frame)) if self.last_message_large => {
                (header - self.media_head_len).min(frame.remaining as usize).max(1)
            }
            _ => scratch,
        }
    }

    /// Bytes the kernel wrote into the slot at `direct_buf`: unmask them in
    /// place and move on.
    fn direct_filled(&mut self, n: usize, env: &mut Env<'_>, out: &mut Outbox) -> Result<(), End> {
        let frame = self.frame.as_mut().expect("a frame is being read");
        let Message::Body { inflight, written, .. } = &mut self.message else { unreachable!() };
        frames::unmask(&mut inflight.bytes_mut()[*written..*written + n], frame.key, frame.offset as usize);
        *written += n;
        frame.remaining -= n as u64;
        frame.offset += n as u64;
        if frame.remaining == 0 {
            self.end_frame(env, out)?;
        }
        Ok(())
    }

    /// Parses masked bytes from the scratch buffer.
    fn feed(&mut self, mut data: &mut [u8], env: &mut Env<'_>, out: &mut Outbox) -> Result<(), End> {
        while !data.is_empty() {
            let Some(frame) = self.frame else {
                let need = if self.head_len < 2 { 2 } else { frames::header_len(self.head[1]) };
                let take = (need - self.head_len).min(data.len());
                self.head[self.head_len..self.head_len + take].copy_from_slice(&data[..take]);
                self.head_len += take;
                data = &mut data[take..];
                if self.head_len >= 2 && self.head_len == frames::header_len(self.head[1]) {
                    let head = frames::parse_head(&self.head[..self.head_len])
                        .map_err(|v| close(code::PROTOCOL_ERROR, v.0))?;
                    self.head_len = 0;
                    self.start_frame(head, env, out)?;
                }
                continue;
            };
            let take = frame.remaining.min(data.len() as u64) as usize;
            let (chunk, rest) = std::mem::take(&mut data).split_at_mut(take);
            data = rest;
            self.payload(chunk, env, out)?;
        }
        Ok(())
    }

    fn start_frame(&mut self, head: FrameHead, env: &mut Env<'_>, out: &mut Outbox) -> Result<(), End> {
        let max = env.limits.max_message as u64;
        if !head.opcode.is_control() {
            match (&mut self.message, head.opcode) {
                (Message::None, Opcode::Continuation) => {
                    return Err(close(code::PROTOCOL_ERROR, "continuation frame without a message to continue"))
                }
                (Message::None, Opcode::Text) => {
                    if head.len > MAX_TEXT as u64 {
                        return Err(close(code::TOO_BIG, format!("text messages are at most {MAX_TEXT} bytes")));
                    }
                    self.message = Message::Text(Vec::with_capacity(head.len as usize));
                }
                (Message::None, Opcode::Binary) => {
                    if self.spec.is_none() {
                        return Err(close(
                            code::UNSUPPORTED_DATA,
                            "binary message before the stream was declared (send a text declaration first)",
                        ));
                    }
                    if head.len > max {
                        return Err(too_big(head.len, max));
                    }
                    self.message = Message::Header { frames_len: head.len };
                    self.media_head_len = 0;
                    self.message_started = Some(env.now);
                }
                (_, Opcode::Text | Opcode::Binary) => {
                    return Err(close(code::PROTOCOL_ERROR, "a new message began before the previous one ended"))
                }
                (Message::Text(bytes), _) => {
                    if bytes.len() as u64 + head.len > MAX_TEXT as u64 {
                        return Err(close(code::TOO_BIG, format!("text messages are at most {MAX_TEXT} bytes")));
                    }
                }
                (Message::Header { frames_len }, _) => {
                    *frames_len += head.len;
                    if *frames_len > max {
                        return Err(too_big(*frames_len, max));
                    }
                }
                (Message::Body { plan, frames_len, .. } | Message::Discard { plan, frames_len, .. }, _) => {
                    *frames_len += head.len;
                    if *frames_len > plan.len as u64 {
                        return Err(wrong_length(*frames_len, plan.len, "or more"));
                    }
                }
                (_, Opcode::Close | Opcode::Ping | Opcode::Pong) => unreachable!("control frames are handled below"),
            }
        } else {
            self.control_len = 0;
        }
        self.frame =
            Some(CurrentFrame { opcode: head.opcode, fin: head.fin, remaining: head.len, offset: 0, key: head.mask });
        if head.len == 0 {
            self.end_frame(env, out)?;
        }
        Ok(())
    }

    /// Routes a run of the current frame's masked payload.
    fn payload(&mut self, mut chunk: &mut [u8], env: &mut Env<'_>, out: &mut Outbox) -> Result<(), End> {
        while !chunk.is_empty() {
            let frame = self.frame.expect("a frame is being read");
            let phase = frame.offset as usize;
            let n = if frame.opcode.is_control() {
                let n = chunk.len();
                let dst = &mut self.control[self.control_len..self.control_len + n];
                frames::copy_unmasked(dst, chunk, frame.key, phase);
                self.control_len += n;
                n
            } else {
                match &mut self.message {
                    Message::None => unreachable!("data frames always belong to a message"),
                    Message::Text(bytes) => {
                        let start = bytes.len();
                        bytes.resize(start + chunk.len(), 0);
                        frames::copy_unmasked(&mut bytes[start..], chunk, frame.key, phase);
                        chunk.len()
                    }
                    Message::Header { .. } => {
                        let spec = self.spec.expect("binary messages need a declaration");
                        let n = (spec.header_len() - self.media_head_len).min(chunk.len());
                        let dst = &mut self.media_head[self.media_head_len..self.media_head_len + n];
                        frames::copy_unmasked(dst, &chunk[..n], frame.key, phase);
                        self.media_head_len += n;
                        n
                    }
                    Message::Body { inflight, written, .. } => {
                        let n = chunk.len();
                        // In bounds: every frame's length was checked
                        // against the planned length when it started.
                        let dst = &mut inflight.bytes_mut()[*written..*written + n];
                        frames::copy_unmasked(dst, chunk, frame.key, phase);
                        *written += n;
                        n
                    }
                    Message::Discard { seen, .. } => {
                        *seen += chunk.len() as u64;
                        chunk.len()
                    }
                }
            };
            chunk = &mut std::mem::take(&mut chunk)[n..];
            let frame = self.frame.as_mut().expect("a frame is being read");
            frame.remaining -= n as u64;
            frame.offset += n as u64;
            if let Message::Header { .. } = self.message {
                if self.media_head_len == self.spec.map_or(0, |s| s.header_len()) {
                    self.begin_body(env, out)?;
                }
            }
            if self.frame.is_some_and(|f| f.remaining == 0) {
                self.end_frame(env, out)?;
            }
        }
        Ok(())
    }

    /// The media header is complete: check it, reserve the slot, copy the
    /// header in and let shmring-media check it in place.
    fn begin_body(&mut self, env: &mut Env<'_>, out: &mut Outbox) -> Result<(), End> {
        let Message::Header { frames_len } = self.message else { unreachable!() };
        let spec = self.spec.expect("binary messages need a declaration");
        let header_len = spec.header_len();
        let plan = match spec.plan(&self.media_head[..header_len], env.limits.max_message) {
            Ok(plan) => plan,
            Err(HeaderError::TooBig { len, max }) => return Err(too_big(len, max as u64)),
            Err(HeaderError::Invalid(reason)) => return Err(close(code::INVALID_PAYLOAD, reason)),
        };
        if let Some(last) = self.last_frame_number.filter(|&last| plan.frame_number <= last) {
            return Err(close(
                code::INVALID_PAYLOAD,
                format!("frame number {} does not follow {last}", plan.frame_number),
            ));
        }
        if frames_len > plan.len as u64 {
            return Err(wrong_length(frames_len, plan.len, "or more"));
        }
        self.last_frame_number = Some(plan.frame_number);
        let seen = header_len as u64;
        let Some(producer) = env.pool.take() else {
            Counters::bump(&env.counters.dropped_busy);
            self.discard(plan, seen, frames_len, "no producer free", out);
            return Ok(());
        };
        let mut inflight = match InFlight::reserve(producer, plan.len, spec.kind()) {
            Ok(inflight) => inflight,
            Err((producer, error)) => {
                env.pool.give_back(producer);
                let reason = match error {
                    shmring::Error::ConsumerGone { .. } => {
                        Counters::bump(&env.counters.consumer_gone);
                        "the ring's consumer is gone"
                    }
                    shmring::Error::Dropped | shmring::Error::Full | shmring::Error::Timeout => {
                        Counters::bump(&env.counters.dropped_full);
                        "ring full"
                    }
                    other => return Err(close(code::INTERNAL, format!("ring refused the frame: {other}"))),
                };
                self.discard(plan, seen, frames_len, reason, out);
                return Ok(());
            }
        };
        inflight.bytes_mut()[..header_len].copy_from_slice(&self.media_head[..header_len]);
        if let Err(error) = spec.verify(inflight.bytes()) {
            env.pool.give_back(inflight.abandon());
            Counters::bump(&env.counters.abandoned);
            return Err(close(code::INVALID_PAYLOAD, format!("bad media header: {error}")));
        }
        inflight.bytes_mut()[STREAM_ID_OFFSET..STREAM_ID_OFFSET + 4].copy_from_slice(&self.stream_id.to_ne_bytes());
        self.message = Message::Body { inflight, plan, written: header_len, frames_len, reserved_at: env.now };
        Ok(())
    }

    /// Goes on reading the message without a slot, and tells the client.
    fn discard(&mut self, plan: MessagePlan, seen: u64, frames_len: u64, reason: &str, out: &mut Outbox) {
        self.dropped += 1;
        tracing::trace!(stream_id = self.stream_id, frame_number = plan.frame_number, reason, "frame dropped");
        if out.has_room() {
            frames::push_text(&dropped_notice(plan.frame_number, self.dropped, reason), &mut out.buf);
        }
        self.message = Message::Discard { plan, seen, frames_len };
    }

    fn end_frame(&mut self, env: &mut Env<'_>, out: &mut Outbox) -> Result<(), End> {
        let frame = self.frame.take().expect("a frame is being read");
        match frame.opcode {
            Opcode::Ping => {
                if out.has_room() {
                    frames::push_pong(&self.control[..self.control_len], &mut out.buf);
                }
                Ok(())
            }
            Opcode::Pong => Ok(()),
            Opcode::Close => match frames::check_close(&self.control[..self.control_len]) {
                Ok(code) => Err(End::ClientClosed { code }),
                Err(bad) => Err(close(bad.code, bad.reason)),
            },
            _ if frame.fin => self.end_message(env, out),
            _ => Ok(()),
        }
    }

    fn end_message(&mut self, env: &mut Env<'_>, out: &mut Outbox) -> Result<(), End> {
        self.message_started = None;
        match std::mem::replace(&mut self.message, Message::None) {
            Message::None => unreachable!("a final data frame ends a message"),
            Message::Text(bytes) => {
                let text = std::str::from_utf8(&bytes)
                    .map_err(|_| close(code::INVALID_PAYLOAD, "text message is not valid UTF-8"))?;
                self.on_text(text, env, out)
            }
            Message::Header { frames_len } => {
                let header_len = self.spec.map_or(0, |s| s.header_len());
                Err(close(
                    code::INVALID_PAYLOAD,
                    format!("message of {frames_len} bytes is shorter than its {header_len}-byte media header"),
                ))
            }
            Message::Body { inflight, plan, written, .. } => {
                if written != plan.len {
                    env.pool.give_back(inflight.abandon());
                    Counters::bump(&env.counters.abandoned);
                    return Err(wrong_length(written as u64, plan.len, ""));
                }
                env.pool.give_back(inflight.commit());
                Counters::bump(&env.counters.messages);
                Counters::add(&env.counters.bytes, plan.len as u64);
                self.last_message_large = plan.len > LARGE_MESSAGE;
                Ok(())
            }
            Message::Discard { plan, seen, .. } => {
                if seen != plan.len as u64 {
                    return Err(wrong_length(seen, plan.len, ""));
                }
                self.last_message_large = plan.len > LARGE_MESSAGE;
                Ok(())
            }
        }
    }

    fn on_text(&mut self, text: &str, env: &mut Env<'_>, out: &mut Outbox) -> Result<(), End> {
        match parse_text(text) {
            Ok(spec) => {
                let max = env.limits.max_message;
                if let Some(len) = spec.packed_len().filter(|&len| len > max) {
                    return Err(close(
                        code::TOO_BIG,
                        format!("frames of this size take {len} bytes; the largest record is {max}"),
                    ));
                }
                self.spec = Some(spec);
                Counters::bump(&env.counters.declarations);
                tracing::debug!(stream_id = self.stream_id, ?spec, "stream declared");
                frames::push_text(&ready_notice(self.stream_id, &spec, max), &mut out.buf);
                Ok(())
            }
            Err(TextError::NotADeclaration) if self.spec.is_some() => Err(close(
                code::UNSUPPORTED_DATA,
                "text message where binary media frames were expected (text is for declarations only)",
            )),
            Err(TextError::NotADeclaration) => {
                Err(close(code::INVALID_PAYLOAD, "the first message must be a stream declaration"))
            }
            Err(TextError::BadDeclaration(reason)) => {
                Err(close(code::INVALID_PAYLOAD, format!("bad declaration: {reason}")))
            }
        }
    }

    fn on_tick(&mut self, env: &mut Env<'_>, out: &mut Outbox) -> Result<(), End> {
        let now = env.now;
        if let Message::Body { reserved_at, .. } = &self.message {
            if now.saturating_duration_since(*reserved_at) >= env.limits.message_timeout {
                let Message::Body { inflight, plan, written, frames_len, .. } =
                    std::mem::replace(&mut self.message, Message::None)
                else {
                    unreachable!()
                };
                env.pool.give_back(inflight.abandon());
                Counters::bump(&env.counters.abandoned);
                Counters::bump(&env.counters.message_timeouts);
                let ms = env.limits.message_timeout.as_millis();
                tracing::debug!(stream_id = self.stream_id, written, len = plan.len, "message too slow; slot given up");
                self.discard(plan, written as u64, frames_len, &format!("message not completed within {ms} ms"), out);
            }
        }
        if let Some(started) = self.message_started {
            if now.saturating_duration_since(started) >= env.limits.idle_timeout {
                return Err(close(
                    code::POLICY,
                    format!("message not completed within {} s", env.limits.idle_timeout.as_secs()),
                ));
            }
        }
        Ok(())
    }

    /// Gives up a slot in flight (a skip record) and forgets the message.
    fn abandon(&mut self, env: &mut Env<'_>) {
        if let Message::Body { inflight, .. } = std::mem::replace(&mut self.message, Message::None) {
            env.pool.give_back(inflight.abandon());
            Counters::bump(&env.counters.abandoned);
        }
        self.frame = None;
        self.message_started = None;
    }
}

/// SO_RCVLOWAT: the socket reads as ready once `bytes` are queued (or at
/// EOF or an error, whatever the setting).
fn set_receive_low_water(stream: &TcpStream, bytes: usize) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let value = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    // SAFETY: setsockopt reads `size_of::<c_int>()` bytes from a live local
    // on an open socket descriptor; it keeps no pointer.
    let result = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVLOWAT,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn too_big(len: u64, max: u64) -> End {
    close(code::TOO_BIG, format!("message of {len} bytes exceeds the largest record ({max} bytes)"))
}

fn wrong_length(len: u64, expected: usize, qualifier: &str) -> End {
    let sep = if qualifier.is_empty() { "" } else { " " };
    close(code::INVALID_PAYLOAD, format!("message of {len}{sep}{qualifier} bytes, its header describes {expected}"))
}
