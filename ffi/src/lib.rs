//! The C++ producer API of shmring, built with `cxx`, for Chromium
//! renderers and other C++ producers of media frames.
//!
//! Built for Chromium's flags (`-std=c++20 -fno-exceptions -fno-rtti`):
//! nothing here throws. Every call returns a [`bridge::Status`] (or an
//! object that carries one); `Result` never crosses the bridge, since cxx
//! would turn it into a C++ exception.
//!
//! One handle may be shared by any number of C++ threads. It keeps a few
//! `shmring::Producer`s (lanes, see `lanes`), each claimed with one CAS per
//! frame; nothing blocks: a full ring or all lanes busy drops the frame and
//! counts it.
//!
//! C++ code includes `shmring/producer.h` (in `ffi/include`), an idiomatic
//! wrapper over the generated `shmring-ffi/src/lib.rs.h`.

#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

mod lanes;
mod shim;

pub use lanes::LANES;
pub use shim::{ShimAudioSlot, ShimProducer, ShimVideoSlot};

use shim::*;

/// The types and functions C++ sees (namespace `shmring::ffi`).
#[cxx::bridge(namespace = "shmring::ffi")]
pub mod bridge {
    /// Outcome of every call. `Ok` is zero.
    #[repr(i32)]
    #[derive(Debug)]
    enum Status {
        /// Done.
        Ok = 0,
        /// The ring was full: the frame was dropped and counted.
        Dropped = 1,
        /// Every lane was in use by other threads: dropped and counted.
        LanesBusy = 2,
        /// The consumer process is gone.
        ConsumerGone = 3,
        /// The frame is larger than the ring's largest record.
        TooLarge = 4,
        /// The arguments do not describe a frame (sizes, strides, lengths).
        InvalidArgument = 5,
        /// Attaching failed (bad descriptors, not a ring, wrong version).
        AttachFailed = 6,
        /// The object is empty: attach failed, or the slot was committed.
        NotAttached = 7,
        /// Anything else (an operating-system error).
        Error = 8,
    }

    /// What a video frame is and where it belongs.
    #[derive(Debug, Clone, Copy, Default)]
    struct VideoDesc {
        stream_id: u32,
        timestamp_us: i64,
        frame_number: u64,
        width: u32,
        height: u32,
        /// `SHMRING_PIXEL_*` (reserve only; writes name their format).
        pixel_format: u32,
    }

    /// What an audio chunk is and where it belongs.
    #[derive(Debug, Clone, Copy, Default)]
    struct AudioDesc {
        stream_id: u32,
        timestamp_us: i64,
        frame_number: u64,
        sample_rate: u32,
        channels: u32,
        /// Samples per channel.
        frame_count: u32,
        /// `SHMRING_SAMPLE_*` (reserve only).
        sample_format: u32,
    }

    /// Counters of one handle (all its lanes), plus the ring's own totals
    /// (`ring_valid` once attached). Reading them claims no lane.
    #[derive(Debug, Clone, Copy, Default)]
    struct Counters {
        frames: u64,
        bytes: u64,
        dropped_full: u64,
        dropped_busy: u64,
        consumer_gone: u64,
        invalid: u64,
        errors: u64,
        lanes_attached: u32,
        ring_valid: bool,
        ring_committed_frames: u64,
        ring_consumed_frames: u64,
        ring_drops: u64,
        ring_capacity: u64,
    }

    extern "Rust" {
        /// A thread-safe producer handle.
        type ShimProducer;
        /// A video record reserved in place; commit it or drop it.
        type ShimVideoSlot;
        /// An audio record reserved in place; commit it or drop it.
        type ShimAudioSlot;

        /// Attaches from a descriptor spec `MEMFD:DATA_SEM:SPACE_SEM` (as in
        /// `SHMRING_FD`); the handle then owns those descriptors.
        fn attach_spec(spec: &[u8]) -> Box<ShimProducer>;
        /// Attaches from three descriptors, taking ownership of them. The
        /// same descriptor named twice is refused (`AttachFailed`) and
        /// closed once.
        fn attach_fds(memfd: i32, data_sem: i32, space_sem: i32) -> Box<ShimProducer>;
        /// `Ok` if attached, else why not.
        fn status(self: &ShimProducer) -> Status;
        /// Largest payload one record can carry.
        fn max_payload(self: &ShimProducer) -> u64;
        /// Faults in this process's mapping of the ring now (Linux 5.14
        /// or later), so the first lap of frames pays no page faults. Once,
        /// after attaching, off any real-time thread. `Error` where the
        /// kernel cannot: frames still work, the first lap is just slower.
        fn prefault(self: &ShimProducer) -> Status;

        /// Copies an I420 frame (three planes with strides) into the ring.
        #[allow(clippy::too_many_arguments)]
        fn write_i420(
            self: &ShimProducer,
            desc: &VideoDesc,
            y: &[u8],
            y_stride: u32,
            u: &[u8],
            u_stride: u32,
            v: &[u8],
            v_stride: u32,
        ) -> Status;
        /// Copies interleaved s16 samples (`channels * frame_count`).
        fn write_audio_s16(self: &ShimProducer, desc: &AudioDesc, samples: &[i16]) -> Status;
        /// Copies f32 planar samples, channel after channel
        /// (`channels * frame_count`).
        fn write_audio_f32_planar(self: &ShimProducer, desc: &AudioDesc, samples: &[f32]) -> Status;
        /// Names stream `stream_id` (of `kind`, SHMRING_KIND_VIDEO or
        /// SHMRING_KIND_AUDIO) with a UTF-8 `label` of at most
        /// SHMRING_MAX_LABEL bytes: one announce record, once per stream.
        fn announce(self: &ShimProducer, stream_id: u32, kind: u32, label: &[u8]) -> Status;

        /// Reserves a video record for `desc.pixel_format`.
        fn reserve_video(self: &ShimProducer, desc: &VideoDesc) -> Box<ShimVideoSlot>;
        /// Reserves an audio record for `desc.sample_format`.
        fn reserve_audio(self: &ShimProducer, desc: &AudioDesc) -> Box<ShimAudioSlot>;

        /// The handle's counters.
        fn counters(self: &ShimProducer) -> Counters;

        /// `Ok` while the slot can be filled.
        fn status(self: &ShimVideoSlot) -> Status;
        /// Start of `plane` in the ring (null past the last plane).
        fn plane(self: &ShimVideoSlot, plane: usize) -> *mut u8;
        /// Bytes of `plane` (stride times rows).
        fn plane_len(self: &ShimVideoSlot, plane: usize) -> usize;
        /// Bytes per row of `plane`.
        fn stride(self: &ShimVideoSlot, plane: usize) -> usize;
        /// Publishes the frame; the slot is empty afterwards.
        fn commit(self: &mut ShimVideoSlot) -> Status;

        /// `Ok` while the slot can be filled.
        fn status(self: &ShimAudioSlot) -> Status;
        /// Start of channel `channel` (f32 planar; null otherwise).
        fn channel_f32(self: &ShimAudioSlot, channel: u32) -> *mut f32;
        /// Start of the interleaved samples (s16; null otherwise).
        fn samples_s16(self: &ShimAudioSlot) -> *mut i16;
        /// Publishes the chunk; the slot is empty afterwards.
        fn commit(self: &mut ShimAudioSlot) -> Status;
    }
}
