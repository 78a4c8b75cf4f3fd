"""sd_notify messages to systemd; silent when NOTIFY_SOCKET is unset.
Only the supervisor's main loop calls this (workers never notify).

Every field goes through `one_line` in `send`, the one place the rule lives:
systemd reads a datagram as one field per line, so a multi-line STATUS= (a
SyntaxError's text) would keep only its first line and the real error is lost.
"""
from __future__ import annotations

import os
import time

from ..core.names import redact_text


class Notifier:
    def __init__(self):
        self._sock = None
        if os.environ.get("NOTIFY_SOCKET"):
            import sdnotify
            self._sock = sdnotify.SystemdNotifier()
            # Never block the supervisor's loop on systemd: a full socket drops a message
            # (sdnotify swallows the error) rather than freezing the loop.
            if self._sock.socket is not None:
                self._sock.socket.setblocking(False)
        self._last_status = None
        self._last_extend = 0.0

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def send(self, *fields: str) -> None:
        if self._sock is not None:
            self._sock.notify("\n".join(one_line(f) for f in fields))

    def ready(self, status: str) -> None:
        self.send("READY=1", f"STATUS={status}", f"MAINPID={os.getpid()}")

    def status(self, status: str) -> None:
        if status != self._last_status:
            self._last_status = status
            self.send(f"STATUS={status}")

    def reloading(self) -> None:
        self.send("RELOADING=1", f"MONOTONIC_USEC={int(time.monotonic() * 1e6)}")

    def stopping(self, status: str = "stopping") -> None:
        self.send("STOPPING=1", f"STATUS={status}")

    def watchdog(self) -> None:
        self.send("WATCHDOG=1")

    def extend_timeout(self, seconds: float) -> None:
        """Ask for `seconds` more; sent at most once a second."""
        now = time.monotonic()
        if now - self._last_extend >= 1.0:
            self._last_extend = now
            self.send(f"EXTEND_TIMEOUT_USEC={int(seconds * 1e6)}")

    def fatal(self, status: str, errno: int = 0) -> None:
        self.send(f"STATUS={status}", *([f"ERRNO={errno}"] if errno else []))


def watchdog_interval() -> float:
    """Half of systemd's WatchdogSec, if the watchdog is on for this process."""
    usec, pid = os.environ.get("WATCHDOG_USEC"), os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid.isdigit() and int(pid) != os.getpid()):
        return 0.0
    return int(usec) / 2e6


def one_line(field: str) -> str:
    """A notify field as one line, URL passwords hidden: its lines (stripped,
    blank ones dropped) joined with ' | ', so a traceback's last line
    ("SyntaxError: invalid syntax") survives. Every line break str.splitlines
    knows counts, not only \\n."""
    return " | ".join(part.strip() for part in redact_text(field).splitlines() if part.strip())
