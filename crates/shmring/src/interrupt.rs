//! Interrupting a consumer's wait from another thread: what a GStreamer
//! source's `unlock` (run on the application's thread while the streaming
//! thread waits for a frame) or a Ctrl-C handler needs to get a `recv`
//! back at once.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use shmring::{Consumer, RingOptions};
//!
//! let consumer = Consumer::create_anonymous(&RingOptions::with_capacity(1 << 16))?;
//! let interrupter = consumer.interrupter();
//! let began = Instant::now();
//! std::thread::spawn(move || {
//!     std::thread::sleep(Duration::from_millis(20));
//!     interrupter.interrupt();
//! });
//! // Nothing is ever sent: without the interrupt this waits 10 s.
//! assert!(consumer.recv_timeout(Duration::from_secs(10))?.is_none());
//! assert!(began.elapsed() < Duration::from_secs(5));
//! # Ok::<(), shmring::Error>(())
//! ```

use std::sync::Arc;

use crate::backing::Backing;
use crate::signal::Signal;
use crate::sync::{fence, AtomicU32, Ordering};

/// A handle that makes the consumer's current wait (or, if it is not
/// waiting, its next one) return at once: `recv_timeout` and
/// `recv_lease_timeout` with `Ok(None)`, `recv` with
/// [`Error::Interrupted`](crate::Error::Interrupted). A frame that is
/// already there is still handed out first. `Send + Sync`, cloneable; made
/// by [`Consumer::interrupter`](crate::Consumer::interrupter).
pub struct Interrupter<B: Backing> {
    flag: Arc<AtomicU32>,
    backing: Arc<B>,
}

impl<B: Backing> Interrupter<B> {
    pub(crate) fn new(flag: Arc<AtomicU32>, backing: Arc<B>) -> Self {
        Interrupter { flag, backing }
    }

    /// Interrupts the consumer's wait. Costs a futex wake only when the
    /// consumer sleeps.
    pub fn interrupt(&self) {
        // Release: SYNC POINT: pairs with the Acquire swap in
        // `Consumer::take_interrupt`.
        self.flag.store(1, Ordering::Release);
        // SeqCst fence: SYNC POINT: the Dekker pair of the fence in
        // `Consumer::recv_deadline`: either the consumer sees the flag in
        // its re-check before sleeping, or we see it waiting and wake it.
        fence(Ordering::SeqCst);
        let waiters = &self.backing.header().waiters;
        if waiters.consumer_waiting.load(Ordering::Relaxed) != 0 {
            // Release: SYNC POINT: pairs with the consumer's Acquire load of
            // `data_seq` before it sleeps, as in `Producer::wake_consumer`.
            waiters.data_seq.fetch_add(1, Ordering::Release);
            self.backing.signal().wake(&waiters.data_seq, false);
        }
    }
}

impl<B: Backing> Clone for Interrupter<B> {
    fn clone(&self) -> Self {
        Interrupter { flag: self.flag.clone(), backing: self.backing.clone() }
    }
}

impl<B: Backing> std::fmt::Debug for Interrupter<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Interrupter").field("pending", &(self.flag.load(Ordering::Relaxed) != 0)).finish()
    }
}
