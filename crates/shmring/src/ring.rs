//! A ring on a memfd segment: creating it (the consumer's job), opening it
//! from descriptors (producers, a re-attaching consumer, `stat`), and the
//! descriptors that travel between processes.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

use crate::backing::{Backing, Sealed};
use crate::consumer::Consumer;
use crate::error::{Error, Result};
use crate::layout::{
    consumer_state, Geometry, Header, HeaderParams, RecordHeader, FLAG_HUGEPAGES, MAX_CAPACITY, MIN_CAPACITY,
    RECORD_HEADER_SPAN,
};
use crate::liveness::{self, Liveness};
use crate::producer::Producer;
use crate::segment::{self, HeaderView, HugePages, Mapping, HUGE_PAGE};
use crate::signal::{self, Semaphore};
use crate::sync::Ordering;

/// How to create a ring.
#[derive(Clone, Debug)]
pub struct RingOptions {
    /// Data region size in bytes: a power of two, at least one page. The
    /// largest payload is `capacity - 64`.
    pub capacity: u64,
    /// Huge pages for the segment.
    pub hugepages: HugePages,
    /// Touch every page at creation, so the first frames do not fault.
    pub prefault: bool,
    /// How long an unpublished head record may stall the consumer before
    /// it checks whether its producer died.
    pub stall_timeout: Duration,
}

impl Default for RingOptions {
    fn default() -> Self {
        RingOptions {
            capacity: 64 << 20,
            hugepages: HugePages::Never,
            prefault: false,
            stall_timeout: Duration::from_millis(250),
        }
    }
}

impl RingOptions {
    /// Options for a ring of `capacity` bytes, defaults otherwise.
    pub fn with_capacity(capacity: u64) -> Self {
        RingOptions { capacity, ..Default::default() }
    }
}

/// The descriptors a process needs to use a ring: the segment and the
/// backing files of the two semaphores. A sandboxed producer gets all three
/// at attach time and never needs `open()`.
#[derive(Debug)]
pub struct RingFds {
    pub memfd: OwnedFd,
    pub data_available: OwnedFd,
    pub space_available: OwnedFd,
}

impl RingFds {
    /// Duplicates all three descriptors.
    pub fn try_clone(&self) -> Result<RingFds> {
        Ok(RingFds {
            memfd: segment::dup_cloexec(self.memfd.as_fd())?,
            data_available: segment::dup_cloexec(self.data_available.as_fd())?,
            space_available: segment::dup_cloexec(self.space_available.as_fd())?,
        })
    }

