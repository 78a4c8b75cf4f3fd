"""Grab mode, the worker's side, as a source of units for the worker loop: this
worker reserves its own jobs, as many at once as the loop wants (prefetch),
folding the acks of finished jobs into its next reserve. When its queue is
empty it waits on the broker's wake-up hint, and on the idle list, where a push
can hand it a job directly (confirmed before it runs). After a broker outage
it hands back what a lost reserve reply may have left in its name; on the way
out it delivers the acks owed and hands back, last first, what it did not run."""
from __future__ import annotations

import logging
import time

from ..brokers import FALLBACK_WAIT, BrokerError
from ..core import envelope as jobmod
from .units import Unit

log = logging.getLogger("mpqueue.worker")


class GrabUnit(Unit):
    """A job reserved by (or handed to) this worker: its ack joins the source's
    next reserve, and it can be handed back unrun."""

    def __init__(self, source: "GrabSource", token: str, envelope: str, received: float):
        super().__init__(token, envelope, received)
        self.source = source
        self.task = jobmod.peek_task(envelope)
        self.id = jobmod.job_id(envelope)

    def extend(self) -> bool:
        return self.source.broker.extend(self.source.queue, self.id, self.token, self.source.lease)

    def done(self, ack) -> None:
        if ack:
            self.source.owed.append(ack)
        # A reserve now: it delivers the ack, fills the freed slot, and finds what
        # settling the job may have queued (its failure hook, a retry due at once).
        self.source.wake()

    def release(self) -> None:
        self.source.broker.release(self.source.queue, self.id, self.token)


