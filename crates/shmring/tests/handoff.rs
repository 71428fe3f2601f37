//! Liveness watches handed to the consumer by a launcher that is not the
//! consumer, over the ring's rendezvous socket: a producer in its own pid
//! namespace, killed mid-claim, is stepped over once its watch hangs up; a
//! consumer restarted behind the ring's host still has the watch; hostile
//! registrations are refused and counted, the consumer unharmed.

use std::io::IoSlice;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use nix::sys::socket::{self, ControlMessage, MsgFlags};
use shmring::{AccessPolicy, Consumer, RingFds, RingHost, RingOptions};

mod common;
use common::*;

#[test]
#[ignore = "entry point of the peer processes the other tests spawn"]
fn peer() {
    let role = std::env::var("SHMRING_TEST_ROLE").expect("run by the other tests only");
    let ring = || std::env::var("SHMRING_TEST_RING").unwrap();
    match role.as_str() {
        "survivor" => survivor(),
        "claim-and-hang" => claim_and_hang(),
        // A launcher as `shmring chromium-exec` is one: attaches by name,
        // hands the consumer the watch, starts the producer in a pid
        // namespace of its own, and waits for it.
        "launcher" => {
            let fds = RingFds::request(&ring()).unwrap();
            let (producer_half, watch) = shmring::liveness_pair().unwrap();
            shmring::rendezvous::hand_over_watch(&ring(), &watch).unwrap();
            drop(watch);
            let for_the_child = fds.with_liveness(producer_half).unwrap();
            drop(fds);
            let mut producer = spawn_peer_in_pid_namespace_with("claim-and-hang", for_the_child, &[], Stdio::piped());
            let claimed = wait_for_line(&mut producer, "claimed ");
            ready(&format!("{claimed} by {}", peer_in_namespace_pid(&producer)));
            let _ = producer.wait();
        }
        // A consumer attached through the ring's host, until killed.
        "consumer" => {
            let consumer = Consumer::connect(&ring()).unwrap();
            ready("attached");
            let deadline = Instant::now() + Duration::from_secs(20);
            while consumer.watch_count() == 0 && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            ready(&format!("watches {}", consumer.watch_count()));
            std::thread::sleep(Duration::from_secs(3600));
        }
        other => panic!("unknown role {other}"),
    }
}

fn unique_name(test: &str) -> String {
    format!("handoff-{test}-{}", std::process::id())
}

/// A launcher and the producer it started, both killed if a test fails.
struct Launched {
    launcher: Child,
    /// Where the producer's claim lies.
    position: u64,
    /// The producer's pid in our namespace.
    victim: libc::pid_t,
}

impl Drop for Launched {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the producer our launcher started (gone
        // already when the test passed).
        unsafe { libc::kill(self.victim, libc::SIGKILL) };
        kill_peer(&mut self.launcher);
    }
}

/// Starts a launcher for ring `name` and waits for its producer's claim.
fn launch(name: &str) -> Launched {
    let env = [("SHMRING_TEST_RING", name.to_string())];
    let mut launcher = spawn_peer_with("launcher", None, &env, Stdio::piped());
    let line = wait_for_line(&mut launcher, "claimed ");
    let mut words = line.split_whitespace().skip(1);
    let position = words.next().unwrap().parse().unwrap();
    let victim = words.nth(1).unwrap().parse().unwrap();
    Launched { launcher, position, victim }
}

/// Receives until `recovered` records have been stepped over and the
/// survivor's `count` records arrived in order; kills `victim` once half of
/// them are in. Returns the time from the kill to the skip.
fn receive_around_the_kill(consumer: &Consumer<shmring::MappedRing>, count: u64, victim: libc::pid_t) -> Duration {
    let mut next = 0;
    let mut killed_at = None;
    let mut skipped_after = None;
    let deadline = Instant::now() + Duration::from_secs(60);
    while next < count || skipped_after.is_none() {
        assert!(
            Instant::now() < deadline,
            "survivor at {next}/{count}, killed {killed_at:?}, stats {:?}",
            consumer.stats()
        );
        if next == count / 2 && killed_at.is_none() {
            // SAFETY: kill(2) on the producer our launcher started.
            unsafe { libc::kill(victim, libc::SIGKILL) };
            killed_at = Some(Instant::now());
        }
        if let (Some(at), None) = (killed_at, skipped_after) {
            if consumer.stats().recovered == 1 {
                skipped_after = Some(at.elapsed());
            }
        }
        let Some(frame) = consumer.recv_timeout(Duration::from_millis(10)).unwrap() else { continue };
        assert_eq!(frame.sequence(), next, "survivor lost or out of order");
        assert!(check_record(0, next, &frame.to_vec()), "survivor record {next} corrupt");
        next += 1;
    }
    skipped_after.unwrap()
}

