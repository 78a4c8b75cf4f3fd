"""The job record and its wire format.

A job is stored in the broker as one string, the *envelope*:

    "<id> <attempts> <priority> <json body>"

The header is plain text so broker scripts can read and bump the attempt
count without a JSON decoder; the body is compact JSON written once by the
producer and never re-encoded on the hot path. Payloads are JSON, never
pickle: a job can only name a task, not smuggle code.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import NamedTuple

MIN_PRIORITY, MAX_PRIORITY = 0, 9
# Strict JSON (no NaN or Infinity), kept readable (no \u escapes for non-ASCII).
_DUMPS = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode
_STRING = json.encoder.encode_basestring      # how _DUMPS writes a str (ensure_ascii=False)
# Arguments nested deeper than this are refused at push: every process must be
# able to decode what a producer encodes (json's decoder recurses per level).
MAX_DEPTH = 100


class PayloadError(ValueError):
    """A job that cannot be encoded or decoded (bad args, too large, junk)."""


def new_id() -> str:
    return os.urandom(8).hex()


@dataclass
class Job:
    id: str
    task: str
    args: list = field(default_factory=list)
    kwargs: dict = field(default_factory=dict)
    attempts: int = 0           # runs started so far, this one included once reserved
    priority: int = 0
    enqueued_ms: int = 0        # producer's wall clock, for display only
    due_ms: int = 0             # when it was due, producer's clock: enqueued_ms + its delay (metrics' wait time)
    queue: str = ""
    token: str = ""             # reservation token; fences ack/fail
    envelope: str = ""          # the stored form this job was decoded from
    scheduled_ms: int = 0       # pushed by a schedule: its tick (epoch ms); 0 otherwise

    @property
    def scheduled_for(self):
        """The tick a schedule pushed this job for, an aware UTC datetime, or None."""
        return datetime.fromtimestamp(self.scheduled_ms / 1000, timezone.utc) if self.scheduled_ms else None

    def info(self) -> dict:
        """What hooks and `mpqctl` see of a job."""
        info = {"id": self.id, "queue": self.queue, "task": self.task, "args": self.args,
                "kwargs": self.kwargs, "attempts": self.attempts, "priority": self.priority,
                "enqueued_at": self.enqueued_ms / 1000.0}
        if self.scheduled_ms:
            info["scheduled_for"] = self.scheduled_ms / 1000.0
        return info


def check_priority(priority) -> int:
    if isinstance(priority, bool) or not isinstance(priority, int) \
            or not MIN_PRIORITY <= priority <= MAX_PRIORITY:
        raise PayloadError(f"priority: expected an integer {MIN_PRIORITY}..{MAX_PRIORITY}, got {priority!r}")
    return priority


def encode(task: str, args=(), kwargs=None, priority: int = 0, job_id: str | None = None,
           max_payload: int = 1 << 20, delay: float = 0.0, scheduled_ms: int = 0) -> tuple[str, str]:
    """Return (job id, envelope) for a new job; raise PayloadError on bad input.
    `delay` (seconds, already checked): recorded as the job's due time.
    `scheduled_ms`: the tick of the schedule pushing it (body "s")."""
    if not isinstance(task, str) or ":" not in task:
        raise PayloadError(f"task: expected a name like 'module:function', got {task!r}")
    check_priority(priority)
    if args or kwargs:               # a body without arguments is one level deep
        check_depth([args, kwargs], task)
    text = _body(task, args, kwargs, delay, scheduled_ms)
    job_id = job_id or new_id()
    envelope = f"{job_id} 0 {priority} {text}"
    size = len(envelope) if envelope.isascii() else len(envelope) - len(text) + len(text.encode("utf-8"))
    if size > max_payload:
        raise PayloadError(f"payload of {task}: {size} bytes exceeds max_payload {max_payload}")
    return job_id, envelope


def _body(task: str, args, kwargs, delay: float, scheduled_ms: int) -> str:
    """The JSON body {"t", "e", ["d"], ["s"], ["a"], ["k"]}, strict and valid UTF-8. Written
    field by field, as _DUMPS writes the same dict, with its own encoder only for the
    arguments: a push with none then costs no encoder call."""
    enqueued = int(time.time() * 1000)
    parts = ['{"t":', _STRING(task), ',"e":', str(enqueued)]
    if delay > 0:
        parts += (',"d":', str(enqueued + int(delay * 1000)))
    if scheduled_ms:
        parts += (',"s":', str(int(scheduled_ms)))
    try:
        if args:
            parts += (',"a":', _DUMPS(list(args)))
        if kwargs:
            parts += (',"k":', _DUMPS(dict(kwargs)))
        parts.append("}")
        text = "".join(parts)
        if not text.isascii():
            text.encode("utf-8")     # a lone surrogate can't be stored: refused here
    except (TypeError, ValueError, RecursionError) as exc:
        why = "not valid UTF-8 (a lone surrogate?)" if isinstance(exc, UnicodeError) else \
            f"not JSON-serialisable: {exc}"
        raise PayloadError(f"arguments of {task}: {why}") from None
    return text


def _ms(value) -> int:
    """A time field of a body a foreign writer may have filled with anything."""
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) \
        and abs(value) < 1e15 else 0


def check_depth(value, task: str) -> None:
    """Refuse containers nested deeper than MAX_DEPTH (walked without recursion)."""
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise PayloadError(f"arguments of {task}: nested more than {MAX_DEPTH} levels deep")
        if isinstance(item, dict):
            stack += [(v, depth + 1) for v in item.values()]
        elif isinstance(item, (list, tuple)):
            stack += [(v, depth + 1) for v in item]


def decode(envelope: str, queue: str = "", token: str = "") -> Job:
    """Parse an envelope; raise PayloadError (with what was wrong) on junk."""
    head = _split(envelope)
    try:
        if head is None:
            raise ValueError("no '<id> <attempts> <priority>' header")
        job_id, attempts, priority, text = head
        body = json.loads(text)
        job = Job(id=job_id, task=body["t"], args=body.get("a", []), kwargs=body.get("k", {}),
                  attempts=attempts, priority=priority, enqueued_ms=_ms(body.get("e", 0)),
                  due_ms=_ms(body.get("d", body.get("e", 0))),
                  queue=queue, token=token, envelope=envelope, scheduled_ms=_ms(body.get("s", 0)))
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
        raise PayloadError(f"not a job envelope ({exc.__class__.__name__}: {exc}): {envelope[:200]!r}") from None
    if not isinstance(job.task, str) or not isinstance(job.args, list) or not isinstance(job.kwargs, dict):
        raise PayloadError(f"not a job envelope (wrong field types): {envelope[:200]!r}")
    return job


class Header(NamedTuple):
    id: str
    attempts: int
    priority: int
    body: str


def header(envelope: str) -> Header | None:
    """The envelope's header and body, or None for junk. The Lua scripts read the
    same header with the pattern '^(%S+) (%d+) (%d) (.*)$' (brokers/lua/_keys.lua)."""
    parts = _split(envelope)
    return Header._make(parts) if parts else None


def _split(envelope: str):
    """(id, attempts, priority, body) as a plain tuple, or None: header() without the
    named tuple, for decode() on every job's hot path."""
    parts = envelope.split(" ", 3)
    if len(parts) == 4 and parts[0] and parts[1].isdigit() and len(parts[2]) == 1 and parts[2].isdigit():
        return parts[0], int(parts[1]), int(parts[2]), parts[3]
    return None


