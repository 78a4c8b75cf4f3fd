"""The workloads, each written once against the System interface (bench/systems/base.py).

Each takes a system and the sizes, runs one round, and returns {row label: value};
a value is a number, None ("n/a": the system has no such feature), or a string
(what went wrong, or a state). Every workload starts from an empty Redis
(FLUSHALL; a fresh file for a SQLite broker) and stops every process it started.
Completion is read the same way for everyone: each job records itself in Redis
db 1 (INCR done, RPUSH starts, or HINCRBY runs).
"""
from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass, field

from .common import machine_jiffies, percentile, wait_for
from .systems.base import Failed

HIGHER, LOWER, COUNT, INFO, TEXT = "higher", "lower", "count", "info", "text"

# io50: every job waits 50 ms; every system runs 64 of them at once (2 processes),
# so no system can drain faster than 64 / 0.05 s.
IO50_WAIT, IO50_AT_ONCE = 0.05, 64
IO50_CEILING = IO50_AT_ONCE / IO50_WAIT     # 1,280 jobs/s
MIB = 1024 * 1024


@dataclass
class Sizes:
    push: int = 5000            # one at a time
    bulk: int = 20000
    drain: int = 20000
    latency: int = 500
    rate: float = 50.0          # jobs/s for push-to-start
    delayed: int = 500
    idle: float = 10.0          # seconds
    memory: int = 100_000
    io: int = 10000
    io50: int = 10000           # jobs of a 50 ms wait, 64 at a time
    kill_jobs: int = 2000
    kill_ticks: int = 10
    ticks: int = 20             # schedule ticks of `every: 1` measured (20 s a round)
    results: int = 200          # result() waits, one job at a time
    quiet: float = 30.0         # SIGKILL: give up after this long without progress (plus the system's recovery_s)
    smaller: dict = field(default_factory=dict)   # {system name: {"drain": n, "io": n}}

    def of(self, system, what: str) -> int:
        return self.smaller.get(system.name, {}).get(what, getattr(self, what))

    @classmethod
    def quick(cls) -> "Sizes":
        return cls(push=1000, bulk=5000, drain=2000, latency=100, delayed=100, idle=3.0, memory=10000, io=1000,
                   io50=1500, kill_jobs=500, kill_ticks=4, quiet=10.0,
                   ticks=5, results=50)


def rows(z: Sizes) -> list[tuple[str, str, str]]:
    """(workload, row label, direction) in table order."""
    return [
        ("push", f"push one at a time, {z.push:,} no-op (jobs/s)", HIGHER),
        ("push", f"push bulk, {z.bulk:,} no-op (jobs/s)", HIGHER),
        ("drain", f"drain {z.drain:,} no-op (jobs/s)", HIGHER),
        ("drain", f"drain {z.drain:,} no-op: % of the bare loop (same round)", HIGHER),
        ("drain", "drain: time to first job (s)", LOWER),
        ("drain", "drain: CPU of the workers, start to last job (% of one core)", INFO),
        ("drain", "drain: CPU of every Redis server, start to last job (% of one core)", INFO),
        ("drain", f"drain: the whole machine busy, start to last job (% of its {os.cpu_count()} cores)", INFO),
        ("drain", "drain: CPU of everything else on the machine, start to last job (% of one core)", INFO),
        ("drain", "drain: the busiest broker master (% of one core)", INFO),
        ("drain", "drain: broker masters' CPU per job, summed over the masters (µs)", INFO),
        ("latency", f"push-to-start p50 at {z.rate:g} jobs/s (ms)", LOWER),
        ("latency", f"push-to-start p99 at {z.rate:g} jobs/s (ms)", LOWER),
        ("delayed", "delayed jobs due 1–3 s: lateness p50 (ms)", LOWER),
        ("delayed", "delayed jobs due 1–3 s: lateness p99 (ms)", LOWER),
        ("idle", f"idle {z.idle:g} s: CPU of the worker process tree (% of a core)", LOWER),
        ("idle", f"idle {z.idle:g} s: Redis commands/s", LOWER),
        ("memory", f"Redis bytes per waiting job, 100-byte argument ({z.memory:,} queued)", LOWER),
        ("drain", f"Redis bytes per waiting no-op job ({z.drain:,} queued)", LOWER),
        ("io", f"drain {z.io:,} jobs of 2 ms sleep (jobs/s)", HIGHER),
        ("io50", f"io50: drain {z.io50:,} jobs of a 50 ms wait, {IO50_AT_ONCE} at a time (jobs/s)", HIGHER),
        ("io50", f"io50: % of the {IO50_CEILING:,.0f} jobs/s ceiling ({IO50_AT_ONCE} / {IO50_WAIT:g} s)", HIGHER),
        ("memory", "RSS per job-running process, idle (MiB)", LOWER),
        ("io50", "RSS per job-running process, busy in io50 (MiB)", LOWER),
        ("memory", "RSS of all the system's processes, idle (MiB)", LOWER),
        ("io50", "RSS of all the system's processes, busy in io50 (MiB)", LOWER),
        ("ticks", f"schedule `every: 1`: tick lateness p50, {z.ticks} ticks (ms)", LOWER),
        ("ticks", f"schedule `every: 1`: tick lateness p99, {z.ticks} ticks (ms)", LOWER),
        ("ticks", "ticks: CPU of everything else on the machine meanwhile (% of one core)", INFO),
        ("result", f"result(): returned after the task's return p50, {z.results} waits (ms)", LOWER),
        ("result", f"result(): returned after the task's return p99, {z.results} waits (ms)", LOWER),
        ("result", "result: CPU of everything else on the machine meanwhile (% of one core)", INFO),
        ("sigkill", f"SIGKILL: processes killed ({z.kill_ticks} ticks)", INFO),
        ("sigkill", f"SIGKILL: jobs lost (of {z.kill_jobs:,})", COUNT),
        ("sigkill", "SIGKILL: jobs run twice", COUNT),
        ("sigkill", "SIGKILL: jobs in the system's failed store", INFO),
        ("sigkill", "SIGKILL: the pool afterwards", TEXT),
    ]


