#!/usr/bin/env bash
# The end-to-end suite (tests/e2e/, pytest): real Envoy 1.40 with the filter built for
# wasm32-wasip1 and as an Envoy dynamic module (each test module runs against both;
# CERTBIND_FILTER=wasm or =native picks one), the control plane with a SoftHSM2 token, the echo
# upstream, and a TLS client presenting real client certificates; certbind-authz behind real NGINX, Traefik and Envoy
# ext_authz, each from its shipped configuration. Installs what is missing first
# (scripts/dev-setup.sh).
# Every process is started by the suite on free loopback ports and stopped by it; logs of a
# failed run stay in target/e2e/logs/. Extra arguments go to pytest (e.g. -k two_tier).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/dev-setup.sh
echo "e2e: building the filter (wasm and native), the benchmark guests, the control plane and certbind-authz"
cargo build -q -p certbind-filter -p certbind-passthrough-guest -p certbind-minimal-guest \
  --target wasm32-wasip1 --release
cargo build -q -p certbind-control-plane -p certbind-authz
# The Envoy dynamic module, and beside it its test build (a panic on request, another ABI version).
cargo build -q -p certbind-native --profile native
cargo build -q -p certbind-native --profile native-test --features test-hooks
export PYTHONDONTWRITEBYTECODE=1
exec .venv/bin/python -m pytest tests/e2e -q -p no:cacheprovider "$@"
