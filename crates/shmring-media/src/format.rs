//! Record kinds, pixel and sample formats, and the limits readers enforce.

use crate::sys;

/// Record kind (the ring record's `kind` word) of a video frame.
pub const KIND_VIDEO: u32 = sys::SHMRING_KIND_VIDEO;
/// Record kind of an audio chunk.
pub const KIND_AUDIO: u32 = sys::SHMRING_KIND_AUDIO;
/// Record kind of an announcement: which stream id carries what.
pub const KIND_ANNOUNCE: u32 = sys::SHMRING_KIND_ANNOUNCE;
/// First word of a video header ("SHMV").
pub const VIDEO_MAGIC: u32 = sys::SHMRING_VIDEO_MAGIC;
/// First word of an audio header ("SHMA").
pub const AUDIO_MAGIC: u32 = sys::SHMRING_AUDIO_MAGIC;
/// First word of an announce header ("SHMN").
pub const ANNOUNCE_MAGIC: u32 = sys::SHMRING_ANNOUNCE_MAGIC;
/// Longest announced label, in bytes of UTF-8.
pub const MAX_LABEL: usize = sys::SHMRING_MAX_LABEL as usize;
/// Size of the announce header; the label starts at or after it.
pub const ANNOUNCE_HEADER_SIZE: usize = sys::SHMRING_ANNOUNCE_HEADER_SIZE as usize;
/// Layout version of the headers.
pub const MEDIA_VERSION: u16 = sys::SHMRING_MEDIA_VERSION as u16;
/// Alignment of planes, strides, channel planes and payloads.
pub const MEDIA_ALIGN: usize = sys::SHMRING_MEDIA_ALIGN as usize;
/// Most planes of a video frame.
pub const MAX_PLANES: usize = sys::SHMRING_MAX_PLANES as usize;
/// Most channels of an audio chunk.
pub const MAX_CHANNELS: u32 = sys::SHMRING_MAX_CHANNELS;
/// Size of the video header; planes start at or after it.
pub const VIDEO_HEADER_SIZE: usize = sys::SHMRING_VIDEO_HEADER_SIZE as usize;
/// Size of the audio header; samples start at or after it.
pub const AUDIO_HEADER_SIZE: usize = sys::SHMRING_AUDIO_HEADER_SIZE as usize;
/// Largest width or height a reader accepts (and a writer produces).
pub const MAX_DIMENSION: u32 = 1 << 15;
/// Highest sample rate a reader accepts.
pub const MAX_SAMPLE_RATE: u32 = 768_000;

const _: () = assert!(core::mem::size_of::<sys::shmring_video_header>() == VIDEO_HEADER_SIZE);
const _: () = assert!(core::mem::size_of::<sys::shmring_audio_header>() == AUDIO_HEADER_SIZE);
const _: () = assert!(core::mem::size_of::<sys::shmring_announce_header>() == ANNOUNCE_HEADER_SIZE);
const _: () = assert!(VIDEO_HEADER_SIZE % MEDIA_ALIGN == 0 && AUDIO_HEADER_SIZE % MEDIA_ALIGN == 0);

/// How the pixels of a video frame are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum PixelFormat {
    /// Planar YUV 4:2:0: Y, then U and V at half width and height.
    I420 = sys::SHMRING_PIXEL_I420,
    /// Y, then one plane of interleaved U/V pairs at half height.
    Nv12 = sys::SHMRING_PIXEL_NV12,
    /// One plane, 4 bytes per pixel, R G B A.
    Rgba = sys::SHMRING_PIXEL_RGBA,
    /// One plane, 4 bytes per pixel, B G R A.
    Bgra = sys::SHMRING_PIXEL_BGRA,
}

impl PixelFormat {
    /// The format a header word names, if any.
    pub fn from_raw(raw: u32) -> Option<PixelFormat> {
        [PixelFormat::I420, PixelFormat::Nv12, PixelFormat::Rgba, PixelFormat::Bgra]
            .into_iter()
            .find(|f| *f as u32 == raw)
    }

    /// Planes this format has.
    pub fn plane_count(self) -> usize {
        match self {
            PixelFormat::I420 => 3,
            PixelFormat::Nv12 => 2,
            PixelFormat::Rgba | PixelFormat::Bgra => 1,
        }
    }

    /// `(bytes per row, rows)` of `plane` for a `width` x `height` frame,
    /// or `None` past the last plane. Odd sizes round chroma up.
    pub fn plane_geometry(self, plane: usize, width: u32, height: u32) -> Option<(u64, u64)> {
        let (w, h) = (u64::from(width), u64::from(height));
        let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
        match (self, plane) {
            (PixelFormat::I420 | PixelFormat::Nv12, 0) => Some((w, h)),
            (PixelFormat::I420, 1 | 2) => Some((cw, ch)),
            (PixelFormat::Nv12, 1) => Some((2 * cw, ch)),
            (PixelFormat::Rgba | PixelFormat::Bgra, 0) => Some((4 * w, h)),
            _ => None,
        }
    }
}

/// How the samples of an audio chunk are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum SampleFormat {
    /// 32-bit float, one plane per channel.
    F32Planar = sys::SHMRING_SAMPLE_F32_PLANAR,
    /// Signed 16-bit, channels interleaved.
    S16Interleaved = sys::SHMRING_SAMPLE_S16_INTERLEAVED,
}

impl SampleFormat {
    /// The format a header word names, if any.
    pub fn from_raw(raw: u32) -> Option<SampleFormat> {
        [SampleFormat::F32Planar, SampleFormat::S16Interleaved].into_iter().find(|f| *f as u32 == raw)
    }

    /// Bytes of one sample of one channel.
    pub fn bytes_per_sample(self) -> usize {
        match self {
            SampleFormat::F32Planar => 4,
            SampleFormat::S16Interleaved => 2,
        }
    }
}

/// Rounds `value` up to a multiple of [`MEDIA_ALIGN`].
pub(crate) fn align_up(value: u64) -> u64 {
    value.div_ceil(MEDIA_ALIGN as u64) * MEDIA_ALIGN as u64
}
