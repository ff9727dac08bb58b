#!/usr/bin/env bash
# PostgreSQL backup/restore benchmark: dbkeeper vs pg_dump -Fd -j 2 / pg_restore -j 2, and
# what verification costs: the counts check (V2) restore runs, against the restore's time, and
# `verify --deep` (V2 content digests of every row) against a raw COPY of every table to
# /dev/null (reading the data once).
#
#   bench/pg.sh [SCALE] [RUNS]        (defaults: SCALE=0.2, RUNS=3)
#   DBKEEPER_BENCH_BACKUP_ONLY=1 bench/pg.sh ...   (backups only: floor, zstd, encrypted, gzip,
#                                                    pg_dump; for quick iterations)
#   DBKEEPER_BENCH_BIN=target/debug/dbkeeper ...   (time this binary instead of a release build)
#   DBKEEPER_BENCH_PIN=1 bench/pg.sh ...            (also time the floor and the backup with the
#                                                    server on CPU 0 and the client on the others)
#
# Generates a dataset with SQL (about 500 MB of tables at scale 1), then alternates the tools
# run by run so both see the same machine load, and reports the median wall time of each, the
# ratios docs/performance.md targets, and peak RSS (/usr/bin/time -v).
#
# What is timed (docs/performance.md explains the choices):
#   copy_floor      `COPY table TO STDOUT` of every table into /dev/null, JOBS psql at a time
#                   (the raw floor a backup cannot beat);
#   dbk_backup      dbkeeper backup --jobs JOBS (archive written and committed; zstd, the default);
#   dbk_backup_null the same streamed to /dev/null (--output -), like the floor's output;
#   dbk_backup_enc  the same, encrypted to an age recipient (--recipient age1...);
#   dbk_backup_gzip the same with --compression gzip (the previous default);
#   pg_dump         pg_dump -Fd -j JOBS;
#   dbk_restore     dbkeeper restore --jobs JOBS into a database it creates, archive check (V0)
#                   and exact count(*) verification included;
#   dbk_restore_nv  the same with --no-verify (pg_restore verifies nothing);
#   dbk_restore_enc the encrypted archive's restore --no-verify (--identity KEY);
#   dbk_restore_gz  the gzip archive's restore --no-verify (what restore cost before zstd);
#   pg_restore      CREATE DATABASE + pg_restore -j JOBS (dbkeeper creates its database too);
#   dbk_verify      dbkeeper verify (V0 + V1) of the archive.
#   copy_floor_pin / dbk_backup_pin (DBKEEPER_BENCH_PIN=1, a local server only: it reads the
#                   postmaster's PID from its data directory) the floor and the backup again with
#                   the PostgreSQL server pinned to CPU 0 and the client to the other CPUs, as
#                   when the database has cores of its own: on a 2-core machine the client's
#                   compression otherwise takes CPU from the server's COPY (docs/performance.md).
# Needs DBKEEPER_BENCH_PG_URL (or DBKEEPER_TEST_PG_URL) pointing at a server whose database
# part of the URL is a maintenance database (e.g. .../postgres); it creates and drops
# dbk_bench_* databases there (source ${DBKEEPER_BENCH_TAG:-dbk_bench}_src, restore targets
# ..._r1 to _r5, so two people can run it on one server at once). Builds dbkeeper in release mode.
#
# Not a test: numbers depend on the machine; a shared 2-core box is noisy, so compare ratios
# from one run, not absolute times across runs.
set -euo pipefail

