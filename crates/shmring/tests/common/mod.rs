//! Shared by the tests that run real peer processes: the record pattern
//! every producer writes and the consumer checks, and spawning this test
//! binary again as a peer.
#![allow(dead_code)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use shmring::{Consumer, RingOptions};

/// Bytes at the front of every test record that is long enough.
pub const STAMP_LEN: usize = 24;

/// The pattern of record `seq` of producer `id`: 64-bit words from a
/// counter-based generator, so the consumer can recompute every byte.
pub fn fill(id: u32, seq: u64, buf: &mut [u8]) {
    let mut state = (u64::from(id) << 48) ^ seq.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    for chunk in buf.chunks_mut(8) {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        chunk.copy_from_slice(&z.to_le_bytes()[..chunk.len()]);
    }
}

pub fn record_len(id: u32, seq: u64, max: usize) -> usize {
    // Log-uniform from 1 byte to `max`, and 1 in 20 empty: mostly small,
    // some up to 4 MiB, as media and control records are.
    let mut x = (u64::from(id) << 32 | seq).wrapping_mul(0x2545_F491_4F6C_DD1D);
    x ^= x >> 29;
    if x % 20 == 0 {
        return 0;
    }
    let unit = (x >> 11) as f64 / (1u64 << 53) as f64;
    ((max as f64).powf(unit) as usize).clamp(1, max)
}

pub fn write_record(id: u32, seq: u64, buf: &mut [u8]) {
    if buf.len() >= STAMP_LEN {
        buf[..4].copy_from_slice(&id.to_le_bytes());
        buf[4..8].fill(0);
        buf[8..16].copy_from_slice(&seq.to_le_bytes());
        let len = buf.len() as u64;
        buf[16..24].copy_from_slice(&len.to_le_bytes());
        fill(id, seq, &mut buf[STAMP_LEN..]);
    } else {
        fill(id, seq, buf);
    }
}

pub fn check_record(id: u32, seq: u64, data: &[u8]) -> bool {
    let mut expected = vec![0u8; data.len()];
    write_record(id, seq, &mut expected);
    expected == data
}

/// Spawns this test binary as a peer playing `role`.
pub fn spawn_peer(role: &str, fds_spec: Option<&str>, extra_env: &[(&str, String)]) -> Child {
    spawn_peer_with(role, fds_spec, extra_env, Stdio::null())
}

/// As [`spawn_peer`], with the peer's stdout going to `stdout`.
pub fn spawn_peer_with(role: &str, fds_spec: Option<&str>, extra_env: &[(&str, String)], stdout: Stdio) -> Child {
    peer_command(Command::new(std::env::current_exe().unwrap()), role, fds_spec, extra_env, stdout).spawn().unwrap()
}

/// As [`spawn_peer_with`], with the peer in a new pid namespace of its own
/// (util-linux `unshare`): its pid means nothing out here, as a sandboxed
/// renderer's does not. Killing the returned child kills the peer.
#[allow(dead_code)]
pub fn spawn_peer_in_pid_namespace(
    role: &str,
    fds_spec: Option<&str>,
    extra_env: &[(&str, String)],
    stdout: Stdio,
) -> Child {
    let mut unshare = Command::new("unshare");
    unshare.args(["--pid", "--fork", "--kill-child"]).arg(std::env::current_exe().unwrap());
    peer_command(unshare, role, fds_spec, extra_env, stdout).spawn().expect("util-linux unshare runs")
}

/// As [`spawn_peer_in_pid_namespace`], launched the way a browser launches a
/// sandboxed renderer: with a liveness pair, whose watch goes to
/// `consumer`, and the ring's descriptors passed to this child only.
pub fn spawn_watched_peer_in_pid_namespace(
    role: &str,
    consumer: &shmring::Consumer<shmring::MappedRing>,
    extra_env: &[(&str, String)],
    stdout: Stdio,
) -> Child {
    let (producer_half, watch) = shmring::liveness_pair().unwrap();
    consumer.watch_producer(watch);
    let fds = consumer.fds().with_liveness(producer_half).unwrap();
    spawn_peer_in_pid_namespace_with(role, fds, extra_env, stdout)
}

/// Spawns a peer in a new pid namespace with `fds` passed to it alone
/// (see `RingFds::pass_to`).
pub fn spawn_peer_in_pid_namespace_with(
    role: &str,
    fds: shmring::RingFds,
    extra_env: &[(&str, String)],
    stdout: Stdio,
) -> Child {
    let mut unshare = Command::new("unshare");
    unshare.args(["--pid", "--fork", "--kill-child"]).arg(std::env::current_exe().unwrap());
    let mut command = peer_command(unshare, role, None, extra_env, stdout);
    fds.pass_to(&mut command);
    // Dropping `command` closes our copy of the producer's half: from here
    // on only the child (and `unshare`, its launcher) holds it.
    command.spawn().expect("util-linux unshare runs")
}

