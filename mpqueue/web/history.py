"""What the dashboard remembers by itself, in memory: each queue's done and failed
totals sampled every few seconds (the sparklines), and when it first saw each
running job (their ages: a heartbeat says which job runs, not since when).

Nothing here is stored: a restarted dashboard starts with an empty history.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from itertools import pairwise

log = logging.getLogger("mpqueue.web")

SAMPLE_EVERY = 5.0       # seconds between samples of the totals
SAMPLES = 60             # kept per queue: the last 5 minutes


class History:
    """Per queue, (time, done_total, failed_total) samples; read and written by
    the sampler thread and the request threads."""

    def __init__(self, samples: int = SAMPLES):
        self._samples: dict[str, deque] = {}
        self._size = samples
        self._lock = threading.Lock()

    def record(self, counts: dict, at: float) -> None:
        with self._lock:
            for queue, c in counts.items():
                series = self._samples.setdefault(queue, deque(maxlen=self._size))
                series.append((at, c["done_total"], c["failed_total"]))

    def series(self, queue: str) -> dict:
        """Jobs done and failed per sample interval (oldest first), and per minute
        over the whole window; a total that went down (a flushed broker) counts 0."""
        with self._lock:
            samples = list(self._samples.get(queue, ()))
        done = [max(0, b[1] - a[1]) for a, b in pairwise(samples)]
        failed = [max(0, b[2] - a[2]) for a, b in pairwise(samples)]
        span = samples[-1][0] - samples[0][0] if len(samples) > 1 else 0.0
        per_min = (lambda n: round(n * 60.0 / span, 1)) if span > 0 else (lambda n: None)
        return {"every": SAMPLE_EVERY, "done": done, "failed": failed,
                "done_per_min": per_min(sum(done)), "failed_per_min": per_min(sum(failed))}


class Sampler(threading.Thread):
    """Samples every known queue's totals into a History until stopped."""

    def __init__(self, read_counts, history: History, every: float = SAMPLE_EVERY):
        super().__init__(name="mpqueue-web-sampler", daemon=True)
        self.read_counts, self.history, self.every = read_counts, history, every
        self._stop_event = threading.Event()
        self._failing = False

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.sample()
            self._stop_event.wait(self.every)

    def sample(self) -> None:
        try:
            counts = self.read_counts()
        except Exception as exc:  # noqa: BLE001 - a broker outage leaves a gap, never ends sampling
            if not self._failing:
                log.warning("dashboard: cannot sample the queues' totals: %s", exc)
            self._failing = True
            return
        if self._failing:
            log.info("dashboard: sampling the queues' totals again")
        self._failing = False
        self.history.record(counts, time.time())

    def stop(self) -> None:
        self._stop_event.set()


class FirstSeen:
    """When this process first saw each running job: its age as far as the
    dashboard can tell. A job first seen after nobody looked for a while (the
    first look included) is marked `at_least`: it may have started earlier."""

    def __init__(self, gap: float = 10.0, clock=time.time):
        self.gap, self.clock = gap, clock
        self._seen: dict[str, tuple[float, bool]] = {}
        self._last: float | None = None
        self._lock = threading.Lock()

    def update(self, job_ids) -> dict[str, tuple[float, bool]]:
        """{id: (age in seconds, at_least)} for the running `job_ids`; forgets every other job."""
        now = self.clock()
        with self._lock:
            blind = self._last is None or now - self._last > self.gap
            self._last = now
            self._seen = {i: self._seen.get(i, (now, blind)) for i in job_ids}
            seen = self._seen
        return {i: (now - t, at_least) for i, (t, at_least) in seen.items()}
