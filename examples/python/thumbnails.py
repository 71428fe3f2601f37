#!/usr/bin/env python3
"""Writes a PNG thumbnail of every Nth video frame of a ring, from the
frame's planes read in place as numpy arrays (no copy of the frame; the
thumbnail is computed from strided views of the ring).

    shmring create cam && shmring camera --ring cam --seconds 5 &
    python3 thumbnails.py cam --out thumbs --every 30

Attaches to ring NAME as its consumer (`shmring create` holds it), or
creates it with --create. Stops after --frames frames, when no frame has
come for --idle seconds, or on Ctrl-C.
"""

import argparse
import pathlib
import struct
import zlib

import numpy as np

import shmring


def i420_to_rgb(y: np.ndarray, u: np.ndarray, v: np.ndarray, step: int) -> np.ndarray:
    """Every `step`th pixel of an I420 frame as RGB (BT.601, limited range)."""
    luma = y[::step, ::step].astype(np.float32) - 16.0
    cb = u[:: step // 2, :: step // 2][: luma.shape[0], : luma.shape[1]].astype(np.float32) - 128.0
    cr = v[:: step // 2, :: step // 2][: luma.shape[0], : luma.shape[1]].astype(np.float32) - 128.0
    r = 1.164 * luma + 1.596 * cr
    g = 1.164 * luma - 0.392 * cb - 0.813 * cr
    b = 1.164 * luma + 2.017 * cb
    return np.clip(np.stack([r, g, b], axis=-1), 0, 255).astype(np.uint8)


def png(rgb: np.ndarray) -> bytes:
    """A PNG file of an RGB image (8-bit, no filter)."""
    height, width, _ = rgb.shape
    rows = b"".join(b"\x00" + rgb[row].tobytes() for row in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows, 6)) + chunk(b"IEND", b"")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("ring")
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("thumbnails"))
    parser.add_argument("--every", type=int, default=30, help="one thumbnail per this many frames of a stream")
    parser.add_argument("--step", type=int, default=8, help="keep every STEP-th pixel (even)")
    parser.add_argument("--frames", type=int, help="stop after this many video frames")
    parser.add_argument("--idle", type=float, default=5.0)
    parser.add_argument("--create", action="store_true", help="create the ring instead of attaching")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    consumer = shmring.Consumer.create(args.ring) if args.create else shmring.Consumer.attach(args.ring)
    seen = written = 0
    with consumer:
        while args.frames is None or seen < args.frames:
            try:
                frame = consumer.recv(timeout=args.idle)
            except shmring.Timeout:
                break
            if frame.media_kind != "video" or frame.format != "I420":
                continue
            seen += 1
            if frame.frame_number % args.every == 0:
                rgb = i420_to_rgb(frame.y, frame.u, frame.v, args.step)
                path = args.out / f"stream{frame.stream}-{frame.frame_number:06d}.png"
                path.write_bytes(png(rgb))
                written += 1
            del frame
    print(f"{seen} video frames, {written} thumbnails in {args.out}")


if __name__ == "__main__":
    main()
