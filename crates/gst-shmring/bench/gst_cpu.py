#!/usr/bin/env python3
"""CPU per 1080p30 frame of receivers of the same camera frames, in one run,
round after round (each figure the median over rounds):

- shmringsrc-fakesink: `shmringsrc ring=R ! fakesink` (fakesink syncs each
  buffer on the pipeline clock, as a real sink would);
- shmringsrc-fakesink-nosync: the same with `fakesink sync=false`;
- shmsrc-fakesink: GStreamer's own pair, `shmsrc is-live=true
  do-timestamp=true ! fakesink`, fed by a second process `shmringsrc ring=R !
  shmsink` (which copies each frame into shmsink's segment; its CPU is shown
  as shmsink-side, the receiver's is the figure to compare);
- shmring-cat: `shmring cat R > /dev/null`;
- shmringsrc-backlog: `shmringsrc do-timestamp=true ! fakesink sync=false`
  attached but PAUSED while the camera writes all its frames into a 1 GiB
  ring, then PLAYING: the frames go through back to back, the element's own
  cost per frame without a wake-up per frame (the state change to PLAYING
  is counted in it);
- memcpy-cold / memcpy-warm: one frame's bytes (1920x1080 I420) copied in
  this process, cold: source and destination walk through 128 MiB each
  (as a copy out of a ring the frame just arrived in); warm: the same two
  buffers each time (cache-resident where the caches are large enough).

Each GStreamer pipeline runs in `pipeline_stats` (the plugin registered
in-process, otherwise as gst-launch-1.0 does), which counts nothing per
buffer and prints the sinks' rendered counts and shmringsrc's statistics at
the end. A receiver's CPU is read from outside through its process CPU clock
(clock_gettime on the pid's CLOCK_PROCESS_CPUTIME_ID, all threads, ns),
after it is attached and idle and again right after `shmring camera
--seconds S` (1080p I420, 30 fps) exits; the figure is that over the frames
the camera sent. A lane whose receiver missed frames fails the run.

    gst_cpu.py --shmring PATH --pipeline-stats PATH [--seconds 10]
        [--rounds 3] [--json FILE]
"""

import argparse
import datetime
import json
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

WIDTH, HEIGHT = 1920, 1080
FRAME_BYTES = WIDTH * HEIGHT * 3 // 2
LANES = [
    "shmringsrc-fakesink",
    "shmringsrc-fakesink-nosync",
    "shmsrc-fakesink",
    "shmring-cat",
    "shmringsrc-backlog",
]


def process_cpu_ns(pid: int) -> int:
    """CPU time of every thread of process `pid` so far (the kernel's
    CPUCLOCK_SCHED process clock of that pid)."""
    return time.clock_gettime_ns(((~pid) << 3) | 2)


def memcpy_ns(cold: bool, copies: int) -> float:
    """Thread CPU ns per copy of one frame."""
    slots = (128 << 20) // FRAME_BYTES if cold else 1
    src = bytearray(os.urandom(FRAME_BYTES)) * slots
    dst = bytearray(len(src))
    # Touch every page once so the copies measure copying, not page faults.
    dst[:] = src
    s, d = memoryview(src), memoryview(dst)
    start = time.thread_time_ns()
    for i in range(copies):
        at, to = (i % slots) * FRAME_BYTES, ((i * 7 + 3) % slots) * FRAME_BYTES
        d[to : to + FRAME_BYTES] = s[at : at + FRAME_BYTES]
    return (time.thread_time_ns() - start) / copies


