"""Job handles: what a producer can ask about a job it pushed (Client.status,
Client.result, Client.cancel) and the small JobHandle that push() returns.

A job is found by id in its queue: the handle remembers the queue push() used;
given a bare id, every queue the broker knows is searched (as `mpqctl job` does),
and an id found in more than one queue is refused (caller-chosen ids are unique
per queue only: `queue=` says which is meant).
result() waits for the job's end without polling the broker in a loop: it
watches the job (broker.watch: on Redis a subscription told by the script that
ends the job, on SQLite a FIFO woken by every end in the queue), re-checks it,
then sleeps until told, re-checking at most every RESULT_RECHECK seconds in case
a hint was lost. On Redis every wait of a process shares one subscriber
connection per server (brokers/redis_watches.py). The awaitable versions
(aresult, astatus, acancel) are in ahandles.py.
"""
from __future__ import annotations

import math
import time

from ..brokers.base import RESULT_RECHECK
from ..core import names
from ..core.schema import QUEUE_KEYS

STATES = ("scheduled", "ready", "running", "done", "failed", "cancelled", "unknown")
ENDED = ("done", "failed", "cancelled")
DEFAULT_RESULT_TTL = QUEUE_KEYS["result_ttl"].default   # a queue's, where the client has no config


class JobError(Exception):
    """A job handle's question could not be answered as asked."""


class JobFailed(JobError):
    """The job ended in the failed store: `error` is its error record
    ({"type", "message", "traceback", "at", "attempts"})."""

    def __init__(self, job_id: str, error: dict):
        self.job_id, self.error = job_id, error or {}
        self.type, self.message = self.error.get("type", ""), self.error.get("message", "")
        super().__init__(f"job {job_id} failed: {self.type}: {self.message}")


class JobCancelled(JobError):
    def __init__(self, job_id: str):
        self.job_id = job_id
        super().__init__(f"job {job_id} was cancelled")


class JobUnknown(JobError, LookupError):
    """No such job, or it ended longer ago than its queue's result_ttl."""

    def __init__(self, job_id: str, queue: str | None = None):
        self.job_id = job_id
        where = f" in queue {queue}" if queue else ""
        super().__init__(f"job {job_id} not found{where} (never pushed, or ended more than result_ttl ago)")


class AmbiguousJob(JobError, ValueError):
    """A bare caller-chosen id that names a job in several queues: give queue=."""

    def __init__(self, job_id: str, queues: list[str]):
        self.job_id, self.queues = job_id, queues
        super().__init__(f"job {job_id} is in queues {', '.join(queues)}: say which (queue=, or mpqctl --queue)")


class ResultTimeout(JobError, TimeoutError):
    def __init__(self, job_id: str, timeout: float, state: str):
        self.job_id, self.state = job_id, state
        super().__init__(f"job {job_id} did not end within {timeout:g} s (it is {state})")


class JobHandle(str):
    """The id push() returns (a str, equal to the bare id), which also remembers
    its queue and client: handle.status(), .result(timeout), .cancel(kill), and
    for async code astatus(), aresult(timeout), acancel(kill).
    `duplicate`: a push with a caller-chosen id found that job already live,
    and created nothing."""

    def __new__(cls, job_id: str, client=None, queue: str | None = None, duplicate: bool = False):
        self = super().__new__(cls, job_id)
        self.client, self.queue, self.duplicate = client, queue, duplicate
        return self

    @property
    def id(self) -> str:
        return str.__str__(self)

    def status(self) -> str:
        return self.client.status(self.id, queue=self.queue)

    def result(self, timeout: float | None = None):
        return self.client.result(self.id, timeout, queue=self.queue)

    def cancel(self, kill: bool = False) -> bool:
        return self.client.cancel(self.id, kill=kill, queue=self.queue)

    # -- awaitable, for async code (ahandles.py): the same answers and errors
    async def astatus(self) -> str:
        return await self.client.astatus(self.id, queue=self.queue)

    async def aresult(self, timeout: float | None = None):
        return await self.client.aresult(self.id, timeout, queue=self.queue)

    async def acancel(self, kill: bool = False) -> bool:
        return await self.client.acancel(self.id, kill=kill, queue=self.queue)

    def __repr__(self) -> str:
        return f"JobHandle({self.id!r}, queue={self.queue!r}{', duplicate=True' if self.duplicate else ''})"

    def __reduce__(self):         # pickles (and copies) as the plain id
        return (str, (self.id,))


def state_of(found: dict | None) -> str:
    """find()'s answer as one of STATES (a cancelled job's done record says so)."""
    if found is None:
        return "unknown"
    state = found.get("state")
    return state if state in STATES else "unknown"


def locate(client, job_id: str, queue: str | None) -> tuple[str | None, dict | None]:
    """(queue, find() answer) of the job: in `queue`, else in the handle's queue,
    else in each queue the broker knows (the client's own first)."""
    queue = queue or getattr(job_id, "queue", None)
    job_id = str.__str__(job_id)
    if queue:
        return queue, client.broker.find(queue, job_id)
    return find_anywhere(client.broker, job_id, [*sorted(client._known_queues), *client.broker.queues()])


