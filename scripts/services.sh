#!/usr/bin/env bash
# Bring up the real services dbkeeper's tests run against: a private
# PostgreSQL cluster, a second one with TLS (pgtls), a MongoDB-compatible
# server (SecantusDB), an S3 API server (moto), a second moto that checks
# credentials and permissions (s3auth) and Azure's blob emulator (azurite), all
# on loopback, all private to this checkout.
#
#   scripts/services.sh start  [SERVICE...]   start (idempotent), print exports
#   scripts/services.sh stop   [SERVICE...]   stop what this script started
#   scripts/services.sh env                   print eval-able exports
#   scripts/services.sh status [SERVICE...]   report; exit 0 only if all up
#
# SERVICE is pg, pgtls, mongo, s3, s3auth or azurite; none means all of them.
#
# Typical use:  eval "$(scripts/services.sh start)"
# Only the export lines go to stdout; progress and errors go to stderr, so the
# command substitution above stays clean.
#
# Environment:
#   DBKEEPER_TEST_PG_URL     use this PostgreSQL instead of a private cluster
#   DBKEEPER_TEST_MONGO_URL  use this MongoDB instead of SecantusDB
#   DBKEEPER_TEST_PG_TLS_URL and DBKEEPER_TEST_PG_TLS_CERTS
#                            use this TLS PostgreSQL and the directory with its
#                            ca.crt, other-ca.crt, client.crt, client.key
#   SECANTUS_SERVER=rs       use the (faster, built from source) Rust server
#   DBKEEPER_TEST_S3_ENDPOINT  use this S3 API endpoint instead of moto_server
#   DBKEEPER_SERVICES_PG_PORT / DBKEEPER_SERVICES_PG_TLS_PORT /
#   DBKEEPER_SERVICES_MONGO_PORT / DBKEEPER_SERVICES_S3_PORT /
#   DBKEEPER_SERVICES_S3_AUTH_PORT / DBKEEPER_SERVICES_AZURITE_PORT
#                            override the ports (55432 / 55433 / 57017 / 59000 /
#                            59001 / 59002),
#                            e.g. to run two checkouts side by side
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
SERVICES_DIR="$REPO_ROOT/target/services"

# Fixed, unusual ports: they keep clear of a system PostgreSQL (5432) or
# mongod (27017) the machine may already run, and being fixed lets `env`
# answer without anything running.
PG_PORT=${DBKEEPER_SERVICES_PG_PORT:-55432}
PG_TLS_PORT=${DBKEEPER_SERVICES_PG_TLS_PORT:-55433}
MONGO_PORT=${DBKEEPER_SERVICES_MONGO_PORT:-57017}
PG_URL_LOCAL="postgres://postgres@127.0.0.1:$PG_PORT/postgres"
MONGO_URL_LOCAL="mongodb://127.0.0.1:$MONGO_PORT"
# "localhost", not 127.0.0.1: the test server certificate names only that host.
PG_TLS_URL_LOCAL="postgres://postgres@localhost:$PG_TLS_PORT/postgres"

S3_PORT=${DBKEEPER_SERVICES_S3_PORT:-59000}
S3_ENDPOINT_LOCAL="http://127.0.0.1:$S3_PORT"

# The S3 API server: moto's, in memory, accepting any credentials.
MOTO_VERSION=5.2.5
MOTO_VENV="$SERVICES_DIR/moto-venv"
MOTO_LOG="$SERVICES_DIR/moto.log"
MOTO_PID="$SERVICES_DIR/moto.pid"

# The credential-checking S3 server: the same moto with IAM enforced (every request's SigV4
# signature is checked against IAM users, and their policies decide what is allowed). It is
# set up while still open (a bucket, a user allowed s3:* and a user allowed nothing), then
# closed; the keys of both users go to $S3_AUTH_KEYS for `env` to export.
S3_AUTH_PORT=${DBKEEPER_SERVICES_S3_AUTH_PORT:-59001}
S3_AUTH_ENDPOINT_LOCAL="http://127.0.0.1:$S3_AUTH_PORT"
S3_AUTH_BUCKET=dbkeeper-auth
S3_AUTH_LOG="$SERVICES_DIR/moto-auth.log"
S3_AUTH_PID="$SERVICES_DIR/moto-auth.pid"
S3_AUTH_KEYS="$SERVICES_DIR/moto-auth.keys"

# Azure's blob storage emulator from npm, in memory, with its well-known development account
# (devstoreaccount1); the script creates one container for the tests.
AZURITE_VERSION=3.35.0
AZURITE_PORT=${DBKEEPER_SERVICES_AZURITE_PORT:-59002}
AZURITE_URL_LOCAL="http://127.0.0.1:$AZURITE_PORT"
AZURITE_CONTAINER=dbkeeper
AZURITE_DIR="$SERVICES_DIR/azurite"
AZURITE_LOG="$SERVICES_DIR/azurite.log"
AZURITE_PID="$SERVICES_DIR/azurite.pid"

SECANTUS_PY_VERSION=0.7.0b3
SECANTUS_RS_VERSION=0.5.3-beta.193
SECANTUS_VENV="$SERVICES_DIR/secantus-venv"
SECANTUS_CARGO_ROOT="$SERVICES_DIR/cargo"
SECANTUS_RS_DATA="$SERVICES_DIR/secantus-rs-data"
SECANTUS_LOG="$SERVICES_DIR/secantus.log"
SECANTUS_PID="$SERVICES_DIR/secantus.pid"
# How long a server may take to accept connections before we call it failed.
START_TIMEOUT=60

log() { printf '[services] %s\n' "$*" >&2; }
die() { printf '[services] ERROR: %s\n' "$*" >&2; exit 1; }

# A service that did not come up must say which, where its log is, and what
# the log says: the caller is often CI, where nobody can look afterwards.
die_with_log() {
    local what=$1 logfile=$2
    printf '[services] ERROR: %s did not come up; log: %s\n' "$what" "$logfile" >&2
    if [[ -f $logfile ]]; then
        printf '[services] ---- last lines of %s ----\n' "$logfile" >&2
        tail -n 40 "$logfile" >&2 || true
        printf '[services] ---- end of log ----\n' >&2
    fi
    exit 1
}