def labels(workload: str, z: Sizes) -> list[str]:
    return [label for w, label, _ in rows(z) if w == workload]


# -- the workloads ------------------------------------------------------------------

def push(s, z: Sizes) -> dict:
    """Push throughput from one producer process (timed inside it): one at a time, and bulk."""
    one_label, bulk_label = labels("push", z)
    s.reset()
    one = s.push(z.push)
    s.reset()
    return {one_label: one, bulk_label: s.push_bulk(z.bulk)}


def _drain(s, n: int, workload: str, on_done=None) -> tuple[float, float]:
    """Start the workers on n queued jobs; (jobs/s from the start command until the
    n-th job recorded itself, seconds to the first). on_done() is called at that
    instant, before the workers are stopped (so a CPU reading leaves their stop out)."""
    t0 = time.perf_counter()
    s.start_workers(workload)
    try:
        if not wait_for(lambda: s.done() >= 1, 60, 0.001):
            raise Failed("no job done within 60 s of starting the workers")
        first = time.perf_counter() - t0
        last, last_change = -1, time.monotonic()
        while True:
            count = s.done()
            if count >= n:
                rate = n / (time.perf_counter() - t0)
                if on_done:
                    on_done()
                return rate, first
            if count != last:
                last, last_change = count, time.monotonic()
            elif time.monotonic() - last_change > 60:
                raise Failed(f"stalled at {count:,} of {n:,} done")
            time.sleep(0.005)
    finally:
        s.stop_workers()


def _cpu_reading(s) -> tuple:
    return time.perf_counter(), s.cpu_seconds(), s.redis_cpu(), machine_jiffies()


def _cpu_figures(n: int, before: tuple, after: tuple, labels_: list[str]) -> dict:
    """Where the drain's CPU went, as % of one core over its wall time: the workers,
    every Redis server (the private one, and a deployment's masters, replicas and
    sentinels), the whole machine, and the rest of it (the machine's busy time
    less those two: the bench, the kernel's threads, other users); and, where the
    broker is a server of its own (Sentinel, Cluster), its busiest master (a
    master runs commands on one thread: 100% is its ceiling) and the masters' CPU
    per job. Read so as to say what limits a row on this machine."""
    workers_label, redis_label, machine_label, else_label, busiest_label, per_job_label = labels_
    (t0, w0, r0, (b0, j0)), (t1, w1, r1, (b1, j1)) = before, after
    wall = t1 - t0
    workers, servers = (w1 - w0) / wall * 100, (r1["all"] - r0["all"]) / wall * 100
    busy = (b1 - b0) / os.sysconf("SC_CLK_TCK") / wall * 100      # % of one core, all cores together
    figures = {workers_label: workers, redis_label: servers, machine_label: (b1 - b0) / max(1, j1 - j0) * 100,
               # the bench's own polling, the kernel's threads, and whoever else shares the machine:
               # a run disturbed by others shows here
               else_label: max(0.0, busy - workers - servers)}
    if r1["per_master"] is not None:
        spent = [r1["per_master"][port] - r0["per_master"][port] for port in r1["per_master"]]
        figures[busiest_label] = max(spent) / wall * 100
        figures[per_job_label] = sum(spent) / n * 1e6
    return figures


