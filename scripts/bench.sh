#!/usr/bin/env bash
# Runs the benchmarks (release build, real processes) and refreshes their
# sections of README.md, the parts between the bench markers (appended
# when the markers are missing).
#
#   scripts/bench.sh [all|compare|bot] [extra arguments for that bench]
#
# compare  the transport comparison: each figure the median of REPEAT runs
#          (default 3, taken in rounds, so a burst of other work on a shared
#          machine spoils one run, not the figure). Outputs in target/bench/:
#          compare.md, compare.json, compare.svg.
# bot      the whole recording bot per pipeline (`shmring bench bot`, real
#          Chromium, the Python receiver, ffmpeg): ROUNDS rounds (default 3)
#          of SECONDS_PER_RUN s (default 30). Outputs: target/bench/bot.md,
#          and, committed beside the README, benches/results/bot.json and
#          the chart benches/results/bot.svg, which the README shows; the
#          README's first screen gets the headline ratio of this run.
set -euo pipefail
cd "$(dirname "$0")/.."

which=${1:-all}
case "$which" in
  all | compare | bot) shift || true ;;
  *) which=all ;;
esac

out=target/bench
mkdir -p "$out"
readme=README.md

# replace_section NAME FILE: puts FILE between <!-- NAME:begin --> and
# <!-- NAME:end --> in the README (appended under "Measured results" when
# the markers are missing).
replace_section() {
  local begin="<!-- $1:begin -->" end="<!-- $1:end -->" file=$2
  if grep -qF "$begin" "$readme"; then
    awk -v begin="$begin" -v end="$end" -v file="$file" '
      $0 == begin { print; while ((getline line < file) > 0) print line; skip = 1; next }
      $0 == end   { skip = 0 }
      !skip       { print }
    ' "$readme" >"$out/readme.new"
    mv "$out/readme.new" "$readme"
  else
    { echo; echo "$begin"; cat "$file"; echo "$end"; } >>"$readme"
  fi
}

if [ "$which" = all ] || [ "$which" = compare ]; then
  cargo build --release -p shmring-benches --bin compare
  target/release/compare --repeat "${REPEAT:-3}" --json "$out/compare.json" --svg "$out/compare.svg" "$@" |
    tee "$out/compare.md"
  {
    echo "<!-- written by scripts/bench.sh; edits between these markers are overwritten -->"
    echo
    # The table's own heading, one level down so it sits under this section.
    sed 's/^## /### /' "$out/compare.md"
    echo
    echo "Refresh with \`scripts/bench.sh compare\` (JSON and an SVG chart land in \`$out/\`)."
  } >"$out/compare.section.md"
  replace_section bench "$out/compare.section.md"
fi

if [ "$which" = all ] || [ "$which" = bot ]; then
  cargo build --release -p shmring-cli -p shmring-examples
  mkdir -p benches/results
  target/release/shmring bench bot --rounds "${ROUNDS:-3}" --seconds "${SECONDS_PER_RUN:-30}" \
    --json benches/results/bot.json --svg benches/results/bot.svg "$@" | tee "$out/bot.md"
  {
    echo "<!-- written by scripts/bench.sh; edits between these markers are overwritten -->"
    echo
    # Under the README's "### The whole bot".
    sed 's/^## /#### /' "$out/bot.md"
    echo
    echo "![CPU per recorded minute by process group, per pipeline](benches/results/bot.svg)"
    echo
    echo "Refresh with \`scripts/bench.sh bot\` (every run's figures in \`benches/results/bot.json\`)."
  } >"$out/bot.section.md"
  replace_section bench-bot "$out/bot.section.md"
  python3 -c 'import json,sys; h=json.load(open(sys.argv[1]))["headline"]; print(h or "")' benches/results/bot.json \
    >"$out/bot.headline.md"
  echo "Table, chart and command: [the whole bot, per pipeline](#the-whole-bot-per-pipeline)." >>"$out/bot.headline.md"
  replace_section bench-bot-headline "$out/bot.headline.md"
fi
echo "updated $readme" >&2
