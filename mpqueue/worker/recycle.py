"""When a worker should be replaced by a fresh one: after `max_jobs` jobs, or once
its resident memory passes `memory_limit`. Counts every job that ended (refused
ones too) and asks the loop to stop taking jobs (`stop`)."""
from __future__ import annotations

import logging
import os
import sys
import time

log = logging.getLogger("mpqueue.worker")
RSS_EVERY = 0.1             # memory_limit: read the resident size at most this often


class Recycler:
    def __init__(self, queue: str, max_jobs: int, memory_limit: int, stop, tally=None, clock=time.monotonic,
                 rss=None):
        self.queue, self.max_jobs, self.memory_limit = queue, max_jobs, memory_limit
        self.stop, self.tally, self.clock = stop, tally, clock
        self.rss = rss or rss_mb
        self.jobs = 0
        self._rss_checked = float("-inf")

    def left(self) -> int:
        """Jobs this worker may still start (no limit: a very large number)."""
        return self.max_jobs - self.jobs if self.max_jobs else sys.maxsize

    def after_job(self) -> None:
        self.jobs += 1
        if self.max_jobs and self.jobs >= self.max_jobs:
            log.info("recycling after %d jobs (max_jobs)", self.jobs, extra={"queue": self.queue})
            self.recycle("max_jobs")
        elif self.memory_limit and self.over_memory_limit():
            self.recycle("memory")

    def recycle(self, reason: str) -> None:
        self.stop()
        if self.tally is not None:
            self.tally.recycling(reason)      # the supervisor counts the restart by its reason

    def over_memory_limit(self) -> bool:
        # Reading /proc costs more than a short job: look at most every RSS_EVERY
        # seconds (after every job when jobs take longer than that).
        now = self.clock()
        if now - self._rss_checked < RSS_EVERY:
            return False
        self._rss_checked = now
        rss = self.rss()
        if rss <= self.memory_limit:
            return False
        log.warning("recycling: %.0f MB resident exceeds memory_limit %d MB", rss,
                    self.memory_limit, extra={"queue": self.queue})
        return True


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / (1 << 20)
