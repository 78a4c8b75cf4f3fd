"""What became of one run of a job, as the runner hands it from where the job
ran (the main thread, a pool thread, the event loop) to where it is recorded
(Runner.end): one small frozen record per kind, matched by type, never a tuple
read by position."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Union


@dataclass(frozen=True)
class Done:
    """The task returned `value` (its result record, if the queue keeps results)."""
    value: Any


@dataclass(frozen=True)
class RetryAsked:
    """The task raised Retry: try again after `delay` seconds (None: the policy's delay)."""
    delay: Any
    message: str


@dataclass(frozen=True)
class TimedOut:
    """Our timeout cancelled it (an async job, or a coroutine a plain task handed back)."""


@dataclass(frozen=True)
class Errored:
    """It raised (or its task was interrupted): `message`, and the traceback if any."""
    message: str
    traceback: str = ""


Outcome = Union[Done, RetryAsked, TimedOut, Errored]
