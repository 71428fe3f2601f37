// The C++ test harness of the shim, compiled with Chromium's flags
// (-std=c++20 -fno-exceptions -fno-rtti), and under ASan/UBSan/TSan by
// ffi/sanitizers.sh. It is run by `consumer --renderer shim_test`, which
// hands it a ring (SHMRING_FD) and verifies every frame it writes, so the
// checks here cover the API's contract and the consumer covers the bytes.
//
// Prints "stream=..." lines (what it wrote, for the consumer to match) and
// "N passed, M failed"; exits non-zero if any check failed.

#include <fcntl.h>

#include <atomic>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "pattern.h"
#include "shmring/producer.h"

namespace {

using shmring::Status;

int g_passed = 0;
int g_failed = 0;

void Check(bool ok, const char* what, int line) {
  if (ok) {
    ++g_passed;
  } else {
    ++g_failed;
    std::fprintf(stderr, "shim_test:%d: FAILED: %s\n", line, what);
  }
}
#define CHECK(cond) Check((cond), #cond, __LINE__)

struct Written {
  uint32_t stream = 0;
  const char* kind = "video";
  uint64_t attempted = 0;
  uint64_t written = 0;
  uint64_t dropped = 0;
  uint64_t busy = 0;
  uint64_t unexpected = 0;
};

void Tally(Written* w, Status s) {
  ++w->attempted;
  if (s == Status::Ok) ++w->written;
  else if (s == Status::Dropped) ++w->dropped;
  else if (s == Status::LanesBusy) ++w->busy;
  else ++w->unexpected;
}

shmring::VideoDesc Video(uint32_t stream, uint64_t n, uint32_t w, uint32_t h) {
  shmring::VideoDesc d{};
  d.stream_id = stream;
  d.timestamp_us = static_cast<int64_t>(n) * 1000;
  d.frame_number = n;
  d.width = w;
  d.height = h;
  d.pixel_format = SHMRING_PIXEL_I420;
  return d;
}

shmring::AudioDesc Audio(uint32_t stream, uint64_t n, uint32_t frames) {
  shmring::AudioDesc d{};
  d.stream_id = stream;
  d.timestamp_us = static_cast<int64_t>(n) * 10000;
  d.frame_number = n;
  d.sample_rate = 48000;
  d.channels = 2;
  d.frame_count = frames;
  d.sample_format = SHMRING_SAMPLE_F32_PLANAR;
  return d;
}

void AttachFailuresAreStatuses() {
  shmring::Producer empty = shmring::Producer::AttachSpec("");
  CHECK(empty.status() == Status::AttachFailed);
  CHECK(shmring::Producer::AttachSpec("not-a-spec").status() == Status::AttachFailed);
  CHECK(shmring::Producer::AttachSpec("\xff\xfe").status() == Status::AttachFailed);
  CHECK(shmring::Producer::AttachFds(-1, -1, -1).status() == Status::AttachFailed);
  CHECK(shmring::Producer::FromEnvironment("SHMRING_TEST_UNSET_VARIABLE").status() == Status::AttachFailed);
  uint8_t plane[64] = {};
  CHECK(empty.WriteI420(Video(99, 0, 16, 2), plane, 16, plane, 8, plane, 8) == Status::NotAttached);
  CHECK(empty.ReserveVideo(Video(99, 0, 16, 2)).status() == Status::NotAttached);
  CHECK(empty.counters().frames == 0);
  CHECK(empty.max_payload() == 0);
  CHECK(empty.Prefault() == Status::NotAttached);
}

void InvalidArgumentsAreRefused(const shmring::Producer& p) {
  uint8_t plane[4096] = {};
  const shmring::Counters before = p.counters();
  CHECK(p.WriteI420(Video(99, 0, 16, 16), nullptr, 16, plane, 8, plane, 8) == Status::InvalidArgument);
  CHECK(p.WriteI420(Video(99, 0, 16, 16), plane, 8, plane, 8, plane, 8) == Status::InvalidArgument);
  CHECK(p.WriteI420(Video(99, 0, 16, 16), plane, -16, plane, 8, plane, 8) == Status::InvalidArgument);
  CHECK(p.WriteI420(Video(99, 0, 0, 16), plane, 16, plane, 8, plane, 8) == Status::InvalidArgument);
  CHECK(p.WriteI420(Video(99, 0, 1 << 16, 1), plane, 1 << 16, plane, 1 << 15, plane, 1 << 15) ==
        Status::InvalidArgument);
  shmring::VideoDesc bad_format = Video(99, 0, 16, 16);
  bad_format.pixel_format = 77;
  CHECK(p.ReserveVideo(bad_format).status() == Status::InvalidArgument);
  shmring::AudioDesc no_channels = Audio(99, 0, 480);
  no_channels.channels = 0;
  const float* none[1] = {nullptr};
  CHECK(p.WriteAudioF32Planar(no_channels, none) == Status::InvalidArgument);
  CHECK(p.WriteAudioF32Planar(Audio(99, 0, 480), none) == Status::InvalidArgument);
  CHECK(p.WriteAudioS16(Audio(99, 0, 480), nullptr) == Status::InvalidArgument);
  shmring::AudioDesc no_rate = Audio(99, 0, 480);
  no_rate.sample_rate = 0;
  CHECK(p.ReserveAudio(no_rate).status() == Status::InvalidArgument);
  // Larger than the ring: refused, not dropped.
  shmring::VideoDesc huge = Video(99, 0, 8192, 8192);
  huge.pixel_format = SHMRING_PIXEL_RGBA;
  CHECK(p.ReserveVideo(huge).status() == Status::TooLarge);
  const shmring::Counters after = p.counters();
  CHECK(after.frames == before.frames);
  CHECK(after.invalid > before.invalid);
}

void AnnouncementsNameStreams(const shmring::Producer& p) {
  CHECK(p.Announce(30, SHMRING_KIND_VIDEO, "{\"participant\":\"harness\"}") == Status::Ok);
  CHECK(p.Announce(30, SHMRING_KIND_ANNOUNCE, "not a media kind") == Status::InvalidArgument);
  CHECK(p.Announce(30, SHMRING_KIND_VIDEO, std::string(SHMRING_MAX_LABEL + 1, 'x')) == Status::InvalidArgument);
  CHECK(p.Announce(30, SHMRING_KIND_VIDEO, std::string_view("\xff\xfe", 2)) == Status::InvalidArgument);
}

void SlotsCommitOnceAndSkipWhenDropped(const shmring::Producer& p, Written* video) {
  const shmring::Counters before = p.counters();
  {
    shmring::VideoSlot abandoned = p.ReserveVideo(Video(30, 0, 64, 48));
    CHECK(abandoned.ok());
    // Destroyed without Commit(): the consumer must never see frame 0.
  }
  video->attempted = 1;  // frame 0 counts as dropped for the consumer
  shmring::VideoSlot slot = p.ReserveVideo(Video(30, 1, 64, 48));
  CHECK(slot.ok());
  CHECK(slot.plane(0) != nullptr && slot.plane(1) != nullptr && slot.plane(2) != nullptr);
  CHECK(slot.plane(3) == nullptr && slot.plane(17) == nullptr);
  CHECK(reinterpret_cast<uintptr_t>(slot.plane(0)) % 64 == 0);
  CHECK(slot.stride(0) % 64 == 0 && slot.stride(0) >= 64 && slot.stride(1) >= 32);
  CHECK(slot.plane_size(0) == slot.stride(0) * 48);
  shmring_pattern::FillPlane(slot.plane(0), slot.stride(0), 64, 48, 30, 1, 0);
  shmring_pattern::FillPlane(slot.plane(1), slot.stride(1), 32, 24, 30, 1, 1);
  shmring_pattern::FillPlane(slot.plane(2), slot.stride(2), 32, 24, 30, 1, 2);
  shmring_pattern::StampCounter(slot.plane(0), 30, 1);
  shmring::VideoSlot moved = std::move(slot);
  Tally(video, moved.Commit());
  CHECK(moved.Commit() == Status::NotAttached);
  CHECK(moved.plane(0) == nullptr);
  const shmring::Counters after = p.counters();
  CHECK(after.frames == before.frames + 1);
}

// The same descriptor handed over three times: refused, and closed exactly
// once (a second close would close whatever the process opened since under
// that number; debug builds of the shim abort on it).
void OneDescriptorThriceIsRefusedAndClosedOnce() {
  const int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  CHECK(fd >= 0);
  CHECK(shmring::Producer::AttachFds(fd, fd, fd).status() == Status::AttachFailed);
  errno = 0;
  CHECK(fcntl(fd, F_GETFD) == -1 && errno == EBADF);
}

// max_payload(), Prefault() and counters() are about the handle: they
// answer while every lane is taken, and count no drop.
void HandleCallsNeedNoLane(const shmring::Producer& p) {
  constexpr int kLanes = 8;  // LANES in ffi/src/lanes.rs
  std::vector<shmring::VideoSlot> held;
  held.reserve(kLanes);
  for (int i = 0; i < kLanes; ++i) {
    held.push_back(p.ReserveVideo(Video(99, 0, 16, 16)));
    CHECK(held.back().ok());
  }
  const shmring::Counters before = p.counters();
  CHECK(p.ReserveVideo(Video(99, 0, 16, 16)).status() == Status::LanesBusy);
  CHECK(p.max_payload() > 0);
  CHECK(p.Prefault() == Status::Ok);
  const shmring::Counters during = p.counters();
  CHECK(during.ring_valid && during.ring_capacity > 0);
  CHECK(during.dropped_busy == before.dropped_busy + 1);
  // The held slots are destroyed uncommitted: skipped, never seen.
}

// A chunk of no samples is a valid record; writing it touches no sample
// storage (there is none: channel() is null).
void EmptyAudioChunkIsWritten(const shmring::Producer& p, Written* audio) {
  const float silence[1] = {0.0f};
  const float* channels[2] = {silence, silence};
  Tally(audio, p.WriteAudioF32Planar(Audio(audio->stream, 0, 0), channels));
  CHECK(audio->written == 1);
}

// Several threads share one producer; each owns a stream.
void ThreadsShareOneProducer(const shmring::Producer& p, std::vector<Written>* reports) {
  constexpr int kVideoThreads = 9;  // more than the shim's lanes
  constexpr uint64_t kFrames = 120;
  reports->resize(kVideoThreads + 1);
  std::vector<std::thread> threads;
  std::atomic<int> ready{0};
  for (int t = 0; t < kVideoThreads; ++t) {
    threads.emplace_back([&p, &ready, t, w = &(*reports)[t]] {
      const uint32_t stream = 10 + t, width = 64 + 18 * t + (t % 2), height = 36 + 2 * t + (t % 2);
      const uint32_t cw = (width + 1) / 2, ch = (height + 1) / 2;
      w->stream = stream;
      const size_t ys = width + 8, cs = cw + 3;  // odd strides on purpose
      std::vector<uint8_t> y(ys * height), u(cs * ch), v(cs * ch);
      ready.fetch_add(1);
      while (ready.load() < kVideoThreads) {
      }
      for (uint64_t n = 0; n < kFrames; ++n) {
        if (n % 2 == 0) {
          shmring_pattern::FillPlane(y.data(), ys, width, height, stream, n, 0);
          shmring_pattern::FillPlane(u.data(), cs, cw, ch, stream, n, 1);
          shmring_pattern::FillPlane(v.data(), cs, cw, ch, stream, n, 2);
          shmring_pattern::StampCounter(y.data(), stream, n);
          Tally(w, p.WriteI420(Video(stream, n, width, height), y.data(), static_cast<int>(ys), u.data(),
                               static_cast<int>(cs), v.data(), static_cast<int>(cs)));
        } else {
          shmring::VideoSlot slot = p.ReserveVideo(Video(stream, n, width, height));
          if (!slot.ok()) {
            Tally(w, slot.status());
            continue;
          }
          shmring_pattern::FillPlane(slot.plane(0), slot.stride(0), width, height, stream, n, 0);
          shmring_pattern::FillPlane(slot.plane(1), slot.stride(1), cw, ch, stream, n, 1);
          shmring_pattern::FillPlane(slot.plane(2), slot.stride(2), cw, ch, stream, n, 2);
          shmring_pattern::StampCounter(slot.plane(0), stream, n);
          Tally(w, slot.Commit());
        }
      }
    });
  }
  threads.emplace_back([&p, w = &reports->back()] {
    constexpr uint32_t kStream = 20, kFramesPerChunk = 480;
    w->stream = kStream;
    w->kind = "audio";
    std::vector<float> left(kFramesPerChunk), right(kFramesPerChunk);
    for (uint64_t n = 0; n < 2 * kFrames; ++n) {
      if (n % 2 == 0) {
        for (uint32_t i = 0; i < kFramesPerChunk; ++i) {
          left[i] = shmring_pattern::AudioSample(n, kFramesPerChunk, 0, i);
          right[i] = shmring_pattern::AudioSample(n, kFramesPerChunk, 1, i);
        }
        const float* channels[2] = {left.data(), right.data()};
        Tally(w, p.WriteAudioF32Planar(Audio(kStream, n, kFramesPerChunk), channels));
      } else {
        shmring::AudioSlot slot = p.ReserveAudio(Audio(kStream, n, kFramesPerChunk));
        if (!slot.ok()) {
          Tally(w, slot.status());
          continue;
        }
        for (uint32_t c = 0; c < 2; ++c) {
          for (uint32_t i = 0; i < kFramesPerChunk; ++i) slot.channel(c)[i] = shmring_pattern::AudioSample(n, kFramesPerChunk, c, i);
        }
        Tally(w, slot.Commit());
      }
    }
  });
  for (std::thread& t : threads) t.join();
  uint64_t written = 0, unexpected = 0;
  for (const Written& w : *reports) {
    written += w.written;
    unexpected += w.unexpected;
  }
  CHECK(unexpected == 0);
  CHECK(written > 0);
  const shmring::Counters c = p.counters();
  CHECK(c.lanes_attached >= 1 && c.lanes_attached <= 8);
  CHECK(c.errors == 0 && c.consumer_gone == 0);
}

}  // namespace

