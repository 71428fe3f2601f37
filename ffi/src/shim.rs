//! What the bridge's functions do: attach, write, reserve, count.

use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use shmring::{Backing, MappedRing, RingFds};
use shmring_media::{
    AudioMeta, AudioSamples, AudioSlot, I420Planes, MediaError, PixelFormat, SampleFormat, VideoMeta, VideoSlot,
    MAX_CHANNELS, MAX_PLANES,
};

use crate::bridge::{AudioDesc, Counters, Status, VideoDesc};
use crate::lanes::{LaneCounters, LaneGuard, Lanes};

/// A thread-safe producer handle (see the crate docs).
pub struct ShimProducer {
    lanes: Result<Arc<Lanes>, Status>,
}

pub(crate) fn attach_spec(spec: &[u8]) -> Box<ShimProducer> {
    let lanes = std::str::from_utf8(spec)
        .map_err(|_| Status::AttachFailed)
        // SAFETY: the C++ caller hands over the descriptors the spec names
        // (documented in producer.h); `from_spec` checks they are open.
        .and_then(|spec| unsafe { RingFds::from_spec(spec) }.map_err(|_| Status::AttachFailed))
        .and_then(|fds| Lanes::attach(fds).map_err(|_| Status::AttachFailed));
    Box::new(ShimProducer { lanes })
}

