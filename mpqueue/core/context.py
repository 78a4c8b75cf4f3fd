"""What a running job can ask about itself: `mpqueue.current_job()`, `mpqueue.Retry`."""
from __future__ import annotations

import contextvars
import time
from dataclasses import dataclass, field
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
    cancel_probe: object = field(default=None, repr=False, compare=False)   # CancelProbe, set by the runner

    @property
    def cancelled(self) -> bool:
        """True once someone asked this job to stop (Client.cancel, `mpqctl cancel`).
        A task that can stop early checks it now and then and returns (or raises):
        the job then ends as cancelled. Cheap to read often: it asks the broker at
        most once a second, and stays True once it was."""
        return bool(self.cancel_probe is not None and self.cancel_probe())


class CancelProbe:
    """current_job().cancelled for one job: `ask()` (the broker's cancel_requested)
    at most every `every` seconds, on the monotonic clock; True is for good.
    `asked`: what the request it saw asked ('ask' or 'kill'), else None."""

    def __init__(self, ask, every: float = 1.0, clock=time.monotonic):
        self._ask, self._every, self._clock = ask, every, clock
        self._next, self.asked = 0.0, None

    def __call__(self) -> bool:
        if self.asked is not None:
            return True
        now = self._clock()
        if now >= self._next:
            self._next = now + self._every
            try:
                self.asked = self._ask()
            except Exception:     # noqa: BLE001 - a broker hiccup must not fail the job; asked again later
                return False
        return self.asked is not None


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
