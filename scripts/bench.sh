#!/usr/bin/env bash
# Runs the full transport comparison (release build, real producer and
# consumer processes) and refreshes the results section of README.md, the
# part between the bench markers (appended when the markers are missing).
# Each figure is the median of REPEAT runs (default 3, taken in rounds, so a
# burst of other work on a shared machine spoils one run, not the figure).
# Extra arguments go to `compare` (e.g. --quick).
#
# Outputs: target/bench/compare.md (the table), compare.json, compare.svg.
set -euo pipefail
cd "$(dirname "$0")/.."

out=target/bench
mkdir -p "$out"
cargo build --release -p shmring-benches --bin compare
target/release/compare --repeat "${REPEAT:-3}" --json "$out/compare.json" --svg "$out/compare.svg" "$@" |
  tee "$out/compare.md"

readme=README.md
[ -f "$readme" ] || readme=benches/README.md
begin='<!-- bench:begin -->'
end='<!-- bench:end -->'
section="$out/section.md"
{
  echo "$begin"
  echo "<!-- written by scripts/bench.sh; edits between these markers are overwritten -->"
  echo
  # The table's own heading, one level down so it sits under this section.
  sed 's/^## /### /' "$out/compare.md"
  echo
  echo "Refresh with \`scripts/bench.sh\` (JSON and an SVG chart land in \`$out/\`)."
  echo "$end"
} >"$section"

if grep -qF "$begin" "$readme"; then
  awk -v begin="$begin" -v end="$end" -v file="$section" '
    $0 == begin { while ((getline line < file) > 0) print line; skip = 1; next }
    $0 == end   { skip = 0; next }
    !skip       { print }
  ' "$readme" >"$out/readme.new"
  mv "$out/readme.new" "$readme"
else
  { echo; echo "## Measured results"; echo; cat "$section"; } >>"$readme"
fi
echo "updated $readme" >&2
