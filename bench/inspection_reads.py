"""`python -m bench.inspection_reads`: what a metrics scrape's broker reads cost as
a queue grows: `oldest_ages`, `counts_many` and both at once (`counts_and_ages`,
what a scrape calls) of one queue at depths 1k, 100k and 1M waiting jobs, on a
private redis-server (and, with `--brokers redis,sqlite`, an SQLite file in a
temporary directory).

Each depth's queue holds that many ready jobs over three priorities, plus a
tenth as many delayed jobs (not yet due); a second, empty queue is read in the
same call, as a scrape reads every queue. Each read is timed `--calls` times
(wall clock, one client, no other load) and printed as median (min–max) in ms.

    .venv/bin/python -m bench.inspection_reads
    .venv/bin/python -m bench.inspection_reads --depths 1000,100000 --brokers redis,sqlite --json out.json
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time

from mpqueue.brokers import open_broker
from mpqueue.core import envelope as jobmod

from .common import PrivateRedis

QUEUE, EMPTY = "deep", "empty"
BATCH = 5000


def fill(broker, depth: int) -> None:
    """`depth` ready jobs (priorities 0, 4, 9 in turn) and depth/10 delayed ones."""
    for start in range(0, depth, BATCH):
        items = []
        for i in range(start, min(depth, start + BATCH)):
            prio = (0, 4, 9)[i % 3]
            items.append((jobmod.encode("bench:noop", [i], priority=prio)[1], prio, 0))
        broker.push(QUEUE, items)
    for start in range(0, depth // 10, BATCH):
        items = [(jobmod.encode("bench:noop", [i])[1], 0, 3600) for i in range(start, min(depth // 10, start + BATCH))]
        broker.push(QUEUE, items)


def timed(call, calls: int) -> list[float]:
    out = []
    for _ in range(calls):
        t0 = time.perf_counter()
        call()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def measure(broker, depth: int, calls: int) -> dict:
    queues = [QUEUE, EMPTY]
    counts = broker.counts_many(queues)[QUEUE]
    assert counts["ready"] == depth and counts["scheduled"] == depth // 10, counts
    assert broker.oldest_ages(queues)[QUEUE] >= 0
    return {"oldest_ages": timed(lambda: broker.oldest_ages(queues), calls),
            "counts_many": timed(lambda: broker.counts_many(queues), calls),
            "counts_and_ages": timed(lambda: broker.counts_and_ages(queues), calls)}


def summary(ms: list[float]) -> str:
    return f"{statistics.median(ms):.3f} ({min(ms):.3f}–{max(ms):.3f})"


def run_broker(name: str, depths: list[int], calls: int) -> dict:
    results = {}
    for depth in depths:
        if name == "redis":
            redis = PrivateRedis()
            broker, cleanup = open_broker(redis.url), redis.stop
        else:
            tmp = tempfile.mkdtemp(prefix="mpq-bench-sqlite-")
            broker = open_broker(f"sqlite://{tmp}/queue.db")
            cleanup = lambda tmp=tmp: shutil.rmtree(tmp, ignore_errors=True)   # noqa: E731
        try:
            t0 = time.monotonic()
            fill(broker, depth)
            filled = time.monotonic() - t0
            results[depth] = measure(broker, depth, calls)
            print(f"  {name} depth {depth:>9,}: filled in {filled:.1f} s; " +
                  ", ".join(f"{read} {summary(ms)} ms" for read, ms in results[depth].items()), flush=True)
        finally:
            broker.close()
            cleanup()
    return results


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.inspection_reads", description=__doc__.split("\n\n")[0])
    parser.add_argument("--depths", default="1000,100000,1000000", help="waiting jobs per run (comma-separated)")
    parser.add_argument("--brokers", default="redis", help="redis, sqlite or both (comma-separated)")
    parser.add_argument("--calls", type=int, default=200, help="timed calls per read and depth")
    parser.add_argument("--json", help="write every sample here")
    args = parser.parse_args(argv)
    depths = [int(d) for d in args.depths.split(",")]
    every = {}
    for name in args.brokers.split(","):
        every[name] = run_broker(name, depths, args.calls)
    reads = ("oldest_ages", "counts_many", "counts_and_ages")
    print("\n| broker | depth | " + " | ".join(f"{r} ms, median (min–max)" for r in reads) + " |")
    print("|---|---|" + "---|" * len(reads))
    for name, by_depth in every.items():
        for depth, res in by_depth.items():
            print(f"| {name} | {depth:,} | " + " | ".join(summary(res[r]) for r in reads) + " |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"calls": args.calls, "results": every}, f, indent=1)


if __name__ == "__main__":
    main()
