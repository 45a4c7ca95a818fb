# Read scale-out on one machine, sourced by deploy/local/lib.sh: real
# PostgreSQL streaming replicas (their own clusters, made with
# `pg_basebackup -R`) and a real Redis Cluster (3 masters, 3 replicas).
# Used by `deploy/local/up --replicas N --redis-cluster`, `deploy/local/down`
# and `deploy/local/test`. Sourced, not run.
#
# What replication needs from a primary (checked by pg_allow_replication):
#   wal_level = replica or logical   (15's default; changing it needs a restart,
#                                      so this refuses instead of restarting)
#   max_wal_senders >= standbys + 1  (default 10; also restart-only: refused)
#   a pg_hba.conf line `host replication all 127.0.0.1/32 trust`
#                                     (added at the top when missing, then
#                                      `pg_reload_conf()`: a reload, no restart)
# hot_standby is on by default, so a standby answers reads as soon as it is
# consistent. Nothing else of the machine's cluster is touched.

# Ports: `up --replicas N` puts its standbys on 5433..5436; the tests' own
# primary is on 5437 and its standby on 5438. The Redis Cluster is on
# 7000-7005, shared by `up --redis-cluster` and the tests (each test keeps
# to a key prefix of its own).
TEST_PG_PRIMARY_PORT=${TEST_PG_PRIMARY_PORT:-5437}
TEST_PG_STANDBY_PORT=${TEST_PG_STANDBY_PORT:-5438}
REDIS_CLUSTER_BASE_PORT=${REDIS_CLUSTER_BASE_PORT:-7000}
# Data directories live where the postgres user can reach them whatever the
# permissions of the checkout.
SCALE_DIR=${TASKLOG_SCALE_DIR:-/var/tmp/tasklog-scaleout}

pg_bin() { # the directory of the server binaries (initdb, pg_ctl, pg_basebackup)
    local ver
    ver=$(ls /usr/lib/postgresql 2>/dev/null | sort -V | tail -n 1)
    [ -n "$ver" ] || die "no PostgreSQL server binaries under /usr/lib/postgresql (apt-get install postgresql)"
    echo "/usr/lib/postgresql/$ver/bin"
}

# PostgreSQL refuses to run as root: as root, server commands run as the
# `postgres` user the Debian package creates; otherwise as ourselves.
as_pg() {
    if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

pg_sql() { # port, sql
    psql -h 127.0.0.1 -p "$1" -U postgres -d postgres -Atqc "$2"
}

pg_port_up() { pg_isready -q -h 127.0.0.1 -p "$1" 2>/dev/null; }

# Makes an existing server accept streaming replication from 127.0.0.1, with
# a reload at most. Refuses (with what to change) when a restart would be needed.
pg_allow_replication() { # port, standbys wanted
    local port=$1 want=${2:-1} level senders used hba
    level=$(pg_sql "$port" "show wal_level")
    case "$level" in replica|logical) ;;
        *) die "the server on $port has wal_level=$level; streaming replicas need replica (set it and restart that server yourself)" ;;
    esac
    senders=$(pg_sql "$port" "show max_wal_senders")
    used=$(pg_sql "$port" "select count(*) from pg_stat_replication")
    [ $((senders - used)) -ge "$want" ] \
        || die "the server on $port has max_wal_senders=$senders with $used in use; $want more needed (a restart-only setting)"
    if pg_hba_allows_replication "$port"; then return; fi
    hba=$(pg_sql "$port" "show hba_file")
    say "allowing replication connections from 127.0.0.1 in $hba (then a reload, no restart)"
    as_root sed -i '1i host replication all 127.0.0.1/32 trust' "$hba"
    pg_sql "$port" "select pg_reload_conf()" >/dev/null
    for _ in $(seq 1 20); do pg_hba_allows_replication "$port" && return; sleep 0.25; done
    die "the server on $port still refuses replication connections (see $hba)"
}

