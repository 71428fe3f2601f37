#!/usr/bin/env python3
"""Records the first video stream (and first audio stream) of a ring into
an MP4 with PyAV: H.264 (libx264) and AAC, frames placed by their
timestamps. The planes and samples are read from the ring as numpy views
and copied once, into PyAV's frames (the encoder owns those buffers).

    shmring create cam
    shmring camera --ring cam --seconds 5 --size 1280x720 &
    shmring microphone --ring cam --seconds 5 --stream 2 &
    python3 record_pyav.py cam -o cam.mp4

Attaches to ring NAME as its consumer (or creates it with --create); stops
when no frame has come for --idle seconds, after --seconds, or on Ctrl-C.
"""

import argparse
import time
from fractions import Fraction

import av
import numpy as np

import shmring

MICROSECONDS = Fraction(1, 1_000_000)


class Recording:
    """Streams are added as their first frames arrive; packets wait until
    every kind asked for has a stream (or `wait` seconds passed), since an
    MP4's streams are fixed once its header is written."""

    def __init__(self, path: str, preset: str, kinds: set, wait: float = 2.0):
        self.container = av.open(path, mode="w")
        self.preset = preset
        self.kinds, self.wait = kinds, wait
        self.pending, self.started, self.first_at = [], False, None
        self.video = self.audio = None
        self.video_stream_id = self.audio_stream_id = None
        self.start_us = None
        self.frames = self.chunks = 0

    def mux(self, packets) -> None:
        if self.first_at is None:
            self.first_at = time.monotonic()
        if not self.started:
            have = {kind for kind, stream in (("video", self.video), ("audio", self.audio)) if stream is not None}
            if not (self.kinds <= have or time.monotonic() - self.first_at > self.wait):
                self.pending.extend(packets)
                return
            self.started = True
            packets = self.pending + list(packets)
            self.pending = []
        self.container.mux(packets)

    def pts(self, timestamp_us: int) -> int:
        if self.start_us is None:
            self.start_us = timestamp_us
        return max(timestamp_us - self.start_us, 0)

    def add_video(self, frame) -> None:
        if self.video is None and not self.started:
            self.video_stream_id = frame.stream
            self.video = self.container.add_stream("libx264", rate=30, options={"preset": self.preset})
            self.video.width, self.video.height = frame.size
            self.video.pix_fmt = "yuv420p"
            self.video.time_base = MICROSECONDS
        if self.video is None or frame.stream != self.video_stream_id or frame.size != (self.video.width, self.video.height):
            return
        out = av.VideoFrame(frame.width, frame.height, "yuv420p")
        for plane, source in zip(out.planes, (frame.y, frame.u, frame.v)):
            rows, columns = source.shape
            target = np.frombuffer(plane, dtype=np.uint8).reshape(-1, plane.line_size)
            target[:rows, :columns] = source  # the one copy: ring -> encoder
        out.pts = self.pts(frame.timestamp_us)
        out.time_base = MICROSECONDS
        self.mux(self.video.encode(out))
        self.frames += 1

    def add_audio(self, frame) -> None:
        if frame.format != "f32-planar":
            return
        if self.audio is None and not self.started:
            self.audio_stream_id = frame.stream
            layout = "mono" if frame.channels == 1 else "stereo"
            self.audio = self.container.add_stream("aac", rate=frame.sample_rate, layout=layout)
        if self.audio is None or frame.stream != self.audio_stream_id or frame.channels > 2:
            return
        out = av.AudioFrame.from_ndarray(np.ascontiguousarray(frame.samples), format="fltp", layout=self.audio.layout)
        out.sample_rate = frame.sample_rate
        out.pts = None
        self.mux(self.audio.encode(out))
        self.chunks += 1

    def close(self) -> None:
        self.wait = 0  # whatever arrived is what there is
        for stream in (self.video, self.audio):
            if stream is not None:
                self.mux(stream.encode(None))
        self.container.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("ring")
    parser.add_argument("-o", "--output", default="recording.mp4")
    parser.add_argument("--seconds", type=float)
    parser.add_argument("--idle", type=float, default=5.0)
    parser.add_argument("--preset", default="ultrafast")
    parser.add_argument("--kinds", default="video,audio", help="what to record: video, audio or both")
    parser.add_argument("--create", action="store_true", help="create the ring instead of attaching")
    args = parser.parse_args()
    consumer = shmring.Consumer.create(args.ring) if args.create else shmring.Consumer.attach(args.ring)
    recording = Recording(args.output, args.preset, set(args.kinds.split(",")))
    deadline = None if args.seconds is None else time.monotonic() + args.seconds
    with consumer:
        while deadline is None or time.monotonic() < deadline:
            try:
                frame = consumer.recv(timeout=args.idle)
            except shmring.Timeout:
                break
            if frame.media_kind == "video" and frame.format == "I420":
                recording.add_video(frame)
            elif frame.media_kind == "audio":
                recording.add_audio(frame)
            del frame
    recording.close()
    print(f"{recording.frames} video frames, {recording.chunks} audio chunks -> {args.output}")


if __name__ == "__main__":
    main()
