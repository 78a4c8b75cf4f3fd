"""The supervisor's throughput history points (supervisor/history.py): written at
heartbeats, once per minute of the broker's clock, on a fake clock: no sleeping."""
from __future__ import annotations

import pytest

from mpqueue.brokers import BrokerError
from mpqueue.supervisor import Supervisor, loop, reload
from mpqueue.supervisor.history import HistoryWriter
from tests.unit.test_supervisor import Broker, Clock, Spawner, service

MINUTE_START = 1_765_000_020.0          # a wall time on a minute's start


class HistoryBroker:
    """Answers record_history with its own clock: ours plus `ahead` seconds."""

    def __init__(self, wall, ahead=0.0):
        self.wall, self.ahead, self.writes, self.down = wall, ahead, [], False

    def record_history(self, queues, every_ms=60_000, now_ms=None):
        if self.down:
            raise BrokerError("redis: ConnectionError: down")
        now = int((self.wall() + self.ahead) * 1000)
        self.writes.append((now - now % every_ms, list(queues)))
        return now


def beats(writer, broker, wall, seconds, every=15.0):
    for _ in range(int(seconds // every)):
        writer.beat(broker, ["q"])
        wall.advance(every)


def test_the_first_heartbeat_writes_and_then_one_write_per_minute():
    # Given a node starting 5 s into a minute
    wall = Clock()
    wall.now = MINUTE_START + 5
    broker, writer = HistoryBroker(wall), HistoryWriter(wall)
    # When it beats every 15 s for three minutes
    beats(writer, broker, wall, 180)
    # Then it wrote at once, then once in each following minute
    minutes = [at for at, _ in broker.writes]
    assert minutes == [int(MINUTE_START * 1000) + i * 60_000 for i in range(3)]


def test_the_minute_turns_on_the_brokers_clock_not_ours():
    # Given a broker whose clock is 40 s ahead of this host's
    wall = Clock()
    wall.now = MINUTE_START
    broker, writer = HistoryBroker(wall, ahead=40), HistoryWriter(wall)
    writer.beat(broker, ["q"])                  # the broker is at :40 of its minute, we at :00
    # When 15 s pass here: the broker's minute has not turned yet
    wall.advance(15)
    writer.beat(broker, ["q"])
    # and 15 s more: it turned at our :20
    wall.advance(15)
    writer.beat(broker, ["q"])
    # Then the broker's two minutes were written once each
    assert [at for at, _ in broker.writes] == [int(MINUTE_START * 1000), int(MINUTE_START * 1000) + 60_000]


def test_a_write_that_failed_is_tried_again_at_the_next_heartbeat():
    wall = Clock()
    wall.now = MINUTE_START
    broker, writer = HistoryBroker(wall), HistoryWriter(wall)
    broker.down = True
    with pytest.raises(BrokerError):
        writer.beat(broker, ["q"])
    broker.down = False
    wall.advance(15)
    writer.beat(broker, ["q"])
    assert len(broker.writes) == 1


def test_the_supervisor_writes_its_queues_at_its_heartbeat_and_not_between(monkeypatch, tmp_path):
    # Given a running supervisor (a fake broker records its calls)
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    monkeypatch.setenv("MPQUEUE_RUNTIME_DIR", str(tmp_path))
    clock = Clock()
    clock.now = MINUTE_START                # the monotonic clock and the wall clock alike
    s = Supervisor(service(), clock=clock, spawn=Spawner(clock), reap=lambda: [], wall=clock)
    s.attach(Broker())
    s.reload_status = reload.ReloadStatus(s.cfg.name)
    # When its loop maintains every second for 40 s
    for _ in range(40):
        s.maintain()
        clock.advance(1)
    # Then the history was written once, with the heartbeat, for its queue
    writes = [c for c in s.broker.calls if c[0] == "record_history"]
    assert writes == [("record_history", ["q"], 60_000)]
    assert s.broker.names().count("heartbeat") == 3 and loop.HEARTBEAT_EVERY == 15.0
