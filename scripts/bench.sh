#!/usr/bin/env bash
# Every benchmark, one after another (the machine has two cores: nothing runs beside them),
# with a throw-away PostgreSQL server for the control plane's storage figures. Each bench
# prints its own Markdown summary, with ratios against a baseline measured in the same run;
# they are collected into target/bench-report.md, the full output into target/bench-output.log.
set -euo pipefail
cd "$(dirname "$0")/.."

pg_env=$(./scripts/postgres-test.sh start)
eval "$pg_env"
trap './scripts/postgres-test.sh stop >/dev/null 2>&1 || true' EXIT

report=target/bench-report.md
log=target/bench-output.log
mkdir -p target
{
  echo "# certbind benchmark report"
  echo
  echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) on $(nproc) cores, $(uname -m), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)."
  echo
} > "$report"
: > "$log"

run() {
  local package=$1 bench=$2
  shift 2
  echo "bench: $package / $bench"
  # Criterion's own lines (if any) go to the log only; the summary tables go to the report.
  cargo bench -p "$package" --bench "$bench" "$@" 2>>"$log" | tee -a "$log" \
    | grep -v -E '^(Benchmarking|Gnuplot|Found [0-9]+ outliers|  [0-9]+ \((low|high) (mild|severe)\)|\s+time:|\s+thrpt:|\s+change:|No change|Change within|Performance has)' \
    >> "$report"
  echo >> "$report"
}

run certbind-tests filter
run certbind-tests authz
run certbind-tests snapshot_load
run certbind-shared snapshot --features testing
run certbind-shared crl --features testing
run certbind-shared revocations --features testing
# The revocation bench drives a real control plane started by scripts/devstack: an admin's
# revoke (the baseline), then CRL uploads of the card's issuing CA, each timed to the refusal.
./scripts/dev-setup.sh >>"$log" 2>&1
cargo build -q --release -p certbind-control-plane 2>>"$log"
run certbind-tests revocation
# Ten thousand proxies long-polling one control plane (the optimised build), answered by revokes.
echo "bench: fleet of long-polls"
rm -rf target/bench-fleet
(cd scripts && CERTBIND_BIN=../target/release/certbind ../.venv/bin/python -m devstack.bench_fleet ../target/bench-fleet) \
  2>>"$log" | tee -a "$log" >> "$report"
echo >> "$report"
# Three replicas on one PostgreSQL behind the Envoy balancer example: a replica killed, and
# binds with three replicas against one.
echo "bench: replicas behind the balancer"
rm -rf target/bench-failover
(cd scripts && CERTBIND_BIN=../target/release/certbind ../.venv/bin/python -m devstack.bench_failover ../target/bench-failover) \
  2>>"$log" | tee -a "$log" >> "$report"
echo >> "$report"
# The proof-of-possession micro-benchmarks are criterion's own output, kept verbatim.
echo "bench: certbind-shared / pop"
{
  echo "## Proof of possession, shared crate alone (criterion)"
  echo
  echo '```'
  cargo bench -p certbind-shared --bench pop --features testing 2>>"$log" | tee -a "$log" | grep -E 'time:|^pop/'
  echo '```'
  echo
} >> "$report"
run certbind-control-plane snapshot
run certbind-control-plane api
run certbind-control-plane crl
# Through a real Envoy, driven by wrk (its own report, then appended here).
echo "bench: end to end through Envoy"
./scripts/bench-e2e.sh 2>&1 | tee -a "$log"
cat target/bench-report-e2e.md >> "$report"
echo "bench: report in $report"
