"""A job in a worker's hands from its source to its end (Sidekiq's unit of work):
the loop starts it if claim() says it is still ours, and when it has ended it
settles itself as its source needs (done(ack)): a grabbed job's ack goes into
that source's next reserve, a dispatched job's end goes to the supervisor as a
DONE message. Grab units can also be handed back unrun (release()).

Retries and failures are settled by the runner where the job ran; a unit only
carries the ack of a job that succeeded (or None)."""
from __future__ import annotations

import logging
import os

from .. import ipc

log = logging.getLogger("mpqueue.worker")
# A reservation's lease runs from when it was reserved: a job that waited longer
# than this in our hands (prefetched behind others) gets its lease stretched first.
WAITED = 1.0
# Jobs waiting in our hands keep them from another idle worker (or a newer
# higher-priority job): an executor wants no more than this many seconds of work
# in hand, judged by its recent jobs (its wanted()).
PREFETCH_BUDGET = 0.010


def exit_unsettled(exc, queue: str) -> None:
    """A job ran but its outcome can't be recorded: exit, and the supervisor settles
    what this worker held when the broker answers again (leases bound the wait)."""
    log.warning("broker unreachable while settling a job, exiting to be replaced: %s", exc, extra={"queue": queue})
    os._exit(ipc.EXIT_FAILED)


class Unit:
    """`received`: the clock's time it came into our hands (None: the supervisor
    holds it for us and decides about its lease)."""
    task = ""                  # its task name, as peeked (grab), for run-time estimates

    def __init__(self, token: str, envelope: str, received: float | None = None):
        self.token, self.envelope, self.received = token, envelope, received

    def claim(self, now: float) -> bool:
        """Whether it is still ours to start: one that waited more than WAITED in our
        hands has its lease stretched first, and is no longer ours if that fails
        (its lease ran out and someone else has it)."""
        if self.received is None or now - self.received <= WAITED:
            return True
        return self.extend()

    def extend(self) -> bool:
        return True

    def done(self, ack) -> None:
        """It ended; `ack` (a brokers.Ack) when it succeeded, else None (settled already)."""

    def release(self) -> None:
        """Hand it back unrun (attempt refunded)."""
