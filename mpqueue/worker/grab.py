"""Grab mode, the worker's side: this worker reserves its own jobs, several at a
time when recent jobs were short (prefetch), folding the acks of finished jobs
into its next reserve; when its queue is empty it waits on the broker's wake-up
hint, on the idle list where a push can hand it a job directly."""
from __future__ import annotations

import logging
import os
import time

from .. import ipc
from ..brokers import FALLBACK_WAIT, BrokerError
from ..ipc import BEAT_EVERY
from ..core import envelope as jobmod

log = logging.getLogger("mpqueue.worker")
PREFETCH_BUDGET = 0.010      # reserve no more jobs at once than this many seconds of recent work
SLOW = PREFETCH_BUDGET       # a job expected to take this long first delivers the acks owed


def exit_unsettled(exc, queue: str) -> None:
    """A job ran but its outcome can't be recorded: exit, and the supervisor settles
    what this worker held when the broker answers again (leases bound the wait)."""
    log.warning("broker unreachable while settling a job, exiting to be replaced: %s", exc, extra={"queue": queue})
    os._exit(ipc.EXIT_FAILED)


class GrabSource:
    def __init__(self, worker):
        self.w = worker
        self.broker, self.cfg, self.queue = worker.broker, worker.cfg, worker.cfg.name
        self.lease = worker.cfg.timeout + worker.service.lease_grace
        self.waiter = None
        self.handed: list = []        # (token, envelope, received): reserved for us, not run yet
        self.avg_run = PREFETCH_BUDGET  # seconds per job, recent average (first reserve takes one)
        self.down_since = None        # monotonic time the broker stopped answering
        self.task_avg: dict[str, float] = {}   # task name -> its recent run time, seconds
        self.released: set[str] = set()   # tokens reclaim() handed back: a late hand-off message is void

    def serve(self) -> None:
        w = self.w
        pending, idle = [], False
        while not w.stopping:
            w.select([], 0)              # a stop asked for during the last job
            if w.stopping:
                break
            self.collect_handed()
            if self.handed:              # prefetched, or handed to us by a push while we were idle
                token, envelope, received = self.handed.pop(0)
                task = jobmod.peek_task(envelope)
                if pending and self.task_avg.get(task, SLOW) >= SLOW:
                    pending = self.deliver(pending)     # finished jobs' acks never wait behind a slow one
                pending += self.run_one(token, envelope, received, task)
                continue
            try:
                if self.down_since is not None:
                    self.reclaim(keep={a.id for a in pending})
                reserved, next_due = self.broker.reserve(self.queue, w.consumer, self.batch_size(), self.lease,
                                                         pending, leave_idle=idle, join_idle=self.waiter is not None)
            except BrokerError as exc:
                self.broker_down(exc)
                continue
            pending, idle = [], not reserved and self.waiter is not None
            if not reserved:
                self.wait(next_due)
                continue
            now = time.monotonic()
            self.handed += [(r.token, r.envelope, now) for r in reserved]
        self.flush(pending)

    def batch_size(self) -> int:
        """How many jobs to reserve at once: one round trip for several short jobs,
        but never more than about PREFETCH_BUDGET of work, so a batch can't keep
        jobs from another idle worker (or a newer higher-priority job) for long."""
        n = self.cfg.prefetch
        if n > 1:
            n = max(1, min(n, int(PREFETCH_BUDGET / max(self.avg_run, 1e-6))))
        if self.cfg.max_jobs:
            n = max(1, min(n, self.cfg.max_jobs - self.w.jobs))
        return n

    def deliver(self, acks) -> list:
        """Acknowledge now; on a broker error keep them for the next reserve."""
        try:
            self.broker.ack(self.queue, acks)
            return []
        except BrokerError as exc:
            self.broker_down(exc)
            return acks

    def run_one(self, token: str, envelope: str, received: float | None = None, task: str = "") -> list:
        """Run a reserved job; returns the ack to deliver (folded into the next reserve).
        `task`: its name as peeked, for the run-time estimate that decides whether a
        job may be slow (a task not seen yet counts as slow)."""
        started = time.monotonic()
        if received is not None and started - received > 1.0:
            # it waited in our hands: its lease has been running since then
            if not self.broker.extend(self.queue, jobmod.job_id(envelope), token, self.lease):
                return []                # no longer ours (its lease ran out): someone else has it
        try:
            ack = self.w.runner.run(token, envelope)
        except BrokerError as exc:
            exit_unsettled(exc, self.queue)
        took = time.monotonic() - started
        self.avg_run += (took - self.avg_run) * 0.2
        self.task_avg[task] = self.task_avg.get(task, took) * 0.8 + took * 0.2
        self.w.after_job()
        return [ack] if ack else []

    def collect_handed(self) -> None:
        if self.waiter is not None:
            try:
                now = time.monotonic()
                # A hand-off that arrives after reclaim() released its job is no longer ours.
                for token, envelope in self.waiter.drain():
                    if token not in self.released:
                        # Taken: confirm it now, before it runs (a loss from here on spends its attempt).
                        self.broker.confirm(self.queue, jobmod.job_id(envelope), token, self.lease)
                        self.handed.append((token, envelope, now))
            except BrokerError as exc:
                self.drop_waiter()
                self.broker_down(exc)

    def flush(self, acks) -> None:
        """On the way out: deliver the last acks, and hand back the jobs reserved for
        us that we have not run (attempt refunded, to the front of the queue)."""
        deadline = time.monotonic() + self.w.service.shutdown_timeout
        self.collect_handed()
        while (acks or self.handed) and time.monotonic() < deadline:
            try:
                if acks:
                    self.broker.ack(self.queue, acks)
                    acks = []
                while self.handed:       # last first: each goes to the front, so order is kept
                    token, envelope, _ = self.handed[-1]
                    self.broker.release(self.queue, jobmod.job_id(envelope), token)
                    self.handed.pop()
            except BrokerError as exc:
                self.broker_down(exc)

    def wait(self, next_due: float | None) -> None:
        """Sleep until a wake hint or a handed job, the next delayed job is due, a stop,
        or the fallback, stamping the scoreboard so the supervisor knows we live."""
        deadline = time.monotonic() + (FALLBACK_WAIT if next_due is None else min(FALLBACK_WAIT, next_due))
        try:
            if self.waiter is None:
                self.waiter = self.broker.waiter(self.queue, self.w.consumer)
                return        # a hint may have been missed while subscribing: re-check now
            while not self.w.stopping:
                remaining = deadline - time.monotonic()
                readable = self.w.select([self.waiter], min(remaining, BEAT_EVERY))
                if self.waiter in readable:
                    self.collect_handed()
                    return
                if remaining <= BEAT_EVERY:
                    return
        except (BrokerError, OSError) as exc:
            self.drop_waiter()
            self.broker_down(exc)

    # -- broker outages
    def broker_down(self, exc) -> None:
        # The wake-up subscription goes too: it may be on a server that is no longer
        # the master (a failover), where no hand-off or wake-up will ever come.
        self.drop_waiter()
        if self.down_since is None:
            self.down_since = time.monotonic()
            log.warning("broker unreachable, retrying: %s", exc, extra={"queue": self.queue})
        backoff = min(5.0, 0.05 * 2 ** min(10, (time.monotonic() - self.down_since) // 1))
        self.w.select([], backoff)

    def reclaim(self, keep=frozenset()) -> None:
        """Back from an outage: a reserve whose reply was lost may have left a job held
        in our name that we never saw. We run nothing now, so hand back, unrun, all we
        hold but the jobs in `keep` (finished, their ack still to deliver)."""
        self.handed = []
        self.released = set()
        for held in self.broker.held(self.queue):
            if held.consumer == self.w.consumer and held.id not in keep \
                    and self.broker.release(self.queue, held.id, held.token):
                self.released.add(held.token)
                log.warning("handed back job %s reserved during the outage", held.id,
                            extra={"queue": self.queue, "job_id": held.id})
        log.warning("broker reachable again after %.1f s", time.monotonic() - self.down_since,
                    extra={"queue": self.queue})
        self.down_since = None

    def drop_waiter(self) -> None:
        if self.waiter is not None:
            self.waiter.close()
            self.waiter = None

