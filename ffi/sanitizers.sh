#!/usr/bin/env bash
# Builds the C++ harness (ffi/tests/shim_test.cc) and the fake renderer
# (examples/fake_renderer/main.cc) with Chromium's flags under
# AddressSanitizer + UndefinedBehaviorSanitizer, and the harness under
# ThreadSanitizer, links them against the shim's static library, and runs
# each through the verifying consumer (which owns the ring and checks every
# frame). Any sanitizer report fails the run.
#
# Usage: ffi/sanitizers.sh            (builds the consumer if CONSUMER is unset)
# Env:   CONSUMER=path/to/consumer    SANITIZERS="asan tsan"    CXX=clang++
# Prints one "sanitizer NAME: ran|skipped (why)" line each, then
# "N passed, M failed".
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# A target directory of its own: this script may run while another cargo
# (the test that invoked it) holds the workspace's.
target="${SANITIZER_TARGET_DIR:-$root/target/sanitizers}"
cxx="${CXX:-clang++}"
wanted="${SANITIZERS:-asan tsan}"
passed=0
failed=0

command -v "$cxx" >/dev/null || { echo "sanitizers: $cxx not found (apt-get install clang)"; exit 1; }

cargo build --quiet --manifest-path "$root/Cargo.toml" -p shmring-ffi --lib --target-dir "$target"
lib="$target/debug/libshmring_ffi.a"
consumer="${CONSUMER:-}"
if [[ -z "$consumer" ]]; then
  cargo build --quiet --manifest-path "$root/Cargo.toml" -p shmring-examples --bin consumer --target-dir "$target"
  consumer="$target/debug/consumer"
fi

flags=(-std=c++20 -fno-exceptions -fno-rtti -DRUST_CXX_NO_EXCEPTIONS -g -O1 -fno-omit-frame-pointer
  -Wall -Wextra -Werror
  -I"$root/ffi/include" -I"$root/ffi/tests" -I"$target/cxxbridge")
libs=("$lib" -lpthread -ldl -lm -lrt)
out="$target/sanitizer-bin"
mkdir -p "$out"

build() { # name entry source sanitizer-flags...
  local name="$1" entry="$2" source="$3"
  shift 3
  "$cxx" "${flags[@]}" "$@" -DSHMRING_ENTRY="$entry" "$root/ffi/tests/main.cc" "$source" "${libs[@]}" \
    -o "$out/$name"
}

run() { # label consumer-args...
  local label="$1"
  shift
  local log="$out/$label.log"
  if "$consumer" "$@" >"$log" 2>&1 && ! grep -qE "ERROR: (Address|Thread|Undefined)Sanitizer|runtime error:|WARNING: ThreadSanitizer" "$log"; then
    echo "sanitizers: $label passed"
    passed=$((passed + 1))
  else
    echo "sanitizers: $label FAILED; log follows"
    tail -n 60 "$log"
    failed=$((failed + 1))
  fi
}

export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:halt_on_error=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1"

if [[ " $wanted " == *" asan "* ]]; then
  san=(-fsanitize=address,undefined -fno-sanitize-recover=all)
  build shim_test_asan shmring_shim_test_main "$root/ffi/tests/shim_test.cc" "${san[@]}"
  build fake_renderer_asan shmring_fake_renderer_main "$root/examples/fake_renderer/main.cc" "${san[@]}"
  echo "sanitizer asan+ubsan: ran"
  run shim_test_asan --renderer "$out/shim_test_asan" --fd-via env --timeout 300
  run fake_renderer_asan --renderer "$out/fake_renderer_asan" --timeout 300 -- --seconds 3
fi

if [[ " $wanted " == *" tsan "* ]]; then
  # The ring's synchronisation is in (uninstrumented) Rust, so TSan sees
  # only the C++ side: the threads sharing one producer and their own data.
  # shim_test never laps the ring, so no ring byte is written twice.
  if build shim_test_tsan shmring_shim_test_main "$root/ffi/tests/shim_test.cc" -fsanitize=thread 2>"$out/tsan-build.log"; then
    probe="$out/shim_test_tsan"
    # Newer kernels randomise mmap more than older TSan runtimes accept.
    if ! "$probe" >/dev/null 2>"$out/tsan-probe.log" && grep -q "unexpected memory mapping" "$out/tsan-probe.log"; then
      if command -v setarch >/dev/null; then
        wrapper="$out/shim_test_tsan_norandom"
        printf '#!/bin/sh\nexec setarch "$(uname -m)" -R "%s" "$@"\n' "$probe" >"$wrapper"
        chmod +x "$wrapper"
        probe="$wrapper"
      fi
    fi
    echo "sanitizer tsan: ran"
    run shim_test_tsan --renderer "$probe" --fd-via env --timeout 300
  else
    echo "sanitizer tsan: skipped (does not build here: $(head -n 1 "$out/tsan-build.log"))"
  fi
fi

echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
