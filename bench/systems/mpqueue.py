"""mpqueue: a real `mpqueue run` (supervisor + `workers: 2`), from the project's
own interpreter, on any broker URL (the private Redis by default)."""
from __future__ import annotations

import sys
from pathlib import Path

import yaml

from .base import System

MODULE = '''
import mpqueue

client = mpqueue.Client(BROKER)


@mpqueue.task(queue="bench")
def noop(*args):
    _noop(*args)


@mpqueue.task(queue="bench")
def stamp(pushed_at, due_at=0):
    _stamp(pushed_at, due_at)


@mpqueue.task(queue="bench")
def io(ms=2):
    _io(ms)


@mpqueue.task(queue="bench")
def victim(i):
    _victim(i)


def send(task, args):
    client.push("bench", "benchpeer:" + task, args=list(args))


def send_later(task, args, delay):
    client.push("bench", "benchpeer:" + task, args=list(args), delay=delay)


def bulk(task, argss):
    client.push_many("bench", ({"task": "benchpeer:" + task, "args": list(a)} for a in argss))
'''

# The io50 task of the two concurrency variants: an `async def` (run on the
# worker's asyncio loop) or a plain `def` (run in the queue's thread pool).
IO50 = {
    "async": '''

@mpqueue.task(queue="bench")
async def io50():
    await _io50_async()
''',
    "threads": '''

@mpqueue.task(queue="bench")
def io50():
    _io50()
''',
}


class Mpqueue(System):
    name = column = "mpqueue"
    has_bulk = True
    recovery_s = 3.0          # a crashed job is retried after retry_delay (default 3 s)
    MODULE = MODULE

    def __init__(self, redis, broker: str | None = None, mode: str = "grab", name: str | None = None,
                 variant: str | None = None, workloads=None, concurrency: int | None = None,
                 io50: str | None = None):
        """broker: any mpqueue broker URL; `{tmp}` in it is this system's temporary
        directory (e.g. "sqlite:///{tmp}/queue.db"). Jobs record into Redis db 1 either way.
        concurrency: the queue's `concurrency` key (None: not set, the default 1);
        io50: "async" or "threads", the kind of io50 task the module defines."""
        self.mode = mode
        if io50:
            self.MODULE = MODULE + IO50[io50]
            self.probe_kind = "io50"
        self.name = name or self.name
        self.variant = variant
        self.workloads = workloads
        tmp = None
        if broker and "{tmp}" in broker:
            import tempfile
            tmp = tempfile.mkdtemp(prefix="bench-mpqueue-broker-")
            broker = broker.replace("{tmp}", tmp)
        self.uses_redis_broker = broker is None or broker.startswith(("redis", "unix"))
        super().__init__(redis, Path(sys.executable).parent, broker)
        self.broker_dir = tmp
        queue = {"workers": self.workers, "mode": mode}
        if concurrency is not None:
            queue["concurrency"] = concurrency
        self.settings = (f"`mpqueue run` with `workers: 2`, `mode: {mode}`"
                         + (f", `concurrency: {concurrency}`" if concurrency is not None else "")
                         + (f", an `{'async def' if io50 == 'async' else 'def'}` io50 task" if io50 else "")
                         + ", `log: {level: warning}`, everything else default "
                         f"(retries 3, retry_delay 3 s); broker {self.broker.split('://')[0]}")
        self.config = self.dir / "bench.yaml"
        self.config.write_text(yaml.safe_dump({
            "name": f"bench-{self.name}", "broker": self.broker, "path": [str(self.dir)], "imports": ["benchpeer"],
            "log": {"level": "warning"},   # the same quiet level as every system's: no line per job, warnings up
            "queues": {"bench": queue}}))
        self.env["MPQUEUE_RUNTIME_DIR"] = str(self.dir / "run")

    def _version(self) -> str:
        import mpqueue
        return mpqueue.__version__

    def worker_commands(self, workload):
        return [[str(self.python), "-m", "mpqueue.ops.cli", "run", "--config", str(self.config)]]

    def reset(self) -> None:
        super().reset()
        if self.broker.startswith("sqlite:"):
            path = Path(self.broker.split("://", 1)[1].split("?", 1)[0])
            for suffix in ("", "-wal", "-shm"):
                Path(str(path) + suffix).unlink(missing_ok=True)

    def failed_count(self) -> int | None:
        from mpqueue.brokers import open_broker
        broker = open_broker(self.broker)
        try:
            return int(broker.counts("bench")["failed"])
        finally:
            broker.close()

    def cleanup(self) -> None:
        super().cleanup()
        if self.broker_dir:
            import shutil
            shutil.rmtree(self.broker_dir, ignore_errors=True)
