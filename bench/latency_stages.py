"""`python -m bench.latency_stages`: where push-to-start time goes, stage by stage.

A consumer process waits as a grab worker does; the producer pushes one job
every 20 ms. Two paths are measured, 300 jobs each:
- hand-over: the consumer is on the idle list, so the push script reserves the
  job for it and sends it in the wake-up message (the usual case when idle);
- hint + reserve: the consumer is not on the idle list (as when every worker
  was busy at push time): it wakes on the hint and reserves with a round trip."""
from __future__ import annotations

import json
import os
import select
import time

from mpqueue.core import envelope as jobmod
from mpqueue.brokers import PushItem, open_broker

from .common import PrivateRedis, percentile

N = 300


def consumer(url: str, out_fd: int, hand_over: bool) -> None:
    broker = open_broker(url)
    waiter = broker.waiter("lat", "c")
    out = os.fdopen(out_fd, "w")
    flags = "LE" if hand_over else ""
    for _ in range(N):
        while True:
            reserved, _ = broker.reserve("lat", "c", 1, 30, idle=flags)
            if reserved:
                break
            select.select([waiter], [], [], 10)
            woke = time.time()
            handed = waiter.drain()
            drained = time.time()
            if handed:
                break
        out.write(json.dumps([woke, drained, time.time()]) + "\n")
        out.flush()
    os._exit(0)


def measure(redis, hand_over: bool) -> list:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        consumer(redis.url, w, hand_over)
    os.close(w)
    replies = os.fdopen(r)
    broker = open_broker(redis.url)
    time.sleep(0.5)  # ok: let the consumer subscribe and idle
    rows = []
    try:
        for _ in range(N):
            t0 = time.time()
            _, env = jobmod.encode("m:f", [t0])
            broker.push("lat", [PushItem(env)])
            t1 = time.time()
            woke, drained, in_hand = json.loads(replies.readline())
            rows.append((t1 - t0, woke - t0, drained - woke, in_hand - drained, in_hand - t0))
            time.sleep(0.02)  # ok: pacing the producer
    finally:
        os.waitpid(pid, 0)
    return rows


def main() -> None:
    redis = PrivateRedis()
    try:
        paths = {"hand-over": measure(redis, True), "hint + reserve": measure(redis, False)}
    finally:
        redis.stop()
    names = ["push call (producer's round trip)", "push start -> consumer wakes", "read the message",
             "reserve call (round trip; none after a hand-over)", "total: push start -> job in hand"]
    print("| stage | hand-over p50 / p99 ms | hint + reserve p50 / p99 ms |\n|---|---:|---:|")
    cols = {path: list(zip(*rows)) for path, rows in paths.items()}
    for i, name in enumerate(names):
        cells = []
        for path in paths:
            ms = [c * 1000 for c in cols[path][i]]
            cells.append(f"{percentile(ms, 50):.3f} / {percentile(ms, 99):.3f}")
        print(f"| {name} | {cells[0]} | {cells[1]} |")


if __name__ == "__main__":
    main()
