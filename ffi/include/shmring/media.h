/*
 * shmring media frames: the headers that travel at the start of every
 * payload of a video or audio record in a shmring ring.
 *
 * Plain C (C99 types, C11 static assertions), usable from C and C++. The
 * Rust side (crate shmring-media) is generated from this file with bindgen,
 * and tests check that both sides agree on every size and offset.
 *
 * Layout rules:
 * - Every field has a fixed width; padding is explicit (`reserved*`, always
 *   written as zero); all values are in the host's byte order (producer and
 *   consumer share one machine).
 * - Every offset is relative to the start of the payload, which the ring
 *   aligns to 64 bytes. Writers put each plane (and each audio channel
 *   plane) at a 64-byte aligned offset with a stride that is a multiple of
 *   64, so encoders may use aligned SIMD loads. Readers check all of it.
 * - The record kind (the ring's per-record `kind` word) says which header a
 *   payload starts with. The header repeats a magic word and a version so a
 *   reader can refuse a payload that is not what its kind claims.
 * - Enumerations are listed as named constants; the header fields that hold
 *   them are `uint32_t`, since the size of a C enum is up to the compiler.
 */
#ifndef SHMRING_MEDIA_H
#define SHMRING_MEDIA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
#define SHMRING_MEDIA_STATIC_ASSERT(cond, msg) static_assert(cond, msg)
extern "C" {
#else
#define SHMRING_MEDIA_STATIC_ASSERT(cond, msg) _Static_assert(cond, msg)
#endif

/* Record kinds (the ring record's `kind` word). */
enum shmring_record_kind {
  SHMRING_KIND_VIDEO = 1,
  SHMRING_KIND_AUDIO = 2,
  /* A stream's name: a shmring_announce_header and its label. */
  SHMRING_KIND_ANNOUNCE = 3
};

/* "SHMV" and "SHMA" read as little-endian 32-bit words. */
#define SHMRING_VIDEO_MAGIC 0x564D4853u
#define SHMRING_AUDIO_MAGIC 0x414D4853u
/* "SHMN" */
#define SHMRING_ANNOUNCE_MAGIC 0x4E4D4853u
/* Layout version of both headers; bumped on any incompatible change. */
#define SHMRING_MEDIA_VERSION 1u
/* Alignment of planes, strides and of the payload itself. */
#define SHMRING_MEDIA_ALIGN 64u
/* Most planes a video frame may have. */
#define SHMRING_MAX_PLANES 4u
/* Most channels an audio frame may have. */
#define SHMRING_MAX_CHANNELS 32u
/* Longest label of an announcement, in bytes of UTF-8. */
#define SHMRING_MAX_LABEL 1024u

/* Pixel formats (shmring_video_header.pixel_format). */
enum shmring_pixel_format {
  /* 3 planes: Y (w x h), U and V ((w+1)/2 x (h+1)/2), 8 bits per sample. */
  SHMRING_PIXEL_I420 = 1,
  /* 2 planes: Y (w x h), interleaved UV ((w+1)/2 pairs x (h+1)/2). */
  SHMRING_PIXEL_NV12 = 2,
  /* 1 plane, 4 bytes per pixel, R G B A in memory order. */
  SHMRING_PIXEL_RGBA = 3,
  /* 1 plane, 4 bytes per pixel, B G R A in memory order. */
  SHMRING_PIXEL_BGRA = 4
};

/* Sample formats (shmring_audio_header.sample_format). */
enum shmring_sample_format {
  /* 32-bit float, one plane per channel, planes `channel_stride` apart. */
  SHMRING_SAMPLE_F32_PLANAR = 1,
  /* Signed 16-bit, channels interleaved in one plane. */
  SHMRING_SAMPLE_S16_INTERLEAVED = 2
};

/* Sizes of the headers; planes and samples start at or after them. */
#define SHMRING_VIDEO_HEADER_SIZE 128u
#define SHMRING_AUDIO_HEADER_SIZE 64u
#define SHMRING_ANNOUNCE_HEADER_SIZE 64u

/* The first bytes of a SHMRING_KIND_VIDEO payload. */
typedef struct shmring_video_header {
  uint32_t magic;          /* SHMRING_VIDEO_MAGIC */
  uint16_t version;        /* SHMRING_MEDIA_VERSION */
  uint16_t header_size;    /* sizeof(shmring_video_header) */
  uint32_t stream_id;      /* which track this frame belongs to */
  uint32_t pixel_format;   /* enum shmring_pixel_format */
  int64_t timestamp_us;    /* presentation time, microseconds */
  uint64_t frame_number;   /* per-stream counter; gaps are dropped frames */
  uint32_t width;          /* pixels */
  uint32_t height;         /* pixels */
  uint32_t plane_count;    /* as the pixel format requires */
  uint32_t reserved0;      /* zero */
  uint32_t plane_offset[4];/* from the payload start; unused entries zero */
  uint32_t plane_stride[4];/* bytes per row; unused entries zero */
  uint8_t reserved1[48];   /* zero; pads the header to 128 bytes */
} shmring_video_header;

/* The first bytes of a SHMRING_KIND_AUDIO payload. */
typedef struct shmring_audio_header {
  uint32_t magic;          /* SHMRING_AUDIO_MAGIC */
  uint16_t version;        /* SHMRING_MEDIA_VERSION */
  uint16_t header_size;    /* sizeof(shmring_audio_header) */
  uint32_t stream_id;      /* which track this chunk belongs to */
  uint32_t sample_format;  /* enum shmring_sample_format */
  int64_t timestamp_us;    /* time of the first sample, microseconds */
  uint64_t frame_number;   /* per-stream chunk counter; gaps are drops */
  uint32_t sample_rate;    /* Hz */
  uint32_t channels;       /* 1 ..= SHMRING_MAX_CHANNELS */
  uint32_t frame_count;    /* samples per channel in this chunk */
  uint32_t data_offset;    /* from the payload start */
  uint32_t channel_stride; /* planar: bytes between channel planes; else 0 */
  uint32_t reserved0[3];   /* zero; pads the header to 64 bytes */
} shmring_audio_header;

/* The first bytes of a SHMRING_KIND_ANNOUNCE payload. A producer announces
 * each stream once, before (or soon after) its first frame, and again if
 * its label or kind changes: which stream id carries what. The label
 * follows the header: `label_length` bytes of UTF-8, no terminating NUL
 * (the record may be padded after it). Consumers must expect frames of a
 * stream they have not seen announced. */
typedef struct shmring_announce_header {
  uint32_t magic;          /* SHMRING_ANNOUNCE_MAGIC */
  uint16_t version;        /* SHMRING_MEDIA_VERSION */
  uint16_t header_size;    /* sizeof(shmring_announce_header) */
  uint32_t stream_id;      /* the stream named */
  uint32_t stream_kind;    /* SHMRING_KIND_VIDEO or SHMRING_KIND_AUDIO */
  int64_t timestamp_us;    /* when it was announced, microseconds */
  uint32_t label_offset;   /* from the payload start: header_size */
  uint32_t label_length;   /* bytes, 0 ..= SHMRING_MAX_LABEL */
  uint32_t reserved0[8];   /* zero; pads the header to 64 bytes */
} shmring_announce_header;

SHMRING_MEDIA_STATIC_ASSERT(sizeof(shmring_video_header) == SHMRING_VIDEO_HEADER_SIZE,
                            "video header is 128 bytes");
SHMRING_MEDIA_STATIC_ASSERT(offsetof(shmring_video_header, timestamp_us) == 16, "video timestamp at 16");
SHMRING_MEDIA_STATIC_ASSERT(offsetof(shmring_video_header, width) == 32, "video width at 32");
SHMRING_MEDIA_STATIC_ASSERT(offsetof(shmring_video_header, plane_offset) == 48, "plane offsets at 48");
SHMRING_MEDIA_STATIC_ASSERT(offsetof(shmring_video_header, plane_stride) == 64, "plane strides at 64");
SHMRING_MEDIA_STATIC_ASSERT(offsetof(shmring_video_header, reserved1) == 80, "video padding at 80");
SHMRING_MEDIA_STATIC_ASSERT(sizeof(shmring_audio_header) == SHMRING_AUDIO_HEADER_SIZE,
                            "audio header is 64 bytes");
SHMRING_MEDIA_STATIC_ASSERT(offsetof(shmring_audio_header, timestamp_us) == 16, "audio timestamp at 16");
SHMRING_MEDIA_STATIC_ASSERT(offsetof(shmring_audio_header, sample_rate) == 32, "sample rate at 32");
SHMRING_MEDIA_STATIC_ASSERT(offsetof(shmring_audio_header, channel_stride) == 48, "channel stride at 48");
SHMRING_MEDIA_STATIC_ASSERT(sizeof(shmring_announce_header) == SHMRING_ANNOUNCE_HEADER_SIZE,
                            "announce header is 64 bytes");
SHMRING_MEDIA_STATIC_ASSERT(offsetof(shmring_announce_header, timestamp_us) == 16, "announce timestamp at 16");
SHMRING_MEDIA_STATIC_ASSERT(offsetof(shmring_announce_header, label_offset) == 24, "label offset at 24");
SHMRING_MEDIA_STATIC_ASSERT(SHMRING_VIDEO_HEADER_SIZE % SHMRING_MEDIA_ALIGN == 0, "planes can follow aligned");
SHMRING_MEDIA_STATIC_ASSERT(SHMRING_AUDIO_HEADER_SIZE % SHMRING_MEDIA_ALIGN == 0, "samples can follow aligned");

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* SHMRING_MEDIA_H */
