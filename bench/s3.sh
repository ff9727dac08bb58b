#!/usr/bin/env bash
# Object storage benchmark: backup to a bucket vs to a local directory, and restore from each,
# in one run (alternating, so both see the same machine load). Reports median wall times, the
# bucket/local ratios (target: <= 1.15), peak RSS of each phase (target for the bucket
# backup: under 150 MiB at default settings) and how many bytes a restore from the bucket
# downloads relative to the archive's size (dbkeeper reports its transfers at -v).
#
#   bench/s3.sh [ROWS] [RUNS]        (defaults: ROWS=1000000, RUNS=3)
#
# Needs DBKEEPER_BENCH_PG_URL (or DBKEEPER_TEST_PG_URL) pointing at a maintenance database, and
# an S3 API endpoint in DBKEEPER_TEST_S3_ENDPOINT (scripts/services.sh start s3 starts moto).
# The binary is $DBKEEPER_BIN, else target/release/dbkeeper (built here). Against a server that
# checks signatures, create the bucket first, name it in DBKEEPER_BENCH_BUCKET and export
# AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (default: bench / bench).
#
# DBKEEPER_BENCH_S3_PID=PID (a local S3 server's process, e.g. $(cat target/services/moto.pid))
# pins that server to CPU 0 and PostgreSQL (local; its postmaster is read from its data
# directory) and dbkeeper to the other CPUs for the whole run, so the server's own CPU does not
# count against the upload, as with a remote object store; local and bucket phases alike run on
# the remaining CPUs.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROWS=${1:-1000000}
RUNS=${2:-3}
PG_URL=${DBKEEPER_BENCH_PG_URL:-${DBKEEPER_TEST_PG_URL:?set DBKEEPER_BENCH_PG_URL or DBKEEPER_TEST_PG_URL}}
ENDPOINT=${DBKEEPER_TEST_S3_ENDPOINT:?set DBKEEPER_TEST_S3_ENDPOINT (scripts/services.sh start s3)}
TAG=${DBKEEPER_BENCH_TAG:-dbk_s3bench}
PSQL=$(command -v psql || ls /usr/lib/postgresql/*/bin/psql | tail -1)
WORK=$(mktemp -d)
BUCKET=${DBKEEPER_BENCH_BUCKET:-"${TAG//_/-}-$$"}

log() { printf '[bench] %s\n' "$*" >&2; }
PIN=()
cleanup() {
    if [[ -n ${DBKEEPER_BENCH_S3_PID:-} && -n ${S3_CPUS:-} ]]; then
        taskset -a -pc "$S3_CPUS" "$DBKEEPER_BENCH_S3_PID" >/dev/null || true
        taskset -pc "$PG_CPUS" "$POSTMASTER" >/dev/null || true
    fi
    "$PSQL" -q "$PG_URL" -c "DROP DATABASE IF EXISTS ${TAG}_src WITH (FORCE)" >/dev/null 2>&1 || true
    "$PSQL" -q "$PG_URL" -c "DROP DATABASE IF EXISTS ${TAG}_r WITH (FORCE)" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT

if [[ -n ${DBKEEPER_BIN:-} ]]; then
    BIN=$DBKEEPER_BIN
else
    (cd "$ROOT" && cargo build --release --quiet)
    BIN="$ROOT/target/release/dbkeeper"
fi

db_url() { printf '%s' "${PG_URL%/*}/$1"; }

if [[ -n ${DBKEEPER_BENCH_S3_PID:-} ]]; then
    POSTMASTER=$(head -1 "$("$PSQL" -X -At "$PG_URL" -c 'SHOW data_directory')/postmaster.pid")
    PG_CPUS=$(taskset -pc "$POSTMASTER" | awk -F': ' '{print $2}')
    S3_CPUS=$(taskset -pc "$DBKEEPER_BENCH_S3_PID" | awk -F': ' '{print $2}')
    CLIENT_CPUS="1-$(($(nproc) - 1))"
    taskset -a -pc 0 "$DBKEEPER_BENCH_S3_PID" >/dev/null
    taskset -pc "$CLIENT_CPUS" "$POSTMASTER" >/dev/null
    PIN=(taskset -c "$CLIENT_CPUS")
    log "S3 server (pid $DBKEEPER_BENCH_S3_PID) on CPU 0; PostgreSQL and dbkeeper on $CLIENT_CPUS"
fi

log "dataset: $ROWS rows"
"$PSQL" -q "$PG_URL" -c "DROP DATABASE IF EXISTS ${TAG}_src WITH (FORCE)" -c "CREATE DATABASE ${TAG}_src" >/dev/null
"$PSQL" -q "$(db_url "${TAG}_src")" >/dev/null <<SQL
CREATE TABLE orders (id bigint PRIMARY KEY, customer int, note text, placed_at timestamptz);
INSERT INTO orders SELECT i, i % 5000, repeat(md5(i::text), 3), now() - i * interval '1 second'
  FROM generate_series(1, $ROWS) i;
CREATE INDEX orders_customer ON orders (customer);
SQL
# moto takes an unsigned bucket creation; a server that checks signatures (s3s-fs) needs the
# bucket made beforehand and named in DBKEEPER_BENCH_BUCKET.
[[ -n ${DBKEEPER_BENCH_BUCKET:-} ]] || curl -sf -X PUT "$ENDPOINT/$BUCKET" >/dev/null

export AWS_ACCESS_KEY_ID=${AWS_ACCESS_KEY_ID:-bench} AWS_SECRET_ACCESS_KEY=${AWS_SECRET_ACCESS_KEY:-bench}
export AWS_REGION=${AWS_REGION:-us-east-1} AWS_ENDPOINT_URL=$ENDPOINT

# Runs one phase under /usr/bin/time; appends "phase seconds rss_kib" to $WORK/results.
timed() {
    local phase=$1
    shift
    /usr/bin/time -f "%e %M" -o "$WORK/time" "${PIN[@]}" "$@" >"$WORK/out" 2>"$WORK/err" ||
        { cat "$WORK/err" >&2; exit 1; }
    printf '%s %s\n' "$phase" "$(cat "$WORK/time")" >>"$WORK/results"
}

for ((run = 1; run <= RUNS; run++)); do
    log "run $run/$RUNS"
    rm -rf "$WORK/local"
    timed backup_local "$BIN" --json --pg-url "$(db_url "${TAG}_src")" backup --output "$WORK/local"
    local_archive=$(ls "$WORK"/local/*.dbk.tar)
    timed backup_bucket "$BIN" --json --pg-url "$(db_url "${TAG}_src")" backup --output "s3://$BUCKET/run$run/"
    bucket_archive=$(sed -n 's/.*"archive": "\(s3:[^"]*\)".*/\1/p' "$WORK/out")
    timed restore_local "$BIN" --pg-url "$(db_url "${TAG}_r")" restore "$local_archive" --mode replace
    timed restore_bucket "$BIN" -v --pg-url "$(db_url "${TAG}_r")" restore "$bucket_archive" --mode replace
    sed -n 's/.*downloaded \([0-9]*\) bytes of .*/\1/p' "$WORK/err" |
        awk '{ s += $1 } END { print s + 0 }' >>"$WORK/downloaded"
done

archive_bytes=$(stat -c %s "$local_archive")
printf '\narchive: %s bytes\n' "$archive_bytes"
sort -n "$WORK/downloaded" | awk -v a="$archive_bytes" '{ d[NR] = $1 } END {
    printf "restore from the bucket downloaded: %d bytes (%.2fx the archive)\n", d[int((NR + 1) / 2)], d[int((NR + 1) / 2)] / a }'
printf '%-16s %10s %12s\n' phase median_s peak_rss_mib
for phase in backup_local backup_bucket restore_local restore_bucket; do
    awk -v p="$phase" '$1 == p { print $2, $3 }' "$WORK/results" | sort -n |
        awk -v p="$phase" '{ t[NR] = $1; if ($2 > m) m = $2 } END { printf "%-16s %10.2f %12.1f\n", p, t[int((NR + 1) / 2)], m / 1024 }'
done | tee "$WORK/summary"
awk '{ t[$1] = $2 } END {
    printf "backup  bucket/local: %.2fx\nrestore bucket/local: %.2fx\n", t["backup_bucket"] / t["backup_local"], t["restore_bucket"] / t["restore_local"]
}' "$WORK/summary"
