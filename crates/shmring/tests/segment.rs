//! The memfd segment: seals, double mapping, attach checks, named objects.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use shmring::{Consumer, Error, Producer, RingFds, RingOptions};

fn options(capacity: u64) -> RingOptions {
    RingOptions::with_capacity(capacity)
}

fn raw_memfd(len: u64, seals: libc::c_int) -> OwnedFd {
    // SAFETY: valid C string literal; flags are valid.
    let fd = unsafe { libc::memfd_create(c"test".as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
    assert!(fd >= 0);
    // SAFETY: fresh descriptor.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: valid descriptor.
    assert_eq!(unsafe { libc::ftruncate(fd.as_raw_fd(), len as libc::off_t) }, 0);
    if seals != 0 {
        // SAFETY: valid memfd.
        assert_eq!(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals) }, 0);
    }
    fd
}

fn with_memfd(_fds: &RingFds, memfd: OwnedFd) -> RingFds {
    RingFds::new(memfd)
}

fn segment_bytes(fds: &RingFds) -> Vec<u8> {
    let len = std::fs::metadata(format!("/proc/self/fd/{}", fds.memfd.as_raw_fd())).unwrap().len();
    let mut bytes = vec![0u8; len as usize];
    // SAFETY: reads into our buffer from a valid descriptor.
    let n = unsafe { libc::pread(fds.memfd.as_raw_fd(), bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    assert_eq!(n as usize, bytes.len());
    bytes
}

/// Copies a ring's segment into a new sealed memfd, after `edit`.
fn forged_copy(fds: &RingFds, edit: impl FnOnce(&mut Vec<u8>)) -> OwnedFd {
    let mut bytes = segment_bytes(fds);
    edit(&mut bytes);
    let fd = raw_memfd(0, 0);
    // SAFETY: writes our buffer to a valid descriptor.
    let n = unsafe { libc::pwrite(fd.as_raw_fd(), bytes.as_ptr().cast(), bytes.len(), 0) };
    assert_eq!(n as usize, bytes.len());
    let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
    // SAFETY: valid memfd.
    assert_eq!(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals) }, 0);
    fd
}

#[test]
fn sealed_segment_cannot_be_truncated_or_grown() {
    let consumer = Consumer::create_anonymous(&options(1 << 16)).unwrap();
    let fd = consumer.fds().memfd.as_raw_fd();
    // SAFETY: valid descriptor; the seal makes this fail without effect.
    assert_ne!(unsafe { libc::ftruncate(fd, 0) }, 0);
    assert_eq!(std::io::Error::last_os_error().raw_os_error(), Some(libc::EPERM));
    // SAFETY: as above.
    assert_ne!(unsafe { libc::ftruncate(fd, 1 << 30) }, 0);
    // SAFETY: F_ADD_SEALS on a sealed-for-sealing memfd must fail.
    assert_ne!(unsafe { libc::fcntl(fd, libc::F_ADD_SEALS, libc::F_SEAL_WRITE) }, 0);
}

#[test]
fn data_region_is_mapped_twice_so_wrapping_records_are_contiguous() {
    let consumer = Consumer::create_anonymous(&options(1 << 16)).unwrap();
    let mut producer = consumer.producer().unwrap();
    let max = producer.max_payload();
    for lap in 0..5u32 {
        // Sizes that never divide the capacity: every lap straddles the end.
        for n in 0..7u32 {
            let len = 9_000 + (n as usize * 1_337) % 3_000;
            let payload: Vec<u8> = (0..len).map(|i| (i as u32).wrapping_mul(31).wrapping_add(n + lap) as u8).collect();
            producer.send(n, &payload).unwrap();
            let frame = consumer.recv().unwrap();
            assert_eq!(frame.to_vec(), &payload[..]);
        }
    }
    let whole: Vec<u8> = (0..max).map(|i| (i % 251) as u8).collect();
    producer.send(1, &whole).unwrap();
    assert_eq!(consumer.recv().unwrap().to_vec(), &whole[..]);
}

