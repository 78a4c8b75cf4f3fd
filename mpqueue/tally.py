"""Job counters and run-time histograms for the metrics, written where outcomes
are decided (a worker's runner, the supervisor's recovery) and read by the
supervisor. Imports nothing of mpqueue, like ipc.py, whose scoreboard it follows.

A worker's tally is a shared-memory region the supervisor maps before the fork
(anonymous and shared, so it outlives neither side's view of it): one writer,
the worker's main thread, and no message per job. When the worker exits, for
whatever reason, SIGKILL included, the supervisor folds its region into the
totals of workers gone, so a recycled or crashed worker's jobs stay counted.

Rows are per task: a task gets the next free row the first time it is counted,
up to MAX_ROWS; the names come from the worker's task registry, never from a
payload (an unregistered name counts as UNREGISTERED), so the label set stays
bounded. Histograms keep per-bucket counts (made cumulative on output) and a sum.
"""
from __future__ import annotations

import mmap
import struct

# Outcome of one attempt, and why when it was not done: (outcome, reason).
KINDS = ("error", "timeout", "crashed", "lost", "unknown_task", "bad_payload", "bad_result")
CANCEL_ASKS = ("ask", "kill")     # a cancelled job's reason: what its cancel request asked
OUTCOMES = (("done", ""), *(("retried", k) for k in KINDS), *(("failed", k) for k in KINDS),
            *(("cancelled", a) for a in CANCEL_ASKS))
_OUTCOME_INDEX = {o: i for i, o in enumerate(OUTCOMES)}
# Seconds; Prometheus's defaults stretched to the minutes a job queue's jobs can take.
BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0)
UNREGISTERED = "(unregistered)"
OTHER = "(other)"            # a task past MAX_ROWS
MAX_ROWS = 128
NAME_BYTES = 120
EXIT_REASONS = ("", "max_jobs", "memory")

_HIST = struct.Struct(f"<{len(BUCKETS) + 1}Q d")            # bucket counts (the last: +Inf), sum
_HEAD = struct.Struct("<B 7x")                               # why the worker chose to exit
_ROW_NAME = struct.Struct(f"<{NAME_BYTES}s")
_COUNTS = struct.Struct(f"<{len(OUTCOMES)}Q")
_ROW = _ROW_NAME.size + _COUNTS.size + _HIST.size
_WAIT_AT = _HEAD.size
_ROWS_AT = _WAIT_AT + _HIST.size


def bucket_of(seconds: float) -> int:
    for i, bound in enumerate(BUCKETS):
        if seconds <= bound:
            return i
    return len(BUCKETS)


class Histogram:
    """Counts per bucket and their sum, in memory (the supervisor's own and its totals)."""

    def __init__(self, counts=None, total: float = 0.0):
        self.counts = list(counts) if counts is not None else [0] * (len(BUCKETS) + 1)
        self.sum = total

    def observe(self, seconds: float) -> None:
        self.counts[bucket_of(seconds)] += 1
        self.sum += seconds

    def add(self, other: "Histogram") -> None:
        self.counts = [a + b for a, b in zip(self.counts, other.counts)]
        self.sum += other.sum


class Totals:
    """Counters by (queue, task, outcome, reason), run times by (queue, task) and
    waits by queue: the supervisor's own outcomes and those of workers gone."""

    def __init__(self):
        self.jobs: dict[tuple, int] = {}
        self.durations: dict[tuple, Histogram] = {}
        self.waits: dict[str, Histogram] = {}

    def count(self, queue: str, task: str, outcome: str, reason: str = "", n: int = 1) -> None:
        key = (queue, task, outcome, reason)
        self.jobs[key] = self.jobs.get(key, 0) + n

    def merge(self, other: "Totals") -> None:
        for key, n in other.jobs.items():
            self.jobs[key] = self.jobs.get(key, 0) + n
        for table, theirs in ((self.durations, other.durations), (self.waits, other.waits)):
            for key, hist in theirs.items():
                table.setdefault(key, Histogram()).add(hist)

    def copy(self) -> "Totals":
        out = Totals()
        out.merge(self)
        return out


