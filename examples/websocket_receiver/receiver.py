#!/usr/bin/env python3
"""A recording bot's receiver as it was before shared memory: the page's JS
client sends every decoded frame over a loopback WebSocket, and this process
(the `websockets` package, asyncio) writes each frame to ffmpeg's stdin and
each audio chunk to a second pipe. It is the baseline of `shmring bench bot`
(websocket-python), written to be a good receiver, not a strawman:

- compression is off (raw video does not deflate; Chromium would otherwise
  negotiate permessage-deflate), frames up to 16 MiB are taken whole;
- a frame's planes go to ffmpeg straight from the received message through
  a memoryview, with no copy in Python when the rows are unpadded (1080p
  I420 is), row by row otherwise;
- ffmpeg is fed by one writer thread per pipe behind a bounded queue: a
  slow ffmpeg costs dropped (and counted) frames, never a stalled socket;
- it speaks the bridge's small protocol (a JSON declaration answered with
  {"type": "ready"}), so the page runs the very same JS client as it does
  with the bridge.

    receiver.py --listen 127.0.0.1:8790 -o out.mp4 [--size 1920x1080]
        [--fps 30] [--rate 48000] [--channels 1] [--preset ultrafast]

ffmpeg's arguments are those of `shmring record` (H.264 with x264, AAC
128k, raw inputs whose formats are given). It stops when every connection
has closed after the first one came, or on SIGINT/SIGTERM, lets ffmpeg
finish the file, and prints one JSON line of counters.
"""

import argparse
import asyncio
import json
import os
import queue
import signal
import struct
import subprocess
import sys
import threading
from array import array

from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed

VIDEO_MAGIC = 0x564D4853  # "SHMV"
AUDIO_MAGIC = 0x414D4853  # "SHMA"
VIDEO_HEADER = struct.Struct("<IHHIIqQIII4x4I4I")  # magic .. plane offsets, strides
AUDIO_HEADER = struct.Struct("<IHHIIqQIIIII")  # magic .. data offset, channel stride
PIXEL_I420 = 1
SAMPLE_F32_PLANAR = 1
MAX_MESSAGE = 16 << 20


def ffmpeg_arguments(args, audio_fd):
    """The arguments `shmring record` gives ffmpeg; video on stdin, audio on `audio_fd`."""
    no_probe = ["-probesize", "32", "-analyzeduration", "0"]
    return [
        "ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
        "-f", "rawvideo", "-pix_fmt", "yuv420p", "-video_size", f"{args.width}x{args.height}",
        "-framerate", str(args.fps), "-thread_queue_size", "64", *no_probe, "-i", "pipe:0",
        "-f", "f32le", "-ar", str(args.rate), "-ac", str(args.channels),
        "-thread_queue_size", "1024", *no_probe, "-i", f"pipe:{audio_fd}",
        "-map", "0:v:0", "-map", "1:a:0",
        "-c:v", "libx264", "-preset", args.preset, "-pix_fmt", "yuv420p",
        "-c:a", "aac", "-b:a", "128k", "-movflags", "+faststart",
        args.output,
    ]


class PipeWriter:
    """One thread writing queued buffers to a pipe; full queue: drop."""

    def __init__(self, file, depth):
        self.file = file
        self.queue = queue.Queue(maxsize=depth)
        self.written = 0
        self.dropped = 0
        self.error = None
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def put(self, buffers):
        try:
            self.queue.put_nowait(buffers)
        except queue.Full:
            self.dropped += 1

    def run(self):
        while (buffers := self.queue.get()) is not None:
            if self.error:
                continue
            try:
                for buffer in buffers:
                    self.file.write(buffer)
                self.file.flush()
                self.written += 1
            except OSError as error:
                self.error = error

    def close(self):
        self.queue.put(None)
        self.thread.join()
        try:
            self.file.close()
        except OSError:
            pass


