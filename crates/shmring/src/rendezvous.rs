//! Attach by name: the consumer serves a Unix socket in a 0700 directory
//! (`$XDG_RUNTIME_DIR/shmring/NAME.sock`, or `/tmp/shmring-UID/`), checks
//! each peer's credentials (`SO_PEERCRED`: same uid, or an allow-list) and
//! sends the ring's segment descriptor with `SCM_RIGHTS`.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use nix::sys::socket::{self, sockopt, ControlMessage, ControlMessageOwned, MsgFlags};

use crate::error::{Error, Result};
use crate::ring::{MappedRing, RingFds};
use crate::{Consumer, Producer};

/// First bytes of a grant (with the segment descriptor). Version 2: one
/// descriptor, the signalling words live in the segment.
const GRANT: &[u8; 8] = b"SHMRING2";
/// First bytes of a refusal (followed by the reason).
const DENIED: &[u8; 8] = b"DENIED01";
/// How long a client waits for the server's answer.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);

/// Who may attach.
#[derive(Clone, Debug, Default)]
pub struct AccessPolicy {
    /// Uids allowed besides our own.
    pub allowed_uids: Vec<u32>,
}

/// Serves the descriptors of a ring until dropped.
pub struct RendezvousServer {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    listener_fd: RawFd,
    thread: Option<JoinHandle<()>>,
}

impl RendezvousServer {
    /// Binds the socket of ring `name` and serves `fds` on a thread.
    pub fn start(name: &str, fds: RingFds, policy: AccessPolicy) -> Result<Self> {
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
        let listener_fd = listener.as_raw_fd();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            let name = name.to_string();
            std::thread::Builder::new()
                .name(format!("shmring-rendezvous-{name}"))
                .spawn(move || serve(listener, fds, policy, stop))
                .map_err(|e| Error::os_from("spawn rendezvous thread", e))?
        };
        #[cfg(feature = "tracing")]
        tracing::info!(path = %path.display(), "serving ring descriptors");
        Ok(RendezvousServer { path, stop, listener_fd, thread: Some(thread) })
    }

    /// Where the socket lives.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for RendezvousServer {
    fn drop(&mut self) {
        // SeqCst: SYNC POINT: pairs with the loads of `stop` in `serve`,
        // which must see it once `accept` fails below. Not a hot path.
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the blocked accept(): on Linux shutdown on a listening
        // socket makes accept fail with EINVAL.
        // SAFETY: the listener descriptor stays open until the thread ends.
        unsafe { libc::shutdown(self.listener_fd, libc::SHUT_RDWR) };
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

fn serve(listener: UnixListener, fds: RingFds, policy: AccessPolicy, stop: Arc<AtomicBool>) {
    // SAFETY: getuid has no preconditions.
    let own_uid = unsafe { libc::getuid() };
    // SeqCst: SYNC POINT: pairs with the store in `RendezvousServer::drop`.
    while !stop.load(Ordering::SeqCst) {
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(_) if stop.load(Ordering::SeqCst) => break,
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => break,
            Err(_) => continue,
        };
        let _ = stream.set_write_timeout(Some(CLIENT_TIMEOUT));
        let creds = match socket::getsockopt(&stream, sockopt::PeerCredentials) {
            Ok(creds) => creds,
            Err(_) => continue,
        };
        let uid = creds.uid();
        if uid != own_uid && !policy.allowed_uids.contains(&uid) {
            let reason = format!("uid {uid} (pid {}) is not allowed to attach", creds.pid());
            #[cfg(feature = "tracing")]
            tracing::warn!(uid, pid = creds.pid(), "rendezvous refused a peer: {reason}");
            let mut message = DENIED.to_vec();
            message.extend_from_slice(reason.as_bytes());
            let _ = socket::send(stream.as_raw_fd(), &message, MsgFlags::MSG_NOSIGNAL);
            continue;
        }
        let raw = [fds.memfd.as_raw_fd()];
        let rights = [ControlMessage::ScmRights(&raw)];
        let _ =
            socket::sendmsg::<()>(stream.as_raw_fd(), &[IoSlice::new(GRANT)], &rights, MsgFlags::MSG_NOSIGNAL, None);
        #[cfg(feature = "tracing")]
        tracing::debug!(uid, pid = creds.pid(), "granted ring descriptors");
    }
}

/// Pid of the process listening on `path`, from the server's credentials.
fn owner_pid(path: &Path) -> Option<u32> {
    let stream = UnixStream::connect(path).ok()?;
    socket::getsockopt(&stream, sockopt::PeerCredentials).ok().map(|c| c.pid() as u32)
}

/// Asks the consumer of ring `name` for its descriptors.
pub fn request(name: &str) -> Result<RingFds> {
    crate::name::validate(name)?;
    let path = crate::name::socket_path(name);
    let stream = UnixStream::connect(&path).map_err(|e| Error::Os {
        op: "connect to the ring's rendezvous socket (is its consumer running?)",
        source: e,
    })?;
    stream.set_read_timeout(Some(CLIENT_TIMEOUT)).map_err(|e| Error::os_from("set socket timeout", e))?;
    let mut buffer = [0u8; 256];
    let mut cmsg = nix::cmsg_space!([RawFd; 4]);
    let (bytes, received) = {
        let mut iov = [IoSliceMut::new(&mut buffer)];
        let msg = socket::recvmsg::<()>(stream.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::MSG_CMSG_CLOEXEC)
            .map_err(|e| Error::os_from("receive ring descriptors", e.into()))?;
        let mut received: Vec<OwnedFd> = Vec::new();
        for message in msg.cmsgs().map_err(|e| Error::os_from("read control message", e.into()))? {
            if let ControlMessageOwned::ScmRights(raw) = message {
                // SAFETY: the kernel just installed these descriptors in
                // our table for us; nothing else owns them.
                received.extend(raw.into_iter().map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }));
            }
        }
        (msg.bytes, received)
    };
    let message = &buffer[..bytes];
    if message.starts_with(DENIED) {
        return Err(Error::PermissionDenied { reason: String::from_utf8_lossy(&message[8..]).into_owned() });
    }
    if message != GRANT || received.len() != 1 {
        return Err(Error::PermissionDenied {
            reason: format!(
                "unexpected answer from {} ({} bytes, {} descriptors)",
                path.display(),
                bytes,
                received.len()
            ),
        });
    }
    let memfd = received.into_iter().next().expect("one descriptor checked above");
    Ok(RingFds::new(memfd))
}

impl Consumer<MappedRing> {
    /// Serves this ring's descriptors to producers that attach by name,
    /// until the returned server is dropped.
    pub fn serve(&self, policy: AccessPolicy) -> Result<RendezvousServer> {
        RendezvousServer::start(self.name(), self.fds().try_clone()?, policy)
    }
}

impl crate::RingHost {
    /// Serves this ring's descriptors to whoever attaches by name
    /// (producers, a consumer, `stat`), until the returned server is
    /// dropped.
    pub fn serve(&self, policy: AccessPolicy) -> Result<RendezvousServer> {
        RendezvousServer::start(self.name(), self.fds().try_clone()?, policy)
    }
}

impl Consumer<MappedRing> {
    /// Becomes the consumer of ring `name`, held by a [`RingHost`](crate::RingHost)
    /// or left by a consumer that died, through its rendezvous socket.
    pub fn connect(name: &str) -> Result<Self> {
        Consumer::attach(request(name)?)
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
