//! A lock-free multi-producer, single-consumer ring in one memfd segment,
//! for moving real-time media between processes without copies through the
//! kernel.
//!
//! Producers (threads or processes) claim space with one CAS, write a
//! record in place and publish it with one Release store. The consumer
//! reads records where they lie and frees their space when it drops them.
//! Futex words inside the sealed segment wake a sleeping side; while both
//! sides are busy no system call is made.
//!
//! A record stalls only the records behind it that its producer holds: a
//! producer that stops (or is stopped) between claim and commit has its
//! record stepped around, the ones after it are delivered, and its record
//! comes late when it commits. Its space is given up only once its death is
//! *confirmed*: by pid and start time in the consumer's pid namespace, or
//! by the hang-up of a liveness descriptor (see [`liveness_pair`]) for a
//! producer in another one, such as a sandboxed renderer. No timeout ever
//! presumes a producer dead.
//!
//! ```
//! use shmring::{Consumer, Producer, RingOptions};
//!
//! // The consumer creates the ring (a memfd and two semaphores).
//! let consumer = Consumer::create_anonymous(&RingOptions::with_capacity(1 << 20))?;
//!
//! // A producer attaches from the ring's descriptors; another process would
//! // receive them by inheritance (`SHMRING_FD`) or over the rendezvous socket.
//! let mut producer = Producer::attach(consumer.fds().try_clone()?)?;
//! producer.send(1, b"hello")?;
//!
//! // Or write in place: reserve, fill, commit.
//! let mut slot = producer.reserve(4)?;
//! slot.copy_from_slice(&[1, 2, 3, 4]);
//! slot.set_kind(2);
//! slot.commit();
//!
//! // A producer process launched with a liveness pair: the consumer then
//! // learns of its death even from another pid namespace.
//! let (producer_half, watch) = shmring::liveness_pair()?;
//! consumer.watch_producer(watch);
//! let _for_the_child = consumer.fds().with_liveness(producer_half)?;
//!
//! let first = consumer.recv()?;
//! assert_eq!((first.kind(), first.to_vec()), (1, b"hello".to_vec()));
//! let second = consumer.recv()?; // several frames may be held at once
//! assert_eq!(second.bytes().load_u32(0), Some(u32::from_ne_bytes([1, 2, 3, 4])));
//! drop(first); // space is freed in ring order, when both are dropped
//! drop(second);
//! assert_eq!(consumer.stats().consumed_frames, 2);
//! # Ok::<(), shmring::Error>(())
//! ```
//!
//! # Reading a frame: copies, fields and hand-offs, never `&[u8]`
//!
//! A received [`Frame`] lies in memory that every producer maps
//! read-write, and the consumer cannot tell an honest producer from a
//! hostile one. A `&[u8]` over bytes that change while it lives is
//! undefined behaviour in Rust (the compiler may keep a value it read, or
//! read twice what the code checked once), so safe code gets a
//! [`SharedBytes`] view instead:
//!
//! - copy out, then check the copy: [`SharedBytes::copy_to_slice`],
//!   [`to_vec`](SharedBytes::to_vec), [`append_to`](SharedBytes::append_to)
//!   (relaxed atomic loads, 8 bytes at a time; what was checked in the
//!   copy stays true whatever a producer writes later);
//! - read a small field: [`SharedBytes::load_u32`] and its siblings;
//! - hand the region on without a copy and without a reference:
//!   [`SharedBytes::as_ptr`] and [`len`](SharedBytes::len) (`vmsplice`,
//!   buffer protocols);
//! - trust the producers: `unsafe` [`SharedBytes::as_slice`];
//! - keep it past the consumer's borrow, or let it go on another thread
//!   (a GStreamer buffer, a numpy array): [`Frame::into_lease`] gives a
//!   `Send + 'static` [`Lease`], capped by [`Consumer::set_lease_limit`].
//!
//! Receiving and dropping a frame reads none of its payload, so it costs
//! the same whichever way the payload is read.
//!
//! ```
//! # use shmring::{Consumer, RingOptions};
//! # let consumer = Consumer::create_anonymous(&RingOptions::with_capacity(1 << 16))?;
//! # let mut producer = consumer.producer()?;
//! producer.send(1, "grüß".as_bytes())?;
//! let frame = consumer.recv()?;
//! let text = String::from_utf8(frame.to_vec()).expect("UTF-8"); // checked in private memory
//! assert_eq!(text, "grüß");
//!
//! // Every producer of this ring is this process's own `Producer`, which
//! // never writes a published record:
//! // SAFETY: nothing writes the frame's bytes while `bytes` lives.
//! let bytes: &[u8] = unsafe { frame.bytes().as_slice() };
//! assert_eq!(bytes, "grüß".as_bytes());
//! # Ok::<(), shmring::Error>(())
//! ```
//!
//! Modules, one concept each: [`layout`] (the shared contract), `segment`
//! (memfd, seals, double mapping), `producer` and `consumer` (the protocol),
//! `frame` (what the consumer hands out), `lease` (frames released on any
//! thread), `interrupt` (ending a wait from another thread), `claims`
//! (this process's claims), `signal` (waiter flags and
//! futex words), `stall` (records held by live producers), `recovery`
//! (owners of stalled records, dead producers, corrupt records),
//! [`liveness`], [`watches`] (the liveness watches a consumer holds, and
//! who keeps them across consumer restarts), [`stats`], `name`, and
//! `rendezvous` (attach by name; launchers hand over watches there).

#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]
#![warn(missing_debug_implementations)]
#![allow(missing_debug_implementations)]

mod backing;
mod claims;
mod consumer;
mod error;
mod frame;
mod interrupt;
pub mod layout;
mod lease;
pub mod leftovers;
pub mod liveness;
mod name;
mod producer;
mod recovery;
#[cfg(feature = "rendezvous")]
pub mod rendezvous;
mod ring;
mod segment;
mod signal;
mod stall;
pub mod stats;
mod sync;
pub mod watches;

#[cfg(all(test, loom))]
mod loom_tests;
#[cfg(all(test, not(loom)))]
mod protocol_tests;
#[cfg(all(test, not(loom)))]
mod stall_tests;

#[cfg(all(any(test, feature = "heap"), not(loom)))]
pub use backing::heap::HeapBacking;
pub use backing::Backing;
pub use consumer::{Consumer, DEFAULT_SPIN_LIMIT};
pub use error::{Error, Result};
pub use frame::{Frame, SharedBytes};
pub use interrupt::Interrupter;
pub use lease::{Lease, DEFAULT_LEASE_LIMIT};
pub use liveness::{liveness_pair, Liveness, ProducerLiveness, ProducerWatch};
pub use name::{runtime_dir, socket_path, validate as validate_name};
pub use producer::{FullPolicy, Producer, Reservation};
#[cfg(feature = "rendezvous")]
pub use rendezvous::{AccessPolicy, RendezvousServer};
pub use ring::{InheritableFds, MappedRing, RingConsumer, RingFds, RingHost, RingOptions, RingProducer};
pub use segment::HugePages;
pub use signal::{Futex, Signal};
pub use stats::{ProducerStats, RingView, Stats};

/// Process liveness checks (pid + start time) used by recovery.
pub mod process {
    pub use crate::liveness::{check, own_pid, own_start_time, Liveness};
}

/// The README's example, compiled and run as a doc test.
#[cfg(all(doctest, feature = "rendezvous"))]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeExample;
