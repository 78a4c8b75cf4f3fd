"""What every system under benchmark provides, and the plumbing they share.

A system is two halves:
- a task module, `benchpeer.py`, written to a temporary directory and run by the
  system's own interpreter (its virtualenv), both as the workers' task code and
  as the producer. It is RECORDING (the job bodies, identical for everyone) +
  the system's own part (its tasks and three producer functions: send(task,
  args), send_later(task, args, delay), and bulk(task, list_of_args) or
  bulk = None) + DRIVER (the producer's command line);
- a controller object here (System): start_workers(), wait_ready(),
  stop_workers(), worker_pids(), pool_state(), and push(n), push_bulk(n),
  fill(n, kind), push_stamps(n, rate), push_delayed(n), which run the producer
  as a separate process that times itself.
"""
from __future__ import annotations

import os
import random
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from ..common import alive, children, descendants, kill_tree, rss_bytes, tree_cpu_seconds, wait_for

# Workloads a system runs only when it names them in `workloads`: io50 needs a
# system configured to run 64 jobs at once (the variants in systems/__init__.py).
OPT_IN = ("io50",)

# The job bodies. Every system's tasks call these, so every job costs the same
# one extra round trip to record itself in Redis db 1 (the results db).
RECORDING = '''
import os, sys, time
import redis as _redis_lib

R = _redis_lib.Redis.from_url(os.environ["BENCH_RESULTS"])
BROKER = os.environ["BENCH_BROKER"]


def _noop(*args):
    R.incr("done")


def _stamp(pushed_at, due_at=0):
    R.rpush("starts", f"{time.time()} {pushed_at} {due_at}")


def _io(ms=2):
    time.sleep(ms / 1000)
    R.incr("done")


def _io50():
    # the io50 workload, for thread pools (and gevent, which patches time.sleep):
    # wait 50 ms, then record, like _io
    time.sleep(0.05)
    R.incr("done")


async def _io50_async():
    # the io50 workload, for asyncio: wait 50 ms on the loop, then record with the
    # same blocking INCR as everyone's (one round trip, the loop waits for it)
    import asyncio
    await asyncio.sleep(0.05)
    R.incr("done")


def _victim(i):
    # the SIGKILL workload: mark this process as running a job, work 5 ms,
    # then record the run (HINCRBY, so a second run is countable) in one round trip
    pid = str(os.getpid())
    R.hset("running", pid, i)
    time.sleep(0.005)
    pipe = R.pipeline(transaction=False)
    pipe.hincrby("runs", str(i), 1).hdel("running", pid).incr("done")
    pipe.execute()
'''

# The producer's command line: `python -c "import benchpeer; benchpeer._main()" CMD N ...`.
# Prints its own rate (jobs/s), timed from its first push to its last.
DRIVER = '''

def _args_of(kind, i):
    return {"noop": (), "payload": ("x" * 100,), "io": (2,), "io50": (), "victim": (i,)}[kind]


def _task_of(kind):
    return {"noop": "noop", "payload": "noop", "io": "io", "io50": "io50", "victim": "victim"}[kind]


def _main():
    cmd, n = sys.argv[1], int(sys.argv[2])
    first = int(sys.argv[3]) if cmd == "fill" and len(sys.argv) > 4 else 0
    t0 = time.perf_counter()
    if cmd == "push":                 # one at a time
        for _ in range(n):
            send("noop", ())
    elif cmd == "bulk":
        if bulk is None:
            print("n/a")
            return
        bulk("noop", [()] * n)
    elif cmd == "fill":               # queue n jobs of a kind the fastest way the system has
        kind = sys.argv[-1]
        task = _task_of(kind)
        if bulk is not None:
            for start in range(first, first + n, 1000):
                bulk(task, [_args_of(kind, i) for i in range(start, min(first + n, start + 1000))])
        else:
            for i in range(first, first + n):
                send(task, _args_of(kind, i))
    elif cmd == "stamps":             # a steady rate of jobs that stamp their start
        rate = float(sys.argv[3])
        for i in range(n):
            now = time.time()
            send("stamp", (now, now))
            pause = t0 + (i + 1) / rate - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
    elif cmd == "results":            # the result workload's caller (systems with has_results define _results)
        _results(n)
        return
    elif cmd == "delayed":            # due 1-3 s after their push, with the system's own delay API
        for i in range(n):
            delay = 1 + 2 * i / n
            now = time.time()
            send_later("stamp", (now, now + delay), delay)
    print(n / (time.perf_counter() - t0))
'''


