#!/usr/bin/env bash
# Figures of the stall paths (opt-in, about 30 s): a producer in its own
# pid namespace holds a claim (killed after 1 s, or SIGSTOPped for 2 s)
# while another producer sends a stamped frame every 5 ms. Prints and
# writes target/stall-figures.json: the time from the killed producer's
# liveness descriptor hanging up to its record being skipped, and the
# worst delay of the other producer's frames (commit to delivery), both
# against the stall timeout (SHMRING_STALL_MS, default 250).
set -euo pipefail
cd "$(dirname "$0")/.."
line=$(cargo test -p shmring --test crashes -- --ignored --exact stall_figures --nocapture 2>/dev/null | grep '^STALL-FIGURES ')
json=${line#STALL-FIGURES }
mkdir -p target
echo "$json" > target/stall-figures.json
echo "$json"
