#!/usr/bin/env bash
# Every Rust test of the workspace, with a real PostgreSQL server for the control plane's
# storage tests (started here, stopped on exit). SoftHSM2 tokens are made by the tests
# themselves in temporary directories.
set -euo pipefail
cd "$(dirname "$0")/.."

pg_env=$(./scripts/postgres-test.sh start)
eval "$pg_env"
trap './scripts/postgres-test.sh stop >/dev/null 2>&1 || true' EXIT
: "${CERTBIND_TEST_POSTGRES_URL:?postgres-test.sh did not provide CERTBIND_TEST_POSTGRES_URL}"
echo "test: PostgreSQL at ${CERTBIND_TEST_POSTGRES_URL%%@*}@…"

# No crate's files import one another in a circle, and none start to (scripts/check-imports.py).
python3 scripts/check-imports.py shared/src control-plane/src authz/src tests/src filter/src native/src

cargo test --workspace --no-fail-fast