pub(crate) fn attach_fds(memfd: i32, data_sem: i32, space_sem: i32) -> Box<ShimProducer> {
    let numbers = [memfd, data_sem, space_sem];
    if numbers[1..].contains(&memfd) || data_sem == space_sem {
        // One descriptor named twice cannot be a ring, and owning it twice
        // would close it twice (the second time perhaps closing whatever
        // the process opened since under that number). The caller handed
        // each over: close each distinct one once.
        let mut distinct = numbers;
        distinct.sort_unstable();
        for (i, &fd) in distinct.iter().enumerate() {
            // SAFETY: F_GETFD only asks whether `fd` is open.
            if fd >= 0 && distinct[..i].last() != Some(&fd) && unsafe { libc::fcntl(fd, libc::F_GETFD) } >= 0 {
                // SAFETY: the caller gave up this descriptor to the shim
                // (producer.h), and it is taken here exactly once.
                drop(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
        return Box::new(ShimProducer { lanes: Err(Status::AttachFailed) });
    }
    attach_spec(format!("{memfd}:{data_sem}:{space_sem}").as_bytes())
}

fn status_of(error: &MediaError, counters: &LaneCounters) -> Status {
    let (status, counter) = match error {
        MediaError::Ring(shmring::Error::Dropped | shmring::Error::Timeout | shmring::Error::Full) => {
            (Status::Dropped, &counters.dropped_full)
        }
        MediaError::Ring(shmring::Error::ConsumerGone { .. }) => (Status::ConsumerGone, &counters.consumer_gone),
        MediaError::Ring(shmring::Error::TooLarge { .. }) => (Status::TooLarge, &counters.invalid),
        MediaError::Ring(_) => (Status::Error, &counters.errors),
        _ => (Status::InvalidArgument, &counters.invalid),
    };
    counter.fetch_add(1, Ordering::Relaxed);
    status
}

impl ShimProducer {
    pub(crate) fn status(&self) -> Status {
        match &self.lanes {
            Ok(_) => Status::Ok,
            Err(status) => *status,
        }
    }

    // `max_payload`, `prefault` and `counters` are about the handle, not a
    // frame: they read the lanes' shared mapping and never claim a lane, so
    // they work (and count no drop) while every lane is writing.

    pub(crate) fn max_payload(&self) -> u64 {
        self.lanes.as_ref().map_or(0, |lanes| lanes.ring.geometry().max_payload)
    }

    pub(crate) fn prefault(&self) -> Status {
        let Ok(lanes) = &self.lanes else { return Status::NotAttached };
        // Faulting in the shared mapping once covers every lane that did
        // not have to map the ring on its own (see `lanes`).
        match lanes.ring.prefault() {
            Ok(()) => Status::Ok,
            Err(e) => status_of(&MediaError::from(e), &lanes.counters),
        }
    }

    /// Runs `f` on a claimed lane; maps every failure to a status.
    fn with_lane<T>(&self, f: impl FnOnce(&mut LaneGuard) -> Result<T, MediaError>) -> Result<T, Status> {
        let lanes = self.lanes.as_ref().map_err(|_| Status::NotAttached)?;
        let Some(mut guard) = lanes.claim() else {
            lanes.counters.dropped_busy.fetch_add(1, Ordering::Relaxed);
            return Err(Status::LanesBusy);
        };
        f(&mut guard).map_err(|e| status_of(&e, &lanes.counters))
    }

    fn count_frame(&self, bytes: usize) -> Status {
        if let Ok(lanes) = &self.lanes {
            lanes.counters.frames.fetch_add(1, Ordering::Relaxed);
            lanes.counters.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
        }
        Status::Ok
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn write_i420(
        &self,
        desc: &VideoDesc,
        y: &[u8],
        y_stride: u32,
        u: &[u8],
        u_stride: u32,
        v: &[u8],
        v_stride: u32,
    ) -> Status {
        let planes = I420Planes {
            width: desc.width,
            height: desc.height,
            y,
            y_stride: y_stride as usize,
            u,
            u_stride: u_stride as usize,
            v,
            v_stride: v_stride as usize,
        };
        let meta = video_meta(desc);
        let written = self.with_lane(|guard| {
            let producer = guard.producer()?;
            shmring_media::write_video_i420(producer, &meta, &planes)
        });
        match written {
            Ok(()) => self.count_frame(y.len() + u.len() + v.len()),
            Err(status) => status,
        }
    }

    pub(crate) fn write_audio_s16(&self, desc: &AudioDesc, samples: &[i16]) -> Status {
        if desc.channels == 0 || samples.len() != desc.channels as usize * desc.frame_count as usize {
            return self.invalid();
        }
        let meta = audio_meta(desc);
        let written = self.with_lane(|guard| {
            let samples = AudioSamples::S16Interleaved { channels: desc.channels, samples };
            shmring_media::write_audio(guard.producer()?, &meta, samples)
        });
        match written {
            Ok(()) => self.count_frame(samples.len() * 2),
            Err(status) => status,
        }
    }

    pub(crate) fn announce(&self, stream_id: u32, kind: u32, label: &[u8]) -> Status {
        let Ok(label) = std::str::from_utf8(label) else {
            return self.invalid();
        };
        let timestamp_us =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64);
        let announcement = shmring_media::Announcement { stream_id, kind, timestamp_us, label: label.to_string() };
        if announcement.to_payload().is_err() {
            return self.invalid();
        }
        match self.with_lane(|guard| shmring_media::write_announce(guard.producer()?, &announcement)) {
            Ok(()) => Status::Ok,
            Err(status) => status,
        }
    }

    pub(crate) fn write_audio_f32_planar(&self, desc: &AudioDesc, samples: &[f32]) -> Status {
        let frames = desc.frame_count as usize;
        if desc.channels == 0 || desc.channels > MAX_CHANNELS || samples.len() != desc.channels as usize * frames {
            return self.invalid();
        }
        let meta = audio_meta(desc);
        let written = self.with_lane(|guard| {
            let mut planes: [&[f32]; MAX_CHANNELS as usize] = [&[]; MAX_CHANNELS as usize];
            for (plane, chunk) in planes.iter_mut().zip(samples.chunks_exact(frames.max(1))) {
                *plane = chunk;
            }
            let samples = AudioSamples::F32Planar(&planes[..desc.channels as usize]);
            shmring_media::write_audio(guard.producer()?, &meta, samples)
        });
        match written {
            Ok(()) => self.count_frame(samples.len() * 4),
            Err(status) => status,
        }
    }

    fn invalid(&self) -> Status {
        if let Ok(lanes) = &self.lanes {
            lanes.counters.invalid.fetch_add(1, Ordering::Relaxed);
        }
        Status::InvalidArgument
    }

    /// Claims a lane for a reservation that outlives this call.
    fn claim(&self) -> Result<LaneGuard, Status> {
        let lanes = self.lanes.as_ref().map_err(|_| Status::NotAttached)?;
        lanes.claim().ok_or_else(|| {
            lanes.counters.dropped_busy.fetch_add(1, Ordering::Relaxed);
            Status::LanesBusy
        })
    }

    pub(crate) fn reserve_video(&self, desc: &VideoDesc) -> Box<ShimVideoSlot> {
        let Some(format) = PixelFormat::from_raw(desc.pixel_format) else {
            return Box::new(ShimVideoSlot::empty(self.invalid()));
        };
        let mut lane = match self.claim() {
            Ok(lane) => lane,
            Err(status) => return Box::new(ShimVideoSlot::empty(status)),
        };
        // SAFETY: the producer is used only by the `VideoSlot` made here,
        // which `HeldVideo` stores beside `lane` and drops before it.
        let reserved = unsafe { lane.producer_detached() }.map_err(MediaError::from).and_then(|producer| {
            shmring_media::reserve_video(producer, &video_meta(desc), format, desc.width, desc.height)
        });
        Box::new(match reserved {
            Ok(slot) => ShimVideoSlot::holding(slot, lane),
            Err(e) => ShimVideoSlot::empty(status_of(&e, lane.counters())),
        })
    }

    pub(crate) fn reserve_audio(&self, desc: &AudioDesc) -> Box<ShimAudioSlot> {
        let Some(format) = SampleFormat::from_raw(desc.sample_format) else {
            return Box::new(ShimAudioSlot::empty(self.invalid()));
        };
        let mut lane = match self.claim() {
            Ok(lane) => lane,
            Err(status) => return Box::new(ShimAudioSlot::empty(status)),
        };
        // SAFETY: as in `reserve_video`, with `HeldAudio`.
        let reserved = unsafe { lane.producer_detached() }.map_err(MediaError::from).and_then(|producer| {
            shmring_media::reserve_audio(producer, &audio_meta(desc), format, desc.channels, desc.frame_count)
        });
        Box::new(match reserved {
            Ok(slot) => ShimAudioSlot::holding(slot, lane),
            Err(e) => ShimAudioSlot::empty(status_of(&e, lane.counters())),
        })
    }

    pub(crate) fn counters(&self) -> Counters {
        let Ok(lanes) = &self.lanes else { return Counters::default() };
        let c = &lanes.counters;
        let r = Ordering::Relaxed;
        let mut counters = Counters {
            frames: c.frames.load(r),
            bytes: c.bytes.load(r),
            dropped_full: c.dropped_full.load(r),
            dropped_busy: c.dropped_busy.load(r),
            consumer_gone: c.consumer_gone.load(r),
            invalid: c.invalid.load(r),
            errors: c.errors.load(r),
            lanes_attached: c.lanes_attached.load(r),
            ..Counters::default()
        };
        let stats = lanes.ring.stats();
        counters.ring_valid = true;
        counters.ring_committed_frames = stats.committed_frames;
        counters.ring_consumed_frames = stats.consumed_frames;
        counters.ring_drops = stats.drops;
        counters.ring_capacity = stats.capacity;
        counters
    }
}

fn video_meta(desc: &VideoDesc) -> VideoMeta {
    VideoMeta { stream_id: desc.stream_id, timestamp_us: desc.timestamp_us, frame_number: desc.frame_number }
}

fn audio_meta(desc: &AudioDesc) -> AudioMeta {
    AudioMeta {
        stream_id: desc.stream_id,
        timestamp_us: desc.timestamp_us,
        frame_number: desc.frame_number,
        sample_rate: desc.sample_rate,
    }
}

/// A reservation and the lane it was made on. Field order matters: the
/// slot (which borrows the lane's producer) drops first.
struct HeldVideo {
    slot: VideoSlot<'static, MappedRing>,
    lane: LaneGuard,
}

/// A video record reserved for C++ to fill in place.
pub struct ShimVideoSlot {
    held: Option<HeldVideo>,
    status: Status,
    /// Start, length and stride of each plane, taken once from the slot.
    planes: [(*mut u8, usize, usize); MAX_PLANES],
}

impl ShimVideoSlot {
    fn empty(status: Status) -> ShimVideoSlot {
        ShimVideoSlot { held: None, status, planes: [(std::ptr::null_mut(), 0, 0); MAX_PLANES] }
    }

    fn holding(mut slot: VideoSlot<'static, MappedRing>, lane: LaneGuard) -> ShimVideoSlot {
        let mut planes = [(std::ptr::null_mut(), 0, 0); MAX_PLANES];
        let strides: [usize; MAX_PLANES] = std::array::from_fn(|i| slot.stride(i));
        for (i, plane) in slot.planes_mut().into_iter().enumerate() {
            if !plane.is_empty() {
                planes[i] = (plane.as_mut_ptr(), plane.len(), strides[i]);
            }
        }
        ShimVideoSlot { held: Some(HeldVideo { slot, lane }), status: Status::Ok, planes }
    }

    pub(crate) fn status(&self) -> Status {
        self.status
    }

    pub(crate) fn plane(&self, plane: usize) -> *mut u8 {
        self.planes.get(plane).map_or(std::ptr::null_mut(), |p| p.0)
    }

    pub(crate) fn plane_len(&self, plane: usize) -> usize {
        self.planes.get(plane).map_or(0, |p| p.1)
    }

    pub(crate) fn stride(&self, plane: usize) -> usize {
        self.planes.get(plane).map_or(0, |p| p.2)
    }

    pub(crate) fn commit(&mut self) -> Status {
        let Some(HeldVideo { slot, lane }) = self.held.take() else { return Status::NotAttached };
        let bytes = slot.layout().payload_len() as u64;
        slot.commit();
        let counters = lane.counters();
        counters.frames.fetch_add(1, Ordering::Relaxed);
        counters.bytes.fetch_add(bytes, Ordering::Relaxed);
        drop(lane);
        self.planes = [(std::ptr::null_mut(), 0, 0); MAX_PLANES];
        self.status = Status::NotAttached;
        Status::Ok
    }
}

/// As `HeldVideo`, for audio.
struct HeldAudio {
    slot: AudioSlot<'static, MappedRing>,
    lane: LaneGuard,
}

/// An audio record reserved for C++ to fill in place.
pub struct ShimAudioSlot {
    held: Option<HeldAudio>,
    status: Status,
    channels: [*mut f32; MAX_CHANNELS as usize],
    s16: *mut i16,
    bytes: u64,
}

impl ShimAudioSlot {
    fn empty(status: Status) -> ShimAudioSlot {
        ShimAudioSlot {
            held: None,
            status,
            channels: [std::ptr::null_mut(); MAX_CHANNELS as usize],
            s16: std::ptr::null_mut(),
            bytes: 0,
        }
    }

    fn holding(mut slot: AudioSlot<'static, MappedRing>, lane: LaneGuard) -> ShimAudioSlot {
        let mut this = ShimAudioSlot::empty(Status::Ok);
        this.bytes = slot.layout().payload_len() as u64;
        for (ptr, channel) in this.channels.iter_mut().zip(slot.channels_f32_mut()) {
            *ptr = channel.as_mut_ptr();
        }
        this.s16 = slot.s16_mut().map_or(std::ptr::null_mut(), <[i16]>::as_mut_ptr);
        this.held = Some(HeldAudio { slot, lane });
        this
    }

    pub(crate) fn status(&self) -> Status {
        self.status
    }

    pub(crate) fn channel_f32(&self, channel: u32) -> *mut f32 {
        self.channels.get(channel as usize).copied().unwrap_or(std::ptr::null_mut())
    }

    pub(crate) fn samples_s16(&self) -> *mut i16 {
        self.s16
    }

    pub(crate) fn commit(&mut self) -> Status {
        let Some(HeldAudio { slot, lane }) = self.held.take() else { return Status::NotAttached };
        slot.commit();
        let counters = lane.counters();
        counters.frames.fetch_add(1, Ordering::Relaxed);
        counters.bytes.fetch_add(self.bytes, Ordering::Relaxed);
        drop(lane);
        *self = ShimAudioSlot::empty(Status::NotAttached);
        Status::Ok
    }
}
