"""A recorded WebRTC meeting, measured: see scripts/bench-meeting.sh.

Serves the meeting page (crates/shmring-bridge/tests/pages/meeting.html),
runs `shmring chromium --build stock -o DIR` on it, and reads what the
launcher's summary and the browser's log (the extension's per-stream
counters) say: per participant, frames captured by the page, sent,
committed by the bridge, recorded and dropped at each step; CPU per process.
"""

import argparse
import datetime
import functools
import http.server
import json
import os
import re
import subprocess
import sys
import threading

# The flags the project's own Chromium tests run with (headless, no network
# beyond loopback, the fake 30 fps camera and microphone), plus loopback
# WebRTC candidates.
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--use-fake-device-for-media-stream=fps=30", "--use-fake-ui-for-media-stream",
    "--autoplay-policy=no-user-gesture-required", "--disable-background-timer-throttling",
    "--disable-renderer-backgrounding", "--enable-logging=stderr", "--v=0",
    "--allow-loopback-in-peer-connection",
]

# Browser start and the end of the run, beyond the meeting itself.
MARGIN_S = 8


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def serve(pages):
    handler = functools.partial(QuietHandler, directory=pages)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def console(log, prefix):
    """The extension's console lines containing prefix, cut to start there."""
    for line in log.splitlines():
        at = line.find(prefix)
        if "CONSOLE" in line and at >= 0:
            text = line[at:]
            end = text.rfind('", source: ')
            yield (text[:end] if end >= 0 else text).replace('\\"', '"')


def page_streams(log):
    streams = {}
    for text in console(log, "shmring-extension: stream "):
        sid, label = text[len("shmring-extension: stream "):].split(" ", 1)
        streams.setdefault(int(sid), {})["label"] = json.loads(label)
    for text in console(log, "shmring-extension: closed stream "):
        rest = text[len("shmring-extension: closed stream "):]
        sid = int(rest.split(" ", 1)[0])
        streams.setdefault(int(sid), {})["stats"] = json.loads(rest[rest.index(") {") + 2:])
    return streams


ROW = re.compile(r"^\s*stream (\d+)\s+(video|audio) of participant (\d+) .*-> (.*?): (\d+) received, (\d+) recorded, "
                 r"(\d+) dropped, (\d+) missing upstream")
