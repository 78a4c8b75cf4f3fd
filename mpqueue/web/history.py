"""The dashboard's history: each queue's jobs done and failed over time (the
sparklines), and when it first saw each running job (their ages: a heartbeat
says which job runs, not since when).

The sparklines come from two sources. The broker keeps a point per queue per
minute for a day, written by the service's supervisors (supervisor/history.py),
so it is there after a restart of the dashboard and covers the hours no
dashboard ran; the sampler thread reads it every REFRESH seconds, one round trip
for every queue, and requests read only this process's copy. The sampler also
samples the totals itself every 5 s, in memory, for the last 5 minutes: they
extend the broker's minutes up to now (the broker's newest point may be a minute
old), give the rate beside each sparkline, and are the whole series while the
broker has no points of a queue (no supervisor of this release ran). Of the two
series, per minute and per 5 s, a queue shows the one covering the longer span.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from itertools import pairwise

from ..brokers.base import HISTORY_EVERY_MS, HISTORY_KEEP_MS

log = logging.getLogger("mpqueue.web")

SAMPLE_EVERY = 5.0       # seconds between samples of the totals
SAMPLES = 60             # kept per queue: the last 5 minutes
MINUTE_MS = HISTORY_EVERY_MS     # the broker's points: one a minute
MAX_BARS = 144           # bars per sparkline at most (see _coarsen)
REFRESH = 30.0           # the broker's points are read again this often (they change once a minute)


class History:
    """Per queue, the broker's (minute, done_total, failed_total) points and this
    process's (time, done_total, failed_total) samples; written by the sampler
    thread, read by the request threads. `read_points(queues, since_ms)` is
    Broker.history (None: samples only)."""

    def __init__(self, samples: int = SAMPLES, read_points=None):
        self._samples: dict[str, deque] = {}
        self._size = samples
        self._points: dict[str, list] = {}
        self._read_points = read_points
        self._points_read_at: float | None = None
        self._lock = threading.Lock()

    def record(self, counts: dict, at: float) -> None:
        with self._lock:
            for queue, c in counts.items():
                series = self._samples.setdefault(queue, deque(maxlen=self._size))
                series.append((at, c["done_total"], c["failed_total"]))

    def refresh(self, queues: list[str], now: float) -> None:
        """Read the broker's points of the last day for `queues`, unless read less
        than REFRESH seconds ago."""
        if self._read_points is None or (self._points_read_at is not None and now - self._points_read_at < REFRESH):
            return
        points = self._read_points(list(queues), int(now * 1000) - HISTORY_KEEP_MS)
        with self._lock:
            self._points, self._points_read_at = points, now

    def series(self, queue: str) -> dict:
        """Jobs done and failed per interval (`every` seconds, oldest first), and per
        minute lately; a total that went down (a flushed broker) counts 0."""
        with self._lock:
            samples = list(self._samples.get(queue, ()))
            points = list(self._points.get(queue, ()))
        sampled = _sampled(samples)
        minutes = _per_minute(points, samples) if points else None
        if minutes is None or len(minutes["done"]) * minutes["every"] <= len(sampled["done"]) * sampled["every"]:
            return sampled
        return _coarsen(minutes, MAX_BARS)


def _sampled(samples: list) -> dict:
    """The 5 s series of this process's samples, and the rate over their span."""
    done = [max(0, b[1] - a[1]) for a, b in pairwise(samples)]
    failed = [max(0, b[2] - a[2]) for a, b in pairwise(samples)]
    span = samples[-1][0] - samples[0][0] if len(samples) > 1 else 0.0
    per_min = (lambda n: round(n * 60.0 / span, 1)) if span > 0 else (lambda n: None)
    return {"every": SAMPLE_EVERY, "done": done, "failed": failed,
            "done_per_min": per_min(sum(done)), "failed_per_min": per_min(sum(failed))}


def _per_minute(points: list, samples: list) -> dict:
    """The minute series: the broker's points, then this process's samples of the
    minutes after the broker's newest point (the latest sample of each minute).
    A gap between two points (no supervisor wrote) shares out their difference
    evenly over its minutes. The rate is the samples' (the last 5 minutes, to
    the second), or without them the last 5 minutes' average."""
    known = {at // MINUTE_MS * MINUTE_MS: (done, failed) for at, done, failed in points}    # oldest first
    newest = max(known)
    for t, done, failed in samples:
        at = int(t * 1000) // MINUTE_MS * MINUTE_MS
        if at > newest:
            known[at] = (done, failed)
    done, failed = [], []
    for a, b in pairwise(sorted(known)):
        steps = (b - a) // MINUTE_MS
        done += _spread(known[b][0] - known[a][0], steps)
        failed += _spread(known[b][1] - known[a][1], steps)
    rate = {k: v for k, v in _sampled(samples).items() if k.endswith("_per_min")}
    if rate["done_per_min"] is None and done:
        recent = len(done[-5:])
        rate = {"done_per_min": round(sum(done[-5:]) / recent, 1),
                "failed_per_min": round(sum(failed[-5:]) / recent, 1)}
    return {"every": MINUTE_MS / 1000, "done": done, "failed": failed, **rate}


def _coarsen(series: dict, bars: int) -> dict:
    """At most `bars` bars: whole groups of consecutive intervals summed, counted from
    the newest (a day of minutes is 144 bars of 10 minutes: every poll of every tab
    carries them, and no sparkline is wider)."""
    n = len(series["done"])
    k = -(-n // bars)
    if k <= 1:
        return series
    def group(values):
        head = n % k or k
        return [sum(values[:head])] + [sum(values[i:i + k]) for i in range(head, n, k)]
    return {**series, "every": series["every"] * k, "done": group(series["done"]), "failed": group(series["failed"])}


def _spread(total: int, steps: int) -> list[int]:
    """`total` (0 if it went down) over `steps` minutes, as evenly as whole jobs allow
    (the later minutes take the remainder)."""
    total = max(0, total)
    share, extra = divmod(total, steps)
    return [share + (1 if i >= steps - extra else 0) for i in range(steps)]


class Sampler(threading.Thread):
    """Samples every known queue's totals into a History until stopped, and has it
    refresh the broker's points."""

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
            now = time.time()
            self.history.record(counts, now)
            self.history.refresh(list(counts), now)
        except Exception as exc:  # noqa: BLE001 - a broker outage leaves a gap, never ends sampling
            if not self._failing:
                log.warning("dashboard: cannot sample the queues' totals: %s", exc)
            self._failing = True
            return
        if self._failing:
            log.info("dashboard: sampling the queues' totals again")
        self._failing = False

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
