//! Is a process still there? Recovery steps over a claim only once its
//! producer's death is *confirmed*, never because a timeout ran out:
//!
//! - in the consumer's own pid namespace, by pid and start time (pids are
//!   recycled), a thread group counting as alive while any of its threads
//!   runs (a main thread that exited leaves a zombie leader behind);
//! - in any other namespace (a sandboxed renderer's pid means nothing
//!   here), by a liveness descriptor that only the producer process holds:
//!   one end of a socket pair, or a pidfd, that its launcher handed the
//!   consumer as a [`ProducerWatch`] (in process, or over the ring's
//!   rendezvous socket from another process); its hang-up is the death.
//!
//! Anything else is [`Verdict::Unknown`]: treated as alive, and reported
//! when it holds a claim too long.

use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// What a liveness check found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Liveness {
    Alive,
    Dead,
}

/// What the consumer knows about a producer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Alive,
    /// Its death is confirmed: its claims may be stepped over.
    Dead,
    /// Nothing can confirm it either way: treated as alive.
    Unknown,
}

/// This process's pid as the kernel reports it to us.
pub fn own_pid() -> u32 {
    std::process::id()
}

/// This process's start time, or 0 when `/proc` cannot be read (inside a
/// sandbox that forbids `open()`).
pub fn own_start_time() -> u64 {
    read_stat("/proc/self/stat").map(|s| s.start_time).unwrap_or(0)
}

/// The inode number of this process's pid namespace, or 0 when it cannot
/// be read (no `/proc`, as in a sandboxed renderer). Read once per attach:
/// a process forked after `unshare(CLONE_NEWPID)` lives in another
/// namespace than its parent.
pub fn own_pid_namespace() -> u64 {
    // Miri has no `/proc`: one made-up namespace, so heap-backed tests
    // judge pids as processes of one namespace do.
    #[cfg(miri)]
    return 1;
    #[cfg(not(miri))]
    {
        let link = std::fs::read_link("/proc/self/ns/pid").ok();
        // The link reads `pid:[4026531836]`.
        link.as_ref()
            .and_then(|target| target.to_str())
            .and_then(|text| text.strip_prefix("pid:[")?.strip_suffix(']')?.parse().ok())
            .unwrap_or(0)
    }
}

/// Whether a pid recorded by a process of namespace `theirs` can be
/// checked by a process of namespace `ours`: both known and equal.
pub fn same_namespace(ours: u64, theirs: u64) -> bool {
    ours != 0 && ours == theirs
}

/// Checks `pid`, started at `start_time` (0: unknown), in our namespace.
pub fn check(pid: u32, start_time: u64) -> Liveness {
    if pid == 0 || pid > i32::MAX as u32 {
        return Liveness::Dead;
    }
    // Miri cannot send signals; /proc alone answers there.
    #[cfg(not(miri))]
    {
        // SAFETY: signal 0 only checks for existence and permission.
        let rc = unsafe { libc::kill(pid as libc::pid_t, 0) };
        if rc != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH) {
            return Liveness::Dead;
        }
    }
    match read_stat(&format!("/proc/{pid}/stat")) {
        Some(stat) => {
            let recycled = start_time != 0 && stat.start_time != start_time;
            // A zombie leader whose other threads still run is a live
            // process (its main thread called `pthread_exit`).
            let zombie = matches!(stat.state, b'Z' | b'X' | b'x') && !other_threads_run(pid);
            if zombie || recycled {
                Liveness::Dead
            } else {
                Liveness::Alive
            }
        }
        // `kill` says it exists and /proc is not readable here: trust kill.
        None => Liveness::Alive,
    }
}

/// Whether a thread of `pid` other than its leader is still running.
fn other_threads_run(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return false };
    tasks.flatten().any(|task| {
        let tid = task.file_name();
        tid.to_str() != Some(&pid.to_string())
            && read_stat(&format!("/proc/{pid}/task/{}/stat", tid.to_string_lossy()))
                .is_some_and(|stat| !matches!(stat.state, b'Z' | b'X' | b'x'))
    })
}

