//! The thread behind a rendezvous socket: grants the segment on accept,
//! then keeps each connection a few seconds for a watch registration, and
//! keeps a consumer's subscription to the watches for as long as it is
//! open. One thread, `poll` over the listener and every connection, nothing
//! blocking: a peer that says nothing or reads nothing holds up no other.

use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::socket::{self, sockopt, MsgFlags};

use super::wire::{self, Message};
use super::AccessPolicy;
use crate::backing::Backing;
use crate::ring::MappedRing;
use crate::watches::{Refusal, WatchSet};

/// How long a connection may stay open after its grant without
/// registering a watch or subscribing.
const LINGER: Duration = Duration::from_secs(5);
/// Connections kept open at once; the oldest that is not a subscription
/// is closed to make room.
const MAX_CONNECTIONS: usize = 64;
/// Consumers subscribed to the watches at once.
const MAX_SUBSCRIBERS: usize = 4;

pub(super) struct Server {
    pub listener: UnixListener,
    pub ring: Arc<MappedRing>,
    pub policy: AccessPolicy,
    pub stop: Arc<AtomicBool>,
    pub watches: Arc<WatchSet>,
    pub refused: Arc<AtomicU64>,
    pub connections: Vec<Connection>,
}

pub(super) struct Connection {
    stream: UnixStream,
    pid: u32,
    /// When it is closed unless it subscribed; `None` for a subscription.
    deadline: Option<Instant>,
}

enum Next {
    Keep,
    Close,
}

impl Server {
    pub fn run(mut self) {
        // SeqCst: SYNC POINT: pairs with the store in `RendezvousServer::drop`.
        while !self.stop.load(Ordering::SeqCst) {
            let mut pollfds = vec![libc::pollfd { fd: self.listener.as_raw_fd(), events: libc::POLLIN, revents: 0 }];
            pollfds.extend(self.connections.iter().map(|c| libc::pollfd {
                fd: c.stream.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            }));
            let now = Instant::now();
            let timeout = self
                .connections
                .iter()
                .filter_map(|c| c.deadline)
                .min()
                .map_or(1_000, |at| at.saturating_duration_since(now).as_millis().min(1_000) as i32 + 1);
            // SAFETY: `pollfds` is a valid array of its length.
            let n = unsafe { libc::poll(pollfds.as_mut_ptr(), pollfds.len() as libc::nfds_t, timeout) };
            if self.stop.load(Ordering::SeqCst) {
                break;
            }
            if n < 0 {
                continue;
            }
            // Connections first (their indices are those of `pollfds`
            // minus one), from the back so that removing keeps the rest.
            let now = Instant::now();
            for i in (0..self.connections.len()).rev() {
                let ready = pollfds[i + 1].revents != 0;
                let expired = self.connections[i].deadline.is_some_and(|at| now >= at);
                let next = if ready { self.on_readable(i) } else { Next::Keep };
                if matches!(next, Next::Close) || (expired && self.connections[i].deadline.is_some()) {
                    self.connections.swap_remove(i);
                }
            }
            if pollfds[0].revents != 0 && !self.accept_all() {
                break;
            }
        }
    }

    /// Accepts every waiting peer; false once the listener is shut down.
    fn accept_all(&mut self) -> bool {
        // SAFETY: getuid has no preconditions.
        let own_uid = unsafe { libc::getuid() };
        loop {
            let stream = match self.listener.accept() {
                Ok((stream, _)) => stream,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return true,
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => return false,
                Err(_) => return true,
            };
            let Ok(creds) = socket::getsockopt(&stream, sockopt::PeerCredentials) else { continue };
            let uid = creds.uid();
            if uid != own_uid && !self.policy.allowed_uids.contains(&uid) {
                let reason = format!("uid {uid} (pid {}) is not allowed to attach", creds.pid());
                #[cfg(feature = "tracing")]
                tracing::warn!(uid, pid = creds.pid(), "rendezvous refused a peer: {reason}");
                let mut message = wire::DENIED.to_vec();
                message.extend_from_slice(reason.as_bytes());
                let _ = wire::send(stream.as_fd(), &message, &[], MsgFlags::MSG_DONTWAIT);
                continue;
            }
            let memfd = self.ring.fds().memfd.as_raw_fd();
            if wire::send(stream.as_fd(), wire::GRANT, &[memfd], MsgFlags::MSG_DONTWAIT).is_err() {
                continue;
            }
            #[cfg(feature = "tracing")]
            tracing::debug!(uid, pid = creds.pid(), "granted ring descriptors");
            if self.connections.len() >= MAX_CONNECTIONS {
                if let Some(oldest) = self.connections.iter().position(|c| c.deadline.is_some()) {
                    self.connections.remove(oldest);
                } else {
                    continue;
                }
            }
            let pid = u32::try_from(creds.pid()).unwrap_or(0);
            self.connections.push(Connection { stream, pid, deadline: Some(Instant::now() + LINGER) });
        }
    }