    /// Duplicates the descriptors without close-on-exec, so a child spawned
    /// while the returned value lives inherits them, and gives the spec to
    /// hand the child (`SHMRING_FD` or a command-line flag). Dropping the
    /// value closes the duplicates in this process.
    pub fn inheritable(&self) -> Result<InheritableFds> {
        let dup = |fd: BorrowedFd<'_>| -> Result<OwnedFd> {
            // SAFETY: F_DUPFD duplicates a valid descriptor without
            // close-on-exec; the result is owned by nobody else.
            let raw = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD, 3) };
            if raw < 0 {
                return Err(Error::os("fcntl(F_DUPFD)"));
            }
            // SAFETY: `raw` is a fresh descriptor.
            Ok(unsafe { OwnedFd::from_raw_fd(raw) })
        };
        let fds = [dup(self.memfd.as_fd())?, dup(self.data_available.as_fd())?, dup(self.space_available.as_fd())?];
        let spec = format!("{}:{}:{}", fds[0].as_raw_fd(), fds[1].as_raw_fd(), fds[2].as_raw_fd());
        Ok(InheritableFds { _fds: fds, spec })
    }

    /// Takes ownership of descriptors named by a spec: `MEMFD` or
    /// `MEMFD:DATA_SEM:SPACE_SEM` (decimal numbers). With only the memfd,
    /// the semaphores are opened by name (impossible inside a sandbox).
    ///
    /// # Safety
    ///
    /// The numbers must name open descriptors that this process owns and
    /// that nothing else will close or use as their owner afterwards (for
    /// example descriptors inherited from the parent for this purpose).
    pub unsafe fn from_spec(spec: &str) -> Result<RingFds> {
        let bad = |reason| Error::BadDescriptorSpec { spec: spec.to_string(), reason };
        let numbers: Vec<RawFd> = spec
            .trim()
            .split(':')
            .map(|part| part.parse::<RawFd>().map_err(|_| bad("not a decimal descriptor number")))
            .collect::<Result<_>>()?;
        if !(numbers.len() == 1 || numbers.len() == 3) {
            return Err(bad("expected 1 or 3 descriptors"));
        }
        for &fd in &numbers {
            // SAFETY: F_GETFD only asks whether `fd` is open.
            if fd < 0 || unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
                return Err(bad("descriptor is not open in this process"));
            }
            // Do not leak the ring into our own children.
            // SAFETY: sets the close-on-exec flag of an open descriptor.
            unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        }
        // SAFETY: the caller hands us ownership of these open descriptors.
        let owned = |fd: RawFd| unsafe { OwnedFd::from_raw_fd(fd) };
        let memfd = owned(numbers[0]);
        if numbers.len() == 3 {
            return Ok(RingFds { memfd, data_available: owned(numbers[1]), space_available: owned(numbers[2]) });
        }
        let len = segment::check_sealed(memfd.as_fd())?;
        if len < std::mem::size_of::<Header>() as u64 {
            return Err(Error::BadSegment { reason: format!("segment of {len} bytes cannot hold a header") });
        }
        let view = HeaderView::map(memfd.as_fd(), len)?;
        // SAFETY: the view maps the whole sealed segment, page aligned and
        // at least a header long (checked above); an all-atomics header is
        // valid for any bytes.
        let header = unsafe { &*view.ptr().cast::<Header>() };
        Geometry::validate(header, None)?;
        let name = header.name();
        crate::name::validate(&name)?;
        Ok(RingFds {
            memfd,
            data_available: signal::open_backing_file(&name, "data")?,
            space_available: signal::open_backing_file(&name, "space")?,
        })
    }

    /// Takes the descriptors named by the `SHMRING_FD` environment variable.
    ///
    /// # Safety
    ///
    /// As for [`RingFds::from_spec`]: the parent set `SHMRING_FD` for this
    /// process and passed it the descriptors it names.
    pub unsafe fn from_env() -> Result<RingFds> {
        let spec = std::env::var("SHMRING_FD")
            .map_err(|_| Error::BadDescriptorSpec { spec: String::new(), reason: "SHMRING_FD is not set" })?;
        // SAFETY: forwarded from the caller's guarantee.
        unsafe { RingFds::from_spec(&spec) }
    }
}

/// Descriptors a child process will inherit, and the spec naming them.
pub struct InheritableFds {
    _fds: [OwnedFd; 3],
    spec: String,
}

impl InheritableFds {
    /// `MEMFD:DATA_SEM:SPACE_SEM`, for `SHMRING_FD` or `--shmring-fd`.
    pub fn spec(&self) -> &str {
        &self.spec
    }
}

/// A ring mapped from its memfd, with its semaphores.
pub struct MappedRing {
    mapping: Mapping,
    geometry: Geometry,
    data_available: Semaphore,
    space_available: Semaphore,
    fds: RingFds,
    name: String,
    /// Set in the consumer's process for a named ring: removes the
    /// semaphore names (and the rendezvous socket) when the ring closes.
    _cleanup: Option<NameCleanup>,
}

struct NameCleanup {
    name: String,
    /// Dropped after the semaphores are unlinked: the name is free last.
    _owner: Option<crate::leftovers::OwnerFile>,
}

impl Drop for NameCleanup {
    fn drop(&mut self) {
        let _ = signal::unlink_named(&self.name, "data");
        let _ = signal::unlink_named(&self.name, "space");
    }
}

impl Sealed for MappedRing {}