is_root() { [[ $EUID -eq 0 ]]; }

# Same policy as scripts/lib.sh (kept separate so this script stands alone):
# only root can install; `apt-get update` only when the plain install fails.
apt_install() {
    is_root || die "missing: $* (install it, e.g. 'sudo apt-get install -y $*')"
    log "installing $* with apt-get"
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y "$@" >&2; then
        DEBIAN_FRONTEND=noninteractive apt-get update >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y "$@" >&2
    fi
}

# True if something accepts TCP connections on 127.0.0.1:$1. bash's /dev/tcp
# needs no client tools; the subshell closes the socket again at once.
port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# A URL counts as external only if it differs from the one we would serve:
# callers typically `eval "$(services.sh start)"`, after which our own URLs
# are in the environment too, and a later `stop` must still stop our servers.
pg_external() { [[ -n ${DBKEEPER_TEST_PG_URL:-} && $DBKEEPER_TEST_PG_URL != "$PG_URL_LOCAL" ]]; }
pgtls_external() { [[ -n ${DBKEEPER_TEST_PG_TLS_URL:-} && $DBKEEPER_TEST_PG_TLS_URL != "$PG_TLS_URL_LOCAL" ]]; }
mongo_external() { [[ -n ${DBKEEPER_TEST_MONGO_URL:-} && $DBKEEPER_TEST_MONGO_URL != "$MONGO_URL_LOCAL" ]]; }
s3_external() { [[ -n ${DBKEEPER_TEST_S3_ENDPOINT:-} && $DBKEEPER_TEST_S3_ENDPOINT != "$S3_ENDPOINT_LOCAL" ]]; }

# printf %q makes the values safe to eval even for externally supplied URLs.
print_env() {
    # Only what something reads: tests/common and tests/pg_tls.rs read these. dbkeeper itself
    # reads DBKEEPER_PG_URL / DBKEEPER_MONGO_URL, which name an application database: point
    # them at one of your own on these servers.
    printf '# read by the test suite; dbkeeper itself reads DBKEEPER_PG_URL and DBKEEPER_MONGO_URL\n'
    printf 'export DBKEEPER_TEST_PG_URL=%q\n' "${DBKEEPER_TEST_PG_URL:-$PG_URL_LOCAL}"
    printf 'export DBKEEPER_TEST_MONGO_URL=%q\n' "${DBKEEPER_TEST_MONGO_URL:-$MONGO_URL_LOCAL}"
    printf 'export DBKEEPER_TEST_PG_TLS_URL=%q\n' "${DBKEEPER_TEST_PG_TLS_URL:-$PG_TLS_URL_LOCAL}"
    printf 'export DBKEEPER_TEST_PG_TLS_CERTS=%q\n' "${DBKEEPER_TEST_PG_TLS_CERTS:-$PGTLS_CERTS}"
    printf 'export DBKEEPER_TEST_S3_ENDPOINT=%q\n' "${DBKEEPER_TEST_S3_ENDPOINT:-$S3_ENDPOINT_LOCAL}"
    # The credential-checking server: endpoint, its bucket, and ACCESS_KEY_ID:SECRET of a
    # user allowed everything and of one allowed nothing (dummy keys of a test server).
    printf 'export DBKEEPER_TEST_S3_AUTH_ENDPOINT=%q\n' "$S3_AUTH_ENDPOINT_LOCAL"
    printf 'export DBKEEPER_TEST_S3_AUTH_BUCKET=%q\n' "$S3_AUTH_BUCKET"
    if [[ -r $S3_AUTH_KEYS ]]; then
        local allowed denied
        { read -r allowed && read -r denied; } <"$S3_AUTH_KEYS" || true
        printf 'export DBKEEPER_TEST_S3_AUTH_ALLOWED=%q\n' "$allowed"
        printf 'export DBKEEPER_TEST_S3_AUTH_DENIED=%q\n' "$denied"
    fi
    # Azure's emulator (object_store reads AZURITE_BLOB_STORAGE_URL when told to use it).
    printf 'export DBKEEPER_TEST_AZURITE_URL=%q\n' "$AZURITE_URL_LOCAL"
    printf 'export DBKEEPER_TEST_AZURITE_CONTAINER=%q\n' "$AZURITE_CONTAINER"
}

# ---------------------------------------------------------------- PostgreSQL

# The server refuses to run as root, and so do initdb and pg_ctl. As root we
# therefore own the cluster by the `postgres` user. The cluster normally lives
# in target/services/pg, but `postgres` must be able to reach it: in a
# checkout under a private home (/root is 0700) it cannot, so then the cluster
# goes to a per-checkout directory under /tmp instead. The choice depends only
# on the checkout's path, so start, stop and status always agree on it.
pg_base_dir() {
    if is_root && id postgres >/dev/null 2>&1 &&
        ! runuser -u postgres -- test -x "$REPO_ROOT" 2>/dev/null; then
        local key
        key=$(printf '%s' "$REPO_ROOT" | cksum | cut -d' ' -f1)
        printf '%s\n' "${TMPDIR:-/tmp}/dbkeeper-pg-$key"
    else
        printf '%s\n' "$SERVICES_DIR/pg"
    fi
}

PG_BASE=$(pg_base_dir)
PG_DATA="$PG_BASE/data"
PG_LOG="$PG_BASE/postgres.log"

# Run a PostgreSQL tool as the cluster's owner. The tools also call getcwd()
# and fail when the caller's directory is unreadable to them (e.g. /root), so
# run them from the cluster's own directory.
as_pg_owner() {
    if is_root; then
        (cd "$PG_BASE" && runuser -u postgres -- "$@")
    else
        (cd "$PG_BASE" && "$@")
    fi
}