#[test]
fn producer_launched_in_its_own_pid_namespace_by_another_process_is_stepped_over_once_its_watch_hangs_up() {
    let name = unique_name("launcher");
    let options = RingOptions { stall_timeout: Duration::from_millis(100), ..RingOptions::with_capacity(4 << 20) };
    let consumer = Consumer::create(&name, &options).unwrap();
    let server = consumer.serve(AccessPolicy::default()).unwrap();
    let mut launched = launch(&name);
    assert_eq!(launched.position, 0, "the launched producer holds the head");
    assert_eq!(server.watch_count(), 1);
    // Another producer's frames flow past the live claim (half of them
    // before the kill), then the claim is stepped over.
    let inherit = consumer.fds().inheritable().unwrap();
    let mut env = producer_env(0, 200, 16 << 10);
    env.push(("SHMRING_TEST_PACE_US", "2000".to_string()));
    let mut survivor = spawn_peer("survivor", Some(inherit.spec()), &env);
    let skipped_after = receive_around_the_kill(&consumer, 200, launched.victim);
    assert!(survivor.wait().unwrap().success());
    assert!(launched.launcher.wait().unwrap().success());
    let stats = consumer.stats();
    assert_eq!((stats.recovered, stats.corrupt, stats.stuck), (1, 0, 0), "{stats:?}");
    assert_eq!(stats.read, stats.write, "the killed claim's space is free again");
    assert_eq!(server.refused_watches(), 0);
    assert_eq!(stats.producers.len(), 0, "the dead producer's slot is free again");
    assert_eq!(server.watch_count(), 0, "and its watch, needed by no slot, is dropped");
    println!("handed-over watch: hang-up to skip {skipped_after:?}");
}

#[test]
fn consumer_restarted_behind_the_host_keeps_the_watches_launchers_registered() {
    let name = unique_name("restart");
    let options = RingOptions { stall_timeout: Duration::from_millis(100), ..RingOptions::with_capacity(4 << 20) };
    let host = RingHost::create(&name, &options).unwrap();
    let server = host.serve(AccessPolicy::default()).unwrap();
    let env = [("SHMRING_TEST_RING", name.clone())];
    // The first consumer is attached when the launcher registers: the host
    // feeds it the watch.
    let mut first = spawn_peer_with("consumer", None, &env, Stdio::piped());
    wait_for_line(&mut first, "attached");
    let mut launched = launch(&name);
    let watches = wait_for_line(&mut first, "watches ");
    kill_peer(&mut first);
    assert_eq!(watches, "watches 1");
    // Its successor gets the watch from the host when it attaches.
    let consumer = Consumer::connect(&name).unwrap();
    assert_eq!(consumer.watch_count(), 1);
    let inherit = consumer.fds().inheritable().unwrap();
    let mut env = producer_env(0, 100, 16 << 10);
    env.push(("SHMRING_TEST_PACE_US", "2000".to_string()));
    let mut survivor = spawn_peer("survivor", Some(inherit.spec()), &env);
    receive_around_the_kill(&consumer, 100, launched.victim);
    assert!(survivor.wait().unwrap().success());
    assert!(launched.launcher.wait().unwrap().success());
    let stats = consumer.stats();
    assert_eq!((stats.recovered, stats.corrupt, stats.stuck), (1, 0, 0), "{stats:?}");
    assert_eq!(stats.read, stats.write);
    assert_eq!(server.refused_watches(), 0);
}

/// A raw client of the rendezvous socket, as a hostile peer writes one.
struct RawClient {
    stream: UnixStream,
}