// SAFETY: the header lies at the start of the mapping (page aligned, so
// 128-aligned) and was validated at open; the data region is mapped twice
// back to back, so `record` (offset < capacity, 64-aligned) and `payload`
// (offset + 64 + max_payload <= 2 x capacity) stay inside the mapping.
unsafe impl Backing for MappedRing {
    type Signal = Semaphore;
    fn header(&self) -> &Header {
        // SAFETY: see the impl's comment; a header of atomics is valid for
        // any bytes.
        unsafe { &*self.mapping.base().cast::<Header>() }
    }
    fn geometry(&self) -> &Geometry {
        &self.geometry
    }
    fn record(&self, position: u64) -> &RecordHeader {
        let offset = position & (self.mapping.capacity() - 1) & !63;
        // SAFETY: see the impl's comment.
        unsafe { &*self.mapping.data().add(offset as usize).cast::<RecordHeader>() }
    }
    fn payload(&self, position: u64) -> *mut u8 {
        let offset = (position & (self.mapping.capacity() - 1)) + RECORD_HEADER_SPAN;
        // SAFETY: see the impl's comment.
        unsafe { self.mapping.data().add(offset as usize) }
    }
    fn data_available(&self) -> &Semaphore {
        &self.data_available
    }
    fn space_available(&self) -> &Semaphore {
        &self.space_available
    }
}

fn check_capacity(capacity: u64, page: u64) -> Result<()> {
    let bad = |reason| Err(Error::BadCapacity { requested: capacity, reason });
    if !capacity.is_power_of_two() {
        return bad("not a power of two");
    }
    if capacity < MIN_CAPACITY.max(page) {
        return bad("smaller than one page");
    }
    if capacity > MAX_CAPACITY {
        return bad("larger than 1 TiB");
    }
    Ok(())
}

fn random_salt() -> u64 {
    let mut bytes = [0u8; 8];
    // SAFETY: getrandom writes at most `bytes.len()` bytes into our buffer.
    let n = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    if n != bytes.len() as isize {
        // Only collision resistance suffers; the protocol stays correct.
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        return t.as_nanos() as u64 ^ (u64::from(std::process::id()) << 32);
    }
    u64::from_le_bytes(bytes)
}

impl MappedRing {
    /// Creates the segment and semaphores of ring `name`.
    fn create(name: &str, options: &RingOptions, anonymous: bool) -> Result<MappedRing> {
        crate::name::validate(name)?;
        let page = segment::page_size();
        check_capacity(options.capacity, page)?;
        let owner = if anonymous { None } else { Some(crate::leftovers::take_name(name)?) };
        let header_len = std::mem::size_of::<Header>() as u64;
        let mut created = None;
        if options.hugepages != HugePages::Never && options.capacity % HUGE_PAGE == 0 {
            let header_size = HUGE_PAGE;
            let attempt = segment::create(name, header_size + options.capacity, true).and_then(|seg| {
                let mapping = Mapping::map(seg.fd.as_fd(), header_size, options.capacity, HUGE_PAGE, options.prefault)?;
                Ok((seg, mapping, header_size))
            });
            match attempt {
                Ok(done) => created = Some(done),
                Err(e) if options.hugepages == HugePages::Require => return Err(e),
                Err(_e) => {
                    #[cfg(feature = "tracing")]
                    tracing::info!(error = %_e, "huge pages unavailable; using normal pages");
                }
            }
        } else if options.hugepages == HugePages::Require {
            return Err(Error::BadCapacity {
                requested: options.capacity,
                reason: "not a multiple of the 2 MiB huge page",
            });
        }
        let (seg, mapping, header_size) = match created {
            Some(done) => done,
            None => {
                let header_size = header_len.next_multiple_of(page);
                let seg = segment::create(name, header_size + options.capacity, false)?;
                let mapping = Mapping::map(seg.fd.as_fd(), header_size, options.capacity, page, options.prefault)?;
                (seg, mapping, header_size)
            }
        };
        // SAFETY: the mapping starts with `header_size >= size_of::<Header>()`
        // zeroed bytes of a fresh memfd; an all-atomics header is valid.
        let header = unsafe { &*mapping.base().cast::<Header>() };
        header.initialise(&HeaderParams {
            name,
            header_size: header_size as u32,
            capacity: options.capacity,
            salt: random_salt(),
            flags: if seg.hugepages { FLAG_HUGEPAGES } else { 0 },
            stall_timeout_us: options.stall_timeout.as_micros().max(1) as u64,
        });
        let geometry = Geometry::validate(header, Some(header_size + options.capacity))?;
        let data_fd = signal::create_named(name, "data").map_err(|e| leftover_error(name, e))?;
        let space_fd = match signal::create_named(name, "space") {
            Ok(fd) => fd,
            Err(e) => {
                let _ = signal::unlink_named(name, "data");
                return Err(leftover_error(name, e));
            }
        };
        let cleanup = NameCleanup { name: name.to_string(), _owner: owner };
        let cleanup = if anonymous {
            drop(cleanup);
            None
        } else {
            Some(cleanup)
        };
        Ok(MappedRing {
            data_available: Semaphore::from_fd(data_fd.as_fd())?,
            space_available: Semaphore::from_fd(space_fd.as_fd())?,
            fds: RingFds { memfd: seg.fd, data_available: data_fd, space_available: space_fd },
            mapping,
            geometry,
            name: name.to_string(),
            _cleanup: cleanup,
        })
    }

