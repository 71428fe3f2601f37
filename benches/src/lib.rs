//! Shared pieces of the shmring benchmarks: the payload every transport
//! carries (a header with sequence and send time, and stamped sample words
//! the consumer checks), the monotonic clock, CPU accounting and a
//! description of the machine.
//!
//! [`compare`] is the transport comparison (the `compare` binary); [`bot`]
//! the whole recording bot on each pipeline (`shmring bench bot`);
//! `benches/ring.rs` holds the criterion micro-benchmarks.

#![deny(unsafe_op_in_unsafe_fn)]

pub mod bot;
pub mod clock;
pub mod compare;
pub mod machine;
pub mod payload;
pub mod usage;

/// One 1080p I420 frame: 1920 x 1080 x 1.5 bytes.
pub const FRAME_1080P: usize = 1920 * 1080 * 3 / 2;

/// Chromium's largest outgoing WebSocket frame (`kReceiveDataPipeCapacity`).
pub const CHROMIUM_WS_FRAGMENT: usize = 131_000;
