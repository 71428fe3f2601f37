//! What a received record is, read once at receipt: the media header copied
//! out and checked by `shmring_media`, kept as offsets into the record so
//! that arrays can later be laid over the record in place.
//!
//! Nothing here refers to the ring's bytes: a [`Media`] is private memory,
//! and a producer that rewrites the record's header afterwards changes
//! nothing it says (nor where an array reads).

use std::sync::Arc;

use shmring::SharedBytes;
use shmring_media::{
    Announcement, AudioFrame, PixelFormat, SampleFormat, VideoFrame, KIND_ANNOUNCE, KIND_AUDIO, KIND_VIDEO, MAX_PLANES,
};

/// One plane of a video record.
#[derive(Clone, Copy, Debug, Default)]
pub struct Plane {
    /// Byte offset of its first row in the record.
    pub offset: usize,
    /// Bytes from one row to the next.
    pub stride: usize,
    pub rows: usize,
    /// Bytes of pixels in a row (no padding).
    pub row_bytes: usize,
}

#[derive(Clone, Debug)]
pub struct Video {
    pub stream: u32,
    pub timestamp_us: i64,
    pub frame_number: u64,
    pub width: u32,
    pub height: u32,
    pub format: PixelFormat,
    pub planes: [Plane; MAX_PLANES],
}

#[derive(Clone, Debug)]
pub struct Audio {
    pub stream: u32,
    pub timestamp_us: i64,
    pub frame_number: u64,
    pub sample_rate: u32,
    pub channels: u32,
    /// Samples per channel.
    pub samples: u32,
    pub format: SampleFormat,
    /// Byte offset of the first sample in the record.
    pub data_offset: usize,
    /// Bytes from one channel's plane to the next (planar formats).
    pub channel_stride: usize,
}

/// What a record holds.
#[derive(Clone, Debug)]
pub enum Media {
    Video(Video),
    Audio(Audio),
    Announce(Announcement),
    /// A kind the media layer does not define: bytes only.
    Other,
    /// A media kind whose header was refused: the message of the
    /// `MediaError`, raised when a typed field is asked for.
    Invalid(Arc<str>),
}

impl Media {
    /// Reads the record of `kind` whose payload is `payload`.
    pub fn read(kind: u32, payload: SharedBytes<'_>) -> Media {
        let parsed = match kind {
            KIND_VIDEO => VideoFrame::from_payload(payload).map(|video| Media::Video(video_of(&video, payload))),
            KIND_AUDIO => AudioFrame::from_payload(payload).map(|audio| Media::Audio(audio_of(&audio, payload))),
            KIND_ANNOUNCE => Announcement::from_payload(payload).map(Media::Announce),
            _ => return Media::Other,
        };
        parsed.unwrap_or_else(|error| Media::Invalid(error.to_string().into()))
    }

    /// The stream a media record belongs to.
    pub fn stream(&self) -> Option<u32> {
        match self {
            Media::Video(v) => Some(v.stream),
            Media::Audio(a) => Some(a.stream),
            Media::Announce(a) => Some(a.stream_id),
            Media::Other | Media::Invalid(_) => None,
        }
    }
}

/// Offset of `part` from the start of `whole` (a sub-view of it).
fn offset_in(whole: SharedBytes<'_>, part: SharedBytes<'_>) -> usize {
    (part.as_ptr() as usize).wrapping_sub(whole.as_ptr() as usize)
}

fn video_of(video: &VideoFrame<'_>, payload: SharedBytes<'_>) -> Video {
    let mut planes = [Plane::default(); MAX_PLANES];
    for (index, plane) in planes.iter_mut().enumerate().take(video.plane_count()) {
        let (row_bytes, rows) =
            video.format().plane_geometry(index, video.width(), video.height()).expect("a plane of the format");
        // Checked by `VideoFrame::from_payload`: the plane lies in the
        // record, `rows` rows of `stride >= row_bytes` bytes.
        *plane = Plane {
            offset: offset_in(payload, video.plane(index)),
            stride: video.stride(index),
            rows: rows as usize,
            row_bytes: row_bytes as usize,
        };
    }
    Video {
        stream: video.stream_id(),
        timestamp_us: video.timestamp_us(),
        frame_number: video.frame_number(),
        width: video.width(),
        height: video.height(),
        format: video.format(),
        planes,
    }
}

fn audio_of(audio: &AudioFrame<'_>, payload: SharedBytes<'_>) -> Audio {
    let header = audio.header();
    let data_offset = match audio.format() {
        SampleFormat::F32Planar => audio.channel_f32(0).map(|c| offset_in(payload, c.bytes())),
        SampleFormat::S16Interleaved => audio.s16().map(|s| offset_in(payload, s.bytes())),
    };
    Audio {
        stream: audio.stream_id(),
        timestamp_us: audio.timestamp_us(),
        frame_number: audio.frame_number(),
        sample_rate: audio.sample_rate(),
        channels: audio.channels(),
        samples: audio.frame_count(),
        format: audio.format(),
        // `from_payload` checked `channels >= 1`, so the first channel
        // (or the interleaved block) exists.
        data_offset: data_offset.unwrap_or(header.data_offset as usize),
        channel_stride: header.channel_stride as usize,
    }
}

/// Python's name of a pixel format.
pub fn pixel_format_name(format: PixelFormat) -> &'static str {
    match format {
        PixelFormat::I420 => "I420",
        PixelFormat::Nv12 => "NV12",
        PixelFormat::Rgba => "RGBA",
        PixelFormat::Bgra => "BGRA",
    }
}

/// Python's name of a sample format.
pub fn sample_format_name(format: SampleFormat) -> &'static str {
    match format {
        SampleFormat::F32Planar => "f32-planar",
        SampleFormat::S16Interleaved => "s16-interleaved",
    }
}

/// Python's name of a record kind.
pub fn kind_name(kind: u32) -> &'static str {
    match kind {
        KIND_VIDEO => "video",
        KIND_AUDIO => "audio",
        KIND_ANNOUNCE => "announce",
        _ => "other",
    }
}
