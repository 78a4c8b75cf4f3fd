"""A rate-limited queue's reserve step on SQLite: the GCRA of core/limits.py in
the reserve's own transaction (the Redis broker does the same in reserve.lua),
its state one row of the `rate` table."""
from __future__ import annotations

import math

# Float sums of an interval can land a hair under a whole job: count that as the job.
EPSILON = 1e-9


class RateGate:
    def __init__(self, db, queue: str, rate, now: int):
        self.db, self.queue, self.now = db, queue, now
        self.interval, self.burst = rate.interval_ms, rate.burst
        row = db.execute("SELECT tat FROM rate WHERE queue=?", (queue,)).fetchone()
        self.tat = max(row[0] if row else 0.0, float(now))

    def allowed(self, count: int) -> int:
        """How many of `count` jobs the limit lets through now."""
        room = math.floor((self.now + self.burst * self.interval - self.tat) / self.interval + EPSILON)
        return max(0, min(count, room))

    def took(self, n: int, cut: bool) -> float:
        """Record that `n` jobs were reserved (and whether the limit cut the reserve while
        jobs waited); returns the seconds until the limit lets the next job through."""
        self.tat += n * self.interval
        if n or cut:
            self.db.execute("INSERT INTO rate(queue, tat, throttled) VALUES (?, ?, ?) ON CONFLICT(queue) "
                            "DO UPDATE SET tat=excluded.tat, throttled=throttled + excluded.throttled",
                            (self.queue, self.tat, int(cut)))
        return max(0.0, math.ceil(self.tat - (self.burst - 1) * self.interval - self.now) / 1000.0)
