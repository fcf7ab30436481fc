#!/usr/bin/env bash
# `make run`: installs what is missing, builds the filter and the control plane, then starts
# the development stack in the foreground (scripts/devstack/run.py). Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/dev-setup.sh
echo "run: building the filter (.wasm) and the control plane"
cargo build -q -p certbind-filter --target wasm32-wasip1 --release
cargo build -q -p certbind-control-plane
cd scripts && exec ../.venv/bin/python -m devstack.run
