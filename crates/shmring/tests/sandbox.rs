//! Producers inside sandboxes like Chromium's renderer (seccomp filters, a
//! pid namespace, no `/proc`), and peers that attack the consumer through
//! every descriptor they hold.

use std::process::Stdio;
use std::time::Duration;

use shmring::{Consumer, Error, FullPolicy, Producer, RingOptions};

mod common;
use common::*;

#[test]
#[ignore = "entry point of the peer processes the other tests spawn"]
fn peer() {
    let role = std::env::var("SHMRING_TEST_ROLE").expect("run by the other tests only");
    match role.as_str() {
        "renderer" => renderer(),
        "truncate-everything" => truncate_everything(),
        "monotonic-waits" => monotonic_waits(),
        other => panic!("unknown role {other}"),
    }
}

/// Hides `/proc` from this process (a mount namespace of its own).
fn unmount_proc() {
    // SAFETY: plain syscalls on valid C strings; we are root in the test.
    unsafe {
        assert_eq!(libc::unshare(libc::CLONE_NEWNS), 0, "unshare(CLONE_NEWNS)");
        let root = c"/";
        assert_eq!(
            libc::mount(
                std::ptr::null(),
                root.as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null()
            ),
            0
        );
        assert_eq!(libc::umount2(c"/proc".as_ptr(), libc::MNT_DETACH), 0, "umount /proc");
    }
    assert!(!std::path::Path::new("/proc/self").exists(), "/proc is still mounted");
}

/// What matters here of Chromium's renderer policy: file-system calls and
/// `socket` fail with EPERM; `kill`/`tgkill` of any pid but our own, and
/// `tkill`, raise SIGSYS (which kills us).
fn install_renderer_filter() {
    let own = std::process::id();
    let deny = SECCOMP_RET_ERRNO | libc::EPERM as u32;
    let mut filter = vec![bpf_stmt(BPF_LD_W_ABS, SECCOMP_NR)];
    for nr in [
        libc::SYS_open,
        libc::SYS_openat,
        libc::SYS_openat2,
        libc::SYS_creat,
        libc::SYS_readlink,
        libc::SYS_readlinkat,
        libc::SYS_socket,
    ] {
        filter.push(bpf_jump(BPF_JEQ_K, nr as u32, 0, 1));
        filter.push(bpf_stmt(BPF_RET_K, deny));
    }
    filter.push(bpf_jump(BPF_JEQ_K, libc::SYS_tkill as u32, 0, 1));
    filter.push(bpf_stmt(BPF_RET_K, SECCOMP_RET_TRAP));
    filter.extend([
        bpf_jump(BPF_JEQ_K, libc::SYS_kill as u32, 1, 0),
        bpf_jump(BPF_JEQ_K, libc::SYS_tgkill as u32, 0, 4),
        bpf_stmt(BPF_LD_W_ABS, seccomp_arg(0)),
        bpf_jump(BPF_JEQ_K, own, 1, 0),
        bpf_stmt(BPF_RET_K, SECCOMP_RET_TRAP),
        bpf_stmt(BPF_RET_K, SECCOMP_RET_ALLOW),
        bpf_stmt(BPF_RET_K, SECCOMP_RET_ALLOW),
    ]);
    install_seccomp(&filter);
}

fn renderer() {
    unmount_proc();
    install_renderer_filter();
    let err = std::fs::File::open("/etc/hostname").expect_err("open must fail in the sandbox");
    assert_eq!(err.raw_os_error(), Some(libc::EPERM));
    // SAFETY: the parent passed these descriptors in SHMRING_FD.
    let fds = unsafe { shmring::RingFds::from_env() }.unwrap();
    // Handed in the patched browser's three places, the liveness half
    // tells its token (read from the socket, nothing opened).
    let token = fds.liveness.as_ref().map_or(0, |live| live.token());
    let mut producer = Producer::attach(fds).unwrap();
    // A full ring under every policy: each asks whether the consumer lives.
    let mut sent = 0u64;
    let dropped = loop {
        match producer.reserve(4000) {
            Ok(mut r) => {
                write_record(0, sent, &mut r);
                r.commit();
                sent += 1;
            }
            Err(e) => break e,
        }
    };
    assert!(matches!(dropped, Error::Dropped), "{dropped}");
    producer.set_full_policy(FullPolicy::Fail);
    assert!(matches!(producer.send(9, &[0; 4000]), Err(Error::Full)));
    producer.set_full_policy(FullPolicy::Block(Duration::from_millis(30)));
    assert!(matches!(producer.send(9, &[0; 4000]), Err(Error::Timeout)));
    assert!(producer.consumer_alive());
    // A full producer table, holding pids of other processes.
    let mut lanes = Vec::new();
    let refused = loop {
        match producer.try_clone() {
            Ok(lane) => lanes.push(lane),
            Err(e) => break e,
        }
    };
    assert!(matches!(refused, Error::TooManyProducers { .. }), "{refused}");
    println!(
        "sandboxed producer: {sent} sent, then dropped, full, timed out; table full after {} lanes; token {token:x}",
        lanes.len()
    );
}

