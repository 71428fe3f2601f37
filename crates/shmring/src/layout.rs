//! The shared-memory contract: `#[repr(C)]` structures of fixed-width atomics
//! at fixed offsets, checked at compile time, versioned at run time.
//!
//! A segment is one header followed by the data region:
//!
//! ```text
//! 0                header_size                 header_size + capacity
//! | Header (cursors, | data region (records)    | mirror of the data region |
//! | counters, slots) |                          | (second mapping, no file) |
//! ```
//!
//! Only offsets are stored, never pointers, so every process may map the
//! segment at a different address. Every hot cursor sits on its own
//! 128-byte line (two 64-byte lines: the adjacent-line prefetcher on x86
//! pulls pairs).

#[cfg(any(test, loom, feature = "heap"))]
use crate::sync::{atomic_u32, atomic_u64};
use crate::sync::{AtomicU32, AtomicU64, Ordering};

/// "SHMRING\0", little-endian: the first word of every segment.
pub const MAGIC: u64 = u64::from_le_bytes(*b"SHMRING\0");
/// Bumped whenever anything in this file changes meaning or place.
pub const LAYOUT_VERSION: u32 = 3;
/// Stored last by the creator (Release); attach reads it first (Acquire).
pub const INITIALISED: u32 = u32::from_le_bytes(*b"INIT");
/// Size of one shared line: each hot word gets one to itself.
pub const LINE: usize = 128;
/// Records start on this boundary, and so do payloads, so encoders can use
/// aligned SIMD loads.
pub const RECORD_ALIGN: u64 = 64;
/// Bytes from a record's start to its payload.
pub const RECORD_HEADER_SPAN: u64 = 64;
/// Producer slots in the registry (threads and processes attached at once).
#[cfg(not(loom))]
pub const MAX_PRODUCERS: usize = 64;
/// Loom tracks every atomic it sees; a small table keeps models fast.
#[cfg(loom)]
pub const MAX_PRODUCERS: usize = 3;
/// Longest ring name, in bytes (ASCII letters, digits, `.`, `_`, `-`).
pub const MAX_NAME_LEN: usize = 48;
/// Smallest data region: one page.
pub const MIN_CAPACITY: u64 = 4096;
/// Largest data region: the payload length is a `u32`, and 1 TiB of
/// address space is plenty.
pub const MAX_CAPACITY: u64 = 1 << 40;

/// `Identity::flags`: the segment lives on huge pages.
pub const FLAG_HUGEPAGES: u32 = 1;

/// Low bits of a stamp: what kind of record was published there.
const STAMP_TAG_MASK: u64 = RECORD_ALIGN - 1;
const STAMP_COMMITTED: u64 = 1;
const STAMP_SKIPPED: u64 = 2;
/// `ProducerSlot::inflight_pos` when the slot has never claimed anything.
pub const NO_CLAIM: u64 = u64::MAX;

/// The state half of `ProducerSlot::owner`. Every change of state is one
/// CAS on the whole word, whose generation changes each time the slot is
/// taken: an owner that lost its slot can never give back its successor's.
pub mod slot_state {
    /// Nobody owns the slot.
    pub const FREE: u32 = 0;
    /// A producer is filling in its identity; not yet visible to recovery,
    /// and never taken back by anyone but that producer.
    pub const JOINING: u32 = 1;
    /// An attached producer owns the slot.
    pub const ACTIVE: u32 = 2;
}

/// The state half of `ConsumerLine::owner`.
pub mod consumer_state {
    /// No consumer has attached yet (or the segment was just created).
    pub const NONE: u32 = 0;
    /// A consumer is attached; `pid`/`start_time` name it.
    pub const ATTACHED: u32 = 1;
    /// The consumer closed the ring on purpose.
    pub const CLOSED: u32 = 2;
    /// A consumer won the attach CAS and is writing its identity.
    pub const ATTACHING: u32 = 3;
}

