//! The rendezvous socket's messages. Every one is sent with one `sendmsg`
//! and read with one `recvmsg`: a Unix stream socket never joins a message
//! that carries descriptors to the next one, so a message's bytes and its
//! descriptors arrive together.
//!
//! | from | bytes | descriptors |
//! |------|-------|-------------|
//! | server, on accept | `SHMRING2` (grant) or `DENIED01` + reason | the segment / none |
//! | launcher | `SHMWATCH`, kind (`S` socket, `P` pidfd), token (u64 LE) | the watch |
//! | server | `WATCHED1`, or `REFUSED1` + reason (then it hangs up) | none |
//! | consumer | `SHMFEED1`: send me every watch, now and later | none |
//! | server, to a consumer | `SHMWATCH` ... as above, then `FEEDSYNC` once | the watch |
//!
//! What arrives is hostile: a watch is taken only with exactly one
//! descriptor of the kind it claims (a connected Unix socket or a pidfd)
//! and a token that is not 0; the server also refuses one that has hung
//! up already (a host feeds those on: their slots may still need them).

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{self, ControlMessage, ControlMessageOwned, MsgFlags};

use crate::liveness::{ProducerWatch, WatchKind};
use crate::watches::Refusal;

/// The segment, granted.
pub(crate) const GRANT: &[u8; 8] = b"SHMRING2";
/// A refused attach (followed by the reason).
pub(crate) const DENIED: &[u8; 8] = b"DENIED01";
/// A liveness watch (kind, token, one descriptor).
pub(crate) const WATCH: &[u8; 8] = b"SHMWATCH";
/// A watch taken.
pub(crate) const WATCHED: &[u8; 8] = b"WATCHED1";
/// A watch refused (followed by the reason).
pub(crate) const REFUSED: &[u8; 8] = b"REFUSED1";
/// A consumer subscribing to the watches.
pub(crate) const FEED: &[u8; 8] = b"SHMFEED1";
/// End of the watches held when the consumer subscribed.
pub(crate) const FEED_SYNC: &[u8; 8] = b"FEEDSYNC";

const WATCH_LEN: usize = 17;
/// Longest message read; anything longer is garbage.
const MAX_MESSAGE: usize = 256;
/// Room for as many descriptors as one message can carry (the kernel's
/// `SCM_MAX_FD`): an excess is then received, refused and closed, never
/// cut off where it could not be seen.
const MAX_FDS: usize = 253;

/// One message as it arrived.
pub(crate) struct Message {
    pub bytes: Vec<u8>,
    /// Owned at once, so that whatever is refused gets closed.
    pub fds: Vec<OwnedFd>,
    /// Bytes were cut off (longer than any valid message).
    pub truncated: bool,
}

/// Reads one message (`MSG_DONTWAIT` in `flags` for no waiting).
pub(crate) fn receive(fd: BorrowedFd<'_>, flags: MsgFlags) -> nix::Result<Message> {
    let mut buffer = [0u8; MAX_MESSAGE];
    let mut cmsg = nix::cmsg_space!([RawFd; MAX_FDS]);
    let mut iov = [IoSliceMut::new(&mut buffer)];
    let msg = socket::recvmsg::<()>(fd.as_raw_fd(), &mut iov, Some(&mut cmsg), flags | MsgFlags::MSG_CMSG_CLOEXEC)?;
    let mut fds = Vec::new();
    for message in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(raw) = message {
            // SAFETY: the kernel just installed these descriptors in our
            // table for us; nothing else owns them.
            fds.extend(raw.into_iter().map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }));
        }
    }
    let truncated = msg.flags.intersects(MsgFlags::MSG_CTRUNC | MsgFlags::MSG_TRUNC);
    let bytes = msg.bytes;
    Ok(Message { bytes: buffer[..bytes].to_vec(), fds, truncated })
}