fn peer_command(
    mut cmd: Command,
    role: &str,
    fds_spec: Option<&str>,
    extra_env: &[(&str, String)],
    stdout: Stdio,
) -> Command {
    cmd.args(["--ignored", "--exact", "peer", "--nocapture", "--test-threads=1", "-q"])
        .env("SHMRING_TEST_ROLE", role)
        .stdout(stdout);
    if let Some(spec) = fds_spec {
        cmd.env("SHMRING_FD", spec);
    }
    for (key, value) in extra_env {
        cmd.env(key, value);
    }
    cmd
}

pub fn env_u64(key: &str) -> u64 {
    std::env::var(key).unwrap().parse().unwrap()
}

pub fn producer_env(id: u32, count: u64, max: usize) -> Vec<(&'static str, String)> {
    vec![
        ("SHMRING_TEST_ID", id.to_string()),
        ("SHMRING_TEST_COUNT", count.to_string()),
        ("SHMRING_TEST_MAX", max.to_string()),
    ]
}

/// Reads lines from a peer's stdout until one starts with `prefix`.
pub fn wait_for_line(child: &mut Child, prefix: &str) -> String {
    use std::io::BufRead;
    let stdout = child.stdout.as_mut().expect("peer spawned with a piped stdout");
    let mut reader = std::io::BufReader::new(stdout);
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).unwrap() == 0 {
            panic!("peer exited before printing {prefix:?}");
        }
        if line.starts_with(prefix) {
            return line.trim().to_string();
        }
    }
}

/// SIGKILLs a peer that `unshare --fork` runs in a pid namespace of its
/// own, and reaps it. The peer itself is killed first: `--kill-child` only
/// takes it down with `unshare` once the child has set that up.
pub fn kill_peer_in_namespace(unshare: &mut Child) {
    let inner = peer_in_namespace_pid(unshare);
    // SAFETY: kill(2) on the peer we started (in a namespace of our making).
    unsafe { libc::kill(inner, libc::SIGKILL) };
    kill_peer(unshare);
}

/// SIGKILLs a peer and reaps it.
pub fn kill_peer(child: &mut Child) {
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGKILL) };
    let _ = child.wait();
}

