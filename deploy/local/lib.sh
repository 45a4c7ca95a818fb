# Shared by deploy/local/up and deploy/local/test: make PostgreSQL and Redis
# available on 127.0.0.1 from Debian/Ubuntu packages. Installs what is missing,
# starts what is stopped, and uses what already runs. Sourced, not run.

STARTED_POSTGRES=""
STARTED_REDIS=""

PG_HOST=127.0.0.1
PG_PORT=5432
REDIS_HOST=127.0.0.1
REDIS_PORT=6379

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Runs a command as root: directly when we are root, else through sudo.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

has_systemd() { [ -d /run/systemd/system ]; }

apt_updated=""
install_packages() {
    command -v apt-get >/dev/null || die "apt-get not found: install $* yourself (this script knows Debian/Ubuntu)"
    say "installing $* from the distribution's packages"
    if [ -z "$apt_updated" ]; then
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
        apt_updated=1
    fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

pg_up() { pg_isready -q -h "$PG_HOST" -p "$PG_PORT" 2>/dev/null; }

pg_version() { ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1; }

ensure_postgres() {
    if command -v pg_isready >/dev/null && pg_up; then
        say "PostgreSQL is running on $PG_HOST:$PG_PORT"
    else
        if [ -z "$(pg_version)" ]; then
            install_packages postgresql postgresql-contrib
        fi
        local ver
        ver=$(pg_version)
        [ -n "$ver" ] || die "PostgreSQL is installed but has no cluster under /etc/postgresql"
        say "starting PostgreSQL $ver"
        STARTED_POSTGRES=1
        if has_systemd; then
            as_root systemctl start "postgresql@$ver-main" || as_root systemctl start postgresql
        else
            as_root pg_ctlcluster --skip-systemctl-redirect "$ver" main start || true
        fi
        for _ in $(seq 1 60); do pg_up && break; sleep 0.5; done
        pg_up || die "PostgreSQL did not come up on $PG_HOST:$PG_PORT"
    fi
    ensure_pg_local_trust
}

# The services and tests connect as `postgres` over TCP without a password, as
# a developer machine's PostgreSQL usually allows. A fresh Debian install asks
# for one on 127.0.0.1, so trust loopback connections there (local only).
ensure_pg_local_trust() {
    if psql -h "$PG_HOST" -p "$PG_PORT" -U postgres -d postgres -Atqc 'select 1' >/dev/null 2>&1; then
        return
    fi
    local ver hba
    ver=$(pg_version)
    hba="/etc/postgresql/$ver/main/pg_hba.conf"
    [ -n "$ver" ] && as_root test -f "$hba" \
        || die "cannot connect as postgres@$PG_HOST:$PG_PORT; set TEST_DATABASE_URL / DATABASE_URL to a server you can use"
    say "allowing password-less loopback connections in $hba (development machine)"
    as_root sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
    if has_systemd; then as_root systemctl reload "postgresql@$ver-main" || as_root systemctl reload postgresql;
    else as_root pg_ctlcluster --skip-systemctl-redirect "$ver" main reload; fi
    for _ in $(seq 1 20); do
        psql -h "$PG_HOST" -p "$PG_PORT" -U postgres -d postgres -Atqc 'select 1' >/dev/null 2>&1 && return
        sleep 0.5
    done
    die "still cannot connect as postgres@$PG_HOST:$PG_PORT"
}

redis_up() { redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG; }

ensure_redis() {
    if command -v redis-cli >/dev/null && redis_up; then
        say "Redis is running on $REDIS_HOST:$REDIS_PORT"
        return
    fi
    command -v redis-server >/dev/null || install_packages redis-server
    say "starting Redis"
    STARTED_REDIS=1
    if has_systemd; then
        as_root systemctl start redis-server
    else
        as_root mkdir -p /var/lib/redis /var/log/redis
        as_root redis-server --daemonize yes --bind "$REDIS_HOST" --port "$REDIS_PORT" \
            --save "" --appendonly no --dir /var/lib/redis --logfile /var/log/redis/tasklog.log
    fi
    for _ in $(seq 1 40); do redis_up && break; sleep 0.25; done
    redis_up || die "Redis did not come up on $REDIS_HOST:$REDIS_PORT"
}

ensure_nginx() {
    command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || install_packages nginx
}

nginx_bin() { command -v nginx || echo /usr/sbin/nginx; }

# The gateway's config for the local run, from the template every deployment
# shares (the compose stack's nginx image renders it with envsubst instead).
# Several query upstreams (space-separated) become several `server` lines.
render_gateway_conf() { # query upstream(s), command upstream, listen port
    local query
    query=$(echo "$1" | sed 's/ \+/; server /g')
    sed -e "s|\${QUERY_UPSTREAM}|$query|g" \
        -e "s|\${COMMAND_UPSTREAM}|$2|g" \
        -e "s|\${GATEWAY_PORT}|$3|g" \
        deploy/nginx/gateway.conf.template
}

stop_postgres() {
    local ver
    ver=$(pg_version)
    say "stopping PostgreSQL $ver (this script started it)"
    if has_systemd; then as_root systemctl stop "postgresql@$ver-main" || as_root systemctl stop postgresql;
    else as_root pg_ctlcluster --skip-systemctl-redirect "$ver" main stop; fi
}

stop_redis() {
    say "stopping Redis (this script started it)"
    if has_systemd; then as_root systemctl stop redis-server;
    else redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true; fi
}

ensure_cargo() {
    command -v cargo >/dev/null || die "cargo not found: install Rust (https://rustup.rs) first"
}

# Streaming replicas and Redis Cluster (deploy/local/up --replicas N --redis-cluster).
. deploy/local/scaleout.sh
