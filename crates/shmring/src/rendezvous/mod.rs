//! Attach by name: the consumer (or the ring's host) serves a Unix socket
//! in a 0700 directory (`$XDG_RUNTIME_DIR/shmring/NAME.sock`, or
//! `/tmp/shmring-UID/`), checks each peer's credentials (`SO_PEERCRED`:
//! same uid, or an allow-list) and sends the ring's segment descriptor with
//! `SCM_RIGHTS`.
//!
//! The same socket takes liveness watches from launchers that are not the
//! consumer ([`hand_over_watch`]): a launcher that starts a producer in
//! another pid namespace makes a [`liveness_pair`](crate::liveness_pair),
//! hands the producer its half and the consumer the watch, whose hang-up
//! then confirms the producer's death. The server keeps the watches (see
//! [`watches`](crate::watches)); a host feeds them to every consumer that
//! attaches through it, so a consumer that restarts behind a host gets them
//! all again. Messages: `wire`; the serving thread: `server`; the calls of
//! the other side: `client`, `feed`.

mod client;
mod feed;
mod server;
mod wire;

use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use nix::sys::socket::{self, sockopt};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};

pub use client::{hand_over_watch, request};
pub(crate) use feed::Feed;

use crate::error::{Error, Result};
use crate::ring::{MappedRing, RingFds};
use crate::watches::WatchSet;
use crate::{Consumer, Producer};

/// Who may attach.
#[derive(Clone, Debug, Default)]
pub struct AccessPolicy {
    /// Uids allowed besides our own.
    pub allowed_uids: Vec<u32>,
}

/// Serves the descriptors of a ring, and takes its liveness watches, until
/// dropped.
pub struct RendezvousServer {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    listener_fd: RawFd,
    thread: Option<JoinHandle<()>>,
    watches: Arc<WatchSet>,
    refused: Arc<AtomicU64>,
}

impl RendezvousServer {
    /// Binds the socket of ring `name` and serves `fds` on a thread.
    pub fn start(name: &str, fds: RingFds, policy: AccessPolicy) -> Result<Self> {
        let ring = Arc::new(MappedRing::open(fds)?);
        RendezvousServer::start_for(name, ring, Arc::new(WatchSet::new()), policy)
    }

    fn start_for(name: &str, ring: Arc<MappedRing>, watches: Arc<WatchSet>, policy: AccessPolicy) -> Result<Self> {
        crate::name::validate(name)?;
        let path = crate::name::socket_path(name);
        crate::name::ensure_runtime_dir(path.parent().expect("socket path has a directory"))?;
        if path.exists() {
            match UnixStream::connect(&path) {
                Ok(_) => return Err(Error::InUse { name: name.to_string(), pid: owner_pid(&path).unwrap_or(0) }),
                Err(_) => {
                    // Nobody listens: a leftover of a crashed consumer.
                    #[cfg(feature = "tracing")]
                    tracing::info!(path = %path.display(), "removing stale rendezvous socket");
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        let listener = UnixListener::bind(&path).map_err(|e| Error::os_from("bind rendezvous socket", e))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| Error::os_from("chmod rendezvous socket", e))?;
        listener.set_nonblocking(true).map_err(|e| Error::os_from("make the rendezvous socket non-blocking", e))?;
        let listener_fd = listener.as_raw_fd();
        let stop = Arc::new(AtomicBool::new(false));
        let refused = Arc::new(AtomicU64::new(0));
        let server = server::Server {
            listener,
            ring,
            policy,
            stop: stop.clone(),
            watches: watches.clone(),
            refused: refused.clone(),
            connections: Vec::new(),
        };
        let thread = std::thread::Builder::new()
            .name(format!("shmring-rendezvous-{name}"))
            .spawn(move || server.run())
            .map_err(|e| Error::os_from("spawn rendezvous thread", e))?;
        #[cfg(feature = "tracing")]
        tracing::info!(path = %path.display(), "serving ring descriptors");
        Ok(RendezvousServer { path, stop, listener_fd, thread: Some(thread), watches, refused })
    }

    /// Where the socket lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Watch registrations refused so far (malformed, wrong descriptors,
    /// over a limit).
    pub fn refused_watches(&self) -> u64 {
        // Relaxed: a counter, read for reports only.
        self.refused.load(Ordering::Relaxed)
    }

    /// Liveness watches held (registered and not yet pruned).
    pub fn watch_count(&self) -> usize {
        self.watches.len()
    }
}

impl Drop for RendezvousServer {
    fn drop(&mut self) {
        // SeqCst: SYNC POINT: pairs with the loads of `stop` in
        // `Server::run`, which must see it once `poll` returns. Not a hot
        // path.
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the thread's poll(): on Linux shutdown on a listening
        // socket makes it readable and accept fail with EINVAL.
        // SAFETY: the listener descriptor stays open until the thread ends.
        unsafe { libc::shutdown(self.listener_fd, libc::SHUT_RDWR) };
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Pid of the process listening on `path`, from the server's credentials.
fn owner_pid(path: &Path) -> Option<u32> {
    let stream = UnixStream::connect(path).ok()?;
    socket::getsockopt(&stream, sockopt::PeerCredentials).ok().map(|c| c.pid() as u32)
}

impl Consumer<MappedRing> {
    /// Serves this ring's descriptors to producers that attach by name,
    /// until the returned server is dropped. Liveness watches that
    /// launchers register there ([`hand_over_watch`]) come to this
    /// consumer.
    pub fn serve(&self, policy: AccessPolicy) -> Result<RendezvousServer> {
        RendezvousServer::start_for(self.name(), self.backing().clone(), self.watches.clone(), policy)
    }

    /// Becomes the consumer of ring `name`, held by a [`RingHost`](crate::RingHost)
    /// or left by a consumer that died, through its rendezvous socket. The
    /// host's liveness watches come along (and those registered later).
    pub fn connect(name: &str) -> Result<Self> {
        let (fds, feed, watches) = client::subscribe(name)?;
        let consumer = Consumer::attach(fds)?;
        for watch in watches {
            consumer.watch_producer(watch);
        }
        consumer.watches.set_feed(feed);
        Ok(consumer)
    }
}

impl crate::RingHost {
    /// Serves this ring's descriptors to whoever attaches by name
    /// (producers, a consumer, `stat`), until the returned server is
    /// dropped. The liveness watches launchers register are kept here and
    /// fed to each consumer that attaches through this server.
    pub fn serve(&self, policy: AccessPolicy) -> Result<RendezvousServer> {
        RendezvousServer::start_for(self.name(), self.ring().clone(), Arc::new(WatchSet::new()), policy)
    }
}

impl Producer<MappedRing> {
    /// Attaches to ring `name` through its consumer's rendezvous socket.
    pub fn connect(name: &str) -> Result<Self> {
        Producer::attach(request(name)?)
    }
}

impl RingFds {
    /// Asks the consumer of ring `name` for the descriptors (as
    /// [`Producer::connect`] does), for tools like `stat`.
    pub fn request(name: &str) -> Result<RingFds> {
        request(name)
    }
}