/// Written once by the creator, then read-only.
#[repr(C, align(128))]
pub struct Identity {
    pub magic: AtomicU64,
    pub layout_version: AtomicU32,
    /// [`INITIALISED`] once every other field of the header is written.
    pub initialised: AtomicU32,
    /// Bytes from the segment start to the data region (page multiple).
    pub header_size: AtomicU32,
    pub max_producers: AtomicU32,
    /// Data region size in bytes: a power of two, a page multiple.
    pub capacity: AtomicU64,
    /// Largest payload a record may carry.
    pub max_payload: AtomicU64,
    /// Random bits mixed into every stamp, so bytes that merely look like a
    /// record never match by accident.
    pub salt: AtomicU64,
    pub flags: AtomicU32,
    _reserved: AtomicU32,
    /// How long the consumer waits on an unpublished head record before it
    /// checks whether its producer is still alive.
    pub stall_timeout_us: AtomicU64,
    /// Ring name, NUL-padded ASCII.
    pub name: [AtomicU64; 8],
}

/// Who consumes, so producers can tell when it is gone.
#[repr(C, align(128))]
pub struct ConsumerLine {
    /// State ([`consumer_state`], low 32 bits) and the number of consumers
    /// that attached so far (high 32 bits): attaching is one CAS on it, so
    /// two consumers never both win.
    pub owner: AtomicU64,
    pub pid: AtomicU32,
    _reserved: AtomicU32,
    /// Process start time in clock ticks since boot (`/proc/PID/stat` field
    /// 22), so a recycled pid is not mistaken for the consumer.
    pub start_time: AtomicU64,
    /// The consumer's pid namespace (0: unknown), so a producer in another
    /// namespace knows the pid above means nothing to it.
    pub pid_namespace: AtomicU64,
}

/// Packs the consumer line's state and generation.
#[inline]
pub const fn consumer_owner(state: u32, generation: u32) -> u64 {
    (generation as u64) << 32 | state as u64
}

/// One cursor alone on its line.
#[repr(C, align(128))]
pub struct Cursor {
    pub position: AtomicU64,
}

/// Sleep announcements and the futex words sleepers wait on (see
/// `signal`). They live in the sealed segment, so no peer can truncate
/// what the consumer sleeps on.
#[repr(C, align(128))]
pub struct Waiters {
    /// Non-zero while the consumer is (about to be) asleep on `data_seq`.
    pub consumer_waiting: AtomicU32,
    /// Number of producers (about to be) asleep on `space_seq`.
    pub producers_waiting: AtomicU32,
    /// Bumped by a producer that wakes the sleeping consumer.
    pub data_seq: AtomicU32,
    /// Bumped by the consumer when it frees space for sleeping producers.
    pub space_seq: AtomicU32,
    /// Set by a producer that found every slot taken: the consumer gives
    /// back the slots of producers whose death it can confirm.
    pub slots_wanted: AtomicU32,
}

/// Counters only the consumer writes.
#[repr(C, align(128))]
pub struct ConsumerCounters {
    pub frames: AtomicU64,
    pub bytes: AtomicU64,
    /// Skip records (reservations dropped without commit).
    pub skipped: AtomicU64,
    /// Records claimed by a producer that died before publishing them.
    pub recovered: AtomicU64,
    /// Corrupt records or cursors found (each one reported as an error).
    pub corrupt: AtomicU64,
    /// Times the consumer went to sleep on "data available".
    pub sleeps: AtomicU64,
    /// Times the consumer woke producers sleeping for space.
    pub space_posts: AtomicU64,
    /// Claims that a live producer (or one whose death cannot be
    /// confirmed) held past the stall timeout; records after them were
    /// delivered meanwhile.
    pub stalls: AtomicU64,
    /// Records committed after later ones were delivered.
    pub late: AtomicU64,
    /// Records waiting on such a producer right now.
    pub stuck: AtomicU64,
    /// Stuck producers the consumer killed (when allowed to).
    pub killed: AtomicU64,
}

