//! What the consumer hands out: a received record ([`Frame`]) and the bytes
//! it covers ([`SharedBytes`]).
//!
//! A record's payload lies in memory that every producer maps read-write.
//! An honest producer never touches a record after publishing it, but the
//! consumer cannot tell an honest producer from a hostile or broken one, so
//! the payload is memory that another process may write while the consumer
//! reads it. Rust forbids a shared reference (`&[u8]`) to memory that
//! changes while the reference lives: the compiler may read such bytes once
//! and reuse the value, or read them twice and see two values where the
//! code checked one. So safe code never gets one:
//!
//! - [`SharedBytes::copy_to_slice`], [`to_vec`](SharedBytes::to_vec) and
//!   [`append_to`](SharedBytes::append_to) copy into private memory with
//!   relaxed atomic loads (8 bytes at a time), the only reads defined while
//!   someone may write. Validate the copy, not the ring.
//! - [`SharedBytes::load_u32`] and its siblings read one small field.
//! - [`SharedBytes::as_slice`] is `unsafe`: for callers whose producers
//!   are trusted not to write published records.
//! - [`SharedBytes::as_ptr`] and [`len`](SharedBytes::len) hand the
//!   region on without a copy and without a Rust reference (`vmsplice`,
//!   buffer protocols, foreign memory wrappers): the receiver reads it as
//!   memory that may change.

use std::marker::PhantomData;
use std::ops::{Bound, RangeBounds};
use std::sync::atomic::{AtomicU16, AtomicU32, AtomicU64, AtomicU8, Ordering};

use crate::backing::Backing;
use crate::consumer::Consumer;
use crate::lease::Lease;

/// One record, received in place from the ring. Its space is freed when
/// the frame is dropped (and every older frame too: space is reused in
/// order).
///
/// A frame is not a `&[u8]`: its bytes may still be written by a producer
/// (see [`SharedBytes`]). Copy them out, or hand the region on:
///
/// ```
/// # use shmring::{Consumer, RingOptions};
/// # let consumer = Consumer::create_anonymous(&RingOptions::with_capacity(1 << 16))?;
/// # let mut producer = consumer.producer()?;
/// producer.send(1, b"hello")?;
/// let frame = consumer.recv()?;
/// let mut copy = [0u8; 5];
/// frame.bytes().copy_to_slice(&mut copy); // private now: check it at leisure
/// assert_eq!(std::str::from_utf8(&copy), Ok("hello"));
/// # Ok::<(), shmring::Error>(())
/// ```
///
/// Borrowing the payload as a slice does not compile:
///
/// ```compile_fail,E0608
/// # use shmring::{Consumer, RingOptions};
/// # let consumer = Consumer::create_anonymous(&RingOptions::with_capacity(1 << 16))?;
/// # let mut producer = consumer.producer()?;
/// # producer.send(1, b"hello")?;
/// let frame = consumer.recv()?;
/// let text: &[u8] = &frame[..];
/// # Ok::<(), shmring::Error>(())
/// ```
pub struct Frame<'a, B: Backing> {
    consumer: &'a Consumer<B>,
    position: u64,
    data: *const u8,
    len: usize,
    kind: u32,
    flags: u32,
    producer: u32,
    sequence: u64,
    late: bool,
}

/// The header fields of a received record, as the consumer checked them.
pub(crate) struct Received {
    pub position: u64,
    pub len: usize,
    pub kind: u32,
    pub flags: u32,
    pub producer: u32,
    pub sequence: u64,
    /// Committed after the consumer stepped around it.
    pub late: bool,
}

impl<'a, B: Backing> Frame<'a, B> {
    /// A frame for a record `consumer` has handed out (and will release
    /// when the frame drops).
    pub(crate) fn new(consumer: &'a Consumer<B>, data: *const u8, record: Received) -> Self {
        let Received { position, len, kind, flags, producer, sequence, late } = record;
        Frame { consumer, position, data, len, kind, flags, producer, sequence, late }
    }

    /// Whether its producer committed it late: it held the record past
    /// the stall timeout, alive, so the consumer stepped around it and may
    /// have delivered records after it first.
    pub fn is_late(&self) -> bool {
        self.late
    }