class Recorder:
    def __init__(self, args):
        self.args = args
        audio_read, audio_write = os.pipe()
        self.ffmpeg = subprocess.Popen(
            ffmpeg_arguments(args, audio_read), stdin=subprocess.PIPE, pass_fds=(audio_read,)
        )
        os.close(audio_read)
        self.video = PipeWriter(self.ffmpeg.stdin, depth=8)
        self.audio = PipeWriter(os.fdopen(audio_write, "wb"), depth=100)
        self.counts = {"video_received": 0, "audio_received": 0, "invalid": 0, "connections": 0}
        self.open_connections = 0
        self.next_stream = 1
        self.finished = asyncio.Event()

    def video_frame(self, message):
        if len(message) < VIDEO_HEADER.size:
            return "short video header"
        (magic, _version, header_size, _stream, pixel_format, _ts, _n, width, height, planes,
         o0, o1, o2, _o3, s0, s1, s2, _s3) = VIDEO_HEADER.unpack_from(message)
        a = self.args
        if magic != VIDEO_MAGIC or pixel_format != PIXEL_I420 or planes != 3 or (width, height) != (a.width, a.height):
            return "not the declared I420 frame"
        view = memoryview(message)
        cw, ch = (width + 1) // 2, (height + 1) // 2
        geometry = ((o0, s0, width, height), (o1, s1, cw, ch), (o2, s2, cw, ch))
        if any(offset < header_size or stride < row or offset + stride * rows > len(message)
               for offset, stride, row, rows in geometry):
            return "planes outside the message"
        buffers = []
        for offset, stride, row, rows in geometry:
            if stride == row:
                buffers.append(view[offset:offset + row * rows])
            else:
                buffers.extend(view[offset + r * stride:offset + r * stride + row] for r in range(rows))
        self.counts["video_received"] += 1
        self.video.put(buffers)
        return None

    def audio_chunk(self, message):
        if len(message) < AUDIO_HEADER.size:
            return "short audio header"
        (magic, _version, _size, _stream, sample_format, _ts, _n, rate, channels, frames,
         data_offset, channel_stride) = AUDIO_HEADER.unpack_from(message)
        if magic != AUDIO_MAGIC or sample_format != SAMPLE_F32_PLANAR or (rate, channels) != (
                self.args.rate, self.args.channels):
            return "not the declared f32-planar audio"
        if channel_stride < 4 * frames or data_offset + channel_stride * channels > len(message):
            return "samples outside the message"
        view = memoryview(message)
        if channels == 1:
            samples = view[data_offset:data_offset + 4 * frames]
        else:
            # ffmpeg's raw audio is interleaved.
            interleaved = array("f", bytes(4 * frames * channels))
            for c in range(channels):
                start = data_offset + c * channel_stride
                interleaved[c::channels] = array("f", view[start:start + 4 * frames])
            samples = interleaved
        self.counts["audio_received"] += 1
        self.audio.put([samples])
        return None

    async def connection(self, websocket):
        self.counts["connections"] += 1
        self.open_connections += 1
        try:
            kind = None
            async for message in websocket:
                if isinstance(message, str):
                    declaration = json.loads(message)
                    if declaration.get("type") != "declare" or declaration.get("kind") not in ("video", "audio"):
                        await websocket.close(1003, "expected a declaration")
                        return
                    kind = declaration["kind"]
                    stream_id, self.next_stream = self.next_stream, self.next_stream + 1
                    await websocket.send(json.dumps({
                        "type": "ready", "version": 1, "stream_id": stream_id,
                        "max_message": MAX_MESSAGE, "stream": declaration,
                    }))
                    continue
                if kind is None:
                    await websocket.close(1003, "frame before declaration")
                    return
                problem = self.video_frame(message) if kind == "video" else self.audio_chunk(message)
                if problem:
                    self.counts["invalid"] += 1
                    await websocket.close(1007, problem)
                    return
        except ConnectionClosed:
            # The page went without a close frame (its browser was closed).
            pass
        finally:
            self.open_connections -= 1
            if self.open_connections == 0:
                self.finished.set()

    def finish(self):
        self.video.close()
        self.audio.close()
        status = self.ffmpeg.wait()
        return {
            **self.counts,
            "video_written": self.video.written,
            "video_dropped": self.video.dropped,
            "audio_written": self.audio.written,
            "audio_dropped": self.audio.dropped,
            "ffmpeg_status": status,
            "write_error": str(self.video.error or self.audio.error or ""),
        }


async def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--listen", default="127.0.0.1:8790")
    parser.add_argument("-o", "--output", default="recording.mp4")
    parser.add_argument("--size", default="1920x1080")
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--rate", type=int, default=48000)
    parser.add_argument("--channels", type=int, default=1)
    parser.add_argument("--preset", default="ultrafast")
    args = parser.parse_args()
    args.width, args.height = map(int, args.size.split("x"))
    host, port = args.listen.rsplit(":", 1)

    recorder = Recorder(args)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with serve(recorder.connection, host, int(port), compression=None, max_size=MAX_MESSAGE) as server:
        address = server.sockets[0].getsockname()
        print(f"listening on {address[0]}:{address[1]}", flush=True)
        done = asyncio.ensure_future(recorder.finished.wait())
        stopped = asyncio.ensure_future(stop.wait())
        await asyncio.wait([done, stopped], return_when=asyncio.FIRST_COMPLETED)
        server.close()
    summary = recorder.finish()
    print(json.dumps(summary), flush=True)
    return 0 if summary["ffmpeg_status"] == 0 and not summary["write_error"] else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
