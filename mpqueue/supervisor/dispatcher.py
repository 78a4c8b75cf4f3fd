"""Dispatch mode (multi-process-queue's "dispatch"): one fetcher per queue, in the
supervisor, reserves as many jobs as there are idle workers in one round trip,
folding in the acks of the jobs just finished, and hands them out over pipes.
It knows what each worker holds, so it settles a dead worker's job itself."""
from __future__ import annotations

import logging
import time

from .. import ipc
from ..brokers import FALLBACK_WAIT, Ack, BrokerError, Held
from ..core import envelope as jobmod
from .holding import Holding

log = logging.getLogger("mpqueue.dispatch")


class Dispatcher(Holding):
    mode = "dispatch"

    def __init__(self, broker, recovery, queue_cfg, lease_grace: float, consumer: str, clock=time.monotonic):
        self.broker, self.recovery, self.clock = broker, recovery, clock
        self.configure(queue_cfg, lease_grace)
        self.consumer = consumer
        self.idle: list = []              # WorkerHandles waiting for a job
        self.workers: set = set()         # every live worker of this queue
        self.handed: dict = {}            # WorkerHandle -> Held: the job it runs
        self.acks: list[Ack] = []
        self.waiter = None
        self.wanted = True                # there may be work: reserve at the next turn
        self.suspect = False              # a call failed mid-way: reconcile before reserving
        self.due_at = clock()             # when to look again without a hint

    def configure(self, queue_cfg, lease_grace: float) -> None:
        self.cfg = queue_cfg
        self.lease = queue_cfg.timeout + lease_grace

    def fds(self) -> list:
        return [self.waiter] if self.waiter is not None and self.idle else []

    def timeout(self, now: float) -> float:
        if self.acks or (self.idle and self.wanted):
            return 0.0
        return max(0.0, self.due_at - now) if self.idle else FALLBACK_WAIT

    def worker_ready(self, handle) -> None:
        self.workers.add(handle)
        self.idle.append(handle)
        self.wanted = True

    def job_done(self, handle, msg: dict) -> None:
        self.handed.pop(handle, None)
        if "token" in msg:
            self.acks.append(Ack(msg["id"], msg["token"], msg["record"], msg["ttl"], msg["first"]))
        if not handle.retiring:
            self.idle.append(handle)
        self.wanted = True

    def worker_gone(self, handle, slot, kind: str) -> None:
        self.workers.discard(handle)
        if handle in self.idle:
            self.idle.remove(handle)
        held = self.handed.pop(handle, None)
        if held is not None and kind != "timeout":    # a timed-out job was settled when we killed it
            self.recovery.settle(handle.queue, held, kind)

    def running(self, handle, slot):
        return self.handed.get(handle)

    def holders(self) -> list[str]:
        return [self.consumer] if self.handed else []

    def broker_failed(self) -> None:
        self.close()
        self.suspect = True
        self.due_at = self.clock() + 1.0

    def pump(self, readable, stopping: bool) -> bool:
        """One turn: consume hints, then reserve-and-ack in one call if useful; True
        if the broker was called (and answered). Raises BrokerError when the broker
        is unreachable (the caller backs off)."""
        if self.waiter is not None and self.waiter in readable:
            self.waiter.drain()
            self.wanted = True
        if self.clock() >= self.due_at:
            self.wanted = True
        idle = [] if stopping else [h for h in self.idle if not h.retiring]
        if not self.acks and not (idle and self.wanted):
            return False
        if self.suspect:
            self.reconcile()
        if self.waiter is None and idle:
            self.waiter = self.broker.waiter(self.cfg.name)
        reserved, next_due = self.broker.reserve(self.cfg.name, self.consumer, len(idle), self.lease, self.acks)
        self.acks = []
        for item in reserved:
            self._hand_out(idle.pop(0), item)
        self.wanted = not idle and bool(reserved)   # every idle worker got one: maybe more wait
        wait = FALLBACK_WAIT if next_due is None else min(FALLBACK_WAIT, next_due)
        self.due_at = self.clock() + wait
        return True

    def reconcile(self) -> None:
        """After a failed call whose reply was lost, jobs may be held in our name that
        no worker got: hand them back unrun. Jobs our workers run, or whose ack we
        still owe, stay."""
        busy = {held.id for held in self.handed.values()} | {a.id for a in self.acks}
        for held in self.broker.held(self.cfg.name):
            if held.consumer == self.consumer and held.id not in busy:
                self.broker.release(self.cfg.name, held.id, held.token)
                log.warning("handed back job %s reserved during a broker outage", held.id,
                            extra={"queue": self.cfg.name, "job_id": held.id})
        self.suspect = False

    def _hand_out(self, handle, item) -> None:
        job_id = jobmod.job_id(item.envelope)
        self.idle.remove(handle)
        self.handed[handle] = Held(job_id, item.token, self.consumer, item.envelope)
        if not handle.tell({"type": ipc.JOB, "id": job_id, "token": item.token, "envelope": item.envelope}):
            del self.handed[handle]       # never reached it: back, unrun, attempt refunded
            try:
                self.broker.release(self.cfg.name, job_id, item.token)
            except BrokerError:
                pass                      # the lease brings it back

    def flush_acks(self) -> None:
        if self.acks:
            self.broker.ack(self.cfg.name, self.acks)
            self.acks = []

    def finish(self) -> None:
        try:
            self.flush_acks()
        except BrokerError as exc:
            log.warning("could not ack the last jobs (they will run again): %s", exc)
        self.close()

    def close(self) -> None:
        if self.waiter is not None:
            self.waiter.close()
            self.waiter = None
