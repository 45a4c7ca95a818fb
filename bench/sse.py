#!/usr/bin/env python3
"""SSE figures for issue 23: N concurrent change streams on one query
instance, the query service's memory per open stream, and commit-to-client
latency (the change's recorded_at -> event read off a stream) at a steady
write rate. Standard library only; drives running services over HTTP.

  bench/sse.py --command http://127.0.0.1:8081 --query http://127.0.0.1:8082 \
      --query-pid <pid of tasklog-query> --streams 1000 --users 100 --rate 200 --seconds 30

(bench/README.md, "SSE streams", has the whole run.)

Each user opens streams/users streams (keep SSE_MAX_PER_USER at or above
that); every write goes to one user, so each event reaches that user's
streams. The query service's RSS is read from /proc before and after the
streams open (idle), so the per-stream figure includes its buffers and task.
"""

import argparse
import asyncio
import json
import statistics
import time
import urllib.request
import uuid
from datetime import datetime, timezone
from urllib.parse import urlparse


def post_json(url, body, token=None):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"content-type": "application/json"})
    if token:
        req.add_header("authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def recorded(at):
    """Unix seconds of an RFC 3339 time (any number of fraction digits)."""
    head, _, frac = at.rstrip("Z").partition(".")
    frac = "".join(c for c in frac if c.isdigit())
    whole = datetime.fromisoformat(head).replace(tzinfo=timezone.utc).timestamp()
    return whole + (int(frac) / 10 ** len(frac) if frac else 0.0)


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


async def http_post(host, port, path, body, token):
    """One POST on its own connection; returns (status, json)."""
    reader, writer = await asyncio.open_connection(host, port)
    data = json.dumps(body).encode()
    writer.write((f"POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
                  f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
                  "Connection: close\r\n\r\n").encode() + data)
    await writer.drain()
    raw = await reader.read()
    writer.close()
    head, _, rest = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1])
    if b"chunked" in head.lower():
        size, _, rest = rest.partition(b"\r\n")
        rest = rest[:int(size, 16)]
    return status, json.loads(rest or b"{}")


class Stream:
    def __init__(self, host, port, token, arrivals):
        self.host, self.port, self.token, self.arrivals = host, port, token, arrivals
        self.events = 0

    async def open(self):
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        self.writer.write((f"GET /v1/changes/stream HTTP/1.1\r\nHost: {self.host}\r\n"
                           f"Authorization: Bearer {self.token}\r\nAccept: text/event-stream\r\n\r\n").encode())
        await self.writer.drain()
        head = await self.reader.readuntil(b"\r\n\r\n")
        if b" 200 " not in head.split(b"\r\n")[0]:
            raise RuntimeError(head.decode(errors="replace"))

    async def read(self):
        # Chunk-size lines never start with "data:", so lines are enough.
        while True:
            line = await self.reader.readline()
            if not line:
                return
            if line.startswith(b"data:"):
                now, wall = time.monotonic(), time.time()
                change = json.loads(line[5:])
                self.events += 1
                self.arrivals.append((change["task_id"], now, wall, change["recorded_at"]))


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--command", required=True)
    p.add_argument("--query", required=True)
    p.add_argument("--query-pid", type=int, required=True)
    p.add_argument("--streams", type=int, default=1000)
    p.add_argument("--users", type=int, default=100)
    p.add_argument("--rate", type=float, default=200)
    p.add_argument("--seconds", type=float, default=30)
    a = p.parse_args()

    tokens = []
    for _ in range(a.users):
        s = post_json(f"{a.command}/v1/auth/register",
                      {"email": f"sse-{uuid.uuid4().hex}@example.com",
                       "password": "correct horse battery", "name": "SSE bench"})
        tokens.append(s["access_token"])
    q = urlparse(a.query)
    c = urlparse(a.command)
    before = rss_kib(a.query_pid)
    arrivals = []
    streams = [Stream(q.hostname, q.port, tokens[i % a.users], arrivals) for i in range(a.streams)]
    for i in range(0, len(streams), 100):
        await asyncio.gather(*(s.open() for s in streams[i:i + 100]))
    readers = [asyncio.create_task(s.read()) for s in streams]
    await asyncio.sleep(2)
    after = rss_kib(a.query_pid)
    print(f"streams open: {a.streams}; query RSS {before} KiB -> {after} KiB; "
          f"{(after - before) / a.streams:.1f} KiB per stream")

    committed = {}  # task_id -> reply time
    per_stream = a.streams // a.users
    interval = 1.0 / a.rate
    start = time.monotonic()
    sent = 0
    pending = set()

    async def write(i):
        status, body = await http_post(c.hostname, c.port, "/v1/tasks",
                                       {"title": f"sse bench {i}"}, tokens[i % a.users])
        if status == 201:
            committed[body["id"]] = time.monotonic()

    while time.monotonic() - start < a.seconds:
        target = start + sent * interval
        delay = target - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        t = asyncio.create_task(write(sent))
        pending.add(t)
        t.add_done_callback(pending.discard)
        sent += 1
    await asyncio.gather(*pending)
    elapsed = time.monotonic() - start
    await asyncio.sleep(5)
    mine = [a_ for a_ in arrivals if a_[0] in committed]
    # From the change's recorded_at (the log's now() in the append's
    # transaction, so a little before the commit) to the event's read: the
    # same machine's clock. The command's reply is no reference: an event is
    # often read before the reply is.
    latencies = sorted((wall - recorded(at_)) * 1000 for _, _, wall, at_ in mine)
    early = sum(1 for tid, at, _, _ in mine if at < committed[tid])
    expected = len(committed) * per_stream
    pct = lambda q_: latencies[min(len(latencies) - 1, int(q_ * len(latencies)))]
    print(f"writes: {len(committed)} committed of {sent} sent in {elapsed:.1f} s "
          f"({len(committed) / elapsed:.0f}/s); events delivered {len(latencies)} of {expected} expected")
    if latencies:
        print(f"commit-to-client latency ms (recorded_at -> read): p50 {pct(0.5):.1f}  "
              f"p99 {pct(0.99):.1f}  max {latencies[-1]:.1f}  mean {statistics.mean(latencies):.1f}; "
              f"{early} events were read before the command's reply")
    print(f"query RSS at the end: {rss_kib(a.query_pid)} KiB")
    # The service's own view: every stream still open, none cut off as slow.
    with urllib.request.urlopen(f"{a.query}/metrics", timeout=30) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(("sse_streams_open", "sse_slow_clients_disconnected_total")):
                print(f"query /metrics: {line}")
    for r in readers:
        r.cancel()


if __name__ == "__main__":
    asyncio.run(main())
