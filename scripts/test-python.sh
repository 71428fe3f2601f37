#!/usr/bin/env bash
# The Python module's tests under each CPython given (default: python3 and
# 3.9, the oldest supported): for each, a virtual environment of its own in
# target/, the wheel built by pip through maturin (abi3 from 3.11 on, a
# build for the interpreter before), pytest against the real `shmring`
# binary. An interpreter that cannot be found fails the run.
#
#   scripts/test-python.sh                  # python3 and 3.9
#   scripts/test-python.sh 3.9 3.10 3.11 3.12 3.13
set -euo pipefail
cd "$(dirname "$0")/.."

versions=("$@")
[ ${#versions[@]} -gt 0 ] || versions=(python3 3.9)

# A version number is looked up as python3.X on PATH, then among pyenv's
# installed versions; a candidate counts only if it runs (pyenv's shims
# answer for versions that are not selected).
runs() { "$1" -c 'pass' >/dev/null 2>&1; }
interpreter_for() {
  local wanted=$1 candidate
  case $wanted in
    */* | python*) candidate=$(command -v "$wanted") && runs "$candidate" && echo "$candidate"; return ;;
  esac
  candidate=$(command -v "python$wanted") && runs "$candidate" && { echo "$candidate"; return; }
  command -v pyenv >/dev/null || return 1
  candidate=$(find "$(pyenv root)/versions" -maxdepth 3 -path "*/$wanted.*/bin/python$wanted" 2>/dev/null | sort -V | tail -1)
  [ -n "$candidate" ] && runs "$candidate" && echo "$candidate"
}

cargo build -p shmring-cli
for wanted in "${versions[@]}"; do
  python=$(interpreter_for "$wanted") || { echo "no Python interpreter for '$wanted' (PATH, pyenv)" >&2; exit 1; }
  version=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  venv="target/python-venv-$version"
  printf '\n-- CPython %s (%s)\n' "$version" "$python"
  "$python" -m venv "$venv"
  (
    export PATH="$PWD/$venv/bin:$PATH"
    # numpy for the typed views, av and websockets for the examples and
    # the comparison.
    pip install -q --disable-pip-version-check --upgrade "maturin>=1.9,<2" pytest numpy av websockets
    pip install -q --disable-pip-version-check --no-build-isolation --force-reinstall --no-deps ./crates/shmring-py
    python -c 'import os, shmring; d = os.path.dirname(shmring.__file__); print("extension:", *[f for f in os.listdir(d) if f.endswith(".so")])'
    SHMRING_BIN="$PWD/target/debug/shmring" python -m pytest -q -p no:cacheprovider crates/shmring-py/tests
  )
done
