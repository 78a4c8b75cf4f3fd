"""`python -m bench.peers`: mpqueue, Dramatiq, RQ, Huey, Celery and arq side by side,
on one private redis-server, one system at a time, 2 worker processes each.

Each system runs the same task module (bench/peer_modules.py) from its own
virtualenv (bench/.venvs/<system>, pinned in bench/requirements/<system>.txt;
mpqueue runs from the current interpreter). Every job records its own
completion in Redis db 1, so completion is detected the same way for all, and
no system gets a warm-up the others don't.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import yaml

from . import peer_modules as mods
from .common import PrivateRedis, fmt, kill_group, percentile, tree_cpu_seconds

HERE = Path(__file__).resolve().parent
HIGHER_IS_BETTER = ("jobs/s",)


def descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/task/{p}/children") as f:
                kids = [int(x) for x in f.read().split()]
        except FileNotFoundError:
            continue
        out += kids
        todo += kids
    return out


def ensure_venv(name: str) -> Path:
    """bench/.venvs/<name> with bench/requirements/<name>.txt, made once and reused
    while the requirements file is unchanged."""
    venv, req = HERE / ".venvs" / name, HERE / "requirements" / f"{name}.txt"
    stamp, wanted = venv / "requirements.stamp", req.read_text()
    if not (stamp.exists() and stamp.read_text() == wanted):
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", "-r", str(req)],
                       check=True)
        stamp.write_text(wanted)
    return venv / "bin"


class System:
    """One system under benchmark: its task module, its workers, its producer."""

    def __init__(self, name: str, redis, module: str, workers, env=None, version_of=None):
        self.name, self.redis = name, redis
        self.bin = Path(sys.executable).parent if name == "mpqueue" else ensure_venv(name.split("-")[0])
        self.dir = Path(tempfile.mkdtemp(prefix=f"peer-{name}-"))
        (self.dir / "benchpeer.py").write_text(mods.COMMON + module + mods.DRIVER)
        self.env = dict(os.environ, BENCH_BROKER=redis.url, BENCH_RESULTS=redis.results_url,
                        PYTHONPATH=str(self.dir), **(env or {}))
        self.env.pop("MPQUEUE_CONFIG", None)
        self.worker_cmds = workers(self)
        self.procs: list[subprocess.Popen] = []
        code = f"import importlib.metadata as m; print(m.version({version_of or name.split('-')[0]!r}))"
        self.version = subprocess.run([str(self.bin / "python"), "-c", code], capture_output=True, text=True,
                                      env=self.env, check=True).stdout.strip()

    def produce(self, *args) -> str:
        # Imported as `benchpeer`, not run as __main__: RQ and Huey name tasks by module.
        out = subprocess.run([str(self.bin / "python"), "-c", "import benchpeer; benchpeer._main()", *map(str, args)],
                             capture_output=True, text=True, env=self.env, cwd=self.dir, timeout=900)
        if out.returncode:
            raise RuntimeError(f"{self.name} producer {args}: {out.stderr[-2000:]}")
        return out.stdout.strip().splitlines()[-1]

    def start(self) -> None:
        log = open(self.dir / "workers.log", "ab")
        self.procs = [subprocess.Popen(cmd, env=self.env, cwd=self.dir, start_new_session=True,
                                       stdout=log, stderr=log) for cmd in self.worker_cmds]

    def stop(self) -> None:
        for p in self.procs:
            kill_group(p)
        self.procs = []

    def pids(self) -> set[int]:
        return {p.pid for p in self.procs} | {d for p in self.procs for d in descendants(p.pid)}

    def cpu_seconds(self) -> float:
        return sum(tree_cpu_seconds(p.pid) for p in self.procs)

    def alive(self) -> bool:
        return all(p.poll() is None for p in self.procs)


def mpqueue_workers(s: System):
    config = s.dir / "bench.yaml"
    config.write_text(yaml.safe_dump({
        "name": "peerbench", "broker": s.redis.url, "path": [str(s.dir)], "imports": ["benchpeer"],
        "log": {"level": "warning", "format": "text"}, "queues": {"bench": {"workers": 2, "result_ttl": 300}}}))
    s.env["MPQUEUE_RUNTIME_DIR"] = str(s.dir / "run")
    return [[str(s.bin / "python"), "-m", "mpqueue.cli", "run", "--config", str(config)]]


SYSTEMS = {
    "mpqueue": (mods.MPQUEUE, mpqueue_workers, {}),
    "dramatiq": (mods.DRAMATIQ, lambda s: [[str(s.bin / "dramatiq"), "benchpeer", "--processes", "2",
                                            "--threads", "1"]], {}),
    "rq": (mods.RQ, lambda s: [[str(s.bin / "rq"), "worker", "-u", s.redis.url, "--with-scheduler", "-q",
                                "bench"] for _ in range(2)], {}),
    "huey": (mods.HUEY, lambda s: [[str(s.bin / "huey_consumer"), "benchpeer.huey", "-k", "process", "-w", "2",
                                    "-q"]], {}),
    "celery": (mods.CELERY, lambda s: [[str(s.bin / "celery"), "-A", "benchpeer", "worker", "--concurrency", "2",
                                        "-P", "prefork", "-l", "warning"]], {}),
    "celery-reliable": (mods.CELERY, lambda s: [[str(s.bin / "celery"), "-A", "benchpeer", "worker",
                                                 "--concurrency", "2", "-P", "prefork", "-l", "warning"]],
                        {"BENCH_CELERY_RELIABLE": "1"}),
    "arq": (mods.ARQ, lambda s: [[str(s.bin / "arq"), "benchpeer.WorkerSettings"] for _ in range(2)], {}),
}


# -- workloads: each takes a fresh System and the sizes, returns its figures --------

def done(redis) -> int:
    return int(redis.results.get("done") or 0)


def wait(pred, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.002)
    return True


def reset(redis) -> None:
    redis.client.flushall()


def warm(s: System) -> None:
    """Started and serving: one probe job done, then the counters cleared."""
    s.start()
    s.produce("push", 1)
    if not wait(lambda: done(s.redis) >= 1, 60):
        raise RuntimeError(f"{s.name}: workers did not run a probe job within 60 s")
    time.sleep(0.5)  # ok: let every worker reach its idle wait before timing
    s.redis.results.flushdb()


def w_push(s, n):
    reset(s.redis)
    single = float(s.produce("push", min(n, 5000)))
    reset(s.redis)
    bulk = s.produce("bulk", n)
    return {"push, one at a time (jobs/s)": single,
            "push, bulk (jobs/s)": "n/a" if bulk == "n/a" else float(bulk)}


def _drain(s, n, what, label):
    reset(s.redis)
    s.produce(what, n)
    t0 = time.perf_counter()
    s.start()
    try:
        if not wait(lambda: done(s.redis) >= n, max(120, n / 20)):
            return {label: None}
        return {label: n / (time.perf_counter() - t0)}
    finally:
        s.stop()


def w_drain(s, n):
    return _drain(s, n, "fill", "drain no-op jobs (jobs/s)")


def w_io(s, n):
    return _drain(s, n, "io", "drain jobs of 2 ms sleep (jobs/s)")


def _stamps(s, n, *args):
    reset(s.redis)
    warm(s)
    try:
        s.produce(*args)
        wait(lambda: s.redis.results.llen("starts") >= n, 60)
        return [tuple(map(float, r.split())) for r in s.redis.results.lrange("starts", 0, -1)]
    finally:
        s.stop()


def w_latency(s, n=500):
    rows = _stamps(s, n, "stamps", n, 50)
    if len(rows) < n:
        return {"push-to-start p50 at 50 jobs/s (ms)": None, "push-to-start p99 at 50 jobs/s (ms)": None}
    lat = [(a - b) * 1000 for a, b, _ in rows]
    return {"push-to-start p50 at 50 jobs/s (ms)": percentile(lat, 50),
            "push-to-start p99 at 50 jobs/s (ms)": percentile(lat, 99)}


def w_delayed(s, n=500):
    rows = _stamps(s, n, "delayed", n)
    if len(rows) < n:
        return {"delayed job lateness p50 (ms)": None, "delayed job lateness p99 (ms)": None}
    late = [(a - due) * 1000 for a, _, due in rows]
    return {"delayed job lateness p50 (ms)": percentile(late, 50),
            "delayed job lateness p99 (ms)": percentile(late, 99)}


def w_idle(s, seconds=10.0):
    reset(s.redis)
    warm(s)
    try:
        c0, k0, t0 = s.cpu_seconds(), s.redis.commands(), time.perf_counter()
        time.sleep(seconds)  # ok: measuring what an idle system costs over a fixed window
        c1, k1, t1 = s.cpu_seconds(), s.redis.commands(), time.perf_counter()
        return {"idle: CPU of the worker process tree (% of a core)": (c1 - c0) / (t1 - t0) * 100,
                "idle: Redis commands/s": max(0, k1 - k0 - 2) / (t1 - t0)}
    finally:
        s.stop()


def w_memory(s, n):
    reset(s.redis)
    before = s.redis.used_memory()
    s.produce("payload", n)
    return {"Redis bytes per waiting job (100-byte arg)": (s.redis.used_memory() - before) / n}


def w_sigkill(s, n=2000, ticks=10, quiet=20.0):
    """SIGKILL one random job-running process every 0.5 s for `ticks` ticks, then
    wait until every job ran or nothing progressed for `quiet` s."""
    reset(s.redis)
    s.produce("victims", n)
    s.start()
    rng, killed = random.Random(1), 0
    try:
        for _ in range(ticks):
            time.sleep(0.5)  # ok: the kill cadence under test
            now = time.time()
            busy = {int(p) for p, t in s.redis.results.zrangebyscore("busy", now - 0.2, now, withscores=True)}
            targets = sorted(busy & s.pids())
            if targets:
                try:
                    os.kill(rng.choice(targets), signal.SIGKILL)
                    killed += 1
                except ProcessLookupError:
                    pass
        last, last_change = -1, time.monotonic()
        while time.monotonic() - last_change < quiet and s.redis.results.hlen("runs") < n:
            count = done(s.redis)
            if count != last:
                last, last_change = count, time.monotonic()
            time.sleep(0.1)  # ok: sampling progress
        runs = {int(k): int(v) for k, v in s.redis.results.hgetall("runs").items()}
        pool = s.alive()
        if pool:       # alive is not enough: does it still run a job?
            before = done(s.redis)
            s.produce("push", 1)
            pool = wait(lambda: done(s.redis) > before, 15)
        return {"SIGKILL: processes killed": killed,
                "SIGKILL: jobs lost (of 2,000)": sum(1 for i in range(n) if i not in runs),
                "SIGKILL: jobs run twice": sum(1 for v in runs.values() if v > 1),
                "SIGKILL: pool still serving afterwards (1 = yes)": 1 if pool else 0}
    finally:
        s.stop()


def run(args) -> tuple[dict, dict]:
    redis = PrivateRedis()
    results = defaultdict(lambda: defaultdict(list))
    versions = {}
    sizes = dict(drain=args.jobs, io=args.io_jobs, memory=args.memory_jobs, push=args.push_jobs)
    try:
        for r in range(args.rounds):
            for name in args.systems:
                module, workers, env = SYSTEMS[name]
                print(f"round {r + 1}/{args.rounds}: {name}", flush=True)
                s = System(name, redis, module, workers, env, version_of=name.split("-")[0])
                versions[name] = s.version
                plan = [(w_sigkill, ())] if name == "celery-reliable" else [
                    (w_push, (sizes["push"],)), (w_drain, (_drain_size(name, sizes["drain"], args),)),
                    (w_latency, ()), (w_delayed, ()), (w_idle, ()), (w_memory, (sizes["memory"],)),
                    (w_io, (sizes["io"],)), (w_sigkill, ())]
                for workload, wargs in plan:
                    try:
                        figures = workload(s, *wargs)
                    except Exception as exc:  # noqa: BLE001 - one system's failure is a result, not a crash
                        print(f"  {name} {workload.__name__}: {exc}", flush=True)
                        continue
                    finally:
                        s.stop()        # whatever the workload left running
                    for k, v in figures.items():
                        results[k][name].append(v)
                s.stop()
    finally:
        redis.stop()
    return results, versions


def _drain_size(name, n, args):
    # RQ's default worker forks per job (~60 jobs/s here): a smaller drain keeps the run short.
    return min(n, args.rq_jobs) if name == "rq" else n


def cell(samples) -> str:
    if not samples or all(v == "n/a" for v in samples):
        return "n/a"
    vals = [v for v in samples if v is not None]
    if not vals:
        return "failed"
    med = statistics.median(vals)
    text = fmt(med) if len(vals) == 1 else f"{fmt(med)} ({fmt(min(vals))}–{fmt(max(vals))})"
    return text + ("" if len(vals) == len(samples) else f" [{len(samples) - len(vals)} failed]")


def ratio(row: str, by_system: dict) -> str:
    med = {k: statistics.median([v for v in vs if isinstance(v, (int, float))]) for k, vs in by_system.items()
           if any(isinstance(v, (int, float)) for v in vs)}
    if "mpqueue" not in med or "SIGKILL" in row:
        return ""
    peers = {k: v for k, v in med.items() if k != "mpqueue"}
    if not peers:
        return ""
    higher = any(h in row for h in HIGHER_IS_BETTER)
    best_name = max(peers, key=peers.get) if higher else min(peers, key=peers.get)
    best, ours = peers[best_name], med["mpqueue"]
    if not best or not ours:
        return f"best peer {best_name}"
    x = ours / best if higher else best / ours
    return f"{x:.1f}x ({best_name})"


def table(results, versions, args) -> str:
    systems = [s for s in args.systems if any(s in v for v in results.values())]
    head = "| figure | " + " | ".join(f"{s} {versions.get(s, '')}" for s in systems) + " | mpqueue vs best peer |"
    lines = [head, "|---|" + "---:|" * len(systems) + "---|"]
    for row, by_system in results.items():
        lines.append(f"| {row} | " + " | ".join(cell(by_system.get(s, [])) for s in systems)
                     + f" | {ratio(row, by_system)} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.peers", description=__doc__)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--systems", default=",".join(SYSTEMS), help="comma-separated, of: " + ", ".join(SYSTEMS))
    ap.add_argument("--jobs", type=int, default=20000, help="drain size")
    ap.add_argument("--rq-jobs", type=int, default=2000, help="RQ's drain size")
    ap.add_argument("--io-jobs", type=int, default=10000)
    ap.add_argument("--memory-jobs", type=int, default=100000)
    ap.add_argument("--push-jobs", type=int, default=20000, help="bulk push size (one at a time: up to 5,000)")
    ap.add_argument("--quick", action="store_true", help="one round, small sizes: a smoke run")
    ap.add_argument("--json", metavar="FILE")
    args = ap.parse_args()
    args.systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = [s for s in args.systems if s not in SYSTEMS]
    if unknown:
        ap.error(f"unknown system(s): {', '.join(unknown)}")
    if args.quick:
        args.rounds, args.jobs, args.rq_jobs, args.io_jobs, args.memory_jobs, args.push_jobs = 1, 2000, 500, 1000, 10000, 2000
    t0 = time.time()
    results, versions = run(args)
    print(f"\ndrain sizes: {args.jobs:,} no-op jobs ({args.rq_jobs:,} for RQ), {args.io_jobs:,} jobs of 2 ms; "
          f"memory: {args.memory_jobs:,} waiting jobs")
    print(f"\n{os.cpu_count()} cores, Python {sys.version.split()[0]}, {time.strftime('%Y-%m-%d')}; "
          f"{args.rounds} rounds; {time.time() - t0:.0f} s\n")
    print(table(results, versions, args))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"versions": versions, "args": vars(args),
                       "results": {k: dict(v) for k, v in results.items()}}, f, indent=2)


if __name__ == "__main__":
    main()
