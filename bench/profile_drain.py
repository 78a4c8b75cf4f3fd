"""`python -m bench.profile_drain [--jobs N] [--mode grab|dispatch] [--label L]`:
where mpqueue's time goes while it drains no-op jobs (issue #29's hot path).

On a private redis-server: N no-op jobs queued, then `mpqueue run` (2 workers,
as in the drain workload) started under py-spy (`--subprocesses`, raw stacks,
`--nonblocking`), for the whole drain. Redis's `INFO commandstats` is reset
after the fill, so its calls and µs per call are the drain's alone; a
`redis-cli --latency` sampler runs beside it (the server's answer time to a
PING while it serves the drain). Writes `bench/profiles/drain-<label>.txt`:
the drain rate, Redis commands per job with their µs per call, the latency,
then per process (supervisor, each worker) where the on-CPU samples go
(profile_latency.summarize).

The drain rate under a sampler is lower than the benchmark's: compare the
figures of two runs of this script, not with `python -m bench`.
"""
from __future__ import annotations

import argparse
import re
import signal
import subprocess
import time
from pathlib import Path

from .common import PrivateRedis, wait_for
from .profile_latency import py_spy, sampler, summarize
from .systems.mpqueue import Mpqueue

HERE = Path(__file__).resolve().parent


def command_stats(redis) -> dict[str, tuple[int, float]]:
    """command -> (calls, µs per call) since the last CONFIG RESETSTAT."""
    out = {}
    for name, row in redis.client.info("commandstats").items():
        out[name.removeprefix("cmdstat_")] = (int(row["calls"]), float(row["usec_per_call"]))
    return out


def latency_sampler(port: int) -> subprocess.Popen:
    return subprocess.Popen(["redis-cli", "-p", str(port), "--latency", "--raw"], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)


def latency_line(proc: subprocess.Popen) -> str:
    proc.send_signal(signal.SIGINT)
    try:
        out, _ = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    lines = [ln for ln in out.splitlines() if ln.strip()]
    return lines[-1].strip() if lines else "(no reading)"


def report(label: str, jobs: int, seconds: float, stats: dict, latency: str, profile: str) -> str:
    lines = [f"{time.strftime('%Y-%m-%d')} {label}: {jobs} no-op jobs drained by 2 workers in {seconds:.2f} s "
             f"({jobs / seconds:,.0f} jobs/s under py-spy)", "",
             "Redis commands during the drain (INFO commandstats): calls per job, µs per call",]
    for name, (calls, usec) in sorted(stats.items(), key=lambda kv: -kv[1][0]):
        if name in ("info", "config", "ping"):
            continue
        lines.append(f"   {name:12s} {calls / jobs:8.3f} per job  {usec:8.2f} µs/call  ({calls} calls)")
    lines += ["", f"redis-cli --latency while draining (ms): {latency}", "", profile]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.profile_drain", description=__doc__)
    ap.add_argument("--jobs", type=int, default=100_000)
    ap.add_argument("--mode", choices=("grab", "dispatch"), default="grab")
    ap.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    ap.add_argument("--label", default="", help="the output's name: drain-<label>.txt (default: the mode)")
    ap.add_argument("--out", default=str(HERE / "profiles"))
    args = ap.parse_args()
    label = args.label or args.mode
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    spy = py_spy()
    redis = PrivateRedis()
    s = Mpqueue(redis, mode=args.mode)
    raw = out / f"drain-{label}.raw"
    spy_proc = lat = None
    try:
        s.reset()
        s.fill(args.jobs, "noop")
        redis.client.config_resetstat()
        t0 = time.perf_counter()
        s.start_workers("drain")
        spy_proc = sampler(spy, s.procs[0].pid, raw, "raw", args.rate, None, True)
        lat = latency_sampler(redis.port)
        if not wait_for(lambda: s.done() >= args.jobs, 600, 0.01):
            raise SystemExit(f"only {s.done()} of {args.jobs} jobs done within 600 s")
        seconds = time.perf_counter() - t0
        stats = command_stats(redis)
        latency = latency_line(lat)
    finally:
        s.cleanup()              # the service's exit ends the sampler, which then writes its file
        if spy_proc is not None:
            try:
                spy_proc.wait(30)
            except subprocess.TimeoutExpired:
                spy_proc.kill()
        if lat is not None and lat.poll() is None:
            lat.kill()
        redis.stop()
    profile = summarize(raw, top=45) if raw.exists() else "(py-spy wrote no profile)"
    text = report(label, args.jobs, seconds, stats, latency, re.sub(r"\n{3,}", "\n\n", profile))
    (out / f"drain-{label}.txt").write_text(text + "\n")
    raw.unlink(missing_ok=True)
    print(text[:3000])


if __name__ == "__main__":
    main()
