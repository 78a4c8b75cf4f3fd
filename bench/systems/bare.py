"""The bare loop: a reference row for the no-op drain, not a job queue. Two
processes of the project's interpreter call the no-op job's own body (`_noop`
in RECORDING: one `INCR done` on the results db, the job's only Redis call) in a
tight loop, n/2 times each, on the same private redis-server, timed by the drain
workload like every system: from the start command until the n-th INCR. What a
queue does per job beyond that (fetch, decode, dispatch, ack) is the difference.
"""
from __future__ import annotations

import sys
from pathlib import Path

from .base import System

MODULE = '''

def _bare_loop(n):
    for _ in range(n):
        _noop()
'''


class Bare(System):
    name = "bare"
    column = "bare loop"
    MODULE = MODULE
    workloads = ("drain",)
    reference = True          # not a peer: left out of "best peer"
    supervised = False        # two independent processes
    uses_redis_broker = False  # nothing is queued: no Redis bytes per job
    settings = ("2 processes of the project's interpreter, each calling the no-op job's body "
                "(`R.incr(\"done\")`, redis-py) n/2 times in a loop")
    notes = ("bare loop: 2 processes (the project's interpreter and redis-py) doing nothing but the no-op job's "
             "own Redis call, `INCR done`, n/2 times each, timed like the drains (from the start command, "
             "start-up included); not a queue: nothing is fetched or acknowledged.",)

    def __init__(self, redis):
        self.pending = 0
        super().__init__(redis, Path(sys.executable).parent)

    def _version(self) -> str:
        import redis
        return f"(redis-py {redis.__version__})"

    def reset(self) -> None:
        super().reset()
        self.pending = 0

    def fill(self, n: int, kind: str) -> None:
        """Nothing is queued: the n jobs are the loops' iteration counts."""
        if kind != "noop":
            raise NotImplementedError(f"the bare loop runs no-op jobs only, not {kind}")
        self.pending += n

    def worker_commands(self, workload):
        halves = (self.pending // 2, self.pending - self.pending // 2)
        self.pending = 0
        return [[str(self.python), "-c", f"import benchpeer; benchpeer._bare_loop({k})"] for k in halves]