def drain(s, z: Sizes) -> dict:
    """n no-op jobs queued, then the workers started: jobs/s until all are done, time to
    the first, where the CPU went meanwhile; and, from the fill, Redis bytes per
    waiting no-op job."""
    rate_label, _, first_label, *cpu_labels, mem_label = labels("drain", z)   # the % of the bare loop: derived()
    n = z.of(s, "drain")
    s.reset()
    before = s.redis.used_memory()
    s.fill(n, "noop")
    per_job = (s.redis.used_memory() - before) / n
    cpu, after = _cpu_reading(s), []
    rate, first = _drain(s, n, "drain", lambda: after.append(_cpu_reading(s)))
    figures = {rate_label: rate, first_label: first, **_cpu_figures(n, cpu, after[0], cpu_labels)}
    if s.variant is None and s.uses_redis_broker:     # the same jobs in a variant: no new figure
        figures[mem_label] = per_job
    return figures


def _stamped(s, workload: str, n: int, produce, timeout: float) -> list[tuple[float, float, float]]:
    """Run produce() against warm, idle workers; (started, pushed, due) of each job."""
    s.reset()
    s.start_workers(workload)
    try:
        s.wait_ready()
        produce()
        if not wait_for(lambda: s.redis.results.llen("starts") >= n, timeout, 0.01):
            raise Failed(f"{s.redis.results.llen('starts')} of {n} jobs started within {timeout:g} s")
        return [tuple(map(float, row.split())) for row in s.redis.results.lrange("starts", 0, -1)]
    finally:
        s.stop_workers()


def latency(s, z: Sizes) -> dict:
    """Push-to-start at a steady rate to idle workers: the job's first line minus the
    producer's clock just before its push call."""
    p50_label, p99_label = labels("latency", z)
    got = _stamped(s, "latency", z.latency, lambda: s.push_stamps(z.latency, z.rate), 30)
    ms = [(started - pushed) * 1000 for started, pushed, _ in got]
    return {p50_label: percentile(ms, 50), p99_label: percentile(ms, 99)}


def delayed(s, z: Sizes) -> dict:
    """Jobs due 1-3 s after their push, through the system's own delay API:
    lateness of their start past the due instant."""
    p50_label, p99_label = labels("delayed", z)
    got = _stamped(s, "delayed", z.delayed, lambda: s.push_delayed(z.delayed), 60)
    ms = [(started - due) * 1000 for started, _, due in got]
    return {p50_label: percentile(ms, 50), p99_label: percentile(ms, 99)}


def idle(s, z: Sizes) -> dict:
    """A warm, idle system: CPU of every process it runs, and Redis commands/s."""
    cpu_label, cmd_label = labels("idle", z)
    s.reset()
    s.start_workers("idle")
    try:
        s.wait_ready()
        c0, k0, t0 = s.cpu_seconds(), s.redis.commands(), time.perf_counter()
        time.sleep(z.idle)  # ok: measuring what an idle system costs over a fixed window
        c1, k1, t1 = s.cpu_seconds(), s.redis.commands(), time.perf_counter()
    finally:
        s.stop_workers()
    own = 1   # the first INFO call (each INFO reply counts the commands before it)
    cmds = max(0, k1 - k0 - own) / (t1 - t0) if s.uses_redis_broker else None
    return {cpu_label: (c1 - c0) / (t1 - t0) * 100, cmd_label: cmds}


def memory(s, z: Sizes) -> dict:
    """Redis bytes per waiting job with one 100-byte string argument (used_memory
    after the fill minus before, over n); and, for the configurations that run
    io50, the RSS of warm, idle workers (after 4 probe jobs and 1 s)."""
    label, per_process_label, total_label = labels("memory", z)
    figures = {}
    if s.variant is None:               # a variant queues the same jobs: no new figure
        if not s.uses_redis_broker:
            figures[label] = None
        else:
            s.reset()
            before = s.redis.used_memory()
            s.fill(z.memory, "payload")
            figures[label] = (s.redis.used_memory() - before) / z.memory
    if s.runs("io50"):
        s.reset()
        s.start_workers("memory")
        try:
            s.wait_ready()
            per_process, total = s.rss()
        finally:
            s.stop_workers()
        if not per_process:
            raise Failed("no job-running process found")
        figures[per_process_label] = sum(per_process.values()) / len(per_process) / MIB
        figures[total_label] = total / MIB
    return figures


