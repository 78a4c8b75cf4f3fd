"""Failure kinds and records: the error types of the failed store, the error
record kept with a failed or retried job, and the failure-hook job. Pure: the
broker calls that settle a failure are in execution/settle.py."""
from __future__ import annotations

import time

from . import envelope as jobmod

HOOK_TASK = "mpqueue:failure_hook"

# Error types recorded in the failed store. bad_result: the task ran, but what it
# asked for can't be honoured (e.g. Retry(delay=inf)) or its outcome could not be
# recorded; running it again would end the same way, so it is not retried.
ERROR, TIMEOUT, CRASHED, LOST, UNKNOWN_TASK, BAD_PAYLOAD, BAD_RESULT = (
    "error", "timeout", "crashed", "lost", "unknown_task", "bad_payload", "bad_result")
NO_RETRY = {UNKNOWN_TASK, BAD_PAYLOAD, BAD_RESULT}


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
