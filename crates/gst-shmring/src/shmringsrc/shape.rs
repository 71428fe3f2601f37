//! What a frame's media header says about the buffer made of it: the caps
//! it needs, where each plane or channel lies in the record, and whether
//! that is GStreamer's default layout for those caps; and every caps the
//! element can produce (its pad template).
//!
//! A shape is taken from a header that `shmring-media` has copied out and
//! checked against the record's length, so every range it names lies in
//! the record; later reads of the record never consult the header again
//! (a producer may rewrite it meanwhile).

use gst::prelude::MulDiv;
use gst_audio::{AudioFormat, AudioInfo, AudioLayout};
use gst_video::{VideoFormat, VideoInfo};
use shmring_media::{AudioFrame, PixelFormat, SampleFormat, VideoFrame, MAX_PLANES};

use super::settings::Kind;

/// The layout of one video frame in its record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VideoShape {
    pub format: PixelFormat,
    pub width: u32,
    pub height: u32,
    planes: usize,
    /// Plane offsets from the start of the first plane.
    offsets: [usize; MAX_PLANES],
    strides: [usize; MAX_PLANES],
    /// Where the first plane starts in the record, and how far the last
    /// one reaches from there.
    start: usize,
    span: usize,
}

/// The layout of one audio chunk in its record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AudioShape {
    pub format: SampleFormat,
    pub rate: u32,
    pub channels: u32,
    /// Samples per channel in this chunk.
    pub samples: usize,
    /// Bytes from one channel's plane to the next (planar formats).
    channel_stride: usize,
    start: usize,
    span: usize,
}

/// Either kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Shape {
    Video(VideoShape),
    Audio(AudioShape),
}

/// What the caps depend on: a frame whose key differs from the last one's
/// needs a renegotiation; a different layout with the same key does not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CapsKey {
    Video { format: PixelFormat, width: u32, height: u32 },
    Audio { format: SampleFormat, rate: u32, channels: u32 },
}

impl VideoShape {
    pub fn of(video: &VideoFrame<'_>) -> VideoShape {
        let planes = video.plane_count();
        let mut starts = [0usize; MAX_PLANES];
        let mut strides = [0usize; MAX_PLANES];
        let mut first = usize::MAX;
        let mut end = 0;
        for plane in 0..planes {
            let bytes = video.plane(plane);
            // Offsets within the record, from the checked header copy.
            starts[plane] = usize::try_from(video.header().plane_offset[plane]).unwrap_or(usize::MAX);
            strides[plane] = video.stride(plane);
            first = first.min(starts[plane]);
            end = end.max(starts[plane] + bytes.len());
        }
        let mut offsets = [0usize; MAX_PLANES];
        for plane in 0..planes {
            offsets[plane] = starts[plane] - first;
        }
        VideoShape {
            format: video.format(),
            width: video.width(),
            height: video.height(),
            planes,
            offsets,
            strides,
            start: first,
            span: end - first,
        }
    }

    pub fn gst_format(&self) -> VideoFormat {
        match self.format {
            PixelFormat::I420 => VideoFormat::I420,
            PixelFormat::Nv12 => VideoFormat::Nv12,
            PixelFormat::Rgba => VideoFormat::Rgba,
            PixelFormat::Bgra => VideoFormat::Bgra,
        }
    }

    /// GStreamer's description of these caps at `fps` (its default
    /// layout, which copies into a pool follow).
    pub fn info(&self, fps: gst::Fraction) -> Result<VideoInfo, gst::glib::BoolError> {
        VideoInfo::builder(self.gst_format(), self.width, self.height).fps(fps).build()
    }

    pub fn planes(&self) -> usize {
        self.planes
    }

    /// Plane offsets from the start of the first plane.
    pub fn offsets(&self) -> &[usize] {
        &self.offsets[..self.planes]
    }

    /// Plane strides as `VideoMeta` takes them.
    pub fn strides(&self) -> Vec<i32> {
        self.strides[..self.planes].iter().map(|&s| i32::try_from(s).unwrap_or(i32::MAX)).collect()
    }

    pub fn stride(&self, plane: usize) -> usize {
        self.strides[plane]
    }

    /// `(bytes per row, rows)` of `plane`.
    pub fn plane_geometry(&self, plane: usize) -> (usize, usize) {
        let (row, rows) = self.format.plane_geometry(plane, self.width, self.height).unwrap_or((0, 0));
        (row as usize, rows as usize)
    }

