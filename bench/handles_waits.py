"""`python -m bench.handles_waits`: many result() waits and aresult() awaits in
one process at once (issue #27, items 2 and 10): N jobs pushed, a waiter for
each (a thread calling result(), or a task of one event loop awaiting
aresult()), and once every waiter is watching, the jobs are ended in batches of
100 (reserve + ack, as a worker does). Each waiter's latency is from the start of the ack of
its job's batch to the moment its wait returned; printed as p50 / p99 / max ms,
with how many waits failed (there should be none).

On a private redis-server (and, with `--brokers redis,sqlite`, an SQLite file
in a temporary directory). The soft open-file limit is raised to the hard one
(SQLite's waits hold a FIFO each).

    .venv/bin/python -m bench.handles_waits
    .venv/bin/python -m bench.handles_waits --waiters 1000 --brokers redis,sqlite --json out.json
"""
from __future__ import annotations

import argparse
import asyncio
import json
import resource
import shutil
import statistics
import tempfile
import threading
import time

from mpqueue.brokers import Ack
from mpqueue.core import envelope as jobmod
from mpqueue.producer.client import Client

from .common import PrivateRedis

QUEUE = "waits"
BATCH = 100


def watching(broker) -> list:
    """Ids whose waiter watches its job and has looked it up since (then it sleeps)."""
    ready, pending = [], set()
    watch, find = broker.watch, broker.find

    def watched(queue, job_id):
        w = watch(queue, job_id)
        pending.add(job_id)
        return w

    def found(queue, job_id):
        out = find(queue, job_id)
        if job_id in pending:
            pending.discard(job_id)
            ready.append(job_id)
        return out
    broker.watch, broker.find = watched, found
    return ready


def end_all(broker, n: int, acked: dict) -> None:
    left = n
    while left:
        reserved, _ = broker.reserve(QUEUE, "bench", min(left, BATCH), 60.0)
        jobs = [jobmod.decode(r.envelope, QUEUE, r.token) for r in reserved]
        now = time.monotonic()      # the ack starts: a waiter may be told before the call returns
        broker.ack(QUEUE, [Ack(j.id, j.token, json.dumps({"result": j.id}), 60, True) for j in jobs])
        for j in jobs:
            acked[j.id] = now
        left -= len(jobs)


def until(predicate, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("the waiters did not all start waiting")
        time.sleep(0.01)


def with_threads(client, handles) -> tuple[dict, dict, list]:
    ready, acked, returned, errors = watching(client.broker), {}, {}, []

    def wait(h):
        try:
            assert h.result(timeout=300) == h.id
            returned[h.id] = time.monotonic()
        except Exception as exc:      # noqa: BLE001 - counted and reported
            errors.append(repr(exc))
    threads = [threading.Thread(target=wait, args=(h,)) for h in handles]
    for t in threads:
        t.start()
    until(lambda: len(ready) == len(handles) or errors, 300)
    end_all(client.broker, len(handles), acked)
    for t in threads:
        t.join()
    return acked, returned, errors


def with_awaits(client, handles) -> tuple[dict, dict, list]:
    ready, acked, returned, errors = watching(client.broker), {}, {}, []

    async def wait(h):
        try:
            assert await h.aresult(timeout=300) == h.id
            returned[h.id] = time.monotonic()
        except Exception as exc:      # noqa: BLE001 - counted and reported
            errors.append(repr(exc))

    async def main():
        tasks = [asyncio.ensure_future(wait(h)) for h in handles]
        while len(ready) < len(handles) and not errors:
            await asyncio.sleep(0.01)
        await asyncio.to_thread(end_all, client.broker, len(handles), acked)
        await asyncio.gather(*tasks)
    asyncio.run(main())
    return acked, returned, errors


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def run(url: str, how: str, n: int) -> dict:
    client = Client(url)
    try:
        handles = client.push_many(QUEUE, [{"task": "bench:noop"}] * n)
        t0 = time.monotonic()
        acked, returned, errors = (with_threads if how == "result" else with_awaits)(client, handles)
        ms = [(returned[i] - acked[i]) * 1000 for i in returned]
        return {"waiters": n, "ok": len(returned), "failed": len(errors), "first_error": errors[:1],
                "p50_ms": statistics.median(ms) if ms else None, "p99_ms": percentile(ms, 99) if ms else None,
                "max_ms": max(ms) if ms else None, "total_s": time.monotonic() - t0}
    finally:
        client.close()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.handles_waits", description=__doc__.split("\n\n")[0])
    parser.add_argument("--waiters", type=int, default=1000, help="jobs, each with a waiter (default 1000)")
    parser.add_argument("--brokers", default="redis", help="redis, sqlite or both (comma-separated)")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else max(soft, 65536), hard))
    rows = []
    for name in args.brokers.split(","):
        for how in ("result", "aresult"):
            if name == "redis":
                server = PrivateRedis()
                url, cleanup = server.url, server.stop
            else:
                tmp = tempfile.mkdtemp(prefix="mpq-bench-sqlite-")
                url, cleanup = f"sqlite://{tmp}/queue.db", lambda tmp=tmp: shutil.rmtree(tmp, ignore_errors=True)
            try:
                res = {"broker": name, "wait": how, **run(url, how, args.waiters)}
            finally:
                cleanup()
            rows.append(res)
            print(f"  {name} {how}: {res['ok']}/{res['waiters']} ok, p50 {res['p50_ms']:.1f} ms, "
                  f"p99 {res['p99_ms']:.1f} ms, max {res['max_ms']:.1f} ms", flush=True)
    print("\n| broker | wait | waiters | ok | failed | p50 ms | p99 ms | max ms |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['broker']} | {r['wait']} | {r['waiters']:,} | {r['ok']:,} | {r['failed']} | "
              f"{r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['max_ms']:.1f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"argv": argv, "results": rows}, f, indent=1)


if __name__ == "__main__":
    main()
