//! `shmring.Frame`: one received record, leased from the ring and read in
//! place.
//!
//! The frame exports its record through the buffer protocol (read-only),
//! with itself as the exporter in `view.obj`, so every `memoryview`,
//! `numpy.frombuffer` array and typed view keeps the frame object alive.
//! The ring space is given back when the frame object goes (the last
//! borrower with it), or at `release()`, which is refused while any export
//! lives: no Python object can reach the record after its space is reused.

use std::os::raw::c_int;
use std::sync::{Arc, Mutex, MutexGuard};

use pyo3::exceptions::PyIndexError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyTuple};

use shmring::{Lease, MappedRing};
use shmring_media::{PixelFormat, SampleFormat};

use crate::arrays::{self, Element, Layout};
use crate::errors::raise;
use crate::media::{kind_name, pixel_format_name, sample_format_name, Audio, Media, Video};

/// A lease on a record of a memfd ring.
pub type RingLease = Lease<MappedRing>;

/// A received record: its bytes in place, its header, and its media fields.
#[pyclass(module = "shmring", name = "Frame", frozen)]
pub struct Frame {
    held: Mutex<Held>,
    media: Media,
    /// The announced label of the frame's stream (or an announcement's own).
    label: Option<Arc<str>>,
}

struct Held {
    /// `None` once released.
    lease: Option<RingLease>,
    /// Buffer exports alive (memoryviews, arrays).
    exports: usize,
}

fn released() -> PyErr {
    raise(|e| &e.released, "the frame was released: its bytes are no longer reachable")
}

fn not_media(what: &str, media: &Media, kind: u32) -> PyErr {
    match media {
        Media::Invalid(message) => raise(|e| &e.media_error, message.to_string()),
        _ => raise(|e| &e.media_error, format!("the record is {}, not {what}", kind_name(kind))),
    }
}

impl Frame {
    pub fn new(lease: RingLease, media: Media, label: Option<Arc<str>>) -> Frame {
        Frame { held: Mutex::new(Held { lease: Some(lease), exports: 0 }), media, label }
    }

    fn held(&self) -> MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(|poison| poison.into_inner())
    }

    /// `f` of the lease, or `Released`.
    fn with_lease<T>(&self, f: impl FnOnce(&RingLease) -> T) -> PyResult<T> {
        self.held().lease.as_ref().map(f).ok_or_else(released)
    }

    /// The media fields, once the frame is known not to be released.
    fn media(&self) -> PyResult<&Media> {
        self.with_lease(|_| &self.media)
    }

    fn video(&self) -> PyResult<&Video> {
        let kind = self.with_lease(|l| l.kind())?;
        match &self.media {
            Media::Video(video) => Ok(video),
            other => Err(not_media("video", other, kind)),
        }
    }

    fn audio(&self) -> PyResult<&Audio> {
        let kind = self.with_lease(|l| l.kind())?;
        match &self.media {
            Media::Audio(audio) => Ok(audio),
            other => Err(not_media("audio", other, kind)),
        }
    }

    /// An array over `layout` of this frame's record.
    fn array<'py, const N: usize>(slf: &Bound<'py, Self>, layout: &Layout<N>) -> PyResult<Bound<'py, PyAny>> {
        let (data, len) = slf.get().with_lease(|l| (l.as_ptr(), l.len()))?;
        // SAFETY: `data..data + len` is the record the frame exports (see
        // `__getbuffer__`), leased until the frame object goes and never
        // given back while an export (the array's base) lives.
        unsafe { arrays::borrow(slf.as_any(), data, len, layout) }
    }

    /// Plane `index` of a video frame, shaped by its format: rows x pixels
    /// for Y/U/V, rows x pairs x 2 for NV12's UV, rows x pixels x 4 for
    /// RGBA/BGRA.
    fn plane_array<'py>(slf: &Bound<'py, Self>, index: usize) -> PyResult<Bound<'py, PyAny>> {
        let video = slf.get().video()?;
        let count = video.format.plane_count();
        let Some(plane) = video.planes.get(index).filter(|_| index < count) else {
            return Err(PyIndexError::new_err(format!(
                "plane {index} of a {} frame, which has {count}",
                pixel_format_name(video.format)
            )));
        };
        let (offset, stride, rows) = (plane.offset, plane.stride, plane.rows);
        match (video.format, index) {
            (PixelFormat::Nv12, 1) => Self::array(
                slf,
                &Layout {
                    offset,
                    shape: [rows, plane.row_bytes / 2, 2],
                    strides: [stride, 2, 1],
                    element: Element::U8,
                },
            ),
            (PixelFormat::Rgba | PixelFormat::Bgra, _) => Self::array(
                slf,
                &Layout {
                    offset,
                    shape: [rows, plane.row_bytes / 4, 4],
                    strides: [stride, 4, 1],
                    element: Element::U8,
                },
            ),
            _ => Self::array(
                slf,
                &Layout { offset, shape: [rows, plane.row_bytes], strides: [stride, 1], element: Element::U8 },
            ),
        }
    }

    /// The plane of `format` at `index`, or an error naming what the frame is.
    fn named_plane<'py>(
        slf: &Bound<'py, Self>,
        name: &str,
        formats: &[PixelFormat],
        index: usize,
    ) -> PyResult<Bound<'py, PyAny>> {
        let format = slf.get().video()?.format;
        if !formats.contains(&format) {
            let message = format!("a {} frame has no {name} plane", pixel_format_name(format));
            return Err(raise(|e| &e.media_error, message));
        }
        Self::plane_array(slf, index)
    }
}

