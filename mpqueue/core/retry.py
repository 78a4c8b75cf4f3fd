"""Retry policy: whether a failed attempt is retried, and after how long. Pure logic."""
from __future__ import annotations

import math
import random
from dataclasses import dataclass

# The one rule for any delay a producer or a task asks for (delay=, eta=, Retry(delay=)).
MAX_DELAY = 10 * 365 * 86400.0      # seconds; a due time further out is surely a mistake


def delay_problem(delay) -> str | None:
    """What is wrong with `delay` seconds as a due time, or None if it is usable."""
    if isinstance(delay, bool) or not isinstance(delay, (int, float)) or not math.isfinite(delay) \
            or not 0 <= delay <= MAX_DELAY:
        return f"expected a finite number of seconds from 0 to {MAX_DELAY:g}"
    return None


@dataclass(frozen=True)
class RetryPolicy:
    retries: int = 3              # a job may run retries + 1 times
    retry_delay: float = 3.0
    backoff: str = "fixed"        # "fixed" | "exponential"
    max_retry_delay: float = 3600.0
    retry_on_timeout: bool = False

    @classmethod
    def from_options(cls, options) -> "RetryPolicy":
        """Build from anything with the same attribute names (QueueConfig, TaskOptions)."""
        return cls(options.retries, options.retry_delay, options.backoff,
                   options.max_retry_delay, options.retry_on_timeout)

    def should_retry(self, attempts: int, kind: str = "error") -> bool:
        """attempts = runs started so far, the failed one included."""
        if kind == "timeout" and not self.retry_on_timeout:
            return False
        return attempts <= self.retries

    def delay(self, attempts: int, rand=random.random) -> float:
        """Seconds to wait before the next run after `attempts` failed runs."""
        if self.backoff != "exponential":
            return self.retry_delay
        base = min(self.max_retry_delay, self.retry_delay * (2 ** max(0, attempts - 1)))
        # "Equal jitter": keep half, randomise half, so retries of a burst spread
        # out but a job never comes back sooner than half its backoff.
        return min(self.max_retry_delay, base / 2 + rand() * base / 2)
