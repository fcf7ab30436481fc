#!/usr/bin/env bash
# The end-to-end benchmark (scripts/devstack/bench.py): Envoy 1.40 with and without filters,
# driven by wrk; then certbind-authz behind NGINX, Traefik and Envoy ext_authz against each
# gateway alone and with a trivial authorizer (scripts/devstack/bench_gateways.py); Envoy's memory
# holding 1 M bindings, the dynamic module against the wasm filter (bench_memory.py). The report
# lands in target/bench-report-e2e.md (scripts/bench.sh appends it to target/bench-report.md).
# Installs wrk and the rest when missing (scripts/dev-setup.sh --bench).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/dev-setup.sh --bench
echo "bench-e2e: building the filter, the benchmark guests and the control plane"
cargo build -q -p certbind-filter -p certbind-passthrough-guest -p certbind-minimal-guest \
  --target wasm32-wasip1 --release
cargo build -q -p certbind-control-plane
echo "bench-e2e: building the memory benchmark's snapshot writer"
cargo build -q -p certbind-tests --example synthetic_snapshot
echo "bench-e2e: building the filter as an Envoy dynamic module, and the modules it is measured against"
cargo build -q -p certbind-native -p certbind-noop-module -p certbind-passthrough-module --profile native
echo "bench-e2e: building certbind-authz and the trivial authorizer (release)"
cargo build -q --release -p certbind-authz --bin certbind-authz --example allow_all
report="$(pwd)/target/bench-report-e2e.md"
gateways_report="$(pwd)/target/bench-report-gateways.md"
export CERTBIND_AUTHZ_BIN="$(pwd)/target/release/certbind-authz"
export CERTBIND_ALLOW_ALL_BIN="$(pwd)/target/release/examples/allow_all"
cd scripts
PYTHONDONTWRITEBYTECODE=1 ../.venv/bin/python -m devstack.bench "$report"
memory_report="$(pwd)/../target/bench-report-memory.md"
PYTHONDONTWRITEBYTECODE=1 ../.venv/bin/python -m devstack.bench_memory "$memory_report"
PYTHONDONTWRITEBYTECODE=1 ../.venv/bin/python -m devstack.bench_gateways "$gateways_report"
cat "$memory_report" "$gateways_report" >> "$report"