impl RawClient {
    fn connect(name: &str) -> Self {
        let stream = UnixStream::connect(shmring::socket_path(name)).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut grant = [0u8; 64];
        let mut cmsg = nix::cmsg_space!([RawFd; 2]);
        let mut iov = [std::io::IoSliceMut::new(&mut grant)];
        let msg =
            socket::recvmsg::<()>(stream.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::MSG_CMSG_CLOEXEC).unwrap();
        for message in msg.cmsgs().unwrap() {
            if let socket::ControlMessageOwned::ScmRights(fds) = message {
                for fd in fds {
                    // SAFETY: just received, ours alone.
                    unsafe { libc::close(fd) };
                }
            }
        }
        RawClient { stream }
    }

    /// Sends `bytes` with `fds` and returns the answer.
    fn ask(&self, bytes: &[u8], fds: &[RawFd]) -> Vec<u8> {
        let rights = [ControlMessage::ScmRights(fds)];
        let cmsgs: &[ControlMessage<'_>] = if fds.is_empty() { &[] } else { &rights };
        socket::sendmsg::<()>(self.stream.as_raw_fd(), &[IoSlice::new(bytes)], cmsgs, MsgFlags::empty(), None).unwrap();
        let mut answer = [0u8; 256];
        let n = socket::recv(self.stream.as_raw_fd(), &mut answer, MsgFlags::empty()).unwrap();
        answer[..n].to_vec()
    }
}

fn watch_message(kind: u8, token: u64) -> Vec<u8> {
    let mut bytes = b"SHMWATCH".to_vec();
    bytes.push(kind);
    bytes.extend_from_slice(&token.to_le_bytes());
    bytes
}

fn socket_pair() -> (OwnedFd, OwnedFd) {
    let (a, b) = UnixStream::pair().unwrap();
    (a.into(), b.into())
}

fn pidfd_of(child: &Child) -> OwnedFd {
    // SAFETY: pidfd_open of our own child; the result is a fresh descriptor.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, child.id(), 0) } as RawFd;
    assert!(fd >= 0, "pidfd_open: {}", std::io::Error::last_os_error());
    // SAFETY: as above.
    unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) }
}

#[test]
fn hostile_watch_registrations_are_refused_counted_and_leave_the_consumer_working() {
    let name = unique_name("hostile");
    let consumer = Consumer::create(&name, &RingOptions::with_capacity(1 << 20)).unwrap();
    let server = consumer.serve(AccessPolicy::default()).unwrap();
    let (live_end, held_end) = socket_pair();
    let (gone_end, closed_end) = socket_pair();
    drop(closed_end);
    let file = std::fs::File::open("/proc/self/exe").unwrap();
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let listener = std::os::unix::net::UnixListener::bind(std::env::temp_dir().join(&name)).unwrap();
    let _ = std::fs::remove_file(std::env::temp_dir().join(&name));
    let mut sleeper = std::process::Command::new("sleep").arg("30").spawn().unwrap();
    let pidfd = pidfd_of(&sleeper);
    let live = live_end.as_raw_fd();
    let cases: Vec<(&str, Vec<u8>, Vec<RawFd>)> = vec![
        ("garbage", b"hello there, consumer".to_vec(), vec![]),
        ("a watch without its descriptor", watch_message(b'S', 7), vec![]),
        ("two descriptors", watch_message(b'S', 7), vec![live, live]),
        ("more descriptors than any message has", watch_message(b'S', 7), vec![live; 6]),
        ("a file, not a socket", watch_message(b'S', 7), vec![file.as_raw_fd()]),
        ("a UDP socket", watch_message(b'S', 7), vec![udp.as_raw_fd()]),
        ("a listening socket", watch_message(b'S', 7), vec![listener.as_raw_fd()]),
        ("a socket hung up already", watch_message(b'S', 7), vec![gone_end.as_raw_fd()]),
        ("token 0", watch_message(b'S', 0), vec![live]),
        ("an unknown kind", watch_message(b'X', 7), vec![live]),
        ("a socket sent as a pidfd", watch_message(b'P', 7), vec![live]),
        ("a short watch message", watch_message(b'S', 7)[..12].to_vec(), vec![live]),
    ];
    for (i, (what, bytes, fds)) in cases.iter().enumerate() {
        let answer = RawClient::connect(&name).ask(bytes, fds);
        assert!(answer.starts_with(b"REFUSED1"), "{what}: {:?}", String::from_utf8_lossy(&answer));
        assert_eq!(server.refused_watches(), i as u64 + 1, "{what} is counted");
    }
    assert_eq!(server.watch_count(), 0);

    // Honest ones are taken, on one connection, a socket and a pidfd; the
    // same token twice is not, nor more than one launcher may register.
    let client = RawClient::connect(&name);
    assert_eq!(client.ask(&watch_message(b'S', 7), &[live]), b"WATCHED1");
    assert_eq!(client.ask(&watch_message(b'P', 8), &[pidfd.as_raw_fd()]), b"WATCHED1");
    let refused = server.refused_watches();
    let answer = RawClient::connect(&name).ask(&watch_message(b'S', 7), &[live]);
    assert!(answer.starts_with(b"REFUSED1"), "a token watched already");
    assert_eq!(server.refused_watches(), refused + 1);
    let pairs: Vec<_> = (0..shmring::watches::MAX_WATCHES_PER_PEER).map(|_| socket_pair()).collect();
    let client = RawClient::connect(&name);
    let mut taken = 2;
    for (i, (end, _)) in pairs.iter().enumerate() {
        let answer = client.ask(&watch_message(b'S', 100 + i as u64), &[end.as_raw_fd()]);
        if taken < shmring::watches::MAX_WATCHES_PER_PEER {
            assert_eq!(answer, b"WATCHED1", "registration {taken}");
            taken += 1;
        } else {
            assert!(answer.starts_with(b"REFUSED1"), "one launcher past its limit");
            assert_eq!(server.refused_watches(), refused + 2);
            break;
        }
    }
    assert_eq!(server.watch_count(), shmring::watches::MAX_WATCHES_PER_PEER);
    assert_eq!(consumer.watch_count(), shmring::watches::MAX_WATCHES_PER_PEER, "the watches are the consumer's");

    // The consumer is unharmed: it serves, receives, and the watches judge.
    let mut producer = shmring::Producer::connect(&name).unwrap();
    producer.send(3, b"still here").unwrap();
    let frame = consumer.recv_timeout(Duration::from_secs(10)).unwrap().expect("a frame");
    assert_eq!((frame.kind(), frame.to_vec()), (3, b"still here".to_vec()));
    drop(held_end);
    kill_peer(&mut sleeper);
    let _ = (live_end.as_fd(), pidfd.as_fd());
}

