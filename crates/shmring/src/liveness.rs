//! Is a process still there? A pid alone is not enough (pids are recycled),
//! so every pid in the header travels with the process start time, and a
//! zombie (killed, not yet reaped) counts as dead.

use std::io::Read;

/// What a liveness check found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Liveness {
    Alive,
    Dead,
}

/// This process's pid as the kernel reports it to us.
pub fn own_pid() -> u32 {
    std::process::id()
}

/// This process's start time, or 0 when `/proc` cannot be read (inside a
/// sandbox that forbids `open()`); the consumer then relies on the pid.
pub fn own_start_time() -> u64 {
    read_stat("/proc/self/stat").map(|s| s.start_time).unwrap_or(0)
}

/// The inode number of this process's pid namespace, or 0 when it cannot
/// be read (no `/proc`, as in a sandboxed renderer). Not cached: a process
/// forked after `unshare(CLONE_NEWPID)` lives in another namespace than its
/// parent, and this is read only when joining or examining a stall.
pub fn own_pid_namespace() -> u64 {
    #[cfg(miri)]
    return 0;
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

/// Whether a pid that a process in pid namespace `namespace` recorded names
/// the same process here, so [`check`] can answer for it. A process that
/// could not read its namespace (0) is presumed to be in another one; when
/// this process cannot read its own, nothing better than the pid is known.
pub fn pid_comparable(namespace: u64) -> bool {
    let own = own_pid_namespace();
    own == 0 || namespace == own
}

/// Checks `pid`, started at `start_time` (0: unknown).
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
            let zombie = matches!(stat.state, b'Z' | b'X' | b'x');
            let recycled = start_time != 0 && stat.start_time != start_time;
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
    fn own_namespace_is_known_and_comparable() {
        let own = own_pid_namespace();
        assert_ne!(own, 0);
        assert!(pid_comparable(own));
        assert!(!pid_comparable(own + 1));
        assert!(!pid_comparable(0));
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
}