pg_hba_allows_replication() { # port
    psql "host=127.0.0.1 port=$1 user=postgres dbname=replication replication=true" \
        -Atqc "IDENTIFY_SYSTEM" >/dev/null 2>&1
}

# A fresh primary of our own on `port` in `dir` (tests use it so they never
# depend on the machine's cluster configuration). Started, trust on loopback.
pg_make_primary() { # dir, port
    local dir=$1 port=$2 bin
    bin=$(pg_bin)
    if pg_port_up "$port"; then return; fi
    if [ ! -s "$dir/PG_VERSION" ]; then
        mkdir -p "$dir"; chmod 700 "$dir"
        [ "$(id -u)" -eq 0 ] && chown postgres: "$dir"
        as_pg "$bin/initdb" -D "$dir" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
        cat >> "$dir/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = ''
wal_level = replica
max_wal_senders = 10
max_connections = 200
fsync = on
shared_buffers = 64MB
CONF
        echo "host replication all 127.0.0.1/32 trust" >> "$dir/pg_hba.conf"
    fi
    pg_start_dir "$dir" "$port"
}

# A hot standby of the server on `primary_port`, in `dir`, listening on
# `port`: `pg_basebackup -R` writes primary_conninfo and standby.signal.
pg_make_standby() { # primary port, dir, port
    local primary=$1 dir=$2 port=$3 bin
    bin=$(pg_bin)
    if pg_port_up "$port"; then return; fi
    if [ ! -f "$dir/standby.signal" ]; then
        rm -rf "$dir"; mkdir -p "$dir"; chmod 700 "$dir"
        [ "$(id -u)" -eq 0 ] && chown postgres: "$dir"
        say "base backup of 127.0.0.1:$primary into $dir (standby on $port)"
        as_pg "$bin/pg_basebackup" -h 127.0.0.1 -p "$primary" -U postgres -D "$dir" \
            -R -X stream -c fast
        # The copy carries the primary's settings; these are the standby's own.
        cat >> "$dir/postgresql.auto.conf" <<CONF
port = $port
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
hot_standby = on
hot_standby_feedback = on
CONF
        # A Debian cluster keeps its config under /etc; use the copy's own.
        [ -f "$dir/postgresql.conf" ] || pg_minimal_conf "$dir"
    fi
    pg_start_dir "$dir" "$port"
}

# A Debian cluster's data directory has no postgresql.conf / pg_hba.conf
# (they live in /etc/postgresql): give a standby copied from one its own
# (defaults, plus postgresql.auto.conf, which the server always reads).
pg_minimal_conf() { # dir
    as_pg sh -c ': > "$1/postgresql.conf"; : > "$1/pg_ident.conf"
        printf "%s\n" "local all all trust" "host all all 127.0.0.1/32 trust" \
            "host replication all 127.0.0.1/32 trust" > "$1/pg_hba.conf"' sh "$1"
}

pg_start_dir() { # dir, port
    local dir=$1 port=$2
    as_pg "$(pg_bin)/pg_ctl" -D "$dir" -l "$dir/server.log" -w -t 60 start >/dev/null \
        || { tail -n 20 "$dir/server.log" >&2; die "PostgreSQL in $dir did not start"; }
    for _ in $(seq 1 60); do pg_port_up "$port" && return; sleep 0.25; done
    die "PostgreSQL in $dir is not answering on $port"
}

pg_stop_dir() { # dir (fast shutdown; a no-op when not running)
    [ -f "$1/postmaster.pid" ] || return 0
    as_pg "$(pg_bin)/pg_ctl" -D "$1" -m fast -w -t 30 stop >/dev/null 2>&1 || true
}

# Waits until a standby on `port` streams from its primary and is consistent.
pg_wait_streaming() { # standby port
    for _ in $(seq 1 120); do
        [ "$(pg_sql "$1" "select pg_is_in_recovery() and pg_last_wal_replay_lsn() is not null" 2>/dev/null)" = t ] && return
        sleep 0.25
    done
    die "the standby on $1 did not start replaying"
}

