// fake_renderer: a multi-threaded producer that behaves like a Chromium
// renderer in a meeting. Three video threads (1080p, 720p, and one whose
// resolution changes mid-stream) and one audio thread (48 kHz stereo, or
// mono with --channels 1; 10 ms chunks) share one shmring::Producer (--camera-only: the 1080p thread and
// the audio thread alone, the bot benchmark's simulated patched renderer).
// Every frame carries the test pattern and its counter (ffi/tests/pattern.h).
// It attaches from an inherited
// descriptor spec (--shmring-fd or SHMRING_FD), faults the ring in, never
// blocks (a full ring drops the frame and counts it), runs for N seconds or
// N frames, and prints its counters, then the cost of one 1080p copy into
// the ring beside a plain memcpy of the same bytes (the two measured in
// alternating order, frame after frame).
//
// Built with Chromium's flags: -std=c++20 -fno-exceptions -fno-rtti.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string_view>
#include <thread>
#include <vector>

#include "pattern.h"
#include "shmring/producer.h"

namespace {

using Clock = std::chrono::steady_clock;

struct Options {
  const char* spec = nullptr;
  double seconds = 10.0;
  uint64_t frames = 0;  // per video stream; 0: run for `seconds`
  double fps = 30.0;    // 0: as fast as possible
  // Test of the consumer's checks: flips one pixel of this frame of stream
  // 2 after it is filled (-1: never).
  int64_t corrupt_frame = -1;
  // One 1080p stream (its picture painted once, its counter every frame:
  // the picture is the browser's cost, measured apart) and the audio
  // stream, with no measuring copies: the bot benchmark's patched renderer.
  bool camera_only = false;
  // Audio channels, 1 or 2.
  uint32_t channels = 2;
};

uint64_t ThreadCpuNs() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000u + static_cast<uint64_t>(ts.tv_nsec);
}

// Keeps the compiler from dropping a copy whose result nobody reads.
inline void Escape(void* p) { asm volatile("" : : "r"(p) : "memory"); }

struct StreamReport {
  uint32_t stream = 0;
  const char* kind = "";
  uint64_t attempted = 0;
  uint64_t written = 0;
  uint64_t dropped_full = 0;
  uint64_t dropped_busy = 0;
  uint64_t other_errors = 0;
  uint32_t resolution_changes = 0;
  // 1080p stream only: CPU time of the copy into the ring and of a plain
  // memcpy of the same bytes, summed over written frames.
  uint64_t write_cpu_ns = 0;
  uint64_t memcpy_cpu_ns = 0;
  // The same copy into a ring-sized buffer, frame after frame (as cold in
  // the cache as the ring's memory is).
  uint64_t memcpy_cold_cpu_ns = 0;
  uint64_t bench_frames = 0;
  uint64_t frame_bytes = 0;
};

void Count(StreamReport* report, shmring::Status status) {
  switch (status) {
    case shmring::Status::Ok: ++report->written; break;
    case shmring::Status::Dropped: ++report->dropped_full; break;
    case shmring::Status::LanesBusy: ++report->dropped_busy; break;
    default:
      if (report->other_errors++ == 0) {
        std::fprintf(stderr, "fake_renderer: stream %u: %s\n", report->stream, shmring::StatusName(status));
      }
  }
}

class Pacer {
 public:
  Pacer(double fps, Clock::time_point start) : fps_(fps), start_(start) {}
  void Wait(uint64_t n) const {
    if (fps_ > 0) std::this_thread::sleep_until(start_ + std::chrono::duration<double>(n / fps_));
  }

 private:
  double fps_;
  Clock::time_point start_;
};

bool Done(const Options& o, uint64_t n, double frames_per_second, Clock::time_point start) {
  if (o.frames > 0) return n >= o.frames;
  if (frames_per_second > 0) return n >= static_cast<uint64_t>(o.seconds * frames_per_second);
  return Clock::now() - start >= std::chrono::duration<double>(o.seconds);
}