/// Counters of producers that have detached, so totals survive slot reuse.
#[repr(C, align(128))]
pub struct RetiredCounters {
    pub frames: AtomicU64,
    pub bytes: AtomicU64,
    pub drops: AtomicU64,
    pub rejected: AtomicU64,
    pub data_posts: AtomicU64,
    pub waits: AtomicU64,
}

/// One attached producer: identity for liveness checks, the claim it is
/// making (for recovery if it dies), and its counters.
#[repr(C, align(128))]
pub struct ProducerSlot {
    /// State (bits 0-7, [`slot_state`]), generation (bits 8-31, bumped each
    /// time the slot is taken) and owner pid (bits 32-63) in one word, so a
    /// slot is never taken without saying by whom, and every transition is
    /// one CAS that fails for anyone holding an older generation.
    pub owner: AtomicU64,
    pub start_time: AtomicU64,
    /// Position the producer is about to claim. Stored (Release) *before*
    /// the CAS on `write`, so a producer killed right after its claim still
    /// tells the consumer where the record is; [`NO_CLAIM`] again once it
    /// gives up.
    pub inflight_pos: AtomicU64,
    /// Total record size of that claim (header span + padded payload).
    pub inflight_size: AtomicU64,
    /// Position of the claim this producer won and has not published yet
    /// (stored right after its CAS), [`NO_CLAIM`] otherwise: tells the
    /// winner from a producer that announced the same position and lost.
    pub claimed_pos: AtomicU64,
    pub frames: AtomicU64,
    pub bytes: AtomicU64,
    /// Frames dropped because the ring was full (drop policy or timeout).
    pub drops: AtomicU64,
    /// Sends refused because the ring was full (fail policy).
    pub rejected: AtomicU64,
    /// Times this producer woke the sleeping consumer.
    pub data_posts: AtomicU64,
    /// Times this producer slept waiting for space.
    pub waits: AtomicU64,
    /// The owner's pid namespace (0: unknown, e.g. a sandbox without
    /// `/proc`). A pid from another namespace cannot be checked by the
    /// consumer: see `liveness`.
    pub pid_namespace: AtomicU64,
    /// Names the liveness descriptor the owner's launcher handed the
    /// consumer (0: none): its hang-up confirms the owner's death.
    pub liveness_token: AtomicU64,
}

/// Packs a slot's state, generation (24 bits) and owner pid.
#[inline]
pub const fn slot_owner(state: u32, generation: u32, pid: u32) -> u64 {
    (pid as u64) << 32 | ((generation & 0xff_ffff) as u64) << 8 | (state & 0xff) as u64
}

/// The state part of a slot's `owner` word.
#[inline]
pub const fn owner_state(owner: u64) -> u32 {
    (owner & 0xff) as u32
}

/// The generation part of a slot's `owner` word.
#[inline]
pub const fn owner_generation(owner: u64) -> u32 {
    ((owner >> 8) & 0xff_ffff) as u32
}

/// The pid half of a slot's `owner` word.
#[inline]
pub const fn owner_pid(owner: u64) -> u32 {
    (owner >> 32) as u32
}

/// The whole header. Its size is rounded up to the page (or huge page)
/// size to give `header_size`.
#[repr(C, align(128))]
pub struct Header {
    pub identity: Identity,
    pub consumer: ConsumerLine,
    /// Next free position; producers claim with a CAS here.
    pub write: Cursor,
    /// Next record the consumer will hand out (published for `stat`).
    pub peek: Cursor,
    /// Everything before it is released and may be overwritten.
    pub read: Cursor,
    pub waiters: Waiters,
    pub consumed: ConsumerCounters,
    pub retired: RetiredCounters,
    pub slots: [ProducerSlot; MAX_PRODUCERS],
}

