"""How a failed attempt is settled in the broker: retried with backoff, or moved
to the failed store with its failure-hook job. Shared by workers (task errors)
and the supervisor (crashes, timeouts, lost leases), so both follow one policy."""
from __future__ import annotations

import json

from ..core import envelope as jobmod
from ..core.failures import NO_RETRY, error_record, hook_envelope
from ..core.retry import RetryPolicy


def settle_failure(broker, queue: str, job: jobmod.Job, policy_cfg, kind: str, message: str,
                   traceback: str = "", task_has_hook: bool = False, delay: float | None = None) -> str:
    """Retry or fail one reserved job; returns 'retried', 'failed' or 'stale'."""
    policy = RetryPolicy.from_options(policy_cfg)
    error = error_record(kind, message, traceback, job.attempts)
    if kind not in NO_RETRY and policy.should_retry(job.attempts, kind):
        wait = policy.delay(job.attempts) if delay is None else delay
        ok = broker.retry(queue, job.id, job.token, wait, json.dumps(error))
        return "retried" if ok else "stale"
    hook = hook_envelope(job, policy_cfg, task_has_hook, error)
    ok = broker.fail(queue, job.id, job.token, json.dumps(error), hook)
    return "failed" if ok else "stale"
