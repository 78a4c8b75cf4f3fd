"""The supervisor's share of the dashboard's throughput history: each minute, the
totals of the queues it serves as a point in the broker (Broker.record_history),
so the history exists whether or not a dashboard runs, and outlives restarts of
both (the broker keeps a day of points).

It rides on the heartbeat (every 15 s): a write only when the minute has turned
on the broker's clock since this node's last write (ours, corrected by the time
the broker returned), so one round trip per server a minute and none between; an
idle service's Redis cost grows by that alone. Every node of a service writes the
same point: the totals are broker-wide, and the latest write of a minute wins."""
from __future__ import annotations

import time

from ..brokers.base import HISTORY_EVERY_MS


class HistoryWriter:
    # Seconds per point. No YAML key: the dashboard reads minutes. A test may set it
    # on the class (with the loop's HEARTBEAT_EVERY below it) to see points sooner.
    every = HISTORY_EVERY_MS / 1000

    def __init__(self, wall=time.time):
        self.wall = wall
        self.offset = 0.0         # the broker's clock minus ours, seconds, as of the last write
        self.last = None          # the interval (its number) this node wrote last

    def beat(self, broker, queues: list[str]) -> None:
        """At a heartbeat: record `queues`' point if this interval has none from us yet."""
        if self.interval() == self.last:
            return
        now_ms = broker.record_history(queues, int(self.every * 1000))
        if now_ms is not None:
            self.offset = now_ms / 1000 - self.wall()
        self.last = self.interval()

    def interval(self) -> int:
        return int((self.wall() + self.offset) // self.every)
