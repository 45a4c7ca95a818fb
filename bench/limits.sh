#!/usr/bin/env bash
# The machine's own limits, for the ratios in bench/README.md. In a scratch
# database (dropped at the end) on the Postgres the services use:
#   append  pgbench, single-event append transactions through
#           the log's append_batch as the Postgres adapter sends them
#           (events/bench/append.sql), at each of APPEND_CLIENTS clients;
#   insert  pgbench, the plain reference for an append: one INSERT of a
#           ~300-byte jsonb event into a table with a primary key and a
#           stream index, one transaction each (bench/pgbench/insert.sql),
#           at each of APPEND_CLIENTS clients;
#   create_work  pgbench, the rows one create writes (the event, its read-model
#           row, its change-feed row) in one transaction each, without HTTP,
#           sealing or batching (bench/pgbench/create_work.sql), at each of
#           APPEND_CLIENTS clients: the database's ceiling for a create's rows;
#   create_batched  pgbench, the same rows for BATCH (32) creates per
#           transaction, one multi-row INSERT per table, at BATCH_CLIENTS (2)
#           clients (bench/pgbench/create_batched.sql): the database's ceiling
#           for a create's rows when per-transaction costs are shared as
#           Tasklog shares them; its creates/s is tps x BATCH;
#   patch_batched  pgbench, the rows of BATCH (32) title patches per
#           transaction as the append worker and the projector write them:
#           the events, the projector's read and upsert of the task rows (no
#           HOT update: updated_at is indexed), the change-feed rows, at
#           BATCH_CLIENTS clients over PATCH_ROWS seeded tasks
#           (bench/pgbench/patch_batched.sql): the database's ceiling for a
#           patch's rows; its patches/s is tps x BATCH;
#   copy    COPY of ROWS read-model rows over OWNERS owners into a fresh
#           index-less generation table, then its indexes, as `projector
#           rebuild` does (rows/s for the COPY alone and with the indexes);
#   list    pgbench, the list query's first page for one owner
#           (bench/pgbench/list.sql) at LIST_CLIENTS clients over those rows.
# Figures go to stdout as one JSON object per line; progress to stderr. Each
# pgbench figure carries cpu_us_per_tx: the whole machine's busy CPU time
# (/proc/stat, pgbench's own included) over the run per transaction, the
# budget a Tasklog request would have to fit in to match that rate on this
# machine (run it on an otherwise idle machine: every process counts).
#
#   bench/limits.sh                      # everything
#   ONLY=append bench/limits.sh          # or insert, create_work, create_batched, patch_batched, copy, list (list loads the rows
#                                        # as copy does, without its figures)
#
# Environment: PGHOST (127.0.0.1), PGPORT (5432), PGUSER (postgres),
# SECONDS_EACH (15), APPEND_CLIENTS ("1 16 32"), LIST_CLIENTS (32), BATCH (32),
# BATCH_CLIENTS (2), PATCH_ROWS (64000),
# ROWS (1000000), OWNERS (10000), THREADS (nproc), ONLY (append,insert,copy,list),
# APPEND_NOTIFY (1; 0 measures appends without the NOTIFY).
set -euo pipefail
cd "$(dirname "$0")/.."

export PGHOST=${PGHOST:-127.0.0.1} PGPORT=${PGPORT:-5432} PGUSER=${PGUSER:-postgres}
SECONDS_EACH=${SECONDS_EACH:-15}
APPEND_CLIENTS=${APPEND_CLIENTS:-1 16 32}
LIST_CLIENTS=${LIST_CLIENTS:-32}
ROWS=${ROWS:-1000000}
OWNERS=${OWNERS:-10000}
THREADS=${THREADS:-$(nproc)}
BATCH=${BATCH:-32}
BATCH_CLIENTS=${BATCH_CLIENTS:-2}
PATCH_ROWS=${PATCH_ROWS:-64000}
ONLY=${ONLY:-append,insert,create_work,create_batched,patch_batched,copy,list}
DB=tasklog_limits_$$
TMP=$(mktemp -d)

say() { printf '==> %s\n' "$*" >&2; }
wants() { [[ ",$ONLY," == *",$1,"* ]]; }
psql_db() { psql -X -q -v ON_ERROR_STOP=1 -d "$DB" "$@"; }

