#!/bin/sh
# Generates the development PKI into OUTDIR (default .dev/pki): the dev CA bundle `ca.crt`, a
# localhost server certificate, the bound demo card, an unbound card, PIV/CAC-shaped cards
# (FASC-N, UPN, UUID, policy OIDs), Card-Auth, expired, not-yet-valid and untrusted-CA cases.
# `make run` calls it; the list of files is in scripts/devstack/pki.py. Keys are for
# development only. Needs the project's virtualenv (scripts/dev-setup.sh).
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
out=$(cd "$root" && mkdir -p "${1:-.dev/pki}" && cd "${1:-.dev/pki}" && pwd)
cd "$root/scripts" && exec "$root/.venv/bin/python" -m devstack.pki "$out"
