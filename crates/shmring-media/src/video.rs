//! Video frames: the layout a writer gives a frame, the writers, and the
//! zero-copy view a consumer reads it through.

use std::ops::Range;

use shmring::{Backing, Frame, Producer, Reservation, SharedBytes};

use crate::error::MediaError;
use crate::format::{align_up, PixelFormat, KIND_VIDEO, MAX_DIMENSION, MAX_PLANES, MEDIA_ALIGN, MEDIA_VERSION};
use crate::format::{VIDEO_HEADER_SIZE, VIDEO_MAGIC};
use crate::sys::shmring_video_header;
use crate::wire;

/// Which stream a frame belongs to and where it sits in it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VideoMeta {
    /// The track (one per camera or screen share, as the producer numbers them).
    pub stream_id: u32,
    /// Presentation time in microseconds.
    pub timestamp_us: i64,
    /// Per-stream counter; a gap at the consumer is a dropped frame.
    pub frame_number: u64,
}

/// Where each plane of a frame lies in the payload, as a writer lays it
/// out: the header, then the planes back to back, each at a 64-byte aligned
/// offset with a stride rounded up to 64 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VideoLayout {
    format: PixelFormat,
    width: u32,
    height: u32,
    offsets: [u32; MAX_PLANES],
    strides: [u32; MAX_PLANES],
    rows: [u32; MAX_PLANES],
    len: usize,
}

impl VideoLayout {
    /// The layout of a `width` x `height` frame in `format`.
    pub fn new(format: PixelFormat, width: u32, height: u32) -> Result<VideoLayout, MediaError> {
        if width == 0 || height == 0 || width > MAX_DIMENSION || height > MAX_DIMENSION {
            return Err(MediaError::BadDimensions { width, height });
        }
        let mut layout = VideoLayout {
            format,
            width,
            height,
            offsets: [0; MAX_PLANES],
            strides: [0; MAX_PLANES],
            rows: [0; MAX_PLANES],
            len: 0,
        };
        let mut end = VIDEO_HEADER_SIZE as u64;
        for plane in 0..format.plane_count() {
            let (row_bytes, rows) = format.plane_geometry(plane, width, height).expect("plane within the count");
            let stride = align_up(row_bytes);
            // Dimensions are at most 2^15, so a plane is at most 2^32 bytes
            // and the sum cannot overflow a u64.
            layout.offsets[plane] =
                u32::try_from(end).map_err(|_| MediaError::InvalidInput { reason: "frame larger than 4 GiB" })?;
            layout.strides[plane] = stride as u32;
            layout.rows[plane] = rows as u32;
            end += stride * rows;
        }
        layout.len = usize::try_from(end).map_err(|_| MediaError::InvalidInput { reason: "frame too large" })?;
        Ok(layout)
    }

    /// Pixel format.
    pub fn format(&self) -> PixelFormat {
        self.format
    }
    /// Width in pixels.
    pub fn width(&self) -> u32 {
        self.width
    }
    /// Height in pixels.
    pub fn height(&self) -> u32 {
        self.height
    }
    /// Payload bytes of the whole record (header and planes).
    pub fn payload_len(&self) -> usize {
        self.len
    }
    /// Bytes per row of `plane` in the ring (0 past the last plane).
    pub fn stride(&self, plane: usize) -> usize {
        self.strides.get(plane).map_or(0, |&s| s as usize)
    }
    /// Rows of `plane` (0 past the last plane).
    pub fn rows(&self, plane: usize) -> usize {
        self.rows.get(plane).map_or(0, |&r| r as usize)
    }
    /// Bytes of `plane` within the payload (empty past the last plane).
    pub fn plane_range(&self, plane: usize) -> Range<usize> {
        if plane >= self.format.plane_count() {
            return 0..0;
        }
        let start = self.offsets[plane] as usize;
        start..start + self.stride(plane) * self.rows(plane)
    }

    fn header(&self, meta: &VideoMeta) -> shmring_video_header {
        shmring_video_header {
            magic: VIDEO_MAGIC,
            version: MEDIA_VERSION,
            header_size: VIDEO_HEADER_SIZE as u16,
            stream_id: meta.stream_id,
            pixel_format: self.format as u32,
            timestamp_us: meta.timestamp_us,
            frame_number: meta.frame_number,
            width: self.width,
            height: self.height,
            plane_count: self.format.plane_count() as u32,
            plane_offset: self.offsets,
            plane_stride: self.strides,
            ..Default::default()
        }
    }
}

/// A video record reserved in the ring, header written, planes to be
/// filled in place (convert or scale straight into them), then committed.
/// Dropping it without [`commit`](VideoSlot::commit) publishes a skip
/// record, which the consumer never sees as a frame.
pub struct VideoSlot<'p, B: Backing> {
    reservation: Reservation<'p, B>,
    layout: VideoLayout,
}