/// The real user id of `pid`, from `/proc`.
pub(crate) fn uid_of(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

struct Stat {
    state: u8,
    start_time: u64,
}

fn read_stat(path: &str) -> Option<Stat> {
    // Miri runs the heap-backed protocol, which has no `/proc` to consult:
    // a start time is unknown and `check` trusts the pid alone.
    if cfg!(miri) {
        return None;
    }
    let mut text = String::new();
    std::fs::File::open(path).ok()?.read_to_string(&mut text).ok()?;
    // The command name (field 2) may hold spaces and parentheses: fields
    // are counted after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?.as_bytes().first().copied()?;
    // After the state (field 3), start time is field 22: 19 further.
    let start_time = fields.nth(18)?.parse().ok()?;
    Some(Stat { state, start_time })
}

/// A producer's half of a liveness pair: held open by the producer process
/// (in its ring's mapping) for as long as it lives, and the token its
/// slots carry so the consumer knows which watch is theirs.
#[derive(Debug)]
pub struct ProducerLiveness {
    pub(crate) fd: Option<OwnedFd>,
    pub(crate) token: u64,
}

impl ProducerLiveness {
    /// Only a token, for a producer whose launcher watches it with a pidfd.
    pub fn token_only(token: u64) -> Self {
        ProducerLiveness { fd: None, token }
    }

    /// The token its slots carry.
    pub fn token(&self) -> u64 {
        self.token
    }

    /// The descriptor the producer holds, if any.
    pub fn fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        use std::os::fd::AsFd;
        self.fd.as_ref().map(|fd| fd.as_fd())
    }

    pub(crate) fn try_clone(&self) -> crate::Result<Self> {
        let fd = match &self.fd {
            Some(fd) => Some(fd.try_clone().map_err(|e| crate::Error::os_from("dup", e))?),
            None => None,
        };
        Ok(ProducerLiveness { fd, token: self.token })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WatchKind {
    /// One end of a socket pair: the peer's close is a hang-up.
    Socket,
    /// A pidfd: readable once the process has exited.
    Pidfd,
}

/// The consumer's half: whoever launched a producer hands it to the
/// consumer ([`Consumer::watch_producer`](crate::Consumer::watch_producer)),
/// which then confirms the producer's death when the descriptor hangs up.
#[derive(Debug)]
pub struct ProducerWatch {
    pub(crate) fd: OwnedFd,
    pub(crate) token: u64,
    pub(crate) kind: WatchKind,
    /// The launcher that registered it over the rendezvous socket (its
    /// pid), 0 for a watch handed over in the consumer's own process.
    #[cfg_attr(not(feature = "rendezvous"), allow(dead_code))]
    pub(crate) peer: u32,
}

impl ProducerWatch {
    /// Watches a producer through a pidfd (`pidfd_open` of its pid, made by
    /// its parent), for slots carrying `token`.
    pub fn pidfd(fd: OwnedFd, token: u64) -> Self {
        ProducerWatch { fd, token, kind: WatchKind::Pidfd, peer: 0 }
    }

    /// Watches the other end of a socket pair for slots carrying `token`.
    pub fn socket(fd: OwnedFd, token: u64) -> Self {
        ProducerWatch { fd, token, kind: WatchKind::Socket, peer: 0 }
    }

    /// The token of the slots this watch confirms.
    pub fn token(&self) -> u64 {
        self.token
    }

    /// A second handle on the same watch (a duplicated descriptor).
    pub fn try_clone(&self) -> crate::Result<Self> {
        let fd = self.fd.try_clone().map_err(|e| crate::Error::os_from("dup", e))?;
        Ok(ProducerWatch { fd, ..*self })
    }

    /// Whether the producer is gone (one `poll`, no waiting).
    pub fn hung_up(&self) -> bool {
        let mut pfd = libc::pollfd { fd: self.fd.as_raw_fd(), events: libc::POLLIN | libc::POLLRDHUP, revents: 0 };
        // SAFETY: one valid pollfd, zero timeout.
        let n = unsafe { libc::poll(&mut pfd, 1, 0) };
        if n <= 0 {
            return false;
        }
        match self.kind {
            // An honest producer never writes to its end: only the close
            // counts (a write only makes it look dead to itself).
            WatchKind::Socket => pfd.revents & (libc::POLLHUP | libc::POLLRDHUP | libc::POLLERR) != 0,
            WatchKind::Pidfd => pfd.revents & (libc::POLLIN | libc::POLLHUP) != 0,
        }
    }
}

/// How the consumer judges the owner of a producer slot.
pub(crate) struct Judge<'a> {
    /// The consumer's pid namespace (0: unknown).
    pub own_namespace: u64,
    pub watches: &'a [ProducerWatch],
}

impl Judge<'_> {
    /// The owner of `slot`, whose owner word reads `owner`.
    pub(crate) fn slot(&self, slot: &crate::layout::ProducerSlot, owner: u64) -> Verdict {
        use crate::sync::Ordering;
        let token = slot.liveness_token.load(Ordering::Relaxed);
        if token != 0 {
            if let Some(watch) = self.watches.iter().find(|w| w.token == token) {
                return if watch.hung_up() { Verdict::Dead } else { Verdict::Alive };
            }
        }
        if same_namespace(self.own_namespace, slot.pid_namespace.load(Ordering::Relaxed)) {
            let pid = crate::layout::owner_pid(owner);
            return match check(pid, slot.start_time.load(Ordering::Relaxed)) {
                Liveness::Alive => Verdict::Alive,
                Liveness::Dead => Verdict::Dead,
            };
        }
        Verdict::Unknown
    }
}

/// A random non-zero token.
pub fn new_token() -> u64 {
    let mut bytes = [0u8; 8];
    // SAFETY: getrandom writes at most `bytes.len()` bytes into our buffer.
    let n = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    let mut token = u64::from_le_bytes(bytes);
    if n != bytes.len() as isize {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        token = t.as_nanos() as u64 ^ u64::from(own_pid()).rotate_left(32);
    }
    token.max(1)
}