/// Sends one message with `fds` attached.
pub(crate) fn send(fd: BorrowedFd<'_>, bytes: &[u8], fds: &[RawFd], flags: MsgFlags) -> nix::Result<usize> {
    let rights = [ControlMessage::ScmRights(fds)];
    let cmsgs: &[ControlMessage<'_>] = if fds.is_empty() { &[] } else { &rights };
    socket::sendmsg::<()>(fd.as_raw_fd(), &[IoSlice::new(bytes)], cmsgs, flags | MsgFlags::MSG_NOSIGNAL, None)
}

/// Sends `watch` (its kind, token and descriptor).
pub(crate) fn send_watch(fd: BorrowedFd<'_>, watch: &ProducerWatch, flags: MsgFlags) -> nix::Result<usize> {
    let mut bytes = [0u8; WATCH_LEN];
    bytes[..8].copy_from_slice(WATCH);
    bytes[8] = match watch.kind {
        WatchKind::Socket => b'S',
        WatchKind::Pidfd => b'P',
    };
    bytes[9..].copy_from_slice(&watch.token().to_le_bytes());
    send(fd, &bytes, &[watch.fd.as_raw_fd()], flags)
}

/// The watch a `SHMWATCH` message carries, checked.
pub(crate) fn watch_of(message: Message) -> Result<ProducerWatch, Refusal> {
    let Message { bytes, mut fds, truncated } = message;
    if bytes.len() != WATCH_LEN || !bytes.starts_with(WATCH) {
        return Err("not a watch message");
    }
    if truncated || fds.len() != 1 {
        return Err("a watch comes with exactly one descriptor");
    }
    let token = u64::from_le_bytes(bytes[9..].try_into().expect("8 bytes"));
    if token == 0 {
        return Err("token 0 names no producer");
    }
    let fd = fds.pop().expect("one descriptor checked above");
    let watch = match bytes[8] {
        b'S' => {
            connected_unix_stream(&fd)?;
            ProducerWatch::socket(fd, token)
        }
        b'P' => {
            pidfd(&fd)?;
            ProducerWatch::pidfd(fd, token)
        }
        _ => return Err("unknown watch kind"),
    };
    Ok(watch)
}

/// One end of a connected Unix stream (or seqpacket) socket.
fn connected_unix_stream(fd: &OwnedFd) -> Result<(), Refusal> {
    // SAFETY: fstat writes one `stat` into the zeroed buffer.
    let mut stat: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is open and `stat` is a valid buffer.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut stat) } != 0 || stat.st_mode & libc::S_IFMT != libc::S_IFSOCK {
        return Err("the descriptor is not a socket");
    }
    let option = |name| {
        let mut value: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: getsockopt writes at most `len` bytes into `value`.
        let rc = unsafe {
            libc::getsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, name, (&mut value as *mut libc::c_int).cast(), &mut len)
        };
        (rc == 0).then_some(value)
    };
    if option(libc::SO_DOMAIN) != Some(libc::AF_UNIX) {
        return Err("the descriptor is not a Unix socket");
    }
    if !matches!(option(libc::SO_TYPE), Some(libc::SOCK_STREAM | libc::SOCK_SEQPACKET)) {
        return Err("the socket is not connection-oriented");
    }
    if option(libc::SO_ACCEPTCONN) != Some(0) {
        return Err("the socket listens: it has no peer to hang up");
    }
    // SAFETY: a zeroed sockaddr_un is a valid buffer for getpeername.
    let mut address: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
    // SAFETY: getpeername writes at most `len` bytes into `address`.
    if unsafe { libc::getpeername(fd.as_raw_fd(), (&mut address as *mut libc::sockaddr_un).cast(), &mut len) } != 0 {
        return Err("the socket is not connected");
    }
    Ok(())
}

/// A pidfd (what `pidfd_open` returns).
fn pidfd(fd: &OwnedFd) -> Result<(), Refusal> {
    match std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())) {
        Ok(target) if target.as_os_str() == "anon_inode:[pidfd]" => Ok(()),
        _ => Err("the descriptor is not a pidfd"),
    }
}
