#!/usr/bin/env python3
"""CPU per 1080p30 frame of three receivers of the same camera frames, in one
run, round after round:

- python-shmring: this module's Consumer; per frame `recv()`, the Y plane as
  a numpy view (`frame.y`), drop. The pixels are never read.
- rust-shmring: the same in Rust (`consumer_cpu` from examples/): receive,
  parse the media header, take the Y plane view, drop.
- python-idle-30fps: a Python process that only sleeps 1/30 s and wakes:
  the floor under any Python receiver of 30 frames a second here.
- *-backlog: the two shmring receivers again, taking 60 frames that wait in
  the ring back to back (the cost of a frame without the sleep and wake-up
  around it).
- python-websockets: a `websockets` (PyPI) server receiving each frame over
  loopback as the page's client sends it (masked, in 131,000-byte fragments
  as Chromium does, no compression), then the Y plane as a numpy view of the
  message.

Every receiver is its own process and measures its own CPU (getrusage, user
+ system, all threads) from its first frame to its last; the figure is that
over the frames in between. The frames come from `shmring camera` (1080p
I420, 30 fps, painted in place); for the WebSocket lane a forwarder process
reads them from a ring and sends them, so all three lanes see the same
frames at the same pace.

    consumer_cpu.py [--seconds 10] [--rounds 3] [--json FILE]
        [--shmring PATH] [--rust-consumer PATH]
"""

import argparse
import json
import os
import pathlib
import resource
import statistics
import subprocess
import sys
import tempfile
import time

FRAGMENT = 131_000  # Chromium's largest WebSocket frame (kReceiveDataPipeCapacity)
WIDTH, HEIGHT = 1920, 1080


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Span:
    """CPU and wall time from the first frame to the last."""

    def __init__(self):
        self.frames = 0
        self.first = None
        self.last = None

    def tick(self):
        now = (cpu_seconds(), time.monotonic())
        if self.first is None:
            self.first = now
        self.last = now
        self.frames += 1

    def report(self, role: str) -> None:
        cpu = wall = 0.0
        if self.first is not None:
            cpu, wall = self.last[0] - self.first[0], self.last[1] - self.first[1]
        print(json.dumps({"role": role, "frames": self.frames, "cpu_s": cpu, "wall_s": wall}), flush=True)


def role_python(name: str, idle: float, backlog: bool) -> None:
    import shmring

    consumer = shmring.Consumer.create(name, capacity=256 << 20, max_frames=4)
    print("ready", flush=True)
    if backlog:
        sys.stdin.readline()
        idle = 0.2
    span = Span()
    timeout = idle * 10
    while True:
        try:
            frame = consumer.recv(timeout=timeout)
        except shmring.Timeout:
            break
        y = frame.y
        del y, frame
        span.tick()
        timeout = idle
    span.report("python-shmring")


def role_idle(seconds: float) -> None:
    """The floor of any Python receiver at 30 fps: wake 30 times a second
    and do nothing else."""
    print("ready", flush=True)
    span = Span()
    for _ in range(int(seconds * 30)):
        time.sleep(1 / 30)
        span.tick()
    span.report("python-idle-30fps")


def role_ws_receiver(port: int, idle: float) -> None:
    import asyncio

    import numpy as np
    from websockets.asyncio.server import serve

    span = Span()
    done = asyncio.Event()

    async def receive(ws):
        async for message in ws:
            y = np.frombuffer(message, dtype=np.uint8, count=WIDTH * HEIGHT, offset=128).reshape(HEIGHT, WIDTH)
            del y, message
            span.tick()
        done.set()

    async def main():
        async with serve(receive, "127.0.0.1", port, compression=None, max_size=16 << 20):
            print("ready", flush=True)
            await done.wait()

    asyncio.run(main())
    span.report("python-websockets")


def role_forwarder(name: str, port: int, idle: float) -> None:
    """Reads the camera's frames from a ring and sends each over the
    WebSocket as a browser client would: masked, in fragments."""
    import shmring
    from websockets.sync.client import connect

    consumer = shmring.Consumer.create(name, capacity=256 << 20)
    with connect(f"ws://127.0.0.1:{port}", compression=None, max_size=16 << 20) as ws:
        print("ready", flush=True)
        timeout = idle * 10
        while True:
            try:
                frame = consumer.recv(timeout=timeout)
            except shmring.Timeout:
                break
            view = memoryview(frame)
            ws.send(view[at : at + FRAGMENT] for at in range(0, len(view), FRAGMENT))
            view.release()
            del view, frame
            timeout = idle


def start(command: list, env: dict) -> subprocess.Popen:
    child = subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    line = child.stdout.readline().strip()
    if line != "ready":
        child.kill()
        raise SystemExit(f"{command} did not start: {line!r} {child.stderr.read()}")
    return child


def result(child: subprocess.Popen) -> dict:
    out, err = child.communicate(timeout=120)
    if child.returncode != 0:
        raise SystemExit(f"{child.args} exited {child.returncode}: {err}")
    return json.loads(out.strip().splitlines()[-1])


