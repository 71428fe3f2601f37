//! The one door to atomics: the real ones in production, loom's under
//! `cfg(loom)`, so the claim/commit/release protocol is model-checked with
//! the same code that runs on a memfd.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicU32, AtomicU64};

#[cfg(not(loom))]
pub(crate) use core::sync::atomic::{fence, AtomicU32, AtomicU64};

pub(crate) use core::sync::atomic::Ordering;

/// `AtomicU64::new` is `const` only outside loom; layouts that are built in
/// place use this to stay the same code in both worlds.
#[cfg(any(test, loom, feature = "heap"))]
#[inline]
pub(crate) fn atomic_u64(value: u64) -> AtomicU64 {
    AtomicU64::new(value)
}

#[cfg(any(test, loom, feature = "heap"))]
#[inline]
pub(crate) fn atomic_u32(value: u32) -> AtomicU32 {
    AtomicU32::new(value)
}

/// A spin-loop hint that loom understands as a yield point.
#[inline]
pub(crate) fn spin_hint() {
    #[cfg(loom)]
    loom::thread::yield_now();
    #[cfg(not(loom))]
    core::hint::spin_loop();
}
