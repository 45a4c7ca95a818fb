#!/usr/bin/env bash
# The read scale-out figures (bench/README.md, "Read scale-out"), each pair
# measured back to back so both sides see the same neighbours:
#   1. creates/s with the read model on the shared server against on a
#      second server (READMODEL_DATABASE_URL), closed loop, twice, A B A B;
#   2. list pages/s and CPU per page: a query service reading the read
#      model's primary against one reading its streaming replica
#      (READ_REPLICA_URLS), same data, A B A B;
#   3. read-your-writes wait through the replica (X-Min-Position read after
#      each create) at half the create rate measured in 1.
# The second server and its standby are the tests' replication pair
# (127.0.0.1:5437 and 5438), made when missing as deploy/local/test does.
# Needs the release binaries:
#   cargo build --release -p tasklog-command -p tasklog-query -p tasklog-projector -p tasklog-bench
#
#   bench/scaleout.sh            (DURATION=20s, OUT=bench-results/scaleout,
#                                 ONLY=create,list,ryw; RATE for ryw without create)
# The services inherit the environment: LIST_CACHE_MB=0 measures lists
# without the query service's page cache (every page read from Postgres).
set -euo pipefail
cd "$(dirname "$0")/.."
. deploy/local/lib.sh

DURATION=${DURATION:-20s}
ONLY=${ONLY:-create,list,ryw}
wants() { [[ ",$ONLY," == *",$1,"* ]]; }
OUT=${OUT:-bench-results/scaleout}
BIN=target/release
mkdir -p "$OUT"
for b in tasklog-command tasklog-query tasklog-projector tasklog-bench; do
    [ -x "$BIN/$b" ] || die "$BIN/$b is missing: cargo build --release -p tasklog-command -p tasklog-query -p tasklog-projector -p tasklog-bench"
done
ensure_postgres
ensure_redis
ensure_test_scaleout >/dev/null

PRIMARY=5432 SECOND=$TEST_PG_PRIMARY_PORT STANDBY=$TEST_PG_STANDBY_PORT
DB=tasklog_bench_scaleout
fresh_db() { # port
    psql -h 127.0.0.1 -p "$1" -U postgres -d postgres -qc "drop database if exists $DB with (force)" >/dev/null
    psql -h 127.0.0.1 -p "$1" -U postgres -d postgres -qc "create database $DB" >/dev/null
}

export REDIS_URL=redis://127.0.0.1:6379 RATE_LIMIT_AUTH=0 RATE_LIMIT_API=0 RUST_LOG=warn
export TASKLOG_ENV=development ACCESS_TOKEN_TTL_SECS=3600 DATABASE_MAX_CONNECTIONS=12
export JWT_SECRET=bench-scaleout-$(head -c 16 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')
export CURSOR_SECRET=bench-scaleout-cursor-secret-of-32-bytes-or-more

pids=()
stop_all() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    pids=()
}
trap stop_all EXIT

wait_up() { # url
    for _ in $(seq 1 120); do curl -fsS -o /dev/null "$1" && return; sleep 0.5; done
    die "not ready: $1"
}

# Starts command (81), query (82), projector (83) on 127.0.0.1:<base>8x with
# the given read model URL; prints nothing. $QUERY_PID is the query service.
start_system() { # port base, readmodel url
    local base=$1 readmodel=$2
    export DATABASE_URL=postgres://postgres@127.0.0.1:$PRIMARY/$DB
    MIMALLOC_PURGE_DELAY=0 BIND_ADDR=127.0.0.1:${base}81 "$BIN/tasklog-command" >> "$OUT/services.log" 2>&1 &
    pids+=($!)
    READMODEL_DATABASE_URL=$readmodel BIND_ADDR=127.0.0.1:${base}83 "$BIN/tasklog-projector" run >> "$OUT/services.log" 2>&1 &
    pids+=($!)
    READMODEL_DATABASE_URL=$readmodel BIND_ADDR=127.0.0.1:${base}82 "$BIN/tasklog-query" >> "$OUT/services.log" 2>&1 &
    QUERY_PID=$!
    pids+=($!)
    for port in 81 82 83; do wait_up "http://127.0.0.1:${base}$port/health/ready"; done
}

# CPU seconds (user + system) a process has used so far.
cpu_of() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.3f", ($14 + $15) / hz }' "/proc/$1/stat"; }
# CPU seconds the whole machine has used so far (all cores, not idle/iowait).
cpu_all() { awk -v hz="$(getconf CLK_TCK)" '/^cpu / { printf "%.3f", ($2 + $3 + $4 + $7 + $8) / hz }' /proc/stat; }

