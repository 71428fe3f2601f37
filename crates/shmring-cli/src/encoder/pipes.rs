//! Frames on their way into ffmpeg's pipes. A video frame is written
//! straight from the ring (the record stays held until ffmpeg has taken
//! every byte), row ranges gathered with `writev`, never blocking: a full
//! pipe just leaves the rest for the next round. Ring bytes are handed to
//! the kernel as pointer + length, never borrowed as Rust slices (a
//! producer may still write them).

use std::collections::VecDeque;
use std::io;
use std::ops::Range;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::rc::Rc;

use shmring::{Frame, MappedRing, SharedBytes};
use shmring_media::{MediaError, PixelFormat, VideoFrame};

/// The bytes of one video frame as ffmpeg's rawvideo reads them: each
/// plane's rows without the ring's stride padding.
pub struct VideoSource<'c> {
    data: SourceData<'c>,
    chunks: Vec<Range<usize>>,
    len: usize,
}

enum SourceData<'c> {
    /// Still in the ring, borrowed in place.
    Ring(Frame<'c, MappedRing>),
    /// Copied out (see [`VideoSource::copy_out`]).
    Copied(Vec<u8>),
}

/// What the encoder needs to know of a video frame to place it.
#[derive(Clone, Copy, Debug)]
pub struct VideoInfo {
    pub stream_id: u32,
    pub timestamp_us: i64,
    pub frame_number: u64,
    pub width: u32,
    pub height: u32,
    pub format: PixelFormat,
}

impl<'c> VideoSource<'c> {
    /// Checks the video header of `frame` and keeps the frame, to be
    /// written from where it lies.
    pub fn parse(frame: Frame<'c, MappedRing>) -> Result<(VideoInfo, VideoSource<'c>), MediaError> {
        let (info, chunks) = {
            let view = VideoFrame::parse(&frame)?;
            let info = VideoInfo {
                stream_id: view.stream_id(),
                timestamp_us: view.timestamp_us(),
                frame_number: view.frame_number(),
                width: view.width(),
                height: view.height(),
                format: view.format(),
            };
            (info, packed_chunks(&view, frame.bytes().as_ptr() as usize))
        };
        let len = chunks.iter().map(|c| c.len()).sum();
        Ok((info, VideoSource { data: SourceData::Ring(frame), chunks, len }))
    }

    /// The frame's bytes, in the ring or copied out.
    fn bytes(&self) -> SharedBytes<'_> {
        match &self.data {
            SourceData::Ring(frame) => frame.bytes(),
            SourceData::Copied(bytes) => SharedBytes::from(&bytes[..]),
        }
    }

    /// Whether the frame still occupies ring space.
    pub fn in_the_ring(&self) -> bool {
        matches!(self.data, SourceData::Ring(_))
    }

    /// A copy that no longer holds the ring (for a frame kept only to be
    /// repeated, so that ring space behind it can be reused).
    pub fn copy_out(&self) -> VideoSource<'c> {
        let bytes = self.bytes();
        let mut packed = Vec::with_capacity(self.len);
        for chunk in &self.chunks {
            bytes.get(chunk.clone()).expect("chunks lie in the frame").append_to(&mut packed);
        }
        let whole = std::iter::once(0..self.len).collect();
        VideoSource { data: SourceData::Copied(packed), chunks: whole, len: self.len }
    }

    /// Bytes ffmpeg reads for this frame.
    pub fn len(&self) -> usize {
        self.len
    }
}

