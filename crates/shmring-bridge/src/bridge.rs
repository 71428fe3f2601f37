//! Starting a bridge (producers, listener, threads), its acceptor thread,
//! and stopping it.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use shmring::{Producer, RingFds, RingProducer};

use crate::config::BridgeConfig;
use crate::connection::Limits;
use crate::http::Site;
use crate::inflight::Pool;
use crate::stats::{BridgeStats, Counters, Registry};
use crate::worker::{Shared, Worker, WAKER};

/// Where the bridge's producers come from: a ring it attaches to.
pub enum RingSource {
    /// Attach by name through the consumer's rendezvous socket
    /// ([`Producer::connect`]).
    Name(String),
    /// Attach from descriptors (inherited, `SHMRING_FD`).
    Fds(RingFds),
    /// A producer already attached; the bridge takes more slots from its
    /// mapping ([`Producer::try_clone`]).
    Producer(RingProducer),
}

impl fmt::Debug for RingSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RingSource::Name(name) => f.debug_tuple("Name").field(name).finish(),
            RingSource::Fds(fds) => f.debug_tuple("Fds").field(fds).finish(),
            RingSource::Producer(producer) => f.debug_tuple("Producer").field(&producer.slot()).finish(),
        }
    }
}

impl From<RingFds> for RingSource {
    fn from(fds: RingFds) -> Self {
        RingSource::Fds(fds)
    }
}

impl From<RingProducer> for RingSource {
    fn from(producer: RingProducer) -> Self {
        RingSource::Producer(producer)
    }
}

impl From<&str> for RingSource {
    fn from(name: &str) -> Self {
        RingSource::Name(name.to_string())
    }
}

impl From<String> for RingSource {
    fn from(name: String) -> Self {
        RingSource::Name(name)
    }
}

/// Why a bridge could not start.
#[derive(Debug)]
#[non_exhaustive]
pub enum BridgeError {
    /// Attaching to the ring failed.
    Ring(shmring::Error),
    /// A socket, poll or thread could not be set up.
    Io { op: &'static str, source: io::Error },
    /// The settings cannot work.
    Config(&'static str),
}

impl fmt::Display for BridgeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BridgeError::Ring(e) => write!(f, "attaching to the ring: {e}"),
            BridgeError::Io { op, source } => write!(f, "{op}: {source}"),
            BridgeError::Config(reason) => write!(f, "bad bridge settings: {reason}"),
        }
    }
}

impl std::error::Error for BridgeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BridgeError::Ring(e) => Some(e),
            BridgeError::Io { source, .. } => Some(source),
            BridgeError::Config(_) => None,
        }
    }
}

impl From<shmring::Error> for BridgeError {
    fn from(e: shmring::Error) -> Self {
        BridgeError::Ring(e)
    }
}

fn io_error(op: &'static str) -> impl FnOnce(io::Error) -> BridgeError {
    move |source| BridgeError::Io { op, source }
}

/// A running bridge: an acceptor thread and worker threads writing what
/// browsers send into the ring. Dropping it shuts it down.
pub struct Bridge {
    local_addr: SocketAddr,
    registry: Arc<Registry>,
    handle: ShutdownHandle,
    threads: Vec<JoinHandle<()>>,
}

/// Stops a bridge from another thread (a signal handler's, say).
#[derive(Clone)]
pub struct ShutdownHandle {
    shared: Arc<Shared>,
    wakers: Arc<Vec<Waker>>,
}

impl fmt::Debug for ShutdownHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShutdownHandle").field("stopping", &self.shared.stopping()).finish()
    }
}

impl ShutdownHandle {
    /// Asks every thread to stop: connections get a 1001 close, messages in
    /// flight become skip records, producer slots are given back.
    pub fn shutdown(&self) {
        // Release: SYNC POINT: pairs with the Acquire load in
        // `Shared::stopping`.
        self.shared.stop.store(true, Ordering::Release);
        for waker in self.wakers.iter() {
            let _ = waker.wake();
        }
    }
}

impl fmt::Debug for Bridge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bridge").field("local_addr", &self.local_addr).finish()
    }
}

/// The token of the acceptor's listener.
const LISTENER: Token = Token(0);

