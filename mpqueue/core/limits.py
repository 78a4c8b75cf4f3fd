"""Rate limits: what `rate: 20/s` in a queue's YAML means, as one typed value
the brokers enforce at reserve time, across every node, as a GCRA (the
generic cell rate algorithm, a token bucket kept as one timestamp): a job may
be reserved every `interval_ms` on average, and up to `burst` at once after a
quiet spell. So in any window of W seconds at most burst + W × count / period
jobs are reserved; with the default burst of 1 they come evenly spaced.

The state is one number per queue in the broker, the "theoretical arrival
time" (TAT) of the next job on the broker's clock: a reserve may take
n = floor((now + burst × interval − max(TAT, now)) / interval) jobs, and the
TAT moves on by interval for each job it takes. Nodes share it, so three
nodes of a 20/s service reserve 20 a second between them, not 60."""
from __future__ import annotations

import re
from dataclasses import dataclass

PERIODS = {"s": 1.0, "m": 60.0, "h": 3600.0}
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d*)\s*([smh])\s*$")
EXPECTED = 'a rate "N/s", "N/m" or "N/h" (N jobs a second, minute or hour; "N/10s": per 10 seconds), N >= 1'
# A limit of less than a job a day is a typo; more than a million a second is no limit.
MIN_INTERVAL_MS, MAX_INTERVAL_MS = 0.001, 86_400_000


class BadRate(ValueError):
    pass


@dataclass(frozen=True)
class RateLimit:
    """At most `count` jobs reserved per `period` seconds (and `burst` at once)."""
    count: int
    period: float
    burst: int = 1

    @property
    def interval_ms(self) -> float:
        return self.period * 1000.0 / self.count


def parse_rate(text: str, burst: int = 1) -> RateLimit:
    """`"20/s"` → RateLimit(20, 1.0); "N/10s" counts per 10 seconds. Raises BadRate."""
    match = _RATE.match(text) if isinstance(text, str) else None
    if not match:
        raise BadRate(EXPECTED)
    count, times, unit = int(match.group(1)), int(match.group(2) or 1), match.group(3)
    if count < 1 or times < 1:
        raise BadRate(EXPECTED)
    limit = RateLimit(count, times * PERIODS[unit], burst)
    if not MIN_INTERVAL_MS <= limit.interval_ms <= MAX_INTERVAL_MS:
        raise BadRate(f"{EXPECTED}; between a million a second and one a day")
    return limit


def rate_of(queue_cfg) -> RateLimit | None:
    """A queue's rate limit from its configuration, or None."""
    return None if queue_cfg.rate is None else parse_rate(queue_cfg.rate, queue_cfg.rate_burst)


def prefetch_of(queue_cfg) -> int:
    """The jobs a worker may take in hand beyond its free slots: none on a rate-limited
    queue, so a job's reservation is its start and the rate holds for starts too
    (a prefetched batch would start later, bunched with the next one)."""
    return 1 if queue_cfg.rate is not None else queue_cfg.prefetch