def io(s, z: Sizes) -> dict:
    """A realistic mix: jobs that each sleep 2 ms (time.sleep, for everyone), drained."""
    (label,) = labels("io", z)
    n = z.of(s, "io")
    s.reset()
    s.fill(n, "io")
    rate, _ = _drain(s, n, "io")
    return {label: rate}


def io50(s, z: Sizes) -> dict:
    """n jobs that each wait 50 ms, queued, then the workers started (2 processes,
    64 jobs at once in all). Timed from the first job's start (its completion
    minus the 50 ms wait) to the last job's completion: start-up is left out, as
    the figure is read against a steady-state ceiling, 64 / 0.05 s. Every 0.1 s
    the RSS of the system's processes is sampled: per job-running process, its
    peak over the drain (averaged over the processes), and the peak of the total."""
    rate_label, pct_label, per_process_label, total_label = labels("io50", z)
    n = z.io50
    s.reset()
    s.fill(n, "io50")
    peaks, total_peak, next_sample = {}, 0, 0.0

    def sample():
        nonlocal total_peak, next_sample
        now = time.monotonic()
        if now >= next_sample:
            next_sample = now + 0.1
            per_process, total = s.rss()
            for pid, rss in per_process.items():
                peaks[pid] = max(peaks.get(pid, 0), rss)
            total_peak = max(total_peak, total)

    s.start_workers("io50")
    try:
        deadline = time.monotonic() + 60
        while s.done() < 1:
            if time.monotonic() > deadline:
                raise Failed("no job done within 60 s of starting the workers")
            sample()
            time.sleep(0.001)
        first_start = time.perf_counter() - IO50_WAIT
        last, last_change = -1, time.monotonic()
        while True:
            count = s.done()
            if count >= n:
                rate = n / (time.perf_counter() - first_start)
                break
            if count != last:
                last, last_change = count, time.monotonic()
            elif time.monotonic() - last_change > 60:
                raise Failed(f"stalled at {count:,} of {n:,} done")
            sample()
            time.sleep(0.005)
    finally:
        s.stop_workers()
    return {rate_label: rate, pct_label: rate / IO50_CEILING * 100,
            per_process_label: sum(peaks.values()) / len(peaks) / MIB if peaks else "no process sampled",
            total_label: total_peak / MIB}


def derived(results: dict, systems: list, z: Sizes) -> dict:
    """Rows computed across systems after the run: each system's no-op drain as a
    % of the bare loop's in the same round. {(label, system name): [samples]}."""
    rate_label, pct_label = labels("drain", z)[:2]
    bare = [s for s in systems if s.name == "bare"]
    if not bare:
        return {}
    base = results.get((rate_label, bare[0].name), [])
    out = {}
    for s in systems:
        mine = results.get((rate_label, s.name))
        if s is bare[0] or not mine:
            continue
        out[(pct_label, s.name)] = [
            mine_r / base_r * 100 if all(isinstance(v, (int, float)) for v in (mine_r, base_r)) and base_r else
            "n/a: a round failed" for mine_r, base_r in zip(mine, base)]
    return out


def sigkill(s, z: Sizes) -> dict:
    """Jobs of 5 ms queued, workers started; every 0.5 s for `kill_ticks` ticks one
    random process that is running a job is SIGKILLed. Then wait until every job
    has recorded itself, or nothing progressed for `quiet` s plus the system's own
    redelivery time, or no process of the system is left; count lost and doubled
    jobs, and look at the pool (then push 2 jobs: does it still run them?)."""
    killed_label, lost_label, twice_label, failed_label, pool_label = labels("sigkill", z)
    n = z.kill_jobs
    res = s.redis.results
    s.reset()
    s.fill(n, "victim")
    s.start_workers("sigkill")
    try:
        if not wait_for(lambda: res.hlen("running") > 0 or s.done() > 0, 60, 0.005):
            raise Failed("no job started within 60 s of starting the workers")
        rng, killed, tick = random.Random(), 0, time.monotonic()
        for _ in range(z.kill_ticks):
            tick += 0.5
            time.sleep(max(0.0, tick - time.monotonic()))  # ok: the kill cadence under test
            killed += s.kill_one_running(rng)
        quiet = z.quiet + s.recovery_s
        last, last_change, dead_since = -1, time.monotonic(), None
        while res.hlen("runs") < n:
            now, count = time.monotonic(), s.done()
            if count != last:
                last, last_change = count, now
            if now - last_change > quiet:
                break
            if not s.worker_pids():
                dead_since = dead_since or now
                if now - dead_since > 3:
                    break
            time.sleep(0.1)  # ok: sampling progress
        runs = {int(k): int(v) for k, v in res.hgetall("runs").items()}
        failed = s.failed_count()
        intact, state = s.pool_state()
        serving = False
        if s.worker_pids():
            before = s.done()
            s.fill(2, "noop")
            serving = wait_for(lambda: s.done() > before, 20, 0.05)
        return {killed_label: killed,
                lost_label: sum(1 for i in range(n) if i not in runs),
                twice_label: sum(1 for v in runs.values() if v > 1),
                failed_label: failed,
                pool_label: f"{state}, {'still serving' if serving else 'not serving'}"}
    finally:
        s.stop_workers()