    /// Maps a ring from its descriptors, checking seals, size and header.
    pub fn open(fds: RingFds) -> Result<MappedRing> {
        let len = segment::check_sealed(fds.memfd.as_fd())?;
        let (geometry, name) = {
            let view = HeaderView::map(fds.memfd.as_fd(), len.max(1))?;
            if len < std::mem::size_of::<Header>() as u64 {
                return Err(Error::BadSegment { reason: format!("segment of {len} bytes cannot hold a header") });
            }
            // SAFETY: the view maps `len >= size_of::<Header>()` bytes from
            // a page-aligned address; an all-atomics header is valid for any
            // bytes, and the file is sealed against shrinking.
            let header = unsafe { &*view.ptr().cast::<Header>() };
            (Geometry::validate(header, Some(len))?, header.name())
        };
        let align = if geometry.flags & FLAG_HUGEPAGES != 0 { HUGE_PAGE } else { segment::page_size() };
        let mapping = Mapping::map(fds.memfd.as_fd(), geometry.header_size, geometry.capacity, align, false)?;
        Ok(MappedRing {
            data_available: Semaphore::from_fd(fds.data_available.as_fd())?,
            space_available: Semaphore::from_fd(fds.space_available.as_fd())?,
            mapping,
            geometry,
            fds,
            name,
            _cleanup: None,
        })
    }

    /// The descriptors of this ring.
    pub fn fds(&self) -> &RingFds {
        &self.fds
    }

    /// The ring's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A snapshot of the ring's counters.
    pub fn stats(&self) -> crate::Stats {
        crate::Stats::read(self.header(), self.geometry())
    }

    /// Faults in this mapping (see [`Producer::prefault`]).
    pub fn prefault(&self) -> Result<()> {
        self.mapping.populate()
    }
}

fn leftover_error(name: &str, e: Error) -> Error {
    match &e {
        Error::Os { source, .. } if source.raw_os_error() == Some(libc::EEXIST) => {
            Error::InUse { name: name.to_string(), pid: 0 }
        }
        _ => e,
    }
}

/// A named ring held open with no consumer attached: what `shmring create`
/// keeps alive so that producers, a consumer and `stat` can attach to it by
/// name later, in any order. A consumer attaches with
/// [`Consumer::attach`]; the ring's names are removed when the host drops.
pub struct RingHost {
    ring: Arc<MappedRing>,
}

impl RingHost {
    /// Creates ring `name` (segment, semaphores, owner file) without
    /// becoming its consumer.
    pub fn create(name: &str, options: &RingOptions) -> Result<RingHost> {
        Ok(RingHost { ring: Arc::new(MappedRing::create(name, options, false)?) })
    }

    /// The ring's descriptors.
    pub fn fds(&self) -> &RingFds {
        self.ring.fds()
    }

    /// The ring's name.
    pub fn name(&self) -> &str {
        self.ring.name()
    }

    /// A snapshot of the ring's counters.
    pub fn stats(&self) -> crate::Stats {
        crate::Stats::read(self.ring.header(), self.ring.geometry())
    }

    /// The ring's geometry.
    pub fn geometry(&self) -> &Geometry {
        self.ring.geometry()
    }
}

