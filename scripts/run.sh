#!/usr/bin/env bash
# `make run`: installs what is missing, builds the filter and the control plane, then starts
# the development stack in the foreground (scripts/devstack/run.py). Ctrl-C stops it.
# CERTBIND_GATEWAY=nginx|traefik|envoy_http|envoy_grpc: that gateway in front of
# certbind-authz (built too) instead of Envoy with the filter. CERTBIND_FILTER=native: Envoy
# runs the filter as its dynamic module (libcertbind.so, built too) instead of the .wasm.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/dev-setup.sh
echo "run: building the filter (.wasm) and the control plane, release builds (as make build)"
cargo build -q -p certbind-filter --target wasm32-wasip1 --release
cargo build -q -p certbind-control-plane --release
# The stack starts these builds, not whatever debug build a test left in target/debug/.
export CERTBIND_BIN="$PWD/target/release/certbind"
if [ "${CERTBIND_FILTER:-wasm}" = native ]; then
  echo "run: building the filter as an Envoy dynamic module (CERTBIND_FILTER=native)"
  cargo build -q -p certbind-native --profile native
fi
if [ "${CERTBIND_GATEWAY:-envoy}" != envoy ]; then
  echo "run: building certbind-authz (CERTBIND_GATEWAY=$CERTBIND_GATEWAY)"
  cargo build -q -p certbind-authz --release
  export CERTBIND_AUTHZ_BIN="$PWD/target/release/certbind-authz"
fi
cd scripts && exec ../.venv/bin/python -m devstack.run