// One video stream. `mode` 0 copies from caller planes (WriteI420), 1 fills
// a reserved slot in place; `resize` switches 640x360 -> 960x540 halfway.
void VideoThread(const shmring::Producer& producer, const Options& o, uint32_t stream, uint32_t width,
                 uint32_t height, int mode, bool resize, bool bench, Clock::time_point start,
                 StreamReport* report) {
  report->stream = stream;
  report->kind = "video";
  // Caller-side planes with padded strides, as a decoder would hand them.
  const uint32_t max_w = resize ? 960 : width, max_h = resize ? 540 : height;
  const size_t y_stride = max_w + 32, c_stride = (max_w + 1) / 2 + 16;
  std::vector<uint8_t> y(y_stride * max_h), u(c_stride * ((max_h + 1) / 2)), v(u.size());
  const size_t frame_bytes = static_cast<size_t>(width) * height * 3 / 2;
  std::vector<uint8_t> scratch(bench ? frame_bytes : 0);
  // Touched once here, so page faults are not part of the measurement.
  const shmring::Counters ring = producer.counters();
  const size_t cold_bytes = bench ? std::max<size_t>(ring.ring_capacity, 2 * frame_bytes) : 0;
  std::vector<uint8_t> cold(cold_bytes, 1);
  size_t cold_at = 0;
  const double fps = o.fps;
  Pacer pacer(fps, start);
  bool switched = false;
  for (uint64_t n = 0; !Done(o, n, fps, start); ++n) {
    pacer.Wait(n);
    const bool second_half = o.frames > 0 ? n >= o.frames / 2
                                          : (fps > 0 ? n >= static_cast<uint64_t>(o.seconds * fps / 2)
                                                     : Clock::now() - start >= std::chrono::duration<double>(o.seconds / 2));
    if (resize && second_half && !switched) {
      switched = true;
      width = 960;
      height = 540;
      ++report->resolution_changes;
    }
    const uint32_t cw = (width + 1) / 2, ch = (height + 1) / 2;
    shmring::VideoDesc desc{};
    desc.stream_id = stream;
    desc.timestamp_us = static_cast<int64_t>(n * 33333);
    desc.frame_number = n;
    desc.width = width;
    desc.height = height;
    desc.pixel_format = SHMRING_PIXEL_I420;
    ++report->attempted;
    if (mode == 1) {
      shmring::VideoSlot slot = producer.ReserveVideo(desc);
      if (!slot.ok()) {
        Count(report, slot.status());
        continue;
      }
      shmring_pattern::FillPlane(slot.plane(0), slot.stride(0), width, height, stream, n, 0);
      shmring_pattern::FillPlane(slot.plane(1), slot.stride(1), cw, ch, stream, n, 1);
      shmring_pattern::FillPlane(slot.plane(2), slot.stride(2), cw, ch, stream, n, 2);
      shmring_pattern::StampCounter(slot.plane(0), stream, n);
      if (static_cast<int64_t>(n) == o.corrupt_frame) slot.plane(2)[slot.stride(2) * (ch - 1) + cw - 1] ^= 0x40;
      Count(report, slot.Commit());
      continue;
    }
    // "Decode" into caller memory, then one copy into the ring.
    if (!o.camera_only || n == 0) {
      shmring_pattern::FillPlane(y.data(), y_stride, width, height, stream, n, 0);
      shmring_pattern::FillPlane(u.data(), c_stride, cw, ch, stream, n, 1);
      shmring_pattern::FillPlane(v.data(), c_stride, cw, ch, stream, n, 2);
    }
    shmring_pattern::StampCounter(y.data(), stream, n);
    // The same bytes, row by row from the same strided planes, into plain
    // memory: what the copy would cost with no ring at all. Returns the
    // thread's CPU time it took.
    auto copy_rows = [&](uint8_t* dst) {
      const uint64_t began = ThreadCpuNs();
      for (uint32_t r = 0; r < height; ++r, dst += width) std::memcpy(dst, y.data() + r * y_stride, width);
      for (uint32_t r = 0; r < ch; ++r, dst += cw) std::memcpy(dst, u.data() + r * c_stride, cw);
      for (uint32_t r = 0; r < ch; ++r, dst += cw) std::memcpy(dst, v.data() + r * c_stride, cw);
      Escape(dst);
      return ThreadCpuNs() - began;
    };
    uint64_t memcpy_ns = 0, memcpy_cold_ns = 0;
    auto plain_copies = [&] {
      memcpy_ns = copy_rows(scratch.data());
      if (cold_at + frame_bytes > cold.size()) cold_at = 0;
      memcpy_cold_ns = copy_rows(cold.data() + cold_at);
      cold_at = (cold_at + frame_bytes + 63) & ~static_cast<size_t>(63);
    };
    // Every other frame the plain copies go first, so neither side always
    // runs while the other threads of this tick are still writing.
    const bool copies_first = bench && n % 2 == 1;
    if (copies_first) plain_copies();
    const uint64_t t0 = ThreadCpuNs();
    const shmring::Status status = producer.WriteI420(desc, y.data(), static_cast<int>(y_stride), u.data(),
                                                      static_cast<int>(c_stride), v.data(), static_cast<int>(c_stride));
    const uint64_t t1 = ThreadCpuNs();
    Count(report, status);
    // A dropped frame wrote nothing into the ring: nothing to compare.
    if (bench && status == shmring::Status::Ok) {
      if (!copies_first) plain_copies();
      report->write_cpu_ns += t1 - t0;
      report->memcpy_cpu_ns += memcpy_ns;
      report->memcpy_cold_cpu_ns += memcpy_cold_ns;
      ++report->bench_frames;
      report->frame_bytes = static_cast<uint64_t>(width) * height + 2ull * cw * ch;
    }
  }
}