cleanup() {
    rm -rf "$TMP"
    psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
}
trap cleanup EXIT

machine() {
    local cpu load
    cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
    load=$(cut -d' ' -f1-3 /proc/loadavg)
    printf '{"figure":"machine","nproc":%s,"cpu":"%s","loadavg":"%s","postgres":"%s"}\n' \
        "$(nproc)" "$cpu" "$load" "$(psql -X -Atqd postgres -c 'show server_version')"
}

# The machine's busy CPU time so far, in clock ticks (/proc/stat's first line:
# user, nice, system, irq, softirq; not idle, iowait or steal, the time the
# hypervisor gave to others; guest time is already inside user).
busy_ticks() { awk '/^cpu /{ print $2 + $3 + $4 + $7 + $8; exit }' /proc/stat; }

# pgbench's tps, mean latency and the machine's CPU per transaction as one JSON line.
run_pgbench() { # figure, clients, script, extra pgbench args...
    local figure=$1 clients=$2 script=$3; shift 3
    local threads=$(( clients < THREADS ? clients : THREADS ))
    say "$figure: $clients clients, ${SECONDS_EACH}s"
    local out busy0 busy1 t0 t1
    busy0=$(busy_ticks); t0=$(date +%s.%N)
    out=$(pgbench -n -M prepared -c "$clients" -j "$threads" -T "$SECONDS_EACH" -f "$script" "$@" "$DB" 2>&1) \
        || { echo "$out" >&2; exit 1; }
    busy1=$(busy_ticks); t1=$(date +%s.%N)
    local tps lat failed txs cpu
    tps=$(echo "$out" | sed -n 's/^tps = \([0-9.]*\) (without initial connection time)/\1/p')
    lat=$(echo "$out" | sed -n 's/^latency average = \([0-9.]*\) ms/\1/p')
    failed=$(echo "$out" | sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p')
    txs=$(echo "$out" | sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p')
    # Ticks to microseconds; the connection set-up pgbench does before its
    # clock starts is inside the window too (a few ms in 15 s).
    cpu=$(awk -v b="$busy0" -v e="$busy1" -v n="${txs:-0}" -v hz="$(getconf CLK_TCK)" \
        'BEGIN { if (n > 0) printf "%.0f", (e - b) * 1e6 / hz / n; else printf "null" }')
    printf '{"figure":"%s","clients":%s,"seconds":%s,"tps":%s,"latency_avg_ms":%s,"failed":%s,"cpu_us_per_tx":%s,"machine_busy":%.2f,"load":"%s"}\n' \
        "$figure" "$clients" "$SECONDS_EACH" "${tps:-null}" "${lat:-null}" "${failed:-0}" "$cpu" \
        "$(awk -v b="$busy0" -v e="$busy1" -v a="$t0" -v z="$t1" -v hz="$(getconf CLK_TCK)" -v c="$(nproc)" 'BEGIN { printf "%.2f", (e - b) / hz / (z - a) / c }')" \
        "$(cut -d' ' -f1-3 /proc/loadavg)"
}

# Applies a crate's migrations the way migrate_schema does: in their own schema.
# APPEND_NOTIFY=0 drops the NOTIFY from the append functions, to measure what
# it costs (a notifying transaction holds a database-wide lock through its
# commit, so notifying commits cannot share a WAL flush).
migrate() { # schema, directory
    psql_db -c "CREATE SCHEMA IF NOT EXISTS $1"
    for f in "$2"/*.sql; do
        if [ "${APPEND_NOTIFY:-1}" = 0 ]; then
            sed 's/PERFORM pg_notify([^;]*;/NULL;/' "$f" > "$TMP/migration.sql"
        else
            cp "$f" "$TMP/migration.sql"
        fi
        PGOPTIONS="-c search_path=$1,public" psql_db -f "$TMP/migration.sql"
    done
}

say "scratch database $DB"
psql -X -q -d postgres -c "CREATE DATABASE $DB"
machine

if wants append; then
    migrate eventlog events/migrations
    for c in $APPEND_CLIENTS; do
        run_pgbench pgbench_append "$c" events/bench/append.sql
    done
    psql_db -At -f events/bench/count.sql
fi

if wants insert; then
    psql_db -f bench/pgbench/insert_table.sql
    for c in $APPEND_CLIENTS; do
        run_pgbench pgbench_insert "$c" bench/pgbench/insert.sql
    done
fi

if wants create_work; then
    wants append || migrate eventlog events/migrations
    migrate readmodel readmodel/migrations
    for c in $APPEND_CLIENTS; do
        run_pgbench pgbench_create_work "$c" bench/pgbench/create_work.sql
    done
fi

if wants create_batched; then
    wants append || wants create_work || migrate eventlog events/migrations
    wants create_work || migrate readmodel readmodel/migrations
    for c in $BATCH_CLIENTS; do
        # One line as the others print, with the batch and the creates/s it means.
        run_pgbench pgbench_create_batched "$c" bench/pgbench/create_batched.sql -D batch="$BATCH" \
            | python3 -c 'import json,sys; r=json.loads(sys.stdin.read()); b=int(sys.argv[1]); r["batch"]=b; r["creates_per_s"]=round((r["tps"] or 0)*b); r["cpu_us_per_create"]=None if r["cpu_us_per_tx"] is None else round(r["cpu_us_per_tx"]/b); print(json.dumps(r))' "$BATCH"
    done
fi

if wants patch_batched; then
    wants append || wants create_work || wants create_batched || migrate eventlog events/migrations
    wants create_work || wants create_batched || migrate readmodel readmodel/migrations
    say "seeding $PATCH_ROWS tasks to patch"
    psql_db -v rows="$PATCH_ROWS" -v owners="$OWNERS" -f bench/pgbench/patch_tasks.sql
    for c in $BATCH_CLIENTS; do
        run_pgbench pgbench_patch_batched "$c" bench/pgbench/patch_batched.sql -D batch="$BATCH" -D rows="$PATCH_ROWS" \
            | python3 -c 'import json,sys; r=json.loads(sys.stdin.read()); b=int(sys.argv[1]); r["batch"]=b; r["patches_per_s"]=round((r["tps"] or 0)*b); r["cpu_us_per_patch"]=None if r["cpu_us_per_tx"] is None else round(r["cpu_us_per_tx"]/b); print(json.dumps(r))' "$BATCH"
    done
fi

if wants copy || wants list; then
    say "read model from readmodel/migrations"
    wants create_work || wants create_batched || wants patch_batched || migrate readmodel readmodel/migrations
    say "generating $ROWS rows over $OWNERS owners"
    psql_db -v rows="$ROWS" -v owners="$OWNERS" -f bench/pgbench/rows.sql > "$TMP/tasks.tsv"
    # What `projector rebuild` faces: a fresh, index-less generation table,
    # filled in bulk, then indexed, then swapped in behind readmodel.tasks.
    psql_db -c "SELECT readmodel.create_generation(2)" >/dev/null
    say "COPY into an index-less generation table"
    t0=$(date +%s.%N)
    psql_db -c "\\copy readmodel.tasks_g2 (id, owner_id, title, description, status, priority, due_at, tags, created_at, updated_at, completed_at, version) FROM '$TMP/tasks.tsv'"
    t1=$(date +%s.%N)
    say "building its indexes"
    psql_db -Atc "SELECT s || ';' FROM readmodel.generation_indexes(2) AS s" > "$TMP/indexes.sql"
    psql_db -f "$TMP/indexes.sql"
    t2=$(date +%s.%N)
    psql_db -c "SELECT readmodel.point_view_at(2)" >/dev/null
    wants copy && awk -v r="$ROWS" -v a="$t0" -v b="$t1" -v c="$t2" -v l="$(cut -d' ' -f1-3 /proc/loadavg)" 'BEGIN {
        printf "{\"figure\":\"copy_rows\",\"rows\":%d,\"seconds\":%.3f,\"rows_per_s\":%.0f,\"load\":\"%s\"}\n", r, b - a, r / (b - a), l
        printf "{\"figure\":\"copy_then_index_rows\",\"rows\":%d,\"seconds\":%.3f,\"rows_per_s\":%.0f,\"load\":\"%s\"}\n", r, c - a, r / (c - a), l }'
    psql_db -c "VACUUM ANALYZE readmodel.tasks_g2"
fi

if wants list; then
    run_pgbench pgbench_list "$LIST_CLIENTS" bench/pgbench/list.sql -D owners="$OWNERS"
fi
