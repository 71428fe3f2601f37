//! A bridge that lets a stock browser write media frames into a [`shmring`]
//! ring: the page's JS client (`js/shmring-bridge.js`, served by the bridge)
//! captures frames, each with the frame header of
//! `ffi/include/shmring/media.h` in front, and hands them over by one of two
//! lanes: written into a file of the page's origin-private file system,
//! announced by a small control message over a WebSocket, and read by the
//! bridge with one `pread` into a reserved ring slot (the file lane, see
//! [`frame_file`]); or sent as binary WebSocket messages, read from the
//! socket straight into the slot. The ring's consumer sees the same records
//! either way, and as from a patched browser.
//!
//! ```
//! use shmring::{Consumer, RingOptions};
//! use shmring_bridge::client::{video_message, Client};
//! use shmring_bridge::{Bridge, BridgeConfig};
//! use shmring_media::{Announcement, PixelFormat, VideoFrame, VideoMeta};
//!
//! // The consumer (an encoder) owns the ring; the bridge is one of its
//! // producers, here in the same process.
//! let consumer = Consumer::create_anonymous(&RingOptions::with_capacity(16 << 20))?;
//! let bridge = Bridge::start(BridgeConfig::listening_on("127.0.0.1:0".parse()?), consumer.fds().try_clone()?)?;
//!
//! // A client declares its stream, then sends frames, fragmented as
//! // Chromium fragments them.
//! let mut client = Client::connect(bridge.local_addr())?;
//! client.declare(r#"{"type":"declare","kind":"video","format":"I420","width":640,"height":360}"#)?;
//! let meta = VideoMeta { stream_id: 0, timestamp_us: 33_333, frame_number: 1 };
//! client.send_binary(&video_message(PixelFormat::I420, 640, 360, &meta), 131_000)?;
//!
//! // The stream is named first (an announce record), then its frames.
//! let named = Announcement::parse(&consumer.recv()?)?;
//! assert_eq!(named.kind, shmring_media::KIND_VIDEO);
//! let record = consumer.recv()?;
//! let frame = VideoFrame::parse(&record)?;
//! assert_eq!((frame.width(), frame.height(), frame.timestamp_us()), (640, 360, 33_333));
//! drop(record);
//! assert_eq!(bridge.shutdown().messages, 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The wire protocol, the limits, and what the bridge uses of tungstenite
//! are described in the crate's README. Modules: `frames` (WebSocket frame
//! headers, masking), `http` (the upgrade and the pages), `protocol`
//! (declarations, notices, media header checks), `inflight` (producers
//! shared by connections, the reservation a message holds), `connection`
//! (one client), `outbox`, `session` (the WebSocket session, with its
//! `payload_lane` and `file_lane`), [`frame_file`] (finding and reading a
//! page's frame file), `worker`, [`stats`], [`client`], [`extension`] (the meeting recorder's
//! browser extension), plus [`chromium`] and [`process_usage`] used by the
//! tests and the load bench.

#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

mod bridge;
pub mod chromium;
pub mod client;
mod config;
mod connection;
pub mod extension;
pub mod frame_file;
mod frames;
mod http;
mod inflight;
mod outbox;
pub mod process_usage;
pub mod profile_fs;
pub mod protocol;
mod session;
pub mod stats;
mod worker;

pub use bridge::{raise_open_file_limit, serve_until_signal, Bridge, BridgeError, RingSource, ShutdownHandle};
pub use config::{BridgeConfig, DEFAULT_PORT};
pub use http::{CAPTURE_PAGE, CLIENT_JS, FILE_LANE_JS};
pub use stats::{BridgeStats, CloseCount};

/// The README's Rust example, compiled as a doc test.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeExample;
