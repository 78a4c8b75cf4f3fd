"""Dramatiq: `dramatiq benchpeer --processes 2 --threads 1`, its RedisBroker, defaults otherwise."""
from __future__ import annotations

from .. import venvs
from .base import System

MODULE = '''
import dramatiq
from dramatiq.brokers.redis import RedisBroker

dramatiq.set_broker(RedisBroker(url=BROKER))


@dramatiq.actor(queue_name="bench")
def noop(*args):
    _noop(*args)


@dramatiq.actor(queue_name="bench")
def stamp(pushed_at, due_at=0):
    _stamp(pushed_at, due_at)


@dramatiq.actor(queue_name="bench")
def io(ms=2):
    _io(ms)


@dramatiq.actor(queue_name="bench")
def victim(i):
    _victim(i)


TASKS = {"noop": noop, "stamp": stamp, "io": io, "victim": victim}


def send(task, args):
    TASKS[task].send(*args)


def send_later(task, args, delay):
    TASKS[task].send_with_options(args=args, delay=int(delay * 1000))


bulk = None   # no bulk enqueue: group() and pipelines send one message at a time
'''


class Dramatiq(System):
    name = column = "dramatiq"
    MODULE = MODULE
    recovery_s = 60.0   # RedisBroker heartbeat_timeout: a dead worker's unacked messages are requeued after it
    settings = "`dramatiq benchpeer --processes 2 --threads 1`, `RedisBroker(url=...)`, actors with default options"
    notes = ("Dramatiq: no bulk enqueue API. Delayed messages are pulled by a worker and held in its memory "
             "until due.",)

    def __init__(self, redis):
        super().__init__(redis, venvs.ensure_venv(venvs.PEERS))

    def worker_commands(self, workload):
        return [[str(self.bin / "dramatiq"), "benchpeer", "--processes", "2", "--threads", "1"]]
