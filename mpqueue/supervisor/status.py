"""What a running service says about itself: the one STATUS= line systemd shows,
and the node record `mpqctl status` lists. Read-only views of the supervisor's
worker handles and their scoreboards; only the supervisor's loop calls them."""
from __future__ import annotations

import os
import socket
import time


def busy_count(handles) -> int:
    return sum(1 for h in handles if h.scoreboard.read().busy)


def job_totals(handles, retired: dict) -> tuple[int, int]:
    """Jobs done and failed since start: the live workers' scoreboards plus what
    `retired` (workers gone since) had counted."""
    done, failed = retired["done"], retired["failed"]
    for h in handles:
        s = h.scoreboard.read()
        done, failed = done + s.done, failed + s.failed
    return done, failed


def status_line(cfg, handles, retired: dict, ready_jobs: int | None, broker_ok: bool) -> str:
    """e.g. '8/8 workers, 3 busy; 12345 done, 2 failed; 41 ready; broker ok'."""
    total = sum(q.workers for q in cfg.queues.values())
    up = sum(1 for h in handles if h.ready and not h.retiring)
    done, failed = job_totals(handles, retired)
    broker = "broker ok" if broker_ok else "broker unreachable"
    ready = "" if ready_jobs is None else f"{ready_jobs} ready; "
    return f"{up}/{total} workers, {busy_count(handles)} busy; {done} done, {failed} failed; {ready}{broker}"


def node_info(cfg, handles, retired: dict, node_id: str, started_at: float) -> dict:
    queues = {}
    for q in cfg.queues.values():
        hs = [h for h in handles if h.queue == q.name]
        busy = busy_count(hs)
        queues[q.name] = {"workers": len(hs), "busy": busy, "idle": len(hs) - busy}
    done, failed = job_totals(handles, retired)
    return {"node": node_id, "service": cfg.name, "host": socket.gethostname(), "pid": os.getpid(),
            "queues": queues, "done": done, "failed": failed, "started_at": started_at,
            "heartbeat_at": time.time()}