def due_ms(envelope: str) -> int:
    """When a waiting job became due, epoch ms on its producer's clock (body "d", else
    "e", as decode() reads them), or 0 for junk. A retried job keeps its first due
    time: the envelope records no later one."""
    head = _split(envelope)
    if head is None:
        return 0
    try:
        body = json.loads(head[3])
    except (ValueError, RecursionError):
        return 0
    return _ms(body.get("d", body.get("e", 0))) if isinstance(body, dict) else 0


def job_id(envelope: str) -> str:
    """The id an envelope starts with (junk included: its first word)."""
    return envelope.split(" ", 1)[0]


def peek_task(envelope: str) -> str:
    """The task name of an envelope encode() wrote (its body starts with it),
    without decoding the JSON, for hot loops; '' if none is found. A guess for
    estimates only: never use it to decide what runs."""
    start = envelope.find(' {"t":"')
    if start < 0:
        return ""
    end = envelope.find('"', start + 7)
    return envelope[start + 7:end] if end > 0 else ""


def with_attempts(head: Header, attempts: int) -> str:
    """The envelope of `head` with its attempt count replaced."""
    return f"{head.id} {attempts} {head.priority} {head.body}"


def split_header(envelope: str) -> tuple[str, int]:
    """(id, attempts) of an envelope, tolerant of junk (for recovery paths)."""
    head = header(envelope)
    if head is not None:
        return head.id, head.attempts
    parts = envelope.split(" ", 2)
    attempts = parts[1] if len(parts) > 1 else ""
    return parts[0], int(attempts) if attempts.isdigit() else 0


def dumps(value) -> str:
    return _DUMPS(value)
