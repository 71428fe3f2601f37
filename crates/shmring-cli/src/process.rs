//! Child processes: pipes they inherit, waiting for them with their CPU
//! time, and our own CPU time.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::Duration;

/// A pipe, both ends close-on-exec: `(read, write)`.
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: pipe2 writes two descriptors into the array we own.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors are fresh and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Makes `command`'s child inherit `fd` as descriptor `target`.
pub fn inherit_as(command: &mut Command, fd: RawFd, target: RawFd) {
    // SAFETY: the closure runs in the forked child before exec and only
    // makes async-signal-safe calls (dup2, fcntl) on descriptors that are
    // open in the parent when it forks.
    unsafe {
        command.pre_exec(move || {
            if fd == target {
                // dup2 onto itself keeps close-on-exec set: clear it.
                if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                    return Err(io::Error::last_os_error());
                }
            } else if libc::dup2(fd, target) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Makes `command`'s child inherit `fd` under its own number.
pub fn inherit(command: &mut Command, fd: &OwnedFd) {
    let raw = fd.as_raw_fd();
    inherit_as(command, raw, raw);
}

/// Makes `command`'s child the leader of a new session (no controlling
/// terminal: a Ctrl-C in the shell does not reach it).
pub fn detach(command: &mut Command) {
    // SAFETY: setsid is async-signal-safe and runs in the forked child.
    unsafe {
        command.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// How a child ended and the CPU it used.
#[derive(Clone, Debug)]
pub struct Exit {
    pub success: bool,
    /// "status 0", "signal 9 (SIGKILL)".
    pub description: String,
    pub cpu: Duration,
}

/// Waits for child `pid` (`block`), or checks whether it has ended.
pub fn wait(pid: u32, block: bool) -> io::Result<Option<Exit>> {
    let mut status = 0;
    // SAFETY: wait4 writes the status and the zeroed rusage we own.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let flags = if block { 0 } else { libc::WNOHANG };
    loop {
        // SAFETY: as above; `pid` is our child.
        let done = unsafe { libc::wait4(pid as libc::pid_t, &mut status, flags, &mut usage) };
        if done < 0 {
            let error = io::Error::last_os_error();
            if error.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(error);
        }
        if done == 0 {
            return Ok(None);
        }
        break;
    }
    let (success, description) = if libc::WIFEXITED(status) {
        let code = libc::WEXITSTATUS(status);
        (code == 0, format!("exited with status {code}"))
    } else if libc::WIFSIGNALED(status) {
        let signal = libc::WTERMSIG(status);
        (false, format!("killed by signal {signal}{}", signal_name(signal)))
    } else {
        (false, format!("ended with wait status {status:#x}"))
    };
    Ok(Some(Exit { success, description, cpu: rusage_cpu(&usage) }))
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGKILL => " (SIGKILL)",
        libc::SIGTERM => " (SIGTERM)",
        libc::SIGSEGV => " (SIGSEGV)",
        libc::SIGABRT => " (SIGABRT)",
        libc::SIGPIPE => " (SIGPIPE)",
        libc::SIGINT => " (SIGINT)",
        _ => "",
    }
}

fn rusage_cpu(usage: &libc::rusage) -> Duration {
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, (t.tv_usec as u32).saturating_mul(1000));
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// CPU time (user + system) this process has used so far.
pub fn own_cpu() -> Duration {
    // SAFETY: getrusage writes into the zeroed struct we own.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_SELF is always valid.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    rusage_cpu(&usage)
}

/// Sends `signal` to `pid`.
pub fn kill(pid: u32, signal: i32) -> io::Result<()> {
    // SAFETY: kill has no memory-safety preconditions.
    if unsafe { libc::kill(pid as libc::pid_t, signal) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The command line of process `pid`, arguments joined by spaces.
pub fn command_line(pid: u32) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let parts: Vec<String> =
        raw.split(|&b| b == 0).filter(|p| !p.is_empty()).map(|p| String::from_utf8_lossy(p).into_owned()).collect();
    Some(parts.join(" "))
}
