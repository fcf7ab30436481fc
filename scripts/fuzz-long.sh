#!/usr/bin/env bash
# Runs every fuzz target (or those named) for a fixed number of executions, default ten
# million, one after another, and prints each count as libFuzzer reports it. Not part of
# `make test`: it takes hours of one core. Logs: fuzz/corpus/TARGET.long.log.
set -euo pipefail
runs=${FUZZ_RUNS:-10000000}
cd "$(dirname "$0")/../fuzz"
./seed-corpus.sh
targets=${*:-$(cargo +nightly fuzz list)}
for target in $targets; do
  mkdir -p "corpus/$target"
  log="corpus/$target.long.log"
  start=$(date +%s)
  cargo +nightly fuzz run "$target" "corpus/$target" -- -runs="$runs" -rss_limit_mb=2048 >"$log" 2>&1
  done_line=$(grep -E '^Done [0-9]+ runs' "$log" | tail -1)
  echo "fuzz-long: $target: ${done_line:-no Done line (see $log)} ($(( $(date +%s) - start )) s wall)"
done
