// shmring C++ producer API: write video and audio frames into a shmring
// ring from any number of threads, without exceptions, RTTI or blocking.
//
//   auto producer = shmring::Producer::FromEnvironment();   // SHMRING_FD
//   if (!producer.ok()) { /* log shmring::StatusName(producer.status()) */ }
//   shmring::VideoDesc desc{.stream_id = 1, .timestamp_us = ts,
//                           .frame_number = n, .width = w, .height = h};
//   shmring::Status s = producer.WriteI420(desc, y, y_stride, u, u_stride,
//                                          v, v_stride);
//   // s == Status::Dropped: the ring was full; the frame was counted as
//   // dropped and the caller simply goes on with the next one.
//
// In-place writers reserve a slot, convert straight into its planes, then
// commit (a slot destroyed without Commit() is skipped by the consumer):
//
//   desc.pixel_format = SHMRING_PIXEL_I420;
//   shmring::VideoSlot slot = producer.ReserveVideo(desc);
//   if (slot.ok()) { Convert(src, slot.plane(0), slot.stride(0), ...);
//                    slot.Commit(); }
//
// Compiles with -std=c++20 -fno-exceptions -fno-rtti. Every call returns a
// Status; none throws, none blocks, none opens a file (all descriptors are
// handed over at attach time, as a sandboxed renderer needs).
#ifndef SHMRING_PRODUCER_H_
#define SHMRING_PRODUCER_H_

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string_view>
#include <utility>

#include "shmring-ffi/src/lib.rs.h"
#include "shmring/media.h"

namespace shmring {

using ffi::AudioDesc;
using ffi::Counters;
using ffi::Status;
using ffi::VideoDesc;

// A short name for logs.
constexpr const char* StatusName(Status status) {
  switch (status) {
    case Status::Ok: return "ok";
    case Status::Dropped: return "dropped (ring full)";
    case Status::LanesBusy: return "dropped (all lanes busy)";
    case Status::ConsumerGone: return "consumer gone";
    case Status::TooLarge: return "frame larger than the ring allows";
    case Status::InvalidArgument: return "invalid argument";
    case Status::AttachFailed: return "attach failed";
    case Status::NotAttached: return "not attached";
    case Status::Error: return "error";
  }
  return "unknown";
}

// A video record reserved in the ring. Fill its planes, then Commit().
// Move-only; a moved-from slot must only be destroyed.
class VideoSlot {
 public:
  explicit VideoSlot(rust::Box<ffi::ShimVideoSlot> slot) : slot_(std::move(slot)) {}
  VideoSlot(VideoSlot&&) = default;
  VideoSlot& operator=(VideoSlot&&) = default;
  VideoSlot(const VideoSlot&) = delete;
  VideoSlot& operator=(const VideoSlot&) = delete;

  Status status() const { return slot_->status(); }
  bool ok() const { return status() == Status::Ok; }
  // Start of plane `i` (64-byte aligned), or nullptr past the last plane.
  uint8_t* plane(size_t i) const { return slot_->plane(i); }
  // Bytes per row of plane `i` (a multiple of 64).
  size_t stride(size_t i) const { return slot_->stride(i); }
  // stride(i) * rows of plane `i`.
  size_t plane_size(size_t i) const { return slot_->plane_len(i); }
  // Publishes the frame. Afterwards the slot is empty.
  Status Commit() { return slot_->commit(); }

 private:
  rust::Box<ffi::ShimVideoSlot> slot_;
};

// An audio record reserved in the ring. Fill its samples, then Commit().
class AudioSlot {
 public:
  explicit AudioSlot(rust::Box<ffi::ShimAudioSlot> slot) : slot_(std::move(slot)) {}
  AudioSlot(AudioSlot&&) = default;
  AudioSlot& operator=(AudioSlot&&) = default;
  AudioSlot(const AudioSlot&) = delete;
  AudioSlot& operator=(const AudioSlot&) = delete;

  Status status() const { return slot_->status(); }
  bool ok() const { return status() == Status::Ok; }
  // Channel `c` of an f32 planar chunk (frame_count floats), or nullptr
  // (past the last channel, or a chunk of no samples).
  float* channel(uint32_t c) const { return slot_->channel_f32(c); }
  // The interleaved samples of an s16 chunk, or nullptr.
  int16_t* interleaved() const { return slot_->samples_s16(); }
  Status Commit() { return slot_->commit(); }

 private:
  rust::Box<ffi::ShimAudioSlot> slot_;
};

// A producer handle, shared freely between threads (all methods are const
// and thread-safe). Move-only; a moved-from handle must only be destroyed.
class Producer {
 public:
  // Attaches from "MEMFD:DATA_SEM:SPACE_SEM"; takes ownership of the three
  // descriptors (they are closed when the handle is destroyed).
  static Producer AttachSpec(std::string_view spec) {
    return Producer(ffi::attach_spec(
        rust::Slice<const uint8_t>(reinterpret_cast<const uint8_t*>(spec.data()), spec.size())));
  }
  // Attaches from three descriptors, taking ownership of them. The same
  // descriptor passed twice is refused (AttachFailed) and closed once.
  static Producer AttachFds(int memfd, int data_sem, int space_sem) {
    return Producer(ffi::attach_fds(memfd, data_sem, space_sem));
  }
  // Attaches from the spec in an environment variable (`SHMRING_FD`).
  static Producer FromEnvironment(const char* variable = "SHMRING_FD") {
    const char* spec = std::getenv(variable);
    return AttachSpec(spec ? std::string_view(spec) : std::string_view());
  }

