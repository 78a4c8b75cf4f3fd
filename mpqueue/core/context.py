"""What a running job can ask about itself: `mpqueue.current_job()`, `mpqueue.Retry`."""
from __future__ import annotations

import contextvars
from dataclasses import dataclass
from datetime import datetime

_current: contextvars.ContextVar = contextvars.ContextVar("mpqueue_current_job", default=None)


@dataclass(frozen=True)
class JobContext:
    id: str
    queue: str
    task: str
    attempt: int          # 1 on the first run
    max_attempts: int
    worker_index: int     # 0..workers-1 within the queue
    args: tuple = ()
    kwargs: dict | None = None
    scheduled_for: datetime | None = None   # pushed by a schedule: its tick (aware, UTC); else None


class Retry(Exception):
    """Raise inside a job to run it again after `delay` seconds (default: the
    queue's backoff). It spends an attempt, so a job can't retry forever."""

    def __init__(self, delay: float | None = None, reason: str = "retry requested"):
        super().__init__(reason)
        self.delay = delay


def current_job() -> JobContext | None:
    return _current.get()


def set_current(ctx: JobContext | None):
    return _current.set(ctx)


def reset_current(token) -> None:
    _current.reset(token)
