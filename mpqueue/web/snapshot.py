"""What the dashboard shows, read from the broker alone (like mpqctl, it works
while the service is down): every queue's counts, the live nodes with their
workers and the jobs they hold, whether a queue is paused and how long its oldest
job has waited, one page of a job view (views.py), one job by id.

Plain data for the JSON endpoint; nothing here knows of HTTP. Long texts are cut
and tracebacks left out, so a poll every few seconds stays small whatever the
jobs carry (a traceback comes with /api/job, when its row is unfolded).
"""
from __future__ import annotations

import dataclasses
import time

from .. import proc
from ..core import envelope as jobmod
from ..core.names import redact
from ..ops.jobview import holder, job_info   # the shape `mpqctl job --json` prints
from ..ops.schedview import schedule_rows    # the shape `mpqctl schedules --json` prints
from . import views


def queue_names(cfg, broker) -> list[str]:
    """The config's queues, then any other queue the broker knows."""
    return list(dict.fromkeys([*cfg.queues, *sorted(broker.queues())]))


def state(cfg, broker, history, first_seen, read_only: bool, query: views.ViewQuery) -> dict:
    """Everything one poll shows: the queues, the nodes, the schedules, and one page
    of one job view. The same for every tab asking the same page (app.py caches it
    for a poll's interval), so nothing here is per user."""
    names = queue_names(cfg, broker)
    if query.queue is not None and query.queue not in names:
        query = dataclasses.replace(query, queue=None)
    counts, ages = broker.counts_and_ages(names)          # one round trip per server
    held = {q: broker.held(q) for q in names if counts[q]["running"]}
    paused = broker.paused(names) if names else set()
    now = time.time()
    return {
        "service": cfg.name, "broker": redact(cfg.broker), "read_only": read_only, "now": now,
        "queues": [{"name": q, "declared": q in cfg.queues, "counts": counts[q], "history": history.series(q),
                    "paused": q in paused, "oldest_age": ages[q]} for q in names],
        "nodes": nodes_view(broker.nodes(), held, first_seen, now),
        "view": views.read(broker, query, names, counts),
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