extern "C" int shmring_shim_test_main(int argc, char** argv) {
  const char* spec = nullptr;
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::strcmp(argv[i], "--shmring-fd") == 0) spec = argv[i + 1];
  }
  AttachFailuresAreStatuses();
  OneDescriptorThriceIsRefusedAndClosedOnce();
  shmring::Producer attached = spec ? shmring::Producer::AttachSpec(spec) : shmring::Producer::FromEnvironment();
  CHECK(attached.ok());
  if (!attached.ok()) {
    std::fprintf(stderr, "shim_test: cannot attach: %s\n", shmring::StatusName(attached.status()));
    std::printf("%d passed, %d failed\n", g_passed, g_failed);
    return 1;
  }
  shmring::Producer producer = std::move(attached);  // handles move
  CHECK(producer.max_payload() > 0);
  CHECK(producer.Prefault() == Status::Ok);
  InvalidArgumentsAreRefused(producer);
  Written slots{};
  slots.stream = 30;
  AnnouncementsNameStreams(producer);
  SlotsCommitOnceAndSkipWhenDropped(producer, &slots);
  HandleCallsNeedNoLane(producer);
  Written empty{};
  empty.stream = 31;
  empty.kind = "audio";
  EmptyAudioChunkIsWritten(producer, &empty);
  std::vector<Written> reports;
  ThreadsShareOneProducer(producer, &reports);
  reports.push_back(slots);
  reports.push_back(empty);
  uint64_t frames = 0;
  for (const Written& w : reports) {
    std::printf("stream=%u kind=%s attempted=%" PRIu64 " written=%" PRIu64 " dropped_full=%" PRIu64
                " dropped_busy=%" PRIu64 "\n",
                w.stream, w.kind, w.attempted, w.written, w.dropped, w.busy);
    frames += w.written;
  }
  const shmring::Counters c = producer.counters();
  CHECK(c.frames == frames);
  std::printf("counters frames=%" PRIu64 " dropped_full=%" PRIu64 " dropped_busy=%" PRIu64 " lanes_attached=%u\n",
              c.frames, c.dropped_full, c.dropped_busy, c.lanes_attached);
  std::printf("%d passed, %d failed\n", g_passed, g_failed);
  std::fflush(stdout);
  return g_failed == 0 ? 0 : 1;
}
