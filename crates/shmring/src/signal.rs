//! Sleeping and waking across processes without a syscall per frame.
//!
//! A side that is about to sleep reads the sequence word it will sleep on,
//! announces itself in a word of the header (`Waiters`), issues a SeqCst
//! fence, re-checks the condition it waits for, and only then sleeps while
//! the sequence word still holds the value it read. The other side makes
//! its change visible, issues a SeqCst fence, and only if the announcement
//! is there bumps the sequence word and wakes. The two fences make the
//! pattern a Dekker handshake: at least one side sees the other's store,
//! and a bump between the read and the sleep makes the sleep return at
//! once, so a wake-up is never lost, and while both sides are busy nobody
//! enters the kernel.
//!
//! The words are futex words inside the sealed segment: nothing the
//! consumer sleeps on can be truncated by a producer (a `sem_t` in a file
//! of its own could be), a sandboxed producer needs nothing but the
//! segment, and a hostile value only makes a sleep return early. Timeouts
//! are relative `FUTEX_WAIT`s, measured on `CLOCK_MONOTONIC`: setting the
//! wall clock neither stretches nor cuts a wait.

use std::time::Duration;

use crate::sync::AtomicU32;

/// How a side sleeps on a sequence word of the header and wakes the other.
pub trait Signal: Send + Sync {
    /// Sleeps while `word` holds `expected`, at most `timeout`. May return
    /// early (a wake-up, a changed word, a signal): callers re-check.
    fn wait(&self, word: &AtomicU32, expected: u32, timeout: Duration);
    /// Wakes one sleeper on `word` (all of them with `all`), after the
    /// caller changed it.
    fn wake(&self, word: &AtomicU32, all: bool);
}

/// Futex waits and wakes on words of a shared mapping.
#[derive(Debug, Default, Clone, Copy)]
pub struct Futex;

#[cfg(not(loom))]
impl Signal for Futex {
    fn wait(&self, word: &AtomicU32, expected: u32, timeout: Duration) {
        let timeout = timeout.min(Duration::from_secs(3600));
        let relative =
            libc::timespec { tv_sec: timeout.as_secs() as libc::time_t, tv_nsec: timeout.subsec_nanos() as _ };
        // SAFETY: `word` is a valid, aligned 32-bit atomic for the call; a
        // shared (not private) futex, since other processes map it too.
        // FUTEX_WAIT's relative timeout runs on CLOCK_MONOTONIC. Every
        // outcome (woken, EAGAIN, ETIMEDOUT, EINTR) means "re-check".
        unsafe {
            libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAIT, expected, &relative as *const _);
        }
    }

    fn wake(&self, word: &AtomicU32, all: bool) {
        let count = if all { i32::MAX } else { 1 };
        // SAFETY: as in `wait`; FUTEX_WAKE only reads the address.
        unsafe {
            libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, count);
        }
    }
}

/// Sleeping on a word of a heap-backed ring (tests, miri) and of loom
/// models, where it is built from loom's mutex and condvar.
#[cfg(any(test, loom, feature = "heap"))]
pub(crate) mod heap {
    use super::Signal;
    use crate::sync::{AtomicU32, Ordering};
    use std::time::Duration;

    #[cfg(loom)]
    use loom::sync::{Condvar, Mutex};
    #[cfg(not(loom))]
    use std::sync::{Condvar, Mutex};

    /// A futex made of a mutex and a condition variable: `wake` takes the
    /// mutex, so a sleeper that saw the old value under it is already
    /// waiting on the condvar when the notification comes.
    #[derive(Default)]
    pub struct HeapSignal {
        lock: Mutex<()>,
        changed: Condvar,
    }

    impl HeapSignal {
        pub fn new() -> Self {
            HeapSignal { lock: Mutex::new(()), changed: Condvar::new() }
        }
    }

    impl Signal for HeapSignal {
        #[cfg(loom)]
        fn wait(&self, word: &AtomicU32, expected: u32, _timeout: Duration) {
            // Loom has no time: a wait lasts until a wake-up, so a lost one
            // shows up as a deadlock in the model.
            let guard = self.lock.lock().unwrap();
            // SeqCst: SYNC POINT: pairs with the caller's bump of `word`
            // before `wake`; under the mutex, so no bump slips between this
            // check and the sleep.
            if word.load(Ordering::SeqCst) == expected {
                drop(self.changed.wait(guard).unwrap());
            }
        }

        #[cfg(not(loom))]
        fn wait(&self, word: &AtomicU32, expected: u32, timeout: Duration) {
            let guard = self.lock.lock().unwrap();
            // SeqCst: SYNC POINT: as in the loom version.
            if word.load(Ordering::SeqCst) == expected {
                drop(self.changed.wait_timeout(guard, timeout).unwrap());
            }
        }

        fn wake(&self, _word: &AtomicU32, _all: bool) {
            drop(self.lock.lock().unwrap());
            self.changed.notify_all();
        }
    }
}

#[cfg(loom)]
impl Signal for Futex {
    fn wait(&self, _word: &AtomicU32, _expected: u32, _timeout: Duration) {
        unreachable!("loom models run on heap backings")
    }
    fn wake(&self, _word: &AtomicU32, _all: bool) {}
}
