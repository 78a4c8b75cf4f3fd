"""How the supervisor holds and recovers the jobs of one queue's workers: one
small interface, one implementation per fetch mode.

Grab mode (here): each worker reserves its own jobs; the broker records what
each holds under the worker's consumer name, so recovery asks the broker.
Dispatch mode (dispatcher.py): the supervisor reserves and hands jobs out, so
it knows what each worker holds. Either way the supervisor's loop only calls
these methods and never looks at queue keys or at what a worker holds.
"""
from __future__ import annotations

import math

from ..brokers import BrokerError


class Holding:
    """What the loop asks of a fetch mode. The defaults are grab mode's no-ops."""
    mode = "grab"

    @classmethod
    def for_queue(cls, broker, recovery, queue_cfg, lease_grace: float, node_id: str, clock):
        """The holding of one queue's workers (the pool makes one per queue and mode)."""
        raise NotImplementedError

    def worker_ready(self, handle) -> None:
        """A worker of this mode booted and may be given work."""

    def job_done(self, handle, msg: dict) -> None:
        """A worker reported a finished job (dispatch mode only)."""

    def jobs_wanted(self, handle, n: int) -> None:
        """A worker asked for up to `n` more jobs (dispatch mode only)."""

    def worker_gone(self, handle, board, kind: str) -> None:
        """A worker exited; settle what it held. `board` is its last scoreboard
        (ipc.Board); `kind`: crashed, timeout or shutdown (see Recovery.settle)."""
        raise NotImplementedError

    def running(self, handle, slot):
        """The reservation (Held) of the job in one of the worker's slots, to fail it
        as a timeout, or None when it can't be known now."""
        raise NotImplementedError

    def configure(self, queue_cfg, lease_grace: float) -> None:
        """A reload changed the queue's settings."""

    def holders(self) -> list[str]:
        """Consumers of the supervisor's own that hold jobs now (their leases are renewed)."""
        return []

    def consumers_of(self, handle) -> list[str]:
        """The consumers whose leases a worker's jobs are held under, renewed while its
        queue is busy: the worker's own in grab mode."""
        raise NotImplementedError

    # -- for holdings that talk to the broker from the supervisor's loop
    def fds(self) -> list:
        return []

    def timeout(self, now: float) -> float:
        return math.inf

    def pump(self, readable, stopping: bool) -> bool:
        """One loop turn; True if the broker was called and answered. Raises BrokerError."""
        return False

    def broker_failed(self) -> None:
        """pump() raised BrokerError: back off and reconcile before the next reserve."""

    def finish(self) -> None:
        """The service stops: deliver what is owed."""


class GrabHolding(Holding):
    def __init__(self, broker, recovery):
        self.broker, self.recovery = broker, recovery

    @classmethod
    def for_queue(cls, broker, recovery, queue_cfg, lease_grace: float, node_id: str, clock):
        return cls(broker, recovery)

    def consumers_of(self, handle) -> list[str]:
        return [handle.consumer]

    def worker_gone(self, handle, board, kind: str) -> None:
        # Scan even after a clean-looking exit: a worker can die between reserving
        # jobs and marking one busy, and holds the rest of its batch. If it crashed,
        # the jobs it was running spend an attempt (one of them killed it); after
        # a timeout kill the overdue job is settled already and its siblings did
        # nothing wrong. The rest go back unspent. The scan is one small read.
        running = {s.job_id for s in board.running} if kind == "crashed" else set()
        self.recovery.settle_consumer(handle.queue, handle.consumer, kind, running)

    def running(self, handle, slot):
        try:
            return next((x for x in self.broker.held(handle.queue)
                         if x.id == slot.job_id and x.token == slot.token), None)
        except BrokerError:
            # Can't tell now: let recovery settle the worker's jobs once the broker answers.
            self.recovery.settle_consumer(handle.queue, handle.consumer, "timeout", {slot.job_id})
            return None
