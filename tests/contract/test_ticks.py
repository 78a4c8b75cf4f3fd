"""Schedules' ticks, on every broker: one atomic claim that also pushes the job,
so a tick fires once however many nodes try it."""
import sqlite3
import threading
import time

from mpqueue.brokers import PushItem, open_broker
from mpqueue.core import envelope as jobmod

Q = "ticks"


def job(tick_ms, priority=0):
    return jobmod.encode("t:f", ["x"], priority=priority, scheduled_ms=tick_ms)[1]


def now_ms():
    return int(time.time() * 1000)


def ready(broker):
    reserved, _ = broker.reserve(Q, "c1", 100, 30.0)
    return [jobmod.decode(r.envelope, Q, r.token) for r in reserved]


def known(broker, *names, ago_ms=60_000):
    """Give schedules a record, as if they ran before: the first tick tried of a
    schedule without one is recorded as "new", never fired."""
    t = now_ms() - ago_ms
    for name in names or ("beat",):
        assert broker.tick(Q, name, t, job(t), 0, 60_000).outcome == "new"
    return t


def test_a_due_tick_fires_once_and_its_job_carries_the_tick(broker):
    # Given a schedule that ran before, and its tick due now
    before = known(broker)
    t = now_ms() - 10
    # When two nodes claim it
    first = broker.tick(Q, "beat", t, job(t), 0, 60_000)
    second = broker.tick(Q, "beat", t, job(t), 0, 60_000)
    # Then one fired and the other found it taken; one job waits, carrying its tick
    assert (first.outcome, first.previous_ms) == ("fired", before)
    assert (second.outcome, second.previous_ms) == ("taken", t)
    jobs = ready(broker)
    assert len(jobs) == 1 and jobs[0].scheduled_ms == t and jobs[0].scheduled_for.timestamp() * 1000 == t
    assert broker.ticks(Q) == {"beat": (t, t)}


def test_an_earlier_tick_than_one_claimed_is_taken(broker):
    known(broker)
    t = now_ms() - 10
    broker.tick(Q, "beat", t, job(t), 0, 60_000)
    assert broker.tick(Q, "beat", t - 1000, job(t - 1000), 0, 60_000).outcome == "taken"
    assert len(ready(broker)) == 1


def test_a_tick_not_yet_due_on_the_brokers_clock_records_nothing(broker):
    t = now_ms() + 60_000
    out = broker.tick(Q, "beat", t, job(t), 0, 60_000)
    assert out.outcome == "early" and abs(out.now_ms - now_ms()) < 5_000
    assert broker.ticks(Q) == {} and ready(broker) == []


def test_a_tick_later_than_its_grace_is_skipped_recorded_and_never_fired(broker):
    # Given a schedule that fired once, long ago
    known(broker, ago_ms=700_000)
    old = now_ms() - 600_000
    assert broker.tick(Q, "beat", old, job(old), 0, 900_000).outcome == "fired"
    ready(broker)
    # When a tick more than its grace late is claimed
    late = now_ms() - 120_000
    out = broker.tick(Q, "beat", late, job(late), 0, 60_000)
    # Then it is skipped (recorded, so no other node fires it), and no job is pushed
    assert (out.outcome, out.previous_ms) == ("skipped", old)
    assert broker.tick(Q, "beat", late, job(late), 0, 60_000).outcome == "taken"
    assert ready(broker) == []
    assert broker.ticks(Q) == {"beat": (late, old)}


def test_a_late_tick_of_a_schedule_without_a_record_is_new_not_skipped(broker):
    late = now_ms() - 120_000
    assert broker.tick(Q, "fresh", late, job(late), 0, 60_000).outcome == "new"
    assert broker.ticks(Q) == {"fresh": (late, 0)}


def test_a_schedule_without_a_record_records_its_first_tick_and_fires_from_the_next(broker):
    # Given a schedule renamed (or added) just after another name fired the same tick
    t = now_ms() - 10
    known(broker, "old-name")
    assert broker.tick(Q, "old-name", t, job(t), 0, 60_000).outcome == "fired"
    # When the new name tries that tick, on time, from two nodes
    first = broker.tick(Q, "new-name", t, job(t), 0, 60_000)
    second = broker.tick(Q, "new-name", t, job(t), 0, 60_000)
    # Then it is recorded, not fired: the tick ran once; the new name fires from its next
    assert (first.outcome, second.outcome) == ("new", "taken")
    assert [j.scheduled_ms for j in ready(broker)] == [t]
    assert broker.ticks(Q)["new-name"] == (t, 0)
    assert broker.tick(Q, "new-name", t + 1, job(t + 1), 0, 60_000).outcome == "fired"


def test_schedules_are_recorded_apart_and_the_job_keeps_its_priority(broker):
    known(broker, "a", "b")
    t = now_ms() - 10
    assert broker.tick(Q, "a", t, job(t), 0, 60_000).outcome == "fired"
    assert broker.tick(Q, "b", t, job(t, priority=7), 7, 60_000).outcome == "fired"
    jobs = ready(broker)
    assert [j.priority for j in jobs] == [7, 0]


def test_of_many_racing_claimers_exactly_one_fires_each_tick(broker):
    # Given eight nodes (each its own connection) racing for the same ten ticks
    url = broker.url
    known(broker, "race", ago_ms=30_000)
    base = now_ms() - 20_000
    outcomes, barrier = [], threading.Barrier(8)

    def node():
        b = open_broker(url)
        try:
            barrier.wait()
            for i in range(10):
                t = base + i * 1000
                outcomes.append((t, b.tick(Q, "race", t, job(t), 0, 60_000).outcome))
        finally:
            b.close()
    threads = [threading.Thread(target=node) for _ in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    # Then every tick fired exactly once, and exactly one job per tick waits
    fired = sorted(t for t, o in outcomes if o == "fired")
    assert len(outcomes) == 80
    assert len(fired) == len(set(fired))
    jobs = ready(broker)
    assert sorted(j.scheduled_ms for j in jobs) == fired
    # (a node that lost a race may meet a later tick first, so not every tick need fire)
    assert base + 9000 in fired


def test_a_tick_job_is_handed_to_a_waiting_consumer_like_any_push(broker):
    known(broker)
    t = now_ms() - 10
    w = broker.waiter(Q, "c9")
    try:
        broker.reserve(Q, "c9", 1, 30.0, join_idle=True)
        assert broker.tick(Q, "beat", t, job(t), 0, 60_000).outcome == "fired"
        # handed over (Redis) or woken to reserve it (SQLite): either way it is there once
        handed = []
        deadline = time.monotonic() + 5
        while not handed and time.monotonic() < deadline:
            handed = w.drain() or broker.reserve(Q, "c9", 1, 30.0, leave_idle=True)[0]
        assert len(handed) == 1
    finally:
        w.close()


def test_an_sqlite_file_from_before_schedules_gets_its_tick_table(tmp_path):
    # Given a database as an earlier mpqueue left it: no tick table
    path = tmp_path / "old.db"
    b = open_broker(f"sqlite://{path}")
    b.push("q", [PushItem(jobmod.encode("t:f")[1], 0, 0)])
    b.close()
    with sqlite3.connect(path) as db:
        db.execute("DROP TABLE tick")
    # When this version opens it, ticks work and the old job is still there
    b = open_broker(f"sqlite://{path}")
    try:
        t = now_ms() - 10
        assert b.tick("q", "beat", t - 1000, job(t - 1000), 0, 60_000).outcome == "new"
        assert b.tick("q", "beat", t, job(t), 0, 60_000).outcome == "fired"
        assert b.counts("q")["ready"] == 2
    finally:
        b.close()