/// What a liveness pair's producer half finds queued on it: this and the
/// token (u64 LE), so that a producer handed the descriptor alone (the
/// patched browser's renderers get descriptor numbers and nothing else)
/// still learns which token its slots carry.
const TOKEN_NOTE: &[u8; 8] = b"SHMLIVE1";

/// The token queued on a liveness pair's producer half (see
/// [`liveness_pair`]), read without taking it, so that every process
/// holding a copy reads it too; `None` for any other descriptor. Never
/// waits; one `recvmsg`, which a renderer's sandbox allows.
pub(crate) fn carried_token(fd: std::os::fd::BorrowedFd<'_>) -> Option<u64> {
    let mut note = [0u8; 16];
    let mut iov = libc::iovec { iov_base: note.as_mut_ptr().cast(), iov_len: note.len() };
    // SAFETY: an all-zero msghdr is valid (no name, no control data).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    // SAFETY: `msg` points at one iovec over our 16-byte buffer; MSG_PEEK
    // leaves the bytes queued, MSG_DONTWAIT never blocks; a descriptor
    // that is not a socket fails with ENOTSOCK.
    let n = unsafe { libc::recvmsg(fd.as_raw_fd(), &mut msg, libc::MSG_PEEK | libc::MSG_DONTWAIT) };
    if n != note.len() as isize || note[..8] != *TOKEN_NOTE {
        return None;
    }
    Some(u64::from_le_bytes(note[8..].try_into().expect("8 bytes"))).filter(|&token| token != 0)
}

/// A socket pair for one producer process about to be launched: hand the
/// first half to the producer (see [`RingFds::pass_to`](crate::RingFds::pass_to)),
/// the second to the consumer. The producer's half carries the token too.
pub fn liveness_pair() -> crate::Result<(ProducerLiveness, ProducerWatch)> {
    let mut fds = [0; 2];
    // SAFETY: socketpair writes two descriptors into our array.
    if unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0, fds.as_mut_ptr()) } != 0 {
        return Err(crate::Error::os("socketpair"));
    }
    // SAFETY: both descriptors are fresh and owned by nobody else.
    let (ours, theirs) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let token = new_token();
    let mut note = [0u8; 16];
    note[..8].copy_from_slice(TOKEN_NOTE);
    note[8..].copy_from_slice(&token.to_le_bytes());
    // SAFETY: send reads 16 bytes from our buffer; the fresh pair has room.
    let sent = unsafe {
        libc::send(ours.as_raw_fd(), note.as_ptr().cast(), note.len(), libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT)
    };
    if sent != note.len() as isize {
        return Err(crate::Error::os("queue the liveness token"));
    }
    Ok((ProducerLiveness { fd: Some(theirs), token }, ProducerWatch::socket(ours, token)))
}

#[cfg(all(test, not(loom), not(miri)))]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_alive_and_a_wrong_start_time_is_not() {
        let start = own_start_time();
        assert_ne!(start, 0);
        assert_eq!(check(own_pid(), start), Liveness::Alive);
        assert_eq!(check(own_pid(), start + 1), Liveness::Dead);
        assert_eq!(check(0, 0), Liveness::Dead);
    }

    #[test]
    fn own_namespace_is_known_and_unknown_ones_never_match() {
        let own = own_pid_namespace();
        assert_ne!(own, 0);
        assert!(same_namespace(own, own));
        assert!(!same_namespace(own, own + 1));
        assert!(!same_namespace(own, 0));
        assert!(!same_namespace(0, 0), "two unknown namespaces are not the same one");
    }

    #[test]
    fn killed_unreaped_child_is_dead() {
        let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        let pid = child.id();
        let start = read_stat(&format!("/proc/{pid}/stat")).unwrap().start_time;
        assert_eq!(check(pid, start), Liveness::Alive);
        child.kill().unwrap();
        // Not reaped yet: a zombie must count as dead.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while check(pid, start) == Liveness::Alive && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(check(pid, start), Liveness::Dead);
        child.wait().unwrap();
        assert_eq!(check(pid, start), Liveness::Dead);
    }

    #[test]
    fn watch_hangs_up_when_the_last_holder_of_the_other_end_closes_it() {
        let (producer_side, watch) = liveness_pair().unwrap();
        assert!(!watch.hung_up());
        let copy = producer_side.try_clone().unwrap();
        drop(producer_side);
        assert!(!watch.hung_up(), "a copy still holds it");
        drop(copy);
        assert!(watch.hung_up());
    }

    #[test]
    fn producer_half_carries_its_token_for_every_holder_and_nothing_else_does() {
        use std::os::fd::AsFd;
        let (producer_side, watch) = liveness_pair().unwrap();
        let fd = producer_side.fd().unwrap();
        assert_eq!(carried_token(fd), Some(watch.token()));
        assert_eq!(carried_token(fd), Some(watch.token()), "read without taking it");
        assert_eq!(carried_token(watch.fd.as_fd()), None, "the watch end carries nothing");
        let file = std::fs::File::open("/proc/self/stat").unwrap();
        assert_eq!(carried_token(file.as_fd()), None);
        assert!(!watch.hung_up(), "the queued token is no hang-up");
    }
}
