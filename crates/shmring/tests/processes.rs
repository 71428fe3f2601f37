//! Real processes: producers exec'ed from this test binary (re-run with
//! `--ignored --exact peer`), a sandboxed producer under a seccomp filter,
//! attach by name, and a peer of another uid.

use std::process::Child;
use std::time::{Duration, Instant};

use shmring::{Consumer, Error, FullPolicy, Producer, RingFds, RingOptions};

mod common;
use common::*;

/// Entry point of peer processes (not a test by itself).
#[test]
#[ignore = "entry point of the peer processes the other tests spawn"]
fn peer() {
    let role = std::env::var("SHMRING_TEST_ROLE").expect("run by the other tests only");
    match role.as_str() {
        "send-random" => {
            // SAFETY: the parent passed these descriptors for us in SHMRING_FD.
            let producer = unsafe { Producer::from_env() }.unwrap();
            send_random(producer);
        }
        "sandboxed-send" => {
            install_open_and_socket_filter();
            let err = std::fs::File::open("/etc/hostname").expect_err("open must fail in the sandbox");
            assert_eq!(err.raw_os_error(), Some(libc::EPERM));
            assert!(std::os::unix::net::UnixStream::connect("/nonexistent").is_err());
            // SAFETY: the parent passed these descriptors for us in SHMRING_FD.
            let producer = unsafe { Producer::from_env() }.unwrap();
            send_random(producer);
        }
        "connect-send" => {
            let producer = Producer::connect(&std::env::var("SHMRING_TEST_RING").unwrap()).unwrap();
            send_random(producer);
        }
        "connect-as-other-uid" => {
            let name = std::env::var("SHMRING_TEST_RING").unwrap();
            // Keep uid 0 for path lookups (fsuid) but connect with effective
            // uid `nobody`, which is what SO_PEERCRED reports.
            // SAFETY: plain credential syscalls on this single-threaded path.
            unsafe {
                assert_eq!(libc::setegid(65534), 0);
                assert_eq!(libc::seteuid(65534), 0);
                libc::setfsuid(0);
            }
            match (RingFds::request(&name), std::env::var("SHMRING_TEST_ALLOWED").is_ok()) {
                (Err(Error::PermissionDenied { reason }), false) if reason.contains("uid 65534") => {
                    std::process::exit(42)
                }
                (Ok(fds), true) => {
                    // The grant is a working ring, not just three numbers.
                    let mut producer = Producer::attach(fds).unwrap();
                    producer.send(7, b"allow-listed").unwrap();
                    std::process::exit(43)
                }
                (other, allowed) => panic!("allow-listed {allowed}: unexpected answer {other:?}"),
            }
        }
        "connect-as-nobody" => {
            let name = std::env::var("SHMRING_TEST_RING").unwrap();
            // SAFETY: plain credential syscalls; dropping root for good.
            unsafe {
                assert_eq!(libc::setgid(65534), 0);
                assert_eq!(libc::setuid(65534), 0);
            }
            match Producer::connect(&name) {
                Err(_) => std::process::exit(42),
                Ok(_) => panic!("a process of another uid attached"),
            }
        }
        "stat-view" => {
            // SAFETY: the parent passed these descriptors in SHMRING_FD.
            let fds = unsafe { RingFds::from_env() }.unwrap();
            let stats = shmring::RingView::open(&fds.memfd).unwrap().stats();
            let producers: Vec<String> =
                stats.producers.iter().map(|p| format!("{}:{}:{}:{}", p.pid, p.frames, p.bytes, p.drops)).collect();
            println!(
                "stats name={} committed={} consumed={} drops={} write={} read={} consumer={} producers={}",
                stats.name,
                stats.committed_frames,
                stats.consumed_frames,
                stats.drops,
                stats.write,
                stats.read,
                stats.consumer_state,
                producers.join(",")
            );
        }
        other => panic!("unknown role {other}"),
    }
}

fn send_random(mut producer: Producer<shmring::MappedRing>) {
    let id = env_u64("SHMRING_TEST_ID") as u32;
    let count = env_u64("SHMRING_TEST_COUNT");
    let max = env_u64("SHMRING_TEST_MAX") as usize;
    producer.set_full_policy(FullPolicy::Block(Duration::from_secs(60)));
    for seq in 0..count {
        let len = record_len(id, seq, max);
        let mut r = producer.reserve(len).unwrap();
        write_record(id, seq, &mut r);
        r.set_kind(id);
        r.commit();
    }
}

