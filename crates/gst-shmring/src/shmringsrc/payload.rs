//! Buffers made of frames: a frame wrapped where it lies in the ring (its
//! lease owns the memory, so when the last buffer referring to it goes,
//! on whatever thread, the ring space is released), or copied into a
//! buffer of GStreamer's default layout when the ring must not be held.
//!
//! The wrapped memory is handed to GStreamer as a pointer and a length
//! (`gst_memory_new_wrapped`), never as a Rust slice: a producer may
//! still write the record (see `shmring::SharedBytes`), which C code
//! reading it may see but which a `&[u8]` must not. The memory is
//! read-only: an element that wants to write gets a copy from GStreamer.

use std::ops::Range;

use gst::glib::translate::from_glib_full;
use gst::prelude::*;
use gst_video::prelude::*;
use gst_video::{VideoBufferPool, VideoInfo};
use shmring::SharedBytes;

use super::counters::Counters;
use super::ring_stream::RingLease;
use super::shape::{AudioShape, CapsKey, Shape, VideoShape};

/// A frame on its way to becoming a buffer.
pub enum Payload {
    /// The frame itself, leased from the ring.
    InPlace(RingLease),
    /// A copy in GStreamer's default layout.
    Copied(gst::Buffer),
}

/// Copies a frame's bytes out of the ring into a buffer of GStreamer's
/// default layout, from a pool kept for the current video caps.
#[derive(Default)]
pub struct Copier {
    pool: Option<(CapsKey, gst::BufferPool, VideoInfo)>,
}

impl Copier {
    /// A copy of the frame whose bytes are `bytes`, shaped as `shape`.
    pub fn copy(&mut self, bytes: SharedBytes<'_>, shape: &Shape) -> Result<gst::Buffer, gst::FlowError> {
        match shape {
            Shape::Video(video) => self.copy_video(bytes, video),
            Shape::Audio(audio) => copy_audio(bytes, audio),
        }
    }

    fn copy_video(&mut self, bytes: SharedBytes<'_>, shape: &VideoShape) -> Result<gst::Buffer, gst::FlowError> {
        let (pool, info) = self.pool_for(shape)?;
        let mut buffer = pool.acquire_buffer(None)?;
        {
            let buffer = buffer.get_mut().ok_or(gst::FlowError::Error)?;
            let mut frame =
                gst_video::VideoFrameRef::from_buffer_ref_writable(buffer, &info).map_err(|_| gst::FlowError::Error)?;
            for plane in 0..shape.planes() {
                let dst_stride = usize::try_from(frame.plane_stride()[plane]).map_err(|_| gst::FlowError::Error)?;
                let dst = frame.plane_data_mut(plane as u32).map_err(|_| gst::FlowError::Error)?;
                copy_plane(bytes, shape, plane, dst, dst_stride).ok_or(gst::FlowError::Error)?;
            }
        }
        Ok(buffer)
    }

    /// The pool for `shape`'s caps, made anew when they change.
    fn pool_for(&mut self, shape: &VideoShape) -> Result<(gst::BufferPool, VideoInfo), gst::FlowError> {
        let key = Shape::Video(shape.clone()).key();
        if let Some((current, pool, info)) = &self.pool {
            if *current == key {
                return Ok((pool.clone(), info.clone()));
            }
        }
        if let Some((_, old, _)) = self.pool.take() {
            let _ = old.set_active(false);
        }
        let info = shape.info(gst::Fraction::new(0, 1)).map_err(|_| gst::FlowError::NotNegotiated)?;
        let caps = info.to_caps().map_err(|_| gst::FlowError::NotNegotiated)?;
        let pool: gst::BufferPool = VideoBufferPool::new().upcast();
        let mut config = pool.config();
        config.set_params(Some(&caps), info.size() as u32, 2, 0);
        pool.set_config(config).map_err(|_| gst::FlowError::Error)?;
        pool.set_active(true).map_err(|_| gst::FlowError::Error)?;
        self.pool = Some((key, pool.clone(), info.clone()));
        Ok((pool, info))
    }

    /// Lets the pool go (the element stops).
    pub fn clear(&mut self) {
        if let Some((_, pool, _)) = self.pool.take() {
            let _ = pool.set_active(false);
        }
    }
}

/// Copies one plane row by row (or at once where both layouts agree).
fn copy_plane(
    bytes: SharedBytes<'_>,
    shape: &VideoShape,
    plane: usize,
    dst: &mut [u8],
    dst_stride: usize,
) -> Option<()> {
    let (row_bytes, rows) = shape.plane_geometry(plane);
    let src_stride = shape.stride(plane);
    let src_start = shape.range().start + shape.offsets()[plane];
    if src_stride == dst_stride {
        let len = src_stride * rows;
        bytes.get(src_start..src_start + len)?.copy_to_slice(dst.get_mut(..len)?);
        return Some(());
    }
    for row in 0..rows {
        let from = src_start + row * src_stride;
        let to = row * dst_stride;
        bytes.get(from..from + row_bytes)?.copy_to_slice(dst.get_mut(to..to + row_bytes)?);
    }
    Some(())
}