// 48 kHz f32 planar (stereo, or mono), 10 ms (480 samples) per chunk,
// 100 chunks/s.
void AudioThread(const shmring::Producer& producer, const Options& o, Clock::time_point start,
                 StreamReport* report) {
  constexpr uint32_t kStream = 4, kRate = 48000, kFrames = 480;
  const uint32_t channel_count = o.channels;
  report->stream = kStream;
  report->kind = "audio";
  std::vector<float> left(kFrames), right(kFrames);
  const float* channels[2] = {left.data(), right.data()};
  // Odd chunks go through the packed path, as Chromium's audio sink does.
  std::vector<float> packed(static_cast<size_t>(channel_count) * kFrames);
  const double chunks_per_second = o.fps > 0 ? 100.0 : 0.0;
  Pacer pacer(chunks_per_second, start);
  // With a frame count, send as many chunks as cover the video's duration.
  Options audio = o;
  if (o.frames > 0) audio.frames = o.fps > 0 ? static_cast<uint64_t>(o.frames * 100 / o.fps) : o.frames;
  for (uint64_t n = 0; !Done(audio, n, chunks_per_second, start); ++n) {
    pacer.Wait(n);
    for (uint32_t i = 0; i < kFrames; ++i) {
      left[i] = shmring_pattern::AudioSample(n, kFrames, 0, i);
      if (channel_count == 2) right[i] = shmring_pattern::AudioSample(n, kFrames, 1, i);
    }
    shmring::AudioDesc desc{};
    desc.stream_id = kStream;
    desc.timestamp_us = static_cast<int64_t>(n * 10000);
    desc.frame_number = n;
    desc.sample_rate = kRate;
    desc.channels = channel_count;
    desc.frame_count = kFrames;
    ++report->attempted;
    if (n % 2 == 0) {
      Count(report, producer.WriteAudioF32Planar(desc, channels));
    } else {
      std::copy(left.begin(), left.end(), packed.begin());
      if (channel_count == 2) std::copy(right.begin(), right.end(), packed.begin() + kFrames);
      Count(report, producer.WriteAudioF32PlanarPacked(desc, packed.data()));
    }
  }
}

bool ParseArgs(int argc, char** argv, Options* o) {
  for (int i = 1; i < argc; i += 2) {
    const std::string_view arg = argv[i];
    const char* value = i + 1 < argc ? argv[i + 1] : nullptr;
    if (arg == "--shmring-fd" && value) {
      o->spec = value;
    } else if (arg == "--seconds" && value) {
      o->seconds = std::atof(value);
    } else if (arg == "--frames" && value) {
      o->frames = std::strtoull(value, nullptr, 10);
    } else if (arg == "--fps" && value) {
      o->fps = std::atof(value);
    } else if (arg == "--corrupt-frame" && value) {
      o->corrupt_frame = std::strtoll(value, nullptr, 10);
    } else if (arg == "--channels" && value && (std::string_view(value) == "1" || std::string_view(value) == "2")) {
      o->channels = static_cast<uint32_t>(value[0] - '0');
    } else if (arg == "--camera-only") {
      o->camera_only = true;
      --i;  // a flag: no value follows
    } else {
      std::fprintf(stderr,
                   "usage: fake_renderer [--shmring-fd SPEC] [--seconds S] [--frames N] [--fps F] [--corrupt-frame N]\n"
                   "                     [--camera-only] [--channels 1|2]\n"
                   "  descriptors come from --shmring-fd or SHMRING_FD\n");
      return false;
    }
  }
  return true;
}

}  // namespace

