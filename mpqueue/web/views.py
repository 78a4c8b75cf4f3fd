"""The dashboard's job views, one page at a time, read from the broker in
O(page) whatever the depth (1M waiting, 100k failed):

- dead: the failed store, newest failure first;
- retries: delayed jobs that failed an attempt and wait for the next, with the
  last error;
- scheduled: every delayed job, next due first (retries marked as such).

One queue pages by rank in the broker (failed_at / due-time order). All queues
merge the first offset+limit of each, up to MAX_MERGE deep (beyond: pick a
queue). A filter (task, error text) and the retries view must look at records
one by one: they read at most SCAN_LIMIT records per request and say how many
of how many they searched, rather than block for seconds on 100k.

No tracebacks here: a row carries its message (cut to MESSAGE_CHARS) and the
page fetches the traceback when the row is unfolded (/api/job).
"""
from __future__ import annotations

import heapq
import json
from dataclasses import dataclass

from ..core import envelope as jobmod
from ..ops.jobview import failed_entry
from . import checks

VIEWS = ("dead", "retries", "scheduled")
PAGE_SIZES = (20, 50, 100, 200)
MAX_OFFSET = 10_000_000
MAX_MERGE = 2000          # offset + limit when several queues are merged
SCAN_LIMIT = 5000         # records a filtered view (or retries) reads at most per request
SCAN_CHUNK = 500
MESSAGE_CHARS = 2000
ARGS_CHARS = 500


@dataclass(frozen=True)
class ViewQuery:
    view: str = "dead"
    queue: str | None = None       # None: every queue
    task: str = ""                 # a substring of the task name
    error: str = ""                # a substring of the error type or message (dead, retries)
    offset: int = 0
    limit: int = 50


def parse(args, known_queues: list[str]) -> ViewQuery:
    view = args.get("view") or "dead"
    if view not in VIEWS:
        raise checks.BadRequest(f"view: expected one of {', '.join(VIEWS)}")
    queue = args.get("queue") or None
    if queue is not None:
        queue = checks.queue_name(queue, known_queues)
    limit = checks.number(args, "limit", 50, 1, PAGE_SIZES[-1])
    return ViewQuery(view, queue, checks.text_filter(args, "task"), checks.text_filter(args, "error"),
                     checks.number(args, "offset", 0, 0, MAX_OFFSET), limit)


def read(broker, q: ViewQuery, names: list[str], counts: dict) -> dict:
    """The page `q` asks for: {"rows", "total", "exact", "searched", "of", "note", ...}."""
    queues = [q.queue] if q.queue else names
    dead = q.view == "dead"
    queues = [n for n in queues if counts[n]["failed" if dead else "scheduled"]]
    totals = {n: counts[n]["failed" if dead else "scheduled"] for n in queues}
    if dead:
        def fetch(n, offset, limit):
            return [(n, *r) for r in broker.failed(n, limit, offset, newest_first=True)]
    else:
        def fetch(n, offset, limit):
            return [(n, *r) for r in broker.scheduled(n, limit, offset)]
    build, key = (_failed, _newest_failure_first) if dead else (_delayed, _next_due_first)
    page = _page(queues, totals, fetch, build, key, _matcher(q), q)
    if not dead:
        _add_last_errors(broker, page["rows"])
    return {"name": q.view, "queue": q.queue, "task": q.task, "error": q.error, "offset": q.offset,
            "limit": q.limit, **page}


def _newest_failure_first(row) -> float:
    return -(row["at"] or 0)


def _next_due_first(row) -> float:
    return row["due_at"]


def _matcher(q: ViewQuery):
    """None (every record, paged by rank), or a test of a raw record (queue, id,
    envelope, error json | due_ms): cheap, as it runs on every record scanned."""
    task, error = q.task.lower(), q.error.lower()
    retries = q.view == "retries"
    if not (task or retries or (error and q.view == "dead")):
        return None

    def match(raw) -> bool:
        envelope = raw[2]
        if retries and jobmod.split_header(envelope)[1] < 1:
            return False
        if task and task not in _task_of(envelope).lower():
            return False
        if error and q.view == "dead":
            err = _json_object(raw[3])
            return error in f"{err.get('type') or ''} {err.get('message') or ''}".lower()
        return True
    return match


def _task_of(envelope: str) -> str:
    try:
        return jobmod.peek_task(envelope) or jobmod.decode(envelope).task or ""
    except jobmod.PayloadError:
        return ""


