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
//! // The consumer reads it in place: the header is copied out and checked,
//! // the pixels stay in the ring until they are copied or handed on.
//! let frame = consumer.recv()?;
//! let video = VideoFrame::parse(&frame)?;
//! assert_eq!((video.width(), video.height(), video.stream_id()), (64, 48, 7));
//! assert_eq!(video.row(0, 0).unwrap().to_vec(), [16u8; 64]);
//! let mut row = [0u8; 32];
//! video.row(2, 23).unwrap().copy_to_slice(&mut row);
//! assert_eq!(row, [128u8; 32]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Streams are named by [`Announcement`] records (kind [`KIND_ANNOUNCE`]):
//! a stream id, its kind and a label, written once per stream.
//!
//! Writing in place: [`reserve_video`] returns a [`VideoSlot`] whose planes
//! are slices of the ring; fill them and [`commit`](VideoSlot::commit).
//!
//! # Reading: the header is copied, the pixels are not borrowed
//!
//! A record lies in memory that producers in other processes map
//! read-write; a hostile or broken one may rewrite it while the consumer
//! reads. So a view copies the header out **once**, into private memory,
//! and checks that copy: every offset, stride and count is checked against
//! the record's length before a plane is made, a lying header is a
//! [`MediaError`] (never a panic or an out-of-bounds read), and a header
//! rewritten after the check changes nothing the view says or reads.
//!
//! Planes, rows and samples are [`shmring::SharedBytes`] and
//! [`SharedSamples`]: regions of the record, never `&[u8]` or `&[f32]`,
//! since a reference to bytes that another process writes is undefined
//! behaviour in Rust. Read them by copy (`copy_to_slice`, `to_vec`) or one
//! value at a time (`get`, `load_u32`), hand them on as pointer + length
//! (`as_ptr`, `len`: what the encoder gives `vmsplice`), or, trusting
//! every producer, borrow them with the `unsafe` `as_slice`.
//!
//! ```
//! # use shmring::{Consumer, RingOptions};
//! # use shmring_media::{write_audio, AudioFrame, AudioMeta, AudioSamples};
//! # let consumer = Consumer::create_anonymous(&RingOptions::with_capacity(1 << 20))?;
//! # let mut producer = consumer.producer()?;
//! let (left, right) = (vec![0.5f32; 480], vec![-0.5f32; 480]);
//! let meta = AudioMeta { stream_id: 2, sample_rate: 48_000, ..AudioMeta::default() };
//! write_audio(&mut producer, &meta, AudioSamples::F32Planar(&[&left, &right]))?;
//!
//! let frame = consumer.recv()?;
//! let audio = AudioFrame::parse(&frame)?;
//! let channel = audio.channel_f32(1).expect("two channels");
//! assert_eq!((channel.len(), channel.get(0)), (480, Some(-0.5)));
//! let mut copy = vec![0.0f32; 480];
//! channel.copy_to_slice(&mut copy);
//! assert_eq!(copy, right);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

mod announce;
mod audio;
mod error;
mod format;
mod samples;
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
pub use samples::{Sample, SharedSamples};
pub use video::{reserve_video, write_video_i420, I420Planes, VideoFrame, VideoLayout, VideoMeta, VideoSlot};
