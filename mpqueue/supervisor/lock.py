"""One running instance per service name on a host (MultiWorker's single-instance lock).

An flock on <runtime dir>/<name>.lock, holding the supervisor's pid. Workers
inherit the locked descriptor, so while any process of an instance lives (even
an orphan after the supervisor was SIGKILLed) a second instance can't start.

The runtime directory is the service's own, the same from a shell as under
systemd: $RUNTIME_DIRECTORY (RuntimeDirectory=mpqueue/%i, i.e. /run/mpqueue/NAME),
else /run/mpqueue/NAME as root, else $TMPDIR/mpqueue-UID/NAME, which must be a
real directory of ours that nobody else can write ($MPQUEUE_RUNTIME_DIR
overrides it all, for tests). Files in it are opened without following links.
"""
from __future__ import annotations

import fcntl
import os
import stat
import tempfile
from pathlib import Path

from ..proc import pid_exists


class AlreadyRunning(Exception):
    pass


class UnsafeRuntimeDir(Exception):
    """The runtime directory is a link, not ours, or writable by others (str(e) says which)."""


def runtime_dir(name: str) -> Path:
    for candidate in (os.environ.get("MPQUEUE_RUNTIME_DIR"), os.environ.get("RUNTIME_DIRECTORY")):
        if candidate:
            return Path(candidate.split(":")[0])
    if os.geteuid() == 0 and os.path.isdir("/run"):
        return Path("/run/mpqueue") / name
    return Path(tempfile.gettempdir()) / f"mpqueue-{os.geteuid()}" / name


def ensure_runtime_dir(name: str) -> Path:
    """The runtime directory, made if missing, and refused if it is not a real
    directory or others may write it; in a shared temp directory (0700 there)
    it, and its parent, must also be ours: anyone could have made them first."""
    path = runtime_dir(name)
    shared = path.parent == Path(tempfile.gettempdir()) / f"mpqueue-{os.geteuid()}"
    path.mkdir(parents=True, exist_ok=True, mode=0o700 if shared else 0o755)
    for d in (path.parent, path) if shared else (path,):
        check_dir(d, must_own=shared)
    return path


def check_dir(d: Path, must_own: bool) -> None:
    st = os.lstat(d)
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafeRuntimeDir(f"runtime directory {d} is not a directory (a link?); remove it")
    if must_own and st.st_uid != os.geteuid():
        raise UnsafeRuntimeDir(f"runtime directory {d} belongs to uid {st.st_uid}, not to us ({os.geteuid()})")
    if st.st_mode & 0o022:
        raise UnsafeRuntimeDir(f"runtime directory {d} is writable by other users (mode "
                               f"{stat.S_IMODE(st.st_mode):04o}); chmod go-w it")


def open_private(path: Path, flags: int, mode: int = 0o644) -> int:
    """os.open that never follows a link and never opens anything but a regular file."""
    fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise UnsafeRuntimeDir(f"{path} is not a regular file; remove it")
    return fd


def lock_path(name: str) -> Path:
    return runtime_dir(name) / f"{name}.lock"


def acquire(name: str) -> int:
    """Take the lock or raise AlreadyRunning; returns the open descriptor."""
    path = ensure_runtime_dir(name) / f"{name}.lock"
    try:
        fd = open_private(path, os.O_RDWR | os.O_CREAT)
    except OSError as exc:
        raise UnsafeRuntimeDir(f"cannot open the lock {path}: {exc.strerror} (a link?)") from None
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
        fd = open_private(lock_path(name), os.O_RDONLY)
    except (OSError, UnsafeRuntimeDir):
        return None
    with os.fdopen(fd) as f:
        try:
            return int(f.read(64).split()[0])
        except (ValueError, IndexError):
            return None


def holder(name: str, pid: int | None = None) -> int | None:
    """The process to signal for the service: `pid` (systemd's $MAINPID, or an
    operator's --pid), else the pid in the lock file; only if that process holds
    the lock now, else None. A pid left behind by an instance that is gone (a
    stop outside systemd, a SIGKILL) may belong to any process by now: it is
    never to be signalled."""
    pid = pid or read_pid(name)
    if pid is None:
        return None
    try:
        st = os.stat(lock_path(name), follow_symlinks=False)
    except OSError:
        return None
    lockers = _flock_pids(st)
    if lockers is not None and pid not in lockers:
        return None
    return pid if _has_open(pid, st) is not False else None


def _flock_pids(st) -> set[int] | None:
    """Pids that hold an flock on the file `st` describes, from /proc/locks (None
    where there is no such file to read)."""
    file_id = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    try:
        with open("/proc/locks") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    pids = set()
    for line in lines:
        # "3: FLOCK  ADVISORY  WRITE 1234 00:2d:5678 0 EOF"; a waiter's line has "->"
        fields = line.split()
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == file_id:
            pids.add(int(fields[4]))
    return pids


def _has_open(pid: int, st) -> bool | None:
    """Whether process `pid` has the file `st` describes open (None: we may not look).
    /proc/locks keeps the pid of whoever took the lock; after that process died and
    a worker it forked kept the lock, the number may have been reused."""
    fd_dir = f"/proc/{pid}/fd"
    try:
        fds = os.listdir(fd_dir)
    except FileNotFoundError:
        # under the unit's ProtectProc=invisible, `mpqueue reload` (ExecReload=, a user
        # namespace of its own) sees no /proc entry of the supervisor it is to signal,
        # though kill(2) reaches it: then only /proc/locks vouches for it
        return None if pid_exists(pid) else False
    except OSError:
        return None
    for fd in fds:
        try:
            other = os.stat(f"{fd_dir}/{fd}")
        except OSError:
            continue
        if (other.st_dev, other.st_ino) == (st.st_dev, st.st_ino):
            return True
    return False