  Producer(Producer&&) = default;
  Producer& operator=(Producer&&) = default;
  Producer(const Producer&) = delete;
  Producer& operator=(const Producer&) = delete;

  Status status() const { return handle_->status(); }
  bool ok() const { return status() == Status::Ok; }
  // These three concern the handle, not a frame: they use no lane, so they
  // answer (and count no drop) while other threads hold every lane.
  uint64_t max_payload() const { return handle_->max_payload(); }
  // Faults in this process's mapping of the ring (Linux 5.14+), so the
  // first lap of frames pays no page faults. Call once after attaching,
  // off any real-time thread; on failure frames still work.
  Status Prefault() const { return handle_->prefault(); }
  Counters counters() const { return handle_->counters(); }

  // Copies an I420 frame of desc.width x desc.height into the ring. Each
  // plane needs stride * (rows - 1) + row bytes readable bytes.
  Status WriteI420(const VideoDesc& desc, const uint8_t* y, int y_stride, const uint8_t* u, int u_stride,
                   const uint8_t* v, int v_stride) const {
    const size_t w = desc.width, h = desc.height, cw = (w + 1) / 2, ch = (h + 1) / 2;
    size_t y_len = 0, u_len = 0, v_len = 0;
    if (!PlaneLength(y, y_stride, w, h, &y_len) || !PlaneLength(u, u_stride, cw, ch, &u_len) ||
        !PlaneLength(v, v_stride, cw, ch, &v_len)) {
      return Status::InvalidArgument;
    }
    return handle_->write_i420(desc, rust::Slice<const uint8_t>(y, y_len), static_cast<uint32_t>(y_stride),
                               rust::Slice<const uint8_t>(u, u_len), static_cast<uint32_t>(u_stride),
                               rust::Slice<const uint8_t>(v, v_len), static_cast<uint32_t>(v_stride));
  }

  // Names stream `stream_id` (kind SHMRING_KIND_VIDEO or SHMRING_KIND_AUDIO)
  // with a UTF-8 label of at most SHMRING_MAX_LABEL bytes: one announce
  // record, written once per stream, before its first frame.
  Status Announce(uint32_t stream_id, uint32_t kind, std::string_view label) const {
    return handle_->announce(stream_id, kind,
                             rust::Slice<const uint8_t>(reinterpret_cast<const uint8_t*>(label.data()), label.size()));
  }

  // Copies desc.channels * desc.frame_count interleaved s16 samples.
  Status WriteAudioS16(const AudioDesc& desc, const int16_t* interleaved) const {
    if (interleaved == nullptr) return Status::InvalidArgument;
    const size_t n = static_cast<size_t>(desc.channels) * desc.frame_count;
    return handle_->write_audio_s16(desc, rust::Slice<const int16_t>(interleaved, n));
  }

  // Copies desc.channels planes of desc.frame_count floats (one pointer per
  // channel, as in Chromium's AudioBus) into one f32 planar record.
  Status WriteAudioF32Planar(const AudioDesc& desc, const float* const* channels) const {
    if (channels == nullptr || desc.channels == 0 || desc.channels > SHMRING_MAX_CHANNELS) {
      return Status::InvalidArgument;
    }
    for (uint32_t c = 0; c < desc.channels; ++c) {
      if (channels[c] == nullptr) return Status::InvalidArgument;
    }
    AudioDesc planar = desc;
    planar.sample_format = SHMRING_SAMPLE_F32_PLANAR;
    AudioSlot slot = ReserveAudio(planar);
    if (!slot.ok()) return slot.status();
    // An empty chunk has no sample storage (channel() is null), and
    // memcpy's pointers must not be null even for zero bytes.
    if (desc.frame_count != 0) {
      for (uint32_t c = 0; c < desc.channels; ++c) {
        std::memcpy(slot.channel(c), channels[c], sizeof(float) * desc.frame_count);
      }
    }
    return slot.Commit();
  }

  // Copies desc.channels planes of desc.frame_count floats stored one after
  // the other (channel 0 first). No allocation on this path, so it suits a
  // real-time audio thread that packs its channels into a preallocated
  // buffer.
  Status WriteAudioF32PlanarPacked(const AudioDesc& desc, const float* samples) const {
    if (samples == nullptr) return Status::InvalidArgument;
    const size_t n = static_cast<size_t>(desc.channels) * desc.frame_count;
    return handle_->write_audio_f32_planar(desc, rust::Slice<const float>(samples, n));
  }

  // Reserves a frame of desc.pixel_format (SHMRING_PIXEL_*) to fill in place.
  VideoSlot ReserveVideo(const VideoDesc& desc) const { return VideoSlot(handle_->reserve_video(desc)); }
  // Reserves a chunk of desc.sample_format (SHMRING_SAMPLE_*).
  AudioSlot ReserveAudio(const AudioDesc& desc) const { return AudioSlot(handle_->reserve_audio(desc)); }

 private:
  explicit Producer(rust::Box<ffi::ShimProducer> handle) : handle_(std::move(handle)) {}

  static bool PlaneLength(const uint8_t* data, int stride, size_t row_bytes, size_t rows, size_t* len) {
    if (data == nullptr || stride <= 0 || static_cast<size_t>(stride) < row_bytes || rows == 0) return false;
    *len = static_cast<size_t>(stride) * (rows - 1) + row_bytes;
    return true;
  }

  rust::Box<ffi::ShimProducer> handle_;
};

}  // namespace shmring

#endif  // SHMRING_PRODUCER_H_