/// The byte ranges of each plane's rows in a payload starting at `base`,
/// adjacent ranges merged (one range per frame when strides have no
/// padding).
fn packed_chunks(view: &VideoFrame<'_>, base: usize) -> Vec<Range<usize>> {
    let mut chunks: Vec<Range<usize>> = Vec::new();
    let mut push = |range: Range<usize>| match chunks.last_mut() {
        Some(last) if last.end == range.start => last.end = range.end,
        _ => chunks.push(range),
    };
    for plane in 0..view.plane_count() {
        let (row_bytes, rows) =
            view.format().plane_geometry(plane, view.width(), view.height()).expect("plane within the count");
        let (row_bytes, rows) = (row_bytes as usize, rows as usize);
        // The view's planes are checked slices of the payload.
        let start = view.plane(plane).as_ptr() as usize - base;
        let stride = view.stride(plane);
        if stride == row_bytes {
            push(start..start + row_bytes * rows);
        } else {
            for row in 0..rows {
                let at = start + row * stride;
                push(at..at + row_bytes);
            }
        }
    }
    chunks
}

/// A frame to write `times` times (repeats fill slots of missed frames).
pub struct VideoWrite<'c> {
    pub source: Rc<VideoSource<'c>>,
    pub times: u64,
    /// Copies of a frame written before, not a frame from the ring.
    pub repeat: bool,
    /// Bytes of the current copy already written.
    written: usize,
}

impl<'c> VideoWrite<'c> {
    pub fn new(source: Rc<VideoSource<'c>>, times: u64) -> VideoWrite<'c> {
        VideoWrite { source, times, repeat: false, written: 0 }
    }

    /// `times` repeats of a frame already written.
    pub fn repeats(source: Rc<VideoSource<'c>>, times: u64) -> VideoWrite<'c> {
        VideoWrite { source, times, repeat: true, written: 0 }
    }
}

/// Most iovecs handed to one `writev`.
const IOVECS: usize = 64;

/// Bytes written into pipe `fd` that its reader has not read yet.
pub fn unread(fd: BorrowedFd<'_>) -> Option<u64> {
    let mut unread: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int, which we own.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::FIONREAD, &mut unread) } != 0 {
        return None;
    }
    Some(unread.max(0) as u64)
}

/// How video reaches a pipe. With `vmsplice` the pipe takes references
/// to the ring's own pages and no byte is copied on our side: ffmpeg's
/// `read` copies straight out of the ring. The ring must then not reuse
/// those pages until ffmpeg has read them, so each spliced frame stays held
/// until the pipe's read side has passed its last byte (`FIONREAD` tells
/// how much is still unread). Where the descriptor is not a pipe, `writev`
/// copies instead.
pub struct VideoPipe<'c> {
    splice: bool,
    /// Bytes handed to the pipe so far.
    written: u64,
    /// Spliced frames, with the byte count at which each ends.
    in_flight: VecDeque<(u64, Rc<VideoSource<'c>>)>,
}

