"""Dispatch mode (multi-process-queue's "dispatch"): one fetcher per queue, in the
supervisor, reserves as many jobs as its workers asked for in one round trip,
folding in the acks of the jobs just finished, and hands them out over pipes,
one at a time round the workers. It knows what each worker holds, so it settles
a dead worker's jobs itself.

A worker says how many jobs it wants (WANT, its credit: worker/dispatched.py):
one per free slot, and a batch of about 10 ms of work while its recent jobs were
short, by the same prefetch rule as grab mode. Acks wait up to ACK_DELAY for
a reserve to ride on, so a stream of short jobs costs one round trip per batch,
not one per job.

While a worker waits for work, the dispatcher is on the queue's idle list as a
grab worker would be: a push hands it the job over its wake-up subscription,
and it confirms the job and sends it on at once, with no reserve round trip on
the way from push to start."""
from __future__ import annotations

import logging
import time

from .. import ipc
from ..brokers import FALLBACK_WAIT, Ack, BrokerError, Held, Reserved
from ..core import envelope as jobmod
from ..core.limits import rate_of
from .holding import Holding

log = logging.getLogger("mpqueue.dispatch")
BACKOFF_MAX = 2.0       # seconds between tries while the broker fails
# An ack waits at most this long for a reserve to fold it into (a job's caller in
# result() hears this much later at worst; grab mode's acks wait for their batch alike).
ACK_DELAY = 0.010


