"""Login back-off per client address: a few wrong tokens are free, then each
further try waits a doubling delay (1 s, 2 s, 4 s ... 60 s) and is refused
(429 + Retry-After) before the token is even compared. A right token clears
the address's record. Pure: the clock is a parameter.

Per address, so a TLS proxy in front makes every client one address: there a
wrong-token flood also delays the operators (the proxy's own limits help).
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

FREE = 5                # wrong tokens before any delay
FIRST_DELAY = 1.0
MAX_DELAY = 60.0
FORGET = 900.0          # a quiet address starts afresh after 15 minutes
MAX_ADDRESSES = 10_000  # the oldest records go first


@dataclass
class _Record:
    failures: int = 0
    last: float = 0.0
    until: float = 0.0          # refused before this
    announced: bool = False     # the refusal of this delay has been logged


class Throttle:
    def __init__(self, clock=time.monotonic):
        self.clock = clock
        self._records: OrderedDict[str, _Record] = OrderedDict()
        self._lock = threading.Lock()

    def wait(self, addr: str) -> tuple[float, bool]:
        """(seconds before `addr` may try again, 0 when it may now; whether this is
        the first refusal of that delay, worth a log line)."""
        with self._lock:
            rec = self._records.get(addr)
            left = 0.0 if rec is None else rec.until - self.clock()
            if left <= 0:
                return 0.0, False
            first, rec.announced = not rec.announced, True
            return left, first

    def failed(self, addr: str) -> tuple[int, float]:
        """Record a wrong token: (failures in a row, the delay now imposed)."""
        now = self.clock()
        with self._lock:
            rec = self._records.pop(addr, None)
            if rec is None or now - rec.last > FORGET:
                rec = _Record()
            rec.failures, rec.last, rec.announced = rec.failures + 1, now, False
            delay = 0.0 if rec.failures < FREE else min(MAX_DELAY, FIRST_DELAY * 2 ** (rec.failures - FREE))
            rec.until = now + delay
            self._records[addr] = rec
            while len(self._records) > MAX_ADDRESSES:
                self._records.popitem(last=False)
            return rec.failures, delay

    def succeeded(self, addr: str) -> None:
        with self._lock:
            self._records.pop(addr, None)
