"""What the dashboard accepts from a browser: job ids, id lists, queue names, view
parameters. A value that can't be used is a BadRequest: a 4xx with a one-line
JSON error, never a traceback, and never a value that reaches the broker."""
from __future__ import annotations

import re

from ..core.names import is_queue_name

# A job id as the dashboard accepts it: printable ASCII without spaces or the glob
# characters a Redis pattern would read (ids are 16 hex digits; junk gets "bad-...").
JOB_ID = re.compile(r"[!-~]{1,128}")
GLOB = set("*?[]\\")
MAX_IDS = 1000
MAX_FILTER = 200         # characters of a task or error filter


class BadRequest(Exception):
    """A value from the browser that can't be used: a 4xx with this message."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def job_id(value) -> str:
    if not isinstance(value, str) or not JOB_ID.fullmatch(value) or GLOB & set(value):
        raise BadRequest("id: expected a job id (printable characters, no spaces, at most 128)")
    return value


def ids(body: dict) -> list[str]:
    given = body.get("ids")
    if not isinstance(given, list) or not 1 <= len(given) <= MAX_IDS:
        raise BadRequest(f"ids: expected a list of 1 to {MAX_IDS} job ids")
    return list(dict.fromkeys(job_id(i) for i in given))


def queue_name(value, known: list[str]) -> str:
    if not isinstance(value, str) or not is_queue_name(value):
        raise BadRequest("queue: expected a queue name (letters, digits, '_', '.', '-')")
    if value not in known:
        raise BadRequest(f"unknown queue {value!r}", 404)
    return value


def number(args, name: str, default: int, low: int, high: int) -> int:
    raw = args.get(name)
    if raw in (None, ""):
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise BadRequest(f"{name}: expected a whole number from {low} to {high}")
    return int(raw)


def text_filter(args, name: str) -> str:
    value = (args.get(name) or "").strip()
    if len(value) > MAX_FILTER or not value.isprintable():
        raise BadRequest(f"{name}: expected printable text of at most {MAX_FILTER} characters")
    return value
