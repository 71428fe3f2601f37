//! Copying the wire headers out of and into payload bytes.
//!
//! Readers copy the header out once and validate the copy, so a producer
//! that rewrites the header while the consumer looks at it can change what
//! the bytes mean, but never make a checked length or offset stale.

use shmring::SharedBytes;

use crate::sys::{shmring_audio_header, shmring_video_header};

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

/// Copies a `T` from the start of `bytes` into private memory, or `None` if
/// it is too short.
pub(crate) fn read<T: Plain + Default>(bytes: SharedBytes<'_>) -> Option<T> {
    let mut value = T::default();
    // SAFETY: `value` is `size_of::<T>()` bytes we own exclusively, with no
    // padding (`T: Plain`), so it may be viewed and written as bytes.
    let raw = unsafe { std::slice::from_raw_parts_mut((&mut value as *mut T).cast::<u8>(), size_of::<T>()) };
    bytes.get(..raw.len())?.copy_to_slice(raw);
    // Any bytes are a valid `T` (`T: Plain`).
    Some(value)
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
