"""Real producer processes (`shmring camera`, `shmring microphone`) into a
Python consumer: every frame read through numpy views of the ring."""

import math

import numpy as np

import shmring
from records import i420_payload
from conftest import finish, frames_until_exit, tally


def painted_number(y: np.ndarray) -> int:
    """The frame number the camera paints as 32 black or white blocks along
    the top (as the Rust tests decode it)."""
    block = y.shape[1] // 32
    bits = y[0, np.arange(32) * block + block // 2] > 128
    return int("".join("1" if b else "0" for b in bits), 2)


def test_every_camera_frame_is_read_from_the_numpy_y_plane(sandbox):
    name = sandbox.ring("cam")
    width, height = 640, 360
    with shmring.Consumer.create(name, capacity=64 << 20) as consumer:
        camera = sandbox.spawn("camera", "--ring", name, "--seconds", "2", "--size", f"{width}x{height}", "--stream", "5")
        numbers = []
        for frame in frames_until_exit(consumer, camera):
            assert frame.media_kind == "video" and frame.kind == shmring.KIND_VIDEO
            assert (frame.stream, frame.format, frame.size) == (5, "I420", (width, height))
            y, u, v = frame.y, frame.u, frame.v
            assert y.shape == (height, width) and u.shape == v.shape == (height // 2, width // 2)
            assert y.dtype == np.uint8 and not y.flags.writeable
            assert y.strides == (frame.strides[0], 1)
            n = frame.frame_number
            assert painted_number(y) == n, "the number painted in the pixels is the header's"
            # The scrolling gradient that number implies, on a row below the blocks.
            expected = (16 + (np.arange(width) + 4 * n) % 220).astype(np.uint8)
            assert np.array_equal(y[20], expected), f"frame {n} row 20"
            # As the camera computes it: the offset wraps as a byte first.
            cu = min(max(128 + ((n % 64) - 32) % 256, 16), 240)
            cv = min(max(128 - ((n % 48) - 24), 16), 240)
            assert (u == cu).all() and (v == cv).all(), f"frame {n} chroma"
            numbers.append(n)
            del frame, y, u, v
        out, _ = finish(camera)
    sent = tally(out, "camera")
    assert len(numbers) == sent["sent"] > 30
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)


def test_microphone_chunks_are_read_as_float32_samples_in_place(sandbox):
    name = sandbox.ring("mic")
    with shmring.Consumer.create(name, capacity=4 << 20) as consumer:
        mic = sandbox.spawn("microphone", "--ring", name, "--seconds", "1", "--stream", "2")
        chunks = 0
        for frame in frames_until_exit(consumer, mic):
            assert frame.media_kind == "audio" and frame.stream == 2
            assert (frame.sample_rate, frame.channels, frame.sample_count, frame.format) == (
                48_000,
                2,
                480,
                "f32-planar",
            )
            samples = frame.samples
            assert samples.shape == (2, 480) and samples.dtype == np.float32 and not samples.flags.writeable
            first = frame.frame_number * 480
            t = np.arange(first, first + 480, dtype=np.float64)
            for channel in range(2):
                step = math.tau * 220.0 * (channel + 2) / 48_000
                expected = (0.2 * np.sin(t * step)).astype(np.float32)
                assert np.array_equal(samples[channel], expected), f"chunk {frame.frame_number} channel {channel}"
            chunks += 1
            del frame, samples
        out, _ = finish(mic)
    # Every chunk written arrived (a loaded machine may skip late ticks).
    assert chunks == tally(out, "microphone")["sent"] >= 50


def test_announced_labels_name_the_streams(sandbox):
    consumer = shmring.Consumer.create_anonymous(1 << 20)
    producer = consumer.producer()
    producer.announce(9, "video", '{"participant":"ada"}')
    producer.send(i420_payload(64, 48, stream=9, frame_number=3), kind=shmring.KIND_VIDEO)
    announcement = consumer.recv(timeout=1)
    assert (announcement.media_kind, announcement.stream, announcement.label) == ("announce", 9, '{"participant":"ada"}')
    assert announcement.announced_kind == "video"
    frame = consumer.recv(timeout=1)
    assert (frame.stream, frame.label, frame.frame_number) == (9, '{"participant":"ada"}', 3)
    assert consumer.labels == {9: '{"participant":"ada"}'}
    assert (frame.y == 16).all() and (frame.u == 128).all()