def _else_cpu(before: tuple, after: tuple) -> float:
    """% of one core the machine was busy over the window, less the system's processes
    and every Redis server: the bench itself (and its producer), kernel threads, and
    whoever else shares the machine."""
    (t0, w0, r0, (b0, _)), (t1, w1, r1, (b1, _)) = before, after
    wall = t1 - t0
    busy = (b1 - b0) / os.sysconf("SC_CLK_TCK") / wall * 100
    return max(0.0, busy - (w1 - w0) / wall * 100 - (r1["all"] - r0["all"]) / wall * 100)


def ticks(s, z: Sizes) -> dict:
    """A schedule of `every: 1` (the service's `schedules:` key) of a task whose first
    line records time.time() and current_job().scheduled_for: lateness = its start
    minus its tick, over the first z.ticks ticks after the workers are warm (the tick
    a start fires late, by design, is left out). Systems without schedules: n/a."""
    p50_label, p99_label, else_label = labels("ticks", z)
    if not s.has_schedules:
        return {p50_label: None, p99_label: None, else_label: None}
    if s.lacks("ticks"):
        return {label: s.lacks("ticks") for label in (p50_label, p99_label, else_label)}
    n = z.ticks
    s.reset()
    s.start_workers("ticks")
    try:
        s.wait_ready()
        since, cpu = time.time(), _cpu_reading(s)

        def measured():
            rows_ = [tuple(map(float, r.split())) for r in s.redis.results.lrange("ticks", 0, -1)]
            return [(started, tick) for started, tick in rows_ if tick >= since]

        if not wait_for(lambda: len(measured()) >= n, n + 30, 0.05):
            raise Failed(f"{len(measured())} of {n} ticks ran within {n + 30} s")
        after = _cpu_reading(s)
        got = sorted(measured(), key=lambda r: r[1])[:n]
    finally:
        s.stop_workers()
    ms = [(started - tick) * 1000 for started, tick in got]
    return {p50_label: percentile(ms, 50), p99_label: percentile(ms, 99), else_label: _else_cpu(cpu, after)}


def result(s, z: Sizes) -> dict:
    """Client.result() in a caller that is already waiting when the job ends: one
    producer process pushes a job (it sleeps 20 ms, so the caller is in result() by
    then, and returns time.time() as its last act), calls result(), and takes its
    clock when result() returns, minus the returned time: the worker's ack and the
    broker's hint to the waiter, one job at a time. Same host clock. Systems
    without result(): n/a."""
    p50_label, p99_label, else_label = labels("result", z)
    if not s.has_results:
        return {p50_label: None, p99_label: None, else_label: None}
    if s.lacks("result"):
        return {label: s.lacks("result") for label in (p50_label, p99_label, else_label)}
    s.reset()
    s.start_workers("result")
    try:
        s.wait_ready()
        cpu = _cpu_reading(s)
        ms = s.result_waits(z.results)
        after = _cpu_reading(s)
    finally:
        s.stop_workers()
    if ms is None:
        return {label: "n/a: this mpqueue has no Client.result" for label in (p50_label, p99_label, else_label)}
    return {p50_label: percentile(ms, 50), p99_label: percentile(ms, 99), else_label: _else_cpu(cpu, after)}


WORKLOADS = {"push": push, "drain": drain, "latency": latency, "delayed": delayed, "idle": idle,
             "memory": memory, "io": io, "io50": io50, "sigkill": sigkill, "ticks": ticks, "result": result}
