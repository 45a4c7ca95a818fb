#!/usr/bin/env python3
"""Postgres CPU by the service each backend serves, over a window.

Maps every backend of DATABASE (pg_stat_activity) to the process holding the
client end of its TCP connection (ss -tnp), then sums the backends' CPU time
(/proc/<pid>/stat, utime + stime) over SECONDS, and divides by the events the
log gained in that window. Run it while a load runs:

    bench/backend_cpu.py tasklog_bench 10

Prints one line: events/s and microseconds of backend CPU per event, by
client process name (tasklog-command, tasklog-project(or), tasklog-query).
Needs psql and ss; reads /proc, so run it on the database's machine.
"""
import os
import re
import subprocess
import sys
import time


def psql(db, sql):
    out = subprocess.run(
        ["psql", "-h", os.environ.get("PGHOST", "127.0.0.1"), "-U",
         os.environ.get("PGUSER", "postgres"), "-d", db, "-Atc", sql],
        capture_output=True, text=True, check=True)
    return out.stdout.split()


def cpu_ticks(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except (OSError, IndexError, ValueError):
        return 0  # the backend ended


def main():
    db = sys.argv[1] if len(sys.argv) > 1 else "tasklog_bench"
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 10.0
    backends = [row.split("|") for row in psql(
        db, "SELECT pid, client_port FROM pg_stat_activity "
            "WHERE datname = current_database() AND client_port IS NOT NULL "
            "AND pid <> pg_backend_pid()")]
    owner = {}
    for line in subprocess.run(["ss", "-tnp"], capture_output=True, text=True).stdout.splitlines():
        m = re.search(r':(\d+)\s+\S+:5432\s+users:\(\("([^"]+)"', line)
        if m:
            owner[m.group(1)] = m.group(2)
    count = "SELECT count(*) FROM eventlog.events"
    before = {pid: cpu_ticks(pid) for pid, _ in backends}
    events_before = int(psql(db, count)[0])
    time.sleep(seconds)
    events = int(psql(db, count)[0]) - events_before
    per_client = {}
    for pid, port in backends:
        who = owner.get(port, "other")
        per_client[who] = per_client.get(who, 0) + cpu_ticks(pid) - before[pid]
    hz = os.sysconf("SC_CLK_TCK")
    per_event = {k: round(v / hz * 1e6 / events) for k, v in per_client.items() if v and events}
    print(f"{events / seconds:.0f} events/s; backend CPU per event (us): {per_event}")


if __name__ == "__main__":
    main()