OUTPUT = re.compile(r"^\s*output\s+\S*/participant-(\d+)(?:\.\d+)?\.mp4 (\d+x\d+) \S+: (\d+) frames")
CPU = re.compile(r"^\s*CPU (encoder|ffmpeg|chromium|bridge)\s+([\d.]+) s")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--shmring", required=True)
    parser.add_argument("--pages", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--json", required=True)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--size", default="1280x720")
    parser.add_argument("--participants", type=int, default=4)
    args = parser.parse_args()
    width, height = args.size.split("x")

    server = serve(args.pages)
    url = (f"http://127.0.0.1:{server.server_address[1]}/meeting.html?participants={args.participants}"
           f"&loopback=1&playout=none&width={width}&height={height}&seconds={args.seconds:g}")
    subprocess.run(["rm", "-rf", args.out], check=True)
    command = [args.shmring, "chromium", "--build", "stock", "-o", args.out + "/",
               "--seconds", f"{args.seconds + MARGIN_S:g}", "--"] + FLAGS + [url]
    load_before = os.getloadavg()
    started = datetime.datetime.now(datetime.timezone.utc)
    run = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "RUST_LOG": "warn"})
    load_after = os.getloadavg()
    server.shutdown()
    if run.returncode != 0:
        sys.stderr.write(run.stdout + run.stderr[-4000:])
        sys.exit(f"shmring chromium failed ({run.returncode})")

    page = page_streams(run.stderr)
    rows, cpu, sizes, bridge, why = {}, {}, {}, {}, {}
    for line in run.stdout.splitlines():
        if m := ROW.match(line):
            sid, kind, who = int(m[1]), m[2], int(m[3])
            received, recorded, dropped, missing = map(int, m.group(5, 6, 7, 8))
            rows[sid] = dict(kind=kind, participant=who, received=received, recorded=recorded,
                             dropped=dropped, missing=missing)
        elif m := OUTPUT.match(line):
            sizes.setdefault(int(m[1]), []).append(dict(size=m[2], frames=int(m[3])))
        elif m := CPU.match(line):
            cpu[m[1]] = float(m[2])
        elif line.strip().startswith(("video dropped ", "audio dropped ")):
            why[line.split()[0]] = " ".join(line.split()[2:])
        elif line.strip().startswith("bridge counters {"):
            bridge = json.loads(line.strip()[len("bridge counters "):])

    participants = {}
    for sid, row in sorted(rows.items()):
        stats = page.get(sid, {}).get("stats", {})
        skipped = sum(stats.get(k, 0) for k in ("skippedBackpressure", "skippedAfterDrop", "unsupported"))
        entry = participants.setdefault(row["participant"], {"files": sizes.get(row["participant"], [])})
        entry[row["kind"]] = dict(
            stream=sid, lane=stats.get("lane"), captured=stats.get("captured"), skipped_in_page=skipped,
            sent=stats.get("sent"), received=row["received"], recorded=row["recorded"],
            dropped_by_encoder=row["dropped"], missing_upstream=row["missing"])

    meeting_s = args.seconds
    video_recorded = sum(p["video"]["recorded"] for p in participants.values() if "video" in p)
    result = {
        "command": " ".join(["scripts/bench-meeting.sh", f"--seconds {args.seconds:g}", f"--size {args.size}"]),
        "date": started.strftime("%Y-%m-%d %H:%M UTC"),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in load_after],
        "cores": os.cpu_count(),
        "meeting_seconds": meeting_s,
        "camera": args.size,
        "participants": participants,
        "bridge": {k: bridge.get(k) for k in ("messages", "file_messages", "file_lanes", "dropped_full",
                                              "dropped_busy", "abandoned")},
        "encoder_drops": why,
        "cpu_seconds": cpu,
        "cpu_percent_of_one_core": {k: round(100 * v / meeting_s, 1) for k, v in cpu.items()},
        "cpu_us_per_recorded_video_frame": {k: round(1e6 * v / max(video_recorded, 1)) for k, v in cpu.items()},
    }
    with open(args.json, "w") as out:
        json.dump(result, out, indent=2)

    print(f"meeting of {args.participants}, {meeting_s:g} s, camera {args.size} 30 fps over loopback WebRTC; "
          f"{result['date']}, load average {load_before[0]:.2f} before, {load_after[0]:.2f} after, "
          f"{os.cpu_count()} cores")
    print()
    print("| participant | sizes received (frames) | video captured / sent / in ring / recorded | video dropped "
          "(page, encoder) | lane | audio chunks in ring / recorded | audio dropped (encoder) |")
    print("|---|---|---|---|---|---|---|")
    for who, p in sorted(participants.items()):
        v, a = p.get("video", {}), p.get("audio", {})
        files = ", ".join(f"{f['size']} ({f['frames']})" for f in p["files"])
        print(f"| {who} | {files} | {v.get('captured')} / {v.get('sent')} / {v.get('received')} / {v.get('recorded')} "
              f"| {v.get('skipped_in_page')}, {v.get('dropped_by_encoder')} | {v.get('lane')} "
              f"| {a.get('received')} / {a.get('recorded')} | {a.get('dropped_by_encoder')} |")
    b = result["bridge"]
    print()
    print(f"bridge: {b['messages']} records committed ({b['file_messages']} read from the page's frame files, "
          f"{b['file_lanes']} file lanes), dropped {b['dropped_full']} ring full, {b['dropped_busy']} no slot, "
          f"{b['abandoned']} abandoned")
    for kind, text in why.items():
        print(f"encoder, {kind} dropped: {text}")
    print()
    print("| process | CPU s | % of one core | us per recorded video frame |")
    print("|---|---|---|---|")
    for name in ("chromium", "bridge", "encoder", "ffmpeg"):
        if name in cpu:
            print(f"| {name} | {cpu[name]:.2f} | {result['cpu_percent_of_one_core'][name]} "
                  f"| {result['cpu_us_per_recorded_video_frame'][name]} |")


if __name__ == "__main__":
    main()
