#!/usr/bin/env bash
# Every figure of the README table in one session: each Tasklog run, then the
# machine's limit for it, one right after the other so both see the same
# neighbours. The services must be running (bench/README.md says how), with
# their pids in COMMAND_PID, QUERY_PID and PROJECTOR_PID for the memory figures.
# Results: one JSON file per run in OUT (default bench-results/), and a summary
# of the figures on stdout.
#
#   COMMAND_PID=.. QUERY_PID=.. PROJECTOR_PID=.. bench/figures.sh
#
# Environment: BENCH (target/release/tasklog-bench), DURATION (30s),
# SECONDS_EACH (30, pgbench), ROWS (200000) and OWNERS (2000) for COPY, the
# list query and the rebuild, ONLY (create,patch,list,lag,mixed,rebuild).
set -euo pipefail
cd "$(dirname "$0")/.."

BENCH=${BENCH:-target/release/tasklog-bench}
DURATION=${DURATION:-30s}
export SECONDS_EACH=${SECONDS_EACH:-30}
export ROWS=${ROWS:-200000} OWNERS=${OWNERS:-2000}
ONLY=${ONLY:-create,patch,list,lag,mixed,rebuild}
OUT=${OUT:-bench-results}
mkdir -p "$OUT"

say() { printf '==> %s\n' "$*" >&2; }
wants() { [[ ",$ONLY," == *",$1,"* ]]; }
rss=()
for name in command query projector; do
    var="${name^^}_PID"
    [ -n "${!var:-}" ] && rss+=(--rss "$name=${!var}" --cpu "$name=${!var}")
done
# CPU per request counts Postgres (the postmaster and its backends) and Redis
# too: found here unless POSTGRES_PID / REDIS_PID say otherwise.
POSTGRES_PID=${POSTGRES_PID:-$(head -n 1 "$(psql -h "${PGHOST:-127.0.0.1}" -U postgres -Atqc 'show data_directory' 2>/dev/null)/postmaster.pid" 2>/dev/null || true)}
REDIS_PID=${REDIS_PID:-$(redis-cli info server 2>/dev/null | tr -d '\r' | sed -n 's/^process_id://p')}
# Only the backends of the services' database (CPU_DATABASE): the server may
# be serving other work too.
[ -n "$POSTGRES_PID" ] && rss+=(--cpu "postgres=$POSTGRES_PID" --cpu-database "${CPU_DATABASE:-tasklog_bench}")
[ -n "$REDIS_PID" ] && rss+=(--cpu "redis=$REDIS_PID")
load() { # name, then load arguments
    local name=$1; shift
    say "tasklog-bench load $*"
    "$BENCH" load "$@" "${rss[@]}" --json > "$OUT/$name.json"
}
figure() { # file, python expression over r (the report)
    python3 -c "import json,sys; r=json.load(open('$1')); print($2)"
}

if wants create; then
    load create32 create --users 64 --connections 32 --duration "$DURATION"
    ONLY=append,insert,create_work,create_batched APPEND_CLIENTS=32 bench/limits.sh > "$OUT/limits-append.jsonl"
    figure "$OUT/create32.json" "'creates/s at 32 connections', round(r['total']['throughput_per_s']), 'p99 ms', r['total']['latency_ms']['p99'], 'errors', r['total']['errors'], 'cpu us per create', round(r.get('cpu_per_ok_us') or 0), {k: round(v['per_ok_us']) for k, v in r.get('cpu', {}).items()}"
    grep -E 'pgbench_(append|insert|create_work|create_batched)' "$OUT/limits-append.jsonl"
fi

if wants patch; then
    load patch32 patch --users 64 --connections 32 --duration "$DURATION"
    ONLY=patch_batched bench/limits.sh > "$OUT/limits-patch.jsonl"
    figure "$OUT/patch32.json" "'patches/s at 32 connections', round(r['total']['throughput_per_s']), 'p99 ms', r['total']['latency_ms']['p99'], 'expected 412', r['total']['expected_conflicts'], 'errors', r['total']['errors'], 'cpu us per patch', round(r.get('cpu_per_ok_us') or 0)"
    grep -E 'pgbench_patch_batched' "$OUT/limits-patch.jsonl"
fi

if wants list; then
    # Like for like: the first page only, over as many owners and rows as the
    # load generator seeded, against pgbench sending the same SQL.
    load list64 list --users 64 --tasks-per-user 30 --list-mix first --connections 64 --duration "$DURATION"
    ONLY=list ROWS=$((64 * 30)) OWNERS=64 bench/limits.sh > "$OUT/limits-list.jsonl"
    figure "$OUT/list64.json" "'first pages/s at 64 connections', round(r['total']['throughput_per_s']), 'p99 ms', r['total']['latency_ms']['p99'], 'errors', r['total']['errors'], 'cpu us per page', round(r.get('cpu_per_ok_us') or 0)"
    grep -E 'pgbench_list' "$OUT/limits-list.jsonl"
    # The whole mix (filters, search, next pages), which pgbench has no one query for.
    load list64mix list --users 64 --tasks-per-user 30 --connections 64 --duration "$DURATION"
    figure "$OUT/list64mix.json" "'list pages/s (whole mix) at 64 connections', round(r['total']['throughput_per_s']), 'p99 ms', r['total']['latency_ms']['p99'], 'errors', r['total']['errors']"
fi

if wants lag; then
    max=$(python3 -c "import json; print(json.load(open('$OUT/create32.json'))['total']['throughput_per_s'])")
    rate=$(python3 -c "print(max(1, round($max / 2)))")
    load lag lag --users 64 --rate "$rate" --duration "$DURATION"
    figure "$OUT/lag.json" "'lag at', $rate, 'creates/s: p50', r['lag']['lag_ms']['p50'], 'p99', r['lag']['lag_ms']['p99'], 'max', r['lag']['lag_ms']['max'], 'unresolved', r['lag']['unresolved'], 'poll ms', r['lag'].get('poll_interval_ms')"
fi

if wants mixed; then
    load mixed64 mixed --users 64 --connections 64 --duration "$DURATION"
    figure "$OUT/mixed64.json" "'mixed req/s at 64 connections', round(r['total']['throughput_per_s']), 'p99 ms', r['total']['latency_ms']['p99'], 'errors', r['total']['errors']"
fi

if wants rebuild; then
    ONLY=copy bench/limits.sh > "$OUT/limits-copy.jsonl"
    cat "$OUT/limits-copy.jsonl"
    bench/rebuild.sh > "$OUT/rebuild.jsonl"
    cat "$OUT/rebuild.jsonl"
fi

say "memory (VmHWM) at the end"
for f in "$OUT"/*.json; do
    figure "$f" "'$(basename "$f" .json)', {k: round(v['peak_kib'] / 1024, 1) for k, v in r['rss'].items()}, 'MiB peak; load', r['machine']['loadavg']"
done
