/*
 * Sizes and offsets of the media headers as a C (or C++) compiler lays them
 * out, exported as one table so the Rust tests can compare them with the
 * bindgen types and with the crate's constants. Built twice by build.rs:
 * as C11 and as C++20 with Chromium's flags.
 */
#include "shmring/media.h"

#define CAT2(a, b) a##b
#define CAT(a, b) CAT2(a, b)

#ifdef __cplusplus
#define PROBE_NAME shmring_media_layout_cxx
#define PROBE_ALIGNOF(t) alignof(t)
extern "C" {
extern const uint32_t PROBE_NAME[];
extern const uint32_t CAT(PROBE_NAME, _len);
}
#else
#define PROBE_NAME shmring_media_layout_c
#define PROBE_ALIGNOF(t) _Alignof(t)
#endif

#define V(field) (uint32_t) offsetof(shmring_video_header, field)
#define A(field) (uint32_t) offsetof(shmring_audio_header, field)
#define N(field) (uint32_t) offsetof(shmring_announce_header, field)

/* Keep in the order of `LAYOUT_TABLE` in tests/layout.rs. */
const uint32_t PROBE_NAME[] = {
    (uint32_t)sizeof(shmring_video_header),
    (uint32_t)PROBE_ALIGNOF(shmring_video_header),
    V(magic), V(version), V(header_size), V(stream_id), V(pixel_format), V(timestamp_us),
    V(frame_number), V(width), V(height), V(plane_count), V(reserved0), V(plane_offset),
    V(plane_stride), V(reserved1),
    (uint32_t)sizeof(shmring_audio_header),
    (uint32_t)PROBE_ALIGNOF(shmring_audio_header),
    A(magic), A(version), A(header_size), A(stream_id), A(sample_format), A(timestamp_us),
    A(frame_number), A(sample_rate), A(channels), A(frame_count), A(data_offset),
    A(channel_stride), A(reserved0),
    (uint32_t)sizeof(shmring_announce_header),
    (uint32_t)PROBE_ALIGNOF(shmring_announce_header),
    N(magic), N(version), N(header_size), N(stream_id), N(stream_kind), N(timestamp_us),
    N(label_offset), N(label_length), N(reserved0),
    SHMRING_KIND_VIDEO, SHMRING_KIND_AUDIO, SHMRING_KIND_ANNOUNCE, SHMRING_VIDEO_MAGIC, SHMRING_AUDIO_MAGIC,
    SHMRING_ANNOUNCE_MAGIC, SHMRING_MAX_LABEL,
    SHMRING_MEDIA_VERSION, SHMRING_MEDIA_ALIGN, SHMRING_MAX_PLANES, SHMRING_MAX_CHANNELS,
    SHMRING_PIXEL_I420, SHMRING_PIXEL_NV12, SHMRING_PIXEL_RGBA, SHMRING_PIXEL_BGRA,
    SHMRING_SAMPLE_F32_PLANAR, SHMRING_SAMPLE_S16_INTERLEAVED,
};
const uint32_t CAT(PROBE_NAME, _len) = (uint32_t)(sizeof(PROBE_NAME) / sizeof(PROBE_NAME[0]));
