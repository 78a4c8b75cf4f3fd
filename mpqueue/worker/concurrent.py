"""The sources of a worker with `concurrency` > 1: the same two fetch modes as
grab.py and dispatched.py, over slots (slots.py) instead of one job at a time.

Grab: whenever slots are free, reserve that many jobs in one round trip (the
acks of the jobs that just ended folded in); with nothing to reserve, wait on
the idle list, where a push can hand a job straight to this worker. It never
reserves more than it has free slots, so nothing waits in its hands.
Dispatch: the supervisor sends at most as many jobs as there are free slots and
hears of each one's end. Either way, a stop or a recycle (max_jobs,
memory_limit) takes no new jobs and waits for the running ones."""
from __future__ import annotations

import logging
import time

from .. import ipc
from ..brokers import FALLBACK_WAIT, BrokerError
from ..core import envelope as jobmod
from ..ipc import BEAT_EVERY
from .grab import PREFETCH_BUDGET, GrabSource, exit_unsettled
from .slots import Slots

log = logging.getLogger("mpqueue.worker")


class ConcurrentGrabSource(GrabSource):
    def __init__(self, worker):
        super().__init__(worker)
        self.slots = Slots(worker, worker.runner, worker.cfg.concurrency)
        self.slot_avg = None         # seconds per job, recent average (None: no job ended yet)

    def serve(self) -> None:
        w, slots = self.w, self.slots
        pending, idle = [], False
        while True:
            w.select([], 0)
            pending += self.ended()
            slots.check(time.monotonic())
            if w.stopping or slots.overran:
                break
            self.collect_handed()
            while self.handed and slots.free():
                self.start(*self.handed.pop(0))
            slots.kick()
            want = self.wanted()
            if want <= 0:
                if pending:
                    pending = self.deliver(pending)
                self.wait_slots(None)
                continue
            try:
                if self.down_since is not None:
                    self.reclaim(keep={a.id for a in pending} | slots.job_ids())
                # Only a worker with a slot free now waits on the idle list: a push hands
                # its job to the first there, which must be able to start it at once.
                join = self.waiter is not None and slots.free() > len(self.handed)
                reserved, next_due = self.broker.reserve(self.queue, w.consumer, want, self.lease, pending,
                                                         leave_idle=idle, join_idle=join)
            except BrokerError as exc:
                self.broker_down(exc)
                continue
            pending, idle = [], not reserved and join
            if reserved:
                now = time.monotonic()
                self.handed += [(r.token, r.envelope, now) for r in reserved]
            else:
                self.wait_slots(next_due)
        self.drain(pending)

    def wanted(self) -> int:
        """How many jobs to reserve now: one per free slot, plus a few to start the
        moment a slot frees (no round trip first) when jobs are short: no more than
        slots free up in about PREFETCH_BUDGET, judged by recent jobs, so a job
        never waits long in our hands while another worker idles. Fewer near max_jobs."""
        free = self.slots.free()
        extra = 0
        if free or self.handed:
            if self.slot_avg is not None:
                extra = min(self.cfg.prefetch - 1, int(PREFETCH_BUDGET * self.slots.size / max(self.slot_avg, 1e-6)))
        want = free + max(0, extra) - len(self.handed)
        if self.cfg.max_jobs:
            want = min(want, self.cfg.max_jobs - self.w.jobs - len(self.slots.running) - len(self.handed))
        return want

    def start(self, token: str, envelope: str, received: float) -> None:
        try:
            if time.monotonic() - received > 1.0:
                # it waited in our hands: its lease has been running since then
                if not self.broker.extend(self.queue, jobmod.job_id(envelope), token, self.lease):
                    return               # no longer ours (its lease ran out): someone else has it
            self.slots.start(token, envelope)
        except BrokerError as exc:       # refusing it, or stretching its lease, needs the broker
            exit_unsettled(exc, self.queue)

    def ended(self) -> list:
        """Acks of the jobs that ended since the last look (recycling counted)."""
        try:
            finished = self.slots.collect()
        except BrokerError as exc:
            exit_unsettled(exc, self.queue)
        acks = []
        now = time.monotonic()
        for s, ack in finished:
            if ack:
                acks.append(ack)
            took = now - s.started
            self.slot_avg = took if self.slot_avg is None else self.slot_avg + (took - self.slot_avg) * 0.2
            self.w.after_job()
        return acks

    def wait_slots(self, next_due: float | None) -> None:
        """Until a job ends, a wake hint or hand-off, a deadline to check, the next
        delayed job, a stop, or the fallback."""
        w = self.w
        if self.waiter is None and self.wanted() > 0:
            try:
                self.waiter = self.broker.waiter(self.queue, w.consumer)
                return    # a hint may have been missed while subscribing: re-check now
            except (BrokerError, OSError) as exc:
                return self.broker_down(exc)
        limit = FALLBACK_WAIT if next_due is None else min(FALLBACK_WAIT, next_due)
        timeout = min(limit, BEAT_EVERY, self.slots.next_check(time.monotonic()))
        extra = [self.slots] + ([self.waiter] if self.waiter is not None else [])
        try:
            readable = w.select(extra, timeout)
            if self.waiter is not None and self.waiter in readable:
                self.collect_handed()
        except (BrokerError, OSError) as exc:
            self.drop_waiter()
            self.broker_down(exc)

    def drain(self, pending) -> None:
        """Stopping, recycling, or given up on a job: hand back what has not started,
        let the running jobs end (the supervisor kills us at shutdown_timeout or
        at once for an overdue job), and deliver their acks."""
        self.flush(pending)              # acks owed, and unstarted jobs back in order
        self.drop_waiter()
        while self.slots.running:
            self.w.select([self.slots], min(BEAT_EVERY, self.slots.next_check(time.monotonic())))
            acks = self.ended()
            self.slots.check(time.monotonic())
            if acks:
                self.flush(acks)
        self.slots.close()


class ConcurrentDispatchedSource:
    """Dispatch mode with slots: run each job the supervisor sends in a free slot
    and report each one's end (with its ack)."""

    def __init__(self, worker):
        self.w = worker
        self.slots = Slots(worker, worker.runner, worker.cfg.concurrency)
        self.waiting: list[dict] = []     # sent to us, not started (only while a slot is being freed)

    def serve(self) -> None:
        w, slots = self.w, self.slots
        while not (w.stopping and not slots.running):
            w.select([slots], min(BEAT_EVERY, slots.next_check(time.monotonic())))
            self.waiting += w.take_jobs()
            self.report_ended()
            while self.waiting and slots.free():
                msg = self.waiting.pop(0)
                try:
                    slots.start(msg["token"], msg["envelope"])
                except BrokerError as exc:
                    exit_unsettled(exc, w.cfg.name)
            slots.kick()
            slots.check(time.monotonic())
        # Jobs never started (we gave up on one, or stopped) go back with us: the
        # supervisor hands back what it sent and we did not run.
        slots.close()

    def report_ended(self) -> None:
        try:
            finished = self.slots.collect()
        except BrokerError as exc:
            exit_unsettled(exc, self.w.cfg.name)
        for s, ack in finished:
            self.w.report.send(ipc.done_message(s.job.id, ack))
            self.w.after_job()
