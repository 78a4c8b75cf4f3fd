"""Broker-health gate: whether the supervisor's loop may call the broker now.

A broker that is down or hangs must not hold the loop (and so the watchdog
ping) for long: after a failed call the loop makes no routine call (heartbeat,
reaping, counts, recovery) for `retry_after` seconds, so one loop turn waits
for at most one failing call. The outage is logged once, when it starts, and
once when it ends."""
from __future__ import annotations

import logging

from ..brokers import BrokerError, DataFormatError

log = logging.getLogger("mpqueue.supervisor")
RETRY_AFTER = 2.0


class BrokerGate:
    def __init__(self, clock, retry_after: float = RETRY_AFTER):
        self.clock = clock
        self.retry_after = retry_after
        self.ok = True
        self.retry_at = 0.0      # while the broker is down: no routine call before this

    def may_call(self) -> bool:
        return self.ok or self.clock() >= self.retry_at

    def call(self, fn) -> bool:
        """Run a routine broker call unless the gate is shut; True if it ran and succeeded."""
        if not self.may_call():
            return False
        try:
            fn()
        except BrokerError as exc:
            self.record(False, exc)
            return False
        self.record(True)
        return True

    def record(self, ok: bool, exc=None) -> None:
        """The outcome of a call made elsewhere (a dispatcher's reserve, say)."""
        if ok != self.ok:
            if ok:
                log.warning("broker reachable again")
            else:
                log.error("broker unreachable: %s", exc)
            self.ok = ok
        if not ok:
            self.retry_at = self.clock() + self.retry_after

    def defer(self) -> None:
        """Something failed that already said so itself: just hold off the next call."""
        self.retry_at = self.clock() + self.retry_after


def wait_until_up(ping, give_up, on_down) -> bool:
    """Ping with doubling delays (0.1 s to 5 s) until the broker answers (True), or
    `give_up(delay)`, which waits, says to stop (False). The outage is logged once.
    DataFormatError is an answer, not an outage: it propagates."""
    delay, down = 0.1, False
    while True:
        try:
            ping()
            if down:
                log.warning("broker reachable")
            return True
        except DataFormatError:
            raise
        except BrokerError as exc:
            if not down:
                log.warning("broker unreachable at start, retrying: %s", exc)
                on_down(exc)
                down = True
        if give_up(delay):
            return False
        delay = min(5.0, delay * 2)
