#!/usr/bin/env bash
# The README's first command: the whole dbkeeper story, end to end, against
# real servers, in a minute. Every dbkeeper invocation is echoed before it
# runs (`+ dbkeeper ...`) so the output doubles as a tutorial.
#
#   scripts/demo.sh
#
# It builds the binary, starts the services (scripts/services.sh),
# works in freshly created, uniquely named databases (so it never touches
# anything else and can run repeatedly), and drops them again at the end.
#
# Environment:
#   DBKEEPER_TEST_PG_URL / DBKEEPER_TEST_MONGO_URL  use existing servers
#                             (the demo creates and drops its own databases
#                             on them)
#   DBKEEPER_KEEP_SERVICES=1  leave the services running afterwards
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"
cd "$DBKEEPER_ROOT"

# The debug profile builds dependencies optimised (Cargo.toml) and shares its
# build with scripts/test.sh, so the demo starts in seconds after the tests.
DBKEEPER_BIN="$DBKEEPER_ROOT/target/debug/dbkeeper"
PSQL=${PSQL:-psql}

step_no=0
step() {
    step_no=$((step_no + 1))
    printf '\n=== Step %d: %s\n' "$step_no" "$*"
}

# Show the command as a reader would type it (`dbkeeper`, not the path into
# target/), quoted so it can be copied, then run it.
dbkeeper() {
    printf '+ dbkeeper'
    printf ' %q' "$@"
    printf '\n'
    "$DBKEEPER_BIN" "$@"
}

# Never print a password that an externally supplied URL may carry.
redact() { sed -E 's#(://[^:/@]*):[^@/]*@#\1:***@#' <<<"$1"; }

