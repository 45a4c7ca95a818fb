#!/usr/bin/env bash
# Tasklog's side of the rebuild figure: ROWS TaskCreated events (the tasks
# bench/pgbench/rows.sql makes, as events) written straight into the log of a
# scratch database, then `tasklog-projector rebuild` timed over them. Compare
# with `copy_then_index_rows` from bench/limits.sh with the same ROWS.
# One JSON line on stdout; the scratch database is dropped at the end.
#
#   nice cargo build --release -p tasklog-projector
#   ROWS=1000000 bench/rebuild.sh
#
# Environment: PGHOST (127.0.0.1), PGPORT (5432), PGUSER (postgres),
# ROWS (1000000), OWNERS (10000), REDIS_URL (redis://127.0.0.1:6379),
# PROJECTOR (target/release/tasklog-projector), REBUILD_ARGS (--skip-redis).
set -euo pipefail
cd "$(dirname "$0")/.."

export PGHOST=${PGHOST:-127.0.0.1} PGPORT=${PGPORT:-5432} PGUSER=${PGUSER:-postgres}
ROWS=${ROWS:-1000000}
OWNERS=${OWNERS:-10000}
PROJECTOR=${PROJECTOR:-target/release/tasklog-projector}
REBUILD_ARGS=${REBUILD_ARGS:---skip-redis}
DB=tasklog_rebuild_$$

say() { printf '==> %s\n' "$*" >&2; }
[ -x "$PROJECTOR" ] || { echo "no $PROJECTOR: nice cargo build --release -p tasklog-projector" >&2; exit 1; }
cleanup() { psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true; }
trap cleanup EXIT

psql -X -q -d postgres -c "CREATE DATABASE $DB"
export DATABASE_URL="postgres://$PGUSER@$PGHOST:$PGPORT/$DB"
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379} REDIS_PREFIX="tasklog-rebuild-$$:"
say "migrating (the projector's status command applies every migration)"
"$PROJECTOR" status >/dev/null 2>&1 || true
psql -X -q -d "$DB" -c "CREATE SCHEMA IF NOT EXISTS eventlog"
if ! PGOPTIONS="-c search_path=eventlog" psql -X -Atq -d "$DB" -c "SELECT to_regclass('events')" | grep -q events; then
    for f in events/migrations/*.sql; do PGOPTIONS="-c search_path=eventlog,public" psql -X -q -v ON_ERROR_STOP=1 -d "$DB" -f "$f"; done
fi
say "writing $ROWS TaskCreated events"
psql -X -q -v ON_ERROR_STOP=1 -d "$DB" -v rows="$ROWS" -v owners="$OWNERS" -f events/bench/events.sql
say "tasklog-projector rebuild $REBUILD_ARGS"
t0=$(date +%s.%N)
# shellcheck disable=SC2086
"$PROJECTOR" rebuild $REBUILD_ARGS >&2
t1=$(date +%s.%N)
rows=$(psql -X -Atq -d "$DB" -c "SELECT count(*) FROM readmodel.tasks")
awk -v r="$rows" -v a="$t0" -v b="$t1" -v l="$(cut -d' ' -f1-3 /proc/loadavg)" 'BEGIN {
    printf "{\"figure\":\"projector_rebuild\",\"rows\":%d,\"seconds\":%.3f,\"rows_per_s\":%.0f,\"load\":\"%s\"}\n", r, b - a, r / (b - a), l }'
