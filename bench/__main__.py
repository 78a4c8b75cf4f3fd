"""`python -m bench`: mpqueue and its peers (RQ, Dramatiq, Huey, Celery, arq) side
by side on one private redis-server, one system at a time, 2 worker processes
each, the same workloads for all; prints a markdown table of medians with
min–max over the rounds and mpqueue over the best peer per row. The peers are
installed into bench/.venv-peers and bench/.venv-peers-arq (pinned in
bench/requirements-peers*.txt), never into the project's environment."""
from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import sys
import time
from collections import defaultdict

from . import report
from .common import PrivateRedis
from .systems import PEERS, SYSTEMS
from .systems.base import Failed
from .workloads import WORKLOADS, Sizes, derived, labels, rows


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    ap.add_argument("--rounds", type=int, default=3, help="repeat every workload N times (default 3)")
    ap.add_argument("--quick", action="store_true", help="one round, small sizes: a smoke run")
    ap.add_argument("--systems", default=",".join(SYSTEMS),
                    help="comma-separated, of: " + ", ".join(SYSTEMS) + " (default: all)")
    ap.add_argument("--workloads", default=",".join(WORKLOADS),
                    help="comma-separated, of: " + ", ".join(WORKLOADS) + " (default: all)")
    ap.add_argument("--no-peers", action="store_true", help="mpqueue only (no peer virtualenvs needed)")
    ap.add_argument("--rq-drain", type=int, metavar="N", default=2000,
                    help="RQ's drain sizes, no-op and 2 ms jobs (default 2,000; 0: everyone's): its default "
                         "forking worker runs ~60 jobs/s here, 20,000 would take 5 minutes a round")
    ap.add_argument("--json", metavar="FILE", help="write every sample, the table and the settings")
    args = ap.parse_args()
    chosen = [s.strip() for s in args.systems.split(",") if s.strip()]
    workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    bad = [s for s in chosen if s not in SYSTEMS] + [w for w in workloads if w not in WORKLOADS]
    if bad:
        ap.error(f"unknown: {', '.join(bad)}")
    if args.no_peers:
        chosen = [s for s in chosen if s not in PEERS]
    sizes = Sizes.quick() if args.quick else Sizes()
    if args.quick:
        args.rounds = 1
    if args.rq_drain:
        n = min(500, args.rq_drain) if args.quick else args.rq_drain
        sizes.smaller = {"rq": {"drain": min(n, sizes.drain), "io": min(n, sizes.io)},
                         "rq-simple": {"drain": min(n, sizes.drain)}}

    # SIGTERM too unwinds through the finally below: no worker or redis-server is left behind
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.time()
    redis = PrivateRedis()
    systems, results = [], defaultdict(list)
    try:
        for name in chosen:
            systems.append(SYSTEMS[name](redis))
        header = machine(redis, systems, args)
        print(header, flush=True)
        for r in range(args.rounds):
            for s in systems:
                for w in workloads:
                    if not s.runs(w):
                        continue
                    t0 = time.time()
                    try:
                        figures = WORKLOADS[w](s, sizes)
                    except (Failed, Exception) as exc:  # noqa: BLE001 - a failed workload is a result, not a crash
                        why = str(exc) if isinstance(exc, Failed) else f"{type(exc).__name__}: {exc}"
                        print(f"  ! {s.name} {w}: {why}", flush=True)
                        figures = {label: f"failed: {why}" for label in labels(w, sizes)}
                    finally:
                        s.stop_workers()
                    for label, value in figures.items():
                        results[(label, s.name)].append(value)
                    print(f"round {r + 1}/{args.rounds} {s.name:16} {w:8} {time.time() - t0:6.1f} s  "
                          + "; ".join(f"{k}: {v if not isinstance(v, float) else round(v, 3)}"
                                      for k, v in figures.items()), flush=True)
                if args.json:
                    write_json(args.json, header, args, sizes, systems, results, started, partial=True)
    finally:
        # A second Ctrl-C or SIGTERM must not cut the cleanup short and leave servers running
        handlers = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
        for s in systems:
            s.cleanup()
        redis.stop()
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    duration = time.time() - started
    out = render(header, args, sizes, systems, results, duration)
    print("\n" + out)
    if args.json:
        write_json(args.json, header, args, sizes, systems, results, started, partial=False, table=out)
        draw_charts(args.json)


def draw_charts(path: str) -> None:
    """The PNG charts next to the JSON (bench/charts.py), when matplotlib is there."""
    try:
        from . import charts
        for png in charts.write(path):
            print(f"chart: {png}")
    except ImportError as exc:
        print(f"no charts: {exc} (pip install matplotlib)")


def machine(redis, systems, args) -> str:
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        pass
    server = redis.client.info("server")
    return (f"{time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores ({cpu or platform.machine()}), "
            f"Python {platform.python_version()}, Redis {server['redis_version']}; "
            f"{args.rounds} round{'s' if args.rounds > 1 else ''}{' (--quick sizes)' if args.quick else ''}; "
            + ", ".join(f"{column} {version}" for column, version in
                        {s.column: s.version for s in sorted(systems, key=lambda s: s.variant is None)}.items()))


