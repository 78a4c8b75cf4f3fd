"""A queue's rate limit (core/limits.py), enforced by every broker at reserve time
and shared by every consumer: a reserve gets no more jobs than the limit lets
through, says when it lets the next one through, never hands a job over past it,
and counts the reserves it cut short while jobs waited."""
import time

import pytest

from mpqueue.brokers import Ack, PushItem
from mpqueue.core import envelope as jobmod
from mpqueue.core.limits import RateLimit, parse_rate

Q, OTHER = "limited-q", "free-q"


def push(broker, queue, n, prio=0):
    for i in range(n):
        _, env = jobmod.encode("t:f", [i], priority=prio)
        broker.push(queue, [PushItem(env, prio, 0.0)])


def take(broker, count, rate, consumer="c1", queue=Q, **idle):
    reserved, next_due = broker.reserve(queue, consumer, count, 30.0, rate=rate, **idle)
    return reserved, next_due


def test_a_reserve_gets_no_more_than_the_burst_and_says_when_the_next_job_may_go(broker):
    # Given 10 jobs waiting on a queue limited to 10 a second, bursts of 3
    push(broker, Q, 10)
    rate = RateLimit(10, 1.0, burst=3)
    # When a consumer asks for all of them
    got, next_due = take(broker, 10, rate)
    # Then it gets the burst, and is told to look again within one interval (100 ms)
    assert len(got) == 3
    assert next_due is not None and 0 <= next_due <= 0.1
    # and a second consumer right after gets nothing: the limit is shared
    again, later = take(broker, 10, rate, consumer="c2")
    assert len(again) <= 1 and later is not None and later <= 0.1


def test_the_limit_lets_jobs_through_at_its_rate(broker):
    # Given 30 jobs and a limit of 20 a second (burst 1), two consumers taking turns
    push(broker, Q, 30)
    rate = parse_rate("20/s")
    got, start = 0, time.monotonic()
    deadline = start + 10
    while got < 30 and time.monotonic() < deadline:
        for consumer in ("c1", "c2"):
            reserved, next_due = take(broker, 5, rate, consumer=consumer)
            got += len(reserved)
            assert len(reserved) <= 1
        if next_due:
            time.sleep(min(next_due, 0.05))  # ok: waiting as told, what a consumer does
    elapsed = time.monotonic() - start
    # Then all 30 came, no faster than one per 50 ms after the first (1.45 s), give or take the clock
    assert got == 30
    assert elapsed >= 29 * 0.05 - 0.05, elapsed


def test_without_a_rate_nothing_is_limited_and_other_queues_are_not_touched(broker):
    push(broker, Q, 5)
    push(broker, OTHER, 5)
    limited, _ = take(broker, 5, RateLimit(1, 60.0))
    free, _ = take(broker, 5, None, queue=OTHER)
    assert (len(limited), len(free)) == (1, 5)


def test_acks_go_through_when_the_limit_lets_no_job_through(broker):
    push(broker, Q, 3)
    rate = RateLimit(1, 60.0)
    (first,), _ = take(broker, 1, rate)
    ack = Ack(jobmod.job_id(first.envelope), first.token, "", 0, True)
    reserved, next_due = broker.reserve(Q, "c1", 2, 30.0, [ack], rate=rate)
    assert reserved == [] and next_due is not None and next_due > 50
    assert broker.counts(Q)["done_total"] == 1


def test_a_cut_reserve_is_counted_only_while_jobs_wait(broker):
    rate = RateLimit(1, 60.0)
    push(broker, Q, 2)
    take(broker, 2, rate)            # 1 of 2: cut, one waits
    take(broker, 1, rate)            # 0 of 1: cut, one waits
    assert broker.counts(Q)["throttled_total"] == 2
    other = RateLimit(1, 60.0)
    push(broker, OTHER, 1)
    take(broker, 5, other, queue=OTHER)  # got the only job: nothing waited
    assert broker.counts(OTHER)["throttled_total"] == 0


def test_a_rate_limited_consumer_never_joins_the_idle_list(broker):
    # Given a limited queue whose consumer asks to join the idle list, empty-handed
    waiter = broker.waiter(Q, "c1")
    try:
        got, _ = take(broker, 1, RateLimit(1, 60.0), join_idle=True)
        assert got == []
        # When a job is pushed
        push(broker, Q, 1)
        # Then it is not handed over (that would pass the limit): it waits, ready
        assert broker.held(Q) == []
        assert broker.counts(Q)["ready"] == 1
    finally:
        waiter.close()


def test_priorities_keep_their_order_under_a_limit(broker):
    push(broker, Q, 2, prio=0)
    push(broker, Q, 1, prio=7)
    (first,), _ = take(broker, 3, RateLimit(1, 60.0))
    assert jobmod.header(first.envelope).priority == 7


@pytest.mark.parametrize("text", ["0/s", "x", "5/0s", "20 per second", ""])
def test_a_bad_rate_is_refused_in_one_line(text):
    from mpqueue.core.limits import BadRate
    with pytest.raises(BadRate, match=r'^a rate "N/s"'):
        parse_rate(text)
