// The test pattern that the fake renderer and the C++ harness write, and
// that examples/consumer verifies byte for byte (its Rust twin lives in
// examples/consumer/pattern.rs: keep the two in step).
//
// Video: byte x of row r of plane p of frame n of stream s is
//   (x + 7r + 13p + 37n + 101s) mod 256,
// except the first 16 bytes of row 0 of plane 0, which carry the counter:
// n (u64 LE), s (u32 LE), "FAKE".
// Audio (f32 planar): sample i of channel c of chunk n is
//   ((n * frame_count + i) mod 65536) + 1000c   (exact in a float).
#ifndef SHMRING_TESTS_PATTERN_H_
#define SHMRING_TESTS_PATTERN_H_

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace shmring_pattern {

constexpr size_t kMaxRow = 8192;
constexpr size_t kCounterBytes = 16;

// 0, 1, ..., 255, 0, 1, ...: every row is a window of it.
inline const uint8_t* Ramp() {
  static const struct RampTable {
    uint8_t bytes[256 + kMaxRow];
    RampTable() {
      for (size_t i = 0; i < sizeof(bytes); ++i) bytes[i] = static_cast<uint8_t>(i);
    }
  } table;
  return table.bytes;
}

inline uint32_t RowPhase(uint32_t stream, uint64_t frame, uint32_t plane, uint32_t row) {
  return (7u * row + 13u * plane + 37u * static_cast<uint32_t>(frame) + 101u * stream) & 255u;
}

// Fills `rows` rows of `row_bytes` (<= kMaxRow) at `stride` apart.
inline void FillPlane(uint8_t* dst, size_t stride, size_t row_bytes, size_t rows, uint32_t stream, uint64_t frame,
                      uint32_t plane) {
  const uint8_t* ramp = Ramp();
  for (size_t r = 0; r < rows; ++r) {
    std::memcpy(dst + r * stride, ramp + RowPhase(stream, frame, plane, static_cast<uint32_t>(r)), row_bytes);
  }
}

// Writes the counter over the first 16 bytes of plane 0.
inline void StampCounter(uint8_t* y, uint32_t stream, uint64_t frame) {
  for (int i = 0; i < 8; ++i) y[i] = static_cast<uint8_t>(frame >> (8 * i));
  for (int i = 0; i < 4; ++i) y[8 + i] = static_cast<uint8_t>(stream >> (8 * i));
  std::memcpy(y + 12, "FAKE", 4);
}

inline float AudioSample(uint64_t chunk, uint32_t frame_count, uint32_t channel, uint32_t i) {
  return static_cast<float>((chunk * frame_count + i) % 65536u) + 1000.0f * static_cast<float>(channel);
}

}  // namespace shmring_pattern

#endif  // SHMRING_TESTS_PATTERN_H_