/// The fixed part of every record, at its (64-byte aligned) start.
#[repr(C)]
pub struct RecordHeader {
    /// Published last (Release): [`committed_stamp`] or [`skipped_stamp`]
    /// of this record's own position, or anything else while in flight.
    pub stamp: AtomicU64,
    /// Payload length in bytes.
    pub len: AtomicU32,
    /// Application record kind (media: video, audio, ...).
    pub kind: AtomicU32,
    /// Registry slot of the producer that wrote it.
    pub producer: AtomicU32,
    /// Application flags (media: keyframe, end of stream, ...).
    pub flags: AtomicU32,
    /// Per-producer sequence number, counting drops too, so gaps show.
    pub sequence: AtomicU64,
}

#[cfg(not(loom))]
mod checks {
    use super::*;
    use core::mem::{align_of, offset_of, size_of};

    const _: () = assert!(size_of::<Identity>() == LINE);
    const _: () = assert!(offset_of!(Identity, magic) == 0);
    const _: () = assert!(offset_of!(Identity, layout_version) == 8);
    const _: () = assert!(offset_of!(Identity, initialised) == 12);
    const _: () = assert!(offset_of!(Identity, header_size) == 16);
    const _: () = assert!(offset_of!(Identity, capacity) == 24);
    const _: () = assert!(offset_of!(Identity, salt) == 40);
    const _: () = assert!(offset_of!(Identity, name) == 64);
    const _: () = assert!(size_of::<ConsumerLine>() == LINE);
    const _: () = assert!(size_of::<Cursor>() == LINE);
    const _: () = assert!(size_of::<Waiters>() == LINE);
    const _: () = assert!(size_of::<ConsumerCounters>() == LINE);
    const _: () = assert!(size_of::<RetiredCounters>() == LINE);
    const _: () = assert!(size_of::<ProducerSlot>() == LINE);
    const _: () = assert!(offset_of!(ProducerSlot, inflight_pos) == 16);
    const _: () = assert!(offset_of!(ProducerSlot, pid_namespace) == 88);
    const _: () = assert!(offset_of!(ProducerSlot, claimed_pos) == 32);
    const _: () = assert!(offset_of!(ProducerSlot, liveness_token) == 96);
    const _: () = assert!(offset_of!(ConsumerLine, pid_namespace) == 24);
    const _: () = assert!(offset_of!(Waiters, data_seq) == 8);
    const _: () = assert!(offset_of!(Header, consumer) == LINE);
    const _: () = assert!(offset_of!(Header, write) == 2 * LINE);
    const _: () = assert!(offset_of!(Header, peek) == 3 * LINE);
    const _: () = assert!(offset_of!(Header, read) == 4 * LINE);
    const _: () = assert!(offset_of!(Header, waiters) == 5 * LINE);
    const _: () = assert!(offset_of!(Header, consumed) == 6 * LINE);
    const _: () = assert!(offset_of!(Header, retired) == 7 * LINE);
    const _: () = assert!(offset_of!(Header, slots) == 8 * LINE);
    const _: () = assert!(size_of::<Header>() == (8 + MAX_PRODUCERS) * LINE);
    const _: () = assert!(align_of::<Header>() == LINE);
    const _: () = assert!(size_of::<RecordHeader>() == 32);
    const _: () = assert!(size_of::<RecordHeader>() as u64 <= RECORD_HEADER_SPAN);
    const _: () = assert!(offset_of!(RecordHeader, stamp) == 0);
    const _: () = assert!(offset_of!(RecordHeader, len) == 8);
    const _: () = assert!(offset_of!(RecordHeader, sequence) == 24);
    // Zeroed memory must be a valid (empty) header: every field is an
    // atomic integer, for which all-zero bytes are a valid value.
}

/// Bytes a record of `payload_len` occupies in the ring.
#[inline]
pub const fn record_size(payload_len: u64) -> u64 {
    RECORD_HEADER_SPAN + round_up(payload_len, RECORD_ALIGN)
}

