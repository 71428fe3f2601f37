#!/usr/bin/env bash
# The Python consumer's CPU per 1080p30 frame beside the Rust consumer and
# a Python `websockets` receiver of the same camera frames, in one run
# (ROUNDS rounds of SECONDS s, each figure the median; default 3 x 10 s).
# Outputs target/bench/python-consumer.md and .json.
#
#   scripts/bench-python.sh [--seconds S] [--rounds N]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p shmring-cli -p shmring-examples --bin shmring --bin consumer_cpu
python3 -m venv target/python-venv
export PATH="$PWD/target/python-venv/bin:$PATH"
pip install -q --upgrade "maturin>=1.9,<2" numpy websockets
pip install -q --no-build-isolation --force-reinstall --no-deps ./crates/shmring-py
mkdir -p target/bench
python crates/shmring-py/bench/consumer_cpu.py --json target/bench/python-consumer.json "$@" \
  | tee target/bench/python-consumer.md
