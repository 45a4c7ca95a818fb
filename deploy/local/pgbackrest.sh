# Shared by deploy/local/backup, restore and drill: pgBackRest's settings for
# Tasklog, its configuration file, and running Postgres tools as the
# `postgres` system user. Sourced after deploy/local/lib.sh, not run.
#
# Settings (environment; the defaults suit one machine):
#   TASKLOG_BACKUP_STANZA          pgBackRest stanza                      tasklog
#   TASKLOG_BACKUP_REPO            repository path (repo1-path)           /var/lib/pgbackrest/tasklog
#   TASKLOG_BACKUP_CONF            the configuration file written here    /etc/pgbackrest/tasklog.conf
#   TASKLOG_BACKUP_KEY             the repository's encryption key        (read from the key file)
#   TASKLOG_BACKUP_KEY_FILE        where the key is kept (made once)      /etc/pgbackrest/tasklog.key
#   TASKLOG_BACKUP_RETENTION_FULL  full backups kept (with their WAL)     2
#   TASKLOG_BACKUP_ARCHIVE_TIMEOUT archive_timeout in seconds             60
#   TASKLOG_BACKUP_MAX_AGE_S       `backup --status` fails when older     93600 (26 h)
#   TASKLOG_BACKUP_LOG             pgBackRest's log directory             /var/log/pgbackrest

BACKUP_STANZA=${TASKLOG_BACKUP_STANZA:-tasklog}
BACKUP_REPO=${TASKLOG_BACKUP_REPO:-/var/lib/pgbackrest/tasklog}
BACKUP_CONF=${TASKLOG_BACKUP_CONF:-/etc/pgbackrest/tasklog.conf}
BACKUP_KEY_FILE=${TASKLOG_BACKUP_KEY_FILE:-/etc/pgbackrest/tasklog.key}
BACKUP_RETENTION_FULL=${TASKLOG_BACKUP_RETENTION_FULL:-2}
BACKUP_ARCHIVE_TIMEOUT=${TASKLOG_BACKUP_ARCHIVE_TIMEOUT:-60}
BACKUP_MAX_AGE_S=${TASKLOG_BACKUP_MAX_AGE_S:-93600}
BACKUP_LOG=${TASKLOG_BACKUP_LOG:-/var/log/pgbackrest}

# Runs a command as the `postgres` system user, who owns the clusters and
# the repository (the server runs archive_command as that user).
as_pg() {
    if [ "$(id -un)" = postgres ]; then "$@";
    elif [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@";
    else sudo -u postgres "$@"; fi
}

ensure_pgbackrest() {
    command -v pgbackrest >/dev/null || install_packages pgbackrest
    command -v python3 >/dev/null || install_packages python3 # reads its JSON
}

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
seconds_since() { # a now_ms value: seconds since then, one decimal
    local d=$(( $(now_ms) - $1 ))
    printf '%d.%d' $(( d / 1000 )) $(( d % 1000 / 100 ))
}

# The Debian binaries (initdb, pg_ctl) of the installed major version.
pg_bindir() {
    local ver
    ver=$(ls /usr/lib/postgresql 2>/dev/null | sort -V | tail -n 1)
    [ -n "$ver" ] || die "no PostgreSQL under /usr/lib/postgresql (apt-get install postgresql)"
    echo "/usr/lib/postgresql/$ver/bin"
}

# psql as superuser against 127.0.0.1:<port>.
psql_at() { # port, then psql arguments
    local port=$1; shift
    psql -h 127.0.0.1 -p "$port" -U postgres -d postgres -Atq "$@"
}

port_in_use() { pg_isready -q -h 127.0.0.1 -p "$1" 2>/dev/null || (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# The repository's key: TASKLOG_BACKUP_KEY, else the key file, made once
# with 48 random bytes. Keep a copy of it away from the repository: without
# it no backup can be read.
backup_key() {
    if [ -n "${TASKLOG_BACKUP_KEY:-}" ]; then printf '%s' "$TASKLOG_BACKUP_KEY"; return; fi
    if ! as_root test -s "$BACKUP_KEY_FILE"; then
        say "making the repository's encryption key in $BACKUP_KEY_FILE (keep a copy elsewhere)"
        as_root install -d -m 755 "$(dirname "$BACKUP_KEY_FILE")"
        head -c 48 /dev/urandom | base64 | tr -d '\n' | as_root tee "$BACKUP_KEY_FILE" >/dev/null
        as_root chmod 600 "$BACKUP_KEY_FILE"
    fi
    as_root cat "$BACKUP_KEY_FILE"
}

# Writes the configuration file for one cluster (its data directory and
# port). Readable by `postgres` only: it holds the key, which archive-push
# needs too.
write_backup_conf() { # data directory, port, socket directory
    local data=$1 port=$2 socket=$3 key
    key=$(backup_key)
    as_root install -d -m 755 "$(dirname "$BACKUP_CONF")"
    as_root install -d -o postgres -g postgres -m 750 "$BACKUP_REPO" "$BACKUP_LOG"
    as_root tee "$BACKUP_CONF" >/dev/null <<CONF
# Written by deploy/local/backup; edit TASKLOG_BACKUP_* instead.
[global]
repo1-path=$BACKUP_REPO
repo1-cipher-type=aes-256-cbc
repo1-cipher-pass=$key
repo1-retention-full-type=count
repo1-retention-full=$BACKUP_RETENTION_FULL
compress-type=lz4
start-fast=y
log-path=$BACKUP_LOG
lock-path=/tmp/pgbackrest-$BACKUP_STANZA
log-level-console=warn
log-level-file=info

[$BACKUP_STANZA]
pg1-path=$data
pg1-port=$port
pg1-socket-path=$socket
pg1-user=postgres
CONF
    as_root chown postgres:postgres "$BACKUP_CONF"
    as_root chmod 600 "$BACKUP_CONF"
}

pgbr() { as_pg pgbackrest --config="$BACKUP_CONF" --stanza="$BACKUP_STANZA" "$@"; }

# The archive_command every archived cluster gets.
archive_command() {
    echo "pgbackrest --config=$BACKUP_CONF --stanza=$BACKUP_STANZA archive-push %p"
}

# The newest WAL segment in the repository (timeline 1 first, the newest
# timeline's last), from pgBackRest's JSON.
archived_max_segment() {
    pgbr info --output=json | python3 -c 'import json,sys; a=(json.load(sys.stdin)[0].get("archive") or [{}]); print(a[-1].get("max") or "")'
}

# The WAL segment in which a restored cluster's replay ended ("redo done at
# X/Y" in its log), on timeline 1 with 16 MB segments (initdb's default).
replayed_segment() { # server log of the restored cluster
    local redo hi lo
    redo=$(as_root sed -nE 's|.*redo done at ([0-9A-F]+)/([0-9A-F]+).*|\1 \2|p' "$1" | tail -n 1)
    [ -n "$redo" ] || return 1
    read -r hi lo <<<"$redo"
    printf '%08X%08X%08X\n' 1 "$((16#$hi))" "$((16#$lo >> 24))"
}
