"""Wake-ups for the SQLite broker: each waiting consumer owns a FIFO in
`<db>-wake/<queue hash>/`; a state change that makes work available writes a
byte to every FIFO of the queue after its commit. A FIFO whose owner died
refuses writers (ENXIO) and is removed. Hints only: the database is the truth.
A job's watchers (Client.result) own FIFOs in a directory of that job's own,
`<db>-wake/<queue hash>.end/<job hash>/`, woken only by its end and removed when
its last watcher leaves."""
from __future__ import annotations

import contextlib
import errno
import os
import stat

from ..base import JobWatch, Waiter


class FifoWaiter(Waiter):
    """A FIFO of our own in the queue's wake directory, opened read-write so it
    never reports end-of-file while no writer has it open."""

    depth = 2          # directories to create: <db>-wake and the queue's own

    def __init__(self, directory: str, modes: tuple[int, int]):
        dir_mode, fifo_mode = modes
        name = os.urandom(8).hex()
        hidden = os.path.join(directory, "." + name)
        self.path = os.path.join(directory, name)
        for attempt in range(5):
            try:
                _make_dirs(directory, dir_mode, self.depth)
                # Made under a hidden name and renamed once open: a waker never sees it unopened
                # (it would take it for the FIFO of a dead process and remove it).
                os.mkfifo(hidden, fifo_mode)
                break
            except FileNotFoundError:          # a waker removed the (empty) job directory just now,
                                               # even between our mkdir and its chmod
                if attempt == 4:
                    raise
        self._fd = os.open(hidden, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOFOLLOW)
        os.chmod(hidden, fifo_mode)
        os.rename(hidden, self.path)

    def fileno(self) -> int:
        return self._fd

    def drain(self) -> list:
        with contextlib.suppress(BlockingIOError):
            while os.read(self._fd, 4096):
                pass
        return []

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.unlink(self.path)
        with contextlib.suppress(OSError):
            os.close(self._fd)


class FifoJobWatch(FifoWaiter, JobWatch):
    """base.JobWatch on SQLite: a FIFO in the job's own end directory, woken by the
    end of that job only (hints only: the waiter re-checks its job)."""

    depth = 3          # <db>-wake, the queue's end directory, the job's

    def close(self) -> None:
        super().close()
        with contextlib.suppress(OSError):         # the last watcher takes the job's directory along
            os.rmdir(os.path.dirname(self.path))


def _make_dirs(directory: str, mode: int, depth: int) -> None:
    chain = [directory]
    for _ in range(depth - 1):
        chain.insert(0, os.path.dirname(chain[0]))
    for d in chain:
        with contextlib.suppress(FileExistsError):
            os.mkdir(d)
            os.chmod(d, mode)          # mkdir's mode is cut by the umask


def wake_modes(db_path: str) -> tuple[int, int]:
    """(directory mode, FIFO mode) for wake files: whoever may write the database may
    wake its consumers (write the FIFOs), whoever may read it may list them."""
    try:
        mode = stat.S_IMODE(os.stat(db_path).st_mode)
    except OSError:
        mode = 0o600
    fifo = (mode & 0o666) | 0o600
    readers = mode & 0o044
    return 0o700 | readers | (readers >> 2), fifo


def wake_fifos(directory: str, remove_empty: bool = False) -> None:
    """Write a byte to every consumer's FIFO in `directory`. Only FIFOs: a link or
    any other file someone put there is never followed or written (whoever may
    write the directory could otherwise make a root producer overwrite a file).
    `remove_empty`: a job's directory goes once its dead watchers' FIFOs have."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return
    _wake_all(directory, names)
    if remove_empty:
        with contextlib.suppress(OSError):     # not empty: a live watcher removes it on leaving
            os.rmdir(directory)


def _wake_all(directory: str, names) -> None:
    for name in names:
        if name.startswith("."):
            continue
        path = os.path.join(directory, name)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError as exc:
            if exc.errno == errno.ENXIO:          # nobody reads it: its owner died
                with contextlib.suppress(OSError):
                    os.unlink(path)
            continue
        try:
            if stat.S_ISFIFO(os.fstat(fd).st_mode):
                os.write(fd, b"1")
        except OSError:
            pass                                  # full: a wake-up is pending anyway
        finally:
            os.close(fd)
