#!/usr/bin/env bash
# Runs every fuzz target for a short time (default 20 s each): a smoke test that the parsers
# of untrusted bytes still survive arbitrary input. Long runs: `cargo +nightly fuzz run NAME`.
set -euo pipefail
seconds=${1:-20}
cd "$(dirname "$0")/../fuzz"
targets=$(cargo +nightly fuzz list)
[ -n "$targets" ] || { echo "fuzz-smoke: no fuzz targets found" >&2; exit 1; }
for target in $targets; do
  mkdir -p "corpus/$target"
  # Seed with the test PKI so certificate parsers start from real structures.
  cp -n ../tests/pki/*.pem "corpus/$target/" 2>/dev/null || true
  # And the CRL reader from the committed CRLs.
  if [ "$target" = crl ]; then
    cp -n ../shared/tests/vectors/crl/*.crl.* "corpus/$target/" 2>/dev/null || true
  fi
  echo "fuzz-smoke: $target for ${seconds}s"
  log="corpus/$target.log"
  status=0
  cargo +nightly fuzz run "$target" "corpus/$target" -- -max_total_time="$seconds" -rss_limit_mb=2048 >"$log" 2>&1 || status=$?
  grep -E '^(#[0-9]+ +DONE|Done [0-9]+ runs|==[0-9]+==|SUMMARY|thread .* panicked)' "$log" || true
  if [ "$status" -ne 0 ]; then
    tail -n 40 "$log" >&2
    echo "fuzz-smoke: $target FAILED (exit $status); reproducer under fuzz/artifacts/$target" >&2
    exit "$status"
  fi
done
echo "fuzz-smoke: all targets passed"
