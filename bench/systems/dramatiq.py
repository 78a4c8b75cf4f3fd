"""Dramatiq: `dramatiq benchpeer --processes 2 --threads 1 --skip-logging`, its
RedisBroker, defaults otherwise; `--threads 32` for the io50 workload."""
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
def io50():
    _io50()


@dramatiq.actor(queue_name="bench")
def victim(i):
    _victim(i)


TASKS = {"noop": noop, "stamp": stamp, "io": io, "io50": io50, "victim": victim}


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
    notes = ("Dramatiq: no bulk enqueue API. Delayed messages are pulled by a worker and held in its memory "
             "until due.",)

    def __init__(self, redis, threads: int = 1, name: str | None = None, variant: str | None = None,
                 workloads=None):
        self.threads = threads
        self.name = name or self.name
        self.variant, self.workloads = variant, workloads
        if threads > 1:
            self.probe_kind, self.notes = "io50", ()
        # --skip-logging: its CLI has only INFO (default) and DEBUG; without its
        # basicConfig, Python's default applies: WARNING and up, to stderr
        self.settings = (f"`dramatiq benchpeer --processes 2 --threads {threads} --skip-logging`, "
                         "`RedisBroker(url=...)`, actors with default options")
        super().__init__(redis, venvs.ensure_venv(venvs.PEERS))

    def worker_commands(self, workload):
        return [[str(self.bin / "dramatiq"), "benchpeer", "--processes", "2", "--threads", str(self.threads),
                 "--skip-logging"]]