# Same server, different database: replace the URL's path, keep its query
# (e.g. ?sslmode=..., ?replicaSet=...). Works for postgres:// and mongodb://.
url_with_db() {
    local url=$1 db=$2
    [[ $url =~ ^([a-zA-Z][a-zA-Z0-9+.-]*://[^/?]*)(/[^?]*)?(\?.*)?$ ]] ||
        die "cannot parse URL $(redact "$url")"
    printf '%s/%s%s\n' "${BASH_REMATCH[1]}" "$db" "${BASH_REMATCH[3]}"
}

# Mongo databases are dropped with whatever client is at hand: the pymongo
# that SecantusDB's venv brings, else mongosh. With the bundled SecantusDB
# (in-memory storage) they would vanish on stop anyway.
mongo_drop_db() {
    local url=$1 db=$2 py="$DBKEEPER_ROOT/target/services/secantus-venv/bin/python"
    if [[ -x $py ]] && "$py" -c 'import pymongo' 2>/dev/null; then
        "$py" - "$url" "$db" <<'PY'
import sys, pymongo
client = pymongo.MongoClient(sys.argv[1], serverSelectionTimeoutMS=5000)
client.drop_database(sys.argv[2])
PY
    elif command -v mongosh >/dev/null 2>&1; then
        mongosh --quiet "$url" --eval "db.getSiblingDB('$db').dropDatabase()" >/dev/null
    else
        log "no MongoDB client to drop database $db with; drop it by hand"
        return 1
    fi
}

# Seeds the MongoDB demo database through pymongo (from SecantusDB's venv),
# as an application would; dbkeeper itself never needs a client library.
mongo_seed() {
    local url=$1 db=$2 py="$DBKEEPER_ROOT/target/services/secantus-venv/bin/python"
    [[ -x $py ]] || die "no pymongo to seed MongoDB with (expected $py; run scripts/services.sh start)"
    "$py" - "$url" "$db" <<'PY'
import datetime, sys
from decimal import Decimal
import pymongo
from bson import Decimal128
client = pymongo.MongoClient(sys.argv[1], serverSelectionTimeoutMS=5000)
db = client[sys.argv[2]]
now = datetime.datetime.now(datetime.timezone.utc)
users = [{"email": f"user{i}@example.com", "full_name": f"User {i}", "status": "active",
          "created_at": now} for i in range(300)]
user_ids = db.users.insert_many(users).inserted_ids
products = [{"sku": f"SKU-{i:05d}", "name": f"Product {i}", "price": Decimal128(Decimal(f"{i}.99")),
             "stock": i % 40, "status": "active", "tags": ["demo"]} for i in range(1, 151)]
db.products.insert_many(products)
orders = [{"user_id": user_ids[i % len(user_ids)],
           "items": [{"sku": f"SKU-{1 + i % 150:05d}", "quantity": 1 + i % 3, "unit_price": 9.99}],
           "total": 9.99 * (1 + i % 3), "status": "paid" if i % 3 else "pending", "created_at": now}
          for i in range(1000)]
db.orders.insert_many(orders)
print(f"seeded {db.users.count_documents({})} users, {db.products.count_documents({})} products, "
      f"{db.orders.count_documents({})} orders")
PY
}

# Runs on every exit, success or not: drop the demo databases first (needs
# the servers), then stop the services this run started.
PG_DBS=()
MONGO_DBS=()
cleanup() {
    local status=$? db
    # A dropped database is demo state only; failing to drop must not mask
    # the demo's own exit status.
    set +e
    if ((${#PG_DBS[@]})); then
        for db in "${PG_DBS[@]}"; do
            # WITH (FORCE): a failed step may have left a connection open.
            # client_min_messages: no "does not exist, skipping" notices
            # for the databases a step never got to create.
            PGOPTIONS='-c client_min_messages=warning' \
                "$PSQL" -q -X -d "$DBKEEPER_TEST_PG_URL" -v ON_ERROR_STOP=1 \
                -c "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null ||
                log "could not drop PostgreSQL database $db"
        done
    fi
    if ((${#MONGO_DBS[@]})); then
        for db in "${MONGO_DBS[@]}"; do
            mongo_drop_db "$DBKEEPER_TEST_MONGO_URL" "$db" || log "could not drop MongoDB database $db"
        done
    fi
    services_stop_tracked
    if ((status == 0)); then
        printf '\nDemo finished successfully.\n'
    else
        printf '\nDemo FAILED (exit %d) at step %d.\n' "$status" "$step_no" >&2
    fi
    exit "$status"
}
trap cleanup EXIT

# Not a numbered step: building is setup, not part of the story.
printf '=== Building dbkeeper\n'
ensure_build_prereqs
printf '+ cargo build\n'
cargo build

step "start PostgreSQL, a MongoDB-compatible server and an S3 API server"
services_start_tracked
# psql is only used for demo setup/teardown; dbkeeper itself needs no client.
command -v "$PSQL" >/dev/null 2>&1 || apt_install postgresql-client

# Unique per run: timestamp for the reader, pid against two runs in the same
# second. Lowercase only, so the names need no quoting anywhere.
DEMO_ID="demo_$(date +%Y%m%d_%H%M%S)_$$"
PG_DB=$DEMO_ID
PG_RESTORED_DB="${DEMO_ID}_restored"
MONGO_DB=$DEMO_ID
MONGO_RESTORED_DB="${DEMO_ID}_restored"
MASKED_DB="${DEMO_ID}_masked"
PG_FROM_S3_DB="${DEMO_ID}_from_s3"
MONGO_FROM_S3_DB="${DEMO_ID}_from_s3"
# Registered before creation so cleanup drops them whatever happens next
# (dropping is IF EXISTS / a no-op for names never created).
PG_DBS=("$PG_DB" "$PG_RESTORED_DB" "$MASKED_DB" "$PG_FROM_S3_DB")
MONGO_DBS=("$MONGO_DB" "$MONGO_RESTORED_DB" "$MASKED_DB" "$MONGO_FROM_S3_DB")

printf '+ psql -c "CREATE DATABASE %s"\n' "$PG_DB"
"$PSQL" -q -X -d "$DBKEEPER_TEST_PG_URL" -v ON_ERROR_STOP=1 -c "CREATE DATABASE \"$PG_DB\""
# MongoDB creates a database on first write, so naming it is enough.

# dbkeeper reads its connections from these (see `dbkeeper --help`).
DBKEEPER_PG_URL=$(url_with_db "$DBKEEPER_TEST_PG_URL" "$PG_DB")
DBKEEPER_MONGO_URL=$(url_with_db "$DBKEEPER_TEST_MONGO_URL" "$MONGO_DB")
export DBKEEPER_PG_URL DBKEEPER_MONGO_URL
PG_RESTORED_URL=$(url_with_db "$DBKEEPER_TEST_PG_URL" "$PG_RESTORED_DB")
MONGO_RESTORED_URL=$(url_with_db "$DBKEEPER_TEST_MONGO_URL" "$MONGO_RESTORED_DB")
printf 'export DBKEEPER_PG_URL=%s\n' "$(redact "$DBKEEPER_PG_URL")"
printf 'export DBKEEPER_MONGO_URL=%s\n' "$(redact "$DBKEEPER_MONGO_URL")"

step "check both servers are reachable"
dbkeeper ping

step "see which migrations are pending, on both engines (read-only)"
dbkeeper migrate status

step "apply migrations up to V4 on both engines (migrations/, mongo_migrations/)"
dbkeeper migrate up --to 4

step "seed demo data"
printf '+ psql <<SQL (customers, products, warehouses, stock, orders)\n'
"$PSQL" -q -X -d "$DBKEEPER_PG_URL" -v ON_ERROR_STOP=1 <<'SQL'
INSERT INTO customers (email, full_name)
SELECT 'customer' || g || '@example.com', 'Customer ' || g FROM generate_series(1, 500) g;
INSERT INTO products (sku, name, price_cents)
SELECT 'SKU-' || lpad(g::text, 5, '0'), 'Product ' || g, 100 + g * 7 FROM generate_series(1, 200) g;
INSERT INTO warehouses (code, city) VALUES ('BER', 'Berlin'), ('LIS', 'Lisbon'), ('OSL', 'Oslo');
INSERT INTO stock (warehouse_id, product_id, quantity)
SELECT w.id, p.id, (p.id * 13 + w.id) % 50 FROM warehouses w CROSS JOIN products p;
INSERT INTO orders (customer_id, status)
SELECT 1 + g % 500, CASE WHEN g % 4 = 0 THEN 'paid' ELSE 'pending' END FROM generate_series(1, 2000) g;
INSERT INTO order_items (order_id, product_id, quantity, unit_price_cents)
SELECT o.id, 1 + (o.id + k * 67) % 200, 1 + k, 100 + k FROM orders o CROSS JOIN generate_series(1, 3) k;
-- The example procedure moves stock between warehouses in one transaction.
CALL transfer_stock(1, 2, 1, 1);
SQL
printf '+ mongo_seed (users, products, orders)\n'
mongo_seed "$DBKEEPER_MONGO_URL" "$MONGO_DB"

step "apply the rest: V5 builds an index CONCURRENTLY (PostgreSQL) and renames a field in every user document (MongoDB)"
dbkeeper migrate up --dry-run --engine mongo
dbkeeper migrate up
dbkeeper migrate status

step "back up both databases into one archive"
DEMO_BACKUPS="$DBKEEPER_ROOT/target/demo-backups"
dbkeeper backup --output "$DEMO_BACKUPS"
dbkeeper list "$DEMO_BACKUPS"
# The newest complete archive (list sorts newest first).
ARCHIVE=$("$DBKEEPER_BIN" list "$DEMO_BACKUPS" --json | sed -n 's/^ *"path": "\(.*\)",$/\1/p' | head -n 1)
[[ -n $ARCHIVE ]] || die "backup produced no archive"

step "check the archive offline: every member's SHA-256, every chunk decompressed and re-counted"
dbkeeper verify "$ARCHIVE"

step "restore it into fresh databases (checked before anything is touched, counts verified after)"
dbkeeper restore "$ARCHIVE" --pg-url "$PG_RESTORED_URL" --mongo-url "$MONGO_RESTORED_URL"

step "prove the restore: counts, sequences, indexes, validators, schema and every row's content"
dbkeeper verify "$ARCHIVE" --deep --pg-url "$PG_RESTORED_URL" --mongo-url "$MONGO_RESTORED_URL"

step "restore a masked copy for a test environment (docs/masking.md): same key, same stand-ins in both engines"
MASK_DIR="$DBKEEPER_ROOT/target/demo-mask"
mkdir -p "$MASK_DIR"
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$MASK_DIR/mask.key"
cat >"$MASK_DIR/mask.toml" <<'TOML'
key_file = "mask.key"

[postgres."public.customers"]
email = "email"
full_name = "name"

[postgres."public.products"]
name = "keep"

[postgres."public.warehouses"]
city = "keep"

[mongo.users]
email = "email"
display_name = "name"
phone = "null"

[mongo.products]
name = "keep"
TOML
printf '+ cat %s\n' "$MASK_DIR/mask.toml"
cat "$MASK_DIR/mask.toml"
MASKED_PG_URL=$(url_with_db "$DBKEEPER_TEST_PG_URL" "$MASKED_DB")
MASKED_MONGO_URL=$(url_with_db "$DBKEEPER_TEST_MONGO_URL" "$MASKED_DB")
dbkeeper restore "$ARCHIVE" --mask "$MASK_DIR/mask.toml" --pg-url "$MASKED_PG_URL" --mongo-url "$MASKED_MONGO_URL"
printf '+ psql: customer 1 before (production) and after (masked copy)\n'
"$PSQL" -X -d "$DBKEEPER_PG_URL" -c "SELECT id, email, full_name FROM customers WHERE id = 1"
"$PSQL" -X -d "$MASKED_PG_URL" -c "SELECT id, email, full_name FROM customers WHERE id = 1"

step "back up into a bucket of the local S3 server, list it there, restore from it"
# moto accepts any credentials; a real bucket takes the standard AWS_* variables the same way.
export AWS_ACCESS_KEY_ID=demo AWS_SECRET_ACCESS_KEY=demo AWS_REGION=us-east-1
export AWS_ENDPOINT_URL=$DBKEEPER_TEST_S3_ENDPOINT
DEMO_BUCKET="${DEMO_ID//_/-}"
printf '+ curl -X PUT %s/%s   # create the bucket\n' "$AWS_ENDPOINT_URL" "$DEMO_BUCKET"
curl -sf -X PUT "$AWS_ENDPOINT_URL/$DEMO_BUCKET" >/dev/null || die "could not create bucket $DEMO_BUCKET"
dbkeeper backup --output "s3://$DEMO_BUCKET/nightly/"
dbkeeper list "s3://$DEMO_BUCKET/nightly/"
S3_ARCHIVE=$("$DBKEEPER_BIN" list "s3://$DEMO_BUCKET/nightly/" --json | sed -n 's/^ *"path": "\(.*\)",$/\1/p' | head -n 1)
[[ $S3_ARCHIVE == s3://* ]] || die "the backup to the bucket produced no archive"
dbkeeper verify "$S3_ARCHIVE"
dbkeeper restore "$S3_ARCHIVE" --pg-url "$(url_with_db "$DBKEEPER_TEST_PG_URL" "$PG_FROM_S3_DB")" \
    --mongo-url "$(url_with_db "$DBKEEPER_TEST_MONGO_URL" "$MONGO_FROM_S3_DB")"

step "encrypt a backup with age: its integrity checks need no key, reading its data does"
AGE_DIR="$DBKEEPER_ROOT/target/demo-age"
rm -rf "$AGE_DIR" && mkdir -p "$AGE_DIR"
age-keygen -o "$AGE_DIR/key.txt" 2>/dev/null || die "age-keygen failed (Debian package age)"
RECIPIENT=$(age-keygen -y "$AGE_DIR/key.txt")
ENCRYPTED="$DEMO_BACKUPS/encrypted-$DEMO_ID.dbk.tar"
dbkeeper backup --output "$ENCRYPTED" --recipient "$RECIPIENT"
dbkeeper verify "$ENCRYPTED"
dbkeeper verify "$ENCRYPTED" --identity "$AGE_DIR/key.txt"

step "roll the newest migration back on both engines (down scripts captured at apply time)"
dbkeeper migrate down --steps 1
dbkeeper migrate status
