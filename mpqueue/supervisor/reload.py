"""Reload (SIGHUP) as graceful worker recycling, by overlap as in gunicorn.

A reload re-reads and validates the YAML; if it is invalid nothing changes.
Otherwise a new generation of workers is started under the new configuration,
and each old worker is asked to stop (finish its current job, then exit) only
once a new worker of its queue is ready to take its place, so processing never
stops and no running job is interrupted. The outcome is written to a small
status file that `mpqueue reload` waits on, so `systemctl reload` is
synchronous and fails visibly.
"""
from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

from . import lock


class ReloadRefused(Exception):
    """A change that can't be applied in place (say so, and restart instead)."""


def check_compatible(old, new) -> None:
    if new.name != old.name:
        raise ReloadRefused(f"name changed from {old.name!r} to {new.name!r}: restart the service instead")
    if new.broker != old.broker:
        raise ReloadRefused("broker URL changed: a reload can't move running jobs to another broker; "
                            "restart the service to apply it")
    if new.metrics != old.metrics:
        raise ReloadRefused("metrics.listen changed: the metrics endpoint is bound at start; restart the "
                            "service to apply it")


def others_to_keep(workers, cfg, generation: int, queue: str) -> int:
    """How many workers of `queue` from other generations than the current one must
    keep serving: as many as the current configuration's slots that have no ready
    worker yet (none for a queue it dropped)."""
    if queue not in cfg.queues:
        return 0
    ready = sum(1 for h in workers if h.queue == queue and h.generation == generation and h.ready)
    return max(0, cfg.queues[queue].workers - ready)


def to_retire(workers, cfg, generation: int) -> list:
    """Workers of other generations that may now be asked to stop: every one whose
    queue is gone, and per queue as many as there are current workers ready to
    replace them (an old generation's during a reload; after a failed reload, the
    abandoned one's)."""
    out = []
    for queue in {h.queue for h in workers}:
        others = sorted((h for h in workers if h.queue == queue and h.generation != generation and not h.retiring),
                        key=lambda h: h.started_at)
        keep = others_to_keep(workers, cfg, generation, queue)
        out += others[:max(0, len(others) - keep)]
    return out


def complete(workers, cfg, generation: int) -> bool:
    """Every slot of the new configuration has a ready new-generation worker."""
    for q in cfg.queues.values():
        ready = sum(1 for h in workers if h.queue == q.name and h.generation == generation and h.ready)
        if ready < q.workers:
            return False
    return True


def status_path(name: str) -> Path:
    return lock.runtime_dir(name) / f"{name}.reload"


class ReloadStatus:
    """What the last reload came to: {"seq", "state": running|done|failed, "error", "at"}."""

    def __init__(self, name: str):
        self.path = status_path(name)
        self.seq = 0

    def write(self, state: str, error: str = "") -> None:
        if state == "running":
            self.seq += 1
        data = json.dumps({"seq": self.seq, "state": state, "error": error, "at": time.time(), "pid": os.getpid()})
        # A fresh file of our own (O_EXCL), renamed over the old: nothing planted
        # at either name is followed or truncated.
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        with os.fdopen(fd, "w") as f:
            f.write(data)
        os.replace(tmp, self.path)

    @staticmethod
    def read(name: str) -> dict:
        try:
            fd = lock.open_private(status_path(name), os.O_RDONLY)
            with os.fdopen(fd) as f:
                return json.loads(f.read(1 << 16))
        except (OSError, ValueError, lock.UnsafeRuntimeDir):
            return {"seq": 0, "state": "none"}
