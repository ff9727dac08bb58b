#!/usr/bin/env bash
# MongoDB backup/restore benchmark (see bench/mongo_backup.rs for what is measured).
#
#   bench/mongo.sh [--documents N] [--collections N] [--jobs N] [--keep]
#
# Runs against DBKEEPER_BENCH_MONGO_URL if set. Otherwise it starts its own SecantusDB Rust
# server (secantusd-rs, the fast build benchmarks use) on port
# DBKEEPER_BENCH_MONGO_PORT (58018), with its data under target/bench-secantus, and stops that
# server (and only it) when done. The binary is taken from $SECANTUSD_RS, then
# target/services/cargo/bin (what `SECANTUS_SERVER=rs scripts/services.sh start` builds), then
# $PATH. Each phase runs in its own process under /usr/bin/time, which gives its peak RSS.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PORT=${DBKEEPER_BENCH_MONGO_PORT:-58018}
DATA="$ROOT/target/bench-secantus"
LOG="$ROOT/target/bench-secantus.log"
server_pid=

log() { printf '[bench] %s\n' "$*" >&2; }
die() { printf '[bench] ERROR: %s\n' "$*" >&2; exit 1; }

find_server() {
    local candidate
    for candidate in "${SECANTUSD_RS:-}" "$ROOT/target/services/cargo/bin/secantusd-rs" \
        "$(command -v secantusd-rs 2>/dev/null || true)"; do
        [[ -n $candidate && -x $candidate ]] && { echo "$candidate"; return; }
    done
    die "secantusd-rs not found: set SECANTUSD_RS, or build it with 'SECANTUS_SERVER=rs scripts/services.sh start' \
(cargo install secantus-mdb --version 0.5.3-beta.193 --ignore-rust-version --locked)"
}

stop_server() {
    if [[ -n $server_pid ]] && kill -0 "$server_pid" 2>/dev/null; then
        log "stopping secantusd-rs (pid $server_pid)"
        kill "$server_pid"
        wait "$server_pid" 2>/dev/null || true
    fi
}

if [[ -n ${DBKEEPER_BENCH_MONGO_URL:-} ]]; then
    url=$DBKEEPER_BENCH_MONGO_URL
else
    (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && die "port $PORT is in use: set DBKEEPER_BENCH_MONGO_PORT"
    server=$(find_server)
    rm -rf "$DATA"
    mkdir -p "$DATA"
    log "starting $server on 127.0.0.1:$PORT (log $LOG)"
    "$server" --host 127.0.0.1 --port "$PORT" --storage-path "$DATA" --log-level WARNING >"$LOG" 2>&1 &
    server_pid=$!
    for _ in $(seq 1 120); do
        (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
        kill -0 "$server_pid" 2>/dev/null || die "secantusd-rs exited; see $LOG"
        sleep 0.5
    done
    url="mongodb://127.0.0.1:$PORT"
fi

cd "$ROOT"
cargo bench --bench mongo_backup --no-run >&2
bin=$(cargo bench --bench mongo_backup --no-run --message-format json 2>/dev/null |
    sed -n 's/.*"executable":"\([^"]*mongo_backup[^"]*\)".*/\1/p' | tail -1)
[[ -x $bin ]] || die "could not find the benchmark binary"
archive="$ROOT/target/bench-mongo.dbk.tar"
results=$(mktemp)
trap 'stop_server; rm -rf "$DATA" "$results"' EXIT

# One process per phase: its line on stdout, then its peak RSS (KiB) from /usr/bin/time.
phase() {
    local rss_file line
    rss_file=$(mktemp)
    line=$(/usr/bin/time -f '%M' -o "$rss_file" "$bin" "$1" --url "$url" --archive "$archive" "${@:2}")
    printf '%s rss_kib=%s\n' "$line" "$(tail -1 "$rss_file")" | tee -a "$results" >&2
    rm -f "$rss_file"
}

phase generate "$@"
phase drain "$@" >/dev/null # warm-up: neither side pays for the first read
: >"$results"
# The machine is shared and noisy: alternate the two sides of each comparison and keep each
# side's best time (and its worst peak RSS).
for _ in 1 2 3; do
    phase drain "$@"
    phase backup "$@"
done
for _ in 1 2; do
    phase restore "$@"
    phase insert "$@"
done
"$bin" cleanup --url "$url" --archive "$archive" "$@"

awk -v url="$url" '
    { for (i = 1; i <= NF; i++) { split($i, kv, "="); v[$1, kv[1]] = kv[2] } }
    $1 ~ /^phase=/ { p = substr($1, 7); s = v[$1, "seconds"] + 0; r = v[$1, "rss_kib"] / 1024
                     if (!(p in secs) || s < secs[p]) secs[p] = s
                     if (!(p in rss) || r > rss[p]) rss[p] = r
                     docs[p] = v[$1, "documents"]; bytes[p] = v[$1, "bytes"] }
    END {
        printf "MongoDB backup/restore benchmark (%s; best time of 3 and of 2 runs, worst peak RSS)\n", url
        printf "  data: %d documents, %.1f MiB of BSON; archive %.1f MiB\n",
            docs["drain"], bytes["drain"] / 1048576, bytes["backup"] / 1048576
        printf "  %-18s %7.2f s   peak RSS %6.1f MiB\n", "raw cursor drain", secs["drain"], rss["drain"]
        printf "  %-18s %7.2f s   peak RSS %6.1f MiB   ratio %.2fx (target <= 1.3x)\n",
            "dbkeeper backup", secs["backup"], rss["backup"], secs["backup"] / secs["drain"]
        printf "  %-18s %7.2f s   (documents preloaded, untimed; same batches, jobs, indexes)\n",
            "raw insert_many", secs["insert"]
        printf "  %-18s %7.2f s   peak RSS %6.1f MiB   ratio %.2fx (target <= 1.3x)\n",
            "dbkeeper restore", secs["restore"], rss["restore"], secs["restore"] / secs["insert"]
        if (docs["backup"] != docs["drain"] || docs["restore"] != docs["drain"] || docs["insert"] != docs["drain"])
            { print "  MISMATCH: phases saw different document counts"; exit 1 }
    }' "$results"
