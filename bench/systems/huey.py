"""Huey: `huey_consumer benchpeer.huey -k process -w 2 -q`, RedisHuey, defaults
otherwise; thread workers (`-k thread`) for the io50 workload."""
from __future__ import annotations

from .. import venvs
from .base import System

MODULE = '''
from huey import RedisHuey

huey = RedisHuey("bench", url=BROKER)


@huey.task()
def noop(*args):
    _noop(*args)


@huey.task()
def stamp(pushed_at, due_at=0):
    _stamp(pushed_at, due_at)


@huey.task()
def io(ms=2):
    _io(ms)


@huey.task()
def io50():
    _io50()


@huey.task()
def victim(i):
    _victim(i)


TASKS = {"noop": noop, "stamp": stamp, "io": io, "io50": io50, "victim": victim}


def send(task, args):
    TASKS[task](*args)


def send_later(task, args, delay):
    TASKS[task].schedule(args=args, delay=delay)


bulk = None   # no bulk enqueue API
'''


class Huey(System):
    name = column = "huey"
    MODULE = MODULE
    notes = ("Huey: no bulk enqueue API. Its consumer restarts a dead worker process at its next health check "
             "(every 10 s by default).",)

    def __init__(self, redis, kind: str = "process", workers: int = 2, consumers: int = 1, name: str | None = None,
                 variant: str | None = None, workloads=None):
        """kind, workers: `-k`, `-w` of each consumer; consumers: how many huey_consumer processes."""
        self.kind, self.per_consumer, self.consumers = kind, workers, consumers
        self.name = name or self.name
        self.variant, self.workloads = variant, workloads
        if kind != "process":       # threads run in the consumer process itself
            self.supervised, self.workers = False, consumers
        if workloads and "io50" in workloads:
            self.probe_kind = "io50"
        command = f"`huey_consumer benchpeer.huey -k {kind} -w {workers} -q`"
        self.settings = ((command if consumers == 1 else f"{consumers} × {command}")
                         + ", `RedisHuey(url=...)` (blocking dequeue), defaults; -q: logging at WARNING")
        super().__init__(redis, venvs.ensure_venv(venvs.PEERS))

    def worker_commands(self, workload):
        # -q: WARNING, no line per job (its default, INFO, logs two lines per job)
        return [[str(self.bin / "huey_consumer"), "benchpeer.huey", "-k", self.kind, "-w", str(self.per_consumer),
                 "-q"] for _ in range(self.consumers)]
