"""`python -m bench.scale`: what one job costs as its queue grows (issue #27 item 9).

For each broker (a private redis-server; an SQLite file in a temporary directory)
and each depth (default 10,000 / 100,000 / 1,000,000 waiting no-op jobs, over
priorities 0, 4 and 9, one tenth of them delayed an hour):

- push: bulk rate filling the queue (`Broker.push`, 5,000 a call), and the rate of
  `--singles` one-at-a-time `Client.push` calls once it is full;
- bytes per job: Redis `used_memory` after minus before the fill, per job; SQLite the
  database file plus its WAL, per job (and both sizes);
- latency of one job's handles at the head and at the tail of the queue (a ready job
  pushed first, a ready job pushed last, a delayed job pushed last):
  `Client.status`, `Broker.find`, `Client.cancel` (each call cancels another job),
  and `mpqctl job --json` (a new process each: Python's start-up included);
- `/api/state`: the dashboard's JSON (`web/snapshot.state`, what the route returns);
- drain: reserve 50 at a time with folded acks (one process, no workers), jobs/s.

Then a soak (`--soak`, default 500,000 jobs; 0 skips it): pushed in batches while
being drained, `--waiters` of them watched by a result() caller that gives up (and
some of those acked after), acked with a result_ttl of 0; afterwards, what is left of
the queue: Redis keys (other than its totals) and used_memory over the empty
server's; SQLite rows and file sizes.

Median (min–max) in ms of `--calls` calls (mpqctl: `--ctl-calls`). Timing claims
live here, never in tests.

    .venv/bin/python -m bench.scale
    .venv/bin/python -m bench.scale --depths 10000,100000 --brokers redis --soak 0 --json out.json
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from types import SimpleNamespace

from mpqueue.brokers import Ack, PushItem, open_broker
from mpqueue.core import envelope as jobmod
from mpqueue.producer.client import Client
from mpqueue.web import snapshot, views
from mpqueue.web.history import FirstSeen

from .common import PrivateRedis

QUEUE = "deep"
BATCH = 5000


def fill(broker, depth: int) -> tuple[list[str], float]:
    """`depth` jobs: ready over priorities 0, 4, 9, and a tenth delayed an hour.
    Returns (ids in push order, jobs/s)."""
    ids, t0 = [], time.perf_counter()
    for start in range(0, depth, BATCH):
        items = []
        for i in range(start, min(depth, start + BATCH)):
            delayed = i % 10 == 9
            prio = 0 if delayed else (0, 4, 9)[i % 3]
            job_id, env = jobmod.encode("bench:noop", [i], priority=prio)
            ids.append(job_id)
            items.append(PushItem(env, prio, 3600 if delayed else 0))
        broker.push(QUEUE, items)
    return ids, depth / (time.perf_counter() - t0)


def timed(call, n: int) -> list[float]:
    out = []
    for i in range(n):
        t0 = time.perf_counter()
        call(i)
        out.append((time.perf_counter() - t0) * 1000)
    return out


def summary(ms: list[float]) -> str:
    if not ms:
        return "n/a"
    return f"{statistics.median(ms):.3f} ({min(ms):.3f}–{max(ms):.3f})"


def ctl_job(url: str, job_id: str) -> None:
    r = subprocess.run([sys.executable, "-m", "mpqueue.ops.ctl", "--broker", url, "job", job_id, "--json",
                        "--queue", QUEUE], capture_output=True, text=True, timeout=120,
                       env={k: v for k, v in os.environ.items() if k != "MPQUEUE_BROKER"})
    if r.returncode != 0:
        raise RuntimeError(f"mpqctl job {job_id}: {r.stderr.strip()}")


class NoHistory:
    def series(self, queue):
        return []


def api_state(url: str, broker) -> dict:
    cfg = SimpleNamespace(name="bench", broker=url, queues={QUEUE: None}, schedules={})
    return snapshot.state(cfg, broker, NoHistory(), FirstSeen(), True, views.ViewQuery())


def handles(url: str, broker, ids: list[str], calls: int, ctl_calls: int) -> dict:
    client = Client(url, broker=broker)
    ready = [i for n, i in enumerate(ids) if n % 10 != 9]
    delayed = [i for n, i in enumerate(ids) if n % 10 == 9]
    spots = {"head": ready[0], "tail": ready[-1], "delayed tail": delayed[-1]}
    out = {}
    for where, job_id in spots.items():
        out[f"status {where}"] = timed(lambda _i, j=job_id: client.status(j, queue=QUEUE), calls)
        out[f"find {where}"] = timed(lambda _i, j=job_id: broker.find(QUEUE, j), calls)
        out[f"mpqctl job {where}"] = timed(lambda _i, j=job_id: ctl_job(url, j), ctl_calls)
    # each cancel takes another job: the first ready ones (the head), the last ones
    # (the tail) and ones in the middle (marked dead where they lie, on Redis)
    mid = len(ready) // 2
    out["cancel head"] = timed(lambda i: client.cancel(ready[1 + i], queue=QUEUE), calls)
    out["cancel tail"] = timed(lambda i: client.cancel(ready[-2 - i], queue=QUEUE), calls)
    out["cancel middle"] = timed(lambda i: client.cancel(ready[mid + i], queue=QUEUE), calls)
    out["cancel delayed"] = timed(lambda i: client.cancel(delayed[-2 - i], queue=QUEUE), calls)
    out["/api/state"] = timed(lambda _i: api_state(url, broker), calls)
    return out


def drain(broker, limit: int | None = None) -> tuple[int, float]:
    """Reserve 50 at a time, acks folded into the next reserve (result_ttl 0): (jobs, jobs/s)."""
    acks, n, t0 = [], 0, time.perf_counter()
    while limit is None or n < limit:
        reserved, _ = broker.reserve(QUEUE, "bench", 50, 60, acks)
        acks = [Ack(jobmod.job_id(r.envelope), r.token, '{"result":null}', 0, True) for r in reserved]
        n += len(reserved)
        if not reserved:
            break
    if acks:
        broker.ack(QUEUE, acks)
    return n, n / max(time.perf_counter() - t0, 1e-9)


def drain_one(broker) -> None:
    broker.push(QUEUE, [PushItem(jobmod.encode("bench:noop")[1])])
    drain(broker)
    broker.watch(QUEUE, "warm-up").close()
    broker.find(QUEUE, "warm-up")
    broker.cancel(QUEUE, "warm-up", None, 0)
    broker.expired(QUEUE)


class RedisTarget:
    name = "redis"

    def __init__(self):
        self.redis = PrivateRedis()
        self.url = self.redis.url
        self.broker = open_broker(self.url)
        drain_one(self.broker)         # scripts loaded, format recorded: not counted per job
        self.base = self.redis.used_memory()

    def size(self) -> dict:
        return {"used_memory": self.redis.used_memory() - self.base}

    def leftovers(self) -> dict:
        prefix = self.broker.keys(QUEUE).prefix
        keys = sorted(k[len(prefix):] for k in self.redis.client.scan_iter(prefix + "*"))
        return {"keys": [k for k in keys if k != "stats"],
                "used_memory_over_empty": self.redis.used_memory() - self.base}

    def close(self):
        self.broker.close()
        self.redis.stop()


class SqliteTarget:
    name = "sqlite"

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="mpq-bench-scale-")
        self.path = os.path.join(self.dir, "queue.db")
        self.url = f"sqlite://{self.path}"
        self.broker = open_broker(self.url)
        self.broker.ping()

    def size(self) -> dict:
        size = lambda p: os.path.getsize(p) if os.path.exists(p) else 0   # noqa: E731
        return {"file": size(self.path), "wal": size(self.path + "-wal")}

    def leftovers(self) -> dict:
        with sqlite3.connect(self.path) as db:
            rows = {t: db.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("job", "done", "cancel")}
        return {"rows": rows, **self.size()}

    def close(self):
        self.broker.close()
        shutil.rmtree(self.dir, ignore_errors=True)


TARGETS = {"redis": RedisTarget, "sqlite": SqliteTarget}


def run_depth(kind: str, depth: int, args) -> dict:
    t = TARGETS[kind]()
    try:
        ids, push_rate = fill(t.broker, depth)
        size = t.size()
        per_job = (size.get("used_memory") or size.get("file", 0) + size.get("wal", 0)) / depth
        client = Client(t.url, broker=t.broker)
        single = timed(lambda i: client.push(QUEUE, "bench:noop", [i]), args.singles)
        res = {"push bulk jobs/s": push_rate, "push one at a time jobs/s": 1000 * len(single) / sum(single),
               "bytes per job": per_job, "size": size}
        res["ms"] = handles(t.url, t.broker, ids, args.calls, args.ctl_calls)
        res["drained"], res["drain jobs/s"] = drain(t.broker)
        res["size after drain"] = t.size()
        return res
    finally:
        t.close()


def soak(kind: str, total: int, waiters: int) -> dict:
    """`total` jobs pushed in batches while drained; `waiters` watched by a caller that
    gives up (as result(timeout) does), then what is left of the queue."""
    t = TARGETS[kind]()
    rng = random.Random(27)
    try:
        watched, pushed, t0 = 0, 0, time.perf_counter()
        while pushed < total:
            n = min(BATCH, total - pushed)
            items = [jobmod.encode("bench:noop", [pushed + i]) for i in range(n)]
            t.broker.push(QUEUE, [PushItem(env) for _, env in items])
            pushed += n
            per_batch = -(-waiters * BATCH // total)
            for job_id, _ in rng.sample(items, min(n, max(0, waiters - watched), per_batch)):
                t.broker.watch(QUEUE, job_id).close()      # a caller that stopped waiting
                watched += 1
            drain(t.broker, limit=n)
        drained, _ = drain(t.broker)
        elapsed = time.perf_counter() - t0
        t.broker.expired(QUEUE)          # what a supervisor's recovery does on its timer
        return {"jobs": total, "watched": watched, "jobs/s": total / elapsed, "left": t.leftovers()}
    finally:
        t.close()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__.split("\n\n")[0])
    parser.add_argument("--depths", default="10000,100000,1000000")
    parser.add_argument("--brokers", default="redis,sqlite")
    parser.add_argument("--calls", type=int, default=50, help="timed calls per handle figure")
    parser.add_argument("--ctl-calls", type=int, default=3, help="timed mpqctl processes per figure")
    parser.add_argument("--singles", type=int, default=2000, help="one-at-a-time pushes at each depth")
    parser.add_argument("--soak", type=int, default=500_000, help="soak jobs (0: no soak)")
    parser.add_argument("--waiters", type=int, default=2000, help="watched jobs in the soak")
    parser.add_argument("--json", help="write every sample here")
    args = parser.parse_args(argv)
    depths = [int(d) for d in args.depths.split(",")]
    results: dict = {"settings": vars(args), "depths": {}, "soak": {}}
    for kind in args.brokers.split(","):
        for depth in depths:
            res = run_depth(kind, depth, args)
            results["depths"].setdefault(kind, {})[depth] = res
            print(f"{kind} {depth:>9,}: push {res['push bulk jobs/s']:,.0f}/s bulk, "
                  f"{res['push one at a time jobs/s']:,.0f}/s single; {res['bytes per job']:.0f} B/job "
                  f"{res['size']}; drain {res['drain jobs/s']:,.0f}/s", flush=True)
            for figure, ms in res["ms"].items():
                print(f"    {figure}: {summary(ms)} ms", flush=True)
            _write(args.json, results)
        if args.soak:
            results["soak"][kind] = soak(kind, args.soak, args.waiters)
            print(f"{kind} soak: {results['soak'][kind]}", flush=True)
            _write(args.json, results)
    print_table(results)


def print_table(results: dict) -> None:
    figures = ["status head", "status tail", "status delayed tail", "cancel head", "cancel middle",
               "cancel tail", "cancel delayed", "mpqctl job head", "mpqctl job tail", "/api/state"]
    print("\n| broker | depth | push bulk /s | push single /s | drain /s | bytes/job | "
          + " | ".join(f"{f} ms" for f in figures) + " |")
    print("|---|---|---|---|---|---|" + "---|" * len(figures))
    for kind, by_depth in results["depths"].items():
        for depth, r in by_depth.items():
            print(f"| {kind} | {int(depth):,} | {r['push bulk jobs/s']:,.0f} | {r['push one at a time jobs/s']:,.0f} | "
                  f"{r['drain jobs/s']:,.0f} | {r['bytes per job']:.0f} | "
                  + " | ".join(summary(r["ms"][f]) for f in figures) + " |")


def _write(path, results) -> None:
    if path:
        with open(path, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