/// The consumer of a memfd ring.
pub type RingConsumer = Consumer<MappedRing>;
/// A producer of a memfd ring.
pub type RingProducer = Producer<MappedRing>;

impl Consumer<MappedRing> {
    /// Creates ring `name` (segment and semaphores) and becomes its
    /// consumer. The semaphore names are removed when the ring closes.
    pub fn create(name: &str, options: &RingOptions) -> Result<Self> {
        let ring = MappedRing::create(name, options, false)?;
        Consumer::start(Arc::new(ring))
    }

    /// Creates a ring that has no name outside this process: its
    /// semaphores are unlinked at once; share it by passing descriptors.
    pub fn create_anonymous(options: &RingOptions) -> Result<Self> {
        use std::sync::atomic::{AtomicU32, Ordering as O};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name =
            format!("anon.{}.{}.{:08x}", std::process::id(), NEXT.fetch_add(1, O::Relaxed), random_salt() as u32);
        let ring = MappedRing::create(&name, options, true)?;
        Consumer::start(Arc::new(ring))
    }

    /// Becomes the consumer of an existing ring (after its consumer died),
    /// resuming at its `read` cursor. Refused while the old consumer lives.
    pub fn attach(fds: RingFds) -> Result<Self> {
        let ring = MappedRing::open(fds)?;
        let line = &ring.header().consumer;
        // Acquire: SYNC POINT: pairs with the Release store of ATTACHED in
        // `Consumer::start`: the pid and start time read below come with it.
        let state = line.state.load(Ordering::Acquire);
        let pid = line.pid.load(Ordering::Relaxed);
        // A consumer in another pid namespace cannot be checked: presumed
        // alive, so two consumers never share a ring.
        if state == consumer_state::ATTACHED
            && (!liveness::pid_comparable(line.pid_namespace.load(Ordering::Relaxed))
                || liveness::check(pid, line.start_time.load(Ordering::Relaxed)) == Liveness::Alive)
        {
            return Err(Error::InUse { name: ring.name.clone(), pid });
        }
        Consumer::start(Arc::new(ring))
    }

    /// The ring's descriptors, to pass to producers.
    pub fn fds(&self) -> &RingFds {
        self.backing().fds()
    }

    /// The ring's name.
    pub fn name(&self) -> &str {
        self.backing().name()
    }

    /// A producer in this process (its own slot; one per thread).
    pub fn producer(&self) -> Result<Producer<MappedRing>> {
        Producer::join(self.backing().clone(), liveness::own_pid(), liveness::own_start_time())
    }
}

impl Producer<MappedRing> {
    /// Attaches to a ring from its descriptors.
    pub fn attach(fds: RingFds) -> Result<Self> {
        let ring = MappedRing::open(fds)?;
        #[cfg(feature = "tracing")]
        tracing::debug!(ring = ring.name(), "producer attached");
        Producer::join(Arc::new(ring), liveness::own_pid(), liveness::own_start_time())
    }

    /// Faults in this process's mapping of the ring up front, so the
    /// first frames written do not pay page faults (a 256 MiB ring is
    /// 65,536 of them). Needs Linux 5.14 or later.
    pub fn prefault(&self) -> Result<()> {
        self.backing().prefault()
    }

    /// The mapping this producer writes through, shared with its clones:
    /// what a handle of several producers asks about the ring (geometry,
    /// counters, prefault) without using any of them.
    pub fn ring(&self) -> &Arc<MappedRing> {
        self.backing()
    }

    /// Attaches from descriptors named by `spec` (see [`RingFds::from_spec`]).
    ///
    /// # Safety
    ///
    /// As for [`RingFds::from_spec`].
    pub unsafe fn attach_spec(spec: &str) -> Result<Self> {
        // SAFETY: forwarded from the caller.
        Producer::attach(unsafe { RingFds::from_spec(spec) }?)
    }

    /// Attaches from the descriptors named by `SHMRING_FD`.
    ///
    /// # Safety
    ///
    /// As for [`RingFds::from_env`].
    pub unsafe fn from_env() -> Result<Self> {
        // SAFETY: forwarded from the caller.
        Producer::attach(unsafe { RingFds::from_env() }?)
    }
}
