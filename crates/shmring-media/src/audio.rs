//! Audio chunks: their layout, the writers, and the zero-copy view.

use shmring::{Backing, Frame, Producer, Reservation, SharedBytes};

use crate::error::MediaError;
use crate::format::{align_up, SampleFormat, AUDIO_HEADER_SIZE, AUDIO_MAGIC, KIND_AUDIO, MAX_CHANNELS};
use crate::format::{MAX_SAMPLE_RATE, MEDIA_ALIGN, MEDIA_VERSION};
use crate::samples::SharedSamples;
use crate::sys::shmring_audio_header;
use crate::wire;

/// Which stream a chunk belongs to, where it sits in it, and its rate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AudioMeta {
    /// The track, as the producer numbers them.
    pub stream_id: u32,
    /// Time of the first sample in microseconds.
    pub timestamp_us: i64,
    /// Per-stream chunk counter; a gap at the consumer is a dropped chunk.
    pub frame_number: u64,
    /// Samples per second per channel.
    pub sample_rate: u32,
}

/// Where the samples of a chunk lie: the header, then (planar) one
/// 64-byte aligned plane per channel, or (interleaved) one block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AudioLayout {
    format: SampleFormat,
    channels: u32,
    frame_count: u32,
    data_offset: u32,
    channel_stride: u32,
    len: usize,
}

impl AudioLayout {
    /// The layout of `frame_count` samples of `channels` channels.
    pub fn new(format: SampleFormat, channels: u32, frame_count: u32) -> Result<AudioLayout, MediaError> {
        if channels == 0 || channels > MAX_CHANNELS {
            return Err(MediaError::InvalidInput { reason: "channel count outside 1..=32" });
        }
        let bytes = format.bytes_per_sample() as u64;
        let data_offset = AUDIO_HEADER_SIZE as u64;
        let (channel_stride, data_len) = match format {
            SampleFormat::F32Planar => {
                let stride = align_up(u64::from(frame_count) * bytes);
                (stride, stride * u64::from(channels))
            }
            SampleFormat::S16Interleaved => (0, u64::from(frame_count) * u64::from(channels) * bytes),
        };
        let too_big = |_| MediaError::InvalidInput { reason: "audio chunk larger than 4 GiB" };
        let len = data_offset + data_len;
        u32::try_from(len).map_err(too_big)?;
        Ok(AudioLayout {
            format,
            channels,
            frame_count,
            data_offset: data_offset as u32,
            channel_stride: channel_stride as u32,
            len: len as usize,
        })
    }

    /// Payload bytes of the whole record.
    pub fn payload_len(&self) -> usize {
        self.len
    }

    fn header(&self, meta: &AudioMeta) -> shmring_audio_header {
        shmring_audio_header {
            magic: AUDIO_MAGIC,
            version: MEDIA_VERSION,
            header_size: AUDIO_HEADER_SIZE as u16,
            stream_id: meta.stream_id,
            sample_format: self.format as u32,
            timestamp_us: meta.timestamp_us,
            frame_number: meta.frame_number,
            sample_rate: meta.sample_rate,
            channels: self.channels,
            frame_count: self.frame_count,
            data_offset: self.data_offset,
            channel_stride: self.channel_stride,
            ..Default::default()
        }
    }
}

/// An audio record reserved in the ring, header written, samples to be
/// filled in place, then committed (dropped uncommitted: a skip record).
pub struct AudioSlot<'p, B: Backing> {
    reservation: Reservation<'p, B>,
    layout: AudioLayout,
}

impl<B: Backing> AudioSlot<'_, B> {
    /// The chunk's layout.
    pub fn layout(&self) -> &AudioLayout {
        &self.layout
    }

    /// The channel planes of an `F32Planar` chunk, `frame_count` samples
    /// each (none for other formats).
    pub fn channels_f32_mut(&mut self) -> impl Iterator<Item = &mut [f32]> + '_ {
        let l = self.layout;
        let (stride, start) = (l.channel_stride as usize, l.data_offset as usize);
        let planar = l.format == SampleFormat::F32Planar;
        let data: &mut [u8] = if planar { &mut self.reservation[start..] } else { &mut [] };
        data.chunks_exact_mut(stride.max(1)).map(move |plane| {
            let plane = &mut plane[..l.frame_count as usize * 4];
            // SAFETY: the payload is 64-byte aligned (checked in
            // `reserve_audio`) and so are `data_offset` and the stride, so
            // the plane is 4-byte aligned; it holds `frame_count * 4`
            // bytes borrowed mutably and exclusively; any bits are an f32.
            unsafe { std::slice::from_raw_parts_mut(plane.as_mut_ptr().cast::<f32>(), l.frame_count as usize) }
        })
    }

    /// The samples of an `S16Interleaved` chunk (`None` for other formats).
    pub fn s16_mut(&mut self) -> Option<&mut [i16]> {
        let l = self.layout;
        if l.format != SampleFormat::S16Interleaved {
            return None;
        }
        let count = l.frame_count as usize * l.channels as usize;
        let start = l.data_offset as usize;
        let bytes = &mut self.reservation[start..start + count * 2];
        // SAFETY: 2-byte aligned (aligned payload, aligned `data_offset`),
        // `count * 2` bytes borrowed exclusively; any bits are an i16.
        Some(unsafe { std::slice::from_raw_parts_mut(bytes.as_mut_ptr().cast::<i16>(), count) })
    }

    /// Publishes the chunk.
    pub fn commit(self) {
        self.reservation.commit();
    }
}

