//! A ring on a memfd segment: creating it (the consumer's job), opening it
//! from descriptors (producers, a re-attaching consumer, `stat`), and the
//! descriptors that travel between processes.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

use crate::backing::{Backing, Sealed};
use crate::claims::LocalClaims;
use crate::consumer::Consumer;
use crate::error::{Error, Result};
use crate::layout::{
    Geometry, Header, HeaderParams, RecordHeader, FLAG_HUGEPAGES, MAX_CAPACITY, MIN_CAPACITY, RECORD_HEADER_SPAN,
};
use crate::liveness::ProducerLiveness;
use crate::producer::{Identity, Producer};
use crate::segment::{self, HeaderView, HugePages, Mapping, HUGE_PAGE};
use crate::signal::Futex;

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

/// The descriptors a process needs to use a ring: the sealed segment (its
/// futex words included, so a sandboxed producer needs nothing else and
/// never calls `open()`), and for a producer its half of a liveness pair,
/// when its launcher made one.
#[derive(Debug)]
pub struct RingFds {
    pub memfd: OwnedFd,
    /// Held by the producer process for its life; its hang-up tells the
    /// consumer the producer is dead (see [`liveness_pair`](crate::liveness_pair)).
    pub liveness: Option<ProducerLiveness>,
}

impl RingFds {
    /// The segment alone.
    pub fn new(memfd: OwnedFd) -> Self {
        RingFds { memfd, liveness: None }
    }

    /// Duplicates the descriptors.
    pub fn try_clone(&self) -> Result<RingFds> {
        let liveness = self.liveness.as_ref().map(ProducerLiveness::try_clone).transpose()?;
        Ok(RingFds { memfd: segment::dup_cloexec(self.memfd.as_fd())?, liveness })
    }

    /// These descriptors with a producer's liveness half (see
    /// [`liveness_pair`](crate::liveness_pair)), for one producer process.
    pub fn with_liveness(&self, liveness: ProducerLiveness) -> Result<RingFds> {
        Ok(RingFds { memfd: segment::dup_cloexec(self.memfd.as_fd())?, liveness: Some(liveness) })
    }

