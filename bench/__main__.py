"""`python -m bench`: mpqueue's benchmark on a private redis-server, with Dramatiq's
drain measured in the same run for comparison. Prints a markdown table of
medians with min–max over the rounds; --json FILE writes the raw figures."""
from __future__ import annotations

import argparse
import json
import os
import platform
import time

from . import workloads
from .common import PrivateRedis, fmt, summary


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--jobs", type=int, default=20000, help="jobs in the drain workload")
    ap.add_argument("--quick", action="store_true", help="small sizes, one round: a smoke run")
    ap.add_argument("--no-peers", action="store_true", help="skip Dramatiq (no peer virtualenv needed)")
    ap.add_argument("--json", metavar="FILE")
    args = ap.parse_args()
    if args.quick:
        args.rounds, args.jobs = 1, 2000
    redis = PrivateRedis()
    try:
        results, versions = workloads.run_all(redis, args)
    finally:
        redis.stop()
    print_table(results, versions, args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"versions": versions, "results": {k: summary(v) for k, v in results.items()},
                       "machine": machine()}, f, indent=2)


def machine() -> str:
    return f"{os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}, " \
           f"{time.strftime('%Y-%m-%d')}"


def print_table(results: dict, versions: dict, args) -> None:
    print(f"\n{machine()}; {args.rounds} rounds; " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    print("\n| figure | median | min–max |\n|---|---:|---:|")
    for name, samples in results.items():
        s = summary(samples)
        print(f"| {name} | {fmt(s['median'])} | {fmt(s['min'])}–{fmt(s['max'])} |")
    sqlite = next((v for k, v in results.items() if k.startswith("sqlite: drain")), None)
    redis_grab = next((v for k, v in results.items() if k.startswith("drain ") and "grab" in k), None)
    if sqlite and redis_grab:
        import statistics
        print(f"\nmpqueue drain, SQLite / Redis broker: {statistics.median(sqlite) / statistics.median(redis_grab):.2f}")
    ratios = [(k, v) for k, v in results.items() if k.startswith("drain ") and "dramatiq" not in k]
    peer = results.get("drain 20k no-op, dramatiq 2 processes (jobs/s)")
    if peer:
        import statistics
        for name, samples in ratios:
            print(f"\n{name.split(',')[1].strip()} / dramatiq drain: "
                  f"{statistics.median(samples) / statistics.median(peer):.1f}x")


if __name__ == "__main__":
    main()
