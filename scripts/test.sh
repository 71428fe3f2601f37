#!/usr/bin/env bash
# The whole test suite on a fresh Debian machine: installs what it needs,
# then runs formatting and lint checks, every test (unit, integration,
# cross-process, doc), the producer-only build, the loom models, and miri
# where the toolchain has it.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

# shellcheck source=scripts/deps.sh
source scripts/deps.sh
install_missing_packages "${shmring_packages[@]}"
install_npm_if_missing
install_pip_if_missing

# The bot driver's browser automation (playwright-core, which downloads no
# browser: it drives Debian's Chromium) and the Python WebSocket receiver of
# the bot benchmark's baseline, pinned.
step "npm ci (examples/bot) and pip install (examples/websocket_receiver)"
npm ci --prefix examples/bot --no-audit --no-fund
python3 -m pip install --quiet --disable-pip-version-check --break-system-packages -r examples/websocket_receiver/requirements.txt

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets -- -D warnings
cargo clippy -p shmring --no-default-features --all-targets -- -D warnings

step "producer-only configuration (libc only)"
deps=$(cargo tree -p shmring --no-default-features -e normal --prefix none | sort -u | grep -v '^shmring ' || true)
echo "$deps"
if echo "$deps" | grep -qv '^libc '; then
  echo "the producer-only build pulls in more than libc" >&2
  exit 1
fi
cargo test -p shmring --no-default-features
# What a renderer links (the C++ shim and the media headers) on that
# configuration: built alone, shmring gets none of its features.
if cargo tree -p shmring-ffi -p shmring-media -e features -i shmring | grep -q 'shmring feature'; then
  echo "the shim pulls in shmring features" >&2
  exit 1
fi
cargo test -p shmring-ffi -p shmring-media

step "loom models (claim/commit/peek/release, wake-ups)"
RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test -p shmring --release --lib loom

# A nightly toolchain without miri gets it (one rustup call); none at all
# skips the step.
if rustup toolchain list 2>/dev/null | grep -q '^nightly' && ! cargo +nightly miri --version >/dev/null 2>&1; then
  rustup component add miri --toolchain nightly >/dev/null 2>&1 || true
fi
if cargo +nightly miri --version >/dev/null 2>&1; then
  step "miri over the heap-backed library tests (layout, names, protocol)"
  MIRIFLAGS="-Zmiri-disable-isolation" cargo +nightly miri test -p shmring --no-default-features --lib
else
  step "miri is not installed for the nightly toolchain here: skipped"
fi

step "the workspace's tests"
cargo test --workspace

step "the Python module (wheels built by maturin, pytest against real producer processes): python3 and CPython 3.9"
# python3 gets the abi3 wheel (3.11 and later); 3.9, the oldest CPython
# supported, the build for its own version that 3.9 and 3.10 get.
bash scripts/test-python.sh python3 3.9
