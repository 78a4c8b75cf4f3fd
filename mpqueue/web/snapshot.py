"""What the dashboard shows, read from the broker alone (like mpqctl, it works
while the service is down): every queue's counts, the live nodes with their
workers and the jobs they hold, the delayed jobs, the failed jobs, one job by id.

Plain data for the JSON endpoint; nothing here knows of HTTP. Long texts are cut
so that a poll every few seconds stays small whatever the jobs carry.
"""
from __future__ import annotations

import json
import time

from .. import proc
from ..core import envelope as jobmod
from ..core.names import redact
from ..ops.jobview import failed_entry, holder, job_info  # the shapes `mpqctl failed/job --json` print
from ..ops.schedview import schedule_rows                 # the shape `mpqctl schedules --json` prints

PER_QUEUE = 50           # failed or scheduled jobs listed per queue
MESSAGE_CHARS = 2000
TRACEBACK_CHARS = 8000   # the end of a traceback: where the exception is
ARGS_CHARS = 500


def queue_names(cfg, broker) -> list[str]:
    """The config's queues, then any other queue the broker knows."""
    return list(dict.fromkeys([*cfg.queues, *sorted(broker.queues())]))


def state(cfg, broker, history, first_seen, read_only: bool) -> dict:
    names = queue_names(cfg, broker)
    counts = broker.counts_many(names)
    held = {q: broker.held(q) for q in names if counts[q]["running"]}
    now = time.time()
    return {
        "service": cfg.name, "broker": redact(cfg.broker), "read_only": read_only, "now": now,
        "queues": [{"name": q, "declared": q in cfg.queues, "counts": counts[q], "history": history.series(q)}
                   for q in names],
        "nodes": nodes_view(broker.nodes(), held, first_seen, now),
        "scheduled": scheduled_rows(broker, [q for q in names if counts[q]["scheduled"]]),
        "failed": failed_rows(broker, [q for q in names if counts[q]["failed"]], counts),
        "schedules": schedule_rows(cfg, broker, now),
    }


# -- nodes and workers
def nodes_view(nodes: list, held: dict, first_seen, now: float) -> dict:
    """Live nodes (their last heartbeat) with each worker's jobs. The jobs come from
    the broker's reservations, read now, so they are current although a heartbeat
    is up to 15 s old; a job counts as a worker's when the worker holds it, or when
    the heartbeat says the worker runs it (dispatch mode: the node holds it). A node
    whose supervisor is known to be gone (killed on this host) is listed as such."""
    holds = {(q, h.id): h for q, hs in held.items() for h in hs}
    ages = first_seen.update([job_id for _, job_id in holds])
    claimed: set = set()
    out = [_node(n, holds, ages, claimed, now) for n in sorted(nodes, key=lambda n: (str(n.get("service")),
                                                                                       str(n.get("host")),
                                                                                       str(n.get("node"))))]
    unclaimed = [_job(q, h, ages) | {"consumer": h.consumer} for (q, job_id), h in holds.items()
                 if (q, job_id) not in claimed]
    return {"nodes": out, "unclaimed": unclaimed}


def _node(n: dict, holds: dict, ages: dict, claimed: set, now: float) -> dict:
    node_id = str(n.get("node"))
    workers = []
    for w in n.get("workers") or []:
        consumer = f"{node_id}/{w.get('pid')}"
        running = {str(v) for v in (w.get("running") or {}).values()}
        mine = [(key, h) for key, h in holds.items()
                if key not in claimed and (h.consumer == consumer or key[1] in running)]
        claimed.update(key for key, _ in mine)
        workers.append({"queue": w.get("queue"), "index": w.get("index"), "pid": w.get("pid"),
                        "state": "busy" if mine else "idle", "jobs": [_job(q, h, ages) for (q, _), h in mine]})
    # Held by the node but by none of its workers: a dispatcher's, or a worker's started after the heartbeat.
    extra = [(key, h) for key, h in holds.items() if key not in claimed and h.consumer.startswith(node_id + "/")]
    claimed.update(key for key, _ in extra)
    return {"node": node_id, "service": n.get("service"), "host": n.get("host"), "pid": n.get("pid"),
            "started_at": n.get("started_at"), "done": n.get("done"), "failed": n.get("failed"),
            "heartbeat_age": round(max(0.0, now - (n.get("heartbeat_at") or now)), 1),
            "alive": proc.record_running(n),      # False: its supervisor is gone (seen from its own host)
            "workers": workers, "other_jobs": [_job(q, h, ages) | {"consumer": h.consumer} for (q, _), h in extra]}


def _job(queue: str, h, ages: dict) -> dict:
    age, at_least = ages.get(h.id, (0.0, True))
    return {"queue": queue, "id": h.id, "task": _task(h.envelope), "age": round(age, 1), "age_at_least": at_least}


def _task(envelope: str) -> str | None:
    try:
        return jobmod.decode(envelope).task
    except jobmod.PayloadError:
        return None


# -- delayed and failed jobs
def scheduled_rows(broker, queues: list[str]) -> list[dict]:
    """Next due first, over every queue."""
    rows = []
    for q in queues:
        for job_id, envelope, due_ms in broker.scheduled(q, PER_QUEUE):
            job_id, attempts = jobmod.split_header(envelope)
            rows.append({"queue": q, "id": job_id, "task": _task(envelope), "attempts": attempts,
                         "due_at": due_ms / 1000.0})
    return sorted(rows, key=lambda r: r["due_at"])


def failed_rows(broker, queues: list[str], counts: dict) -> dict:
    """Newest failure first, over every queue; `total` is how many there are."""
    rows = []
    for q in queues:
        for job_id, envelope, error in broker.failed(q, PER_QUEUE):
            rows.append(_failed(q, failed_entry(job_id, envelope, error)))
    rows.sort(key=lambda r: -(r["error"]["at"] if isinstance(r["error"]["at"], (int, float)) else 0))
    return {"jobs": rows, "total": sum(counts[q]["failed"] for q in queues)}


def _failed(queue: str, entry: dict) -> dict:
    error = entry["error"]
    return {"queue": queue, "id": entry["id"], "task": entry["task"], "attempts": entry["attempts"],
            "args": _cut(_arguments(entry), ARGS_CHARS),
            "error": {"type": _text(error.get("type")), "at": error.get("at"),
                      "message": _cut(_text(error.get("message")), MESSAGE_CHARS),
                      "traceback": _cut(_text(error.get("traceback")), TRACEBACK_CHARS, keep_end=True)}}


def _arguments(entry: dict) -> str:
    if entry["args"] is None:
        return "(unreadable payload)"
    parts = [json.dumps(a, ensure_ascii=False) for a in entry["args"]]
    parts += [f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in (entry["kwargs"] or {}).items()]
    return ", ".join(parts)


def _text(value) -> str:
    return "" if value is None else value if isinstance(value, str) else str(value)


def _cut(text: str, limit: int, keep_end: bool = False) -> str:
    if len(text) <= limit:
        return text
    return "…" + text[-limit:] if keep_end else text[:limit] + "…"


# -- one job
def lookup(cfg, broker, job_id: str, queue: str | None) -> dict | None:
    """What `mpqctl job ID --json` prints, or None."""
    for q in [queue] if queue else queue_names(cfg, broker):
        found = broker.find(q, job_id)
        if found:
            info = job_info(job_id, q, found)
            if info["state"] == "running":
                info.update(holder(broker.nodes(), info.get("consumer") or "", job_id))
            return info
    return None
