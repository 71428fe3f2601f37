//! One client connection: its HTTP request, then its WebSocket session
//! (see [`crate::session`]), its timeouts and its output.
//!
//! A connection owns no read buffer. Bytes are read into the worker's
//! scratch buffer and parsed from there, except for the bulk of a binary
//! message, which the kernel reads straight into its ring slot (see the
//! payload lane). What an idle connection holds is this struct and its
//! session: a few hundred bytes.

use std::io::{self, IoSliceMut, Read};
use std::net::Shutdown;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use mio::net::TcpStream;

use crate::frames::{self, MAX_HEADER};
use crate::http::{Answer, Parsed, Site, MAX_REQUEST};
use crate::inflight::Pool;
use crate::outbox::{Outbox, OUTBOX_SOFT_LIMIT};
use crate::session::{close, code, End, Session, DIRECT_MIN};
use crate::stats::Counters;

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
    /// Where the file lane looks for pages' frame files.
    pub profile_dirs: Vec<PathBuf>,
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