/// The consumer of a stall round, attached behind a host, and its held
/// producer, launched by this process with a watch handed over the host's
/// rendezvous socket: the consumer has it from the host's feed.
fn handed_over_behind_a_host(
    options: &RingOptions,
    role: &str,
) -> (Consumer<shmring::MappedRing>, Child, Box<dyn std::any::Any>) {
    static ROUND: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let round = ROUND.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = unique_name(&format!("stall{round}"));
    let host = RingHost::create(&name, options).unwrap();
    let server = host.serve(AccessPolicy::default()).unwrap();
    let consumer = Consumer::connect(&name).unwrap();
    let (producer_half, watch) = shmring::liveness_pair().unwrap();
    shmring::rendezvous::hand_over_watch(&name, &watch).unwrap();
    drop(watch);
    let fds = consumer.fds().with_liveness(producer_half).unwrap();
    let hung = spawn_peer_in_pid_namespace_with(role, fds, &[], Stdio::piped());
    (consumer, hung, Box::new((server, host)))
}

#[test]
#[ignore = "measurement: scripts/stall-figures.sh runs it beside crashes' stall_figures"]
fn stall_figures_handed_over() {
    let rounds: usize = std::env::var("SHMRING_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(5);
    let stall =
        Duration::from_millis(std::env::var("SHMRING_STALL_MS").ok().and_then(|s| s.parse().ok()).unwrap_or(250));
    let (mut skips, mut delays) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let (delay, skip) = stall_round(stall, Duration::from_secs(1), false, handed_over_behind_a_host);
        skips.push(skip.expect("the killed claim was skipped").as_secs_f64() * 1e3);
        delays.push(delay.as_secs_f64() * 1e3);
    }
    let summary = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        format!("{{\"median\": {:.1}, \"max\": {:.1}}}", v[v.len() / 2], v[v.len() - 1])
    };
    println!(
        "STALL-FIGURES-HANDOFF {{\"hangup_to_skip_ms\": {}, \"other_frames_worst_delay_killed_ms\": {}}}",
        summary(skips),
        summary(delays)
    );
}
