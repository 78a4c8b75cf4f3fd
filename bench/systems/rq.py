"""RQ: two `rq worker --quiet` processes (the default forking Worker; a SimpleWorker variant)."""
from __future__ import annotations

from .. import venvs
from .base import System

MODULE = '''
from datetime import timedelta

from rq import Queue

_q = Queue("bench", connection=_redis_lib.Redis.from_url(BROKER))


def noop(*args):
    _noop(*args)


def stamp(pushed_at, due_at=0):
    _stamp(pushed_at, due_at)


def io(ms=2):
    _io(ms)


def victim(i):
    _victim(i)


TASKS = {"noop": noop, "stamp": stamp, "io": io, "victim": victim}


def send(task, args):
    _q.enqueue(TASKS[task], *args)


def send_later(task, args, delay):
    _q.enqueue_in(timedelta(seconds=delay), TASKS[task], *args)


def bulk(task, argss):
    _q.enqueue_many([Queue.prepare_data(TASKS[task], args=a) for a in argss])
'''


class Rq(System):
    name = column = "rq"
    MODULE = MODULE
    has_bulk = True
    supervised = False      # two independent `rq worker` parents; each forks a work horse per job
    settings = ("two `rq worker -u URL --quiet bench` processes (the default Worker, a forked work horse per job; "
                "--quiet: logging at WARNING); `--with-scheduler` added for the delayed-jobs workload only")
    notes = ("RQ: the delayed workload runs the workers with `--with-scheduler` (needed for `enqueue_in`); "
             "the idle figures are for plain `rq worker`, without the scheduler's polling.",)
    worker_class = None

    def __init__(self, redis, name: str | None = None, variant: str | None = None, worker_class: str | None = None,
                 workloads=None):
        self.name = name or self.name
        self.variant, self.worker_class, self.workloads = variant, worker_class, workloads
        super().__init__(redis, venvs.ensure_venv(venvs.PEERS))
        if worker_class:
            self.settings = f"two `rq worker -w {worker_class} --quiet` processes"

    def worker_commands(self, workload):
        cmd = [str(self.bin / "rq"), "worker", "-u", self.broker, "--quiet"]   # WARNING: no line per job
        if self.worker_class:
            cmd += ["-w", self.worker_class]
        if workload == "delayed":
            cmd.append("--with-scheduler")
        return [cmd + ["bench"] for _ in range(self.workers)]

    def failed_count(self) -> int | None:
        return int(self.redis.client.zcard("rq:failed:bench"))