impl<B: Backing> VideoSlot<'_, B> {
    /// The frame's layout (strides and rows of each plane).
    pub fn layout(&self) -> &VideoLayout {
        &self.layout
    }

    /// Bytes per row of `plane` in the slot.
    pub fn stride(&self, plane: usize) -> usize {
        self.layout.stride(plane)
    }

    /// One plane, `stride(plane) * rows(plane)` bytes (empty past the last).
    pub fn plane_mut(&mut self, plane: usize) -> &mut [u8] {
        let range = self.layout.plane_range(plane);
        &mut self.reservation[range]
    }

    /// All planes at once (entries past the format's plane count are
    /// empty), e.g. `let [y, u, v, _] = slot.planes_mut();` for I420.
    pub fn planes_mut(&mut self) -> [&mut [u8]; MAX_PLANES] {
        let layout = self.layout;
        let mut planes: [&mut [u8]; MAX_PLANES] = Default::default();
        // The planes are in offset order and do not overlap (see
        // `VideoLayout::new`), so one pass of splits hands each out.
        let mut rest: &mut [u8] = &mut self.reservation;
        let mut consumed = 0;
        for (plane, out) in planes.iter_mut().enumerate().take(layout.format.plane_count()) {
            let range = layout.plane_range(plane);
            let tail = std::mem::take(&mut rest);
            let (_, tail) = tail.split_at_mut(range.start - consumed);
            let (this, tail) = tail.split_at_mut(range.len());
            *out = this;
            rest = tail;
            consumed = range.end;
        }
        planes
    }

    /// Publishes the frame.
    pub fn commit(self) {
        self.reservation.commit();
    }
}

/// Claims a video record for a frame of `format` and size, writes its
/// header and hands out the planes to fill. On a full ring the producer's
/// policy applies (by default the frame is dropped and counted:
/// [`MediaError::Ring`] with [`shmring::Error::Dropped`]).
pub fn reserve_video<'p, B: Backing>(
    producer: &'p mut Producer<B>,
    meta: &VideoMeta,
    format: PixelFormat,
    width: u32,
    height: u32,
) -> Result<VideoSlot<'p, B>, MediaError> {
    let layout = VideoLayout::new(format, width, height)?;
    let mut reservation = producer.reserve(layout.payload_len())?;
    reservation.set_kind(KIND_VIDEO);
    wire::write(&mut reservation, &layout.header(meta));
    Ok(VideoSlot { reservation, layout })
}

/// Three I420 planes in caller memory, with their strides. A plane may end
/// right after its last pixel (the last row need not be padded to stride).
#[derive(Clone, Copy, Debug)]
pub struct I420Planes<'a> {
    pub width: u32,
    pub height: u32,
    pub y: &'a [u8],
    pub y_stride: usize,
    pub u: &'a [u8],
    pub u_stride: usize,
    pub v: &'a [u8],
    pub v_stride: usize,
}

/// Copies an I420 frame into the ring as one video record (one copy: the
/// planes go straight into the reserved slot).
pub fn write_video_i420<B: Backing>(
    producer: &mut Producer<B>,
    meta: &VideoMeta,
    planes: &I420Planes<'_>,
) -> Result<(), MediaError> {
    let format = PixelFormat::I420;
    let layout = VideoLayout::new(format, planes.width, planes.height)?;
    let sources = [(planes.y, planes.y_stride), (planes.u, planes.u_stride), (planes.v, planes.v_stride)];
    for (plane, &(src, stride)) in sources.iter().enumerate() {
        let (row_bytes, rows) = format.plane_geometry(plane, planes.width, planes.height).expect("I420 plane");
        check_source(src, stride, row_bytes as usize, rows as usize)?;
    }
    let mut slot = reserve_video(producer, meta, format, planes.width, planes.height)?;
    let [y, u, v, _] = slot.planes_mut();
    for (plane, (dst, &(src, src_stride))) in [y, u, v].into_iter().zip(sources.iter()).enumerate() {
        let (row_bytes, rows) = format.plane_geometry(plane, planes.width, planes.height).expect("I420 plane");
        copy_plane(dst, layout.stride(plane), src, src_stride, row_bytes as usize, rows as usize);
    }
    slot.commit();
    Ok(())
}

fn check_source(src: &[u8], stride: usize, row_bytes: usize, rows: usize) -> Result<(), MediaError> {
    if stride < row_bytes {
        return Err(MediaError::InvalidInput { reason: "stride shorter than a row" });
    }
    let needed = stride.checked_mul(rows - 1).and_then(|n| n.checked_add(row_bytes));
    match needed {
        Some(needed) if needed <= src.len() => Ok(()),
        _ => Err(MediaError::InvalidInput { reason: "plane shorter than stride * (rows - 1) + row bytes" }),
    }
}