# Pick initdb/pg_ctl. An existing cluster can only be run by its own major
# version, so prefer that; otherwise the newest Debian-packaged version, then
# whatever is on PATH (non-Debian developer machines).
find_pg_bin() {
    local want="" dir
    if [[ -f $PG_DATA/PG_VERSION ]]; then
        want=$(<"$PG_DATA/PG_VERSION")
        if [[ -x /usr/lib/postgresql/$want/bin/pg_ctl ]]; then
            printf '%s\n' "/usr/lib/postgresql/$want/bin"
            return 0
        fi
    fi
    dir=$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -type d -name bin 2>/dev/null | sort -V | tail -n 1 || true)
    if [[ -n $dir && -x $dir/initdb && -x $dir/pg_ctl ]]; then
        printf '%s\n' "$dir"
        return 0
    fi
    if command -v pg_ctl >/dev/null 2>&1 && command -v initdb >/dev/null 2>&1; then
        dirname "$(command -v pg_ctl)"
        return 0
    fi
    return 1
}

pg_bin_or_install() {
    local bin
    if ! bin=$(find_pg_bin); then
        apt_install postgresql
        bin=$(find_pg_bin) || die "postgresql installed but no initdb/pg_ctl found under /usr/lib/postgresql/*/bin"
    fi
    if [[ -f $PG_DATA/PG_VERSION ]]; then
        local have want
        want=$(<"$PG_DATA/PG_VERSION")
        # "pg_ctl (PostgreSQL) 15.10 (Debian ...)" -> 15
        have=$("$bin/pg_ctl" --version | awk '{ split($3, v, "."); print v[1] }')
        [[ $have == "$want" ]] ||
            die "PostgreSQL cluster in $PG_DATA is version $want but only $have binaries were found; remove $PG_BASE to recreate it"
    fi
    printf '%s\n' "$bin"
}

pg_running() {
    [[ -f $PG_DATA/PG_VERSION ]] || return 1
    local bin
    bin=$(find_pg_bin) || return 1
    as_pg_owner "$bin/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1
}