def find_anywhere(broker, job_id: str, queues) -> tuple[str | None, dict | None]:
    """(queue, find() answer) of the one queue of `queues` that has the job, (None,
    None) if none has; AmbiguousJob if several have it. A generated id (random, 64
    bits) is taken where first found; a caller-chosen one is looked for everywhere."""
    hits = []
    for q in dict.fromkeys(queues):
        found = broker.find(q, job_id)
        if found is not None:
            hits.append((q, found))
            if not names.is_caller_job_id(job_id):
                break
    if len(hits) > 1:
        raise AmbiguousJob(job_id, [q for q, _ in hits])
    return hits[0] if hits else (None, None)


def check_timeout(timeout) -> float | None:
    """result()'s timeout: None or a number of seconds >= 0 (inf: no limit)."""
    if timeout is None or timeout == math.inf and not isinstance(timeout, bool):
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"timeout: expected None or a number of seconds, got {timeout!r:.40}")
    if not timeout >= 0:            # NaN too
        raise ValueError(f"timeout: expected None or a number of seconds >= 0, got {timeout!r}")
    return float(timeout)


def outcome(job_id: str, found: dict):
    """The value of an ended job, or its error raised."""
    state = state_of(found)
    if state == "failed":
        raise JobFailed(job_id, found.get("error") or {})
    if state == "cancelled":
        raise JobCancelled(job_id)
    return found.get("result")


def wait_result(client, job_id: str, timeout: float | None, queue: str | None):
    """Client.result: the job's result once it ends; see the module docstring."""
    timeout = check_timeout(timeout)
    deadline = None if timeout is None else time.monotonic() + timeout
    queue, found = located(client, job_id, queue)
    job_id = str.__str__(job_id)
    if found is None:
        raise JobUnknown(job_id, queue)
    if state_of(found) in ENDED:
        return outcome(job_id, found)
    watch = client.broker.watch(queue, job_id)
    try:
        return _wait(client, watch, queue, job_id, deadline, timeout)
    finally:
        watch.close()


def _wait(client, watch, queue, job_id, deadline, timeout):
    next_check = 0.0        # watched now: re-check at once, so an end just before is seen
    state = "unknown"
    while True:
        now = time.monotonic()
        if now >= next_check:
            found = recheck(client, watch, queue, job_id, bool(next_check))
            state = state_of(found)
            if state in ENDED:
                return outcome(job_id, found)
            if found is None and not _heard(watch):
                raise JobUnknown(job_id, queue)      # dropped (mpqctl clean) or expired meanwhile
            next_check = now + RESULT_RECHECK
        if deadline is not None and now >= deadline:
            raise ResultTimeout(job_id, timeout, state)
        until = next_check if deadline is None else min(next_check, deadline)
        if watch.wait(max(0.0, until - now)):
            heard = [o for o in watch.drain() if state_of(o) in ENDED]
            if heard:
                return outcome(job_id, heard[0])
            next_check = 0.001       # a bare hint (SQLite): re-check now


def located(client, job_id: str, queue: str | None) -> tuple[str | None, dict | None]:
    """locate(), read once more in its queue when it found nothing there (see recheck):
    a job just pushed may be moving to a worker while it is read."""
    queue, found = locate(client, job_id, queue)
    if found is None and queue:
        found = client.broker.find(queue, str.__str__(job_id))
    return queue, found


def recheck(client, watch, queue, job_id, refresh: bool) -> dict | None:
    """The job as the broker has it now, after keeping the watch alive (`refresh`;
    on Redis this also subscribes again after a lost connection)."""
    if refresh:
        watch.refresh()
    found = getattr(watch, "ended", None) or client.broker.find(queue, job_id)
    if found is None:
        # Redis's find() reads the places a job can be one after another: a job that
        # moves from ready to running meanwhile can be missed once. Read it again
        # before calling a job that was there a moment ago unknown.
        found = client.broker.find(queue, job_id)
    return found


def _heard(watch) -> bool:
    """Whether an end arrived already (found gone, yet told: a result_ttl of 0)."""
    return watch.wait(0)


def cancel(client, job_id: str, kill: bool, queue: str | None) -> tuple[str | None, str]:
    """Client.cancel: (queue, answer), the answer as broker.cancel gives it
    ('cancelled': it was waiting and never runs; 'requested': it runs and is asked
    to stop, or killed) or 'done', 'was-cancelled', 'failed', 'unknown'.
    The broker locates the job itself in the same atomic step that cancels it, so
    a job moving meanwhile is cancelled where it is now. Only a job that its index
    does not know (Redis: pushed by a release without it) is first looked for by
    find(), and its envelope passed along ('moved': it changed place between the two)."""
    queue = queue or getattr(job_id, "queue", None)
    if not queue:
        queue, found = locate(client, job_id, None)
        if found is None:
            return queue, "unknown"
    job_id = str.__str__(job_id)
    ttl = client.result_ttl(queue)
    answer = client.broker.cancel(queue, job_id, None, ttl, kill)
    for _ in range(5):
        if answer not in ("unknown", "moved"):
            return queue, answer
        found = client.broker.find(queue, job_id)
        if found is None:
            return queue, "unknown"
        answer = client.broker.cancel(queue, job_id, found.get("envelope"), ttl, kill)
    return queue, "unknown"
