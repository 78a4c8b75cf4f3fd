"""`python -m bench.profile_latency [--jobs N] [--rate HZ] [--out DIR]`: py-spy
profiles of mpqueue during the push-to-start workload (grab mode, 2 workers,
jobs at 50/s to idle workers, on a private redis-server).

Two py-spy samplers watch the service (supervisor and both workers,
`--subprocesses`) and two watch the producer: one writes a flame graph SVG,
the other the raw collapsed stacks, which this script then sums up into a
text summary (where the on-CPU samples of each process go). py-spy samples
only running threads (no --idle), so a worker's samples are the time between
its wake-up and going back to sleep: reading the hand-over, decoding, the
task itself, the ack. `--nonblocking` keeps py-spy from pausing the processes
it samples. py-spy: PY_SPY, else `py-spy` on the PATH or next to this Python.
"""
from __future__ import annotations

import argparse
import collections
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from .common import PrivateRedis, percentile, wait_for
from .systems.mpqueue import Mpqueue

HERE = Path(__file__).resolve().parent


def py_spy() -> str:
    found = os.environ.get("PY_SPY") or shutil.which("py-spy")
    if not found and (Path(sys.executable).parent / "py-spy").exists():
        found = str(Path(sys.executable).parent / "py-spy")
    if not found:
        sys.exit("py-spy not found: pip install py-spy, or set PY_SPY=/path/to/py-spy")
    return found


def sampler(spy: str, pid: int, out: Path, fmt: str, rate: int, duration: float | None, sub: bool):
    cmd = [spy, "record", "--pid", str(pid), "--rate", str(rate), "--nonblocking", "--format", fmt, "-o", str(out)]
    if sub:
        cmd.append("--subprocesses")
    if duration:
        cmd += ["--duration", str(int(duration))]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def summarize(raw: Path, top: int = 25) -> str:
    """Per process: samples, and the functions with the most inclusive and self samples."""
    per_proc: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    self_: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    totals: collections.Counter = collections.Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        proc = frames[0] if frames[0].startswith("process ") else "process"
        frames = frames[1:] if frames[0].startswith("process ") else frames
        proc = re.sub(r"^process \d+:", "", proc).strip('"')[:90]
        n = int(count)
        totals[proc] += n
        for f in dict.fromkeys(re.sub(r":\d+\)$", ")", f) for f in frames):
            per_proc[proc][f] += n
        if frames:
            self_[proc][re.sub(r":\d+\)$", ")", frames[-1])] += n
    out = []
    for proc, total in totals.most_common():
        out.append(f"== {proc}: {total} samples on CPU")
        out.append("   inclusive (% of this process's samples), the top frames:")
        for f, n in per_proc[proc].most_common(top):
            out.append(f"   {100 * n / total:5.1f}%  {f}")
        out.append("   self (the frame on top of the stack):")
        for f, n in self_[proc].most_common(12):
            out.append(f"   {100 * n / total:5.1f}%  {f}")
        out.append("")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.profile_latency", description=__doc__)
    ap.add_argument("--jobs", type=int, default=3000)
    ap.add_argument("--rate", type=int, default=1000, help="py-spy samples per second")
    ap.add_argument("--out", default=str(HERE / "profiles"))
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    spy = py_spy()
    redis = PrivateRedis()
    s = Mpqueue(redis)
    spies = []
    try:
        s.reset()
        s.start_workers("latency")
        s.wait_ready()
        supervisor = s.procs[0].pid
        seconds = args.jobs / 50 + 3
        spies += [sampler(spy, supervisor, out / "worker-grab.svg", "flamegraph", args.rate, seconds, True),
                  sampler(spy, supervisor, out / "worker-grab.raw", "raw", args.rate, seconds, True)]
        time.sleep(1.0)  # ok: let the samplers attach before the first job
        producer = subprocess.Popen([str(s.python), "-c", "import benchpeer; benchpeer._main()", "stamps",
                                     str(args.jobs), "50"], env=s.env, cwd=s.dir, stdout=subprocess.DEVNULL)
        spies += [sampler(spy, producer.pid, out / "producer.svg", "flamegraph", args.rate, None, False),
                  sampler(spy, producer.pid, out / "producer.raw", "raw", args.rate, None, False)]
        producer.wait()
        wait_for(lambda: redis.results.llen("starts") >= args.jobs, 30)
        rows = [tuple(map(float, r.split())) for r in redis.results.lrange("starts", 0, -1)]
        ms = [(a - b) * 1000 for a, b, _ in rows]
        for p in spies:
            try:
                p.wait(seconds + 30)
            except subprocess.TimeoutExpired:
                p.send_signal(signal.SIGINT)
                p.wait(30)
    finally:
        for p in spies:
            if p.poll() is None:
                p.kill()
        s.cleanup()
        redis.stop()
    head = (f"{time.strftime('%Y-%m-%d')}: {len(ms)} jobs at 50/s, push-to-start under py-spy "
            f"({args.rate} Hz, --nonblocking): p50 {percentile(ms, 50):.3f} ms, p99 {percentile(ms, 99):.3f} ms\n\n")
    for name in ("worker-grab", "producer"):
        raw = out / f"{name}.raw"
        if raw.exists():
            (out / f"{name}.txt").write_text(head + summarize(raw))
            print(f"wrote {out / (name + '.svg')}, {out / (name + '.txt')}")
    print(head.strip())


if __name__ == "__main__":
    main()