pg_start() {
    if pg_external; then
        log "PostgreSQL: using DBKEEPER_TEST_PG_URL (nothing started)"
        return 0
    fi
    local bin
    bin=$(pg_bin_or_install)

    if is_root && ! id postgres >/dev/null 2>&1; then
        # Binaries without Debian's package (which would have created the
        # user): make the unprivileged account the server insists on.
        log "creating system user postgres"
        useradd --system --no-create-home --shell /usr/sbin/nologin postgres
    fi
    # The postgres user may have only just appeared (package install above),
    # which can change where the cluster has to live.
    PG_BASE=$(pg_base_dir)
    PG_DATA="$PG_BASE/data"
    PG_LOG="$PG_BASE/postgres.log"

    mkdir -p "$PG_BASE"
    # The log is appended to both by us (initdb output) and by the server,
    # which runs as postgres: create it up front with the right owner.
    touch "$PG_LOG"
    if is_root; then
        chown postgres: "$PG_BASE" "$PG_LOG"
    fi

    if as_pg_owner "$bin/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1; then
        log "PostgreSQL: already running on port $PG_PORT ($PG_DATA)"
        return 0
    fi

    if [[ ! -f $PG_DATA/PG_VERSION ]]; then
        # A data dir without PG_VERSION is a half-finished initdb; it is ours
        # alone, so start over rather than ask.
        rm -rf "$PG_DATA"
        log "PostgreSQL: initdb $PG_DATA ($bin)"
        # C locale: identical sorting on every machine, and no dependency on
        # which locales happen to be generated.
        if ! as_pg_owner "$bin/initdb" -D "$PG_DATA" --username=postgres --auth=trust \
            --encoding=UTF8 --locale=C >>"$PG_LOG" 2>&1; then
            die_with_log "PostgreSQL initdb" "$PG_LOG"
        fi
        # Our settings live in their own file, rewritten on every start, so
        # changing them here applies to existing clusters too.
        printf "\ninclude_if_exists = 'dbkeeper-test.conf'\n" >>"$PG_DATA/postgresql.conf"
    fi

    # The unix socket goes next to the data dir, away from the system
    # cluster's /var/run/postgresql. Socket paths are limited to 107 bytes;
    # in a deeply nested checkout use TCP only ('' = no unix socket; pg_ctl
    # then checks readiness over TCP).
    local sockdir=$PG_BASE
    if ((${#sockdir} + 20 > 107)); then
        sockdir=""
    fi
    # A throwaway test cluster: durability settings off for speed.
    cat >"$PG_DATA/dbkeeper-test.conf" <<EOF
# Written by scripts/services.sh on every start; edit that script instead.
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$sockdir'
max_connections = 200
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
    if is_root; then
        chown postgres: "$PG_DATA/dbkeeper-test.conf"
    fi

    if port_open "$PG_PORT"; then
        die "PostgreSQL: port $PG_PORT is already in use by another process (set DBKEEPER_TEST_PG_URL to use an existing server, or DBKEEPER_SERVICES_PG_PORT)"
    fi

    log "PostgreSQL: starting on 127.0.0.1:$PG_PORT (log: $PG_LOG)"
    if ! as_pg_owner "$bin/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -w -t "$START_TIMEOUT" start >&2; then
        die_with_log "PostgreSQL" "$PG_LOG"
    fi
    # pg_ctl -w may have checked over the unix socket; the tests use TCP.
    if ! "$bin/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" -t 10; then
        die_with_log "PostgreSQL (TCP 127.0.0.1:$PG_PORT)" "$PG_LOG"
    fi
}

pg_stop() {
    if pg_external; then
        log "PostgreSQL: external (DBKEEPER_TEST_PG_URL), not stopping"
        return 0
    fi
    if ! pg_running; then
        log "PostgreSQL: not running"
        return 0
    fi
    local bin
    bin=$(find_pg_bin)
    log "PostgreSQL: stopping"
    # fast = disconnect clients and stop now; a test cluster has nothing to
    # flush that we care about.
    as_pg_owner "$bin/pg_ctl" -D "$PG_DATA" -m fast -w stop >&2
}

pg_status() {
    if pg_external; then
        echo "pg: external (DBKEEPER_TEST_PG_URL)"
        return 0
    fi
    if pg_running; then
        echo "pg: running on 127.0.0.1:$PG_PORT (data $PG_DATA, log $PG_LOG)"
    else
        echo "pg: not running"
        return 1
    fi
}

# ------------------------------------------------------- PostgreSQL with TLS

# A second private cluster with ssl=on, for sslmode=verify-ca/verify-full and
# client certificates. Its certificates come from a throwaway CA made here
# with openssl whenever the cluster is created:
#   ca.crt            the CA that signed the server and client certificates
#   other-ca.crt      an unrelated CA (the "wrong CA" for tests)
#   server.crt/.key   valid for the host name "localhost" only, so 127.0.0.1
#                     is a wrong host name for sslmode=verify-full
#   client.crt/.key   CN=dbkeeper_cert: the role that must log in with a
#                     client certificate (pg_hba `cert`); other roles: trust
PGTLS_BASE="${PG_BASE}-tls"
PGTLS_DATA="$PGTLS_BASE/data"
PGTLS_LOG="$PGTLS_BASE/postgres.log"
PGTLS_CERTS="$PGTLS_BASE/certs"

as_pgtls_owner() {
    if is_root; then
        (cd "$PGTLS_BASE" && runuser -u postgres -- "$@")
    else
        (cd "$PGTLS_BASE" && "$@")
    fi
}

pgtls_running() {
    [[ -f $PGTLS_DATA/PG_VERSION ]] || return 1
    local bin
    bin=$(find_pg_bin) || return 1
    as_pgtls_owner "$bin/pg_ctl" -D "$PGTLS_DATA" status >/dev/null 2>&1
}

# One certificate signed by ca.crt: $1 = file stem, $2 = subject, $3 = its
# x509v3 extensions (names and usage).
pgtls_sign() {
    local stem=$1 subject=$2 ext=$3 dir=$PGTLS_CERTS
    openssl req -new -nodes -newkey rsa:2048 -keyout "$dir/$stem.key" -subj "$subject" \
        -out "$dir/$stem.csr" 2>/dev/null || return 1
    printf '%s\n' "$ext" >"$dir/$stem.ext"
    openssl x509 -req -in "$dir/$stem.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -CAcreateserial \
        -days 3650 -sha256 -extfile "$dir/$stem.ext" -out "$dir/$stem.crt" 2>/dev/null || return 1
    rm -f "$dir/$stem.csr" "$dir/$stem.ext"
    chmod 600 "$dir/$stem.key"
}

pgtls_make_certs() {
    command -v openssl >/dev/null 2>&1 || apt_install openssl
    rm -rf "$PGTLS_CERTS"
    mkdir -p "$PGTLS_CERTS"
    local ca
    for ca in ca other-ca; do
        openssl req -x509 -new -nodes -newkey rsa:2048 -days 3650 -sha256 \
            -subj "/CN=dbkeeper test $ca" -keyout "$PGTLS_CERTS/$ca.key" \
            -out "$PGTLS_CERTS/$ca.crt" 2>/dev/null || die "openssl could not make the test $ca"
    done
    pgtls_sign server "/CN=localhost" "subjectAltName=DNS:localhost
keyUsage=digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth" || die "openssl could not sign the test server certificate"
    pgtls_sign client "/CN=dbkeeper_cert" "keyUsage=digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth" || die "openssl could not sign the test client certificate"
    # The server reads its own copies: it insists on owning its key.
    cp "$PGTLS_CERTS/server.crt" "$PGTLS_CERTS/server.key" "$PGTLS_CERTS/ca.crt" "$PGTLS_DATA/"
    chmod 600 "$PGTLS_DATA/server.key"
    if is_root; then
        chown postgres: "$PGTLS_DATA/server.crt" "$PGTLS_DATA/server.key" "$PGTLS_DATA/ca.crt"
    fi
}

pgtls_start() {
    if pgtls_external; then
        log "PostgreSQL TLS: using DBKEEPER_TEST_PG_TLS_URL (nothing started)"
        return 0
    fi
    local bin
    bin=$(pg_bin_or_install)
    mkdir -p "$PGTLS_BASE"
    touch "$PGTLS_LOG"
    if is_root; then
        chown postgres: "$PGTLS_BASE" "$PGTLS_LOG"
    fi
    if as_pgtls_owner "$bin/pg_ctl" -D "$PGTLS_DATA" status >/dev/null 2>&1; then
        log "PostgreSQL TLS: already running on port $PG_TLS_PORT ($PGTLS_DATA)"
        return 0
    fi
    if [[ ! -f $PGTLS_DATA/PG_VERSION || ! -f $PGTLS_CERTS/client.key ]]; then
        rm -rf "$PGTLS_DATA"
        log "PostgreSQL TLS: initdb $PGTLS_DATA ($bin)"
        if ! as_pgtls_owner "$bin/initdb" -D "$PGTLS_DATA" --username=postgres --auth=trust \
            --encoding=UTF8 --locale=C >>"$PGTLS_LOG" 2>&1; then
            die_with_log "PostgreSQL TLS initdb" "$PGTLS_LOG"
        fi
        printf "\ninclude_if_exists = 'dbkeeper-test.conf'\n" >>"$PGTLS_DATA/postgresql.conf"
        pgtls_make_certs
        # TLS only. dbkeeper_cert must present a certificate signed by ca.crt
        # whose CN is its name; everyone else is trusted.
        cat >"$PGTLS_DATA/pg_hba.conf" <<'EOF'
# Written by scripts/services.sh; edit that script instead.
hostssl all dbkeeper_cert 127.0.0.1/32 cert
hostssl all all           127.0.0.1/32 trust
EOF
        if is_root; then
            chown postgres: "$PGTLS_DATA/pg_hba.conf"
        fi
    fi
    cat >"$PGTLS_DATA/dbkeeper-test.conf" <<EOF
# Written by scripts/services.sh on every start; edit that script instead.
listen_addresses = '127.0.0.1'
port = $PG_TLS_PORT
unix_socket_directories = ''
max_connections = 50
fsync = off
synchronous_commit = off
full_page_writes = off
ssl = on
ssl_cert_file = 'server.crt'
ssl_key_file = 'server.key'
ssl_ca_file = 'ca.crt'
EOF
    if is_root; then
        chown postgres: "$PGTLS_DATA/dbkeeper-test.conf"
    fi
    if port_open "$PG_TLS_PORT"; then
        die "PostgreSQL TLS: port $PG_TLS_PORT is already in use by another process (set DBKEEPER_SERVICES_PG_TLS_PORT)"
    fi
    log "PostgreSQL TLS: starting on 127.0.0.1:$PG_TLS_PORT (log: $PGTLS_LOG)"
    if ! as_pgtls_owner "$bin/pg_ctl" -D "$PGTLS_DATA" -l "$PGTLS_LOG" -w -t "$START_TIMEOUT" start >&2; then
        die_with_log "PostgreSQL TLS" "$PGTLS_LOG"
    fi
    # The role that can only log in with the client certificate (idempotent).
    if ! "$bin/psql" -X -q -v ON_ERROR_STOP=1 \
        "host=127.0.0.1 port=$PG_TLS_PORT user=postgres dbname=postgres sslmode=require" \
        -c "DO \$\$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'dbkeeper_cert') THEN CREATE ROLE dbkeeper_cert LOGIN SUPERUSER; END IF; END \$\$" >&2; then
        die_with_log "PostgreSQL TLS (creating role dbkeeper_cert)" "$PGTLS_LOG"
    fi
}

pgtls_stop() {
    if pgtls_external; then
        log "PostgreSQL TLS: external (DBKEEPER_TEST_PG_TLS_URL), not stopping"
        return 0
    fi
    if ! pgtls_running; then
        log "PostgreSQL TLS: not running"
        return 0
    fi
    local bin
    bin=$(find_pg_bin)
    log "PostgreSQL TLS: stopping"
    as_pgtls_owner "$bin/pg_ctl" -D "$PGTLS_DATA" -m fast -w stop >&2
}

pgtls_status() {
    if pgtls_external; then
        echo "pgtls: external (DBKEEPER_TEST_PG_TLS_URL)"
        return 0
    fi
    if pgtls_running; then
        echo "pgtls: running on 127.0.0.1:$PG_TLS_PORT (data $PGTLS_DATA, certificates $PGTLS_CERTS, log $PGTLS_LOG)"
    else
        echo "pgtls: not running"
        return 1
    fi
}

# ---------------------------------------------------------------- SecantusDB

secantus_kind() { [[ ${SECANTUS_SERVER:-py} == rs ]] && echo rs || echo py; }

secantus_cmdline() { tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null || true; }

# The pid file outlives reboots and pids get reused, so a pid only counts as
# ours if that process really is a SecantusDB server.
secantus_pid() {
    local pid
    [[ -f $SECANTUS_PID ]] || return 1
    pid=$(<"$SECANTUS_PID")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    [[ $(secantus_cmdline "$pid") == *secantusd* ]] || return 1
    printf '%s\n' "$pid"
}

# Make sure the venv holds exactly the pinned SecantusDB. The version check
# (not just "is secantusd-py there") means bumping the pin upgrades old venvs.
ensure_secantus_py() {
    local py="$SECANTUS_VENV/bin/python" pip_log="$SERVICES_DIR/secantus-pip.log"
    if [[ ! -x $py ]]; then
        command -v python3 >/dev/null 2>&1 || apt_install python3 python3-venv
        log "SecantusDB: creating venv $SECANTUS_VENV"
        # Debian's python3 lacks ensurepip until python3-venv is installed.
        if ! python3 -m venv "$SECANTUS_VENV" >&2; then
            rm -rf "$SECANTUS_VENV"
            apt_install python3-venv
            python3 -m venv "$SECANTUS_VENV" >&2
        fi
    fi
    if [[ -x $SECANTUS_VENV/bin/secantusd-py ]] &&
        [[ $("$py" -c 'import importlib.metadata as m; print(m.version("SecantusDB"))' 2>/dev/null) == "$SECANTUS_PY_VERSION" ]]; then
        return 0
    fi
    log "SecantusDB: pip install SecantusDB==$SECANTUS_PY_VERSION (log: $pip_log)"
    if ! "$py" -m pip install --disable-pip-version-check "SecantusDB==$SECANTUS_PY_VERSION" >>"$pip_log" 2>&1; then
        die_with_log "SecantusDB install (pip)" "$pip_log"
    fi
}

# The Rust server is a from-source build (several minutes), so it is only
# built when asked for. cmake is needed by one of its native dependencies.
ensure_secantus_rs() {
    local bin="$SECANTUS_CARGO_ROOT/bin/secantusd-rs" cargo_log="$SERVICES_DIR/secantus-rs-install.log"
    [[ -x $bin ]] && return 0
    command -v cmake >/dev/null 2>&1 || apt_install cmake
    command -v cargo >/dev/null 2>&1 || die "SECANTUS_SERVER=rs needs cargo to build secantusd-rs"
    log "SecantusDB: cargo install secantus-mdb $SECANTUS_RS_VERSION (takes minutes; log: $cargo_log)"
    if ! cargo install secantus-mdb --version "$SECANTUS_RS_VERSION" --ignore-rust-version --locked \
        --root "$SECANTUS_CARGO_ROOT" >>"$cargo_log" 2>&1; then
        die_with_log "secantusd-rs install (cargo)" "$cargo_log"
    fi
}

mongo_start() {
    if mongo_external; then
        log "MongoDB: using DBKEEPER_TEST_MONGO_URL (nothing started)"
        return 0
    fi
    mkdir -p "$SERVICES_DIR"
    local kind pid
    kind=$(secantus_kind)

    if pid=$(secantus_pid); then
        # Running already. A different flavour than requested gets replaced;
        # the same one is left alone (idempotent start).
        if [[ $(secantus_cmdline "$pid") == *"secantusd-$kind"* ]]; then
            if port_open "$MONGO_PORT"; then
                log "MongoDB: SecantusDB ($kind) already running on port $MONGO_PORT (pid $pid)"
                return 0
            fi
            # Alive but not listening yet (a concurrent start): just wait.
            wait_for_secantus "$pid"
            return 0
        fi
        log "MongoDB: replacing the running SecantusDB with the $kind server"
        mongo_stop
    fi
    rm -f "$SECANTUS_PID"

    if port_open "$MONGO_PORT"; then
        die "MongoDB: port $MONGO_PORT is already in use by another process (set DBKEEPER_TEST_MONGO_URL to use an existing server, or DBKEEPER_SERVICES_MONGO_PORT)"
    fi

    local -a cmd
    if [[ $kind == rs ]]; then
        ensure_secantus_rs
        # Unlike secantusd-py, secantusd-rs has no ':memory:' mode: it would
        # create a directory literally named ':memory:' in the cwd and keep
        # it. Emulate the clean slate with our own directory, wiped here and
        # on stop.
        rm -rf "$SECANTUS_RS_DATA"
        mkdir -p "$SECANTUS_RS_DATA"
        cmd=("$SECANTUS_CARGO_ROOT/bin/secantusd-rs" --host 127.0.0.1 --port "$MONGO_PORT" --storage-path "$SECANTUS_RS_DATA")
    else
        ensure_secantus_py
        # :memory: = a temp WiredTiger home deleted on shutdown: every start
        # is a clean server, and tests never see a previous run's leftovers.
        # A test run writes a few hundred MB (documents near 16 MB, snapshot reads keeping
        # history): the default 1G cache filled up (WT_CACHE_FULL) on repeated runs. The
        # oplog is bounded for the same reason; tests never read it.
        cmd=("$SECANTUS_VENV/bin/secantusd-py" --host 127.0.0.1 --port "$MONGO_PORT" --storage-path :memory:
             --cache-size "${DBKEEPER_SERVICES_MONGO_CACHE:-4G}" --oplog-max-entries 20000)
    fi

    log "MongoDB: starting SecantusDB ($kind) on 127.0.0.1:$MONGO_PORT (log: $SECANTUS_LOG)"
    printf '\n==== %s: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "${cmd[*]}" >>"$SECANTUS_LOG"
    # Every fd redirected: a server holding our stdout would make
    # `$(services.sh start)` wait forever. nohup: survive the caller's
    # terminal going away (e.g. DBKEEPER_KEEP_SERVICES=1 runs).
    nohup "${cmd[@]}" </dev/null >>"$SECANTUS_LOG" 2>&1 &
    pid=$!
    echo "$pid" >"$SECANTUS_PID"
    wait_for_secantus "$pid"
}

wait_for_secantus() {
    local pid=$1 deadline=$((SECONDS + START_TIMEOUT))
    while ! port_open "$MONGO_PORT"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            rm -f "$SECANTUS_PID"
            die_with_log "MongoDB (SecantusDB, exited early)" "$SECANTUS_LOG"
        fi
        if ((SECONDS >= deadline)); then
            die_with_log "MongoDB (SecantusDB, no answer on port $MONGO_PORT after ${START_TIMEOUT}s; pid $pid left running)" "$SECANTUS_LOG"
        fi
        sleep 0.2
    done
    log "MongoDB: ready on port $MONGO_PORT (pid $pid)"
}

mongo_stop() {
    if mongo_external; then
        log "MongoDB: external (DBKEEPER_TEST_MONGO_URL), not stopping"
        return 0
    fi
    local pid
    if ! pid=$(secantus_pid); then
        log "MongoDB: not running"
        rm -f "$SECANTUS_PID"
        return 0
    fi
    log "MongoDB: stopping SecantusDB (pid $pid)"
    # TERM first so :memory: storage gets cleaned up; KILL only if it hangs.
    kill -TERM "$pid" 2>/dev/null || true
    local i
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.2
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "MongoDB: SecantusDB did not exit after 20s, killing"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$SECANTUS_PID"
    # The Rust server's stand-in for :memory: (see mongo_start). Only once
    # no process can be using it.
    if ! kill -0 "$pid" 2>/dev/null; then
        rm -rf "$SECANTUS_RS_DATA"
    fi
}

mongo_status() {
    if mongo_external; then
        echo "mongo: external (DBKEEPER_TEST_MONGO_URL)"
        return 0
    fi
    local pid
    if pid=$(secantus_pid) && port_open "$MONGO_PORT"; then
        echo "mongo: SecantusDB running on 127.0.0.1:$MONGO_PORT (pid $pid, log $SECANTUS_LOG)"
    else
        echo "mongo: not running"
        return 1
    fi
}

# ---------------------------------------------------------------- S3 (moto)

s3_pid() {
    local pid
    pid=$(cat "$MOTO_PID" 2>/dev/null) || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    [[ $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) == *moto_server* ]] || return 1
    echo "$pid"
}

ensure_moto() {
    local py="$MOTO_VENV/bin/python" pip_log="$SERVICES_DIR/moto-pip.log"
    if [[ ! -x $py ]]; then
        command -v python3 >/dev/null 2>&1 || apt_install python3 python3-venv
        log "S3: creating venv $MOTO_VENV"
        if ! python3 -m venv "$MOTO_VENV" >&2; then
            rm -rf "$MOTO_VENV"
            apt_install python3-venv
            python3 -m venv "$MOTO_VENV" >&2
        fi
    fi
    if [[ -x $MOTO_VENV/bin/moto_server ]] &&
        "$py" -c "import importlib.metadata as m, sys; sys.exit(m.version('moto') != '$MOTO_VERSION')" 2>/dev/null; then
        return 0
    fi
    log "S3: pip install moto[server]==$MOTO_VERSION (log: $pip_log)"
    if ! "$py" -m pip install --disable-pip-version-check "moto[server]==$MOTO_VERSION" >>"$pip_log" 2>&1; then
        die_with_log "moto install (pip)" "$pip_log"
    fi
}

s3_start() {
    if s3_external; then
        log "S3: using external DBKEEPER_TEST_S3_ENDPOINT"
        return 0
    fi
    mkdir -p "$SERVICES_DIR"
    local pid
    if pid=$(s3_pid); then
        log "S3: moto_server already running (pid $pid)"
        return 0
    fi
    port_open "$S3_PORT" && die "S3: port $S3_PORT is taken by another program; set DBKEEPER_SERVICES_S3_PORT"
    ensure_moto
    log "S3: starting moto_server on 127.0.0.1:$S3_PORT (log: $MOTO_LOG)"
    nohup "$MOTO_VENV/bin/moto_server" -H 127.0.0.1 -p "$S3_PORT" </dev/null >>"$MOTO_LOG" 2>&1 &
    pid=$!
    echo "$pid" >"$MOTO_PID"
    local deadline=$((SECONDS + START_TIMEOUT))
    while ! port_open "$S3_PORT"; do
        kill -0 "$pid" 2>/dev/null || { rm -f "$MOTO_PID"; die_with_log "S3 (moto_server, exited early)" "$MOTO_LOG"; }
        ((SECONDS < deadline)) || die_with_log "S3 (moto_server, no answer on port $S3_PORT)" "$MOTO_LOG"
        sleep 0.2
    done
    log "S3: ready on port $S3_PORT (pid $pid)"
}

s3_stop() {
    if s3_external; then
        log "S3: external (DBKEEPER_TEST_S3_ENDPOINT), not stopping"
        return 0
    fi
    local pid
    if pid=$(s3_pid); then
        log "S3: stopping moto_server (pid $pid)"
        kill -TERM "$pid" 2>/dev/null || true
    else
        log "S3: not running"
    fi
    rm -f "$MOTO_PID"
}

s3_status() {
    if s3_external; then
        echo "s3: external (DBKEEPER_TEST_S3_ENDPOINT)"
        return 0
    fi
    local pid
    if pid=$(s3_pid) && port_open "$S3_PORT"; then
        echo "s3: moto_server running on 127.0.0.1:$S3_PORT (pid $pid, log $MOTO_LOG)"
    else
        echo "s3: not running"
        return 1
    fi
}

# ---------------------------------------------------------------- S3 with IAM (moto)

s3auth_pid() {
    local pid
    pid=$(cat "$S3_AUTH_PID" 2>/dev/null) || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    [[ $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) == *moto_server* ]] || return 1
    echo "$pid"
}

# Creates the bucket and the two users while the server still accepts anything, then makes
# it check every later request (moto's /moto-api/reset-auth with 0 free requests).
s3auth_setup() {
    "$MOTO_VENV/bin/python" - "$S3_AUTH_ENDPOINT_LOCAL" "$S3_AUTH_BUCKET" "$S3_AUTH_KEYS" <<'PY'
import json, os, sys, urllib.request
import boto3
endpoint, bucket, keys_file = sys.argv[1:4]
kw = dict(endpoint_url=endpoint, region_name="us-east-1",
          aws_access_key_id="setup", aws_secret_access_key="setup")
boto3.client("s3", **kw).create_bucket(Bucket=bucket)
iam = boto3.client("iam", **kw)
lines = []
for user, actions in (("dbkeeper-allowed", ["s3:*"]), ("dbkeeper-denied", None)):
    iam.create_user(UserName=user)
    if actions:
        policy = {"Version": "2012-10-17",
                  "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}]}
        iam.put_user_policy(UserName=user, PolicyName="all-s3",
                            PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName=user)["AccessKey"]
    lines.append(f"{key['AccessKeyId']}:{key['SecretAccessKey']}")
fd = os.open(keys_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
os.write(fd, ("\n".join(lines) + "\n").encode())
os.close(fd)
urllib.request.urlopen(urllib.request.Request(
    endpoint + "/moto-api/reset-auth", data=b"0", method="POST",
    headers={"Content-Type": "text/plain"})).read()
PY
}

s3auth_start() {
    mkdir -p "$SERVICES_DIR"
    local pid
    if pid=$(s3auth_pid); then
        log "S3 auth: moto_server already running (pid $pid)"
        return 0
    fi
    port_open "$S3_AUTH_PORT" && die "S3 auth: port $S3_AUTH_PORT is taken by another program; set DBKEEPER_SERVICES_S3_AUTH_PORT"
    ensure_moto
    log "S3 auth: starting moto_server with IAM checks on 127.0.0.1:$S3_AUTH_PORT (log: $S3_AUTH_LOG)"
    nohup "$MOTO_VENV/bin/moto_server" -H 127.0.0.1 -p "$S3_AUTH_PORT" </dev/null >>"$S3_AUTH_LOG" 2>&1 &
    pid=$!
    echo "$pid" >"$S3_AUTH_PID"
    local deadline=$((SECONDS + START_TIMEOUT))
    while ! port_open "$S3_AUTH_PORT"; do
        kill -0 "$pid" 2>/dev/null || { rm -f "$S3_AUTH_PID"; die_with_log "S3 auth (moto_server, exited early)" "$S3_AUTH_LOG"; }
        ((SECONDS < deadline)) || die_with_log "S3 auth (moto_server, no answer on port $S3_AUTH_PORT)" "$S3_AUTH_LOG"
        sleep 0.2
    done
    s3auth_setup >>"$S3_AUTH_LOG" 2>&1 || die_with_log "S3 auth (setting up users)" "$S3_AUTH_LOG"
    log "S3 auth: ready on port $S3_AUTH_PORT (pid $pid)"
}

s3auth_stop() {
    local pid
    if pid=$(s3auth_pid); then
        log "S3 auth: stopping moto_server (pid $pid)"
        kill -TERM "$pid" 2>/dev/null || true
    else
        log "S3 auth: not running"
    fi
    rm -f "$S3_AUTH_PID" "$S3_AUTH_KEYS"
}

s3auth_status() {
    local pid
    if pid=$(s3auth_pid) && port_open "$S3_AUTH_PORT"; then
        echo "s3auth: moto_server with IAM checks running on 127.0.0.1:$S3_AUTH_PORT (pid $pid, log $S3_AUTH_LOG)"
    else
        echo "s3auth: not running"
        return 1
    fi
}

# ---------------------------------------------------------------- Azure blob emulator (azurite)

azurite_pid() {
    local pid
    pid=$(cat "$AZURITE_PID" 2>/dev/null) || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    [[ $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) == *azurite* ]] || return 1
    echo "$pid"
}

ensure_azurite() {
    local npm_log="$SERVICES_DIR/azurite-npm.log"
    if [[ -x $AZURITE_DIR/node_modules/.bin/azurite-blob ]] &&
        [[ $("$AZURITE_DIR/node_modules/.bin/azurite-blob" --version 2>/dev/null) == "$AZURITE_VERSION" ]]; then
        return 0
    fi
    command -v npm >/dev/null 2>&1 || apt_install nodejs npm
    log "Azurite: npm install azurite@$AZURITE_VERSION (log: $npm_log)"
    mkdir -p "$AZURITE_DIR"
    if ! npm install --prefix "$AZURITE_DIR" --no-audit --no-fund "azurite@$AZURITE_VERSION" >>"$npm_log" 2>&1; then
        die_with_log "azurite install (npm)" "$npm_log"
    fi
}

# Creates the test container with a SharedKey-signed request (Azurite checks signatures), using
# the emulator's published development account key. A container already there is fine.
azurite_create_container() {
    python3 - "$AZURITE_URL_LOCAL" "$AZURITE_CONTAINER" <<'PY'
import base64, hashlib, hmac, sys, urllib.error, urllib.request
from email.utils import formatdate
endpoint, container = sys.argv[1], sys.argv[2]
account = "devstoreaccount1"
key = base64.b64decode("Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==")
date, version, ctype = formatdate(usegmt=True), "2021-08-06", "application/octet-stream"
to_sign = ("PUT\n" + "\n" * 4 + ctype + "\n" * 7 + f"x-ms-date:{date}\nx-ms-version:{version}\n"
           + f"/{account}/{account}/{container}\nrestype:container")
sig = base64.b64encode(hmac.new(key, to_sign.encode(), hashlib.sha256).digest()).decode()
req = urllib.request.Request(
    f"{endpoint}/{account}/{container}?restype=container", data=b"", method="PUT",
    headers={"Content-Type": ctype, "x-ms-date": date, "x-ms-version": version,
             "Authorization": f"SharedKey {account}:{sig}"})
try:
    urllib.request.urlopen(req).read()
except urllib.error.HTTPError as e:
    if e.code != 409:
        raise
PY
}

azurite_start() {
    mkdir -p "$SERVICES_DIR"
    local pid
    if pid=$(azurite_pid); then
        log "Azurite: already running (pid $pid)"
        return 0
    fi
    port_open "$AZURITE_PORT" && die "Azurite: port $AZURITE_PORT is taken by another program; set DBKEEPER_SERVICES_AZURITE_PORT"
    ensure_azurite
    log "Azurite: starting azurite-blob on 127.0.0.1:$AZURITE_PORT (log: $AZURITE_LOG)"
    nohup "$AZURITE_DIR/node_modules/.bin/azurite-blob" --inMemoryPersistence --disableTelemetry \
        --blobHost 127.0.0.1 --blobPort "$AZURITE_PORT" --skipApiVersionCheck \
        </dev/null >>"$AZURITE_LOG" 2>&1 &
    pid=$!
    echo "$pid" >"$AZURITE_PID"
    local deadline=$((SECONDS + START_TIMEOUT))
    while ! port_open "$AZURITE_PORT"; do
        kill -0 "$pid" 2>/dev/null || { rm -f "$AZURITE_PID"; die_with_log "Azurite (exited early)" "$AZURITE_LOG"; }
        ((SECONDS < deadline)) || die_with_log "Azurite (no answer on port $AZURITE_PORT)" "$AZURITE_LOG"
        sleep 0.2
    done
    azurite_create_container >>"$AZURITE_LOG" 2>&1 || die_with_log "Azurite (creating the container)" "$AZURITE_LOG"
    log "Azurite: ready on port $AZURITE_PORT (pid $pid)"
}

azurite_stop() {
    local pid
    if pid=$(azurite_pid); then
        log "Azurite: stopping (pid $pid)"
        kill -TERM "$pid" 2>/dev/null || true
    else
        log "Azurite: not running"
    fi
    rm -f "$AZURITE_PID"
}

azurite_status() {
    local pid
    if pid=$(azurite_pid) && port_open "$AZURITE_PORT"; then
        echo "azurite: running on 127.0.0.1:$AZURITE_PORT (pid $pid, log $AZURITE_LOG)"
    else
        echo "azurite: not running"
        return 1
    fi
}

# ---------------------------------------------------------------- interop tools

# The tests read archives with stock tools the way a user would: Debian's `age`
# decrypts a member, `zstd` decompresses one (tests/encryption.rs,
# tests/archive_codec.rs). Not services, but every test run needs them.
ensure_interop_tools() {
    local missing=()
    command -v age >/dev/null 2>&1 || missing+=(age)
    command -v zstd >/dev/null 2>&1 || missing+=(zstd)
    command -v jq >/dev/null 2>&1 || missing+=(jq)
    if ((${#missing[@]})); then
        apt_install "${missing[@]}"
    fi
}

# ---------------------------------------------------------------- main

usage() {
    sed -n '2,32p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

[[ $# -ge 1 ]] || usage
action=$1
shift
services=("$@")
if ((${#services[@]} == 0)); then
    services=(pg pgtls mongo s3 s3auth azurite)
fi
for svc in "${services[@]}"; do
    case $svc in pg | pgtls | mongo | s3 | s3auth | azurite) ;; *) usage ;; esac
done

case $action in
start)
    ensure_interop_tools
    for svc in "${services[@]}"; do "${svc}_start"; done
    print_env
    ;;
stop)
    for svc in "${services[@]}"; do "${svc}_stop"; done
    ;;
env)
    print_env
    ;;
status)
    rc=0
    for svc in "${services[@]}"; do "${svc}_status" || rc=1; done
    exit "$rc"
    ;;
*)
    usage
    ;;
esac
