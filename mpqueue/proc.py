"""What every mpqueue process does the same way: its title in `ps`, signal
handlers that only record and wake (a self-pipe), as in gunicorn/Sidekiq: no
logging, locks, I/O beyond one byte, or raising inside a handler; and how a
supervisor names itself in its heartbeat so that readers on its host can tell
at once whether it still runs; and how each of them waits for descriptors."""
from __future__ import annotations

import math
import os
import select
import signal
import socket


def readable(objs, timeout: float | None) -> list:
    """Those of `objs` (descriptors, or objects with fileno()) readable, at end of
    file or in error within `timeout` s (None: no limit), as select() would say.
    poll(), because select() refuses a descriptor numbered 1024 or more, which any
    process holding many files or sockets has (a job's pool, a thousand waiters)."""
    poller, by_fd = select.poll(), {}
    for obj in objs:
        fd = obj if isinstance(obj, int) else obj.fileno()
        by_fd.setdefault(fd, []).append(obj)
        poller.register(fd, select.POLLIN | select.POLLPRI)
    ms = None if timeout is None else max(0, math.ceil(timeout * 1000))
    return [obj for fd, _ in poller.poll(ms) for obj in by_fd.get(fd, ())]     # EINTR retried (PEP 475)


class SignalQueue:
    def __init__(self, signums):
        self._r, self._w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._pending: list[int] = []
        for signum in signums:
            signal.signal(signum, self._record)

    def _record(self, signum, frame):
        self._pending.append(signum)
        try:
            os.write(self._w, b"!")
        except OSError:      # pipe full: the loop is already due to wake
            pass

    def fileno(self) -> int:
        return self._r

    def pending(self) -> bool:
        """Whether a signal arrived since the last drain(): a look that costs no system call."""
        return bool(self._pending)

    def fds(self) -> tuple[int, int]:
        """Both ends of the self-pipe (a forked child closes them)."""
        return self._r, self._w

    def wake(self) -> None:
        """Wake the loop from ordinary code (e.g. after a config change)."""
        self._record(0, None)

    def drain(self) -> list[int]:
        try:
            while os.read(self._r, 4096):
                pass
        except BlockingIOError:
            pass
        pending, self._pending = self._pending, []
        return [s for s in pending if s]

    def close(self) -> None:
        for fd in (self._r, self._w):
            try:
                os.close(fd)
            except OSError:
                pass


def set_title(title: str) -> None:
    """The process title (`mpqueue orders: supervisor`) when setproctitle is installed."""
    try:
        import setproctitle
    except ImportError:
        return
    setproctitle.setproctitle(title)


# -- is a node's supervisor still running? (Linux /proc; elsewhere nobody can tell)
def identity() -> dict:
    """This process as its heartbeat names it, beside "host" and "pid": the kernel's
    boot id and the process's start time in clock ticks since boot, which together
    tell it from a later process that got the same pid. {} where /proc has neither."""
    try:
        return {"boot_id": _boot_id(), "pid_start": _stat(os.getpid())[1]}
    except (OSError, ValueError, IndexError):
        return {}


def record_running(record: dict) -> bool | None:
    """Whether the process a heartbeat `record` names still runs, as seen from here:
    True or False on its own host (same host name, same boot), None where this
    process cannot tell (another host, a record without identity(), a process of
    another user hidden by /proc's hidepid): then only the heartbeat's age speaks."""
    pid, start = record.get("pid"), record.get("pid_start")
    if not (isinstance(pid, int) and pid > 0 and record.get("boot_id") and record.get("host") == socket.gethostname()):
        return None
    try:
        if record["boot_id"] != _boot_id():
            return None
        state, ticks = _stat(pid)
    except (ValueError, IndexError):
        return None
    except OSError:
        return _exists(pid)
    return state != "Z" and ticks == start      # a zombie has exited; other ticks: the pid was reused


def _boot_id() -> str:
    with open("/proc/sys/kernel/random/boot_id") as f:
        return f.read().strip()


def _stat(pid: int) -> tuple[str, int]:
    """(state, start ticks since boot) from /proc/PID/stat (fields 3 and 22)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()     # the name, in parentheses, may hold spaces
    return fields[0], int(fields[19])


def _exists(pid: int) -> bool | None:
    """/proc would not show it: False if there is no such process, None if there is one
    (hidden from us, so its start time can't be compared)."""
    return None if pid_exists(pid) else False


def pid_exists(pid: int) -> bool:
    """Whether a process `pid` exists, whether or not /proc shows it to us (hidepid,
    ProtectProc=invisible, another user namespace): kill(pid, 0) reaches it or is
    refused for lack of permission, either way it is there."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True
