"""Record bytes written by hand, as a foreign or hostile producer would:
media payloads laid out per `ffi/include/shmring/media.h`, and a second
mapping of a ring's memfd to rewrite the segment under the consumer."""

import mmap
import os
import struct

VIDEO_MAGIC = 0x564D4853
AUDIO_MAGIC = 0x414D4853
MEDIA_VERSION = 1
PIXEL_I420 = 1
SAMPLE_F32_PLANAR = 1
VIDEO_HEADER = struct.Struct("<IHHIIqqIIII4I4I48x")  # 128 bytes
AUDIO_HEADER = struct.Struct("<IHHIIqqIIIII12x")  # 64 bytes
assert VIDEO_HEADER.size == 128 and AUDIO_HEADER.size == 64

# The segment header (crates/shmring/src/layout.rs): cursors on 128-byte lines.
WRITE_CURSOR = 2 * 128
LAYOUT_VERSION = 8
HEADER_SIZE_FIELD = 16
# A record: stamp (8), len (4), kind (4), producer (4), flags (4),
# sequence (8), then the payload at 64.
RECORD_LEN = 8
RECORD_PAYLOAD = 64


def align(n: int) -> int:
    return (n + 63) // 64 * 64


def i420_layout(width: int, height: int):
    """(offsets, strides, rows, payload length) as the Rust writer lays
    an I420 frame out."""
    cw, ch = (width + 1) // 2, (height + 1) // 2
    offsets, strides, rows = [], [], []
    end = VIDEO_HEADER.size
    for row_bytes, n in ((width, height), (cw, ch), (cw, ch)):
        offsets.append(end)
        strides.append(align(row_bytes))
        rows.append(n)
        end += align(row_bytes) * n
    return offsets, strides, rows, end


def video_header(width, height, stream=1, frame_number=0, timestamp_us=0, offsets=None, strides=None) -> bytes:
    layout_offsets, layout_strides, _, _ = i420_layout(width, height)
    offsets = offsets or layout_offsets
    strides = strides or layout_strides
    return VIDEO_HEADER.pack(
        VIDEO_MAGIC, MEDIA_VERSION, VIDEO_HEADER.size, stream, PIXEL_I420, timestamp_us, frame_number,
        width, height, 3, 0, *offsets, 0, *strides, 0,
    )


def i420_payload(width, height, y_value=16, stream=1, frame_number=0) -> bytearray:
    """An I420 frame with every Y byte `y_value` and chroma 128."""
    offsets, strides, rows, end = i420_layout(width, height)
    payload = bytearray(end)
    payload[: VIDEO_HEADER.size] = video_header(width, height, stream, frame_number)
    payload[offsets[0] : offsets[0] + strides[0] * rows[0]] = bytes([y_value]) * (strides[0] * rows[0])
    payload[offsets[1] :] = bytes([128]) * (end - offsets[1])
    return payload


class SecondMapping:
    """The ring's memfd mapped again, read-write: what another process
    holding the descriptor can do to the segment."""

    def __init__(self, memfd: int):
        self.fd = os.dup(memfd)
        self.size = os.fstat(self.fd).st_size
        self.map = mmap.mmap(self.fd, self.size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        self.header_size = struct.unpack_from("<I", self.map, HEADER_SIZE_FIELD)[0]
        self.capacity = self.size - self.header_size

    def record(self, position: int) -> int:
        """Offset in the segment of the record at ring `position`."""
        return self.header_size + position % self.capacity

    def put(self, offset: int, fmt: str, *values) -> None:
        struct.pack_into(fmt, self.map, offset, *values)

    def get(self, offset: int, fmt: str):
        return struct.unpack_from(fmt, self.map, offset)

    def close(self) -> None:
        self.map.close()
        os.close(self.fd)