#[test]
fn attach_refuses_an_unsealed_or_foreign_descriptor() {
    let consumer = Consumer::create_anonymous(&options(1 << 16)).unwrap();
    let unsealed = raw_memfd(65536 + 12288, 0);
    let err = Producer::attach(with_memfd(consumer.fds(), unsealed)).err().unwrap();
    assert!(matches!(err, Error::BadSegment { .. }), "{err}");
    let file = std::fs::File::open("/proc/self/exe").unwrap();
    let err = Producer::attach(with_memfd(consumer.fds(), OwnedFd::from(file))).err().unwrap();
    assert!(matches!(err, Error::BadSegment { .. }), "{err}");
    let zeros = raw_memfd(65536 + 12288, libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL);
    let err = Producer::attach(with_memfd(consumer.fds(), zeros)).err().unwrap();
    assert!(matches!(err, Error::NotARing { found: 0 }), "{err}");
}

#[test]
fn descriptor_spec_with_only_the_memfd_refuses_a_segment_too_short_for_a_header() {
    use std::os::fd::IntoRawFd;
    let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
    for len in [0, 4096] {
        let fd = raw_memfd(len, seals).into_raw_fd();
        // SAFETY: `fd` was just made for this call, which takes it over.
        let err = unsafe { Producer::attach_spec(&fd.to_string()) }.err().expect("refused");
        assert!(matches!(err, Error::BadSegment { .. }), "{len} bytes: {err}");
    }
    let fd = raw_memfd(4096, 0).into_raw_fd();
    // SAFETY: as above.
    let err = unsafe { Producer::attach_spec(&fd.to_string()) }.err().expect("refused");
    assert!(err.to_string().contains("not sealed"), "{err}");
}

#[test]
fn attach_refuses_wrong_magic_version_capacity_and_size() {
    let consumer = Consumer::create_anonymous(&options(1 << 16)).unwrap();
    let fds = consumer.fds();
    let bad_magic = forged_copy(fds, |b| b[0] ^= 0xff);
    assert!(matches!(Producer::attach(with_memfd(fds, bad_magic)), Err(Error::NotARing { .. })));
    let bad_version = forged_copy(fds, |b| b[8..12].copy_from_slice(&7u32.to_le_bytes()));
    assert!(matches!(
        Producer::attach(with_memfd(fds, bad_version)),
        Err(Error::VersionMismatch { found: 7, expected: shmring::layout::LAYOUT_VERSION })
    ));
    let bad_capacity = forged_copy(fds, |b| b[24..32].copy_from_slice(&(3u64 << 20).to_le_bytes()));
    assert!(matches!(Producer::attach(with_memfd(fds, bad_capacity)), Err(Error::BadGeometry { .. })));
    let bigger = forged_copy(fds, |b| b[24..32].copy_from_slice(&(1u64 << 17).to_le_bytes()));
    assert!(matches!(
        Producer::attach(with_memfd(fds, bigger)),
        Err(Error::BadGeometry { .. } | Error::BadSegment { .. })
    ));
    let short = forged_copy(fds, |b| b.truncate(b.len() - 4096));
    assert!(matches!(Producer::attach(with_memfd(fds, short)), Err(Error::BadSegment { .. })));
    let uninitialised = forged_copy(fds, |b| b[12..16].copy_from_slice(&0u32.to_le_bytes()));
    assert!(matches!(Producer::attach(with_memfd(fds, uninitialised)), Err(Error::NotInitialised)));
}

#[test]
fn named_ring_keeps_nothing_in_files_a_producer_could_truncate() {
    let name = format!("test-sem-{}", std::process::id());
    let consumer = Consumer::create(&name, &options(1 << 16)).unwrap();
    let leftovers: Vec<_> = std::fs::read_dir("/dev/shm")
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(&name))
        .collect();
    assert!(leftovers.is_empty(), "signalling lives in the sealed segment, not in {leftovers:?}");
    let again = Consumer::create(&name, &options(1 << 16));
    assert!(matches!(again, Err(Error::InUse { .. })), "a second ring of the same name is refused");
    drop(consumer);
    drop(Consumer::create(&name, &options(1 << 16)).unwrap());
}

#[test]
fn bad_names_and_capacities_are_refused_with_clear_errors() {
    for name in ["", "a/b", "../x", &"n".repeat(49)] {
        let err = Consumer::create(name, &options(1 << 16)).err().unwrap();
        assert!(matches!(err, Error::BadName { .. }), "{name}: {err}");
        assert!(err.to_string().contains("A-Z"));
    }
    for capacity in [0, 1000, 3 << 20, 1 << 41] {
        let err = Consumer::create_anonymous(&options(capacity)).err().unwrap();
        assert!(matches!(err, Error::BadCapacity { .. }), "{capacity}: {err}");
    }
}