/// Claims an audio record, writes its header and hands out the samples to
/// fill. A full ring follows the producer's policy (by default: dropped,
/// counted, [`MediaError::Ring`]).
pub fn reserve_audio<'p, B: Backing>(
    producer: &'p mut Producer<B>,
    meta: &AudioMeta,
    format: SampleFormat,
    channels: u32,
    frame_count: u32,
) -> Result<AudioSlot<'p, B>, MediaError> {
    if meta.sample_rate == 0 || meta.sample_rate > MAX_SAMPLE_RATE {
        return Err(MediaError::InvalidInput { reason: "sample rate outside 1..=768000" });
    }
    let layout = AudioLayout::new(format, channels, frame_count)?;
    let mut reservation = producer.reserve(layout.payload_len())?;
    if reservation.as_ptr() as usize % MEDIA_ALIGN != 0 {
        // The ring promises aligned payloads; refuse rather than hand out
        // misaligned samples. Dropping the reservation skips the record.
        return Err(MediaError::Misaligned { offset: 0, align: MEDIA_ALIGN });
    }
    reservation.set_kind(KIND_AUDIO);
    wire::write(&mut reservation, &layout.header(meta));
    Ok(AudioSlot { reservation, layout })
}

/// Samples in caller memory.
#[derive(Clone, Copy, Debug)]
pub enum AudioSamples<'a> {
    /// One slice per channel, all the same length.
    F32Planar(&'a [&'a [f32]]),
    /// Channels interleaved: `samples.len()` is a multiple of `channels`.
    S16Interleaved { channels: u32, samples: &'a [i16] },
}

/// Copies one chunk of audio into the ring as one record.
pub fn write_audio<B: Backing>(
    producer: &mut Producer<B>,
    meta: &AudioMeta,
    samples: AudioSamples<'_>,
) -> Result<(), MediaError> {
    let invalid = |reason| MediaError::InvalidInput { reason };
    match samples {
        AudioSamples::F32Planar(planes) => {
            let frames = planes.first().map_or(0, |p| p.len());
            if planes.iter().any(|p| p.len() != frames) {
                return Err(invalid("channel planes of different lengths"));
            }
            let frames = u32::try_from(frames).map_err(|_| invalid("too many samples"))?;
            let channels = u32::try_from(planes.len()).map_err(|_| invalid("too many channels"))?;
            let mut slot = reserve_audio(producer, meta, SampleFormat::F32Planar, channels, frames)?;
            for (dst, src) in slot.channels_f32_mut().zip(planes) {
                dst.copy_from_slice(src);
            }
            slot.commit();
        }
        AudioSamples::S16Interleaved { channels, samples } => {
            if channels == 0 || samples.len() % channels as usize != 0 {
                return Err(invalid("sample count not a multiple of the channel count"));
            }
            let frames = u32::try_from(samples.len() / channels as usize).map_err(|_| invalid("too many samples"))?;
            let mut slot = reserve_audio(producer, meta, SampleFormat::S16Interleaved, channels, frames)?;
            slot.s16_mut().expect("interleaved slot").copy_from_slice(samples);
            slot.commit();
        }
    }
    Ok(())
}

/// An audio chunk read in place: the header copied out once and checked,
/// the samples as [`SharedSamples`] of the record (read by copy or one
/// sample at a time; see [`VideoFrame`](crate::VideoFrame) for why).
#[derive(Clone, Copy, Debug)]
pub struct AudioFrame<'a> {
    header: shmring_audio_header,
    format: SampleFormat,
    data: SharedBytes<'a>,
}