class Failed(Exception):
    """A workload this system could not complete; str() goes into the table."""


class System:
    """The controller half. Subclasses set the class attributes and MODULE."""
    name = ""                 # registry key, e.g. "celery-reliable"
    column = ""               # the table column it reports into, e.g. "celery"
    variant = None            # None for a system's main rows; else what differs (shown in the row label)
    workloads = None          # None: every workload; else the names it runs
    has_bulk = False          # a bulk enqueue API (push_bulk)
    uses_redis_broker = True  # False: Redis-only figures (memory, commands/s) are n/a
    supervised = True         # one parent process supervising job-running children
    workers = 2               # job-running processes it should keep
    recovery_s = 0.0          # how long the system takes to redeliver a job whose process was killed
    MODULE = ""               # the system's own part of benchpeer.py
    settings = ""             # how it is run, for the README and the JSON
    notes: tuple = ()         # footnotes for the table
    reference = False         # a reference row (the bare loop), not a peer: left out of "best peer"
    probe_kind = "noop"       # the jobs wait_ready() runs to warm the workers up
    has_schedules = False     # the ticks workload: periodic jobs from the service's own config
    has_results = False       # the result workload: a caller waiting for a job's return value

    def __init__(self, redis, bin_dir: Path, broker: str | None = None):
        self.redis = redis
        self.bin = Path(bin_dir)
        self.python = self.bin / "python"
        self.broker = broker or redis.url
        self.dir = Path(tempfile.mkdtemp(prefix=f"bench-{self.name}-"))
        (self.dir / "benchpeer.py").write_text(RECORDING + self.MODULE + DRIVER)
        self.env = dict(os.environ, BENCH_BROKER=self.broker, BENCH_RESULTS=redis.results_url,
                        PYTHONPATH=str(self.dir), PYTHONDONTWRITEBYTECODE="1")
        for var in ("MPQUEUE_CONFIG", "MPQUEUE_BROKER", "VIRTUAL_ENV"):
            self.env.pop(var, None)
        self.procs: list[subprocess.Popen] = []
        self.version = self._version()

    # -- identity -------------------------------------------------------------
    def _version(self) -> str:
        code = f"import importlib.metadata as m; print(m.version({self.column!r}))"
        out = subprocess.run([str(self.python), "-c", code], capture_output=True, text=True, env=self.env)
        return out.stdout.strip() or "?"

    def runs(self, workload: str) -> bool:
        if self.workloads is None:
            return workload not in OPT_IN
        return workload in self.workloads

    def lacks(self, workload: str) -> str | None:
        """Why this build of the system cannot run a workload it offers (an older tree), or None."""
        return None

    def cleanup(self) -> None:
        self.stop_workers()
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- workers ----------------------------------------------------------------
    def worker_commands(self, workload: str) -> list[list[str]]:
        raise NotImplementedError

    def reset(self) -> None:
        """Before each workload, with no workers running: an empty broker and results db."""
        self.redis.client.flushall()

    def start_workers(self, workload: str = "") -> None:
        log = open(self.dir / "workers.log", "ab")
        log.write(f"\n=== {workload} {time.strftime('%H:%M:%S')}\n".encode())
        log.flush()
        self.procs = [subprocess.Popen(cmd, env=self.env, cwd=self.dir, start_new_session=True,
                                       stdout=log, stderr=log) for cmd in self.worker_commands(workload)]
        log.close()

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Serving and idle, judged the same way for everyone: 4 probe jobs done (of the
        kind the configuration is for: no-op, or 50 ms waits for the io50 variants),
        then 1 s for every worker to reach its idle wait; the results db is then cleared."""
        self.fill(4, self.probe_kind)
        if not wait_for(lambda: self.done() >= 4, timeout, 0.01):
            raise Failed(f"workers did not run 4 probe jobs within {timeout:g} s")
        time.sleep(1.0)  # ok: let each worker settle into its idle wait before measuring
        self.redis.results.flushdb()

    def stop_workers(self) -> None:
        for p in self.procs:
            kill_tree(p)
        self.procs = []

    def worker_pids(self) -> set[int]:
        """Every live process of the system's (roots and descendants)."""
        pids = {p.pid for p in self.procs if p.poll() is None}
        return {q for p in list(pids) for q in descendants(p)} | pids

    def job_pids(self) -> list[int]:
        """The processes that run jobs: a supervisor's live children, else the roots."""
        roots = [p.pid for p in self.procs if p.poll() is None]
        if self.supervised:
            return [c for r in roots for c in children(r) if alive(c)]
        return [r for r in roots if alive(r)]

    def rss(self) -> tuple[dict[int, int], int]:
        """({job-running pid: RSS bytes}, RSS bytes of every process of the system's)."""
        jobs = {pid: rss_bytes(pid) for pid in self.job_pids()}
        return {p: b for p, b in jobs.items() if b}, sum(rss_bytes(pid) for pid in self.worker_pids())

    def cpu_seconds(self) -> float:
        return sum(tree_cpu_seconds(p.pid) for p in self.procs)

    def redis_cpu(self) -> dict:
        """CPU seconds so far of every Redis server the row uses: {"all": the private
        server's (plus a deployment's), "per_master": {port: seconds} of the broker's
        masters, or None when the broker is the private server, which also holds the
        results db (its CPU is not the broker's alone)}."""
        return {"all": tree_cpu_seconds(self.redis.proc.pid), "per_master": None}

    def pool_state(self) -> tuple[bool, str]:
        """(intact, description): parent(s) alive and the job-running processes present."""
        roots = [p for p in self.procs if p.poll() is None and alive(p.pid)]
        if not roots:
            return False, "died"
        if self.supervised:
            kids = sum(1 for r in roots for c in children(r.pid) if alive(c))
            if kids >= self.workers:
                return True, "intact"
            return False, f"parent alive, {kids} of {self.workers} workers"
        if len(roots) == len(self.procs):
            return True, "intact"
        return False, f"{len(roots)} of {len(self.procs)} workers alive"

    def failed_count(self) -> int | None:
        """Jobs in the system's own failed store, where it has one."""
        return None

    # -- producer ----------------------------------------------------------------
    def _produce(self, *args, timeout: float = 900) -> str:
        out = subprocess.run([str(self.python), "-c", "import benchpeer; benchpeer._main()", *map(str, args)],
                             capture_output=True, text=True, env=self.env, cwd=self.dir, timeout=timeout)
        if out.returncode:
            raise Failed(f"producer {' '.join(map(str, args))} failed: {out.stderr.strip().splitlines()[-1:]}")
        return out.stdout.strip().splitlines()[-1]

    def push(self, n: int) -> float:
        """No-op jobs one at a time from one producer; jobs/s."""
        return float(self._produce("push", n))

    def push_bulk(self, n: int) -> float | None:
        """No-op jobs through the bulk API; jobs/s, or None without one."""
        if not self.has_bulk:
            return None
        return float(self._produce("bulk", n))

    def fill(self, n: int, kind: str) -> None:
        """Queue n jobs of a kind (noop, payload, io, io50, victim) the fastest way the
        system offers: its bulk API, else two producers pushing one at a time."""
        if self.has_bulk or n < 100:
            self._produce("fill", n, 0, kind)
            return
        half = n // 2
        procs = [subprocess.Popen([str(self.python), "-c", "import benchpeer; benchpeer._main()", "fill",
                                   str(count), str(first), kind], env=self.env, cwd=self.dir,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                 for first, count in ((0, half), (half, n - half))]
        for p in procs:
            _, err = p.communicate(timeout=1800)
            if p.returncode:
                raise Failed(f"producer fill failed: {err.decode().strip().splitlines()[-1:]}")

    def push_stamps(self, n: int, rate: float) -> None:
        self._produce("stamps", n, rate)

    def push_delayed(self, n: int) -> None:
        self._produce("delayed", n)

    # -- what the workloads read ---------------------------------------------------
    def done(self) -> int:
        return int(self.redis.results.get("done") or 0)

    def kill_one_running(self, rng: random.Random, within: float = 0.25) -> bool:
        """SIGKILL one random process of this system's that is running a job (the
        victim jobs mark their process in the `running` hash), waiting up to
        `within` s for one to be; True if one was killed."""
        import signal
        deadline = time.monotonic() + within
        while True:
            running = {int(p) for p in self.redis.results.hkeys("running")}
            targets = sorted(pid for pid in running & self.worker_pids() if alive(pid))
            if targets:
                try:
                    os.kill(rng.choice(targets), signal.SIGKILL)
                    return True
                except ProcessLookupError:
                    pass
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)