class Lane:
    """One receiver of one camera run, with its ring and helpers."""

    def __init__(self, args, name: str, ring: str, env: dict, work: pathlib.Path):
        self.args, self.name, self.ring, self.env, self.work = args, name, ring, env, work
        self.children = []

    def shmring(self, *argv, **kw):
        return subprocess.run([self.args.shmring, *argv], env=self.env, capture_output=True, text=True, **kw)

    def pipeline(self, description: str, paused: bool = False) -> subprocess.Popen:
        child = subprocess.Popen(
            [self.args.pipeline_stats] + ["--paused"] * paused + [description],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env,
        )
        self.children.append(child)
        line = child.stdout.readline().strip()
        if line != "ready":
            raise SystemExit(f"{description!r} did not start: {line!r} {child.stderr.read()}")
        return child

    def wait_attached(self) -> None:
        for _ in range(400):
            stat = self.shmring("stat", self.ring, "--json")
            if stat.returncode == 0 and json.loads(stat.stdout)["consumer"]["state"] == "attached":
                return
            time.sleep(0.025)
        raise SystemExit(f"{self.name}: no consumer attached to {self.ring}")

    def wait_consumed(self, frames: int) -> None:
        """Until the ring's consumer took `frames` frames."""
        for _ in range(3000):
            stat = json.loads(self.shmring("stat", self.ring, "--json").stdout)
            if stat["consumed_frames"] >= frames:
                return
            time.sleep(0.01)
        raise SystemExit(f"{self.name}: the consumer took {stat['consumed_frames']} of {frames} frames in 30 s")

    def start(self):
        """Starts the receiver; gives (measured process, side process or None)."""
        ring = self.ring
        if self.name == "shmring-cat":
            null = open(os.devnull, "wb")
            child = subprocess.Popen(
                [self.args.shmring, "cat", ring], stdout=null, stderr=subprocess.PIPE, env=self.env, text=True
            )
            self.children.append(child)
            return child, None
        if self.name == "shmringsrc-backlog":
            return self.pipeline(f"shmringsrc ring={ring} do-timestamp=true ! fakesink sync=false", paused=True), None
        if self.name.startswith("shmringsrc-fakesink"):
            sync = " sync=false" if self.name.endswith("nosync") else ""
            return self.pipeline(f"shmringsrc ring={ring} ! fakesink{sync}"), None
        socket = self.work / f"{ring}.shmsink"
        # shmsink's segment holds 20 frames. The camera starts once the
        # receiver is connected, so no frame meets shmsink without a client.
        side = self.pipeline(
            f"shmringsrc ring={ring} ! shmsink socket-path={socket} shm-size={20 * (FRAME_BYTES + 4096)} "
            "wait-for-connection=false sync=false"
        )
        receiver = self.pipeline(f"shmsrc socket-path={socket} is-live=true do-timestamp=true ! fakesink")
        return receiver, side

    def run(self) -> dict:
        backlog = self.name.endswith("-backlog")
        capacity = "1GiB" if backlog else "256MiB"
        created = self.shmring("create", self.ring, "--capacity", capacity)
        if created.returncode != 0:
            raise SystemExit(f"shmring create: {created.stderr}")
        try:
            measured, side = self.start()
            self.wait_attached()
            time.sleep(0.5)
            seconds = min(self.args.seconds, 5) if backlog else self.args.seconds
            if not backlog:
                before = process_cpu_ns(measured.pid), side and process_cpu_ns(side.pid)
            camera = self.shmring(
                "camera", "--ring", self.ring, "--seconds", str(seconds), "--size", f"{WIDTH}x{HEIGHT}",
                timeout=seconds + 120,
            )
            if backlog:
                before = process_cpu_ns(measured.pid), None
                measured.stdin.write("play\n")
                measured.stdin.flush()
                self.wait_consumed(json.loads(camera.stdout.strip().splitlines()[-1])["sent"])
            else:
                # A receiver a frame behind finishes it within a frame time.
                time.sleep(0.1)
            after = process_cpu_ns(measured.pid), side and process_cpu_ns(side.pid)
            if camera.returncode != 0:
                raise SystemExit(f"shmring camera: {camera.stderr}")
            tally = json.loads(camera.stdout.strip().splitlines()[-1])
            stat = json.loads(self.shmring("stat", self.ring, "--json").stdout)
            stats = self.stop(measured, side)
        finally:
            for child in self.children:
                if child.poll() is None:
                    child.kill()
                    child.wait()
            self.shmring("rm", self.ring)
        sent = tally["sent"]
        row = {
            "lane": self.name,
            "frames": sent,
            "camera_dropped": tally["dropped"],
            "ring_consumed_frames": stat["consumed_frames"],
            "cpu_us_per_frame": (after[0] - before[0]) / sent / 1e3,
        }
        if side:
            row["shmsink_side_us_per_frame"] = (after[1] - before[1]) / sent / 1e3
        row.update(stats)
        check(row)
        return row

    def stop(self, measured, side) -> dict:
        """Ends the receivers; gives what their statistics say."""
        if measured.args[0] == self.args.shmring:
            measured.terminate()
            measured.wait(timeout=30)
            return {}
        reports = []
        if side:
            # The sending side first, while its client is still there (its
            # shmsink posts an error once the client leaves).
            side.stdin.write("stats\n")
            side.stdin.flush()
            reports.append(json.loads(side.stdout.readline()))
        out, err = measured.communicate(input="", timeout=30)
        if measured.returncode != 0:
            raise SystemExit(f"{self.name}: pipeline failed: {err}")
        mine = json.loads(out.strip().splitlines()[-1])
        reports.append(mine)
        found = {"rendered": sum(mine["sinks"].values()), "copies": 0, "in_place": 0}
        for report in reports:
            for source in report["sources"].values():
                found["copies"] += source["copied-held"] + source["copied-layout"]
                found["in_place"] += source["in-place"]
        return found