/// A seccomp filter like Chromium's renderer policy for what matters
/// here: open, openat and socket fail with EPERM; everything else runs.
fn install_open_and_socket_filter() {
    const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
    const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
    let deny = SECCOMP_RET_ERRNO | libc::EPERM as u32;
    let stmt = |code: u16, k: u32| libc::sock_filter { code, jt: 0, jf: 0, k };
    let jeq =
        |k: u32, jt: u8| libc::sock_filter { code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16, jt, jf: 0, k };
    let ld = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
    let ret = (libc::BPF_RET | libc::BPF_K) as u16;
    let filter = [
        stmt(ld, 0), // seccomp_data.nr
        jeq(libc::SYS_open as u32, 4),
        jeq(libc::SYS_openat as u32, 3),
        jeq(libc::SYS_socket as u32, 2),
        jeq(libc::SYS_openat2 as u32, 1),
        stmt(ret, SECCOMP_RET_ALLOW),
        stmt(ret, deny),
    ];
    let prog = libc::sock_fprog { len: filter.len() as u16, filter: filter.as_ptr() as *mut _ };
    // SAFETY: prctl with valid arguments; `prog` outlives the call and the
    // kernel copies the filter.
    unsafe {
        assert_eq!(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
        assert_eq!(libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, &prog as *const _), 0);
    }
}

/// Receives until every producer's `count` records arrived, checking each
/// one exactly once, intact and in per-producer order.
fn receive_all(consumer: &Consumer<shmring::MappedRing>, producers: u32, count: u64, children: &mut [Child]) {
    let mut next = vec![0u64; producers as usize];
    let deadline = Instant::now() + Duration::from_secs(300);
    while next.iter().sum::<u64>() < u64::from(producers) * count {
        assert!(Instant::now() < deadline, "timed out at {next:?}");
        let Some(frame) = consumer.recv_timeout(Duration::from_secs(1)).unwrap() else {
            for child in children.iter_mut() {
                if let Some(status) = child.try_wait().unwrap() {
                    assert!(status.success(), "a producer failed: {status}");
                }
            }
            continue;
        };
        let id = frame.kind();
        assert!(id < producers, "unknown producer {id}");
        let seq = next[id as usize];
        assert_eq!(frame.sequence(), seq, "producer {id}: out of order or lost");
        let data = frame.to_vec();
        if !check_record(id, seq, &data) {
            let mut expected = vec![0u8; data.len()];
            write_record(id, seq, &mut expected);
            let first = expected.iter().zip(data.iter()).position(|(a, b)| a != b);
            let last = expected.iter().zip(data.iter()).rposition(|(a, b)| a != b);
            panic!("producer {id} record {seq}: corrupt payload (len {}, position {}, differs {first:?}..{last:?}, capacity {})", frame.len(), frame.position(), consumer.geometry().capacity);
        }
        next[id as usize] += 1;
    }
    assert!(consumer.try_recv().unwrap().is_none(), "a record arrived twice");
}

#[test]
fn four_producer_processes_deliver_every_record_once_intact_in_order() {
    const PRODUCERS: u32 = 4;
    const COUNT: u64 = 10_000;
    const MAX: usize = 4 << 20;
    let consumer = Consumer::create_anonymous(&RingOptions::with_capacity(16 << 20)).unwrap();
    let inherit = consumer.fds().inheritable().unwrap();
    let mut children: Vec<Child> = (0..PRODUCERS)
        .map(|id| spawn_peer("send-random", Some(inherit.spec()), &producer_env(id, COUNT, MAX)))
        .collect();
    drop(inherit);
    receive_all(&consumer, PRODUCERS, COUNT, &mut children);
    for mut child in children {
        assert!(child.wait().unwrap().success());
    }
    let stats = consumer.stats();
    assert_eq!(stats.consumed_frames, u64::from(PRODUCERS) * COUNT);
    let expected_bytes: u64 =
        (0..PRODUCERS).flat_map(|id| (0..COUNT).map(move |seq| record_len(id, seq, MAX) as u64)).sum();
    assert_eq!(stats.consumed_bytes, expected_bytes);
    println!("moved {:.2} GB in {} records", expected_bytes as f64 / 1e9, stats.consumed_frames);
    assert_eq!(stats.drops, 0);
    assert_eq!(stats.corrupt, 0);
}

#[test]
fn sandboxed_producer_that_cannot_open_still_delivers() {
    let consumer = Consumer::create_anonymous(&RingOptions::with_capacity(1 << 20)).unwrap();
    let inherit = consumer.fds().inheritable().unwrap();
    let mut children = vec![spawn_peer("sandboxed-send", Some(inherit.spec()), &producer_env(0, 2_000, 64 << 10))];
    drop(inherit);
    receive_all(&consumer, 1, 2_000, &mut children);
    assert!(children[0].wait().unwrap().success());
}

