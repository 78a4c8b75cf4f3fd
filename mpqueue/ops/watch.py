"""`mpqueue run --reload-on-change`, for development: a thread of the supervisor
process polls the modification times of the service's task code (the packages
and modules its `imports` name, found on its `path` without importing them, and
the service's YAML) and, when one changes, sends the process SIGHUP: the same
graceful reload as `mpqueue reload` (new workers import the new code, the old
ones finish their jobs). Never under systemd (INVOCATION_ID or NOTIFY_SOCKET set):
a unit reloads by its ExecReload, at a deploy, not at every saved file.
"""
from __future__ import annotations

import importlib.util
import logging
import os
import signal
import sys
import threading
from pathlib import Path

log = logging.getLogger("mpqueue.supervisor")
EVERY = 1.0          # seconds between two looks: a saved file restarts the workers within about this


def under_systemd(environ=os.environ) -> bool:
    return bool(environ.get("INVOCATION_ID") or environ.get("NOTIFY_SOCKET"))


def watched_files(cfg) -> list[Path]:
    """The .py files of the top-level packages or modules `imports` names, and the YAML."""
    roots = []
    saved = list(sys.path)
    sys.path[:0] = [p for p in cfg.path if p not in sys.path]
    try:
        for top in dict.fromkeys(name.split(".")[0] for name in cfg.imports):
            spec = importlib.util.find_spec(top)       # a top-level name: nothing is imported
            if spec is None:
                continue
            if spec.submodule_search_locations:          # a package, namespace ones too
                roots += [Path(p) for p in spec.submodule_search_locations]
            elif spec.origin and spec.origin.endswith(".py"):
                roots.append(Path(spec.origin))
    finally:
        sys.path[:] = saved
    files = [f for r in roots for f in ([r] if r.is_file() else sorted(r.rglob("*.py")))]
    return files + ([Path(cfg.source)] if cfg.source else [])


def snapshot(files) -> dict:
    times = {}
    for f in files:
        try:
            times[f] = f.stat().st_mtime_ns
        except OSError:
            times[f] = None
    return times


class Watcher(threading.Thread):
    """Sends this process SIGHUP when a watched file's mtime changes (or one appears
    or goes); the list is made again after each change (a new module counts)."""

    def __init__(self, cfg, every: float = EVERY):
        super().__init__(name="mpqueue-reload-on-change", daemon=True)
        self.cfg, self.every = cfg, every
        self.stopped = threading.Event()

    def run(self) -> None:
        before = snapshot(watched_files(self.cfg))
        while not self.stopped.wait(self.every):
            now = snapshot(watched_files(self.cfg))
            # Until the supervisor has its handler, SIGHUP would end the process: look again later.
            if now != before and signal.getsignal(signal.SIGHUP) not in (signal.SIG_DFL, None):
                changed = sorted(str(f) for f in set(now) | set(before) if now.get(f) != before.get(f))
                log.info("reload-on-change: %s changed: reloading", ", ".join(changed[:3]))
                os.kill(os.getpid(), signal.SIGHUP)
                before = now