def footnotes(sizes, systems) -> list[str]:
    notes = []
    rq = [s for s in systems if s.name in sizes.smaller]
    if rq:
        notes.append("RQ drains fewer jobs than the row says, to keep the run short (its default forking worker "
                     "runs ~60 jobs/s here): " + "; ".join(
                         f"{s.name}: " + ", ".join(f"{n:,} in {w}" for w, n in sizes.smaller[s.name].items()
                                                   if s.runs(w)) for s in rq)
                     + ". Its jobs/s are comparable; set `--rq-drain 0` for the full sizes.")
    for s in systems:
        notes += [n for n in s.notes if n not in notes]
    if any(s.runs("io50") for s in systems):
        notes.append(f"io50: {sizes.io50:,} jobs of a 50 ms wait (asyncio.sleep in an async def, time.sleep in "
                     "a thread or greenlet), queued, then the workers started; 64 jobs at once in all. Timed from "
                     "the first job's start (its completion minus 50 ms) to the last job's completion, start-up "
                     "left out; the ceiling is 64 / 0.05 s = 1,280 jobs/s. RSS: /proc/<pid>/statm of warm idle "
                     "workers (after 4 probe jobs and 1 s), and the peak of each process over the io50 drain "
                     "(sampled every 0.1 s); 'per job-running process' is the mean over the processes that run "
                     "jobs (not a supervisor), 'all' adds every process of the system's.")
    if any(s.runs("drain") for s in systems):
        notes.append("drain CPU: CPU seconds (/proc/<pid>/stat, processes and their children) from the start "
                     "command to the last job, over that wall time, as % of one core: the workers; every "
                     "Redis server (the private one, which holds the results db and is the single-Redis rows' "
                     "broker, and a deployment's masters, replicas and sentinels); the whole machine (% of all "
                     "its cores, whoever used them), and everything else: its busy time less the workers' and "
                     "the Redis servers' (the bench's polling, kernel threads, other users of the machine: a "
                     "round disturbed by others shows there). The broker-master rows only where the broker is a server of "
                     "its own (Sentinel, Cluster): a master runs commands on one thread, so 100% is its ceiling.")
    if any(s.runs("ticks") and s.has_schedules for s in systems):
        notes.append(f"ticks: a schedule of `every: 1` in the service's YAML; its task records time.time() and "
                     "current_job().scheduled_for at its first line; lateness = start minus tick, over the first "
                     f"{sizes.ticks} ticks after the workers are warm (p99 of {sizes.ticks} is about their "
                     "maximum). mpqueue only: the peers' schedulers are other processes (n/a).")
    if any(s.runs("result") and s.has_results for s in systems):
        notes.append(f"result: {sizes.results:,} jobs one at a time from one caller process; each job sleeps 20 ms "
                     "(so the caller already waits in Client.result()) and returns time.time() as its last act; "
                     "figure = the caller's clock when result() returns minus that value (the worker's ack, the "
                     "broker's hint, the caller's read). mpqueue only (n/a for the peers). 'Everything else' CPU "
                     "includes the caller process and the bench's polling.")
    notes.append("Bulk push n/a: the system has no bulk enqueue API. A SQLite-broker row has no Redis figures.")
    notes.append("SIGKILL: a process is picked among those whose job marked it as running; after the ticks the "
                 "benchmark waits until every job ran, or nothing progressed for "
                 f"{sizes.quiet:g} s plus the system's own redelivery time (mpqueue retry_delay 3 s, Dramatiq "
                 "heartbeat_timeout 60 s, arq job_timeout + 10 s), or no process of the system is left. "
                 "'lost' = never recorded; 'still serving' = 2 new jobs ran within 20 s.")
    return notes


def render(header, args, sizes, systems, results, duration) -> str:
    results = {**results, **derived(results, systems, sizes)}
    lines = [header + f"; {duration / 60:.0f} min", "", report.table(results, systems, sizes), ""]
    for extra in (report.versus(results, systems, sizes), report.cluster_estimate(results, systems, sizes)):
        if extra:
            lines += [extra, ""]
    lines += [f"{i}. {n}" for i, n in enumerate(footnotes(sizes, systems), 1)]
    return "\n".join(lines)


def write_json(path, header, args, sizes, systems, results, started, partial: bool, table: str = "") -> None:
    results = {**results, **derived(results, systems, sizes)}
    data = {
        "machine": header, "partial": partial, "duration_s": round(time.time() - started, 1),
        "argv": sys.argv[1:], "rounds": args.rounds, "sizes": vars(sizes),
        "systems": {s.name: {"column": s.column, "variant": s.variant, "version": s.version, "settings": s.settings,
                             "workloads": [w for w in WORKLOADS if s.runs(w)]} for s in systems},
        "rows": [{"figure": label, "direction": direction, "system": s.name,
                  "samples": results[(label, s.name)]} for _, label, direction in rows(sizes)
                 for s in systems if (label, s.name) in results],
        "notes": footnotes(sizes, systems),
        "cluster_estimate": report.cluster_estimate(results, systems, sizes),
        "table": table,
    }
    with open(path, "w") as f:
        json.dump(data, f, indent=2)


if __name__ == "__main__":
    main()
