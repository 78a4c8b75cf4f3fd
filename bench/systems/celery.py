"""Celery: `celery -A benchpeer worker -P prefork --concurrency 2` on its Redis
transport; defaults, or its documented reliable mode (acks_late +
reject_on_worker_lost) as a variant."""
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
def victim(i):
    _victim(i)


TASKS = {"noop": noop, "stamp": stamp, "io": io, "victim": victim}


def send(task, args):
    TASKS[task].apply_async(args)


def send_later(task, args, delay):
    TASKS[task].apply_async(args, countdown=delay)


bulk = None   # group() publishes one message per task: no bulk enqueue
'''


class Celery(System):
    name = column = "celery"
    MODULE = MODULE
    settings = "`celery -A benchpeer worker -P prefork --concurrency 2`, Redis transport, defaults (no result backend)"
    notes = ("Celery: no bulk enqueue API (group() publishes one message per task). A countdown/ETA job is "
             "taken by a worker and held in its memory until due.",)

    def __init__(self, redis, reliable: bool = False):
        if reliable:
            self.name = "celery-reliable"
            self.variant = "Celery with acks_late + reject_on_worker_lost"
            self.workloads = ("sigkill",)
            self.settings = "as celery, with `task_acks_late=True, task_reject_on_worker_lost=True`"
            self.notes = ()
        super().__init__(redis, venvs.ensure_venv(venvs.PEERS))
        if reliable:
            self.env["BENCH_CELERY_RELIABLE"] = "1"

    def worker_commands(self, workload):
        return [[str(self.bin / "celery"), "-A", "benchpeer", "worker", "-P", "prefork", "--concurrency", "2"]]