SCALE=${1:-0.2}
RUNS=${2:-3}
JOBS=${DBKEEPER_BENCH_JOBS:-2}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
URL=${DBKEEPER_BENCH_PG_URL:-${DBKEEPER_TEST_PG_URL:?set DBKEEPER_BENCH_PG_URL or DBKEEPER_TEST_PG_URL}}
BASE=${URL%/*}
SRC=${DBKEEPER_BENCH_TAG:-dbk_bench}_src
BACKUP_ONLY=${DBKEEPER_BENCH_BACKUP_ONLY:-0}
PIN=${DBKEEPER_BENCH_PIN:-0}
R1=${DBKEEPER_BENCH_TAG:-dbk_bench}_r1
R2=${DBKEEPER_BENCH_TAG:-dbk_bench}_r2
R3=${DBKEEPER_BENCH_TAG:-dbk_bench}_r3
R4=${DBKEEPER_BENCH_TAG:-dbk_bench}_r4
R5=${DBKEEPER_BENCH_TAG:-dbk_bench}_r5
WORK=$(mktemp -d "${TMPDIR:-/tmp}/dbk-bench.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
if [[ $PIN == 1 ]]; then
    POSTMASTER=$(head -1 "$(psql -X -At -d "$URL" -c 'SHOW data_directory')/postmaster.pid")
    SERVER_CPUS=$(taskset -pc "$POSTMASTER" | awk -F': ' '{print $2}')
    CLIENT_CPUS="1-$(($(nproc) - 1))"
    # Backends inherit the postmaster's affinity when they start; put it back whatever happens.
    trap 'taskset -pc "$SERVER_CPUS" "$POSTMASTER" >/dev/null; rm -rf "$WORK"' EXIT
fi

log() { printf '==> %s\n' "$*" >&2; }
psql_admin() { psql -X -q -v ON_ERROR_STOP=1 -d "$URL" "$@"; }
drop_db() { psql_admin -c "DROP DATABASE IF EXISTS \"$1\" WITH (FORCE)" >/dev/null; }

if [[ -n ${DBKEEPER_BENCH_BIN:-} ]]; then
    DBK=$DBKEEPER_BENCH_BIN     # e.g. a debug build when a release build is out of reach
else
    log "building dbkeeper (release)"
    (cd "$ROOT" && cargo build --release --quiet)
    DBK="$ROOT/target/release/dbkeeper"
fi
# A throwaway age key for the encrypted backup (deleted with $WORK).
age-keygen -o "$WORK/key.txt" 2>/dev/null
RECIPIENT=$(age-keygen -y "$WORK/key.txt")

if [[ "$(psql -X -At -d "$URL" -c "SELECT 1 FROM pg_database WHERE datname = '$SRC'")" != 1 ||
      "$(psql -X -At -d "$BASE/$SRC" -c "SELECT value FROM bench_meta WHERE key = 'scale'" 2>/dev/null)" != "$SCALE" ]]; then
    log "generating dataset at scale $SCALE"
    drop_db "$SRC"
    psql_admin -c "CREATE DATABASE $SRC"
    psql -X -q -v ON_ERROR_STOP=1 -d "$BASE/$SRC" -v scale="$SCALE" <<'SQL'
CREATE TABLE bench_meta (key text PRIMARY KEY, value text);
CREATE TABLE customers (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email text NOT NULL UNIQUE,
    name text NOT NULL,
    address text,
    created_at timestamptz NOT NULL
);
CREATE TABLE orders (
    id bigserial PRIMARY KEY,
    customer_id bigint NOT NULL REFERENCES customers (id),
    status text NOT NULL,
    amount numeric(12,2) NOT NULL,
    placed_at timestamptz NOT NULL,
    note text
);
CREATE TABLE events (
    id bigserial PRIMARY KEY,
    order_id bigint NOT NULL,
    kind text NOT NULL,
    payload jsonb NOT NULL
);
INSERT INTO customers (email, name, address, created_at)
SELECT 'customer' || i || '@example.com', 'Customer ' || md5(i::text),
       i || ' Main Street, ' || md5((i * 7)::text), now() - i * interval '1 minute'
FROM generate_series(1, (600000 * :scale)::int) i;
INSERT INTO orders (customer_id, status, amount, placed_at, note)
SELECT 1 + (i::bigint * 7919) % (600000 * :scale)::int, (ARRAY['new','paid','shipped','returned'])[1 + i % 4],
       (i % 100000) / 100.0, now() - i * interval '1 second',
       CASE WHEN i % 3 = 0 THEN NULL ELSE 'note ' || md5(i::text) END
FROM generate_series(1, (4000000 * :scale)::int) i;
INSERT INTO events (order_id, kind, payload)
SELECT i, (ARRAY['created','paid','shipped'])[1 + i % 3],
       jsonb_build_object('order', i, 'tags', jsonb_build_array('a', 'b', i % 10), 'text', md5(i::text) || md5((i + 1)::text))
FROM generate_series(1, (2000000 * :scale)::int) i;
CREATE INDEX orders_customer_idx ON orders (customer_id);
CREATE INDEX orders_placed_idx ON orders (placed_at);
CREATE INDEX events_order_idx ON events (order_id);
VACUUM ANALYZE;
-- Last, so an interrupted generation is regenerated next time.
INSERT INTO bench_meta VALUES ('scale', :'scale');
SQL
fi
psql -X -At -d "$BASE/$SRC" -c "SELECT 'dataset: ' || pg_size_pretty(pg_database_size(current_database())) || ' on disk'" >&2

# time_it NAME COMMAND...: runs the command under /usr/bin/time -v, appends "NAME seconds rss_kb".
# stdout goes to $OUT (default $WORK/NAME.out), e.g. a --json report to read timings from.
time_it() {
    local name=$1; shift
    local start end
    start=$(date +%s.%N)
    /usr/bin/time -v -o "$WORK/time.txt" "$@" >"${OUT:-$WORK/$name.out}" 2>"$WORK/stderr.txt" || {
        cat "$WORK/stderr.txt" >&2; log "$name failed"; exit 1; }
    end=$(date +%s.%N)
    local rss
    rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$WORK/time.txt")
    echo "$name $(echo "$end - $start" | bc) $rss" >>"$WORK/results.txt"
    log "$name: $(echo "$end - $start" | bc) s, peak RSS $((rss / 1024)) MiB"
}

TABLES=$(psql -X -At -d "$BASE/$SRC" -c "SELECT format('%I.%I', schemaname, tablename) FROM pg_tables
    WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY pg_relation_size(format('%I.%I', schemaname, tablename)::regclass) DESC")
# copy_floor: every table's COPY TO STDOUT into /dev/null, JOBS at a time, largest first.
copy_floor() {
    printf '%s\n' $TABLES | xargs -P "$JOBS" -I{} \
        psql -X -q -v ON_ERROR_STOP=1 -d "$BASE/$SRC" -o /dev/null -c 'COPY {} TO STDOUT'
}
# restore_phases REPORT: keeps dbkeeper's per-phase seconds of one restore's --json report.
restore_phases() {
    python3 -c 'import json,sys; s=json.load(open(sys.argv[1]))["postgres"]["seconds"]; print(" ".join(f"{k}={v}" for k, v in s.items()))' \
        "$1" | tee -a "$WORK/phases.txt" >&2
}
export -f copy_floor; export JOBS BASE SRC TABLES

for run in $(seq 1 "$RUNS"); do
    log "run $run/$RUNS"
    rm -rf "$WORK/dbk" "$WORK/enc" "$WORK/gz" "$WORK/pgd"
    mkdir -p "$WORK/dbk" "$WORK/enc" "$WORK/gz"
    time_it copy_floor bash -c copy_floor
    time_it dbk_backup "$DBK" --pg-url "$BASE/$SRC" backup --jobs "$JOBS" --output "$WORK/dbk"
    # The same backup streamed into /dev/null, as the floor's COPY output is: the pipeline's own
    # cost, without writing the archive into the page cache (on a VM whose guest memory is
    # touched for the first time that alone ran at 140-170 MB/s, against 1.7 GB/s reused).
    OUT=/dev/null time_it dbk_backup_null "$DBK" --pg-url "$BASE/$SRC" backup --jobs "$JOBS" \
        --output -
    time_it dbk_backup_enc "$DBK" --pg-url "$BASE/$SRC" backup --jobs "$JOBS" \
        --recipient "$RECIPIENT" --output "$WORK/enc"
    time_it dbk_backup_gzip "$DBK" --pg-url "$BASE/$SRC" backup --jobs "$JOBS" \
        --compression gzip --output "$WORK/gz"
    time_it pg_dump pg_dump -Fd -j "$JOBS" -f "$WORK/pgd" -d "$BASE/$SRC"
    if [[ $PIN == 1 ]]; then
        taskset -pc 0 "$POSTMASTER" >/dev/null
        time_it copy_floor_pin taskset -c "$CLIENT_CPUS" bash -c copy_floor
        rm -rf "$WORK/pin" && mkdir -p "$WORK/pin"
        time_it dbk_backup_pin taskset -c "$CLIENT_CPUS" "$DBK" --pg-url "$BASE/$SRC" backup \
            --jobs "$JOBS" --output "$WORK/pin"
        taskset -pc "$SERVER_CPUS" "$POSTMASTER" >/dev/null
    fi
    archive=$(ls "$WORK"/dbk/*.dbk.tar)
    enc_archive=$(ls "$WORK"/enc/*.dbk.tar)
    gz_archive=$(ls "$WORK"/gz/*.dbk.tar)
    if [[ $run == 1 ]]; then
        log "archive zstd $(du -h "$archive" | cut -f1), encrypted $(du -h "$enc_archive" | cut -f1), gzip $(du -h "$gz_archive" | cut -f1), pg_dump -Fd $(du -sh "$WORK/pgd" | cut -f1)"
        stat -c '%s' "$archive" "$enc_archive" "$gz_archive" >"$WORK/sizes.txt"
    fi
    [[ $BACKUP_ONLY == 1 ]] && continue

    drop_db "$R1"; drop_db "$R2"; drop_db "$R3"; drop_db "$R4"; drop_db "$R5"
    # Restore verifies counts (V2) by default; its report says how long that took.
    OUT="$WORK/restore.$run.json" time_it dbk_restore "$DBK" --pg-url "$BASE/$R1" \
        restore --jobs "$JOBS" --json "$archive"
    restore_phases "$WORK/restore.$run.json"
    # pg_restore needs its database created first; dbkeeper creates its own, so time both.
    time_it pg_restore bash -c 'psql -X -q -v ON_ERROR_STOP=1 -d "$1" -c "CREATE DATABASE $5" &&
        pg_restore -j "$2" -d "$3" "$4"' _ "$URL" "$JOBS" "$BASE/$R2" "$WORK/pgd" "$R2"
    time_it dbk_restore_nv "$DBK" --pg-url "$BASE/$R3" restore --no-verify --jobs "$JOBS" "$archive"
    time_it dbk_restore_enc "$DBK" --pg-url "$BASE/$R4" restore --no-verify --jobs "$JOBS" \
        --identity "$WORK/key.txt" "$enc_archive"
    time_it dbk_restore_gz "$DBK" --pg-url "$BASE/$R5" restore --no-verify --jobs "$JOBS" "$gz_archive"
    time_it dbk_verify "$DBK" verify --jobs "$JOBS" "$archive"
    # --deep: V0+V1 offline, then every row of the restored database re-read and digested.
    OUT="$WORK/deep.$run.json" time_it dbk_verify_deep "$DBK" --pg-url "$BASE/$R1" \
        verify --deep --jobs "$JOBS" --json "$archive"
    # Reading the data once: COPY every table of the same restored database to /dev/null.
    psql -X -At -d "$BASE/$R1" -c "SELECT format('COPY %I.%I TO STDOUT;', schemaname, tablename)
        FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')" >"$WORK/copy.sql"
    time_it raw_copy psql -X -q -d "$BASE/$R1" -f "$WORK/copy.sql"
done
drop_db "$R1"; drop_db "$R2"; drop_db "$R3"; drop_db "$R4"; drop_db "$R5"

python3 - "$WORK/results.txt" "$SCALE" "$JOBS" "$WORK" "$BACKUP_ONLY" <<'PY'
import glob, json, statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
sizes = [int(l) for l in open(sys.argv[4] + "/sizes.txt")]
t = {}; rss = {}
for name, secs, kb in rows:
    t.setdefault(name, []).append(float(secs)); rss[name] = max(rss.get(name, 0), int(kb))
med = {k: statistics.median(v) for k, v in t.items()}
print(f"scale {sys.argv[2]}, jobs {sys.argv[3]}, {len(t['dbk_backup'])} alternating runs (median wall seconds, max peak RSS)")
for k in ["copy_floor", "dbk_backup", "dbk_backup_null", "copy_floor_pin", "dbk_backup_pin", "dbk_backup_enc", "dbk_backup_gzip", "pg_dump", "dbk_restore",
          "dbk_restore_nv", "dbk_restore_enc", "dbk_restore_gz", "pg_restore", "dbk_verify",
          "dbk_verify_deep", "raw_copy"]:
    if k in med:
        print(f"  {k:15} {med[k]:7.2f} s   {rss[k] / 1024:6.1f} MiB")
print(f"  archive bytes: zstd {sizes[0]}, encrypted {sizes[1]}, gzip {sizes[2]} (zstd/gzip = {sizes[0] / sizes[2]:.2f})")
print(f"  backup  / raw COPY floor           = {med['dbk_backup'] / med['copy_floor']:.2f} (target <= 1.2)")
print(f"  backup to /dev/null / floor       = {med['dbk_backup_null'] / med['copy_floor']:.2f} (the same, without writing the file)")
if "dbk_backup_pin" in med:
    print(f"  the same, server on CPU 0 only     = {med['dbk_backup_pin'] / med['copy_floor_pin']:.2f} (client on the other CPUs)")
print(f"  encrypted backup / backup          = {med['dbk_backup_enc'] / med['dbk_backup']:.2f} (target <= 1.1)")
print(f"  gzip backup / raw COPY floor       = {med['dbk_backup_gzip'] / med['copy_floor']:.2f}")
print(f"  backup  / pg_dump -Fd -j{sys.argv[3]}          = {med['dbk_backup'] / med['pg_dump']:.2f} (target <= 0.7)")
peak = max(rss[k] for k in med if k.startswith("dbk_")) / 1024
print(f"  peak RSS of any dbkeeper run       = {peak:.1f} MiB (target < 100)")
if sys.argv[5] == "1":
    sys.exit(0)
print(f"  encrypted restore / restore (both --no-verify) = {med['dbk_restore_enc'] / med['dbk_restore_nv']:.2f}")
print(f"  restore (zstd) / restore (gzip), both --no-verify = {med['dbk_restore_nv'] / med['dbk_restore_gz']:.2f} (target <= 1.0)")
counts = statistics.median(json.load(open(f))["postgres"]["verify"]["seconds"]
                           for f in glob.glob(sys.argv[4] + "/restore.*.json"))
deep = statistics.median(json.load(open(f))["targets"][0]["seconds"]
                         for f in glob.glob(sys.argv[4] + "/deep.*.json"))
print(f"  restore / pg_restore -j{sys.argv[3]}           = {med['dbk_restore'] / med['pg_restore']:.2f} (target <= 0.8)")
print(f"  restore --no-verify / pg_restore   = {med['dbk_restore_nv'] / med['pg_restore']:.2f}")
print(f"  counts verify (V2 in restore, {counts:.2f} s) / restore = {counts / med['dbk_restore']:.3f} (target < 0.10)")
print(f"  --deep V2 ({deep:.2f} s) / raw COPY of all tables    = {deep / med['raw_copy']:.2f} (target <= 1.5)")
print(f"  whole verify --deep (V0+V1+V2) / raw COPY     = {med['dbk_verify_deep'] / med['raw_copy']:.2f}")
PY
if [[ $BACKUP_ONLY != 1 ]]; then
    log "dbkeeper restore phases (seconds, one line per run):"
    cat "$WORK/phases.txt" >&2
fi
