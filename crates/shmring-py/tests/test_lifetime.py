"""A frame's ring space lives exactly as long as the last Python object that
borrows it, and nothing can reach the record once it is given back."""

import gc

import numpy as np
import pytest

import shmring
from records import i420_payload


def ring(capacity=1 << 20, **kwargs):
    consumer = shmring.Consumer.create_anonymous(capacity, **kwargs)
    return consumer, consumer.producer()


def read_cursor(consumer) -> int:
    return consumer.stats()["cursors"]["read"]


def test_an_array_kept_after_its_frame_is_deleted_reads_the_record_and_holds_the_ring():
    consumer, producer = ring()
    producer.send(i420_payload(64, 48, y_value=77, frame_number=1), kind=shmring.KIND_VIDEO)
    frame = consumer.recv(timeout=1)
    y = frame.y
    del frame
    gc.collect()
    # The record is still leased: the array's base holds the frame.
    assert consumer.frames_held == 1
    assert read_cursor(consumer) == 0
    assert y.shape == (48, 64) and (y == 77).all()
    # Space after it is reused while it is held, and it is not overwritten.
    for n in range(40):
        producer.send(i420_payload(64, 48, y_value=n, frame_number=2 + n), kind=shmring.KIND_VIDEO)
        later = consumer.recv(timeout=1)
        assert (later.y == n).all()
        del later
    assert (y == 77).all() and read_cursor(consumer) == 0
    del y
    consumer.try_recv()  # the consumer takes the release at its next call
    assert consumer.frames_held == 0
    assert read_cursor(consumer) == consumer.stats()["cursors"]["write"]


def test_memoryviews_and_frombuffer_arrays_keep_the_frame_alive():
    consumer, producer = ring()
    producer.send(b"payload bytes", kind=42)
    frame = consumer.recv(timeout=1)
    view = memoryview(frame)
    array = np.frombuffer(frame, dtype=np.uint8)
    assert frame.exports == 2 and view.readonly and not array.flags.writeable
    del frame
    gc.collect()
    assert bytes(view) == b"payload bytes" and array.tobytes() == b"payload bytes"
    assert consumer.frames_held == 1
    del view
    assert consumer.frames_held == 1, "the array still borrows the record"
    del array
    consumer.try_recv()
    assert consumer.frames_held == 0


def test_every_access_after_release_raises_and_the_space_is_given_back():
    consumer, producer = ring()
    producer.send(i420_payload(32, 16), kind=shmring.KIND_VIDEO)
    frame = consumer.recv(timeout=1)
    assert bytes(frame)[:4] == b"SHMV"
    frame.release()
    assert frame.released
    consumer.try_recv()
    assert consumer.frames_held == 0 and read_cursor(consumer) > 0
    for access in (
        lambda: frame.kind,
        lambda: len(frame),
        lambda: bytes(frame),
        lambda: memoryview(frame),
        lambda: np.frombuffer(frame, dtype=np.uint8),
        lambda: frame.y,
        lambda: frame.plane(0),
        lambda: frame.width,
        lambda: frame.stream,
        lambda: frame.label,
    ):
        with pytest.raises(shmring.Released, match="the frame was released"):
            access()
    frame.release()  # again: nothing happens


def test_release_is_refused_while_a_view_or_array_is_alive():
    consumer, producer = ring()
    producer.send(i420_payload(32, 16, y_value=9), kind=shmring.KIND_VIDEO)
    frame = consumer.recv(timeout=1)
    y = frame.y
    with pytest.raises(shmring.Exported, match="still borrowed by 1") as refused:
        frame.release()
    assert isinstance(refused.value, BufferError)
    assert not frame.released and (y == 9).all() and frame.width == 32
    with memoryview(frame) as view:
        with pytest.raises(shmring.Exported, match="still borrowed by 2"):
            frame.release()
        assert view[:4] == b"SHMV"
    del y
    frame.release()
    assert frame.released


def test_a_with_block_releases_the_frame():
    consumer, producer = ring()
    producer.send(b"x" * 100)
    with consumer.recv(timeout=1) as frame:
        assert len(frame) == 100
    assert frame.released
    consumer.try_recv()
    assert consumer.frames_held == 0


def test_the_cap_on_frames_held_raises_and_receives_nothing():
    consumer, producer = ring(max_frames=3)
    assert consumer.max_frames == 3
    for n in range(5):
        producer.send(bytes([n]))
    held = [consumer.recv(timeout=1) for _ in range(3)]
    with pytest.raises(shmring.TooManyHeld, match="3 leases held, the limit is 3"):
        consumer.recv(timeout=1)
    with pytest.raises(shmring.TooManyHeld):
        consumer.try_recv()
    del held[0]
    # Nothing was lost by the refusals: the next frame is the fourth.
    assert bytes(consumer.recv(timeout=1)) == bytes([3])
    consumer.max_frames = 10
    assert bytes(consumer.recv(timeout=1)) == bytes([4])


def test_frames_outlive_their_consumer():
    consumer, producer = ring()
    producer.send(i420_payload(32, 16, y_value=200), kind=shmring.KIND_VIDEO)
    frame = consumer.recv(timeout=1)
    y = frame.y
    consumer.close()
    with pytest.raises(shmring.Closed, match="the consumer was closed"):
        consumer.recv(timeout=0)
    del consumer, producer
    gc.collect()
    assert (y == 200).all() and frame.height == 16 and bytes(frame)[:4] == b"SHMV"


def test_a_reservation_is_written_in_place_and_refuses_commit_while_borrowed():
    consumer, producer = ring()
    reservation = producer.reserve(8, kind=5)
    view = memoryview(reservation)
    assert not view.readonly and len(view) == 8
    view[:] = b"in place"
    with pytest.raises(shmring.Exported, match="still borrowed by 1"):
        reservation.commit()
    with pytest.raises(shmring.Exported, match="a reservation of this producer is open"):
        producer.send(b"meanwhile")
    view.release()
    reservation.commit()
    with pytest.raises(shmring.Released):
        memoryview(reservation)
    frame = consumer.recv(timeout=1)
    assert (frame.kind, bytes(frame)) == (5, b"in place")
    producer.send(b"then this")
    assert bytes(consumer.recv(timeout=1)) == b"then this"


def test_an_aborted_or_abandoned_reservation_is_never_seen():
    consumer, producer = ring()
    with pytest.raises(RuntimeError):
        with producer.reserve(4) as reservation:
            reservation.write(b"half")
            raise RuntimeError("the writer failed")
    assert not reservation.is_open
    abandoned = producer.reserve(16)
    del abandoned
    gc.collect()
    producer.send(b"real")
    assert bytes(consumer.recv(timeout=1)) == b"real"
    assert consumer.stats()["skipped"] == 2
