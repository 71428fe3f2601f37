//! Where a ring's memory lives. The protocol (`producer`, `consumer`) is
//! generic over [`Backing`], so the same code runs on a memfd segment in
//! production and on the heap under loom and miri.

use crate::claims::LocalClaims;
use crate::layout::{Geometry, Header, RecordHeader};
use crate::signal::Signal;

mod sealed {
    pub trait Sealed {}
}

/// Memory and signals of one ring.
///
/// # Safety
///
/// Implementors promise that for the whole life of the value:
/// - `header()` is a valid, initialised header whose geometry is
///   `geometry()`;
/// - for every `position` (any `u64`), `record(position)` is a valid
///   `RecordHeader` at offset `position % capacity` of the data region, and
///   `payload(position)` points to at least `geometry().max_payload` bytes
///   that may be read and written (possibly concurrently by other
///   processes) and start right after that record's 64-byte header span.
pub unsafe trait Backing: sealed::Sealed + Send + Sync + 'static {
    type Signal: Signal;
    fn header(&self) -> &Header;
    fn geometry(&self) -> &Geometry;
    fn record(&self, position: u64) -> &RecordHeader;
    fn payload(&self, position: u64) -> *mut u8;
    /// How sides sleep on the header's sequence words and wake each other.
    fn signal(&self) -> &Self::Signal;
    /// The claims this process's producers of this ring hold right now.
    fn local_claims(&self) -> &LocalClaims;
}

pub(crate) use sealed::Sealed;

/// A ring on the heap: the header in a `Box`, the data region in one
/// allocation twice the capacity long, so a record that runs past the end
/// is still contiguous (what the double mapping gives a memfd ring).
#[cfg(all(any(test, feature = "heap"), not(loom)))]
pub mod heap {
    use super::*;
    use crate::layout::{HeaderParams, RECORD_HEADER_SPAN};
    use crate::signal::heap::HeapSignal;
    use std::alloc::{alloc_zeroed, dealloc, Layout};

    /// Heap memory for a ring of `capacity` bytes.
    pub struct HeapBacking {
        header: Box<Header>,
        geometry: Geometry,
        data: *mut u8,
        data_layout: Layout,
        signal: HeapSignal,
        claims: LocalClaims,
    }

    // SAFETY: the raw data pointer is owned by the value and only accessed
    // through the ring protocol, which synchronises with atomics.
    unsafe impl Send for HeapBacking {}
    // SAFETY: as above.
    unsafe impl Sync for HeapBacking {}
    impl Sealed for HeapBacking {}

    impl HeapBacking {
        /// A fresh ring; `capacity` must be a power of two >= 4096.
        pub fn new(capacity: u64, stall_timeout_us: u64) -> Self {
            assert!(capacity.is_power_of_two() && capacity >= 4096);
            let header = Box::new(Header::new_zeroed());
            header.initialise(&HeaderParams {
                name: "heap",
                header_size: crate::layout::round_up(std::mem::size_of::<Header>() as u64, 4096) as u32,
                capacity,
                salt: 0x5eed_5eed_5eed_5eed,
                flags: 0,
                stall_timeout_us,
            });
            let geometry = Geometry::validate(&header, None).expect("a fresh header is valid");
            let data_layout = Layout::from_size_align((2 * capacity) as usize, 128).expect("capacity fits");
            // SAFETY: the layout has a non-zero size.
            let data = unsafe { alloc_zeroed(data_layout) };
            assert!(!data.is_null(), "out of memory");
            HeapBacking { header, geometry, data, data_layout, signal: HeapSignal::new(), claims: LocalClaims::new() }
        }
    }

    impl Drop for HeapBacking {
        fn drop(&mut self) {
            // SAFETY: `data` was allocated with `data_layout` in `new`.
            unsafe { dealloc(self.data, self.data_layout) };
        }
    }

