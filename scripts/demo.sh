#!/usr/bin/env bash
# The main job on a fresh Debian machine: installs ffmpeg if it is missing,
# builds the `shmring` command and runs its demo (a camera process and a
# microphone process -> one ring -> the encoder -> ffmpeg -> an MP4), then
# prints what it measured. Arguments go to `shmring demo` (see --help).
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/deps.sh
source scripts/deps.sh
install_missing_packages ffmpeg

exec cargo run --quiet --release -p shmring-cli --bin shmring -- demo "$@"
