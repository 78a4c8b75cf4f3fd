"""How a job reads in `mpqctl failed/job --json` and on the dashboard: one home
for the shapes both show (the JSON is a documented contract)."""
from __future__ import annotations

import json

from ..core import envelope as jobmod


def failed_entry(job_id: str, envelope: str, error_json: str) -> dict:
    try:
        error = json.loads(error_json or "{}")
    except ValueError:
        error = {"message": error_json}
    if not isinstance(error, dict):
        error = {"message": str(error)}
    error = {"type": None, "message": "", "traceback": "", "at": None, **error}
    fields = job_fields(envelope)
    del fields["priority"]          # not part of the documented `failed` shape
    return {"id": job_id, **fields, "error": error}


def job_fields(envelope: str) -> dict:
    try:
        job = jobmod.decode(envelope)
    except jobmod.PayloadError:
        return {"task": None, "args": None, "kwargs": None, "attempts": jobmod.split_header(envelope)[1],
                "priority": None}
    return {"task": job.task, "args": job.args, "kwargs": job.kwargs, "attempts": job.attempts,
            "priority": job.priority}


def _scheduled_ms(envelope: str) -> int:
    try:
        return jobmod.decode(envelope).scheduled_ms
    except jobmod.PayloadError:
        return 0


def holder(nodes: list, consumer: str, job_id: str) -> dict:
    """Which worker, and which of its slots, runs a job: from the holder's node's
    last heartbeat (a dispatch-mode holder is the node's dispatcher)."""
    node_id, _, pid = consumer.rpartition("/")
    for node in nodes:
        if node.get("node") != node_id:
            continue
        for w in node.get("workers") or []:
            slot = next((k for k, v in (w.get("running") or {}).items() if v == job_id), None)
            if slot is not None or str(w.get("pid")) == pid:
                return {"worker": f"{w.get('queue')}/{w.get('index')}", "pid": w.get("pid"),
                        "slot": int(slot) if slot is not None else None}
    return {}


def job_info(job_id: str, queue: str, found: dict) -> dict:
    state = found["state"]
    info = {"id": job_id, "queue": queue, "state": state,
            "task": None, "args": None, "kwargs": None, "attempts": None, "priority": None}
    if found.get("envelope"):
        info.update(job_fields(found["envelope"]))
        scheduled = _scheduled_ms(found["envelope"])
        if scheduled:
            info["scheduled_for"] = scheduled / 1000.0      # pushed by a schedule: its tick
    if state == "done":
        info.update(task=found.get("task"), attempts=found.get("attempts"), result=found.get("result"),
                    finished_at=found.get("finished_at"), duration_ms=found.get("duration_ms"))
    elif state == "failed":
        info["error"] = found.get("error")
    elif state == "cancelled":
        info.update(cancelled_at=found.get("cancelled_at"), was=found.get("was"))
    elif state == "running":
        info["consumer"] = found.get("consumer")
    else:
        if state == "scheduled":
            info["due_at"] = found["due_ms"] / 1000.0
        info["last_error"] = found.get("last_error")
    return info