/// Truncates, and overwrites with garbage, every descriptor this process
/// holds (the ring's segment and whatever else it was handed).
fn truncate_everything() {
    let fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&fd| fd > 2)
        .collect();
    let garbage = [0xa5u8; 4096];
    for &fd in &fds {
        // SAFETY: plain syscalls on descriptor numbers; failures (seals,
        // descriptors that are not files) are what we probe.
        unsafe {
            libc::pwrite(fd, garbage.as_ptr().cast(), garbage.len(), 0);
            libc::ftruncate(fd, 0);
        }
    }
    println!("rewrote {} descriptors", fds.len());
}

/// Waits as consumer and as blocked producer under a filter that kills the
/// process on any futex wait measured against CLOCK_REALTIME.
fn monotonic_waits() {
    const FUTEX_CLOCK_REALTIME: u32 = 256;
    install_seccomp(&[
        bpf_stmt(BPF_LD_W_ABS, SECCOMP_NR),
        bpf_jump(BPF_JEQ_K, libc::SYS_futex as u32, 0, 3),
        bpf_stmt(BPF_LD_W_ABS, seccomp_arg(1)),
        bpf_jump(BPF_JSET_K, FUTEX_CLOCK_REALTIME, 0, 1),
        bpf_stmt(BPF_RET_K, SECCOMP_RET_KILL_PROCESS),
        bpf_stmt(BPF_RET_K, SECCOMP_RET_ALLOW),
    ]);
    // SAFETY: the parent passed these descriptors in SHMRING_FD.
    let fds = unsafe { shmring::RingFds::from_env() }.unwrap();
    let consumer = Consumer::attach(fds.try_clone().unwrap()).unwrap();
    assert!(consumer.recv_timeout(Duration::from_millis(30)).unwrap().is_none());
    let mut producer = Producer::attach(fds).unwrap();
    producer.set_full_policy(FullPolicy::Block(Duration::from_millis(30)));
    let max = producer.max_payload();
    producer.send(1, &vec![1; max]).unwrap();
    assert!(matches!(producer.send(2, &[2; 100]), Err(Error::Timeout)));
    println!("waited");
}

/// Peers of these tests attack every descriptor they inherit: one test at
/// a time, so none inherits another's ring.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Waits for a peer to exit successfully and returns its line starting
/// with `prefix`.
fn output_line(child: std::process::Child, prefix: &str) -> String {
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "the peer failed: {} (stdout {stdout:?})", output.status);
    stdout.lines().find(|l| l.starts_with(prefix)).unwrap_or_else(|| panic!("no {prefix:?} in {stdout:?}")).to_string()
}

#[test]
fn producer_in_a_renderer_like_sandbox_never_kills_or_opens_even_on_a_full_ring_and_table() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let consumer = Consumer::create_anonymous(&RingOptions::with_capacity(1 << 16)).unwrap();
    // Slots of this process: a full table holds pids the sandbox must not
    // signal.
    let _ours: Vec<_> = (0..3).map(|_| consumer.producer().unwrap()).collect();
    // The three numbers the patched browser hands a renderer, the
    // liveness half in the second place.
    let (half, watch) = shmring::liveness_pair().unwrap();
    let inherit = consumer.fds().with_liveness(half).unwrap().inheritable().unwrap();
    let (memfd, live) = inherit.descriptors();
    let spec = format!("{memfd}:{}:{memfd}", live.unwrap());
    let renderer = spawn_peer_in_pid_namespace("renderer", Some(&spec), &[], Stdio::piped());
    let line = output_line(renderer, "sandboxed producer: ");
    println!("{line}");
    assert!(line.ends_with(&format!("token {:x}", watch.token())), "{line}");
    let mut seq = 0;
    while let Some(frame) = consumer.try_recv().unwrap() {
        assert!(check_record(0, seq, &frame.to_vec()), "record {seq} corrupt");
        seq += 1;
    }
    assert!(seq > 0);
}

#[test]
fn producer_truncating_and_rewriting_every_descriptor_it_holds_cannot_crash_the_consumer() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let consumer = Consumer::create_anonymous(&RingOptions::with_capacity(1 << 16)).unwrap();
    let mut producer = consumer.producer().unwrap();
    producer.set_full_policy(FullPolicy::Block(Duration::from_millis(5)));
    producer.send(1, b"before").unwrap();
    let inherit = consumer.fds().inheritable().unwrap();
    let attacker = spawn_peer_with("truncate-everything", Some(inherit.spec()), &[], Stdio::piped());
    println!("{}", output_line(attacker, "rewrote "));
    // The consumer sleeps, wakes, is woken and reads: every call returns.
    let mut answers = [0u32; 3];
    for n in 0..40u32 {
        let _ = producer.send(n, &[n as u8; 3000]);
        match consumer.recv_timeout(Duration::from_millis(10)) {
            Ok(Some(_)) => answers[0] += 1,
            Ok(None) => answers[1] += 1,
            Err(_) => answers[2] += 1,
        }
    }
    println!("frames, nothing, errors: {answers:?}; {:?}", consumer.stats());
}

#[test]
fn waits_are_measured_on_the_monotonic_clock() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let first = Consumer::create_anonymous(&RingOptions::with_capacity(1 << 16)).unwrap();
    let fds = first.fds().try_clone().unwrap();
    drop(first);
    let inherit = fds.inheritable().unwrap();
    let peer = spawn_peer_with("monotonic-waits", Some(inherit.spec()), &[], Stdio::piped());
    assert_eq!(output_line(peer, "waited"), "waited");
}