class WorkerTally:
    """One worker's counters in shared memory. The worker writes (count, observe,
    recycling); the supervisor reads (read) and, once it is gone, folds it."""

    def __init__(self, queue: str):
        self.queue = queue
        length = _ROWS_AT + MAX_ROWS * _ROW
        self._mm = mmap.mmap(-1, -(-length // mmap.PAGESIZE) * mmap.PAGESIZE)   # anonymous + shared: survives fork
        self._rows: dict[str, int] = {}           # the writer's own index of its rows
        # The region as 8-byte words (every field is one, 8-aligned), for ended()'s increments.
        self._words, self._floats = memoryview(self._mm).cast("Q"), memoryview(self._mm).cast("d")

    # -- the worker's side
    def _row(self, task: str) -> int:
        row = self._rows.get(task)
        if row is None:
            if len(self._rows) >= MAX_ROWS - 1 and task != OTHER:
                return self._row(OTHER)
            row = self._rows[task] = len(self._rows)
            _ROW_NAME.pack_into(self._mm, _ROWS_AT + row * _ROW, task.encode("utf-8", "replace")[:NAME_BYTES])
        return _ROWS_AT + row * _ROW

    def count(self, task: str, outcome: str, reason: str = "") -> None:
        at = self._row(task) + _ROW_NAME.size + 8 * _OUTCOME_INDEX[(outcome, reason)]
        struct.pack_into("<Q", self._mm, at, struct.unpack_from("<Q", self._mm, at)[0] + 1)

    def observe_duration(self, task: str, seconds: float) -> None:
        _observe(self._mm, self._row(task) + _ROW_NAME.size + _COUNTS.size, seconds)

    def ended(self, task: str, outcome: str, reason: str, seconds: float) -> None:
        """A job's end, on a worker's hot path: count() and observe_duration() as one
        row lookup and three in-place word increments (no struct packing of the row)."""
        word = (self._row(task) + _ROW_NAME.size) // 8
        self._words[word + _OUTCOME_INDEX[(outcome, reason)]] += 1
        self._words[word + len(OUTCOMES) + bucket_of(seconds)] += 1
        self._floats[word + len(OUTCOMES) + len(BUCKETS) + 1] += seconds

    def observe_wait(self, seconds: float) -> None:
        _observe(self._mm, _WAIT_AT, max(0.0, seconds))

    def recycling(self, reason: str) -> None:
        """Say why this worker is about to exit on its own (max_jobs, memory)."""
        _HEAD.pack_into(self._mm, 0, EXIT_REASONS.index(reason))

    # -- the supervisor's side
    def exit_reason(self) -> str:
        code = _HEAD.unpack_from(self._mm, 0)[0]
        return EXIT_REASONS[code] if code < len(EXIT_REASONS) else ""

    def read(self) -> Totals:
        out = Totals()
        counts, total = _hist(self._mm, _WAIT_AT)
        if any(counts):
            out.waits[self.queue] = Histogram(counts, total)
        for row in range(MAX_ROWS):
            at = _ROWS_AT + row * _ROW
            name = _ROW_NAME.unpack_from(self._mm, at)[0].rstrip(b"\0").decode("utf-8", "replace")
            if not name:
                break                              # rows fill in order: the rest are unused
            for (outcome, reason), n in zip(OUTCOMES, _COUNTS.unpack_from(self._mm, at + _ROW_NAME.size)):
                if n:
                    out.count(self.queue, name, outcome, reason, n)
            counts, total = _hist(self._mm, at + _ROW_NAME.size + _COUNTS.size)
            if any(counts):
                out.durations[(self.queue, name)] = Histogram(counts, total)
        return out

    def close(self) -> None:
        self._words.release()
        self._floats.release()       # mmap refuses to close while a view of it exists
        self._mm.close()


def _observe(mm, at: int, seconds: float) -> None:
    values = list(_HIST.unpack_from(mm, at))
    values[bucket_of(seconds)] += 1
    values[-1] += seconds
    _HIST.pack_into(mm, at, *values)


def _hist(mm, at: int) -> tuple[list, float]:
    values = _HIST.unpack_from(mm, at)
    return list(values[:-1]), values[-1]


class NoTally:
    """Counts nothing: a runner outside a service (sync://) has nobody to report to."""

    def count(self, task: str, outcome: str, reason: str = "") -> None:
        pass

    def observe_duration(self, task: str, seconds: float) -> None:
        pass

    def ended(self, task: str, outcome: str, reason: str, seconds: float) -> None:
        pass

    def observe_wait(self, seconds: float) -> None:
        pass

    def recycling(self, reason: str) -> None:
        pass
