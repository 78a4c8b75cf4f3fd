"""What every mpqueue process does the same way: its title in `ps`, and signal
handlers that only record and wake (a self-pipe), as in gunicorn/Sidekiq: no
logging, locks, I/O beyond one byte, or raising inside a handler."""
from __future__ import annotations

import os
import signal


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