/// Largest payload that fits a ring of `capacity` bytes in one record.
#[inline]
pub const fn max_payload_for(capacity: u64) -> u64 {
    let limit = capacity - RECORD_HEADER_SPAN;
    if limit > u32::MAX as u64 {
        (u32::MAX as u64) & !(RECORD_ALIGN - 1)
    } else {
        limit
    }
}

#[inline]
pub const fn round_up(value: u64, align: u64) -> u64 {
    (value + align - 1) & !(align - 1)
}

/// The stamp that publishes a committed record at `position`. It encodes
/// the absolute position, so a stamp left from an earlier lap (position
/// minus a multiple of the capacity) never matches: memory is never zeroed.
#[inline]
pub const fn committed_stamp(position: u64, salt: u64) -> u64 {
    (position ^ (salt & !STAMP_TAG_MASK)) | STAMP_COMMITTED
}

/// The stamp of a reservation dropped without commit: the consumer steps
/// over it.
#[inline]
pub const fn skipped_stamp(position: u64, salt: u64) -> u64 {
    (position ^ (salt & !STAMP_TAG_MASK)) | STAMP_SKIPPED
}

/// What a stamp read at `position` says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StampState {
    Committed,
    Skipped,
    /// Anything else: in flight, or bytes from an earlier lap.
    Unpublished,
}

#[inline]
pub fn classify_stamp(stamp: u64, position: u64, salt: u64) -> StampState {
    if stamp == committed_stamp(position, salt) {
        StampState::Committed
    } else if stamp == skipped_stamp(position, salt) {
        StampState::Skipped
    } else {
        StampState::Unpublished
    }
}

impl Header {
    /// A zeroed header as the creator starts from (heap-backed rings and
    /// loom models build it here; a fresh memfd is zero already).
    #[cfg(any(test, loom, feature = "heap"))]
    pub(crate) fn new_zeroed() -> Self {
        fn line<const N: usize>() -> [AtomicU64; N] {
            core::array::from_fn(|_| atomic_u64(0))
        }
        Header {
            identity: Identity {
                magic: atomic_u64(0),
                layout_version: atomic_u32(0),
                initialised: atomic_u32(0),
                header_size: atomic_u32(0),
                max_producers: atomic_u32(0),
                capacity: atomic_u64(0),
                max_payload: atomic_u64(0),
                salt: atomic_u64(0),
                flags: atomic_u32(0),
                _reserved: atomic_u32(0),
                stall_timeout_us: atomic_u64(0),
                name: line::<8>(),
            },
            consumer: ConsumerLine {
                owner: atomic_u64(0),
                pid: atomic_u32(0),
                _reserved: atomic_u32(0),
                start_time: atomic_u64(0),
                pid_namespace: atomic_u64(0),
            },
            write: Cursor { position: atomic_u64(0) },
            peek: Cursor { position: atomic_u64(0) },
            read: Cursor { position: atomic_u64(0) },
            waiters: Waiters {
                consumer_waiting: atomic_u32(0),
                producers_waiting: atomic_u32(0),
                data_seq: atomic_u32(0),
                space_seq: atomic_u32(0),
                slots_wanted: atomic_u32(0),
            },
            consumed: ConsumerCounters {
                frames: atomic_u64(0),
                bytes: atomic_u64(0),
                skipped: atomic_u64(0),
                recovered: atomic_u64(0),
                corrupt: atomic_u64(0),
                sleeps: atomic_u64(0),
                space_posts: atomic_u64(0),
                stalls: atomic_u64(0),
                late: atomic_u64(0),
                stuck: atomic_u64(0),
                killed: atomic_u64(0),
            },
            retired: RetiredCounters {
                frames: atomic_u64(0),
                bytes: atomic_u64(0),
                drops: atomic_u64(0),
                rejected: atomic_u64(0),
                data_posts: atomic_u64(0),
                waits: atomic_u64(0),
            },
            slots: core::array::from_fn(|_| ProducerSlot {
                owner: atomic_u64(0),
                start_time: atomic_u64(0),
                inflight_pos: atomic_u64(0),
                inflight_size: atomic_u64(0),
                claimed_pos: atomic_u64(0),
                frames: atomic_u64(0),
                bytes: atomic_u64(0),
                drops: atomic_u64(0),
                rejected: atomic_u64(0),
                data_posts: atomic_u64(0),
                waits: atomic_u64(0),
                pid_namespace: atomic_u64(0),
                liveness_token: atomic_u64(0),
            }),
        }
    }

