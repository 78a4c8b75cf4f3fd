"""How a failed attempt is settled in the broker: retried with backoff, or moved
to the failed store with its failure-hook job. Shared by workers (task errors)
and the supervisor (crashes, timeouts, lost leases), so both follow one policy.
A job with a standing cancel request ends as cancelled instead (the broker
decides, in the same step), and the caller hears so, to log and count it."""
from __future__ import annotations

import json
from dataclasses import dataclass

from ..core import envelope as jobmod
from ..core.failures import NO_RETRY, error_record, hook_envelope
from ..core.retry import RetryPolicy


@dataclass(frozen=True)
class Settled:
    """What became of a job: outcome 'retried', 'failed', 'cancelled' (its cancel
    request ended it; `asked`: 'ask' or 'kill') or 'stale' (no longer ours)."""
    outcome: str
    asked: str = ""

    @classmethod
    def of(cls, outcome: str, reply) -> "Settled":
        """From a broker's retry/release/fail reply (True, False, or what a cancel asked)."""
        if isinstance(reply, str):
            return cls("cancelled", reply)
        return cls(outcome if reply else "stale")


@dataclass(frozen=True)
class Failure:
    """A failed attempt: its kind (core/failures.py), message and traceback, and the
    retry delay the task asked for (seconds; None: the retry policy's backoff)."""
    kind: str
    message: str
    traceback: str = ""
    delay: float | None = None


def settle_failure(broker, queue: str, job: jobmod.Job, failure: Failure, policy_cfg,
                   task_has_hook: bool = False) -> Settled:
    """Retry or fail one reserved job, by the policy of `policy_cfg` (the queue's settings
    with the task's overrides); `task_has_hook`: the task has its own failure hook."""
    policy = RetryPolicy.from_options(policy_cfg)
    error = error_record(failure.kind, failure.message, failure.traceback, job.attempts)
    if failure.kind not in NO_RETRY and policy.should_retry(job.attempts, failure.kind):
        wait = policy.delay(job.attempts) if failure.delay is None else failure.delay
        return Settled.of("retried", broker.retry(queue, job.id, job.token, wait, json.dumps(error)))
    hook = hook_envelope(job, policy_cfg, task_has_hook, error)
    return Settled.of("failed", broker.fail(queue, job.id, job.token, json.dumps(error), hook))


def cancelled_line(asked: str, did: str) -> str:
    """The log line of a job a cancel request ended: what was asked, what it did."""
    return f"job cancelled ({asked}): {did}"
