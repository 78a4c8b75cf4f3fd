"""Wake-ups for the SQLite broker: each waiting consumer owns a FIFO in
`<db>-wake/<queue hash>/`; a state change that makes work available writes a
byte to every FIFO of the queue after its commit. A FIFO whose owner died
refuses writers (ENXIO) and is removed. Hints only: the database is the truth."""
from __future__ import annotations

import contextlib
import errno
import os
import stat

from ..base import JobWatch, Waiter


class FifoWaiter(Waiter):
    """A FIFO of our own in the queue's wake directory, opened read-write so it
    never reports end-of-file while no writer has it open."""

    def __init__(self, directory: str, modes: tuple[int, int]):
        dir_mode, fifo_mode = modes
        for d in (os.path.dirname(directory), directory):
            with contextlib.suppress(FileExistsError):
                os.mkdir(d)
                os.chmod(d, dir_mode)          # mkdir's mode is cut by the umask
        name = os.urandom(8).hex()
        hidden = os.path.join(directory, "." + name)
        self.path = os.path.join(directory, name)
        # Made under a hidden name and renamed once open: a waker never sees it unopened
        # (it would take it for the FIFO of a dead process and remove it).
        os.mkfifo(hidden, fifo_mode)
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
    """base.JobWatch on SQLite: a FIFO in the queue's end directory, woken by every
    end of a job of the queue (hints only: the waiter re-checks its own job)."""


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


def wake_fifos(directory: str) -> None:
    """Write a byte to every consumer's FIFO in `directory`. Only FIFOs: a link or
    any other file someone put there is never followed or written (whoever may
    write the directory could otherwise make a root producer overwrite a file)."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return
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
