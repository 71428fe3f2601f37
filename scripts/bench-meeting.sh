#!/usr/bin/env bash
# A 4-participant WebRTC meeting (loopback peer connections in one headless
# Chromium, the fake camera at 1280x720 30 fps sent to each, received at
# whatever sizes WebRTC's bandwidth estimation picks) recorded by
# `shmring chromium --build stock` for SECONDS s (default 30): frames in and
# recorded per participant, drops (page, bridge, encoder), CPU per process
# (Chromium with all its processes, the bridge, the encoder, every ffmpeg),
# the load average before and after. Outputs target/bench/meeting.md and
# target/bench/meeting.json; the recording stays in target/bench/meeting/.
#
#   scripts/bench-meeting.sh [--seconds S] [--size WxH]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p shmring-cli --bin shmring
mkdir -p target/bench
python3 benches/meeting/bench_meeting.py --shmring target/release/shmring \
  --pages crates/shmring-bridge/tests/pages --out target/bench/meeting \
  --json target/bench/meeting.json "$@" | tee target/bench/meeting.md
