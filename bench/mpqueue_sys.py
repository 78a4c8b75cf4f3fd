"""mpqueue under benchmark: a real `mpqueue run` with 2 worker processes."""
from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from .common import kill_group, wait_until

TASKS = '''
import os, time
import redis
import mpqueue

_results = redis.Redis.from_url(os.environ["BENCH_RESULTS"])


@mpqueue.task(queue="bench")
def noop(*args):
    _results.incr("done")


@mpqueue.task(queue="bench")
def stamp(pushed_at, due_at=0):
    _results.rpush("starts", f"{time.time()} {pushed_at} {due_at}")


@mpqueue.task(queue="bench")
def io(ms=2):
    time.sleep(ms / 1000)
    _results.incr("done")
'''


class Mpqueue:
    name = "mpqueue"

    def __init__(self, redis, mode: str = "grab", workers: int = 2, broker: str = "redis"):
        """broker: "redis" (the private redis-server) or "sqlite" (a fresh file in a
        temporary directory); jobs record their completion in Redis either way."""
        import mpqueue
        self.version = mpqueue.__version__
        self.redis, self.mode, self.broker = redis, mode, broker
        self.dir = Path(tempfile.mkdtemp(prefix="mpq-bench-"))
        atexit.register(shutil.rmtree, self.dir, True)
        url = redis.url if broker == "redis" else f"sqlite://{self.dir}/queue.db"
        (self.dir / "benchtasks.py").write_text(TASKS)
        self.config = self.dir / "bench.yaml"
        self.config.write_text(yaml.safe_dump({
            "name": f"bench-{mode}-{broker}", "broker": url, "path": [str(self.dir)], "imports": ["benchtasks"],
            "log": {"level": "warning", "format": "text"},
            "queues": {"bench": {"workers": workers, "mode": mode, "result_ttl": 300}}}))
        self.client = mpqueue.Client(url)
        self.proc = None

    @property
    def label(self) -> str:
        return f"mpqueue ({self.mode}, {self.broker})"

    def start_workers(self) -> None:
        env = dict(os.environ, BENCH_RESULTS=self.redis.results_url, MPQUEUE_RUNTIME_DIR=str(self.dir / "run"))
        self.proc = subprocess.Popen([sys.executable, "-m", "mpqueue.cli", "run", "--config", str(self.config)],
                                     env=env, start_new_session=True, stderr=open(self.dir / "log", "ab"))

    def wait_ready(self) -> None:
        """Idle and subscribed: both workers have booted and made their first reserve."""
        def booted():
            nodes = self.client.broker.nodes()
            return any(n["service"] == f"bench-{self.mode}-{self.broker}" and n["queues"]["bench"]["workers"] == 2 for n in nodes)
        wait_until(booted, 30, "mpqueue workers")
        time.sleep(0.5)  # ok: let workers reach their idle wait before timing idle or latency

    def stop_workers(self) -> None:
        if self.proc is not None:
            kill_group(self.proc)
            self.proc = None

    def push(self, n: int, task: str = "noop", args=()) -> None:
        for _ in range(n):
            self.client.push("bench", f"benchtasks:{task}", args=list(args))

    def push_bulk(self, n: int, task: str = "noop", args=()) -> None:
        self.client.push_many("bench", ({"task": f"benchtasks:{task}", "args": list(args)} for _ in range(n)))

    def push_stamp(self, delay: float = 0.0) -> None:
        now = time.time()
        self.client.push("bench", "benchtasks:stamp", args=[now, now + delay], delay=delay or None)