    /// Reads what connection `i` sent.
    fn on_readable(&mut self, i: usize) -> Next {
        let connection = &self.connections[i];
        let message = match wire::receive(connection.stream.as_fd(), MsgFlags::MSG_DONTWAIT) {
            Ok(message) => message,
            Err(Errno::EAGAIN | Errno::EINTR) => return Next::Keep,
            Err(_) => return Next::Close,
        };
        if message.bytes.is_empty() && message.fds.is_empty() {
            // The peer hung up.
            return Next::Close;
        }
        if connection.deadline.is_none() {
            // A subscriber has nothing to say.
            return self.refuse(i, "a subscriber sends nothing");
        }
        if message.bytes == wire::FEED && message.fds.is_empty() && !message.truncated {
            return self.subscribe(i);
        }
        match self.register(i, message) {
            Ok(()) => {
                let _ = wire::send(self.connections[i].stream.as_fd(), wire::WATCHED, &[], MsgFlags::MSG_DONTWAIT);
                Next::Keep
            }
            Err(reason) => self.refuse(i, reason),
        }
    }

    fn register(&mut self, i: usize, message: Message) -> Result<(), Refusal> {
        let watch = wire::watch_of(message)?;
        if watch.hung_up() {
            return Err("its producer is gone already");
        }
        let pid = self.connections[i].pid;
        let copy = watch.try_clone().map_err(|_| "out of descriptors")?;
        self.watches.register(watch, pid, self.ring.header())?;
        #[cfg(feature = "tracing")]
        tracing::info!(pid, token = copy.token(), "registered a producer's liveness watch");
        // Every subscribed consumer gets it before the launcher hears it
        // was taken, hence before the producer it launches next can claim.
        for subscriber in self.connections.iter_mut().filter(|c| c.deadline.is_none()) {
            if wire::send_watch(subscriber.stream.as_fd(), &copy, MsgFlags::MSG_DONTWAIT).is_err() {
                // A consumer that does not read its feed loses it.
                let _ = subscriber.stream.shutdown(std::net::Shutdown::Both);
            }
        }
        Ok(())
    }

    fn subscribe(&mut self, i: usize) -> Next {
        if self.connections.iter().filter(|c| c.deadline.is_none()).count() >= MAX_SUBSCRIBERS {
            return self.refuse(i, "as many consumers subscribe as may");
        }
        let stream = self.connections[i].stream.as_fd();
        for watch in self.watches.copies() {
            if wire::send_watch(stream, &watch, MsgFlags::MSG_DONTWAIT).is_err() {
                return Next::Close;
            }
        }
        if wire::send(stream, wire::FEED_SYNC, &[], MsgFlags::MSG_DONTWAIT).is_err() {
            return Next::Close;
        }
        self.connections[i].deadline = None;
        Next::Keep
    }

    fn refuse(&self, i: usize, reason: Refusal) -> Next {
        // Relaxed: a counter, read for reports only.
        self.refused.fetch_add(1, Ordering::Relaxed);
        let connection = &self.connections[i];
        #[cfg(feature = "tracing")]
        tracing::warn!(pid = connection.pid, reason, "rendezvous refused a message");
        let mut message = wire::REFUSED.to_vec();
        message.extend_from_slice(reason.as_bytes());
        let _ = wire::send(connection.stream.as_fd(), &message, &[], MsgFlags::MSG_DONTWAIT);
        Next::Close
    }
}
