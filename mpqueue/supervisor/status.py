"""What a running service says about itself: the one STATUS= line systemd shows
(and the broker reads it takes), and the node record `mpqctl status` lists. Read-only views of the supervisor's
worker handles and their scoreboards, given as (handle, Board) pairs as the pool's
turn read them (Pool.boards); only the supervisor's loop calls them."""
from __future__ import annotations

import os
import socket
import time

from .. import proc


def busy_count(boards) -> int:
    """Jobs running now: busy slots (one per busy worker with `concurrency: 1`)."""
    return sum(board.busy for _, board in boards)


def slot_shape(cfg) -> str:
    """'2x16' for 2 workers of 16 slots; '2x16+3x1' over several queues."""
    return "+".join(f"{q.workers}x{q.concurrency}" for q in cfg.queues.values())


def job_totals(boards, retired: dict) -> tuple[int, int]:
    """Jobs done and failed since start: the live workers' scoreboards plus what
    `retired` (workers gone since) had counted."""
    done, failed = retired["done"], retired["failed"]
    for _, s in boards:
        done, failed = done + s.done, failed + s.failed
    return done, failed


class QueueLook:
    """What the STATUS= line tells of the service's queues from the broker (every
    node's view): jobs ready, and which queues are paused. Read on the loop's
    "count" timer, in the calls it made for the ready count alone before: a pause
    shows within that interval (the jobs stay ready meanwhile either way)."""

    def __init__(self):
        self.ready: int | None = None     # None: not read yet
        self.paused: set[str] = set()

    def read(self, broker, queues) -> None:
        queues = list(queues)
        self.ready = sum(broker.ready_count(q) for q in queues)
        self.paused = broker.paused(queues)


def status_line(cfg, boards, retired: dict, ready_jobs: int | None, broker_ok: bool,
                ticks: tuple[int, int] | None = None, paused=()) -> str:
    """e.g. '8/8 workers, 3 busy; 12345 done, 2 failed; 41 ready; broker ok', and
    with concurrent workers the busy slots of the shape: '2/2 workers, 7/2x16 busy; ...'.
    `ticks`: (fired, skipped) by this node's schedules: '...; ticks 40 fired, 1 skipped; broker ok'.
    `paused`: queues paused (Broker.pause), those of the service named last: '...; broker ok; paused: orders'."""
    total = sum(q.workers for q in cfg.queues.values())
    up = sum(1 for h, _ in boards if h.ready and not h.retiring)
    done, failed = job_totals(boards, retired)
    broker = "broker ok" if broker_ok else "broker unreachable"
    ready = "" if ready_jobs is None else f"{ready_jobs} ready; "
    busy = busy_count(boards)
    if any(q.concurrency > 1 for q in cfg.queues.values()):
        busy = f"{busy}/{slot_shape(cfg)}"
    schedules = "" if ticks is None else f"ticks {ticks[0]} fired, {ticks[1]} skipped; "
    stopped = [q for q in cfg.queues if q in paused]
    stopped = f"; paused: {', '.join(stopped)}" if stopped else ""
    return f"{up}/{total} workers, {busy} busy; {done} done, {failed} failed; {ready}{schedules}{broker}{stopped}"


def node_info(cfg, boards, retired: dict, node_id: str, started_at: float) -> dict:
    """The heartbeat record; "boot_id" and "pid_start" (proc.identity) let readers on
    this host see at once that the supervisor is gone, should it be killed outright."""
    queues = {}
    for q in cfg.queues.values():
        mine = [(h, b) for h, b in boards if h.queue == q.name]
        busy = sum(1 for _, b in mine if b.busy)
        queues[q.name] = {"workers": len(mine), "busy": busy, "idle": len(mine) - busy,
                          "concurrency": q.concurrency, "slots": sum(h.scoreboard.size for h, _ in mine),
                          "busy_slots": sum(b.busy for _, b in mine)}
    workers = [{"queue": h.queue, "index": h.index, "pid": h.pid,
                "running": {str(s.index): s.job_id for s in b.running}} for h, b in boards]
    done, failed = job_totals(boards, retired)
    return {"node": node_id, "service": cfg.name, "host": socket.gethostname(), "pid": os.getpid(),
            "queues": queues, "workers": workers, "done": done, "failed": failed, "started_at": started_at,
            "heartbeat_at": time.time(), **proc.identity()}
