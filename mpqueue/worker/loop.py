"""The worker's one loop, over two seams: a source of units (grab.py: this
worker reserves; dispatched.py: the supervisor sends) and an executor
(inline.py: one job at a time in the main thread; slots.py: `concurrency` at
once). Which of each a queue uses is a lookup in SOURCES and EXECUTORS, so
the four combinations share this one loop.

Each turn: record the jobs that ended (each unit settles itself: its ack into
the next reserve, or a DONE message), watch deadlines, stop if asked, start
the jobs in hand while slots are free, else reserve what the executor wants
(no more than its prefetch budget, nor than max_jobs leaves), else wait. On the
way out: no new jobs, hand back those not started, let the running ones end.
Nothing here reads the clock or the broker but through its parts."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

from ..ipc import BEAT_EVERY
from ..core.limits import prefetch_of, rate_of
from .control import Control
from .dispatched import DispatchedSource
from .grab import GrabSource
from .inline import InlineExecutor
from .recycle import Recycler
from .slots import Slots


class WorkerLoop:
    def __init__(self, source, executor, control: Control, recycler: Recycler, prefetch: int,
                 clock: Callable[[], float] = time.monotonic):
        self.source, self.executor, self.control, self.recycler = source, executor, control, recycler
        self.prefetch, self.clock = prefetch, clock

    def run(self) -> None:
        while self.turn():
            pass
        self.finish()

    def turn(self) -> bool:
        """One step; False when the worker takes no more jobs."""
        self.control.look()
        self.ended()
        ex, source = self.executor, self.source
        now = self.clock()
        ex.check(now)
        if self.control.stopping or ex.overran:
            return False
        units = source.take(ex.free(), now)
        if units:
            self.start(units)
            return True
        held = source.held()
        want = min(ex.wanted(self.prefetch, held), self.recycler.left() - ex.running() - held)
        if not source.fill(want, ex.free(), ex.job_ids):
            source.wait(min(BEAT_EVERY, ex.next_check(now)), ex.fds())
        return True

    def start(self, units) -> None:
        for unit in units:
            if self.executor.blocks(unit):
                self.source.deliver()        # finished jobs' acks never wait behind a slow one
            if unit.claim(self.clock()):
                self.executor.start(unit)
        self.executor.kick()

    def ended(self) -> None:
        for unit, ack in self.executor.collect():
            unit.done(ack)
            self.recycler.after_job()

    def finish(self) -> None:
        """Stopping, recycling, or given up on a job: hand back what has not started,
        let the running jobs end (the supervisor kills us at shutdown_timeout, or at
        once for an overdue job), and settle them as they do."""
        self.source.hand_back()              # acks owed, and unstarted jobs back in order
        ex = self.executor
        while ex.running():
            self.control.wait(ex.fds(), min(BEAT_EVERY, ex.next_check(self.clock())))
            self.ended()
            self.source.hand_back()
            ex.check(self.clock())
        ex.close()
        self.source.close()


@dataclass(frozen=True)
class Parts:
    """What a worker has made by the time it serves, for the tables below to pick
    from: each source and executor takes only what it needs of it."""
    broker: Any
    service: Any          # ServiceConfig
    queue: Any            # QueueConfig
    consumer: str
    runner: Any
    control: Control
    report: Any           # ipc.Channel to the supervisor
    clock: Callable[[], float] = time.monotonic


def _grab(p: Parts):
    return GrabSource(p.broker, p.queue.name, p.consumer, p.queue.timeout + p.service.lease_grace, p.control,
                      p.service.shutdown_timeout, p.clock, rate=rate_of(p.queue))


def _dispatched(p: Parts):
    return DispatchedSource(p.control, p.report)


def _inline(p: Parts):
    return InlineExecutor(p.runner, p.queue.name, p.clock)


def _slots(p: Parts):
    return Slots(p.runner, p.queue.concurrency, p.report, p.clock)


SOURCES = {"grab": _grab, "dispatch": _dispatched}        # by the queue's `mode`
EXECUTORS = {1: _inline}                                  # by `concurrency`; any other: slots


def build(p: Parts, recycler: Recycler) -> WorkerLoop:
    source = SOURCES[p.queue.mode](p)
    executor = EXECUTORS.get(p.queue.concurrency, _slots)(p)
    return WorkerLoop(source, executor, p.control, recycler, prefetch_of(p.queue), p.clock)
