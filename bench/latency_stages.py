"""`python -m bench.latency_stages`: where push-to-start time goes, stage by stage.

A consumer process waits exactly as a grab worker does (pub/sub hint, then the
reserve script); the producer pushes one job every 20 ms. For each job it
records: the push call's round trip, push start -> the consumer waking, draining
the hint, and the reserve round trip. Medians and p99 over 300 jobs."""
from __future__ import annotations

import json
import os
import select
import time

from mpqueue import job as jobmod
from mpqueue.brokers import open_broker

from .common import PrivateRedis, percentile

N = 300


def consumer(url: str, out_fd: int) -> None:
    broker = open_broker(url)
    waiter = broker.waiter("lat")
    out = os.fdopen(out_fd, "w")
    for _ in range(N):
        while True:
            reserved, _ = broker.reserve("lat", "c", 1, 30)
            if reserved:
                break
            select.select([waiter], [], [], 10)
            woke = time.time()
            waiter.drain()
            drained = time.time()
        out.write(json.dumps([woke, drained, time.time()]) + "\n")
        out.flush()
    os._exit(0)


def main() -> None:
    redis = PrivateRedis()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        consumer(redis.url, w)
    os.close(w)
    replies = os.fdopen(r)
    broker = open_broker(redis.url)
    time.sleep(0.5)  # ok: let the consumer subscribe and idle
    rows = []
    try:
        for _ in range(N):
            t0 = time.time()
            _, env = jobmod.encode("m:f", [t0])
            broker.push("lat", [(env, 0, 0)])
            t1 = time.time()
            woke, drained, reserved = json.loads(replies.readline())
            rows.append((t1 - t0, woke - t0, drained - woke, reserved - drained, reserved - t0))
            time.sleep(0.02)  # ok: pacing the producer
    finally:
        os.waitpid(pid, 0)
        redis.stop()
    names = ["push call (producer's round trip)", "push start -> consumer wakes", "drain the hint",
             "reserve call (round trip)", "total: push start -> job in hand"]
    print("| stage | p50 ms | p99 ms |\n|---|---:|---:|")
    for name, col in zip(names, zip(*rows)):
        ms = [c * 1000 for c in col]
        print(f"| {name} | {percentile(ms, 50):.3f} | {percentile(ms, 99):.3f} |")


if __name__ == "__main__":
    main()