    /// The bytes of the record a buffer needs: from the first plane's
    /// start to the end of the last plane.
    pub fn range(&self) -> std::ops::Range<usize> {
        self.start..self.start + self.span
    }

    /// Whether the planes lie where GStreamer puts them by default for
    /// `info`, so a buffer of the record needs no `VideoMeta`.
    pub fn is_default_layout(&self, info: &VideoInfo) -> bool {
        (0..self.planes).all(|p| {
            info.offset().get(p) == Some(&self.offsets[p])
                && info.stride().get(p).and_then(|&s| usize::try_from(s).ok()) == Some(self.strides[p])
        })
    }

    fn key(&self) -> CapsKey {
        CapsKey::Video { format: self.format, width: self.width, height: self.height }
    }
}

impl AudioShape {
    pub fn of(audio: &AudioFrame<'_>) -> AudioShape {
        let header = audio.header();
        let samples = audio.frame_count() as usize;
        let channels = audio.channels();
        let (channel_stride, span) = match audio.format() {
            SampleFormat::F32Planar => {
                let stride = header.channel_stride as usize;
                (stride, stride * channels as usize)
            }
            SampleFormat::S16Interleaved => (0, samples * channels as usize * 2),
        };
        AudioShape {
            format: audio.format(),
            rate: audio.sample_rate(),
            channels,
            samples,
            channel_stride,
            start: header.data_offset as usize,
            span,
        }
    }

    /// GStreamer's description of these caps: planar float is
    /// `non-interleaved` (each buffer carries an `AudioMeta`).
    pub fn info(&self) -> Result<AudioInfo, gst::glib::BoolError> {
        let (format, layout) = match self.format {
            SampleFormat::F32Planar => (AudioFormat::F32le, AudioLayout::NonInterleaved),
            SampleFormat::S16Interleaved => (AudioFormat::S16le, AudioLayout::Interleaved),
        };
        AudioInfo::builder(format, self.rate, self.channels).layout(layout).build()
    }

    /// Where each channel's samples start, from the start of the buffer
    /// (planar formats; empty for interleaved ones).
    pub fn channel_offsets(&self) -> Vec<usize> {
        match self.format {
            SampleFormat::F32Planar => (0..self.channels as usize).map(|c| c * self.channel_stride).collect(),
            SampleFormat::S16Interleaved => Vec::new(),
        }
    }

    /// Bytes of one channel's samples (planar), or of all samples.
    pub fn plane_len(&self) -> usize {
        match self.format {
            SampleFormat::F32Planar => self.samples * 4,
            SampleFormat::S16Interleaved => self.samples * self.channels as usize * 2,
        }
    }

    pub fn range(&self) -> std::ops::Range<usize> {
        self.start..self.start + self.span
    }

    /// How long the chunk lasts.
    pub fn duration(&self) -> gst::ClockTime {
        gst::ClockTime::from_nseconds(
            (self.samples as u64).mul_div_floor(gst::ClockTime::SECOND.nseconds(), u64::from(self.rate)).unwrap_or(0),
        )
    }

    fn key(&self) -> CapsKey {
        CapsKey::Audio { format: self.format, rate: self.rate, channels: self.channels }
    }
}

impl Shape {
    pub fn key(&self) -> CapsKey {
        match self {
            Shape::Video(v) => v.key(),
            Shape::Audio(a) => a.key(),
        }
    }

    pub fn range(&self) -> std::ops::Range<usize> {
        match self {
            Shape::Video(v) => v.range(),
            Shape::Audio(a) => a.range(),
        }
    }
}

/// Every caps the element can produce for `kind`.
pub fn template_caps(kind: Kind) -> gst::Caps {
    match kind {
        Kind::Video => gst_video::VideoCapsBuilder::new()
            .format_list([
                gst_video::VideoFormat::I420,
                gst_video::VideoFormat::Nv12,
                gst_video::VideoFormat::Rgba,
                gst_video::VideoFormat::Bgra,
            ])
            .build(),
        Kind::Audio => gst::Caps::builder("audio/x-raw")
            .field(
                "format",
                gst::List::new([gst_audio::AudioFormat::F32le.to_str(), gst_audio::AudioFormat::S16le.to_str()]),
            )
            .field("layout", gst::List::new(["non-interleaved", "interleaved"]))
            .field("rate", gst::IntRange::new(1, i32::MAX))
            .field("channels", gst::IntRange::new(1, i32::MAX))
            .build(),
    }
}