/// The pid, in our namespace, of the peer that `unshare --fork` started
/// inside a new pid namespace (where it is pid 1).
pub fn peer_in_namespace_pid(unshare: &Child) -> libc::pid_t {
    let path = format!("/proc/{0}/task/{0}/children", unshare.id());
    for _ in 0..500 {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        if let Some(pid) = text.split_whitespace().next().and_then(|p| p.parse().ok()) {
            return pid;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("unshare {} started no peer", unshare.id());
}

/// One BPF instruction of a seccomp filter.
pub fn bpf_stmt(code: u32, k: u32) -> libc::sock_filter {
    libc::sock_filter { code: code as u16, jt: 0, jf: 0, k }
}

/// A conditional jump of a seccomp filter.
pub fn bpf_jump(code: u32, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter { code: code as u16, jt, jf, k }
}

/// Installs a seccomp filter (after `PR_SET_NO_NEW_PRIVS`).
pub fn install_seccomp(filter: &[libc::sock_filter]) {
    let prog = libc::sock_fprog { len: filter.len() as u16, filter: filter.as_ptr() as *mut _ };
    // SAFETY: prctl with valid arguments; `prog` outlives the call and the
    // kernel copies the filter.
    unsafe {
        assert_eq!(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
        assert_eq!(libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, &prog as *const _), 0);
    }
}

pub const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
pub const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
pub const SECCOMP_RET_TRAP: u32 = 0x0003_0000;
pub const SECCOMP_RET_KILL_PROCESS: u32 = 0x8000_0000;
/// Offsets in `struct seccomp_data`: syscall number, then 64-bit arguments.
pub const SECCOMP_NR: u32 = 0;
pub const fn seccomp_arg(n: u32) -> u32 {
    16 + 8 * n
}
pub const BPF_LD_W_ABS: u32 = libc::BPF_LD | libc::BPF_W | libc::BPF_ABS;
pub const BPF_JEQ_K: u32 = libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K;
pub const BPF_JSET_K: u32 = libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K;
pub const BPF_RET_K: u32 = libc::BPF_RET | libc::BPF_K;

/// Prints a line the parent waits for.
pub fn ready(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout();
    writeln!(out, "{line}").unwrap();
    out.flush().unwrap();
}

/// Peer role `survivor`: sends `SHMRING_TEST_COUNT` records of producer
/// `SHMRING_TEST_ID` (paced by `SHMRING_TEST_PACE_US`), none lost, riding
/// out consumer changes.
pub fn survivor() {
    use shmring::{Error, FullPolicy, Producer};
    use std::time::Duration;
    // SAFETY: the parent passed these descriptors in SHMRING_FD.
    let mut producer = unsafe { Producer::from_env() }.unwrap();
    let id = env_u64("SHMRING_TEST_ID") as u32;
    let count = env_u64("SHMRING_TEST_COUNT");
    let max = env_u64("SHMRING_TEST_MAX") as usize;
    producer.set_full_policy(FullPolicy::Block(Duration::from_millis(200)));
    let pace = std::env::var("SHMRING_TEST_PACE_US").ok().and_then(|p| p.parse().ok()).unwrap_or(0);
    let mut seq = 0;
    while seq < count {
        let len = record_len(id, seq, max);
        match producer.reserve(len) {
            Ok(mut r) => {
                write_record(id, seq, &mut r);
                r.set_kind(id);
                r.commit();
                seq += 1;
                if pace > 0 {
                    std::thread::sleep(Duration::from_micros(pace));
                }
            }
            // No consumer for now, or none for long: wait for the
            // next one, then send the same record again.
            Err(Error::ConsumerGone { .. } | Error::Timeout) => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("survivor {id}: {e}"),
        }
    }
    ready(&format!("gone-seen {}", producer.stats().drops));
}

/// Peer role `claim-and-hang`: claims 100,000 bytes, says where, and never
/// commits.
pub fn claim_and_hang() {
    // SAFETY: the parent passed these descriptors in SHMRING_FD.
    let mut producer = unsafe { shmring::Producer::from_env() }.unwrap();
    let mut r = producer.reserve(100_000).unwrap();
    r[..50_000].fill(0xee);
    ready(&format!("claimed {}", r.position()));
    std::thread::sleep(std::time::Duration::from_secs(3600));
}

/// CLOCK_MONOTONIC in nanoseconds: one clock for every process here, in
/// any pid namespace.
pub fn monotonic_ns() -> u64 {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: writes into `now`, which we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}

/// One round of the stall figures: a producer in its own pid namespace
/// claims and hangs, another producer (a thread here) sends a stamped
/// frame every 5 ms; after `hold` the hung one is killed (or, with
/// `stop`, SIGSTOPped for `hold` and continued). `launch` makes the
/// consumer and starts the held producer with its liveness watch. Returns the largest delay
/// of the other producer's frames (commit to delivery) and, for a kill,
/// the time from the kill to the skip.
pub fn stall_round(
    stall: Duration,
    hold: Duration,
    stop: bool,
    launch: impl FnOnce(&RingOptions, &str) -> (Consumer<shmring::MappedRing>, Child, Box<dyn std::any::Any>),
) -> (Duration, Option<Duration>) {
    let options = RingOptions { stall_timeout: stall, ..RingOptions::with_capacity(4 << 20) };
    let role = if stop { "claim-then-commit" } else { "claim-and-hang" };
    // `_kept`: whatever must outlive the round (a host serving the ring).
    let (consumer, mut hung, _kept) = launch(&options, role);
    wait_for_line(&mut hung, "claimed ");
    let inner = peer_in_namespace_pid(&hung);
    if stop {
        // SAFETY: kill(2) on the peer we started.
        unsafe { libc::kill(inner, libc::SIGSTOP) };
    }
    let frames = (hold + 3 * stall).as_millis() as u64 / 5;
    let mut other = consumer.producer().unwrap();
    let sender = std::thread::spawn(move || {
        for _ in 0..frames {
            other.send(1, &monotonic_ns().to_le_bytes()).unwrap();
            std::thread::sleep(Duration::from_millis(5));
        }
    });
    let started = Instant::now();
    let (mut received, mut worst, mut released_at, mut skip, mut late) = (0, 0u64, None, None, false);
    let deadline = Instant::now() + hold + Duration::from_secs(30);
    while received < frames || (skip.is_none() && !stop) || (stop && !late) {
        assert!(Instant::now() < deadline, "{received} of {frames} frames, skip {skip:?}, late {late}");
        if released_at.is_none() && started.elapsed() >= hold {
            if stop {
                // SAFETY: as above.
                unsafe { libc::kill(inner, libc::SIGCONT) };
            } else {
                kill_peer_in_namespace(&mut hung);
            }
            released_at = Some(Instant::now());
        }
        if let (Some(at), None, false) = (released_at, skip, stop) {
            if consumer.stats().recovered == 1 {
                skip = Some(at.elapsed());
            }
        }
        let Some(frame) = consumer.recv_timeout(Duration::from_millis(2)).unwrap() else { continue };
        if frame.kind() == 1 {
            let mut stamp = [0u8; 8];
            frame.bytes().copy_to_slice(&mut stamp);
            worst = worst.max(monotonic_ns().saturating_sub(u64::from_le_bytes(stamp)));
            received += 1;
        } else {
            // The stopped producer's record, once it runs again.
            assert!(stop && frame.is_late() && check_record(7, 0, &frame.to_vec()));
            late = true;
        }
    }
    sender.join().unwrap();
    if stop {
        assert!(hung.wait().unwrap().success());
    }
    assert_eq!(consumer.stats().corrupt, 0);
    (Duration::from_nanos(worst), skip)
}
