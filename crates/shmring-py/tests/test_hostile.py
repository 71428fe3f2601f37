"""Hostile ring bytes (written through a second mapping of the segment, or
by a producer that lies in its headers) surface as Python exceptions,
never a crash, and views never reach outside their record."""

import numpy as np
import pytest

import shmring
from records import RECORD_LEN, RECORD_PAYLOAD, WRITE_CURSOR, SecondMapping, i420_layout, i420_payload, video_header


@pytest.fixture
def ring():
    consumer = shmring.Consumer.create_anonymous(1 << 20)
    producer = consumer.producer()
    segment = SecondMapping(consumer.fds[0])
    yield consumer, producer, segment
    segment.close()


def test_an_impossible_write_cursor_is_a_corrupt_error(ring):
    consumer, producer, segment = ring
    producer.send(b"first")
    assert bytes(consumer.recv(timeout=1)) == b"first"
    (write,) = segment.get(WRITE_CURSOR, "<Q")
    segment.put(WRITE_CURSOR, "<Q", write + 3 * segment.capacity + 8)
    with pytest.raises(shmring.Corrupt, match="write cursor .* is impossible") as corrupt:
        consumer.recv(timeout=1)
    assert str(corrupt.value).startswith("corrupt record at position ")
    assert consumer.stats()["corrupt"] >= 1


def test_a_record_length_past_the_ring_is_a_corrupt_error_and_the_consumer_goes_on(ring):
    consumer, producer, segment = ring
    producer.send(b"lying")
    segment.put(segment.record(0) + RECORD_LEN, "<I", 0xFFFF_FFF0)
    with pytest.raises(shmring.Corrupt, match="exceeds the largest payload"):
        consumer.recv(timeout=1)
    producer.send(b"after")
    assert bytes(consumer.recv(timeout=1)) == b"after"
    assert consumer.stats()["corrupt"] == 1


@pytest.mark.parametrize(
    "lie, message",
    [
        (dict(width=0), "impossible frame size 0x48"),
        (dict(offsets=[128, 128, 128]), "planes overlap"),
        (dict(offsets=[128, 1 << 30, 1 << 30]), "payload of .* bytes, header needs"),
        (dict(strides=[8, 64, 64]), "plane 0: offset or stride not a multiple of 64"),
        (dict(strides=[0, 64, 64]), "plane 0: stride shorter than a row of pixels"),
    ],
)
def test_a_lying_video_header_raises_media_error_on_typed_access(ring, lie, message):
    consumer, producer, _ = ring
    width = lie.pop("width", 64)
    payload = i420_payload(64, 48)
    payload[:128] = video_header(width, 48, **lie)
    producer.send(payload, kind=shmring.KIND_VIDEO)
    frame = consumer.recv(timeout=1)
    assert frame.media_kind == "video" and len(frame) == len(payload)
    for access in (lambda: frame.y, lambda: frame.width, lambda: frame.frame_number, lambda: frame.planes):
        with pytest.raises(shmring.MediaError, match=message):
            access()
    assert bytes(frame) == bytes(payload), "the bytes stay readable"
    assert frame.stream is None and "refused" in repr(frame)


def test_a_header_rewritten_after_receipt_changes_no_view(ring):
    consumer, producer, segment = ring
    producer.send(i420_payload(64, 48, y_value=50), kind=shmring.KIND_VIDEO)
    frame = consumer.recv(timeout=1)
    header_at = segment.record(frame.position) + RECORD_PAYLOAD
    # Width, height and every plane offset made huge, after the check.
    segment.put(header_at + 32, "<II", 1 << 15, 1 << 15)
    segment.put(header_at + 48, "<4I", 1 << 30, 1 << 30, 1 << 30, 0)
    y = frame.y
    assert y.shape == (48, 64) and frame.size == (64, 48)
    offsets, strides, rows, _ = i420_layout(64, 48)
    assert np.frombuffer(frame, dtype=np.uint8)[offsets[0]] == 50
    # Pixels rewritten while an array is held are read as they are now.
    segment.put(header_at + offsets[0], "<B", 51)
    assert y[0, 0] == 51


def test_records_no_media_view_can_read_are_refused_by_kind(ring):
    consumer, producer, _ = ring
    producer.send(b"not a video", kind=shmring.KIND_VIDEO)
    producer.send(b"plain", kind=77)
    producer.send(b"SHMA" + bytes(10), kind=shmring.KIND_AUDIO)
    video = consumer.recv(timeout=1)
    with pytest.raises(shmring.MediaError, match="payload of 11 bytes, header needs 128"):
        video.y
    plain = consumer.recv(timeout=1)
    with pytest.raises(shmring.MediaError, match="the record is other, not video"):
        plain.y
    with pytest.raises(shmring.MediaError, match="not audio"):
        plain.samples
    audio = consumer.recv(timeout=1)
    with pytest.raises(shmring.MediaError, match="header needs 64"):
        audio.samples