impl<'c> VideoPipe<'c> {
    /// A writer that splices when `splice` (and the descriptor allows).
    pub fn new(splice: bool) -> VideoPipe<'c> {
        VideoPipe { splice, written: 0, in_flight: VecDeque::new() }
    }

    /// Whether frames are handed over without a copy.
    pub fn splicing(&self) -> bool {
        self.splice
    }

    /// Bytes handed to the pipe so far.
    pub fn bytes_written(&self) -> u64 {
        self.written
    }

    /// Spliced frames the reader has not finished reading.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Lets go of spliced frames the reader of `fd` has read past.
    pub fn reclaim(&mut self, fd: BorrowedFd<'_>) {
        if self.in_flight.is_empty() {
            return;
        }
        let Some(unread) = unread(fd) else { return };
        let read = self.written.saturating_sub(unread);
        while self.in_flight.front().is_some_and(|(end, _)| *end <= read) {
            self.in_flight.pop_front();
        }
    }

    /// Writes queued frames to `fd` until it would block. Returns the
    /// number of whole frames handed over.
    pub fn write(&mut self, fd: BorrowedFd<'_>, queue: &mut VecDeque<VideoWrite<'c>>) -> io::Result<u64> {
        let mut completed = 0;
        while let Some(front) = queue.front_mut() {
            let source = &front.source;
            let bytes = source.bytes();
            let mut iov = [libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 }; IOVECS];
            let mut count = 0;
            let mut skip = front.written;
            for chunk in &source.chunks {
                if skip >= chunk.len() {
                    skip -= chunk.len();
                    continue;
                }
                let part = bytes.get(chunk.start + skip..chunk.end).expect("chunks lie in the frame");
                skip = 0;
                iov[count] = libc::iovec { iov_base: part.as_ptr().cast_mut().cast(), iov_len: part.len() };
                count += 1;
                if count == IOVECS {
                    break;
                }
            }
            if count == 0 {
                // An empty frame (cannot happen for valid video): nothing to write.
                queue.pop_front();
                continue;
            }
            let n = if self.splice {
                // SAFETY: the iovecs point into `bytes` (ring memory the
                // source holds, or its copy), alive for the call; the kernel
                // takes the bytes as they are, whoever writes them.
                // Without SPLICE_F_GIFT the pipe only references the pages;
                // the frame is kept (in `in_flight`) until they are read.
                unsafe { libc::vmsplice(fd.as_raw_fd(), iov.as_ptr(), count, libc::SPLICE_F_NONBLOCK) }
            } else {
                // SAFETY: the iovecs point into `bytes`, which lives (borrowed
                // from the queue) for the whole call; writev only reads them,
                // as the bytes they are, whoever writes them.
                unsafe { libc::writev(fd.as_raw_fd(), iov.as_ptr(), count as libc::c_int) }
            };
            if n < 0 {
                let error = io::Error::last_os_error();
                match error.raw_os_error() {
                    Some(libc::EAGAIN) => return Ok(completed),
                    Some(libc::EINTR) => continue,
                    // Not a pipe (a file, a socket): copy instead.
                    Some(libc::EINVAL | libc::ENOSYS) if self.splice && front.written == 0 => {
                        self.splice = false;
                        continue;
                    }
                    _ => return Err(error),
                }
            }
            front.written += n as usize;
            self.written += n as u64;
            if front.written == source.len() {
                if self.splice {
                    self.in_flight.push_back((self.written, source.clone()));
                }
                front.written = 0;
                front.times -= 1;
                completed += 1;
                if front.times == 0 {
                    queue.pop_front();
                }
            }
        }
        Ok(completed)
    }
}

/// Bytes waiting for one pipe, written from the front.
#[derive(Default)]
pub struct ByteQueue {
    bytes: Vec<u8>,
    start: usize,
    written: u64,
}

impl ByteQueue {
    pub fn push(&mut self, data: &[u8]) {
        if self.start == self.bytes.len() {
            self.bytes.clear();
            self.start = 0;
        }
        self.bytes.extend_from_slice(data);
    }

    pub fn len(&self) -> usize {
        self.bytes.len() - self.start
    }

    /// Bytes written out so far.
    pub fn bytes_written(&self) -> u64 {
        self.written
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn clear(&mut self) {
        self.bytes.clear();
        self.start = 0;
    }

    /// Writes to `fd` until empty or it would block; returns bytes written.
    pub fn write_to(&mut self, fd: BorrowedFd<'_>) -> io::Result<usize> {
        let mut total = 0;
        while self.start < self.bytes.len() {
            let rest = &self.bytes[self.start..];
            // SAFETY: writes from a live slice we own.
            let n = unsafe { libc::write(fd.as_raw_fd(), rest.as_ptr().cast(), rest.len()) };
            if n < 0 {
                let error = io::Error::last_os_error();
                match error.kind() {
                    io::ErrorKind::WouldBlock => break,
                    io::ErrorKind::Interrupted => continue,
                    _ => return Err(error),
                }
            }
            self.start += n as usize;
            self.written += n as u64;
            total += n as usize;
        }
        if self.start == self.bytes.len() {
            self.clear();
        } else if self.start > (1 << 20) && self.start > self.bytes.len() / 2 {
            self.bytes.drain(..self.start);
            self.start = 0;
        }
        Ok(total)
    }
}