    /// Duplicates the descriptors without close-on-exec, so a child spawned
    /// while the returned value lives inherits them, and gives the spec to
    /// hand the child (`SHMRING_FD` or a command-line flag). Dropping the
    /// value closes the duplicates in this process. A child spawned
    /// meanwhile by another thread inherits them too: hand a liveness half
    /// with [`RingFds::pass_to`] instead, which only the intended child
    /// gets.
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
        let mut fds = vec![dup(self.memfd.as_fd())?];
        let mut spec = fds[0].as_raw_fd().to_string();
        if let Some(live) = &self.liveness {
            spec.push_str(&format!(",token={:x}", live.token));
            if let Some(fd) = &live.fd {
                fds.push(dup(fd.as_fd())?);
                spec.push_str(&format!(",live={}", fds[1].as_raw_fd()));
            }
        }
        Ok(InheritableFds { _fds: fds, spec })
    }

    /// Makes `command`'s child inherit these descriptors, and only that
    /// child (they are let through close-on-exec between its fork and its
    /// exec), and sets `SHMRING_FD` for it. Returns the spec. The
    /// descriptors stay open in `command` until it is dropped: drop it once
    /// the child is spawned, so that only the child holds the liveness
    /// half.
    pub fn pass_to(self, command: &mut std::process::Command) -> String {
        use std::os::unix::process::CommandExt;
        let mut spec = self.memfd.as_raw_fd().to_string();
        let mut raw = vec![self.memfd.as_raw_fd()];
        if let Some(live) = &self.liveness {
            spec.push_str(&format!(",token={:x}", live.token));
            if let Some(fd) = &live.fd {
                spec.push_str(&format!(",live={}", fd.as_raw_fd()));
                raw.push(fd.as_raw_fd());
            }
        }
        command.env("SHMRING_FD", &spec);
        // SAFETY: the hook runs in the forked child before exec and only
        // calls fcntl, which is async-signal-safe; the descriptors are open
        // for as long as `command` holds `self`.
        unsafe {
            command.pre_exec(move || {
                let _keep = &self;
                for &fd in &raw {
                    if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        spec
    }

    /// Takes ownership of descriptors named by a spec: `MEMFD`, optionally
    /// followed by `,token=HEX` (the liveness token of the producer's
    /// slots) and `,live=FD` (its liveness descriptor; the token may be
    /// left out for the producer half of a [`liveness_pair`](crate::liveness_pair),
    /// which carries it), all numbers decimal but the token. The older
    /// `MEMFD:DATA_SEM:SPACE_SEM` is still taken: the two semaphore
    /// descriptors are closed, unused (the signalling words live in the
    /// segment now), except a liveness pair's producer half in the
    /// `DATA_SEM` place, which is kept as the liveness descriptor: that is
    /// how a launcher hands one through a browser that passes three
    /// descriptor numbers to its renderers and nothing else.
    ///
    /// # Safety
    ///
    /// The numbers must name open descriptors that this process owns and
    /// that nothing else will close or use as their owner afterwards (for
    /// example descriptors inherited from the parent for this purpose).
    pub unsafe fn from_spec(spec: &str) -> Result<RingFds> {
        let bad = |reason| Error::BadDescriptorSpec { spec: spec.to_string(), reason };
        let mut parts = spec.trim().split(',');
        let first = parts.next().unwrap_or_default();
        let legacy: Vec<&str> = first.split(':').collect();
        if !(legacy.len() == 1 || legacy.len() == 3) {
            return Err(bad("expected MEMFD[,token=HEX][,live=FD] or MEMFD:DATA_SEM:SPACE_SEM"));
        }
        let number = |text: &str| text.parse::<RawFd>().map_err(|_| bad("not a decimal descriptor number"));
        let mut fds: Vec<RawFd> = legacy.iter().map(|t| number(t)).collect::<Result<_>>()?;
        let (mut token, mut live) = (None, None);
        for part in parts {
            match part.split_once('=') {
                Some(("token", hex)) => {
                    token = Some(u64::from_str_radix(hex, 16).map_err(|_| bad("token is not hexadecimal"))?)
                }
                Some(("live", fd)) => live = Some(number(fd)?),
                _ => return Err(bad("unknown part (expected token=HEX or live=FD)")),
            }
        }
        fds.extend(live);
        for &fd in &fds {
            // SAFETY: F_GETFD only asks whether `fd` is open.
            if fd < 0 || unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
                return Err(bad("descriptor is not open in this process"));
            }
            // Do not leak the ring into our own children.
            // SAFETY: sets the close-on-exec flag of an open descriptor.
            unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        }
        // SAFETY: the descriptors were just checked to be open, and the
        // caller's guarantee makes them ours to read.
        let carried = |fd: RawFd| crate::liveness::carried_token(unsafe { BorrowedFd::borrow_raw(fd) });
        if live.is_none() && legacy.len() == 3 {
            if let Some(carried) = carried(fds[1]) {
                live = Some(fds[1]);
                token = token.or(Some(carried));
            }
        }
        if let (Some(fd), None) = (live, token) {
            token = Some(carried(fd).ok_or_else(|| bad("live=FD needs token=HEX (this descriptor carries none)"))?);
        }
        // SAFETY: the caller hands us ownership of these open descriptors.
        let owned = |fd: RawFd| unsafe { OwnedFd::from_raw_fd(fd) };
        let memfd = owned(fds[0]);
        if legacy.len() == 3 {
            let mut closed = vec![fds[0]];
            for &fd in &fds[1..3] {
                if !closed.contains(&fd) && Some(fd) != live {
                    closed.push(fd);
                    drop(owned(fd));
                }
            }
        }
        let liveness = token.map(|token| ProducerLiveness { fd: live.map(owned), token });
        Ok(RingFds { memfd, liveness })
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
    _fds: Vec<OwnedFd>,
    spec: String,
}

impl InheritableFds {
    /// `MEMFD[,token=HEX][,live=FD]`, for `SHMRING_FD` or `--shmring-fd`.
    pub fn spec(&self) -> &str {
        &self.spec
    }

    /// The inherited segment's number and the liveness descriptor's, if
    /// any: for launchers that pass numbers in another form (see
    /// [`RingFds::from_spec`]).
    pub fn descriptors(&self) -> (RawFd, Option<RawFd>) {
        (self._fds[0].as_raw_fd(), self._fds.get(1).map(|fd| fd.as_raw_fd()))
    }
}

/// A ring mapped from its memfd.
pub struct MappedRing {
    mapping: Mapping,
    geometry: Geometry,
    /// Holds the liveness half (if any) for as long as the mapping lives.
    fds: RingFds,
    name: String,
    claims: LocalClaims,
    /// Set in the consumer's process for a named ring: frees the name when
    /// the ring closes.
    _owner: Option<crate::leftovers::OwnerFile>,
}

impl Sealed for MappedRing {}

// SAFETY: the header lies at the start of the mapping (page aligned, so
// 128-aligned) and was validated at open; the data region is mapped twice
// back to back, so `record` (offset < capacity, 64-aligned) and `payload`
// (offset + 64 + max_payload <= 2 x capacity) stay inside the mapping.
unsafe impl Backing for MappedRing {
    type Signal = Futex;
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
    fn signal(&self) -> &Futex {
        &Futex
    }
    fn local_claims(&self) -> &LocalClaims {
        &self.claims
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
        Ok(MappedRing {
            fds: RingFds::new(seg.fd),
            mapping,
            geometry,
            name: name.to_string(),
            claims: LocalClaims::new(),
            _owner: owner,
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
        Ok(MappedRing { mapping, geometry, fds, name, claims: LocalClaims::new(), _owner: None })
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

/// A named ring held open with no consumer attached: what `shmring create`
/// keeps alive so that producers, a consumer and `stat` can attach to it by
/// name later, in any order. A consumer attaches with
/// [`Consumer::attach`]; the ring's names are removed when the host drops.
pub struct RingHost {
    ring: Arc<MappedRing>,
}

impl RingHost {
    /// Creates ring `name` (segment, owner file) without
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

    #[cfg(feature = "rendezvous")]
    pub(crate) fn ring(&self) -> &Arc<MappedRing> {
        &self.ring
    }
}

/// The consumer of a memfd ring.
pub type RingConsumer = Consumer<MappedRing>;
/// A producer of a memfd ring.
pub type RingProducer = Producer<MappedRing>;

impl Consumer<MappedRing> {
    /// Creates ring `name` and becomes its consumer. The name is freed
    /// when the ring closes.
    pub fn create(name: &str, options: &RingOptions) -> Result<Self> {
        let ring = MappedRing::create(name, options, false)?;
        Consumer::start(Arc::new(ring))
    }

    /// Creates a ring that has no name outside this process: share it by
    /// passing descriptors.
    pub fn create_anonymous(options: &RingOptions) -> Result<Self> {
        use std::sync::atomic::{AtomicU32, Ordering as O};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name =
            format!("anon.{}.{}.{:08x}", std::process::id(), NEXT.fetch_add(1, O::Relaxed), random_salt() as u32);
        let ring = MappedRing::create(&name, options, true)?;
        Consumer::start(Arc::new(ring))
    }

    /// Becomes the consumer of an existing ring (after its consumer died),
    /// resuming at its `read` cursor. Refused while the old consumer lives
    /// (or cannot be checked: it runs in another pid namespace), and when
    /// another consumer attaches at the same time.
    pub fn attach(fds: RingFds) -> Result<Self> {
        Consumer::start(Arc::new(MappedRing::open(fds)?))
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
        Producer::join_as(self.backing().clone(), Identity::own(0))
    }
}

impl Producer<MappedRing> {
    /// Attaches to a ring from its descriptors.
    pub fn attach(fds: RingFds) -> Result<Self> {
        let token = fds.liveness.as_ref().map_or(0, |live| live.token);
        let ring = MappedRing::open(fds)?;
        #[cfg(feature = "tracing")]
        tracing::debug!(ring = ring.name(), "producer attached");
        Producer::join_as(Arc::new(ring), Identity::own(token))
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