class Dispatcher(Holding):
    mode = "dispatch"

    def __init__(self, broker, recovery, queue_cfg, lease_grace: float, consumer: str, clock=time.monotonic):
        self.broker, self.recovery, self.clock = broker, recovery, clock
        self.configure(queue_cfg, lease_grace)
        self.consumer = consumer
        self.idle: list = []              # WorkerHandles with a free slot, in the order they freed one
        self.workers: set = set()         # every live worker of this queue
        self.handed: dict = {}            # WorkerHandle -> {job id: Held}: what it was sent, in order
        self.free: dict = {}              # WorkerHandle -> jobs it asked for and was not sent yet
        self.acks: list[Ack] = []
        self.acks_since = 0.0             # when the oldest ack owed came in
        self.waiter = None
        self.on_idle = False              # our last reserve may have put us on the broker's idle list
        self.wanted = True                # there may be work: reserve at the next turn
        self.suspect = False              # a call failed mid-way: reconcile before reserving
        self.due_at = clock()             # when to look again without a hint
        self.failures = 0                 # broker calls failed in a row
        self.retry_at = None              # after a failed call: not before then

    @classmethod
    def for_queue(cls, broker, recovery, queue_cfg, lease_grace: float, node_id: str, clock):
        return cls(broker, recovery, queue_cfg, lease_grace, f"{node_id}/dispatch", clock)

    def configure(self, queue_cfg, lease_grace: float) -> None:
        self.cfg = queue_cfg
        self.lease = queue_cfg.timeout + lease_grace
        self.rate = rate_of(queue_cfg)

    def fds(self) -> list:
        # Even with no worker idle: a hand-off may still come (a push that found us on
        # the idle list before our last reserve took us off), and must not wait.
        return [self.waiter] if self.waiter is not None else []

    def timeout(self, now: float) -> float:
        if self.retry_at is not None and now < self.retry_at:
            return self.retry_at - now
        if self.idle and self.wanted:
            return 0.0
        wait = max(0.0, self.due_at - now) if self.idle else FALLBACK_WAIT
        return min(wait, max(0.0, self.acks_since + ACK_DELAY - now)) if self.acks else wait

    def worker_ready(self, handle) -> None:
        """Booted: it is sent jobs once it asks for them (its first loop turn does)."""
        self.workers.add(handle)
        self.handed[handle] = {}
        self.free[handle] = 0

    def jobs_wanted(self, handle, n: int) -> None:
        if handle not in self.free:
            return                        # not ready, or gone: it asks again if it lives
        self.free[handle] += n
        if not handle.retiring and handle not in self.idle:
            self.idle.append(handle)
        self.wanted = True

    def job_done(self, handle, msg: dict) -> None:
        self.handed.get(handle, {}).pop(msg["id"], None)
        fields = ipc.ack_fields(msg)
        if fields is not None:
            if not self.acks:
                self.acks_since = self.clock()
            self.acks.append(Ack(**fields))

    def worker_gone(self, handle, board, kind: str) -> None:
        """Its running jobs spend an attempt if it crashed; the rest, and every job
        of a worker stopped or killed for another job's timeout, go back unspent
        (last sent first, so they keep their order)."""
        self.workers.discard(handle)
        self.free.pop(handle, None)
        if handle in self.idle:
            self.idle.remove(handle)
        running = {s.job_id for s in board.running}
        for held in reversed(list(self.handed.pop(handle, {}).values())):
            if held.id in handle.overdue:
                continue                  # settled as a timeout when we killed it
            spent = kind == "crashed" and held.id in running
            self.recovery.settle(handle.queue, held, kind if spent else "shutdown")

    def running(self, handle, slot):
        return self.handed.get(handle, {}).get(slot.job_id)

    def holders(self) -> list[str]:
        return [self.consumer] if any(self.handed.values()) else []

    def consumers_of(self, handle) -> list[str]:
        return []                         # what a worker runs is held under the dispatcher's consumer

    def broker_failed(self) -> None:
        # Acks owed and idle workers would make every loop turn try again at once:
        # back off as a grab-mode worker does, from 50 ms doubling to BACKOFF_MAX.
        self.close()
        self.suspect = True
        self.failures += 1
        self.retry_at = self.due_at = self.clock() + min(BACKOFF_MAX, 0.05 * 2 ** min(10, self.failures - 1))

    def pump(self, readable, stopping: bool) -> bool:
        """One turn: consume hints, then reserve-and-ack in one call if useful; True
        if the broker was called (and answered). Raises BrokerError when the broker
        is unreachable (the caller backs off)."""
        if self.waiter is not None and self.waiter in readable:
            self.take_handed(self.waiter.drain(), stopping)
            self.wanted = True
        if self.retry_at is not None and self.clock() < self.retry_at:
            return False
        if self.clock() >= self.due_at:
            self.wanted = True
        idle = [] if stopping else [h for h in self.idle if not h.retiring]
        # Stopping: leave the idle list too (with no worker idle we do not join again),
        # or each push until we exit would hand us a job only to get it back.
        if not (idle and self.wanted) and not self.acks_due(stopping) and not (stopping and self.on_idle):
            return False
        if self.suspect:
            self.reconcile()
        if self.waiter is None and idle:
            self.waiter = self.broker.waiter(self.cfg.name, self.consumer)
        want = sum(self.free[h] for h in idle)
        # Join the idle list when a worker could take a handed job at once (nothing
        # reserved now): a push then hands us its job, saving a round trip.
        join = bool(want) and self.waiter is not None
        reserved, next_due = self.broker.reserve(self.cfg.name, self.consumer, want, self.lease, self.acks,
                                                 leave_idle=self.on_idle, join_idle=join, rate=self.rate)
        self.on_idle = join and not reserved
        self.acks, self.failures, self.retry_at = [], 0, None
        turn = 0
        for item in reserved:                     # round the workers, one job each per round
            handle = idle[turn % len(idle)]
            self._hand_out(handle, item)
            if not self.free.get(handle):
                idle.remove(handle)
            else:
                turn += 1
        # Jobs came: maybe more wait; and if some slot is still free, the next reserve
        # (finding nothing) puts us on the idle list, where the next push finds us.
        self.wanted = bool(reserved)
        wait = FALLBACK_WAIT if next_due is None else min(FALLBACK_WAIT, next_due)
        self.due_at = self.clock() + wait
        return True

    def take_handed(self, handed: list, stopping: bool) -> None:
        """Jobs a push handed us (we were on the idle list; `on_idle` stays, as a late
        hand-off can't tell us whether a later reserve put us back on it):
        confirm each (its lease becomes ours, so a loss from here on spends its
        attempt) and send it to an idle worker at once. One that no worker has room
        for (their asks were filled meanwhile, or we stop) goes back unrun."""
        for token, envelope in handed:
            job_id = jobmod.job_id(envelope)
            ready = [] if stopping else [h for h in self.idle if not h.retiring and self.free.get(h)]
            if not ready:
                self.broker.confirm(self.cfg.name, job_id, token, self.lease)
                self._release(job_id, token)
                continue
            # The confirm is committed before the job goes down the pipe, but Redis is
            # woken after the worker (receipts_held): the job's start waits on neither.
            with self.broker.receipts_held(self.cfg.name):
                self.broker.confirm(self.cfg.name, job_id, token, self.lease)
                self._hand_out(ready[0], Reserved(token, envelope))

    def acks_due(self, stopping: bool) -> bool:
        """Acks owed that must go now, without a reserve to ride on: the oldest has
        waited ACK_DELAY, or we stop."""
        if not self.acks:
            return False
        return stopping or self.clock() >= self.acks_since + ACK_DELAY

    def reconcile(self) -> None:
        """After a failed call whose reply was lost, jobs may be held in our name that
        no worker got: hand them back unrun. Jobs our workers run, or whose ack we
        still owe, stay."""
        busy = {job_id for sent in self.handed.values() for job_id in sent} | {a.id for a in self.acks}
        for held in self.broker.held(self.cfg.name):
            if held.consumer == self.consumer and held.id not in busy:
                self.broker.release(self.cfg.name, held.id, held.token)
                log.warning("handed back job %s reserved during a broker outage", held.id,
                            extra={"queue": self.cfg.name, "job_id": held.id})
        self.suspect = False

    def _hand_out(self, handle, item) -> None:
        job_id = jobmod.job_id(item.envelope)
        self.free[handle] -= 1
        if not self.free[handle] and handle in self.idle:
            self.idle.remove(handle)
        self.handed[handle][job_id] = Held(job_id, item.token, self.consumer, item.envelope)
        if not handle.tell({"type": ipc.JOB, "id": job_id, "token": item.token, "envelope": item.envelope}):
            del self.handed[handle][job_id]   # never reached it: back, unrun, attempt refunded
            self.free[handle] += 1
            self._release(job_id, item.token)

    def _release(self, job_id: str, token: str) -> None:
        try:
            self.broker.release(self.cfg.name, job_id, token)
        except BrokerError:
            pass                          # the lease brings it back

    def flush_acks(self) -> None:
        """The acks owed go now, and we leave the idle list in the same call: a push
        that found our entry after we exit would try to hand us its job in vain."""
        if self.on_idle:
            self.broker.reserve(self.cfg.name, self.consumer, 0, self.lease, self.acks, leave_idle=True)
            self.acks, self.on_idle = [], False
        elif self.acks:
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