load() { # name, base, then load arguments
    local name=$1 base=$2; shift 2
    "$BIN/tasklog-bench" load "$@" --command-url "http://127.0.0.1:${base}81" --json > "$OUT/$name.json"
}
rate_of() { python3 -c "import json; print(round(json.load(open('$OUT/$1.json'))['total']['throughput_per_s']))"; }

if wants create; then
say "1. creates/s: read model on the shared server (A) against on a second server (B)"
for round in 1 2; do
    for side in A B; do
        fresh_db "$PRIMARY"; fresh_db "$SECOND"
        if [ "$side" = A ]; then rm_url=postgres://postgres@127.0.0.1:$PRIMARY/$DB; else rm_url=postgres://postgres@127.0.0.1:$SECOND/$DB; fi
        start_system 91 "$rm_url"
        load "create-$side$round" 91 create --users 32 --connections 32 --duration "$DURATION" \
            --query-url http://127.0.0.1:9182
        echo "create $side round $round: $(rate_of "create-$side$round")/s"
        stop_all
    done
done
fi

if wants list || wants ryw; then
say "2. list pages/s and CPU per page: the read model's primary (P) against its streaming replica (R)"
fresh_db "$SECOND"
fresh_db "$PRIMARY"
# The replica's query service must reach the standby's copy of this database.
for _ in $(seq 1 100); do
    psql -h 127.0.0.1 -p "$STANDBY" -U postgres -d "$DB" -Atqc 'select 1' >/dev/null 2>&1 && break
    sleep 0.2
done
start_system 91 "postgres://postgres@127.0.0.1:$SECOND/$DB"
PRIMARY_QUERY=$QUERY_PID
READMODEL_DATABASE_URL=postgres://postgres@127.0.0.1:$SECOND/$DB \
    READ_REPLICA_URLS=postgres://postgres@127.0.0.1:$STANDBY/$DB \
    DATABASE_URL=postgres://postgres@127.0.0.1:$PRIMARY/$DB \
    BIND_ADDR=127.0.0.1:9192 "$BIN/tasklog-query" >> "$OUT/services.log" 2>&1 &
REPLICA_QUERY=$!
pids+=($!)
wait_up http://127.0.0.1:9192/health/ready
for round in 1 2; do
    wants list || break
    for side in P R; do
        if [ "$side" = P ]; then port=9182 pid=$PRIMARY_QUERY; else port=9192 pid=$REPLICA_QUERY; fi
        before=$(cpu_of "$pid") all_before=$(cpu_all)
        load "list-$side$round" 91 list --users 32 --tasks-per-user 30 --connections 32 \
            --duration "$DURATION" --query-url "http://127.0.0.1:$port"
        after=$(cpu_of "$pid") all_after=$(cpu_all)
        python3 - "$OUT/list-$side$round.json" "$before" "$after" "$all_before" "$all_after" "$side" "$round" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
pages = r['total']['requests']
q = (float(sys.argv[3]) - float(sys.argv[2])) * 1000 / max(pages, 1)
m = (float(sys.argv[5]) - float(sys.argv[4])) * 1000 / max(pages, 1)
print(f"list {sys.argv[6]} round {sys.argv[7]}: {round(r['total']['throughput_per_s'])} pages/s, "
      f"p99 {r['total']['latency_ms']['p99']} ms, query service {q:.3f} ms CPU/page, "
      f"whole machine {m:.3f} ms CPU/page, errors {r['total']['errors']}")
PY
    done
done

wants ryw || exit 0
if [ -n "${RATE:-}" ]; then
    rate=$RATE max=$((RATE * 2))
else
    max=$(( ( $(rate_of create-A1) + $(rate_of create-A2) ) / 2 ))
    rate=$(( max / 2 > 0 ? max / 2 : 1 ))
fi
say "3. read-your-writes through the replica at $rate creates/s (half of $max)"
load ryw-replica 91 lag --users 32 --tasks-per-user 0 --rate "$rate" --duration "$DURATION" \
    --lag-probe min-position --query-url http://127.0.0.1:9192
load ryw-primary 91 lag --users 32 --tasks-per-user 0 --rate "$rate" --duration "$DURATION" \
    --lag-probe min-position --query-url http://127.0.0.1:9182
for side in replica primary; do
    python3 - "$OUT/ryw-$side.json" "$side" "$rate" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
lag = r['lag']['lag_ms']
print(f"read-your-writes via {sys.argv[2]} at {sys.argv[3]}/s: p50 {lag['p50']} ms, p99 {lag['p99']} ms, "
      f"max {lag['max']} ms, unresolved {r['lag']['unresolved']}, errors {r['total']['errors']}")
PY
done
fi
