"""arq: two `arq benchpeer.WorkerSettings` processes (asyncio, no supervisor), from
its own virtualenv (arq requires redis<6)."""
from __future__ import annotations

from .. import venvs
from .base import System

MODULE = '''
import asyncio
from datetime import timedelta

from arq import create_pool
from arq.connections import RedisSettings


async def noop(ctx, *args):
    _noop(*args)


async def stamp(ctx, pushed_at, due_at=0):
    _stamp(pushed_at, due_at)


async def io(ctx, ms=2):
    _io(ms)          # the same blocking 2 ms as everyone's: one job at a time per process


async def io50(ctx):
    await _io50_async()


async def victim(ctx, i):
    _victim(i)


class WorkerSettings:
    functions = [noop, stamp, io, io50, victim]
    redis_settings = RedisSettings.from_dsn(BROKER)
    if os.environ.get("BENCH_ARQ_JOB_TIMEOUT"):
        # documented setting; a killed worker's jobs are picked up again job_timeout + 10 s later
        job_timeout = int(os.environ["BENCH_ARQ_JOB_TIMEOUT"])
    if os.environ.get("BENCH_ARQ_MAX_JOBS"):
        max_jobs = int(os.environ["BENCH_ARQ_MAX_JOBS"])     # the io50 variant: 32 (default 10)


# `arq --custom-log-dict benchpeer.LOGGING`: its CLI logs at INFO (a line per job)
# or DEBUG; this is WARNING, to stderr, for the arq loggers.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler", "level": "WARNING"}},
    "loggers": {"arq": {"handlers": ["stderr"], "level": "WARNING"}},
}


_loop = asyncio.new_event_loop()
_pool = None


def _enqueue(task, args, **kw):
    global _pool
    if _pool is None:
        _pool = _loop.run_until_complete(create_pool(WorkerSettings.redis_settings))
    _loop.run_until_complete(_pool.enqueue_job(task, *args, **kw))


def send(task, args):
    _enqueue(task, args)


def send_later(task, args, delay):
    _enqueue(task, args, _defer_by=timedelta(seconds=delay))


bulk = None   # no bulk enqueue API
'''


class Arq(System):
    name = column = "arq"
    MODULE = MODULE
    supervised = False      # two independent asyncio processes, nothing restarts one that dies
    recovery_s = 30.0       # SIGKILL workload only: job_timeout 20 s, so a dead worker's jobs return after 30 s
    settings = ("two `arq benchpeer.WorkerSettings --custom-log-dict benchpeer.LOGGING` processes (logging at "
                "WARNING), defaults (max_jobs 10, poll_delay 0.5 s); in the SIGKILL workload `job_timeout = 20` "
                "(default 300 s)")
    max_jobs = None
    notes = ("arq: no bulk enqueue API. Jobs are `async def` but run the same blocking body as everyone's "
             "(the I/O mix sleeps with time.sleep, like the others). In the SIGKILL workload only, "
             "`job_timeout = 20` (a documented setting, default 300 s), so a killed worker's jobs could be "
             "picked up again after 30 s instead of 310 s.",)

    def __init__(self, redis, max_jobs: int | None = None, name: str | None = None, variant: str | None = None,
                 workloads=None):
        if max_jobs:
            self.max_jobs, self.name, self.variant, self.workloads = max_jobs, name, variant, workloads
            self.probe_kind = "io50"
            self.notes = ("arq, io50: the task awaits asyncio.sleep(0.05). With max_jobs 32 and its default "
                          "poll_delay 0.5 s, a process starts at most 32 jobs per poll (it stops reading once its "
                          "slots are full, and polls again 0.5 s after the last poll began), so 2 processes start "
                          "at most 128 jobs/s however short the jobs.",)
            self.settings = (f"two `arq benchpeer.WorkerSettings --custom-log-dict benchpeer.LOGGING` processes, "
                             f"`max_jobs = {max_jobs}`, defaults otherwise (poll_delay 0.5 s, queue_read_limit "
                             f"max(5 × max_jobs, 100))")
        super().__init__(redis, venvs.ensure_venv(venvs.PEERS_ARQ))
        if max_jobs:
            self.env["BENCH_ARQ_MAX_JOBS"] = str(max_jobs)

    def worker_commands(self, workload):
        self.env.pop("BENCH_ARQ_JOB_TIMEOUT", None)
        if workload == "sigkill":
            self.env["BENCH_ARQ_JOB_TIMEOUT"] = "20"
        return [[str(self.bin / "arq"), "benchpeer.WorkerSettings", "--custom-log-dict", "benchpeer.LOGGING"]
                for _ in range(self.workers)]
