"""How a failed attempt is settled in the broker: retried with backoff, or moved
to the failed store with its failure-hook job. Shared by workers (task errors)
and the supervisor (crashes, timeouts, lost leases), so both follow one policy."""
from __future__ import annotations

import json
import logging
import time

from . import job as jobmod
from .retry import RetryPolicy

HOOK_TASK = "mpqueue:failure_hook"
log = logging.getLogger("mpqueue.outcome")

# Error types recorded in the failed store.
ERROR, TIMEOUT, CRASHED, LOST, UNKNOWN_TASK, BAD_PAYLOAD = (
    "error", "timeout", "crashed", "lost", "unknown_task", "bad_payload")
NO_RETRY = {UNKNOWN_TASK, BAD_PAYLOAD}


def error_record(kind: str, message: str, traceback: str = "", attempts: int = 0) -> dict:
    return {"type": kind, "message": message, "traceback": traceback,
            "attempts": attempts, "at": round(time.time(), 3)}


def hook_envelope(job: jobmod.Job, policy_cfg, task_has_hook: bool, error: dict) -> str | None:
    """The failure-hook job for a finally failed job, or None if no hook applies.
    The hook runs as a job of its own, so it survives the death of whoever runs it."""
    if job.task == HOOK_TASK:
        return None          # a failing hook is recorded, not hooked again
    spec = "task" if task_has_hook else ("queue" if policy_cfg.on_failure else None)
    if spec is None:
        return None
    _, envelope = jobmod.encode(HOOK_TASK, [spec, job.task, job.info(), error], priority=9,
                                max_payload=1 << 30)
    return envelope


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


def import_string(spec: str):
    """'package.module:attr.sub' -> the object."""
    import importlib
    module, _, attr = spec.partition(":")
    obj = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj
