#!/usr/bin/env bash
# Creates a SoftHSM2 token for development in a project-local directory and prints the
# environment the control plane needs. Touches no global state: the token lives under
# .run/softhsm/ and is found through a generated softhsm2.conf named by SOFTHSM2_CONF.
#
#   eval "$(scripts/softhsm-init.sh)"      # then: certbind key init && certbind serve
#
# Settings (environment): SOFTHSM_DIR (default .run/softhsm), CERTBIND_PKCS11_TOKEN_LABEL
# (default certbind), CERTBIND_PKCS11_PIN (default 123456), SOFTHSM_SO_PIN (default 12345678),
# CERTBIND_PKCS11_MODULE (default Debian's libsofthsm2.so).
# Running it again reuses an existing token with the same label.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dir="${SOFTHSM_DIR:-$root/.run/softhsm}"
label="${CERTBIND_PKCS11_TOKEN_LABEL:-certbind}"
pin="${CERTBIND_PKCS11_PIN:-123456}"
so_pin="${SOFTHSM_SO_PIN:-12345678}"
module="${CERTBIND_PKCS11_MODULE:-/usr/lib/softhsm/libsofthsm2.so}"

if ! command -v softhsm2-util >/dev/null || [ ! -e "$module" ]; then
    echo "softhsm-init: SoftHSM2 is not installed (apt-get install -y softhsm2 opensc)" >&2
    exit 1
fi

mkdir -p "$dir/tokens"
chmod 700 "$dir"
conf="$dir/softhsm2.conf"
cat >"$conf" <<CONF
directories.tokendir = $dir/tokens
objectstore.backend = file
log.level = ERROR
slots.removable = false
CONF
export SOFTHSM2_CONF="$conf"

if softhsm2-util --show-slots 2>/dev/null | grep -Eq "^[[:space:]]*Label:[[:space:]]+$label[[:space:]]*$"; then
    echo "softhsm-init: token \"$label\" already exists in $dir" >&2
else
    softhsm2-util --init-token --free --label "$label" --so-pin "$so_pin" --pin "$pin" >&2
    echo "softhsm-init: created token \"$label\" in $dir" >&2
fi

# The environment to export (stdout only, so `eval "$(...)"` works).
printf 'export SOFTHSM2_CONF=%q\n' "$conf"
printf 'export CERTBIND_PKCS11_MODULE=%q\n' "$module"
printf 'export CERTBIND_PKCS11_TOKEN_LABEL=%q\n' "$label"
printf 'export CERTBIND_PKCS11_PIN=%q\n' "$pin"
