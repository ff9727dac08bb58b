#!/usr/bin/env bash
# Masked vs unmasked PostgreSQL restore: `restore --mask` with three masked columns
# (customers.email -> email, customers.name -> name, customers.address -> hash) against the same
# restore without --mask, alternating run by run, median wall time and peak RSS of each.
# Target (docs/masking.md): masked <= 1.3x unmasked, peak RSS under 100 MiB.
#
#   bench/mask.sh [SCALE] [RUNS]        (defaults: SCALE=0.2, RUNS=3)
#
# Uses the dataset bench/pg.sh generates (database dbk_bench_src at the same SCALE, or the one
# DBKEEPER_BENCH_SRC names): run that once first. Needs DBKEEPER_BENCH_PG_URL (or DBKEEPER_TEST_PG_URL) pointing at a maintenance
# database; restores into ${DBKEEPER_BENCH_TAG:-dbk_bench}_m1/_m2 and drops them. Builds
# dbkeeper in release mode. Not a test: compare the ratio from one run, not absolute times.
set -euo pipefail

SCALE=${1:-0.2}
RUNS=${2:-3}
JOBS=${DBKEEPER_BENCH_JOBS:-2}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
URL=${DBKEEPER_BENCH_PG_URL:-${DBKEEPER_TEST_PG_URL:?set DBKEEPER_BENCH_PG_URL or DBKEEPER_TEST_PG_URL}}
BASE=${URL%/*}
SRC=${DBKEEPER_BENCH_SRC:-dbk_bench_src}
M1=${DBKEEPER_BENCH_TAG:-dbk_bench}_m1
M2=${DBKEEPER_BENCH_TAG:-dbk_bench}_m2
WORK=$(mktemp -d "${TMPDIR:-/tmp}/dbk-mask-bench.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

log() { printf '==> %s\n' "$*" >&2; }
drop_db() { psql -X -q -d "$URL" -c "DROP DATABASE IF EXISTS \"$1\" WITH (FORCE)" >/dev/null; }

if [[ "$(psql -X -At -d "$BASE/$SRC" -c "SELECT value FROM bench_meta WHERE key = 'scale'" 2>/dev/null)" != "$SCALE" ]]; then
    log "no dataset at scale $SCALE: run bench/pg.sh $SCALE 1 first"
    exit 2
fi
log "building dbkeeper (release)"
(cd "$ROOT" && cargo build --release --quiet)
DBK="$ROOT/target/release/dbkeeper"

head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$WORK/mask.key"
cat >"$WORK/mask.toml" <<'TOML'
key_file = "mask.key"
[postgres."public.customers"]
email = "email"
name = "name"
address = "hash"
TOML

log "backing up $SRC"
"$DBK" --pg-url "$BASE/$SRC" backup --jobs "$JOBS" --output "$WORK" >/dev/null
archive=$(ls "$WORK"/*.dbk.tar)

time_it() {
    local name=$1; shift
    local start end rss
    start=$(date +%s.%N)
    /usr/bin/time -v -o "$WORK/time.txt" "$@" >"$WORK/$name.out" 2>"$WORK/stderr.txt" || {
        cat "$WORK/stderr.txt" >&2; log "$name failed"; exit 1; }
    end=$(date +%s.%N)
    rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$WORK/time.txt")
    echo "$name $(echo "$end - $start" | bc) $rss" >>"$WORK/results.txt"
    log "$name: $(echo "$end - $start" | bc) s, peak RSS $((rss / 1024)) MiB"
}

for run in $(seq 1 "$RUNS"); do
    log "run $run/$RUNS"
    drop_db "$M1"; drop_db "$M2"
    time_it unmasked "$DBK" --pg-url "$BASE/$M1" restore --jobs "$JOBS" "$archive"
    time_it masked "$DBK" --pg-url "$BASE/$M2" restore --jobs "$JOBS" --mask "$WORK/mask.toml" "$archive"
done
drop_db "$M1"; drop_db "$M2"

python3 - "$WORK/results.txt" "$SCALE" "$JOBS" <<'PY'
import statistics, sys
t = {}; rss = {}
for name, secs, kb in (l.split() for l in open(sys.argv[1])):
    t.setdefault(name, []).append(float(secs)); rss[name] = max(rss.get(name, 0), int(kb))
med = {k: statistics.median(v) for k, v in t.items()}
print(f"scale {sys.argv[2]}, jobs {sys.argv[3]}, {len(t['masked'])} alternating runs (median wall seconds, max peak RSS)")
for k in ["unmasked", "masked"]:
    print(f"  {k:9} {med[k]:7.2f} s   {rss[k] / 1024:6.1f} MiB")
print(f"  masked / unmasked restore = {med['masked'] / med['unmasked']:.2f} (target <= 1.3)")
PY