#[test]
fn producer_sending_more_than_the_largest_record_gets_too_large() {
    let consumer = Consumer::create_anonymous(&options(1 << 16)).unwrap();
    let mut producer = Producer::attach(consumer.fds().try_clone().unwrap()).unwrap();
    let err = producer.send(0, &vec![0; (1 << 16) - 63]).err().unwrap();
    assert!(err.to_string().contains("largest record"), "{err}");
}

#[test]
fn huge_pages_fall_back_cleanly_when_there_is_no_pool() {
    let options = RingOptions { hugepages: shmring::HugePages::IfAvailable, ..options(4 << 20) };
    let consumer = Consumer::create_anonymous(&options).unwrap();
    let mut producer = consumer.producer().unwrap();
    producer.send(1, &[5; 100_000]).unwrap();
    assert_eq!(consumer.recv().unwrap().to_vec(), &[5; 100_000][..]);
}

#[test]
fn prefaulted_ring_works() {
    let options = RingOptions { prefault: true, ..options(1 << 20) };
    let consumer = Consumer::create_anonymous(&options).unwrap();
    let mut producer = consumer.producer().unwrap();
    producer.send(1, b"x").unwrap();
    assert_eq!(consumer.recv().unwrap().to_vec(), b"x");
}

#[test]
fn producer_can_prefault_its_mapping_without_changing_the_ring() {
    let consumer = Consumer::create_anonymous(&options(1 << 20)).unwrap();
    let mut producer = Producer::attach(consumer.fds().try_clone().unwrap()).unwrap();
    producer.send(3, b"before").unwrap();
    producer.prefault().unwrap();
    producer.send(4, b"after").unwrap();
    assert_eq!(consumer.recv().unwrap().to_vec(), b"before");
    assert_eq!(consumer.recv().unwrap().to_vec(), b"after");
}

#[test]
fn a_lease_keeps_the_ring_mapped_after_its_consumer_and_producers_are_gone() {
    let consumer = Consumer::create_anonymous(&options(1 << 20)).unwrap();
    let mut producer = consumer.producer().unwrap();
    producer.send(3, &[0x5a; 100_000]).unwrap();
    let lease = consumer.recv().unwrap().into_lease().unwrap();
    drop(producer);
    drop(consumer);
    let copy = std::thread::spawn(move || lease.bytes().to_vec()).join().unwrap();
    assert_eq!(copy, [0x5a; 100_000]);
}

#[test]
fn a_liveness_half_needs_no_token_in_the_spec_and_rides_in_the_legacy_data_place() {
    use std::os::fd::IntoRawFd;
    let consumer = Consumer::create_anonymous(&options(1 << 16)).unwrap();
    let raw = |fds: &RingFds| fds.memfd.try_clone().unwrap().into_raw_fd();
    let (half, watch) = shmring::liveness_pair().unwrap();
    let live = half.fd().unwrap().try_clone_to_owned().unwrap().into_raw_fd();
    let (memfd, spare) = (raw(consumer.fds()), raw(consumer.fds()));
    // SAFETY: every number is a descriptor made above for this call alone.
    let fds = unsafe { RingFds::from_spec(&format!("{memfd}:{live}:{spare}")) }.unwrap();
    assert_eq!(fds.liveness.as_ref().map(|l| l.token()), Some(watch.token()), "the DATA place held the half");
    assert!(fds.liveness.as_ref().unwrap().fd().is_some(), "and it is kept open");
    drop(fds);
    let (live, memfd) = (half.fd().unwrap().try_clone_to_owned().unwrap().into_raw_fd(), raw(consumer.fds()));
    // SAFETY: as above.
    let fds = unsafe { RingFds::from_spec(&format!("{memfd},live={live}")) }.unwrap();
    assert_eq!(fds.liveness.as_ref().map(|l| l.token()), Some(watch.token()), "live=FD alone carries its token");
    let (other, memfd) = (raw(consumer.fds()), raw(consumer.fds()));
    // SAFETY: as above.
    let refused = unsafe { RingFds::from_spec(&format!("{memfd},live={other}")) };
    assert!(matches!(refused, Err(shmring::Error::BadDescriptorSpec { .. })), "a descriptor without a token");
    let (memfd, data, space) = (raw(consumer.fds()), raw(consumer.fds()), raw(consumer.fds()));
    // SAFETY: as above.
    let fds = unsafe { RingFds::from_spec(&format!("{memfd}:{data}:{space}")) }.unwrap();
    assert!(fds.liveness.is_none(), "the old three-descriptor form without a half");
}
