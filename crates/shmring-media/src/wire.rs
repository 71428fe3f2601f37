//! Copying the wire headers out of and into payload bytes.
//!
//! Readers copy the header out once and validate the copy, so a producer
//! that rewrites the header while the consumer looks at it can change what
//! the bytes mean, but never make a checked length or offset stale.

use shmring::SharedBytes;

use crate::sys::{shmring_announce_header, shmring_audio_header, shmring_video_header};

/// A header struct of integers only: every bit pattern is a valid value.
///
/// # Safety
///
/// Implementors must be `#[repr(C)]` structs made only of integers and
/// arrays of integers (no padding bytes the compiler may assume anything
/// about, no pointers, no enums, no bools).
pub(crate) unsafe trait Plain: Copy {}

// SAFETY: bindgen structs of `u8`/`u16`/`u32`/`i64`/`u64` fields and arrays,
// with the padding spelled out as fields (the C header's rule).
unsafe impl Plain for shmring_video_header {}
// SAFETY: as above.
unsafe impl Plain for shmring_audio_header {}
// SAFETY: as above.
unsafe impl Plain for shmring_announce_header {}

/// Copies a `T` of `N` bytes from the start of `bytes` into private
/// memory, or `None` if it is too short.
#[inline]
pub(crate) fn read<T: Plain, const N: usize>(bytes: SharedBytes<'_>) -> Option<T> {
    const { assert!(N == size_of::<T>()) };
    let raw: [u8; N] = bytes.load_array(0)?;
    // SAFETY: `raw` holds `size_of::<T>()` bytes, the read is unaligned,
    // and `T: Plain` is valid for any bit pattern.
    Some(unsafe { raw.as_ptr().cast::<T>().read_unaligned() })
}

/// Copies `value` to the start of `bytes`.
///
/// # Panics
///
/// If `bytes` is shorter than `T` (callers size the payload first).
pub(crate) fn write<T: Plain>(bytes: &mut [u8], value: &T) {
    assert!(bytes.len() >= size_of::<T>(), "payload too short for its header");
    // SAFETY: `bytes` holds at least `size_of::<T>()` writable bytes that
    // nothing else borrows (`&mut`), and the write is unaligned.
    unsafe { bytes.as_mut_ptr().cast::<T>().write_unaligned(*value) }
}