/// Copies `rows` rows of `row_bytes` between buffers of different strides;
/// one `memcpy` when the strides agree.
fn copy_plane(dst: &mut [u8], dst_stride: usize, src: &[u8], src_stride: usize, row_bytes: usize, rows: usize) {
    if rows == 0 {
        return;
    }
    if dst_stride == src_stride {
        let n = src_stride * (rows - 1) + row_bytes;
        dst[..n].copy_from_slice(&src[..n]);
        return;
    }
    for (d, s) in dst.chunks_mut(dst_stride).zip(src.chunks(src_stride)).take(rows) {
        d[..row_bytes].copy_from_slice(&s[..row_bytes]);
    }
}

/// A video frame read in place: the header's fields, copied out once and
/// checked, and its planes as [`SharedBytes`] of the record.
///
/// The geometry (size, format, offsets, strides) is the checked copy's: a
/// producer that rewrites the header afterwards changes nothing here, and
/// every plane and row stays inside the record. Pixels are read where they
/// lie, by copy ([`SharedBytes::copy_to_slice`]) or handed on as pointer +
/// length; a producer writing them meanwhile changes the pixels copied,
/// never where they are read from.
///
/// A plane is not a `&[u8]`:
///
/// ```compile_fail,E0308
/// # use shmring::{Consumer, RingOptions};
/// # use shmring_media::{reserve_video, PixelFormat, VideoFrame, VideoMeta};
/// # let consumer = Consumer::create_anonymous(&RingOptions::with_capacity(1 << 20))?;
/// # let mut producer = consumer.producer()?;
/// # reserve_video(&mut producer, &VideoMeta::default(), PixelFormat::Rgba, 8, 8)?.commit();
/// let frame = consumer.recv()?;
/// let video = VideoFrame::parse(&frame)?;
/// let pixels: &[u8] = video.plane(0);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug)]
pub struct VideoFrame<'a> {
    header: shmring_video_header,
    format: PixelFormat,
    /// The whole record; each plane's range in it comes from the checked
    /// header copy.
    payload: SharedBytes<'a>,
}

