#!/bin/sh
# The scheduled backup, in the backup container (compose) or a CronJob pod
# (Kubernetes). pgBackRest reads its settings from PGBACKREST_* variables
# (repository, cipher, retention, where Postgres is). Creates the stanza when
# it is missing, checks that WAL archiving works, takes a backup of
# BACKUP_TYPE (full, diff or incr; default diff, which becomes full when
# there is none) and prints the repository's status line.
#
#   tasklog-backup            one backup now
#   tasklog-backup --every S  one backup now and then every S seconds (compose)
set -eu
every=""
[ "${1:-}" = --every ] && every=${2:?--every needs seconds}
type=${BACKUP_TYPE:-diff}

once() {
    pgbackrest stanza-create >/dev/null
    pgbackrest check
    pgbackrest --type="$type" backup
    # Oldest first: the last line is the newest backup.
    pgbackrest info | sed -n 's/^ *\(full\|diff\|incr\) backup: /backup: /p' | tail -n 1
}

if [ -z "$every" ]; then once; exit; fi
while :; do
    once || echo "backup failed; next try in $every s" >&2
    sleep "$every"
done