# --- Redis Cluster: 3 masters and 3 replicas on base..base+5 ---------------

redis_cluster_ok() { # base port
    redis-cli -p "$1" cluster info 2>/dev/null | grep -q '^cluster_state:ok'
}

redis_cluster_up() { # dir, base port
    local dir=$1 base=$2 port nodes=()
    command -v redis-server >/dev/null || install_packages redis-server
    if redis_cluster_ok "$base"; then say "Redis Cluster answers on $base-$((base + 5))"; return; fi
    mkdir -p "$dir"
    for i in 0 1 2 3 4 5; do
        port=$((base + i))
        nodes+=("127.0.0.1:$port")
        redis-cli -p "$port" ping >/dev/null 2>&1 && continue
        mkdir -p "$dir/$port"
        redis-server --port "$port" --bind 127.0.0.1 --dir "$dir/$port" \
            --cluster-enabled yes --cluster-config-file nodes.conf \
            --cluster-node-timeout 2000 --appendonly yes --save "" \
            --daemonize yes --pidfile "$dir/$port/redis.pid" --logfile "$dir/$port/redis.log"
    done
    for port in $(seq "$base" $((base + 5))); do
        for _ in $(seq 1 40); do redis-cli -p "$port" ping 2>/dev/null | grep -q PONG && break; sleep 0.25; done
    done
    if ! redis-cli -p "$base" cluster info | grep -q '^cluster_known_nodes:6'; then
        say "creating the Redis Cluster (3 masters, 3 replicas) on $base-$((base + 5))"
        redis-cli --cluster create "${nodes[@]}" --cluster-replicas 1 --cluster-yes >/dev/null
    fi
    for _ in $(seq 1 80); do
        redis_cluster_ok "$base" && [ "$(redis-cli -p "$base" cluster nodes | grep -c slave)" -ge 3 ] && return
        sleep 0.25
    done
    die "the Redis Cluster on $base did not reach cluster_state:ok (logs under $dir)"
}

redis_cluster_down() { # dir, base port
    local dir=$1 base=$2 port
    for port in $(seq "$base" $((base + 5))); do
        redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true
    done
    rm -rf "$dir"
}

redis_cluster_urls() { # base port: the seed list for REDIS_CLUSTER_URLS
    local base=$1
    echo "redis://127.0.0.1:$base,redis://127.0.0.1:$((base + 1)),redis://127.0.0.1:$((base + 2))"
}

# The tests' replication pair and Redis Cluster, made once and left running
# (like the machine's own servers) so a second run starts at once.
ensure_test_scaleout() {
    pg_make_primary "$SCALE_DIR/test-primary" "$TEST_PG_PRIMARY_PORT"
    pg_make_standby "$TEST_PG_PRIMARY_PORT" "$SCALE_DIR/test-standby" "$TEST_PG_STANDBY_PORT"
    pg_wait_streaming "$TEST_PG_STANDBY_PORT"
    redis_cluster_up "$SCALE_DIR/redis-cluster" "$REDIS_CLUSTER_BASE_PORT"
    export TEST_REPLICA_PRIMARY_URL="${TEST_REPLICA_PRIMARY_URL:-postgres://postgres@127.0.0.1:$TEST_PG_PRIMARY_PORT/postgres}"
    export TEST_REPLICA_URL="${TEST_REPLICA_URL:-postgres://postgres@127.0.0.1:$TEST_PG_STANDBY_PORT/postgres}"
    export TEST_REPLICA_DATA_DIR="$SCALE_DIR/test-standby"
    TEST_REDIS_CLUSTER_URLS="${TEST_REDIS_CLUSTER_URLS:-$(redis_cluster_urls "$REDIS_CLUSTER_BASE_PORT")}"
    export TEST_REDIS_CLUSTER_URLS
}
