"""Settling the jobs of workers that are gone: crashed, killed for a timeout,
killed at the end of a graceful stop, or on a node whose leases ran out.

The supervisor learns each task's retry options from its workers' boot reports
(it never imports task code), so a crash is retried or failed by the same
policy the worker would have used. Work that fails because the broker is
unreachable is kept and tried again; fencing tokens make a repeat harmless.
"""
from __future__ import annotations

import dataclasses
import logging
import time

from ..brokers import BrokerError, Held
from ..core import envelope as jobmod
from ..core import failures
from ..execution.settle import Failure, Settled, cancelled_line, settle_failure
from ..tally import UNREGISTERED, Totals

log = logging.getLogger("mpqueue.recovery")
REAP_CHUNK, REAP_MOST = 100, 5000     # expired leases per broker read, and per call


class Recovery:
    def __init__(self, broker, queues: dict, clock=time.monotonic):
        self.broker = broker
        self.clock = clock
        self.queues = dict(queues)       # name -> QueueConfig (queues removed by a reload stay known)
        self.tasks: dict[str, dict] = {} # task name -> public options, from workers
        self.outcomes = Totals()         # what recovery settled, for the metrics
        self.backlog: list[tuple[str, Held, str]] = []
        self.pending_consumers: list[tuple[str, str, str, set]] = []
        self.retry_at = 0.0
        self.waiting = False

    def configure(self, queues: dict) -> None:
        """A reload's queues; a removed queue's settings still serve its last jobs."""
        self.queues.update(queues)

    def settle(self, queue: str, held: Held, kind: str) -> None:
        """kind: crashed | timeout | lost (attempt spent) or shutdown (handed back)."""
        self.backlog.append((queue, held, kind))
        self.flush(force=True)

    def settle_consumer(self, queue: str, consumer: str, kind: str, running=frozenset()) -> None:
        """Every job a (dead) grab-mode worker held: those in `running` (ids, from its
        scoreboard) as `kind`; the others are handed back unspent: they did not kill it."""
        self.pending_consumers.append((queue, consumer, kind, running))
        self.flush(force=True)

    def pending(self) -> bool:
        return bool(self.backlog or self.pending_consumers)

    def flush(self, force: bool = False) -> bool:
        """Settle what is pending; True when nothing is left. While the broker is
        unreachable, retry at most once a second and log once per outage."""
        if not force and self.clock() < self.retry_at:
            return not self.pending()
        try:
            while self.pending_consumers:
                queue, consumer, kind, running = self.pending_consumers[0]
                # Last of a batch first: each release goes to the front, so FIFO holds.
                held = sorted((h for h in self.broker.held(queue) if h.consumer == consumer),
                              key=_batch_position, reverse=True)
                self.backlog += [(queue, h, kind if h.id in running else "shutdown") for h in held]
                self.pending_consumers.pop(0)
            while self.backlog:
                self._settle_one(*self.backlog[0])
                self.backlog.pop(0)
        except BrokerError as exc:
            if not self.waiting:
                log.warning("broker unreachable: %d dead workers' jobs will be recovered when it answers: %s",
                            len(self.backlog) + len(self.pending_consumers), exc)
            self.waiting = True
            self.retry_at = self.clock() + 1.0
            return False
        self.waiting = False
        return True

    def reap_expired(self, queue: str) -> bool:
        """Settle every expired lease of `queue` as lost, REAP_CHUNK at a time; at
        most REAP_MOST in one call, so a huge backlog can't hold the loop (and the
        watchdog ping) for long. True when more may be left for the next turn."""
        reaped = 0
        while reaped < REAP_MOST:
            batch = self.broker.expired(queue, REAP_CHUNK)
            self.backlog += [(queue, held, failures.LOST) for held in batch]
            if not self.flush(force=True) or len(batch) < REAP_CHUNK:
                return False          # all done, or the broker stopped answering (the backlog waits)
            reaped += len(batch)
        return True

    def _settle_one(self, queue: str, held: Held, kind: str) -> None:
        if kind == failures.LOST and held.unconfirmed:
            # Handed to a consumer that never confirmed taking it (its host died while
            # Redis still counted its subscription): it never ran, so no attempt is spent.
            settled = Settled.of("released", self.broker.release(queue, held.id, held.token))
            if settled.outcome == "released":
                log.warning("job %s was handed to %s, which never took it: handed back", held.id, held.consumer,
                            extra={"queue": queue, "job_id": held.id})
            return self._cancelled(queue, held, settled, f"handed to {held.consumer}, which never took it")
        if kind == "shutdown":
            settled = Settled.of("released", self.broker.release(queue, held.id, held.token))
            if settled.outcome == "released":
                log.info("job %s handed back to the queue", held.id, extra={"queue": queue, "job_id": held.id})
            return self._cancelled(queue, held, settled, "its worker stopped before it ran or ended")
        job = _job_of(queue, held)
        cfg, has_hook = self.policy(queue, job.task)
        message = {"crashed": "the worker running it died", "timeout": f"exceeded its timeout of {cfg.timeout:g} s",
                   "lost": "its lease expired (the node running it is gone)"}[kind]
        settled = settle_failure(self.broker, queue, job, Failure(kind, message), cfg, has_hook)
        if settled.outcome == "cancelled":
            killed = kind == "crashed" and settled.asked == "kill"
            return self._cancelled(queue, held, settled, "its worker was killed on request" if killed else message)
        if settled.outcome != "stale":
            self.outcomes.count(queue, self._label(job.task), settled.outcome, kind)
            log.error("job %s: %s (%s)", settled.outcome, message, kind,
                      extra={"queue": queue, "job_id": job.id, "task": job.task, "attempt": job.attempts,
                             "outcome": kind})

    def _cancelled(self, queue: str, held: Held, settled: Settled, did: str) -> None:
        """If a cancel request ended the job as it was settled: counted and logged as cancelled."""
        if settled.outcome == "cancelled":
            job = _job_of(queue, held)
            self.outcomes.count(queue, self._label(job.task), "cancelled", settled.asked)
            log.warning(cancelled_line(settled.asked, did), extra={"queue": queue, "job_id": job.id,
                                                                    "task": job.task, "outcome": "cancelled"})

    def _label(self, task: str) -> str:
        """A task name from a payload is a label only if a worker registered it."""
        return task if task in self.tasks else UNREGISTERED

    def policy(self, queue: str, task: str):
        """The queue's settings with the task's own overrides, and whether it has a hook."""
        cfg = self.queues[queue] if queue in self.queues else next(iter(self.queues.values()))
        opts = self.tasks.get(task) or {}
        fields = {f.name for f in dataclasses.fields(cfg)}
        overrides = {k: v for k, v in opts.items() if k in fields and k != "name"}
        return dataclasses.replace(cfg, **overrides), bool(opts.get("has_on_failure"))


def _job_of(queue: str, held: Held) -> jobmod.Job:
    try:
        return jobmod.decode(held.envelope, queue, held.token)
    except jobmod.PayloadError:
        job_id, attempts = jobmod.split_header(held.envelope)
        return jobmod.Job(id=held.id, task="?", attempts=attempts, queue=queue, token=held.token)


def _batch_position(held: Held) -> int:
    """A reservation token is '<batch prefix>.<position in the batch>'."""
    tail = held.token.rpartition(".")[2]
    return int(tail) if tail.isdigit() else 0
