"""The Python examples (examples/python) against real producer processes:
PNG thumbnails computed from numpy views, and an MP4 encoded with PyAV."""

import struct
import sys
import zlib

import av
import numpy as np

from conftest import REPO, assert_sent_once_in_order, finish, tally
from test_media import painted_number

EXAMPLES = REPO / "examples" / "python"


def read_png(data: bytes) -> np.ndarray:
    """The RGB pixels of a PNG written by the thumbnail example."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height, depth, color = struct.unpack(">IIBB", data[16:26])
    assert (depth, color) == (8, 2)
    at, idat = 8, b""
    while at < len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        kind = data[at + 4 : at + 8]
        if kind == b"IDAT":
            idat += data[at + 8 : at + 8 + length]
        at += 12 + length
    rows = np.frombuffer(zlib.decompress(idat), dtype=np.uint8).reshape(height, 1 + 3 * width)
    assert (rows[:, 0] == 0).all()
    return rows[:, 1:].reshape(height, width, 3)


def example(sandbox, script: str, *args: str):
    return sandbox.python(
        f"import runpy, sys; sys.argv = {[script, *args]!r}; runpy.run_path({str(EXAMPLES / script)!r}, run_name='__main__')"
    )


def test_thumbnails_of_a_camera_ring(sandbox):
    name = sandbox.ring("thumbs")
    sandbox.run("create", name, "--capacity", "64MiB")
    out_dir = sandbox.dir / "thumbs"
    thumbs = example(sandbox, "thumbnails.py", name, "--out", str(out_dir), "--every", "10", "--idle", "3")
    sandbox.wait_for_consumer(name)
    camera = sandbox.spawn("camera", "--ring", name, "--seconds", "2", "--size", "320x240", "--fps", "15")
    counts = tally(finish(camera)[0], "camera")
    sent, late = counts["sent"], counts["late"]
    out, _ = finish(thumbs)
    assert out.startswith(f"{sent} video frames")
    files = sorted(out_dir.glob("stream1-*.png"))
    # One per tenth frame number; a tick the camera was late for (a loaded
    # machine) was never sent, so it has none.
    every_tenth = list(range(0, sent + late, 10))
    numbers = [int(p.stem.split("-")[1]) for p in files]
    assert set(numbers) <= set(every_tenth) and len(numbers) >= len(every_tenth) - late, (numbers, counts)
    first = read_png(files[0].read_bytes())
    assert first.shape == (30, 40, 3)
    # Frame 0: its number's blocks along the top are Y=16 (no green with
    # its chroma), the gradient below them varies along the row.
    assert first[0, :, 1].max() == 0 and first[10, :, 1].std() > 10


def test_pyav_records_a_camera_and_a_microphone(sandbox):
    name = sandbox.ring("pyav")
    sandbox.run("create", name, "--capacity", "64MiB")
    output = sandbox.dir / "out.mp4"
    recorder = example(sandbox, "record_pyav.py", name, "-o", str(output), "--idle", "3")
    sandbox.wait_for_consumer(name)
    camera = sandbox.spawn("camera", "--ring", name, "--seconds", "2", "--size", "320x240")
    mic = sandbox.spawn("microphone", "--ring", name, "--seconds", "2", "--stream", "2")
    counts = tally(finish(camera)[0], "camera")
    sent = counts["sent"]
    finish(mic)
    out, _ = finish(recorder)
    assert out.startswith(f"{sent} video frames")
    with av.open(str(output)) as container:
        video = container.streams.video[0]
        assert (video.codec_context.width, video.codec_context.height) == (320, 240)
        assert len(container.streams.audio) == 1
        numbers = [painted_number(frame.to_ndarray(format="gray")) for frame in container.decode(video=0)]
    # Every frame, in order, its painted number intact.
    assert_sent_once_in_order(numbers, counts)
