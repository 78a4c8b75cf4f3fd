"""One running instance per service name on a host (MultiWorker's single-instance lock).

An flock on <runtime dir>/<name>.lock, holding the supervisor's pid. Workers
inherit the locked descriptor, so while any process of an instance lives (even
an orphan after the supervisor was SIGKILLed) a second instance can't start.
"""
from __future__ import annotations

import fcntl
import os
import tempfile
from pathlib import Path


class AlreadyRunning(Exception):
    pass


def runtime_dir() -> Path:
    for candidate in (os.environ.get("MPQUEUE_RUNTIME_DIR"), os.environ.get("RUNTIME_DIRECTORY")):
        if candidate:
            return Path(candidate.split(":")[0])
    if os.geteuid() == 0 and os.path.isdir("/run"):
        return Path("/run/mpqueue")
    return Path(tempfile.gettempdir()) / f"mpqueue-{os.geteuid()}"


def lock_path(name: str) -> Path:
    return runtime_dir() / f"{name}.lock"


def acquire(name: str) -> int:
    """Take the lock or raise AlreadyRunning; returns the open descriptor."""
    path = lock_path(name)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        pid = read_pid(name)
        raise AlreadyRunning(f"service {name!r} is already running on this host"
                             f"{f' (pid {pid})' if pid else ''}; lock {path}") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def read_pid(name: str) -> int | None:
    try:
        return int(lock_path(name).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