impl Bridge {
    /// Attaches to the ring, binds `config.listen` and starts the threads.
    /// Raises the open-file limit to its hard maximum first.
    pub fn start(config: BridgeConfig, ring: impl Into<RingSource>) -> Result<Bridge, BridgeError> {
        if config.workers == 0 || config.in_flight_per_worker == 0 {
            return Err(BridgeError::Config("workers and in_flight_per_worker must be at least 1"));
        }
        warn_about_profile_dirs(&config.profile_dirs);
        let open_files = raise_open_file_limit();
        if open_files < config.max_connections as u64 + 64 {
            tracing::warn!(open_files, config.max_connections, "the open-file limit is below max_connections");
        }
        let first = match ring.into() {
            RingSource::Name(name) => Producer::connect(&name)?,
            RingSource::Fds(fds) => Producer::attach(fds)?,
            RingSource::Producer(producer) => producer,
        };
        if let Err(e) = first.prefault() {
            tracing::debug!(error = %e, "could not prefault the ring; first frames pay page faults");
        }
        let max_message = config.max_message.map_or(first.max_payload(), |m| m.min(first.max_payload()));
        let producers = take_producers(first, config.workers * config.in_flight_per_worker)?;
        let workers = config.workers.min(producers.len());
        let mut pools: Vec<Vec<RingProducer>> = (0..workers).map(|_| Vec::new()).collect();
        for (i, producer) in producers.into_iter().enumerate() {
            pools[i % workers].push(producer);
        }

        let listener = std::net::TcpListener::bind(config.listen).map_err(io_error("binding the listen address"))?;
        listener.set_nonblocking(true).map_err(io_error("making the listener non-blocking"))?;
        let local_addr = listener.local_addr().map_err(io_error("reading the listen address"))?;
        let mut listener = TcpListener::from_std(listener);

        // Thread 0 is the acceptor, 1..=workers the workers.
        let registry = Arc::new(Registry::new(workers + 1));
        let stats_registry = registry.clone();
        let shared = Arc::new(Shared {
            limits: Limits {
                max_message,
                handshake_timeout: config.handshake_timeout,
                message_timeout: config.message_timeout,
                idle_timeout: config.idle_timeout,
                profile_dirs: config.profile_dirs.clone(),
            },
            site: Site {
                port: local_addr.port(),
                allowed_origins: config.allowed_origins.clone(),
                serve_pages: config.serve_pages,
                stats_json: Box::new(move || {
                    serde_json::to_string(&stats_registry.snapshot()).expect("stats serialise")
                }),
            },
            registry: registry.clone(),
            next_stream_id: AtomicU32::new(config.first_stream_id),
            max_connections: config.max_connections,
            stop: AtomicBool::new(false),
        });

        let accept_poll = Poll::new().map_err(io_error("creating the acceptor's poll"))?;
        accept_poll
            .registry()
            .register(&mut listener, LISTENER, Interest::READABLE)
            .map_err(io_error("watching the listener"))?;
        let mut wakers = vec![Waker::new(accept_poll.registry(), WAKER).map_err(io_error("creating a waker"))?];
        let mut senders = Vec::new();
        let mut worker_parts = Vec::new();
        for (i, pool) in pools.into_iter().enumerate() {
            let poll = Poll::new().map_err(io_error("creating a worker's poll"))?;
            wakers.push(Waker::new(poll.registry(), WAKER).map_err(io_error("creating a waker"))?);
            let (sender, receiver) = mpsc::channel();
            senders.push(sender);
            worker_parts.push((i + 1, poll, receiver, pool));
        }
        let wakers = Arc::new(wakers);
        let handle = ShutdownHandle { shared: shared.clone(), wakers: wakers.clone() };

        let mut threads = Vec::new();
        for (index, poll, receiver, pool) in worker_parts {
            let shared = shared.clone();
            // The worker is built on its own thread: its connections hold
            // reservations that never cross threads.
            let run = move || Worker::new(index, poll, receiver, Pool::new(pool), shared).run();
            let thread = std::thread::Builder::new().name(format!("bridge-worker-{index}")).spawn(run);
            threads.push(thread.map_err(io_error("spawning a worker thread"))?);
        }
        let acceptor = Acceptor { listener, poll: accept_poll, senders, wakers, shared, next: 0 };
        let thread = std::thread::Builder::new().name("bridge-accept".into()).spawn(move || acceptor.run());
        threads.push(thread.map_err(io_error("spawning the acceptor thread"))?);
        tracing::info!(%local_addr, workers, max_message, "bridge listening");
        Ok(Bridge { local_addr, registry, handle, threads })
    }

    /// The address the bridge listens on (the port, when it was 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> BridgeStats {
        self.registry.snapshot()
    }

    /// Reads the counters from anywhere, for as long as it lives.
    pub fn stats_source(&self) -> impl Fn() -> BridgeStats + Send + Sync + 'static {
        let registry = self.registry.clone();
        move || registry.snapshot()
    }

    /// A handle that stops the bridge from elsewhere.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.handle.clone()
    }

    /// Blocks until the bridge is stopped (by a [`ShutdownHandle`]) and its
    /// threads have finished; returns the final counters.
    pub fn wait(mut self) -> BridgeStats {
        self.join();
        self.registry.snapshot()
    }

    /// Stops the bridge and waits for its threads.
    pub fn shutdown(self) -> BridgeStats {
        self.handle.shutdown();
        self.wait()
    }

    fn join(&mut self) {
        for thread in self.threads.drain(..) {
            if thread.join().is_err() {
                tracing::error!("a bridge thread panicked");
            }
        }
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        if !self.threads.is_empty() {
            self.handle.shutdown();
            self.join();
        }
    }
}