extern "C" int shmring_fake_renderer_main(int argc, char** argv) {
  Options o;
  if (!ParseArgs(argc, argv, &o)) return 2;
  shmring::Producer producer =
      o.spec ? shmring::Producer::AttachSpec(o.spec) : shmring::Producer::FromEnvironment("SHMRING_FD");
  if (!producer.ok()) {
    std::fprintf(stderr, "fake_renderer: cannot attach: %s\n", shmring::StatusName(producer.status()));
    return 1;
  }
  // The ring's pages are faulted in up front, as the plain buffers the
  // copy is compared with are (a renderer would do this once at attach).
  const shmring::Status prefault = producer.Prefault();
  if (prefault != shmring::Status::Ok) {
    std::fprintf(stderr, "fake_renderer: prefault: %s (first lap pays page faults)\n",
                 shmring::StatusName(prefault));
  }
  const Clock::time_point start = Clock::now();
  StreamReport reports[4];
  if (o.camera_only) {
    std::thread video(VideoThread, std::cref(producer), std::cref(o), 1u, 1920u, 1080u, 0, false, false, start,
                      &reports[0]);
    std::thread audio(AudioThread, std::cref(producer), std::cref(o), start, &reports[3]);
    video.join();
    audio.join();
  } else {
    std::thread threads[] = {
        std::thread(VideoThread, std::cref(producer), std::cref(o), 1u, 1920u, 1080u, 0, false, true, start,
                    &reports[0]),
        std::thread(VideoThread, std::cref(producer), std::cref(o), 2u, 1280u, 720u, 1, false, false, start,
                    &reports[1]),
        std::thread(VideoThread, std::cref(producer), std::cref(o), 3u, 640u, 360u, 0, true, false, start,
                    &reports[2]),
        std::thread(AudioThread, std::cref(producer), std::cref(o), start, &reports[3]),
    };
    for (std::thread& t : threads) t.join();
  }
  const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  uint64_t errors = 0;
  for (const StreamReport& r : reports) {
    if (r.stream == 0) continue;  // not run
    std::printf("stream=%u kind=%s attempted=%" PRIu64 " written=%" PRIu64 " dropped_full=%" PRIu64
                " dropped_busy=%" PRIu64 " errors=%" PRIu64 " resolution_changes=%u\n",
                r.stream, r.kind, r.attempted, r.written, r.dropped_full, r.dropped_busy, r.other_errors,
                r.resolution_changes);
    errors += r.other_errors;
  }
  const shmring::Counters c = producer.counters();
  std::printf("counters frames=%" PRIu64 " bytes=%" PRIu64 " dropped_full=%" PRIu64 " dropped_busy=%" PRIu64
              " consumer_gone=%" PRIu64 " invalid=%" PRIu64 " errors=%" PRIu64 " lanes_attached=%u seconds=%.2f\n",
              c.frames, c.bytes, c.dropped_full, c.dropped_busy, c.consumer_gone, c.invalid, c.errors,
              c.lanes_attached, elapsed);
  if (c.ring_valid) {
    std::printf("ring capacity=%" PRIu64 " committed=%" PRIu64 " consumed=%" PRIu64 " drops=%" PRIu64 "\n",
                c.ring_capacity, c.ring_committed_frames, c.ring_consumed_frames, c.ring_drops);
  }
  const StreamReport& b = reports[0];
  if (b.bench_frames > 0) {
    const double n = static_cast<double>(b.bench_frames), bytes = static_cast<double>(b.frame_bytes);
    const double ring_us = b.write_cpu_ns / n / 1000.0, copy_us = b.memcpy_cpu_ns / n / 1000.0;
    const double cold_us = b.memcpy_cold_cpu_ns / n / 1000.0;
    std::printf("bench 1080p_i420 frames=%" PRIu64 " bytes_per_frame=%" PRIu64
                " ring_write_cpu_us_per_frame=%.1f (%.2f GB/s) memcpy_cpu_us_per_frame=%.1f (%.2f GB/s)"
                " memcpy_ring_sized_cpu_us_per_frame=%.1f (%.2f GB/s) ratio=%.2f ratio_ring_sized=%.2f\n",
                b.bench_frames, b.frame_bytes, ring_us, bytes / (ring_us * 1000.0), copy_us,
                bytes / (copy_us * 1000.0), cold_us, bytes / (cold_us * 1000.0), ring_us / copy_us,
                ring_us / cold_us);
  }
  std::fflush(stdout);
  return errors == 0 ? 0 : 1;
}