fn copy_audio(bytes: SharedBytes<'_>, shape: &AudioShape) -> Result<gst::Buffer, gst::FlowError> {
    let info = shape.info().map_err(|_| gst::FlowError::NotNegotiated)?;
    let plane = shape.plane_len();
    let offsets = shape.channel_offsets();
    let planes = offsets.len().max(1);
    let mut buffer = gst::Buffer::with_size(plane * planes).map_err(|_| gst::FlowError::Error)?;
    {
        let buffer = buffer.get_mut().ok_or(gst::FlowError::Error)?;
        {
            let mut map = buffer.map_writable().map_err(|_| gst::FlowError::Error)?;
            let start = shape.range().start;
            let sources = if offsets.is_empty() { vec![0] } else { offsets };
            for (channel, offset) in sources.iter().enumerate() {
                let from = start + offset;
                bytes
                    .get(from..from + plane)
                    .ok_or(gst::FlowError::Error)?
                    .copy_to_slice(&mut map[channel * plane..(channel + 1) * plane]);
            }
        }
        if info.layout() == gst_audio::AudioLayout::NonInterleaved {
            gst_audio::AudioMeta::add(buffer, &info, shape.samples, &[]).map_err(|_| gst::FlowError::Error)?;
        }
    }
    Ok(buffer)
}

/// A buffer of the frame `lease` holds, in place. `video_meta` says
/// whether downstream reads a `VideoMeta`; without one, a frame whose
/// planes are not where GStreamer expects them is copied instead (and
/// counted).
pub fn in_place(
    lease: RingLease,
    shape: &Shape,
    info: &NegotiatedInfo,
    video_meta: bool,
    copier: &mut Copier,
    counters: &Counters,
) -> Result<gst::Buffer, gst::FlowError> {
    match (shape, info) {
        (Shape::Video(video), NegotiatedInfo::Video(info)) => {
            let default = video.is_default_layout(info);
            if !default && !video_meta {
                Counters::bump(&counters.copied_layout);
                return copier.copy(lease.bytes(), shape);
            }
            Counters::bump(&counters.in_place);
            let mut buffer = gst::Buffer::new();
            {
                let buffer = buffer.get_mut().expect("a new buffer is writable");
                buffer.append_memory(wrap(lease, video.range()));
                if !default {
                    Counters::bump(&counters.video_meta);
                    gst_video::VideoMeta::add_full(
                        buffer,
                        gst_video::VideoFrameFlags::empty(),
                        video.gst_format(),
                        video.width,
                        video.height,
                        video.offsets(),
                        &video.strides(),
                    )
                    .map_err(|_| gst::FlowError::Error)?;
                }
            }
            Ok(buffer)
        }
        (Shape::Audio(audio), NegotiatedInfo::Audio(info)) => {
            Counters::bump(&counters.in_place);
            let mut buffer = gst::Buffer::new();
            {
                let buffer = buffer.get_mut().expect("a new buffer is writable");
                buffer.append_memory(wrap(lease, audio.range()));
                if info.layout() == gst_audio::AudioLayout::NonInterleaved {
                    gst_audio::AudioMeta::add(buffer, info, audio.samples, &audio.channel_offsets())
                        .map_err(|_| gst::FlowError::Error)?;
                }
            }
            Ok(buffer)
        }
        _ => Err(gst::FlowError::NotNegotiated),
    }
}

/// GStreamer's description of the negotiated caps.
#[derive(Clone, Debug)]
pub enum NegotiatedInfo {
    Video(VideoInfo),
    Audio(gst_audio::AudioInfo),
}

/// What a wrapped memory keeps alive until GStreamer frees it.
struct Owner {
    _lease: RingLease,
}

/// Memory over `range` of the leased record; dropping the last reference
/// to it drops the lease, which releases the record.
fn wrap(lease: RingLease, range: Range<usize>) -> gst::Memory {
    assert!(range.start <= range.end && range.end <= lease.len(), "range checked against the record by its shape");
    let data = lease.as_ptr().cast_mut();
    let max_size = lease.len();
    let owner = Box::into_raw(Box::new(Owner { _lease: lease }));
    // SAFETY: `data..data + max_size` is the leased record: mapped, and
    // neither unmapped nor reused while the lease lives (`shmring::Lease`),
    // and the lease lives in `owner` until GStreamer calls
    // `release_owner`, after the last user of the memory is gone.
    // `offset + size <= max_size` (asserted above), so the call cannot
    // fail and leak `owner`. READONLY: nothing in this process writes the
    // record through this memory (GStreamer copies for writers).
    unsafe {
        let memory = gst::ffi::gst_memory_new_wrapped(
            gst::ffi::GST_MEMORY_FLAG_READONLY,
            data.cast(),
            max_size,
            range.start,
            range.end - range.start,
            owner.cast(),
            Some(release_owner),
        );
        from_glib_full(memory)
    }
}

/// Called by GStreamer, once, when the wrapped memory is freed.
unsafe extern "C" fn release_owner(owner: gst::glib::ffi::gpointer) {
    // SAFETY: `owner` is the `Box<Owner>` leaked in `wrap`, handed back
    // exactly once by `gst_memory_new_wrapped`'s destroy notify.
    drop(unsafe { Box::from_raw(owner.cast::<Owner>()) });
}