    /// The record kind the producer set.
    pub fn kind(&self) -> u32 {
        self.kind
    }
    /// The application flags the producer set.
    pub fn flags(&self) -> u32 {
        self.flags
    }
    /// Absolute ring position of the record (unique over the ring's life).
    pub fn position(&self) -> u64 {
        self.position
    }
    /// Producer-table slot of the producer that wrote it.
    pub fn producer(&self) -> u32 {
        self.producer
    }
    /// That producer's sequence number for this record (drops leave gaps).
    pub fn sequence(&self) -> u64 {
        self.sequence
    }
    /// Payload bytes (checked against the ring's largest payload).
    pub fn len(&self) -> usize {
        self.len
    }
    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// The payload, where it lies in the ring.
    pub fn bytes(&self) -> SharedBytes<'_> {
        // SAFETY: the record was published (its stamp matched) and checked
        // to lie within the claimed region: its `len <= max_payload` bytes
        // are in the mapping, readable and writable (the `Backing`
        // contract), and stay mapped and unreused while this frame lives
        // (`read` stays behind it until `Drop`). Other processes may write
        // them, which `SharedBytes` allows for.
        unsafe { SharedBytes::from_raw_parts(self.data, self.len) }
    }
    /// A private copy of the payload.
    pub fn to_vec(&self) -> Vec<u8> {
        self.bytes().to_vec()
    }

    /// This frame as a [`Lease`]: `Send + 'static`, released wherever and
    /// whenever it is dropped. `Err` hands the frame back when the
    /// consumer's lease limit is reached (copy it out, or drop it);
    /// [`Consumer::recv_lease_timeout`] says so before receiving instead.
    pub fn into_lease(self) -> Result<Lease<B>, Frame<'a, B>> {
        match self.consumer.lease_table().admit() {
            Ok(()) => Ok(self.into_admitted_lease()),
            Err(_) => Err(self),
        }
    }

    /// As `into_lease`, the lease already counted.
    pub(crate) fn into_admitted_lease(self) -> Lease<B> {
        let frame = std::mem::ManuallyDrop::new(self);
        let record = Received {
            position: frame.position,
            len: frame.len,
            kind: frame.kind,
            flags: frame.flags,
            producer: frame.producer,
            sequence: frame.sequence,
            late: frame.late,
        };
        // The frame's release (its `Drop`, skipped here) becomes the lease's.
        Lease::new(frame.consumer.lease_table().clone(), frame.consumer.backing().clone(), frame.data, record)
    }
}

impl<B: Backing> Drop for Frame<'_, B> {
    fn drop(&mut self) {
        self.consumer.release(self.position);
    }
}

impl<B: Backing> std::fmt::Debug for Frame<'_, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Frame")
            .field("position", &self.position)
            .field("len", &self.len)
            .field("kind", &self.kind)
            .field("producer", &self.producer)
            .field("sequence", &self.sequence)
            .finish()
    }
}

/// Bytes that another process may write while they are read: a payload in
/// the ring, or a part of one. Reading them never creates a Rust reference
/// to them; see the [module docs](self) of `frame` (or the crate docs) for
/// why.
///
/// A view of private memory (`SharedBytes::from(&[u8])`) works the same
/// way, so code that checks payloads takes one type for both.
///
/// ```
/// use shmring::SharedBytes;
///
/// let private = [1u8, 0, 0, 0, 7, 7];
/// let view = SharedBytes::from(&private[..]);
/// assert_eq!(view.load_u32(0), Some(u32::from_ne_bytes([1, 0, 0, 0])));
/// assert_eq!(view.get(4..).map(|tail| tail.to_vec()), Some(vec![7, 7]));
/// assert!(view.get(5..9).is_none());
/// ```
#[derive(Clone, Copy)]
pub struct SharedBytes<'a> {
    ptr: *const u8,
    len: usize,
    /// The bytes are in a shared mapping (read with atomics), not in
    /// private memory behind a `&[u8]` (read as a slice).
    shared: bool,
    _borrow: PhantomData<&'a [u8]>,
}

// SAFETY: a view only reads, with atomics where others may write; the
// memory it names outlives `'a` whichever thread holds it.
unsafe impl Send for SharedBytes<'_> {}
// SAFETY: as above; `&SharedBytes` offers nothing more than a copy does.
unsafe impl Sync for SharedBytes<'_> {}

