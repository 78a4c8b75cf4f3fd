"""`python -m bench.script_cost [TREE]`: what the Redis scripts cost the server per job,
for an A/B of two source trees (e.g. a checkout of main and this one), in one process
each, against a private redis-server: 5,000 one-at-a-time pushes, 50,000 in bulk
(1,000 a call), then a drain one job per reserve with its ack folded into the next,
and another of 50,000 sixteen a reserve (grab mode's default prefetch).
Prints one JSON line: client-side rates, and the server's own time per call or per job
(INFO commandstats: EVALSHA's usec over its calls), which the machine's other load
disturbs far less than the rates; and used_memory per waiting job.

    .venv/bin/python -m bench.script_cost /path/to/other/tree     # that tree's mpqueue
    .venv/bin/python -m bench.script_cost                          # this one's
"""
from __future__ import annotations

import json
import sys
import time


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv:
        sys.path.insert(0, argv[0])       # that tree's mpqueue first
    import mpqueue
    from mpqueue.brokers import Ack, open_broker
    try:
        from mpqueue.brokers import PushItem
    except ImportError:                    # a tree from before PushItem pushed tuples
        def PushItem(envelope, priority=0, delay=0.0):
            return envelope, priority, delay
    from mpqueue.core import envelope as jobmod

    from .common import PrivateRedis

    r = PrivateRedis()
    b = open_broker(r.url)
    q, out = "cost", {"tree": mpqueue.__file__}

    def evalsha():
        s = r.client.info("commandstats").get("cmdstat_evalsha", {})
        return s.get("calls", 0), s.get("usec", 0)
    try:
        b.push("warm", [PushItem(jobmod.encode("t:f")[1])])
        b.reserve("warm", "w", 1, 60)
        m0 = r.used_memory()
        n, bulk = 5000, 50_000
        c0, u0, t0 = *evalsha(), time.perf_counter()
        for i in range(n):
            b.push(q, [PushItem(jobmod.encode("t:f", [i])[1])])
        (c1, u1), t = evalsha(), time.perf_counter() - t0
        out.update({"push single /s": n / t, "push us/call redis": (u1 - u0) / (c1 - c0)})
        c0, u0, t0 = *evalsha(), time.perf_counter()
        for _ in range(0, bulk, 1000):
            b.push(q, [PushItem(jobmod.encode("t:f", [i])[1]) for i in range(1000)])
        (c1, u1), t = evalsha(), time.perf_counter() - t0
        out.update({"push bulk /s": bulk / t, "push bulk us/job redis": (u1 - u0) / bulk,
                    "bytes/job": (r.used_memory() - m0) / (n + bulk)})
        c0, u0, t0 = *evalsha(), time.perf_counter()
        got = drain(b, q, 1, Ack, jobmod)
        (c1, u1), t = evalsha(), time.perf_counter() - t0
        out.update({"drain one at a time /s": got / t, "reserve+ack us/call redis": (u1 - u0) / (c1 - c0),
                    "reserve+ack calls": c1 - c0})
        # grab mode's default prefetch: 16 reserved a call, the previous 16 acked in it
        for _ in range(0, bulk, 1000):
            b.push(q, [PushItem(jobmod.encode("t:f", [i])[1]) for i in range(1000)])
        c0, u0, t0 = *evalsha(), time.perf_counter()
        got = drain(b, q, 16, Ack, jobmod)
        (c1, u1), t = evalsha(), time.perf_counter() - t0
        out.update({"drain 16 a call /s": got / t, "reserve+ack 16 a call us/job redis": (u1 - u0) / got})
        print(json.dumps(out))
    finally:
        b.close()
        r.stop()


def drain(b, q, count, Ack, jobmod) -> int:
    """Reserve `count` jobs a call, acking the previous call's in it, until none is left."""
    acks, got = [], 0
    while True:
        res, _ = b.reserve(q, "w", count, 60, acks)
        acks = [Ack(jobmod.job_id(x.envelope), x.token, '{"result":null}', 60, True) for x in res]
        got += len(res)
        if not res:
            return got


if __name__ == "__main__":
    main()
