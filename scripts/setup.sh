#!/usr/bin/env bash
# Installs what the build and the tests need, once: what the development stack needs
# (scripts/setup-common.sh; the end-to-end suite adds its virtualenv, scripts/dev-setup.sh),
# PostgreSQL, OpenSSL, a nightly toolchain and cargo-fuzz. Safe to run again: each step checks first.
set -euo pipefail

cd "$(dirname "$0")/.."
. scripts/setup-common.sh
want_dev_stack
want postgresql compgen -G '/usr/lib/postgresql/*/bin/initdb'
want openssl command -v openssl
install_wanted setup
ensure_wasm_target setup

if ! rustup toolchain list | grep -q '^nightly'; then
  echo "setup: installing the nightly toolchain (fuzzing)"
  rustup toolchain install nightly --profile minimal
fi

if ! command -v cargo-fuzz >/dev/null; then
  echo "setup: installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi
echo "setup: ready"