impl<'a> SharedBytes<'a> {
    /// A view of `len` bytes at `ptr` in a shared mapping.
    ///
    /// # Safety
    ///
    /// For all of `'a`, `ptr..ptr + len` must be mapped, readable and
    /// writable (atomic loads require memory valid for writes), and must
    /// not be accessed by this process other than atomically or through
    /// another `SharedBytes` (other processes may write it as they like).
    #[inline]
    pub(crate) unsafe fn from_raw_parts(ptr: *const u8, len: usize) -> Self {
        SharedBytes { ptr, len, shared: true, _borrow: PhantomData }
    }

    /// Bytes in view.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the view is empty.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Where the bytes start, to hand the region on without a copy (an
    /// `iovec` for `vmsplice`, a buffer protocol, a foreign memory
    /// wrapper). Whoever reads through it must treat the bytes as memory
    /// that may change under them, and stop before the frame is dropped.
    #[inline]
    pub fn as_ptr(&self) -> *const u8 {
        self.ptr
    }

    /// The bytes in `range`, or `None` if it does not lie in the view.
    #[inline]
    pub fn get(&self, range: impl RangeBounds<usize>) -> Option<SharedBytes<'a>> {
        let start = match range.start_bound() {
            Bound::Included(&s) => s,
            Bound::Excluded(&s) => s.checked_add(1)?,
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(&e) => e.checked_add(1)?,
            Bound::Excluded(&e) => e,
            Bound::Unbounded => self.len,
        };
        if start > end || end > self.len {
            return None;
        }
        // `start <= len`: the offset stays within (or one past) the view.
        Some(SharedBytes { ptr: self.ptr.wrapping_add(start), len: end - start, ..*self })
    }

    /// Copies the bytes into `dst`.
    ///
    /// If a producer writes the bytes meanwhile, the copy may mix old and
    /// new contents (each aligned 8-byte word is read in one load); it is
    /// private memory all the same, so what is checked in it stays true.
    ///
    /// # Panics
    ///
    /// If `dst.len() != self.len()`, as [`slice::copy_from_slice`].
    #[inline]
    pub fn copy_to_slice(&self, dst: &mut [u8]) {
        assert_eq!(dst.len(), self.len, "destination and source lengths differ");
        if !self.shared {
            // SAFETY: a private view was made from a `&'a [u8]` of `len`
            // bytes (`From<&[u8]>`), alive for `'a`.
            dst.copy_from_slice(unsafe { std::slice::from_raw_parts(self.ptr, self.len) });
            return;
        }
        let head = self.ptr.align_offset(8).min(self.len);
        let words = (self.len - head) / 8;
        let tail = head + words * 8;
        for (i, out) in dst[..head].iter_mut().enumerate() {
            // SAFETY: `i < len`, in the view (`from_raw_parts`' contract).
            *out = unsafe { read_byte(self.ptr.add(i)) };
        }
        // Two words per 16-byte store: a header copied out and then moved
        // as a whole (16-byte loads) is forwarded from the store buffer,
        // where 8-byte stores would stall each such load.
        let mut pairs = dst[head..tail].chunks_exact_mut(16);
        for (p, out) in pairs.by_ref().enumerate() {
            let at = head + 16 * p;
            // SAFETY: `at + 16 <= tail <= len`, in the view, and 8-aligned
            // (`head` aligns the first word).
            let (first, second) = unsafe { (read_word(self.ptr.add(at)), read_word(self.ptr.add(at + 8))) };
            out.copy_from_slice(&in_memory_order(first, second).to_ne_bytes());
        }
        let last = pairs.into_remainder();
        if !last.is_empty() {
            // SAFETY: the one word left, `tail - 8..tail`, in the view and
            // 8-aligned.
            last.copy_from_slice(&unsafe { read_word(self.ptr.add(tail - 8)) }.to_ne_bytes());
        }
        for (i, out) in dst[tail..].iter_mut().enumerate() {
            // SAFETY: `tail + i < len`, in the view.
            *out = unsafe { read_byte(self.ptr.add(tail + i)) };
        }
    }

    /// Appends a copy of the bytes to `out` (see
    /// [`copy_to_slice`](Self::copy_to_slice)).
    #[inline]
    pub fn append_to(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.resize(start + self.len, 0);
        self.copy_to_slice(&mut out[start..]);
    }

    /// A private copy of the bytes (see [`copy_to_slice`](Self::copy_to_slice)).
    #[inline]
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len);
        self.append_to(&mut out);
        out
    }

    /// A private copy of the `N` bytes at `offset` (a header, say), or
    /// `None` if they do not lie in the view. The same loads as
    /// [`copy_to_slice`](Self::copy_to_slice), unrolled for a small `N`.
    #[inline]
    pub fn load_array<const N: usize>(&self, offset: usize) -> Option<[u8; N]> {
        let field = self.get(offset..offset.checked_add(N)?)?;
        let mut out = [0u8; N];
        field.copy_to_slice(&mut out);
        Some(out)
    }

    /// The bytes as a slice, for callers that trust every producer of the
    /// ring.
    ///
    /// # Safety
    ///
    /// Nothing may write these bytes while the slice lives: no producer of
    /// the ring may touch a record after publishing it (true of this
    /// crate's `Producer` and the C++ shim; it is the producers'
    /// processes that must be trusted).
    #[inline]
    pub unsafe fn as_slice(&self) -> &'a [u8] {
        // SAFETY: the bytes are readable for `'a` (both constructors), and
        // the caller promises that nothing writes them meanwhile.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

