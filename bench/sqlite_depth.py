"""`python -m bench.sqlite_depth`: the SQLite broker at depth (issue #27 item 9).

Part 1, lookups: one queue holding 10k, 100k and 1M waiting no-op jobs
(`--depths`); each read is timed `--calls` times (one client, no other load):
`find` of the oldest and the newest job, `cancel` of one of the oldest jobs (a
different one each call), `counts_many` and `ready_count`.

Part 2, a drain under steady readers: `--drain` jobs pushed, then drained by two
worker processes (reserve 10, the previous batch's acks folded in, as a worker
does) while two reader processes loop `find` of random ids and `counts_many`
(what status, mpqctl and the dashboard do). Reported: drain rate, the largest
WAL seen (sampled every 20 ms), the file's size and free pages right after the
drain and after two heartbeats (the supervisor's periodic call).

Every figure is median (min-max) over `--rounds` rounds; run it once on the
tree before a change and once after (PYTHONPATH=<other tree>) and compare.

    .venv/bin/python -m bench.sqlite_depth
    .venv/bin/python -m bench.sqlite_depth --depths 10000,100000 --drain 20000 --json out.json
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import sqlite3
import statistics
import tempfile
import time

from mpqueue.brokers import open_broker
from mpqueue.brokers.base import Ack
from mpqueue.core import envelope as jobmod

QUEUE = "deep"
BATCH = 10_000


def fill(broker, depth: int) -> list[str]:
    ids = []
    for start in range(0, depth, BATCH):
        items = []
        for i in range(start, min(depth, start + BATCH)):
            job_id, env = jobmod.encode("bench:noop", [i])
            ids.append(job_id)
            items.append((env, 0, 0))
        broker.push(QUEUE, items)
    return ids


def timed(call, calls: int) -> list[float]:
    out = []
    for i in range(calls):
        t0 = time.perf_counter()
        call(i)
        out.append((time.perf_counter() - t0) * 1000)
    return out


def lookups(url: str, depth: int, calls: int) -> dict:
    broker = open_broker(url)
    ids = fill(broker, depth)
    out = {"find oldest": timed(lambda i: broker.find(QUEUE, ids[0]), calls),
           "find newest": timed(lambda i: broker.find(QUEUE, ids[-1]), calls),
           "cancel oldest": timed(lambda i: broker.cancel(QUEUE, ids[i + 1], None, 60), calls),
           "counts_many": timed(lambda i: broker.counts_many([QUEUE]), calls),
           "ready_count": timed(lambda i: broker.ready_count(QUEUE), calls)}
    broker.close()
    return out


def _worker(url: str, stop) -> None:
    broker = open_broker(url)
    acks = []
    while not stop.is_set():
        got, _ = broker.reserve(QUEUE, f"bench/{os.getpid()}", 10, 60, acks)
        acks = [Ack(jobmod.header(r.envelope).id, r.token, '{"state":"done"}', 60) for r in got]
        if not got and not acks:
            return


def _reader(url: str, ids: list[str], stop) -> None:
    broker = open_broker(url)
    rng = random.Random(os.getpid())
    while not stop.is_set():
        broker.find(QUEUE, rng.choice(ids))
        broker.counts_many([QUEUE])


def _file_figures(path: str) -> dict:
    conn = sqlite3.connect(path)
    pages, free, size = (conn.execute(f"PRAGMA {p}").fetchone()[0]
                         for p in ("page_count", "freelist_count", "page_size"))
    conn.close()
    wal = path + "-wal"
    return {"file MB": os.path.getsize(path) / 1e6, "free pages %": 100.0 * free / max(1, pages),
            "wal MB": (os.path.getsize(wal) if os.path.exists(wal) else 0) / 1e6, "page bytes": size}


def drain(url: str, path: str, jobs: int) -> dict:
    broker = open_broker(url)
    ids = fill(broker, jobs)
    ctx = multiprocessing.get_context("fork")
    stop = ctx.Event()
    readers = [ctx.Process(target=_reader, args=(url, ids, stop)) for _ in range(2)]
    workers = [ctx.Process(target=_worker, args=(url, stop)) for _ in range(2)]
    for p in readers:
        p.start()
    t0 = time.perf_counter()
    for p in workers:
        p.start()
    wal_peak = 0
    while any(p.is_alive() for p in workers):
        with_wal = path + "-wal"
        if os.path.exists(with_wal):
            wal_peak = max(wal_peak, os.path.getsize(with_wal))
        time.sleep(0.02)
    elapsed = time.perf_counter() - t0
    stop.set()
    for p in readers + workers:
        p.join()
    assert broker.counts(QUEUE)["ready"] == 0
    after = _file_figures(path)
    for _ in range(2):
        broker.heartbeat("bench", {"id": "bench"}, ttl=60)
    later = _file_figures(path)
    broker.close()
    return {"drain jobs/s": [jobs / elapsed], "wal peak MB": [wal_peak / 1e6],
            "file MB after drain": [after["file MB"]], "free pages % after drain": [after["free pages %"]],
            "file MB after 2 heartbeats": [later["file MB"]],
            "free pages % after 2 heartbeats": [later["free pages %"]]}


def summary(samples: list[float]) -> str:
    return f"{statistics.median(samples):.3f} ({min(samples):.3f}-{max(samples):.3f})"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--depths", default="10000,100000,1000000")
    ap.add_argument("--calls", type=int, default=50)
    ap.add_argument("--drain", type=int, default=50_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    results: dict = {}
    for depth in [int(d) for d in args.depths.split(",") if d]:
        with tempfile.TemporaryDirectory() as tmp:
            for name, samples in lookups(f"sqlite://{tmp}/depth.db", depth, args.calls).items():
                results.setdefault(f"{name} ms @ {depth:,}", []).extend(samples)
    for _ in range(args.rounds if args.drain else 0):
        with tempfile.TemporaryDirectory() as tmp:
            for name, samples in drain(f"sqlite://{tmp}/drain.db", f"{tmp}/drain.db", args.drain).items():
                results.setdefault(f"{name} (drain {args.drain:,}, 2 readers)", []).extend(samples)
    print("| figure | median (min-max) |\n|---|---|")
    for name, samples in results.items():
        print(f"| {name} | {summary(samples)} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "samples": results}, f, indent=1)


if __name__ == "__main__":
    main()