def camera(args, name: str, env: dict, seconds: float) -> dict:
    done = subprocess.run(
        [args.shmring, "camera", "--ring", name, "--seconds", str(seconds), "--size", f"{WIDTH}x{HEIGHT}"],
        capture_output=True,
        text=True,
        env=env,
        timeout=seconds + 120,
    )
    if done.returncode != 0:
        raise SystemExit(f"shmring camera failed: {done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def lane(args, lane_name: str, round_index: int, env: dict) -> dict:
    me = [sys.executable, __file__]
    name = f"cpu{os.getpid()}-{round_index}-{lane_name}"
    idle = ["--idle", "2"]
    port = str(20_000 + os.getpid() % 20_000)
    helpers = []
    backlog = lane_name.endswith("-backlog")
    if lane_name == "python-idle-30fps":
        receiver = start(me + ["--role", "idle", "--seconds", str(args.seconds)], env)
        got = result(receiver)
        got.update(lane=lane_name, round=round_index, camera_sent=0, camera_dropped=0)
        got["cpu_us_per_frame"] = got["cpu_s"] / max(got["frames"] - 1, 1) * 1e6
        return got
    if lane_name.startswith("python-shmring"):
        receiver = start(me + ["--role", "python", "--ring", name, *idle] + ["--backlog"] * backlog, env)
    elif lane_name.startswith("rust-shmring"):
        receiver = start([args.rust_consumer, name, "--idle", "2"] + ["--backlog"] * backlog, env)
    else:
        receiver = start(me + ["--role", "ws-receiver", "--port", port, *idle], env)
        helpers.append(start(me + ["--role", "forwarder", "--ring", name, "--port", port, *idle], env))
    # A backlog fits the ring: 256 MiB holds 80 frames of 1080p.
    sent = camera(args, name, env, 2 if backlog else args.seconds)
    if backlog:
        receiver.stdin.write("go\n")
        receiver.stdin.flush()
    for helper in helpers:
        helper.communicate(timeout=120)
    got = result(receiver)
    got.update(lane=lane_name, round=round_index, camera_sent=sent["sent"], camera_dropped=sent["dropped"])
    intervals = max(got["frames"] - 1, 1)
    got["cpu_us_per_frame"] = got["cpu_s"] / intervals * 1e6
    return got


LANES = (
    "python-shmring",
    "rust-shmring",
    "python-websockets",
    "python-idle-30fps",
    "python-shmring-backlog",
    "rust-shmring-backlog",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--role", choices=("python", "ws-receiver", "forwarder", "idle"))
    parser.add_argument("--ring")
    parser.add_argument("--port", type=int)
    parser.add_argument("--idle", type=float, default=2.0)
    parser.add_argument("--backlog", action="store_true")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=pathlib.Path)
    repo = pathlib.Path(__file__).resolve().parents[3]
    parser.add_argument("--shmring", default=str(repo / "target/release/shmring"))
    parser.add_argument("--rust-consumer", default=str(repo / "target/release/consumer_cpu"))
    args = parser.parse_args()
    if args.role == "python":
        return role_python(args.ring, args.idle, args.backlog)
    if args.role == "idle":
        return role_idle(args.seconds)
    if args.role == "ws-receiver":
        return role_ws_receiver(args.port, args.idle)
    if args.role == "forwarder":
        return role_forwarder(args.ring, args.port, args.idle)

    runtime = tempfile.mkdtemp(prefix="shmring-cpu-")
    # numpy's OpenBLAS pool stays out of it (the receivers do no linear
    # algebra; its idle workers would be billed to the Python lanes).
    env = dict(os.environ, SHMRING_RUNTIME_DIR=runtime, RUST_LOG="warn", OPENBLAS_NUM_THREADS="1")
    runs = []
    for round_index in range(args.rounds):
        for lane_name in LANES:
            run = lane(args, lane_name, round_index, env)
            runs.append(run)
            print(
                f"round {round_index + 1} {lane_name:18} {run['frames']:5} frames  "
                f"{run['cpu_us_per_frame']:9.1f} us CPU/frame",
                file=sys.stderr,
                flush=True,
            )
    per_round = {}
    for run in runs:
        per_round.setdefault(run["round"], {})[run["lane"]] = run["cpu_us_per_frame"]
    ratios = [
        {
            "websockets_over_python": lanes["python-websockets"] / lanes["python-shmring"],
            "python_over_rust": lanes["python-shmring"] / lanes["rust-shmring"],
            "python_over_rust_backlog": lanes["python-shmring-backlog"] / lanes["rust-shmring-backlog"],
        }
        for lanes in per_round.values()
    ]
    median = {name: statistics.median(r[name] for r in per_round.values()) for name in LANES}
    summary = {
        "median_cpu_us_per_frame": median,
        "median_websockets_over_python": statistics.median(r["websockets_over_python"] for r in ratios),
        "median_python_over_rust": statistics.median(r["python_over_rust"] for r in ratios),
        "median_python_over_rust_backlog": statistics.median(r["python_over_rust_backlog"] for r in ratios),
        "targets": {
            "python_at_most_20_us": median["python-shmring"] <= 20,
            "python_backlog_at_most_20_us": median["python-shmring-backlog"] <= 20,
            "python_at_most_websockets_over_50": all(r["websockets_over_python"] >= 50 for r in ratios),
        },
    }
    print(f"| receiver (1080p I420; paced: 30 fps for {args.seconds:g} s; backlog: 60 frames waiting) "
          f"| CPU per frame (median of {args.rounds}) |")
    print("|---|---|")
    for name in LANES:
        print(f"| {name} | {median[name]:.1f} us |")
    print(
        f"\nwebsockets / python-shmring: {summary['median_websockets_over_python']:.0f}x (median of per-round ratios); "
        f"python-shmring / rust-shmring: {summary['median_python_over_rust']:.2f}x paced, "
        f"{summary['median_python_over_rust_backlog']:.2f}x backlog"
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"runs": runs, "ratios": ratios, "summary": summary}, indent=2) + "\n")


if __name__ == "__main__":
    main()