def _page(queues, totals, fetch, build, key, match, q: ViewQuery) -> dict:
    everything = sum(totals.values())
    done = {"total": everything, "exact": True, "searched": None, "of": None, "note": None}
    if match is not None:
        return _scan(queues, totals, fetch, build, key, match, q)
    if len(queues) <= 1:
        return {"rows": [build(*r) for r in fetch(queues[0], q.offset, q.limit)] if queues else [], **done}
    need = q.offset + q.limit
    if need > MAX_MERGE:
        return {"rows": [], **done,
                "note": f"across all queues the first {MAX_MERGE:,} are shown: choose a queue to page further"}
    merged = list(heapq.merge(*([build(*r) for r in fetch(n, 0, need)] for n in queues), key=key))
    return {"rows": merged[q.offset:need], **done}


def _scan(queues, totals, fetch, build, key, match, q: ViewQuery) -> dict:
    """Read records in order and test each; stop after SCAN_LIMIT. Only the first
    offset+limit matches of each queue become rows (enough for any merge)."""
    need, found, matched, searched = q.offset + q.limit, [], 0, 0
    for n in queues:
        offset, rows = 0, []
        while searched < SCAN_LIMIT and offset < totals[n]:
            chunk = fetch(n, offset, min(SCAN_CHUNK, SCAN_LIMIT - searched))
            if not chunk:
                break
            offset += len(chunk)
            searched += len(chunk)
            for raw in chunk:
                if match(raw):
                    matched += 1
                    if len(rows) < need:
                        rows.append(build(*raw))
        found.append(rows)
    rows = list(heapq.merge(*found, key=key))
    everything = sum(totals.values())
    return {"rows": rows[q.offset:need], "total": matched, "exact": searched >= everything,
            "searched": searched, "of": everything, "note": None}


# -- rows
def _failed(queue: str, job_id: str, envelope: str, error_json: str) -> dict:
    entry = failed_entry(job_id, envelope, error_json)
    error = entry["error"]
    at = error.get("at")
    return {"queue": queue, "id": entry["id"], "task": entry["task"], "attempts": entry["attempts"],
            "args": cut(arguments(entry), ARGS_CHARS), "type": text(error.get("type")),
            "message": cut(text(error.get("message")), MESSAGE_CHARS),
            "at": at if isinstance(at, (int, float)) else None, "has_traceback": bool(error.get("traceback"))}


def _delayed(queue: str, job_id: str, envelope: str, due_ms: int) -> dict:
    job_id, attempts = jobmod.split_header(envelope)
    try:
        job = jobmod.decode(envelope)
        task, args = job.task, cut(arguments({"args": job.args, "kwargs": job.kwargs}), ARGS_CHARS)
    except jobmod.PayloadError:
        task, args = None, "(unreadable payload)"
    return {"queue": queue, "id": job_id, "task": task, "attempts": attempts, "args": args,
            "due_at": due_ms / 1000.0, "type": None, "message": None, "at": None, "has_traceback": False}


def _add_last_errors(broker, rows: list[dict]) -> None:
    """The last error of each retry on the page (one read per queue on it)."""
    by_queue: dict[str, list[dict]] = {}
    for row in rows:
        if row["attempts"]:
            by_queue.setdefault(row["queue"], []).append(row)
    for queue, retries in by_queue.items():
        errors = broker.last_errors(queue, [r["id"] for r in retries])
        for row in retries:
            if row["id"] in errors:
                error = _json_object(errors[row["id"]])
                row.update(type=text(error.get("type")), message=cut(text(error.get("message")), MESSAGE_CHARS),
                           at=error.get("at") if isinstance(error.get("at"), (int, float)) else None,
                           has_traceback=bool(error.get("traceback")))


def _json_object(raw: str) -> dict:
    try:
        value = json.loads(raw or "{}")
    except ValueError:
        return {"message": raw}
    return value if isinstance(value, dict) else {"message": str(value)}


def arguments(entry: dict) -> str:
    if entry["args"] is None:
        return "(unreadable payload)"
    parts = [json.dumps(a, ensure_ascii=False) for a in entry["args"]]
    parts += [f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in (entry["kwargs"] or {}).items()]
    return ", ".join(parts)


def text(value) -> str:
    return "" if value is None else value if isinstance(value, str) else str(value)


def cut(value: str, limit: int, keep_end: bool = False) -> str:
    if len(value) <= limit:
        return value
    return "…" + value[-limit:] if keep_end else value[:limit] + "…"
