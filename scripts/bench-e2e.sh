#!/usr/bin/env bash
# The end-to-end benchmark (scripts/devstack/bench.py): Envoy 1.40 with and without filters,
# driven by wrk; the report lands in target/bench-report-e2e.md (scripts/bench.sh appends it to
# target/bench-report.md). Installs wrk and the rest when missing (scripts/dev-setup.sh --bench).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/dev-setup.sh --bench
echo "bench-e2e: building the filter, the benchmark guests and the control plane"
cargo build -q -p certbind-filter -p certbind-passthrough-guest -p certbind-minimal-guest \
  --target wasm32-wasip1 --release
cargo build -q -p certbind-control-plane
report="$(pwd)/target/bench-report-e2e.md"
cd scripts && PYTHONDONTWRITEBYTECODE=1 ../.venv/bin/python -m devstack.bench "$report"
