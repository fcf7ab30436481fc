#!/usr/bin/env bash
# A throwaway PostgreSQL server for the control plane's tests, in a project-local directory,
# on a free loopback port, run as an unprivileged user. Touches no global state: no system
# cluster, no /var/run/postgresql, no password files.
#
#   scripts/postgres-test.sh start        start (or reuse) the server; prints, for `eval`:
#                                           export DATABASE_URL=…
#                                           export CERTBIND_TEST_POSTGRES_URL=…
#   scripts/postgres-test.sh url          print the running server's URL
#   scripts/postgres-test.sh stop         stop it (the data stays for the next start)
#   scripts/postgres-test.sh halt         stop it, keeping its port for the next start (a
#                                         restart under running clients, as the outage tests do)
#   scripts/postgres-test.sh clean        stop it and delete its data
#   scripts/postgres-test.sh run CMD…     start, run CMD with CERTBIND_TEST_POSTGRES_URL set,
#                                         stop again; exits with CMD's status
#
# Environment: CERTBIND_PG_DIR (default: <repo>/.run/postgres), CERTBIND_PG_USER (the OS user
# that runs the server when this script runs as root; default postgres).
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
base_dir=${CERTBIND_PG_DIR:-$repo_root/.run/postgres}
data_dir=$base_dir/data
socket_dir=$base_dir/socket
log_file=$base_dir/server.log
port_file=$base_dir/port
db_user=certbind
db_name=certbind
os_user=${CERTBIND_PG_USER:-postgres}

die() { echo "postgres-test: $*" >&2; exit 1; }

find_bindir() {
  local dir
  if command -v pg_config >/dev/null 2>&1; then
    dir=$(pg_config --bindir 2>/dev/null || true)
    [ -x "$dir/initdb" ] && { echo "$dir"; return; }
  fi
  for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5 -n -r); do
    [ -x "$dir/initdb" ] && { echo "$dir"; return; }
  done
  command -v initdb >/dev/null 2>&1 && { dirname "$(command -v initdb)"; return; }
  return 1
}

ensure_installed() {
  find_bindir >/dev/null && return
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "postgres-test: installing PostgreSQL (apt-get install postgresql)" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
  fi
  find_bindir >/dev/null || die "PostgreSQL server binaries not found: apt-get install -y postgresql"
}

# Runs a server binary as the unprivileged user: PostgreSQL refuses to run as root.
as_db_user() {
  if [ "$(id -u)" = 0 ]; then
    id "$os_user" >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin "$os_user"
    runuser -u "$os_user" -- "$@"
  else
    "$@"
  fi
}

port_is_free() {
  ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

pick_port() {
  local port
  for _ in $(seq 1 200); do
    port=$(( 20000 + RANDOM % 40000 ))
    port_is_free "$port" && { echo "$port"; return; }
  done
  die "no free port found on 127.0.0.1"
}

is_running() {
  local bindir=$1
  [ -f "$data_dir/PG_VERSION" ] && as_db_user "$bindir/pg_ctl" -D "$data_dir" status >/dev/null 2>&1
}

url() {
  [ -f "$port_file" ] || die "not started (run: $0 start)"
  echo "postgres://$db_user@127.0.0.1:$(cat "$port_file")/$db_name"
}

start() {
  ensure_installed
  local bindir port
  bindir=$(find_bindir)
  mkdir -p "$base_dir" "$socket_dir"
  if [ "$(id -u)" = 0 ]; then
    as_db_user true  # creates the user if needed
    chown "$os_user" "$base_dir" "$socket_dir"
    [ -d "$data_dir" ] && chown -R "$os_user" "$data_dir"
  fi
  if [ ! -f "$data_dir/PG_VERSION" ]; then
    rm -rf "$data_dir"
    # trust on loopback only: a throwaway test server, reachable from this machine alone.
    as_db_user "$bindir/initdb" -D "$data_dir" -U "$db_user" --auth=trust -E UTF8 --locale=C >"$base_dir/initdb.log" 2>&1 \
      || { cat "$base_dir/initdb.log" >&2; die "initdb failed"; }
  fi
  if is_running "$bindir"; then
    print_env
    return
  fi
  if [ -f "$port_file" ] && port_is_free "$(cat "$port_file")"; then
    port=$(cat "$port_file")  # halted: clients reconnect to where it was
  else
    port=$(pick_port)
  fi
  : >"$log_file"
  [ "$(id -u)" = 0 ] && chown "$os_user" "$log_file"
  # fsync and synchronous_commit stay on (the defaults): the durability tests kill the
  # control plane and rely on committed transactions being on disk.
  as_db_user "$bindir/pg_ctl" -D "$data_dir" -l "$log_file" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$socket_dir -c max_connections=300" \
    start >/dev/null || { cat "$log_file" >&2; die "the server did not start"; }
  echo "$port" >"$port_file"
  if ! as_db_user "$bindir/psql" -h 127.0.0.1 -p "$port" -U "$db_user" -d postgres -tAc \
      "SELECT 1 FROM pg_database WHERE datname = '$db_name'" | grep -q 1; then
    as_db_user "$bindir/createdb" -h 127.0.0.1 -p "$port" -U "$db_user" "$db_name"
  fi
  print_env
}

print_env() {
  echo "export DATABASE_URL=$(url)"
  echo "export CERTBIND_TEST_POSTGRES_URL=$(url)"
}

halt() {
  local bindir
  bindir=$(find_bindir) || return 0
  if is_running "$bindir"; then
    as_db_user "$bindir/pg_ctl" -D "$data_dir" -m fast -w stop >/dev/null
  fi
}

stop() {
  halt
  rm -f "$port_file"
}

case "${1:-}" in
  start) start ;;
  url) url ;;
  stop) stop ;;
  halt) halt ;;
  clean) stop; rm -rf "$base_dir" ;;
  run)
    shift
    [ $# -gt 0 ] || die "usage: $0 run CMD [ARGS…]"
    start >/dev/null
    trap stop EXIT
    # Not DATABASE_URL: tests of the SQLite default must not be pointed at this server.
    export CERTBIND_TEST_POSTGRES_URL
    CERTBIND_TEST_POSTGRES_URL=$(url)
    echo "postgres-test: $CERTBIND_TEST_POSTGRES_URL" >&2
    set +e
    "$@"
    status=$?
    set -e
    exit $status
    ;;
  *) die "usage: $0 start|url|stop|halt|clean|run CMD…" ;;
esac