macro_rules! loads {
    ($($(#[$doc:meta])* $name:ident: $int:ty = $atomic:ty;)*) => {$(
        impl SharedBytes<'_> {
            $(#[$doc])*
            ///
            /// Native byte order; `None` if the field does not lie in the
            /// view. An aligned field is read in one atomic load, an
            /// unaligned one byte by byte.
            #[inline]
            pub fn $name(&self, offset: usize) -> Option<$int> {
                const SIZE: usize = size_of::<$int>();
                let field = self.get(offset..offset.checked_add(SIZE)?)?;
                if field.shared && field.ptr.align_offset(SIZE) == 0 {
                    // SAFETY: the field is in the view (checked by `get`),
                    // aligned for the atomic, readable and writable, and
                    // only ever accessed atomically in this process
                    // (`from_raw_parts`' contract).
                    return Some(unsafe { <$atomic>::from_ptr(field.ptr.cast_mut().cast()) }.load(Ordering::Relaxed));
                }
                let mut bytes = [0u8; SIZE];
                field.copy_to_slice(&mut bytes);
                Some(<$int>::from_ne_bytes(bytes))
            }
        }
    )*};
}

loads! {
    /// The byte at `offset`.
    load_u8: u8 = AtomicU8;
    /// The `u16` at `offset`.
    load_u16: u16 = AtomicU16;
    /// The `u32` at `offset`.
    load_u32: u32 = AtomicU32;
    /// The `u64` at `offset`.
    load_u64: u64 = AtomicU64;
}

/// Relaxed: a plain read of bytes the consumer synchronised with already
/// (the Acquire load of the record's stamp); atomic only so that a write
/// by a misbehaving producer is not a data race.
///
/// # Safety
///
/// `ptr` must lie in a view made by [`SharedBytes::from_raw_parts`].
#[inline]
unsafe fn read_byte(ptr: *const u8) -> u8 {
    // SAFETY: readable, writable and only accessed atomically here (the
    // caller's view); any alignment suits a byte.
    unsafe { AtomicU8::from_ptr(ptr.cast_mut()) }.load(Ordering::Relaxed)
}

/// As [`read_byte`], for an 8-aligned word.
///
/// # Safety
///
/// `ptr..ptr + 8` must lie in a view made by
/// [`SharedBytes::from_raw_parts`], and `ptr` be 8-aligned.
#[inline]
unsafe fn read_word(ptr: *const u8) -> u64 {
    // SAFETY: as in `read_byte`, and aligned as the caller promises.
    unsafe { AtomicU64::from_ptr(ptr.cast_mut().cast()) }.load(Ordering::Relaxed)
}

/// The `u128` whose native bytes are `first`'s then `second`'s.
#[inline]
fn in_memory_order(first: u64, second: u64) -> u128 {
    if cfg!(target_endian = "little") {
        u128::from(first) | u128::from(second) << 64
    } else {
        u128::from(first) << 64 | u128::from(second)
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> From<&'a T> for SharedBytes<'a> {
    /// A view of private bytes (`&[u8]`, `&Vec<u8>`, ...), read as the
    /// slice they are.
    #[inline]
    fn from(bytes: &'a T) -> Self {
        let bytes = bytes.as_ref();
        SharedBytes { ptr: bytes.as_ptr(), len: bytes.len(), shared: false, _borrow: PhantomData }
    }
}

impl std::fmt::Debug for SharedBytes<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedBytes").field("ptr", &self.ptr).field("len", &self.len).finish()
    }
}