#[test]
fn producer_in_another_process_attaches_by_name() {
    let name = format!("test-connect-{}", std::process::id());
    let consumer = Consumer::create(&name, &RingOptions::with_capacity(1 << 20)).unwrap();
    let server = consumer.serve(Default::default()).unwrap();
    let mut env = producer_env(0, 1_000, 100_000);
    env.push(("SHMRING_TEST_RING", name.clone()));
    let mut children = vec![spawn_peer("connect-send", None, &env)];
    receive_all(&consumer, 1, 1_000, &mut children);
    assert!(children[0].wait().unwrap().success());
    let socket = server.path().to_path_buf();
    drop(server);
    assert!(!socket.exists(), "the socket is removed with its server");
}

#[test]
fn rendezvous_refuses_a_peer_of_another_uid() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        panic!("this test needs root to act as another uid");
    }
    let name = format!("test-uid-{}", std::process::id());
    let consumer = Consumer::create(&name, &RingOptions::with_capacity(1 << 16)).unwrap();
    let server = consumer.serve(Default::default()).unwrap();
    let dir = server.path().parent().unwrap();
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(dir).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o700, "rendezvous directory must be private");
    let env = [("SHMRING_TEST_RING", name.clone())];
    for role in ["connect-as-other-uid", "connect-as-nobody"] {
        let status = spawn_peer(role, None, &env).wait().unwrap();
        assert_eq!(status.code(), Some(42), "{role}: {status}");
    }
    // Our own uid still attaches.
    assert!(Producer::connect(&name).is_ok());
    drop(server);

    // Allow-listed, the same peer gets the descriptors and sends.
    let server = consumer.serve(shmring::AccessPolicy { allowed_uids: vec![65534] }).unwrap();
    let env = [("SHMRING_TEST_RING", name.clone()), ("SHMRING_TEST_ALLOWED", "1".to_string())];
    let status = spawn_peer("connect-as-other-uid", None, &env).wait().unwrap();
    assert_eq!(status.code(), Some(43), "allow-listed uid: {status}");
    let frame = consumer.recv_timeout(Duration::from_secs(5)).unwrap().expect("the allow-listed peer's record");
    assert_eq!((frame.kind(), frame.to_vec()), (7, b"allow-listed".to_vec()));
    drop(frame);
    drop(server);
}

#[test]
fn stats_are_read_from_another_process_without_disturbing_the_ring() {
    let name = format!("test-stat-{}", std::process::id());
    let consumer = Consumer::create(&name, &RingOptions::with_capacity(1 << 16)).unwrap();
    let mut producer = consumer.producer().unwrap();
    for n in 0..5u8 {
        producer.send(1, &[n; 100]).unwrap();
    }
    assert!(matches!(producer.send(1, &[0; 65_000]), Err(Error::Dropped)));
    let held: Vec<_> = (0..3).map(|_| consumer.try_recv().unwrap().unwrap()).collect();
    let before = consumer.stats();
    let inherit = consumer.fds().inheritable().unwrap();
    let mut viewer = common::spawn_peer_with("stat-view", Some(inherit.spec()), &[], std::process::Stdio::piped());
    let line = wait_for_line(&mut viewer, "stats ");
    assert!(viewer.wait().unwrap().success());
    let expected = format!(
        "stats name={name} committed=5 consumed=3 drops=1 write={} read=0 consumer=attached producers={}:5:500:1",
        before.write,
        std::process::id()
    );
    assert_eq!(line, expected);
    assert_eq!(consumer.stats(), before, "the viewer changed nothing");
    drop(held);
    assert_eq!(consumer.stats().read, before.write - 2 * 192, "two records still unreceived");
}

#[test]
fn two_consumers_attaching_at_once_never_both_win() {
    let first = Consumer::create_anonymous(&RingOptions::with_capacity(1 << 16)).unwrap();
    let fds = first.fds().try_clone().unwrap();
    drop(first);
    for round in 0..100 {
        let barrier = std::sync::Barrier::new(4);
        let winners = std::thread::scope(|scope| {
            let attempts: Vec<_> = (0..4)
                .map(|_| {
                    let fds = fds.try_clone().unwrap();
                    let barrier = &barrier;
                    scope.spawn(move || {
                        barrier.wait();
                        let attached = Consumer::attach(fds);
                        // Every attempt is over before any winner closes.
                        barrier.wait();
                        attached.is_ok()
                    })
                })
                .collect();
            attempts.into_iter().map(|a| a.join().unwrap()).filter(|&won| won).count()
        });
        assert_eq!(winners, 1, "round {round}: {winners} consumers attached to one ring");
    }
}
