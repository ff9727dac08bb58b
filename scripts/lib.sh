# shellcheck shell=bash
# Shared helpers for scripts/test.sh and scripts/demo.sh. Sourced, never run:
# it sets no shell options of its own so the caller's `set -euo pipefail`
# stays in charge.
#
# Why this exists: CI and every new machine start from "Rust toolchain only",
# and nothing installed by hand survives a machine change, so the scripts
# themselves have to install what the build needs.

# Resolve paths from this file rather than $PWD so the scripts work no matter
# where they are called from.
DBKEEPER_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DBKEEPER_SERVICES="$DBKEEPER_ROOT/scripts/services.sh"

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'ERROR: %s\n' "$*" >&2; exit 1; }

# Install Debian packages when we can (root); otherwise tell the user exactly
# what is missing instead of failing later with a confusing build error.
# `apt-get update` is slow and usually unnecessary, so only retry with it
# when the plain install fails (stale or empty package lists).
apt_install() {
    if [[ $EUID -ne 0 ]]; then
        die "missing: $* (install it, e.g. 'sudo apt-get install -y $*')"
    fi
    log "installing $* with apt-get"
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y "$@" >&2; then
        DEBIAN_FRONTEND=noninteractive apt-get update >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y "$@" >&2
    fi
}

# Everything `cargo build` needs beyond the toolchain itself.
ensure_build_prereqs() {
    # flate2's zlib-ng backend builds zlib-ng with cmake.
    if ! command -v cmake >/dev/null 2>&1; then
        apt_install cmake
    fi
    # A C compiler is needed by the same build script; the Rust toolchain
    # image normally has one, but a bare machine may not.
    if ! command -v cc >/dev/null 2>&1; then
        apt_install build-essential
    fi
}

# rustfmt/clippy ship with rustup's default profile but not the minimal one.
ensure_rust_components() {
    local comp
    for comp in "$@"; do
        local probe=$comp
        [[ $comp == rustfmt ]] && probe=fmt
        if ! cargo "$probe" --version >/dev/null 2>&1; then
            command -v rustup >/dev/null 2>&1 || die "cargo $probe is missing and rustup is not available"
            log "adding rust component $comp"
            rustup component add "$comp" >&2
        fi
    done
}

# Start the test services and export their URLs, remembering which ones were
# NOT already running: only those are ours to stop afterwards, so a developer
# who started the services by hand (to keep them warm) does not lose them.
DBKEEPER_STARTED_SERVICES=()
services_start_tracked() {
    local svc env_out
    for svc in pg pgtls mongo s3 s3auth azurite; do
        if ! "$DBKEEPER_SERVICES" status "$svc" >/dev/null 2>&1; then
            DBKEEPER_STARTED_SERVICES+=("$svc")
        fi
    done
    env_out=$("$DBKEEPER_SERVICES" start)
    eval "$env_out"
    export DBKEEPER_TEST_PG_URL DBKEEPER_TEST_MONGO_URL DBKEEPER_TEST_PG_TLS_URL DBKEEPER_TEST_PG_TLS_CERTS \
        DBKEEPER_TEST_S3_ENDPOINT DBKEEPER_TEST_S3_AUTH_ENDPOINT DBKEEPER_TEST_S3_AUTH_BUCKET \
        DBKEEPER_TEST_S3_AUTH_ALLOWED DBKEEPER_TEST_S3_AUTH_DENIED \
        DBKEEPER_TEST_AZURITE_URL DBKEEPER_TEST_AZURITE_CONTAINER
}

# Meant for an EXIT trap. DBKEEPER_KEEP_SERVICES=1 keeps them for the next
# run (saves the cluster start-up and the venv check).
services_stop_tracked() {
    if [[ ${DBKEEPER_KEEP_SERVICES:-0} == 1 ]]; then
        if ((${#DBKEEPER_STARTED_SERVICES[@]})); then
            log "DBKEEPER_KEEP_SERVICES=1: leaving ${DBKEEPER_STARTED_SERVICES[*]} running (scripts/services.sh stop)"
        fi
        return 0
    fi
    if ((${#DBKEEPER_STARTED_SERVICES[@]})); then
        "$DBKEEPER_SERVICES" stop "${DBKEEPER_STARTED_SERVICES[@]}" || true
    fi
}
