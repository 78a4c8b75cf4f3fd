"""Dispatch mode (multi-process-queue's "dispatch"): one fetcher per queue, in the
supervisor, reserves as many jobs as there are idle workers in one round trip,
folding in the acks of the jobs just finished, and hands them out over pipes."""
from __future__ import annotations

import logging
import time

from .brokers import Ack, BrokerError

log = logging.getLogger("mpqueue.dispatch")
FALLBACK_WAIT = 60.0         # re-check the broker this often even if every hint were lost


class Dispatcher:
    def __init__(self, broker, queue_cfg, lease_grace: float, consumer: str):
        self.broker = broker
        self.configure(queue_cfg, lease_grace)
        self.consumer = consumer
        self.idle: list = []              # WorkerHandles waiting for a job
        self.workers: set = set()         # every live worker of this queue
        self.acks: list[Ack] = []
        self.waiter = None
        self.wanted = True                # there may be work: reserve at the next turn
        self.suspect = False              # a call failed mid-way: reconcile before reserving
        self.due_at = time.monotonic()    # when to look again without a hint

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

    def worker_done(self, handle, msg: dict) -> None:
        handle.current = None
        if "token" in msg:
            self.acks.append(Ack(msg["id"], msg["token"], msg["record"], msg["ttl"], msg["first"]))
        if not handle.retiring:
            self.idle.append(handle)
        self.wanted = True

    def worker_gone(self, handle) -> None:
        self.workers.discard(handle)
        if handle in self.idle:
            self.idle.remove(handle)

    def pump(self, readable, stopping: bool) -> bool:
        """One turn: consume hints, then reserve-and-ack in one call if useful; True
        if the broker was called (and answered). Raises BrokerError when the broker
        is unreachable (the caller backs off)."""
        if self.waiter is not None and self.waiter in readable:
            self.waiter.drain()
            self.wanted = True
        if time.monotonic() >= self.due_at:
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
        self.due_at = time.monotonic() + wait
        return True

    def reconcile(self) -> None:
        """After a failed call whose reply was lost, jobs may be held in our name that
        no worker got: hand them back unrun. Jobs our workers run, or whose ack we
        still owe, stay."""
        busy = set(self.handed) | {a.id for a in self.acks}
        for held in self.broker.held(self.cfg.name):
            if held.consumer == self.consumer and held.id not in busy:
                self.broker.release(self.cfg.name, held.id, held.token)
                log.warning("handed back job %s reserved during a broker outage", held.id,
                            extra={"queue": self.cfg.name, "job_id": held.id})
        self.suspect = False

    @property
    def handed(self) -> dict:
        return {h.current["id"]: h for h in self.workers if h.current}

    def _hand_out(self, handle, item) -> None:
        job_id = item.envelope.split(" ", 1)[0]
        self.idle.remove(handle)
        handle.current = {"id": job_id, "token": item.token, "envelope": item.envelope}
        if not handle.tell({"type": "job", "id": job_id, "token": item.token, "envelope": item.envelope}):
            handle.current = None         # never reached it: back, unrun, attempt refunded
            try:
                self.broker.release(self.cfg.name, job_id, item.token)
            except BrokerError:
                pass                      # the lease brings it back

    def flush_acks(self) -> None:
        if self.acks:
            self.broker.ack(self.cfg.name, self.acks)
            self.acks = []

    def close(self) -> None:
        if self.waiter is not None:
            self.waiter.close()
            self.waiter = None