    // SAFETY: the header is the boxed, initialised header; records lie at
    // `position % capacity` in a buffer of 2 x capacity bytes, so the header
    // and `max_payload` (= capacity - 64) payload bytes after it fit.
    unsafe impl Backing for HeapBacking {
        type Signal = HeapSignal;
        fn header(&self) -> &Header {
            &self.header
        }
        fn geometry(&self) -> &Geometry {
            &self.geometry
        }
        fn record(&self, position: u64) -> &RecordHeader {
            let offset = position & (self.geometry.capacity - 1) & !63;
            // SAFETY: offset < capacity and 64-aligned, the buffer is
            // 128-aligned, so a 32-byte RecordHeader of atomics (valid for
            // any bytes) fits in bounds and is aligned.
            unsafe { &*self.data.add(offset as usize).cast::<RecordHeader>() }
        }
        fn payload(&self, position: u64) -> *mut u8 {
            let offset = (position & (self.geometry.capacity - 1)) + RECORD_HEADER_SPAN;
            // SAFETY: offset + max_payload <= 2 x capacity, the buffer size.
            unsafe { self.data.add(offset as usize) }
        }
        fn signal(&self) -> &HeapSignal {
            &self.signal
        }
        fn local_claims(&self) -> &LocalClaims {
            &self.claims
        }
    }
}

/// A ring for loom: record headers are loom atomics kept in their own
/// array (loom cannot see atomics made from raw bytes), payloads in a
/// plain buffer.
#[cfg(loom)]
pub mod heap {
    use super::*;
    use crate::layout::{HeaderParams, RECORD_ALIGN, RECORD_HEADER_SPAN};
    use crate::signal::heap::HeapSignal;
    use crate::sync::{atomic_u32, atomic_u64};
    use std::cell::UnsafeCell;

    pub struct HeapBacking {
        header: Box<Header>,
        geometry: Geometry,
        records: Box<[RecordHeader]>,
        data: Box<[UnsafeCell<u8>]>,
        signal: HeapSignal,
        claims: LocalClaims,
    }

    // SAFETY: payload bytes are only touched under the ring protocol.
    unsafe impl Send for HeapBacking {}
    // SAFETY: as above.
    unsafe impl Sync for HeapBacking {}
    impl Sealed for HeapBacking {}

    impl HeapBacking {
        pub fn new(capacity: u64, stall_timeout_us: u64) -> Self {
            let header = Box::new(Header::new_zeroed());
            header.initialise(&HeaderParams {
                name: "loom",
                header_size: 16384,
                capacity,
                salt: 0,
                flags: 0,
                stall_timeout_us,
            });
            let geometry = Geometry::validate(&header, None).expect("a fresh header is valid");
            let lines = (capacity / RECORD_ALIGN) as usize;
            let records = (0..lines)
                .map(|_| RecordHeader {
                    stamp: atomic_u64(0),
                    len: atomic_u32(0),
                    kind: atomic_u32(0),
                    producer: atomic_u32(0),
                    flags: atomic_u32(0),
                    sequence: atomic_u64(0),
                })
                .collect();
            let data = (0..2 * capacity as usize).map(|_| UnsafeCell::new(0)).collect();
            HeapBacking { header, geometry, records, data, signal: HeapSignal::new(), claims: LocalClaims::new() }
        }
    }

    // SAFETY: records are indexed in bounds by construction; payloads point
    // into a 2 x capacity buffer at offset < capacity + 64.
    unsafe impl Backing for HeapBacking {
        type Signal = HeapSignal;
        fn header(&self) -> &Header {
            &self.header
        }
        fn geometry(&self) -> &Geometry {
            &self.geometry
        }
        fn record(&self, position: u64) -> &RecordHeader {
            let line = (position & (self.geometry.capacity - 1)) / RECORD_ALIGN;
            &self.records[line as usize]
        }
        fn payload(&self, position: u64) -> *mut u8 {
            let offset = (position & (self.geometry.capacity - 1)) + RECORD_HEADER_SPAN;
            self.data[offset as usize].get()
        }
        fn signal(&self) -> &HeapSignal {
            &self.signal
        }
        fn local_claims(&self) -> &LocalClaims {
            &self.claims
        }
    }
}
