"""The executor of a worker with `concurrency: 1`: each job runs to its end in
the main thread, inside start() (an async one on the worker's loop, here), so
nothing else happens meanwhile; the supervisor enforces its hard timeout.

It keeps the run-time estimates of the loop's two rules about jobs in hand:
how many to reserve at once (about PREFETCH_BUDGET of work), and which job may
be slow, so that the acks owed are delivered before it starts rather than after."""
from __future__ import annotations

import time

from ..brokers import BrokerError
from .units import PREFETCH_BUDGET, Unit, exit_unsettled

SLOW = PREFETCH_BUDGET       # a job expected to take this long first delivers the acks owed


class InlineExecutor:
    size = 1
    overran = False            # a job in the main thread can't overrun unnoticed: the supervisor kills us

    def __init__(self, runner, queue: str, clock=time.monotonic):
        self.runner, self.queue, self.clock = runner, queue, clock
        self.avg = PREFETCH_BUDGET          # seconds per job, recent average (the first reserve takes one)
        self.task_avg: dict[str, float] = {}  # task name -> its recent run time, seconds
        self._ended: list = []

    def free(self) -> int:
        return 1

    def running(self) -> int:
        return 0

    def job_ids(self) -> tuple:
        return ()

    def wanted(self, prefetch: int, held: int) -> int:
        """One round trip for several short jobs, but no more than about
        PREFETCH_BUDGET of work; none while jobs are in hand (they run first)."""
        if held:
            return 0
        if prefetch <= 1:
            return 1
        return max(1, min(prefetch, int(PREFETCH_BUDGET / max(self.avg, 1e-6))))

    def blocks(self, unit: Unit) -> bool:
        """Whether it may take long (a task not seen yet counts as slow)."""
        return self.task_avg.get(unit.task, SLOW) >= SLOW

    def start(self, unit: Unit) -> None:
        started = self.clock()
        try:
            ack = self.runner.run(unit.token, unit.envelope)
        except BrokerError as exc:
            exit_unsettled(exc, self.queue)
        took = self.clock() - started
        self.avg += (took - self.avg) * 0.2
        self.task_avg[unit.task] = self.task_avg.get(unit.task, took) * 0.8 + took * 0.2
        self._ended.append((unit, ack))

    def kick(self) -> None:
        pass

    def collect(self) -> list:
        """(unit, its Ack or None) of each job that ended since the last look."""
        ended, self._ended = self._ended, []
        return ended

    def check(self, now: float) -> None:
        pass

    def next_check(self, now: float) -> float:
        return float("inf")

    def fds(self) -> list:
        return []

    def close(self) -> None:
        pass
