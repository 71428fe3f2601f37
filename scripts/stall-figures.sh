#!/usr/bin/env bash
# Figures of the stall paths (opt-in, about 40 s): a producer in its own
# pid namespace holds a claim (killed after 1 s, or SIGSTOPped for 2 s)
# while another producer sends a stamped frame every 5 ms. Prints and
# writes target/stall-figures.json: the time from the killed producer's
# liveness descriptor hanging up to its record being skipped, and the
# worst delay of the other producer's frames (commit to delivery), both
# against the stall timeout (SHMRING_STALL_MS, default 250). The kill
# rounds run twice: with the watch handed to the consumer in its own
# process, and ("handed_over") handed over a host's rendezvous socket to
# a consumer attached behind the host.
set -euo pipefail
cd "$(dirname "$0")/.."
line=$(cargo test -p shmring --test crashes -- --ignored --exact stall_figures --nocapture 2>/dev/null | grep '^STALL-FIGURES ')
handed=$(cargo test -p shmring --test handoff -- --ignored --exact stall_figures_handed_over --nocapture 2>/dev/null \
  | grep '^STALL-FIGURES-HANDOFF ')
json="${line#STALL-FIGURES }"
json="${json%\}}, \"handed_over\": ${handed#STALL-FIGURES-HANDOFF }}"
mkdir -p target
echo "$json" > target/stall-figures.json
echo "$json"
