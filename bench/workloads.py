"""The workloads. Each function runs one round and returns the figure(s) it measured."""
from __future__ import annotations

import time

from .common import percentile, tree_cpu_seconds, wait_until
from .mpqueue_sys import Mpqueue


def reset(redis) -> None:
    redis.client.flushall()


def push_rate(redis, bulk: bool, n: int, broker: str = "redis") -> float:
    reset(redis)
    system = Mpqueue(redis, broker=broker)
    t0 = time.perf_counter()
    (system.push_bulk if bulk else system.push)(n)
    return n / (time.perf_counter() - t0)


def drain(redis, system, n: int) -> tuple[float, float]:
    """Jobs/s from worker start until every job recorded itself; and time to the first."""
    reset(redis)
    system.push_bulk(n)
    t0 = time.perf_counter()
    system.start_workers()
    try:
        wait_until(lambda: int(redis.results.get("done") or 0) >= 1, 60, "first job", 0.001)
        first = time.perf_counter() - t0
        wait_until(lambda: int(redis.results.get("done") or 0) >= n, 600, "drain", 0.002)
        return n / (time.perf_counter() - t0), first
    finally:
        system.stop_workers()


def _stamped(redis, mode: str, n: int, push_all, broker: str = "redis") -> list[tuple[float, float, float]]:
    """Run `push_all(system)` against idle workers; (started, pushed, due) per job."""
    reset(redis)
    system = Mpqueue(redis, mode, broker=broker)
    system.start_workers()
    try:
        system.wait_ready()
        push_all(system)
        wait_until(lambda: redis.results.llen("starts") >= n, 30, "stamped jobs")
        return [tuple(map(float, row.split())) for row in redis.results.lrange("starts", 0, -1)]
    finally:
        system.stop_workers()


def latency(redis, mode: str, n: int = 500, rate: float = 50.0, broker: str = "redis") -> tuple[float, float]:
    """Push-to-start p50/p99 (ms) at a steady rate with idle workers."""
    def push_all(system):
        start = time.perf_counter()
        for i in range(n):
            system.push_stamp()
            pause = start + (i + 1) / rate - time.perf_counter()
            if pause > 0:
                time.sleep(pause)  # ok: pacing the producer at a steady rate
    lat = [(started - pushed) * 1000 for started, pushed, _ in _stamped(redis, mode, n, push_all, broker)]
    return percentile(lat, 50), percentile(lat, 99)


def delayed(redis, n: int = 500) -> tuple[float, float]:
    """Lateness (ms) of jobs due 1-3 s after push, kept in the broker until due."""
    def push_all(system):
        for i in range(n):
            system.push_stamp(delay=1 + 2 * i / n)
    late = [(started - due) * 1000 for started, _, due in _stamped(redis, "grab", n, push_all)]
    return percentile(late, 50), percentile(late, 99)


def idle(redis, seconds: float = 10.0, broker: str = "redis") -> tuple[float, float]:
    """CPU % of one core for the whole process tree, and Redis commands/s, while idle."""
    reset(redis)
    system = Mpqueue(redis, broker=broker)
    system.start_workers()
    try:
        system.wait_ready()
        cpu0, cmd0, t0 = tree_cpu_seconds(system.proc.pid), redis.commands(), time.perf_counter()
        time.sleep(seconds)  # ok: measuring what an idle service costs over a fixed window
        cpu1, cmd1, t1 = tree_cpu_seconds(system.proc.pid), redis.commands(), time.perf_counter()
        own = 2   # the two INFO calls of this measurement
        return (cpu1 - cpu0) / (t1 - t0) * 100, max(0, cmd1 - cmd0 - own) / (t1 - t0)
    finally:
        system.stop_workers()


def memory(redis, n: int = 100_000) -> float:
    """Redis bytes per waiting job with a 100-byte string argument."""
    reset(redis)
    system = Mpqueue(redis)
    before = redis.used_memory()
    system.push_bulk(n, args=["x" * 100])
    return (redis.used_memory() - before) / n


def sqlite_round(redis, args, results) -> None:
    """The same workloads on the embedded SQLite broker (a fresh file each time)."""
    results["sqlite: push, one at a time (jobs/s)"].append(push_rate(redis, False, min(5000, args.jobs), "sqlite"))
    results["sqlite: push, bulk (jobs/s)"].append(push_rate(redis, True, args.jobs, "sqlite"))
    rate, first = drain(redis, Mpqueue(redis, "grab", broker="sqlite"), args.jobs)
    results[f"sqlite: drain {args.jobs // 1000}k no-op, grab 2 processes (jobs/s)"].append(rate)
    p50, p99 = latency(redis, "grab", broker="sqlite")
    results["sqlite: push-to-start p50 at 50 jobs/s, grab (ms)"].append(p50)
    results["sqlite: push-to-start p99 at 50 jobs/s, grab (ms)"].append(p99)
    cpu, _ = idle(redis, broker="sqlite")
    results["sqlite: idle: CPU of the process tree (% of a core)"].append(cpu)


def run_all(redis, args) -> tuple[dict, dict]:
    from collections import defaultdict
    results, versions = defaultdict(list), {}
    peer = None
    if not args.no_peers:
        from .dramatiq_sys import Dramatiq
        peer = Dramatiq(redis)
        versions["dramatiq"] = peer.version
    for r in range(args.rounds):
        print(f"round {r + 1}/{args.rounds}", flush=True)
        results["push, one at a time (jobs/s)"].append(push_rate(redis, False, min(5000, args.jobs)))
        results["push, bulk (jobs/s)"].append(push_rate(redis, True, args.jobs))
        for mode in ("grab", "dispatch"):
            rate, first = drain(redis, Mpqueue(redis, mode), args.jobs)
            results[f"drain {args.jobs // 1000}k no-op, mpqueue {mode} 2 processes (jobs/s)"].append(rate)
            results[f"drain: time to first job, mpqueue {mode} (s)"].append(first)
        if peer is not None:
            rate, first = drain(redis, peer, args.jobs)
            results[f"drain {args.jobs // 1000}k no-op, dramatiq 2 processes (jobs/s)"].append(rate)
            results["drain: time to first job, dramatiq (s)"].append(first)
        for mode in ("grab", "dispatch"):
            p50, p99 = latency(redis, mode)
            results[f"push-to-start p50 at 50 jobs/s, {mode} (ms)"].append(p50)
            results[f"push-to-start p99 at 50 jobs/s, {mode} (ms)"].append(p99)
        p50, p99 = delayed(redis)
        results["delayed job lateness p50 (ms)"].append(p50)
        results["delayed job lateness p99 (ms)"].append(p99)
        cpu, cmds = idle(redis)
        results["idle: CPU of the process tree (% of a core)"].append(cpu)
        results["idle: Redis commands/s"].append(cmds)
        results["Redis bytes per waiting job (100-byte arg)"].append(memory(redis))
        sqlite_round(redis, args, results)
    import mpqueue
    versions = {"mpqueue": mpqueue.__version__, **versions}
    return dict(results), versions
