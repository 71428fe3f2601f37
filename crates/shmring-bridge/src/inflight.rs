//! Producer slots shared by many connections, and the reservation a
//! message holds while its bytes arrive.
//!
//! A ring has at most [`shmring::layout::MAX_PRODUCERS`] producer slots,
//! and a producer has at most one reservation open at a time (its slot
//! announces a single in-flight claim). The bridge holds thousands of
//! connections, so each worker thread owns a small [`Pool`] of producers,
//! and a connection borrows one only from the first byte of a message's
//! body to its last: the pool's size bounds the messages in flight.

use std::mem::ManuallyDrop;
use std::ptr::NonNull;

use shmring::{MappedRing, Reservation, RingProducer};

/// The producers a worker lends to messages in flight.
pub(crate) struct Pool {
    // Boxed: a producer is lent out as its box, whose heap address stays
    // put while a reservation borrows it (see `InFlight`).
    #[allow(clippy::vec_box)]
    free: Vec<Box<RingProducer>>,
    size: usize,
}

impl Pool {
    pub(crate) fn new(producers: Vec<RingProducer>) -> Pool {
        let size = producers.len();
        Pool { free: producers.into_iter().map(Box::new).collect(), size }
    }

    /// Whether a message could start now.
    pub(crate) fn has_free(&self) -> bool {
        !self.free.is_empty()
    }

    /// Producers lent out.
    pub(crate) fn in_use(&self) -> usize {
        self.size - self.free.len()
    }

    pub(crate) fn size(&self) -> usize {
        self.size
    }

    pub(crate) fn take(&mut self) -> Option<Box<RingProducer>> {
        self.free.pop()
    }

    pub(crate) fn give_back(&mut self, producer: Box<RingProducer>) {
        debug_assert!(self.free.len() < self.size);
        self.free.push(producer);
    }
}

/// A ring slot reserved for one message, together with the producer that
/// reserved it: a connection keeps it across many reads while the
/// message's fragments arrive.
///
/// `Reservation` borrows its producer mutably, so the two are kept
/// together here by hand: the producer lives in a heap allocation owned
/// through a raw pointer (moving an `InFlight` never moves the producer),
/// the reservation's borrow is given the lifetime `'static`, and that
/// lifetime never leaves this type: every method hands out borrows of
/// `self`, and the reservation is always dropped (published as a commit or
/// a skip record) before the producer is given back or freed.
pub(crate) struct InFlight {
    reservation: ManuallyDrop<Reservation<'static, MappedRing>>,
    producer: NonNull<RingProducer>,
}

impl InFlight {
    /// Reserves `len` bytes with `producer`. On failure (ring full, consumer
    /// gone) the producer comes back with the error.
    pub(crate) fn reserve(
        producer: Box<RingProducer>,
        len: usize,
        kind: u32,
    ) -> Result<InFlight, (Box<RingProducer>, shmring::Error)> {
        let raw = NonNull::new(Box::into_raw(producer)).expect("a box is never null");
        // SAFETY: `raw` comes from `Box::into_raw`: valid, aligned, and
        // referenced by nothing else. The `&mut` made here is the only
        // access to the producer until the reservation derived from it is
        // dropped (in `commit`, `abandon` or `drop`); only then is the box
        // rebuilt from `raw`. On the error path the error owns no borrow
        // of the producer, so rebuilding the box at once is sound.
        let result = unsafe { &mut *raw.as_ptr() }.reserve(len);
        match result {
            Ok(mut reservation) => {
                reservation.set_kind(kind);
                Ok(InFlight { reservation: ManuallyDrop::new(reservation), producer: raw })
            }
            Err(error) => {
                // SAFETY: see above; `raw` came from `Box::into_raw` just now.
                let producer = unsafe { Box::from_raw(raw.as_ptr()) };
                Err((producer, error))
            }
        }
    }

    /// The reserved bytes, to fill in place.
    pub(crate) fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.reservation
    }

    /// The reserved bytes.
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.reservation
    }

    /// Publishes the record and hands the producer back.
    pub(crate) fn commit(self) -> Box<RingProducer> {
        self.finish(true)
    }

    /// Publishes a skip record instead (the consumer steps over it and
    /// never sees a partial frame) and hands the producer back.
    pub(crate) fn abandon(self) -> Box<RingProducer> {
        self.finish(false)
    }

    fn finish(self, commit: bool) -> Box<RingProducer> {
        let mut this = ManuallyDrop::new(self);
        // SAFETY: `this` is never used again nor dropped (ManuallyDrop), so
        // the reservation is taken exactly once.
        let reservation = unsafe { ManuallyDrop::take(&mut this.reservation) };
        if commit {
            reservation.commit();
        } else {
            drop(reservation);
        }
        // SAFETY: the reservation, the only borrow of the producer, is gone;
        // `producer` came from `Box::into_raw` in `reserve` and is rebuilt once.
        unsafe { Box::from_raw(this.producer.as_ptr()) }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        // Only reached when a connection is torn down with a message in
        // flight outside `abandon` (worker shutdown): skip record, then
        // free the producer and its slot.
        // SAFETY: `drop` runs once and nothing uses the field afterwards.
        unsafe { ManuallyDrop::drop(&mut self.reservation) };
        // SAFETY: the reservation is dropped; the pointer came from
        // `Box::into_raw` and is rebuilt exactly once.
        drop(unsafe { Box::from_raw(self.producer.as_ptr()) });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shmring::{Consumer, RingOptions};

    #[test]
    fn committed_and_abandoned_messages_reach_the_consumer_as_a_frame_and_a_skip() {
        let consumer = Consumer::create_anonymous(&RingOptions::with_capacity(1 << 16)).unwrap();
        let mut pool = Pool::new(vec![consumer.producer().unwrap(), consumer.producer().unwrap()]);
        let mut first = InFlight::reserve(pool.take().unwrap(), 100, 7).map_err(|(_, e)| e).unwrap();
        let second = InFlight::reserve(pool.take().unwrap(), 50, 7).map_err(|(_, e)| e).unwrap();
        assert!(!pool.has_free());
        assert_eq!(pool.in_use(), 2);
        first.bytes_mut().fill(0xab);
        // Moving the in-flight message does not move its producer.
        let moved = vec![first];
        pool.give_back(second.abandon());
        for message in moved {
            pool.give_back(message.commit());
        }
        assert_eq!(pool.in_use(), 0);
        let frame = consumer.recv().unwrap();
        assert_eq!((frame.kind(), frame.len()), (7, 100));
        assert!(frame.to_vec().iter().all(|&b| b == 0xab));
        drop(frame);
        assert!(consumer.try_recv().unwrap().is_none());
        assert_eq!(consumer.stats().skipped, 1);
    }

    #[test]
    fn a_full_ring_hands_the_producer_back() {
        let consumer = Consumer::create_anonymous(&RingOptions::with_capacity(4096)).unwrap();
        let producer = Box::new(consumer.producer().unwrap());
        let held = InFlight::reserve(producer, 3000, 1).map_err(|(_, e)| e).unwrap();
        let other = Box::new(consumer.producer().unwrap());
        let (other, error) = InFlight::reserve(other, 3000, 1).err().expect("ring is full");
        assert!(matches!(error, shmring::Error::Dropped));
        drop(other);
        drop(held); // the drop path: a skip record
        assert!(consumer.try_recv().unwrap().is_none());
    }
}