class GrabSource:
    def __init__(self, broker, queue: str, consumer: str, lease: float, control, shutdown_timeout: float,
                 clock=time.monotonic, rate=None):
        self.broker, self.queue, self.consumer, self.lease = broker, queue, consumer, lease
        self.rate = rate                   # the queue's RateLimit (core/limits.py), or None
        self.control, self.shutdown_timeout, self.clock = control, shutdown_timeout, clock
        self.handed: list[GrabUnit] = []   # reserved for us (or handed by a push), not started yet
        self.owed: list = []               # acks of finished jobs, for the next reserve
        self.waiter = None
        self.idle = False                  # our last reserve found nothing and put us on the idle list
        self.listen = False                # a hand-off may be waiting on the waiter (we were idle)
        self.quiet_until = 0.0             # no reserve before this: idle until a hint, or backing off
        self.down_since = None             # when the broker stopped answering
        self.released: set[str] = set()    # tokens reclaim() handed back: a late hand-off message is void

    def held(self) -> int:
        return len(self.handed)

    def take(self, free: int, now: float) -> list[Unit]:
        """Up to `free` of the jobs in our hands, oldest first."""
        if self.listen:
            self.collect_handed()
        units, self.handed = self.handed[:free], self.handed[free:]
        return units

    def fill(self, want: int, free: int, running) -> bool:
        """Reserve up to `want` jobs, the acks owed folded in; True when the loop
        should turn again at once (jobs came, or a re-check is due). `free`: slots
        free now (only a worker that can start a job at once joins the idle list);
        `running()`: ids of our running jobs (kept through a reclaim)."""
        if want <= 0:
            self.deliver()                 # reserving nothing: the acks owed go now
            return False
        now = self.clock()
        if now < self.quiet_until:
            return False
        try:
            if self.down_since is not None:
                self.reclaim(keep={a.id for a in self.owed} | set(running()))
            join = self.waiter is not None and free > len(self.handed)
            reserved, next_due = self.broker.reserve(self.queue, self.consumer, want, self.lease, self.owed,
                                                     leave_idle=self.idle, join_idle=join, rate=self.rate)
        except BrokerError as exc:
            self.broker_down(exc)
            return False
        was_idle, self.owed = self.idle, []
        self.idle = not reserved and join
        self.listen = was_idle or self.idle      # a push may have handed us a job as we left the list
        if reserved:
            now = self.clock()
            self.handed += [GrabUnit(self, r.token, r.envelope, now) for r in reserved]
            return True
        self.quiet_until = now + (FALLBACK_WAIT if next_due is None else min(FALLBACK_WAIT, next_due))
        return self.subscribe()

    def subscribe(self) -> bool:
        """Open the wake-up subscription on first need; True: re-check now (a hint may
        have been missed while subscribing)."""
        if self.waiter is not None:
            return False
        try:
            self.waiter = self.broker.waiter(self.queue, self.consumer)
        except (BrokerError, OSError) as exc:
            self.broker_down(exc)
            return False
        self.quiet_until = 0.0
        return True

    def wake(self) -> None:
        """Something may be worth a reserve now (a hint, a hand-off, an ack owed)."""
        if self.down_since is None:
            self.quiet_until = 0.0

    def deliver(self) -> None:
        """Acknowledge the finished jobs now (before a slow job, or with nothing to
        reserve); while the broker is down they wait for the reserve after it."""
        if self.owed and self.down_since is None:
            try:
                self.broker.ack(self.queue, self.owed)
                self.owed = []
            except BrokerError as exc:
                self.broker_down(exc)

    def wait(self, timeout: float, fds) -> None:
        """Until a wake hint or hand-off, one of `fds`, a stop, `timeout`, or the end
        of our quiet time (the next delayed job, the fallback, the back-off)."""
        now = self.clock()
        if self.quiet_until > now:
            timeout = min(timeout, self.quiet_until - now)
        try:
            readable = self.control.wait([*fds, *([self.waiter] if self.waiter is not None else [])], timeout)
            if self.waiter is not None and self.waiter in readable:
                self.collect_handed()
                self.wake()
        except (BrokerError, OSError) as exc:
            self.broker_down(exc)

    def collect_handed(self) -> None:
        if self.waiter is None:
            return
        self.listen = self.idle
        try:
            now = self.clock()
            for token, envelope in self.waiter.drain():
                # A hand-off that arrives after reclaim() released its job is no longer ours.
                if token not in self.released:
                    # Taken: confirm it now, before it runs (a loss from here on spends its attempt).
                    self.broker.confirm(self.queue, jobmod.job_id(envelope), token, self.lease)
                    self.handed.append(GrabUnit(self, token, envelope, now))
        except BrokerError as exc:
            self.broker_down(exc)

    def hand_back(self) -> None:
        """On the way out: deliver the acks owed, and hand back the jobs in our hands
        not run (attempt refunded, to the front of the queue), within shutdown_timeout."""
        deadline = self.clock() + self.shutdown_timeout
        self.collect_handed()
        while (self.owed or self.handed) and self.clock() < deadline:
            try:
                if self.owed:
                    self.broker.ack(self.queue, self.owed)
                    self.owed = []
                while self.handed:       # last first: each goes to the front, so order is kept
                    self.handed[-1].release()
                    self.handed.pop()
            except BrokerError as exc:
                self.broker_down(exc)
                self.control.wait([], min(self.quiet_until, deadline) - self.clock())
        self.drop_waiter()

    def close(self) -> None:
        self.drop_waiter()

    # -- broker outages
    def broker_down(self, exc) -> None:
        # The wake-up subscription goes too: it may be on a server that is no longer
        # the master (a failover), where no hand-off or wake-up will ever come.
        self.drop_waiter()
        now = self.clock()
        if self.down_since is None:
            self.down_since = now
            log.warning("broker unreachable, retrying: %s", exc, extra={"queue": self.queue})
        self.quiet_until = now + min(5.0, 0.05 * 2 ** min(10, (now - self.down_since) // 1))

    def reclaim(self, keep=frozenset()) -> None:
        """Back from an outage: a reserve whose reply was lost may have left a job held
        in our name that we never saw. Hand back, unrun, all we hold but the jobs in
        `keep` (finished, their ack still to deliver; or running): our jobs in hand
        go too, and a hand-off of one of them arriving late is void."""
        self.handed = []
        self.released = set()
        for held in self.broker.held(self.queue):
            if held.consumer == self.consumer and held.id not in keep \
                    and self.broker.release(self.queue, held.id, held.token):
                self.released.add(held.token)
                log.warning("handed back job %s reserved during the outage", held.id,
                            extra={"queue": self.queue, "job_id": held.id})
        log.warning("broker reachable again after %.1f s", self.clock() - self.down_since,
                    extra={"queue": self.queue})
        self.down_since = None

    def drop_waiter(self) -> None:
        # `idle` stays: our next reserve still takes us off the broker's idle list.
        self.listen = False
        if self.waiter is not None:
            self.waiter.close()
            self.waiter = None
