#!/usr/bin/env bash
# The project's test command (README; CI runs it through .ci/run).
#
#   scripts/test.sh [ARGS...]   ARGS go to the test runner, e.g. a name filter
#
# Works on a fresh machine that has only the Rust toolchain: it installs the
# build prerequisites, starts the real PostgreSQL/MongoDB-compatible services
# (scripts/services.sh) and runs every test against them. Tests that need a
# service fail rather than skip when it is unreachable (docs/architecture.md), so the
# services must be up before the first test binary runs.
#
# Environment:
#   DBKEEPER_TEST_PG_URL / DBKEEPER_TEST_MONGO_URL  use existing servers
#   DBKEEPER_KEEP_SERVICES=1  leave the services running afterwards (faster
#                             reruns; stop with scripts/services.sh stop)
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"
cd "$DBKEEPER_ROOT"

ensure_build_prereqs
ensure_rust_components rustfmt clippy

# Cheap static checks first: no point spending minutes on tests (and on
# starting servers) when formatting or lints already fail the run.
log "cargo fmt --check"
cargo fmt --check
log "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets -- -D warnings

# Installed before starting anything, so a start that fails half-way still
# stops whatever did come up.
trap services_stop_tracked EXIT
log "starting test services"
services_start_tracked
log "DBKEEPER_TEST_PG_URL=$DBKEEPER_TEST_PG_URL"
log "DBKEEPER_TEST_MONGO_URL=$DBKEEPER_TEST_MONGO_URL"

# nextest runs each test in its own process (parallel, isolated, clear
# per-test timing); plain cargo test is the fallback so a bare toolchain
# still works. --no-fail-fast: one run should report every failure.
# Not exec'd: the EXIT trap has to run afterwards; set -e carries a failing
# runner's status out as this script's exit status.
if cargo nextest --version >/dev/null 2>&1; then
    log "cargo nextest run --no-fail-fast $*"
    cargo nextest run --no-fail-fast "$@"
else
    log "cargo test --no-fail-fast $* (cargo-nextest not installed)"
    cargo test --no-fail-fast "$@"
fi