#[pymethods]
impl Frame {
    /// The record kind the producer set (`KIND_VIDEO`, `KIND_AUDIO`, ...).
    #[getter]
    fn kind(&self) -> PyResult<u32> {
        self.with_lease(|l| l.kind())
    }

    /// "video", "audio", "announce" or "other".
    #[getter]
    fn media_kind(&self) -> PyResult<&'static str> {
        self.with_lease(|l| kind_name(l.kind()))
    }

    /// The application flags the producer set.
    #[getter]
    fn flags(&self) -> PyResult<u32> {
        self.with_lease(|l| l.flags())
    }

    /// Absolute ring position of the record (unique over the ring's life).
    #[getter]
    fn position(&self) -> PyResult<u64> {
        self.with_lease(|l| l.position())
    }

    /// Producer-table slot of the producer that wrote it.
    #[getter]
    fn producer(&self) -> PyResult<u32> {
        self.with_lease(|l| l.producer())
    }

    /// That producer's sequence number for the record (drops leave gaps).
    #[getter]
    fn sequence(&self) -> PyResult<u64> {
        self.with_lease(|l| l.sequence())
    }

    /// Payload bytes.
    fn __len__(&self) -> PyResult<usize> {
        self.with_lease(|l| l.len())
    }

    /// Whether `release()` was called.
    #[getter]
    fn released(&self) -> bool {
        self.held().lease.is_none()
    }

    /// Buffer exports alive now (memoryviews and arrays over the frame).
    #[getter]
    fn exports(&self) -> usize {
        self.held().exports
    }

    /// The stream id of a media record (None for other kinds).
    #[getter]
    fn stream(&self) -> PyResult<Option<u32>> {
        Ok(self.media()?.stream())
    }

    /// The label announced for the frame's stream (an announcement's own
    /// label), or None if none was announced.
    #[getter]
    fn label(&self) -> PyResult<Option<String>> {
        self.media()?;
        Ok(self.label.as_deref().map(str::to_string))
    }

    /// Presentation time in microseconds (video, audio, announcements).
    #[getter]
    fn timestamp_us(&self) -> PyResult<i64> {
        let kind = self.with_lease(|l| l.kind())?;
        match &self.media {
            Media::Video(v) => Ok(v.timestamp_us),
            Media::Audio(a) => Ok(a.timestamp_us),
            Media::Announce(a) => Ok(a.timestamp_us),
            other => Err(not_media("media", other, kind)),
        }
    }

    /// The producer's per-stream counter (video and audio).
    #[getter]
    fn frame_number(&self) -> PyResult<u64> {
        let kind = self.with_lease(|l| l.kind())?;
        match &self.media {
            Media::Video(v) => Ok(v.frame_number),
            Media::Audio(a) => Ok(a.frame_number),
            other => Err(not_media("video or audio", other, kind)),
        }
    }

    /// Pixel format ("I420", "NV12", "RGBA", "BGRA") or sample format
    /// ("f32-planar", "s16-interleaved").
    #[getter]
    fn format(&self) -> PyResult<&'static str> {
        let kind = self.with_lease(|l| l.kind())?;
        match &self.media {
            Media::Video(v) => Ok(pixel_format_name(v.format)),
            Media::Audio(a) => Ok(sample_format_name(a.format)),
            other => Err(not_media("video or audio", other, kind)),
        }
    }

    /// For an announcement: the kind of stream it names ("video" or "audio").
    #[getter]
    fn announced_kind(&self) -> PyResult<&'static str> {
        let kind = self.with_lease(|l| l.kind())?;
        match &self.media {
            Media::Announce(a) => Ok(kind_name(a.kind)),
            other => Err(not_media("an announcement", other, kind)),
        }
    }

    /// Width in pixels.
    #[getter]
    fn width(&self) -> PyResult<u32> {
        Ok(self.video()?.width)
    }

    /// Height in pixels.
    #[getter]
    fn height(&self) -> PyResult<u32> {
        Ok(self.video()?.height)
    }

    /// (width, height).
    #[getter]
    fn size(&self) -> PyResult<(u32, u32)> {
        let video = self.video()?;
        Ok((video.width, video.height))
    }

    /// Bytes per row of each plane, as laid out in the ring.
    #[getter]
    fn strides<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        let video = self.video()?;
        let count = video.format.plane_count();
        PyTuple::new(py, video.planes[..count].iter().map(|p| p.stride))
    }

    /// Plane `index` as a read-only numpy array over the ring (no copy).
    fn plane<'py>(slf: &Bound<'py, Self>, index: usize) -> PyResult<Bound<'py, PyAny>> {
        Self::plane_array(slf, index)
    }

    /// Every plane, as `plane(i)` gives them.
    #[getter]
    fn planes<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyTuple>> {
        let count = slf.get().video()?.format.plane_count();
        let planes = (0..count).map(|i| Self::plane_array(slf, i)).collect::<PyResult<Vec<_>>>()?;
        PyTuple::new(slf.py(), planes)
    }

    /// The luma plane of an I420 or NV12 frame: height x width uint8.
    #[getter]
    fn y<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        Self::named_plane(slf, "Y", &[PixelFormat::I420, PixelFormat::Nv12], 0)
    }

    /// The U plane of an I420 frame.
    #[getter]
    fn u<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        Self::named_plane(slf, "U", &[PixelFormat::I420], 1)
    }

    /// The V plane of an I420 frame.
    #[getter]
    fn v<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        Self::named_plane(slf, "V", &[PixelFormat::I420], 2)
    }

    /// The interleaved chroma plane of an NV12 frame: rows x pairs x 2.
    #[getter]
    fn uv<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        Self::named_plane(slf, "UV", &[PixelFormat::Nv12], 1)
    }

    /// The pixels of an RGBA or BGRA frame: height x width x 4.
    #[getter]
    fn pixels<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        Self::named_plane(slf, "packed", &[PixelFormat::Rgba, PixelFormat::Bgra], 0)
    }

    /// Samples per second per channel.
    #[getter]
    fn sample_rate(&self) -> PyResult<u32> {
        Ok(self.audio()?.sample_rate)
    }

    /// Audio channels.
    #[getter]
    fn channels(&self) -> PyResult<u32> {
        Ok(self.audio()?.channels)
    }

    /// Samples per channel.
    #[getter]
    fn sample_count(&self) -> PyResult<u32> {
        Ok(self.audio()?.samples)
    }

    /// The samples as a read-only numpy array over the ring (no copy):
    /// channels x samples float32 (planar) or samples x channels int16
    /// (interleaved).
    #[getter]
    fn samples<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let audio = slf.get().audio()?;
        let (channels, count, offset) = (audio.channels as usize, audio.samples as usize, audio.data_offset);
        match audio.format {
            SampleFormat::F32Planar => Self::array(
                slf,
                &Layout { offset, shape: [channels, count], strides: [audio.channel_stride, 4], element: Element::F32 },
            ),
            SampleFormat::S16Interleaved => Self::array(
                slf,
                &Layout { offset, shape: [count, channels], strides: [2 * channels, 2], element: Element::I16 },
            ),
        }
    }

    /// A private copy of the payload.
    fn __bytes__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let held = self.held();
        let lease = held.lease.as_ref().ok_or_else(released)?;
        let bytes = lease.bytes();
        // Copied with the ring's atomic loads (never a reference to bytes a
        // producer may still write).
        PyBytes::new_with(py, bytes.len(), |out| {
            bytes.copy_to_slice(out);
            Ok(())
        })
    }

    /// Gives the record's space back to the ring now. Refused (`Exported`,
    /// a `BufferError`) while memoryviews or arrays over the frame are
    /// alive; afterwards every access to the frame raises `Released`.
    /// Releasing twice does nothing.
    fn release(&self) -> PyResult<()> {
        let mut held = self.held();
        if held.exports > 0 {
            let message = format!(
                "the frame is still borrowed by {} memoryview(s) or array(s): delete them (or release the \
                 memoryviews) first",
                held.exports
            );
            return Err(raise(|e| &e.exported, message));
        }
        drop(held.lease.take());
        Ok(())
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    /// Releases the frame (see `release`).
    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, _exc: &Bound<'_, PyTuple>) -> PyResult<bool> {
        self.release()?;
        Ok(false)
    }

    fn __repr__(&self) -> String {
        let held = self.held();
        let Some(lease) = held.lease.as_ref() else {
            return "<shmring.Frame released>".to_string();
        };
        let what = match &self.media {
            Media::Video(v) => format!(
                "video stream {} #{} {}x{} {}",
                v.stream,
                v.frame_number,
                v.width,
                v.height,
                pixel_format_name(v.format)
            ),
            Media::Audio(a) => format!(
                "audio stream {} #{} {} x {} Hz {}",
                a.stream,
                a.frame_number,
                a.samples,
                a.sample_rate,
                sample_format_name(a.format)
            ),
            Media::Announce(a) => format!("announcement of stream {} {:?}", a.stream_id, a.label),
            Media::Other => format!("kind {}", lease.kind()),
            Media::Invalid(message) => format!("kind {} (refused: {message})", lease.kind()),
        };
        format!("<shmring.Frame {what}, {} bytes at {}>", lease.len(), lease.position())
    }

    /// Exports the record, read-only, with this frame as the exporter.
    ///
    /// # Safety
    ///
    /// Called by CPython with a `Py_buffer` to fill.
    unsafe fn __getbuffer__(slf: Bound<'_, Self>, view: *mut ffi::Py_buffer, flags: c_int) -> PyResult<()> {
        let mut held = slf.get().held();
        let lease = held.lease.as_ref().ok_or_else(released)?;
        let (data, len) = (lease.as_ptr(), lease.len());
        // SAFETY: `view` is CPython's to fill; `data..data + len` is the
        // leased record, valid while the export lives (the lease is only
        // dropped by `release`, refused while `exports > 0`, or with the
        // frame object, which `view.obj` keeps alive). Read-only: a request
        // for a writable buffer fails with BufferError.
        let status = unsafe {
            ffi::PyBuffer_FillInfo(view, slf.as_ptr(), data.cast_mut().cast(), len as ffi::Py_ssize_t, 1, flags)
        };
        if status == -1 {
            return Err(PyErr::fetch(slf.py()));
        }
        held.exports += 1;
        Ok(())
    }

    /// # Safety
    ///
    /// Called by CPython when an export made by `__getbuffer__` ends.
    unsafe fn __releasebuffer__(&self, _view: *mut ffi::Py_buffer) {
        let mut held = self.held();
        held.exports = held.exports.saturating_sub(1);
    }
}