/// Runs a bridge until SIGINT or SIGTERM, as the `shmring-bridge` binary
/// does: blocks both signals in the calling thread first (the bridge's
/// threads inherit the mask, so the signal is taken here by `sigwait`),
/// starts the bridge, hands it to `started` (to print its address, say),
/// waits for a signal, shuts the bridge down and returns its counters.
pub fn serve_until_signal(
    config: BridgeConfig,
    ring: impl Into<RingSource>,
    started: impl FnOnce(&Bridge),
) -> Result<BridgeStats, BridgeError> {
    use nix::sys::signal::{SigSet, Signal};
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGINT);
    signals.add(Signal::SIGTERM);
    signals.thread_block().map_err(|e| BridgeError::Io { op: "blocking SIGINT and SIGTERM", source: e.into() })?;
    let bridge = Bridge::start(config, ring)?;
    started(&bridge);
    let signal = signals.wait().map_err(|e| BridgeError::Io { op: "waiting for a signal", source: e.into() })?;
    tracing::info!(?signal, "stopping");
    Ok(bridge.shutdown())
}

/// The file lane's frame files live in these directories: say when one is
/// not on tmpfs (the page cache would be written back to disk) or missing.
fn warn_about_profile_dirs(dirs: &[std::path::PathBuf]) {
    for dir in dirs {
        match crate::frame_file::is_on_tmpfs(dir) {
            Some(true) => {}
            Some(false) => tracing::warn!(
                dir = %dir.display(),
                "profile directory is not on tmpfs: frames written through the file lane would be written back \
                 to disk; put the browser's profile on tmpfs (e.g. under /dev/shm)"
            ),
            None => tracing::warn!(dir = %dir.display(), "profile directory not found (yet)"),
        }
    }
}

/// `first` and up to `want - 1` more producers of the same mapping; fewer
/// when the ring runs out of slots.
fn take_producers(first: RingProducer, want: usize) -> Result<Vec<RingProducer>, BridgeError> {
    let mut producers = Vec::with_capacity(want);
    for _ in 1..want {
        match first.try_clone() {
            Ok(producer) => producers.push(producer),
            Err(shmring::Error::TooManyProducers { max }) => {
                tracing::warn!(
                    got = producers.len() + 1,
                    want,
                    max,
                    "the ring has fewer free producer slots than asked"
                );
                break;
            }
            Err(e) => return Err(e.into()),
        }
    }
    producers.insert(0, first);
    Ok(producers)
}

/// Raises the soft open-file limit to the hard one (thousands of
/// connections need more than the usual 1,024); returns the limit in force.
pub fn raise_open_file_limit() -> u64 {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return 1024;
    };
    if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        tracing::debug!(from = soft, to = hard, "raised the open-file limit");
        return hard;
    }
    soft
}

/// Accepts connections and deals them out to the workers in turn.
struct Acceptor {
    listener: TcpListener,
    poll: Poll,
    senders: Vec<Sender<TcpStream>>,
    wakers: Arc<Vec<Waker>>,
    shared: Arc<Shared>,
    next: usize,
}

impl Acceptor {
    fn counters(&self) -> &Counters {
        self.shared.registry.thread(0)
    }

    fn run(mut self) {
        let mut events = Events::with_capacity(64);
        // After running out of descriptors, retry without waiting for a new
        // edge: the connection that failed is still in the backlog.
        let mut retry_after = None;
        loop {
            if let Err(e) = self.poll.poll(&mut events, retry_after) {
                if e.kind() != io::ErrorKind::Interrupted {
                    tracing::error!(error = %e, "acceptor's event loop failed");
                    return;
                }
            }
            if self.shared.stopping() {
                return;
            }
            retry_after = self.accept_all();
        }
    }

    fn accept_all(&mut self) -> Option<Duration> {
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => self.hand_out(stream),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)) =>
                {
                    tracing::warn!(error = %e, "cannot accept: out of descriptors or memory; retrying");
                    return Some(Duration::from_millis(50));
                }
                Err(e) => {
                    tracing::debug!(error = %e, "accept failed");
                }
            }
        }
    }

    fn hand_out(&mut self, stream: TcpStream) {
        let counters = self.counters();
        if self.shared.registry.open_connections() >= self.shared.max_connections as u64 {
            Counters::bump(&counters.refused);
            let _ = std::io::Write::write(
                &mut &stream,
                b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
            return;
        }
        Counters::bump(&counters.accepted);
        let _ = stream.set_nodelay(true);
        let worker = self.next % self.senders.len();
        self.next = self.next.wrapping_add(1);
        if self.senders[worker].send(stream).is_ok() {
            let _ = self.wakers[worker + 1].wake();
        } else {
            Counters::bump(&self.counters().closed);
        }
    }
}
