"""The rate limit's rule (core/limits.py) and its SQLite step (brokers/sqlite/rate.py)
on a fake clock: a greedy consumer gets exactly the rate, any window holds at most
burst + window / interval reservations, and the time it is told to come back is
when the next job may go. reserve.lua runs the same rule (tests/contract)."""
import random
import sqlite3

import pytest

from mpqueue.brokers.sqlite.db import SCHEMA
from mpqueue.brokers.sqlite.rate import RateGate
from mpqueue.core import schema
from mpqueue.core.limits import BadRate, RateLimit, parse_rate, prefetch_of, rate_of


@pytest.fixture
def db():
    conn = sqlite3.connect(":memory:", isolation_level=None)
    for statement in SCHEMA.split(";"):
        if statement.strip():
            conn.execute(statement)
    yield conn
    conn.close()


def reserve(db, rate, now, count):
    gate = RateGate(db, "q", rate, now)
    n = gate.allowed(count)
    opens = gate.took(n, cut=n < count)
    return n, opens


@pytest.mark.parametrize("text, count, period", [("20/s", 20, 1.0), ("600/m", 600, 60.0), ("5/10s", 5, 10.0),
                                                 ("1000/h", 1000, 3600.0), (" 3 / 2m ", 3, 120.0)])
def test_rates_parse(text, count, period):
    assert parse_rate(text) == RateLimit(count, period)


@pytest.mark.parametrize("text", ["0/s", "-1/s", "1/0s", "1/d", "1.5/s", "ten/s", "", "1/s/s", "2000000/s"])
def test_bad_rates_are_refused(text):
    with pytest.raises(BadRate):
        parse_rate(text)


def test_a_limited_queue_takes_no_job_ahead_and_an_unlimited_one_keeps_its_prefetch():
    base = {"broker": "sqlite:///tmp/x.db", "imports": ["mpqueue.examples.tasks"]}
    cfg = schema.parse_config({**base, "queues": {"a": {"rate": "5/s", "rate_burst": 3, "prefetch": 32},
                                                   "b": {"prefetch": 32}}}, "x.yaml", "x")
    assert rate_of(cfg.queues["a"]) == RateLimit(5, 1.0, 3) and prefetch_of(cfg.queues["a"]) == 1
    assert rate_of(cfg.queues["b"]) is None and prefetch_of(cfg.queues["b"]) == 32


def test_a_greedy_consumer_gets_exactly_the_rate_and_is_told_when_to_come_back(db):
    rate = RateLimit(20, 1.0)              # one per 50 ms
    now, got = 1_000_000, 0
    for _ in range(200):
        n, opens = reserve(db, rate, now, 10)
        got += n
        assert opens > 0                   # it always asked for more than it got
        now += int(opens * 1000)           # comes back exactly when told
    assert got == 200                      # one per visit: never early, never a visit wasted


def test_the_burst_goes_at_once_after_a_quiet_spell_and_then_the_rate_holds(db):
    rate = RateLimit(10, 1.0, burst=5)
    assert reserve(db, rate, 0, 100)[0] == 5
    assert reserve(db, rate, 0, 100)[0] == 0
    assert reserve(db, rate, 100, 100)[0] == 1        # one interval later: one more
    assert reserve(db, rate, 10_000, 100)[0] == 5     # quiet for long: the burst again, no more


def test_no_window_ever_holds_more_than_burst_plus_the_rate(db):
    rng = random.Random(7)
    for burst in (1, 3):
        rate = RateLimit(50, 1.0, burst)     # 20 ms
        db.execute("DELETE FROM rate")
        now, stamps = 0, []
        while now < 20_000:
            n, _ = reserve(db, rate, now, rng.randint(1, 8))
            stamps += [now] * n
            now += rng.choice([0, 1, 3, 7, 19, 20, 21, 60, 400])
        for width in (100, 1000, 5000):
            j = 0
            for i, t in enumerate(stamps):
                while j < len(stamps) and stamps[j] < t + width:
                    j += 1
                assert j - i <= burst + width / 20, (burst, width, j - i)
