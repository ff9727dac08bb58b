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
# The machine is shared and noisy: alternate the sides of each comparison run by run and
# compare medians (and the worst peak RSS). DBKEEPER_BENCH_RUNS backups (default 3), two
# restores unless DBKEEPER_BENCH_BACKUP_ONLY=1.
for _ in $(seq 1 "${DBKEEPER_BENCH_RUNS:-3}"); do
    phase drain "$@"
    phase backup "$@"
    phase backup-encrypted "$@"
done
if [[ ${DBKEEPER_BENCH_BACKUP_ONLY:-0} != 1 ]]; then
    for _ in 1 2; do
        phase restore "$@"
        phase insert "$@"
    done
fi
"$bin" cleanup --url "$url" --archive "$archive" "$@"

python3 - "$url" "$results" <<'PY'
import statistics, sys
url, path = sys.argv[1], sys.argv[2]
secs, rss, docs, size = {}, {}, {}, {}
for line in open(path):
    kv = dict(f.split("=", 1) for f in line.split())
    p = kv["phase"]
    secs.setdefault(p, []).append(float(kv["seconds"]))
    rss[p] = max(rss.get(p, 0), int(kv["rss_kib"]) / 1024)
    docs.setdefault(p, set()).add(int(kv["documents"]))
    size[p] = int(kv["bytes"])
med = {p: statistics.median(v) for p, v in secs.items()}
print(f"MongoDB backup/restore benchmark ({url}; medians of {len(secs['drain'])} alternating runs, worst peak RSS)")
print(f"  data: {max(docs['drain'])} documents, {size['drain'] / 1048576:.1f} MiB of BSON; archive {size['backup'] / 1048576:.1f} MiB, encrypted {size['backup-encrypted'] / 1048576:.1f} MiB")
print(f"  {'raw cursor drain':18} {med['drain']:7.2f} s   peak RSS {rss['drain']:6.1f} MiB")
print(f"  {'dbkeeper backup':18} {med['backup']:7.2f} s   peak RSS {rss['backup']:6.1f} MiB   ratio {med['backup'] / med['drain']:.2f}x (target <= 1.15x)")
print(f"  {'encrypted backup':18} {med['backup-encrypted']:7.2f} s   peak RSS {rss['backup-encrypted']:6.1f} MiB   ratio to backup {med['backup-encrypted'] / med['backup']:.2f}x (target <= 1.1x)")
print("  runs (s): " + "; ".join(f"{p} " + " ".join(f"{x:.2f}" for x in secs[p]) for p in ["drain", "backup", "backup-encrypted"]))
if "restore" in med:
    print(f"  {'raw insert_many':18} {med['insert']:7.2f} s   (documents preloaded, untimed; same batches, jobs, indexes)")
    print(f"  {'dbkeeper restore':18} {med['restore']:7.2f} s   peak RSS {rss['restore']:6.1f} MiB   ratio {med['restore'] / med['insert']:.2f}x (target <= 1.3x)")
if len(set().union(*docs.values())) != 1:
    print("  MISMATCH: phases saw different document counts")
    sys.exit(1)
PY
