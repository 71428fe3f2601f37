//! Video and audio frames over a [`shmring`] ring: the headers that travel
//! at the start of each payload, typed writers that copy (or let a caller
//! convert) straight into the ring, and typed views that read frames where
//! they lie.
//!
//! The headers are defined once, in C (`ffi/include/shmring/media.h`), for
//! the C++ producers in a renderer; [`sys`] holds the Rust types bindgen
//! generates from that file, and the tests check that C, C++ and Rust agree
//! on every size and offset.
//!
//! ```
//! use shmring::{Consumer, RingOptions};
//! use shmring_media::{write_video_i420, I420Planes, VideoFrame, VideoMeta};
//!
//! let consumer = Consumer::create_anonymous(&RingOptions::with_capacity(1 << 20))?;
//! let mut producer = consumer.producer()?;
//!
//! // A 64x48 I420 frame in caller memory, written with one copy.
//! let (y, u, v) = (vec![16u8; 64 * 48], vec![128u8; 32 * 24], vec![128u8; 32 * 24]);
//! let planes = I420Planes { width: 64, height: 48, y: &y, y_stride: 64, u: &u, u_stride: 32, v: &v, v_stride: 32 };
//! write_video_i420(&mut producer, &VideoMeta { stream_id: 7, timestamp_us: 0, frame_number: 0 }, &planes)?;
//!
//! // The consumer reads it in place.
//! let frame = consumer.recv()?;
//! let video = VideoFrame::parse(&frame)?;
//! assert_eq!((video.width(), video.height(), video.stream_id()), (64, 48, 7));
//! assert_eq!(video.row(0, 0).unwrap(), &[16u8; 64][..]);
//! assert_eq!(video.row(2, 23).unwrap(), &[128u8; 32][..]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Streams are named by [`Announcement`] records (kind [`KIND_ANNOUNCE`]):
//! a stream id, its kind and a label, written once per stream.
//!
//! Writing in place: [`reserve_video`] returns a [`VideoSlot`] whose planes
//! are slices of the ring; fill them and [`commit`](VideoSlot::commit).
//! Reading never trusts the header: every offset, stride and count is
//! checked against the record's length before a slice is made, and a lying
//! header is a [`MediaError`], never a panic or an out-of-bounds read.

#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

mod announce;
mod audio;
mod error;
mod format;
pub mod sys;
mod video;
mod wire;

pub use announce::{write_announce, Announcement};
pub use audio::{reserve_audio, write_audio, AudioFrame, AudioLayout, AudioMeta, AudioSamples, AudioSlot};
pub use error::MediaError;
pub use format::{
    PixelFormat, SampleFormat, ANNOUNCE_HEADER_SIZE, ANNOUNCE_MAGIC, AUDIO_HEADER_SIZE, AUDIO_MAGIC, KIND_ANNOUNCE,
    KIND_AUDIO, KIND_VIDEO, MAX_CHANNELS, MAX_DIMENSION, MAX_LABEL, MAX_PLANES, MAX_SAMPLE_RATE, MEDIA_ALIGN,
    MEDIA_VERSION, VIDEO_HEADER_SIZE, VIDEO_MAGIC,
};
pub use video::{reserve_video, write_video_i420, I420Planes, VideoFrame, VideoLayout, VideoMeta, VideoSlot};