    /// Fills in a zeroed header and publishes it. Everything is stored
    /// Relaxed, then `initialised` with Release.
    pub(crate) fn initialise(&self, params: &HeaderParams) {
        let id = &self.identity;
        id.magic.store(MAGIC, Ordering::Relaxed);
        id.layout_version.store(LAYOUT_VERSION, Ordering::Relaxed);
        id.header_size.store(params.header_size, Ordering::Relaxed);
        id.max_producers.store(MAX_PRODUCERS as u32, Ordering::Relaxed);
        id.capacity.store(params.capacity, Ordering::Relaxed);
        id.max_payload.store(max_payload_for(params.capacity), Ordering::Relaxed);
        id.salt.store(params.salt, Ordering::Relaxed);
        id.flags.store(params.flags, Ordering::Relaxed);
        id.stall_timeout_us.store(params.stall_timeout_us, Ordering::Relaxed);
        let mut name = [0u8; 64];
        name[..params.name.len()].copy_from_slice(params.name.as_bytes());
        for (word, chunk) in id.name.iter().zip(name.chunks_exact(8)) {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(chunk);
            word.store(u64::from_le_bytes(bytes), Ordering::Relaxed);
        }
        for slot in &self.slots {
            slot.inflight_pos.store(NO_CLAIM, Ordering::Relaxed);
            slot.claimed_pos.store(NO_CLAIM, Ordering::Relaxed);
        }
        // Release: publishes every store above. SYNC POINT: pairs with the
        // Acquire load of `initialised` in `Layout::validate`.
        id.initialised.store(INITIALISED, Ordering::Release);
    }

    /// The ring name stored by the creator (lossy for non-ASCII bytes a
    /// hostile peer may have written).
    pub fn name(&self) -> String {
        let mut bytes = Vec::with_capacity(64);
        for word in &self.identity.name {
            bytes.extend_from_slice(&word.load(Ordering::Relaxed).to_le_bytes());
        }
        let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
        bytes.truncate(end.min(MAX_NAME_LEN));
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

/// What the creator writes into a fresh header.
pub(crate) struct HeaderParams<'a> {
    pub name: &'a str,
    pub header_size: u32,
    pub capacity: u64,
    pub salt: u64,
    pub flags: u32,
    pub stall_timeout_us: u64,
}

/// The geometry of a segment as read and checked at attach. Both sides use
/// these private copies afterwards, never the shared words, so a peer that
/// scribbles on the header cannot change them under us.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    pub header_size: u64,
    pub capacity: u64,
    pub max_payload: u64,
    pub salt: u64,
    pub flags: u32,
    pub stall_timeout_us: u64,
}