impl<'a> AudioFrame<'a> {
    /// Reads a ring record of kind [`KIND_AUDIO`].
    pub fn parse<B: Backing>(frame: &'a Frame<'_, B>) -> Result<AudioFrame<'a>, MediaError> {
        if frame.kind() != KIND_AUDIO {
            return Err(MediaError::WrongKind { found: frame.kind(), expected: KIND_AUDIO });
        }
        AudioFrame::from_bytes(frame.bytes())
    }

    /// Reads an audio payload (a ring record's [`SharedBytes`], or private
    /// bytes): the header is copied out once and every field of the copy
    /// checked against the payload's length and the samples' alignment in
    /// memory.
    pub fn from_payload(payload: impl Into<SharedBytes<'a>>) -> Result<AudioFrame<'a>, MediaError> {
        AudioFrame::from_bytes(payload.into())
    }

    fn from_bytes(payload: SharedBytes<'a>) -> Result<AudioFrame<'a>, MediaError> {
        let header: shmring_audio_header = wire::read::<_, AUDIO_HEADER_SIZE>(payload)
            .ok_or_else(|| MediaError::Truncated { needed: AUDIO_HEADER_SIZE as u64, len: payload.len() })?;
        if header.magic != AUDIO_MAGIC {
            return Err(MediaError::BadMagic { found: header.magic, expected: AUDIO_MAGIC });
        }
        if header.version != MEDIA_VERSION {
            return Err(MediaError::BadVersion { found: header.version, expected: MEDIA_VERSION });
        }
        let header_size = usize::from(header.header_size);
        if header_size < AUDIO_HEADER_SIZE || header_size > payload.len() {
            return Err(MediaError::BadHeaderSize { found: header.header_size });
        }
        let format = SampleFormat::from_raw(header.sample_format)
            .ok_or(MediaError::UnknownSampleFormat(header.sample_format))?;
        let bad = |reason| MediaError::BadAudio { reason };
        if header.channels == 0 || header.channels > MAX_CHANNELS {
            return Err(bad("channel count outside 1..=32"));
        }
        if header.sample_rate == 0 || header.sample_rate > MAX_SAMPLE_RATE {
            return Err(bad("sample rate outside 1..=768000"));
        }
        let offset = u64::from(header.data_offset);
        if offset < header_size as u64 || offset % MEDIA_ALIGN as u64 != 0 {
            return Err(bad("data offset inside the header or not a multiple of 64"));
        }
        let (frames, channels) = (u64::from(header.frame_count), u64::from(header.channels));
        let data_len = match format {
            SampleFormat::F32Planar => {
                let stride = u64::from(header.channel_stride);
                if stride < frames * 4 || stride % MEDIA_ALIGN as u64 != 0 {
                    return Err(bad("channel stride shorter than a channel or not a multiple of 64"));
                }
                stride * channels
            }
            SampleFormat::S16Interleaved => {
                if header.channel_stride != 0 {
                    return Err(bad("channel stride set for interleaved samples"));
                }
                frames * channels * 2
            }
        };
        // All factors are below 2^32 and `channels` below 2^6: no overflow.
        let end = offset + data_len;
        if end > payload.len() as u64 {
            return Err(MediaError::Truncated { needed: end, len: payload.len() });
        }
        let data = payload.get(offset as usize..end as usize).expect("checked against the payload's length");
        let align = format.bytes_per_sample();
        if data.as_ptr() as usize % align != 0 {
            return Err(MediaError::Misaligned { offset, align });
        }
        Ok(AudioFrame { header, format, data })
    }

    /// The header as it was read (and checked).
    pub fn header(&self) -> &shmring_audio_header {
        &self.header
    }
    /// Which track the chunk belongs to.
    pub fn stream_id(&self) -> u32 {
        self.header.stream_id
    }
    /// Time of the first sample in microseconds.
    pub fn timestamp_us(&self) -> i64 {
        self.header.timestamp_us
    }
    /// Per-stream chunk counter set by the writer.
    pub fn frame_number(&self) -> u64 {
        self.header.frame_number
    }
    /// Samples per second per channel.
    pub fn sample_rate(&self) -> u32 {
        self.header.sample_rate
    }
    /// Channels.
    pub fn channels(&self) -> u32 {
        self.header.channels
    }
    /// Samples per channel.
    pub fn frame_count(&self) -> u32 {
        self.header.frame_count
    }
    /// Sample format.
    pub fn format(&self) -> SampleFormat {
        self.format
    }

    /// Channel `channel` of an `F32Planar` chunk (`None` otherwise or past
    /// the last channel).
    pub fn channel_f32(&self, channel: u32) -> Option<SharedSamples<'a, f32>> {
        if self.format != SampleFormat::F32Planar || channel >= self.channels() {
            return None;
        }
        let stride = self.header.channel_stride as usize;
        let frames = self.frame_count() as usize;
        // In the record (checked in `from_payload`), 4-byte aligned (aligned
        // data start, stride a multiple of 64), `frames` whole samples.
        let start = channel as usize * stride;
        self.data.get(start..start + frames * 4).map(SharedSamples::new)
    }

    /// The interleaved samples of an `S16Interleaved` chunk.
    pub fn s16(&self) -> Option<SharedSamples<'a, i16>> {
        // `data` lies in the record, is 2-byte aligned (checked in
        // `from_payload`) and holds `frames * channels` samples exactly.
        (self.format == SampleFormat::S16Interleaved).then(|| SharedSamples::new(self.data))
    }

    /// Every channel of an `F32Planar` chunk, in order (none otherwise).
    pub fn channels_f32(&self) -> impl Iterator<Item = SharedSamples<'a, f32>> + 'a {
        let this = *self;
        (0..this.channels()).map_while(move |c| this.channel_f32(c))
    }
}
