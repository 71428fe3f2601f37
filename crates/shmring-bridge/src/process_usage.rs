//! CPU time and memory of a process, or of a process and all its
//! descendants (a browser), read from `/proc`: what the E2E test prints and
//! the load bench reports.

use std::fs;
use std::io;
use std::time::Duration;

/// CPU and memory of one process or a tree of them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// User + system time, including children that were waited for.
    pub cpu: Duration,
    /// Resident memory in bytes (`VmRSS`).
    pub rss: u64,
    /// Resident private memory (`RssAnon`): heap, stacks.
    pub rss_anon: u64,
    /// Resident shared memory (`RssShmem`): a mapped ring counts here.
    pub rss_shmem: u64,
}

impl std::ops::Add for Usage {
    type Output = Usage;
    fn add(self, other: Usage) -> Usage {
        Usage {
            cpu: self.cpu + other.cpu,
            rss: self.rss + other.rss,
            rss_anon: self.rss_anon + other.rss_anon,
            rss_shmem: self.rss_shmem + other.rss_shmem,
        }
    }
}

fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf only reads a configuration value.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as u64
    } else {
        100
    }
}

/// `(ppid, cpu)` from `/proc/PID/stat`.
fn stat(pid: u32) -> io::Result<(u32, Duration)> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name is in parentheses and may hold spaces: fields are
    // counted after the last ')'.
    let rest = text.rsplit_once(')').map(|(_, rest)| rest).unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| -> io::Result<u64> {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("/proc/{pid}/stat field {i}")))
    };
    // state, ppid, ..., utime (11), stime (12), cutime (13), cstime (14).
    let ticks = field(11)? + field(12)? + field(13)? + field(14)?;
    let per_second = clock_ticks_per_second();
    let cpu = Duration::from_secs(ticks / per_second)
        + Duration::from_nanos((ticks % per_second) * 1_000_000_000 / per_second);
    Ok((field(1)? as u32, cpu))
}

fn status_kib(text: &str, key: &str) -> u64 {
    text.lines()
        .find_map(|line| line.strip_prefix(key))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Usage of process `pid`.
pub fn of_process(pid: u32) -> io::Result<Usage> {
    let (_, cpu) = stat(pid)?;
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    Ok(Usage {
        cpu,
        rss: status_kib(&status, "VmRSS:") * 1024,
        rss_anon: status_kib(&status, "RssAnon:") * 1024,
        rss_shmem: status_kib(&status, "RssShmem:") * 1024,
    })
}

/// Usage of this process.
pub fn of_self() -> io::Result<Usage> {
    of_process(std::process::id())
}

/// Processes in the tree rooted at `root` (it included), alive now.
pub fn tree(root: u32) -> Vec<u32> {
    let mut parents = Vec::new();
    if let Ok(dir) = fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            if let Ok((ppid, _)) = stat(pid) {
                parents.push((pid, ppid));
            }
        }
    }
    let mut members = vec![root];
    let mut i = 0;
    while i < members.len() {
        let parent = members[i];
        members.extend(parents.iter().filter(|&&(_, ppid)| ppid == parent).map(|&(pid, _)| pid));
        i += 1;
    }
    members
}

/// Usage of `root` and all its descendants alive now (the time of those
/// that exited and were waited for is in their parents' counts). Memory
/// shared between them is counted once per process.
pub fn of_tree(root: u32) -> Usage {
    tree(root).into_iter().filter_map(|pid| of_process(pid).ok()).fold(Usage::default(), |a, b| a + b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_uses_cpu_and_memory() {
        let before = of_self().unwrap();
        let mut x = 0u64;
        let start = std::time::Instant::now();
        while start.elapsed() < Duration::from_millis(60) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let after = of_self().unwrap();
        assert!(after.cpu > before.cpu, "{before:?} -> {after:?}");
        assert!(after.rss > 0 && after.rss_anon > 0);
        assert!(tree(std::process::id()).contains(&std::process::id()));
    }
}