impl<'a> VideoFrame<'a> {
    /// Reads a ring record of kind [`KIND_VIDEO`].
    pub fn parse<B: Backing>(frame: &'a Frame<'_, B>) -> Result<VideoFrame<'a>, MediaError> {
        if frame.kind() != KIND_VIDEO {
            return Err(MediaError::WrongKind { found: frame.kind(), expected: KIND_VIDEO });
        }
        VideoFrame::from_bytes(frame.bytes())
    }

    /// Reads a video payload (a ring record's [`SharedBytes`], or private
    /// bytes). The header is copied out once; every field of that copy is
    /// checked against the payload's length: planes lie after the header,
    /// inside the payload, do not overlap, sit at 64-byte aligned offsets
    /// with 64-byte aligned strides at least one row of pixels wide.
    pub fn from_payload(payload: impl Into<SharedBytes<'a>>) -> Result<VideoFrame<'a>, MediaError> {
        VideoFrame::from_bytes(payload.into())
    }

    fn from_bytes(payload: SharedBytes<'a>) -> Result<VideoFrame<'a>, MediaError> {
        let header: shmring_video_header = wire::read::<_, VIDEO_HEADER_SIZE>(payload)
            .ok_or_else(|| MediaError::Truncated { needed: VIDEO_HEADER_SIZE as u64, len: payload.len() })?;
        if header.magic != VIDEO_MAGIC {
            return Err(MediaError::BadMagic { found: header.magic, expected: VIDEO_MAGIC });
        }
        if header.version != MEDIA_VERSION {
            return Err(MediaError::BadVersion { found: header.version, expected: MEDIA_VERSION });
        }
        let header_size = usize::from(header.header_size);
        if header_size < VIDEO_HEADER_SIZE || header_size > payload.len() {
            return Err(MediaError::BadHeaderSize { found: header.header_size });
        }
        let format =
            PixelFormat::from_raw(header.pixel_format).ok_or(MediaError::UnknownPixelFormat(header.pixel_format))?;
        let (width, height) = (header.width, header.height);
        if width == 0 || height == 0 || width > MAX_DIMENSION || height > MAX_DIMENSION {
            return Err(MediaError::BadDimensions { width, height });
        }
        let count = format.plane_count();
        if header.plane_count as usize != count {
            return Err(MediaError::BadPlaneCount { found: header.plane_count, expected: count as u32 });
        }
        let mut ranges = [(0u64, 0u64, 0usize); MAX_PLANES];
        for (plane, range) in ranges.iter_mut().enumerate() {
            let (offset, stride) = (u64::from(header.plane_offset[plane]), u64::from(header.plane_stride[plane]));
            let bad = |reason| MediaError::BadPlane { plane, reason };
            let Some((row_bytes, rows)) = format.plane_geometry(plane, width, height) else {
                if offset != 0 || stride != 0 {
                    return Err(bad("offset or stride set for a plane the format does not have"));
                }
                continue;
            };
            if offset < header_size as u64 {
                return Err(bad("plane starts inside the header"));
            }
            if offset % MEDIA_ALIGN as u64 != 0 || stride % MEDIA_ALIGN as u64 != 0 {
                return Err(bad("offset or stride not a multiple of 64"));
            }
            if stride < row_bytes {
                return Err(bad("stride shorter than a row of pixels"));
            }
            // Both factors are below 2^32 and 2^16: no overflow in u64.
            let end = offset + stride * rows;
            if end > payload.len() as u64 {
                return Err(MediaError::Truncated { needed: end, len: payload.len() });
            }
            *range = (offset, end, plane);
        }
        let used = &mut ranges[..count];
        used.sort_unstable();
        if let Some(pair) = used.windows(2).find(|pair| pair[0].1 > pair[1].0) {
            return Err(MediaError::BadPlane { plane: pair[1].2, reason: "planes overlap" });
        }
        Ok(VideoFrame { header, format, payload })
    }

    /// The header as it was read (and checked).
    pub fn header(&self) -> &shmring_video_header {
        &self.header
    }
    /// Which track the frame belongs to.
    pub fn stream_id(&self) -> u32 {
        self.header.stream_id
    }
    /// Presentation time in microseconds.
    pub fn timestamp_us(&self) -> i64 {
        self.header.timestamp_us
    }
    /// Per-stream counter set by the writer.
    pub fn frame_number(&self) -> u64 {
        self.header.frame_number
    }
    /// Width in pixels.
    pub fn width(&self) -> u32 {
        self.header.width
    }
    /// Height in pixels.
    pub fn height(&self) -> u32 {
        self.header.height
    }
    /// Pixel format.
    pub fn format(&self) -> PixelFormat {
        self.format
    }
    /// Planes of the format.
    pub fn plane_count(&self) -> usize {
        self.format.plane_count()
    }
    /// `plane` as `stride * rows` bytes of the record (empty past the last).
    pub fn plane(&self, plane: usize) -> SharedBytes<'a> {
        let Some((_, rows)) = self.format.plane_geometry(plane, self.width(), self.height()) else {
            return SharedBytes::from(&[][..]);
        };
        // Offset, stride and rows were checked in `from_payload` to fit the
        // payload (all below 2^32, 2^32 and 2^16: no overflow).
        let start = self.header.plane_offset[plane] as usize;
        let end = start + self.header.plane_stride[plane] as usize * rows as usize;
        self.payload.get(start..end).unwrap_or(SharedBytes::from(&[][..]))
    }
    /// Bytes per row of `plane` (0 past the last).
    pub fn stride(&self, plane: usize) -> usize {
        if plane < self.plane_count() {
            self.header.plane_stride[plane] as usize
        } else {
            0
        }
    }
    /// Row `row` of `plane`, exactly as many bytes as the row has pixels'
    /// worth (no stride padding), or `None` past the plane.
    pub fn row(&self, plane: usize, row: usize) -> Option<SharedBytes<'a>> {
        let (row_bytes, rows) = self.format.plane_geometry(plane, self.width(), self.height())?;
        if row as u64 >= rows {
            return None;
        }
        let start = row * self.stride(plane);
        self.plane(plane).get(start..start + row_bytes as usize)
    }
    /// The luma plane (I420, NV12) or the only plane (RGBA, BGRA).
    pub fn y(&self) -> SharedBytes<'a> {
        self.plane(0)
    }
    /// The U plane (I420), or the interleaved UV plane (NV12).
    pub fn u(&self) -> SharedBytes<'a> {
        self.plane(1)
    }
    /// The V plane (I420; empty for other formats).
    pub fn v(&self) -> SharedBytes<'a> {
        self.plane(2)
    }
    /// Stride of [`y`](Self::y).
    pub fn y_stride(&self) -> usize {
        self.stride(0)
    }
    /// Stride of [`u`](Self::u).
    pub fn u_stride(&self) -> usize {
        self.stride(1)
    }
    /// Stride of [`v`](Self::v).
    pub fn v_stride(&self) -> usize {
        self.stride(2)
    }
}
