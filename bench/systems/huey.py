"""Huey: `huey_consumer benchpeer.huey -k process -w 2`, RedisHuey, defaults otherwise."""
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
def victim(i):
    _victim(i)


TASKS = {"noop": noop, "stamp": stamp, "io": io, "victim": victim}


def send(task, args):
    TASKS[task](*args)


def send_later(task, args, delay):
    TASKS[task].schedule(args=args, delay=delay)


bulk = None   # no bulk enqueue API
'''


class Huey(System):
    name = column = "huey"
    MODULE = MODULE
    settings = "`huey_consumer benchpeer.huey -k process -w 2`, `RedisHuey(url=...)` (blocking dequeue), defaults"
    notes = ("Huey: no bulk enqueue API. Its consumer restarts a dead worker process at its next health check "
             "(every 10 s by default).",)

    def __init__(self, redis):
        super().__init__(redis, venvs.ensure_venv(venvs.PEERS))

    def worker_commands(self, workload):
        return [[str(self.bin / "huey_consumer"), "benchpeer.huey", "-k", "process", "-w", "2"]]