impl Geometry {
    /// Checks the header of a segment of `segment_len` bytes (`None` on the
    /// heap, where there is no file) and returns its geometry.
    pub(crate) fn validate(header: &Header, segment_len: Option<u64>) -> Result<Self, crate::Error> {
        use crate::Error;
        let id = &header.identity;
        // Acquire: SYNC POINT: pairs with the Release store in
        // `Header::initialise`; everything the creator wrote is visible.
        let initialised = id.initialised.load(Ordering::Acquire);
        let magic = id.magic.load(Ordering::Relaxed);
        if magic != MAGIC {
            return Err(Error::NotARing { found: magic });
        }
        if initialised != INITIALISED {
            return Err(Error::NotInitialised);
        }
        let version = id.layout_version.load(Ordering::Relaxed);
        if version != LAYOUT_VERSION {
            return Err(Error::VersionMismatch { found: version, expected: LAYOUT_VERSION });
        }
        let header_size = u64::from(id.header_size.load(Ordering::Relaxed));
        let capacity = id.capacity.load(Ordering::Relaxed);
        let max_payload = id.max_payload.load(Ordering::Relaxed);
        let bad = |reason: &'static str| Error::BadGeometry { reason };
        if !capacity.is_power_of_two() || !(MIN_CAPACITY..=MAX_CAPACITY).contains(&capacity) {
            return Err(bad("capacity is not a power of two between 4 KiB and 1 TiB"));
        }
        if header_size < core::mem::size_of::<Header>() as u64 || header_size % 4096 != 0 || header_size > (64 << 20) {
            return Err(bad("header size is not a page multiple that holds the header"));
        }
        if max_payload != max_payload_for(capacity) {
            return Err(bad("largest payload does not match the capacity"));
        }
        if id.max_producers.load(Ordering::Relaxed) != MAX_PRODUCERS as u32 {
            return Err(bad("producer table size differs from this build's"));
        }
        if let Some(len) = segment_len {
            if len != header_size + capacity {
                return Err(Error::BadSegment {
                    reason: format!("segment is {len} bytes; its header says {}", header_size + capacity),
                });
            }
        }
        Ok(Geometry {
            header_size,
            capacity,
            max_payload,
            salt: id.salt.load(Ordering::Relaxed),
            flags: id.flags.load(Ordering::Relaxed),
            stall_timeout_us: id.stall_timeout_us.load(Ordering::Relaxed),
        })
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn record_sizes_are_aligned_and_hold_the_payload() {
        assert_eq!(record_size(0), 64);
        assert_eq!(record_size(1), 128);
        assert_eq!(record_size(64), 128);
        assert_eq!(record_size(65), 192);
        assert_eq!(record_size(3_110_400), 64 + 3_110_400);
        for len in [0u64, 1, 63, 64, 4095, 3_110_400] {
            assert_eq!(record_size(len) % RECORD_ALIGN, 0);
            assert!(record_size(len) >= len + RECORD_HEADER_SPAN);
        }
    }

    #[test]
    fn stamps_differ_by_lap_and_by_kind() {
        let salt = 0x1234_5678_9abc_def0;
        let cap = 1 << 20;
        let pos = 5 * cap + 640;
        assert_eq!(classify_stamp(committed_stamp(pos, salt), pos, salt), StampState::Committed);
        assert_eq!(classify_stamp(skipped_stamp(pos, salt), pos, salt), StampState::Skipped);
        assert_eq!(classify_stamp(committed_stamp(pos - cap, salt), pos, salt), StampState::Unpublished);
        assert_eq!(classify_stamp(0, pos, salt), StampState::Unpublished);
        assert_ne!(committed_stamp(0, 0), 0, "zeroed memory must never look committed");
    }

    #[test]
    fn zeroed_header_is_refused_and_initialised_header_accepted() {
        let header = Header::new_zeroed();
        assert!(matches!(Geometry::validate(&header, None), Err(crate::Error::NotARing { .. })));
        header.initialise(&HeaderParams {
            name: "cam",
            header_size: 12288,
            capacity: 1 << 16,
            salt: 7,
            flags: 0,
            stall_timeout_us: 250_000,
        });
        let geometry = Geometry::validate(&header, Some(12288 + (1 << 16))).unwrap();
        assert_eq!(geometry.capacity, 1 << 16);
        assert_eq!(geometry.max_payload, (1 << 16) - 64);
        assert_eq!(header.name(), "cam");
        assert!(matches!(Geometry::validate(&header, Some(4096)), Err(crate::Error::BadSegment { .. })));
        header.identity.layout_version.store(99, Ordering::Relaxed);
        assert!(matches!(
            Geometry::validate(&header, None),
            Err(crate::Error::VersionMismatch { found: 99, expected: LAYOUT_VERSION })
        ));
    }
}