def check(row: dict) -> None:
    """Every frame the camera sent reached the receiver."""
    sent = row["frames"]
    problems = []
    if row["camera_dropped"]:
        problems.append(f"the camera dropped {row['camera_dropped']}")
    if row["ring_consumed_frames"] != sent:
        problems.append(f"the ring's consumer took {row['ring_consumed_frames']} of {sent}")
    if "rendered" in row and row["rendered"] != sent:
        problems.append(f"fakesink rendered {row['rendered']} of {sent}")
    if problems:
        raise SystemExit(f"{row['lane']}: " + "; ".join(problems))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shmring", required=True)
    parser.add_argument("--pipeline-stats", required=True)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json")
    args = parser.parse_args()
    for tool in (args.shmring, args.pipeline_stats):
        if not os.access(tool, os.X_OK):
            raise SystemExit(f"{tool} is not an executable (scripts/bench-gst.sh builds it)")
    work = pathlib.Path(tempfile.mkdtemp(prefix="shmring-gst-bench-"))
    env = dict(os.environ, SHMRING_RUNTIME_DIR=str(work))
    started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    load_before = os.getloadavg()
    rows = []
    try:
        for round_index in range(args.rounds):
            for name in LANES:
                ring = f"gstcpu{os.getpid()}-{round_index}-{LANES.index(name)}"
                row = Lane(args, name, ring, env, work).run()
                row["round"] = round_index
                rows.append(row)
                print(f"round {round_index + 1}/{args.rounds} {name}: {row['cpu_us_per_frame']:.1f} us/frame",
                      file=sys.stderr, flush=True)
            for cold in (True, False):
                rows.append({
                    "lane": "memcpy-cold" if cold else "memcpy-warm",
                    "round": round_index,
                    "cpu_us_per_frame": memcpy_ns(cold, 200) / 1e3,
                })
    finally:
        shutil.rmtree(work, ignore_errors=True)
    load_after = os.getloadavg()
    report(args, rows, started, load_before, load_after)


def median(rows: list, lane: str, key: str = "cpu_us_per_frame") -> float:
    return statistics.median(r[key] for r in rows if r["lane"] == lane)


def report(args, rows, started, load_before, load_after) -> None:
    lanes = LANES + ["memcpy-cold", "memcpy-warm"]
    medians = {lane: median(rows, lane) for lane in lanes}
    side = median(rows, "shmsrc-fakesink", "shmsink_side_us_per_frame")
    copies = sum(r.get("copies", 0) for r in rows if r["lane"].startswith("shmringsrc"))
    src = medians["shmringsrc-fakesink"]
    own = medians["shmringsrc-backlog"]
    targets = [
        ("shmringsrc, frames waiting (own cost) / memcpy-cold", own / medians["memcpy-cold"], 0.2),
        ("shmringsrc, frames waiting (own cost) / memcpy-warm", own / medians["memcpy-warm"], 0.2),
        ("shmringsrc ! fakesink / memcpy-cold", src / medians["memcpy-cold"], 0.2),
        ("shmringsrc ! fakesink / memcpy-warm", src / medians["memcpy-warm"], 0.2),
    ]
    command = f"scripts/bench-gst.sh --seconds {args.seconds:g} --rounds {args.rounds}"
    lines = [
        "## shmringsrc: CPU per 1080p30 frame",
        "",
        f"`{command}`, {started}, load average {load_before[0]:.2f} before, {load_after[0]:.2f} after, "
        f"{os.cpu_count()} CPUs; median of {args.rounds} rounds of {args.seconds:g} s "
        f"({int(args.seconds * 30)} frames of {FRAME_BYTES:,} bytes, paced at 30 fps) per lane.",
        "",
        "| receiver | CPU us/frame | / memcpy-cold | / memcpy-warm |",
        "|---|---:|---:|---:|",
    ]
    labels = {
        "shmringsrc-fakesink": "`shmringsrc ! fakesink`",
        "shmringsrc-fakesink-nosync": "`shmringsrc ! fakesink sync=false`",
        "shmsrc-fakesink": "`shmsrc ! fakesink` (GStreamer's pair, receiver)",
        "shmring-cat": "`shmring cat > /dev/null`",
        "shmringsrc-backlog": "`shmringsrc do-timestamp=true ! fakesink sync=false`, 150 frames waiting",
        "memcpy-cold": "memcpy of one frame, cold",
        "memcpy-warm": "memcpy of one frame, warm",
    }
    for lane in lanes:
        value = medians[lane]
        lines.append(
            f"| {labels[lane]} | {value:.1f} | {value / medians['memcpy-cold']:.3f} | "
            f"{value / medians['memcpy-warm']:.3f} |"
        )
    lines.append(f"| `shmringsrc ! shmsink` (the pair's sending side, copies into its segment) | {side:.1f} | "
                 f"{side / medians['memcpy-cold']:.3f} | {side / medians['memcpy-warm']:.3f} |")
    lines += ["", f"Frames copied by shmringsrc over all its runs: {copies} (target 0)."]
    for what, ratio, limit in targets:
        verdict = "met" if ratio <= limit else "missed"
        lines.append(f"- {what} = {ratio:.3f} (target <= {limit}): {verdict}")
    lines.append(f"- shmringsrc ! fakesink / shmsrc ! fakesink = {src / medians['shmsrc-fakesink']:.2f}; "
                 f"/ shmring cat = {src / medians['shmring-cat']:.2f}")
    print("\n".join(lines))
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps({
            "command": command,
            "started": started,
            "load_average": {"before": load_before, "after": load_after},
            "cpus": os.cpu_count(),
            "frame_bytes": FRAME_BYTES,
            "medians_us_per_frame": medians,
            "shmsink_side_us_per_frame": side,
            "shmringsrc_copies": copies,
            "targets": [{"what": w, "ratio": r, "limit": l, "met": r <= l} for w, r, l in targets],
            "rows": rows,
        }, indent=2))


if __name__ == "__main__":
    main()
