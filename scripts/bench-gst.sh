#!/usr/bin/env bash
# shmringsrc's CPU per 1080p30 frame beside `shmring cat`, GStreamer's own
# shmsink/shmsrc pair carrying the same frames and a memcpy of one frame,
# in one run (ROUNDS rounds of SECONDS s, each figure the median; default
# 3 x 10 s). Outputs target/bench/gst.md and target/bench/gst.json.
#
#   scripts/bench-gst.sh [--seconds S] [--rounds N]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p shmring-cli --bin shmring
cargo build --release -p gst-shmring --example pipeline_stats
mkdir -p target/bench
python3 crates/gst-shmring/bench/gst_cpu.py --shmring target/release/shmring \
  --pipeline-stats target/release/examples/pipeline_stats --json target/bench/gst.json "$@" |
  tee target/bench/gst.md
