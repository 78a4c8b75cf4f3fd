"""Celery: `celery -A benchpeer worker -P prefork --concurrency 2 --loglevel WARNING`
on its Redis transport; defaults, or its documented reliable mode (acks_late +
reject_on_worker_lost) as a variant; thread and gevent pools for the io50 workload."""
from __future__ import annotations

from .. import venvs
from .base import System

MODULE = '''
from celery import Celery

app = Celery("benchpeer", broker=BROKER)
if os.environ.get("BENCH_CELERY_RELIABLE"):
    # the documented reliable mode: ack after the task ran, requeue it if its process dies
    app.conf.update(task_acks_late=True, task_reject_on_worker_lost=True)


@app.task
def noop(*args):
    _noop(*args)


@app.task
def stamp(pushed_at, due_at=0):
    _stamp(pushed_at, due_at)


@app.task
def io(ms=2):
    _io(ms)


@app.task
def io50():
    _io50()      # time.sleep: a thread of the pool, or a greenlet under -P gevent (which patches it)


@app.task
def victim(i):
    _victim(i)


TASKS = {"noop": noop, "stamp": stamp, "io": io, "io50": io50, "victim": victim}


def send(task, args):
    TASKS[task].apply_async(args)


def send_later(task, args, delay):
    TASKS[task].apply_async(args, countdown=delay)


bulk = None   # group() publishes one message per task: no bulk enqueue
'''


class Celery(System):
    name = column = "celery"
    MODULE = MODULE
    notes = ("Celery: no bulk enqueue API (group() publishes one message per task). A countdown/ETA job is "
             "taken by a worker and held in its memory until due.",)

    def __init__(self, redis, reliable: bool = False, pool: str = "prefork", concurrency: int = 2,
                 instances: int = 1, name: str | None = None, variant: str | None = None, workloads=None):
        """pool, concurrency: `-P`, `--concurrency` of each worker; instances: how many
        `celery worker` processes (each with a node name of its own)."""
        self.pool, self.concurrency, self.instances = pool, concurrency, instances
        command = f"`celery -A benchpeer worker -P {pool} --concurrency {concurrency} --loglevel WARNING`"
        self.settings = ((command if instances == 1 else f"{instances} × {command} (`-n benchN@%h`)")
                         + ", Redis transport, defaults (no result backend)")
        if reliable:
            self.name = "celery-reliable"
            self.variant = "Celery with acks_late + reject_on_worker_lost"
            self.workloads = ("sigkill",)
            self.settings = "as celery, with `task_acks_late=True, task_reject_on_worker_lost=True`"
            self.notes = ()
        if name:
            self.name, self.variant, self.workloads = name, variant, workloads
        if pool != "prefork":       # threads and greenlets run in the worker process itself
            self.supervised, self.workers = False, instances
        if workloads and "io50" in workloads:
            self.probe_kind = "io50"
        super().__init__(redis, venvs.ensure_venv(venvs.PEERS))
        if reliable:
            self.env["BENCH_CELERY_RELIABLE"] = "1"

    def worker_commands(self, workload):
        # --loglevel WARNING is its default, said explicitly: no line per job (INFO logs two)
        cmd = [str(self.bin / "celery"), "-A", "benchpeer", "worker", "-P", self.pool,
               "--concurrency", str(self.concurrency), "--loglevel", "WARNING"]
        if self.instances == 1:
            return [cmd]
        return [cmd + ["-n", f"bench{i + 1}@%h"] for i in range(self.instances)]
