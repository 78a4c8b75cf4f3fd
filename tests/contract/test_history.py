"""The throughput history every broker keeps for the dashboard: per queue, one
point per interval of its done and failed totals, written by the supervisors
(several nodes may write the same interval), trimmed to a day in the same step,
and read for every queue at once. Times are given explicitly: no sleeping."""
from mpqueue.brokers import open_broker
from mpqueue.brokers.base import HISTORY_EVERY_MS, HISTORY_KEEP_MS
from tests.contract.test_broker_contract import ack_of, push, take

Q = "contract"              # the queue test_broker_contract's helpers use
MIN = HISTORY_EVERY_MS
T0 = 1_765_000_000_000 - 1_765_000_000_000 % MIN      # an interval's start, epoch ms


def finish(broker, done=0, failed=0):
    """Run `done` jobs to an ack and `failed` to the failed store."""
    for _ in range(done):
        push(broker, "ok")
        (job,), _ = take(broker)
        broker.ack(Q, [ack_of(job)])
    for _ in range(failed):
        push(broker, "bad")
        (job,), _ = take(broker)
        broker.fail(Q, job.id, job.token, '{"type": "E"}')


def test_a_point_holds_the_totals_at_the_start_of_its_interval(broker):
    # Given a queue with 2 jobs done and 1 failed
    finish(broker, done=2, failed=1)
    # When its history is recorded 17 s into an interval
    assert broker.record_history([Q], now_ms=T0 + 17_000) == T0 + 17_000
    # Then the point is that interval's, with the totals
    assert broker.history([Q], 0) == {Q: [(T0, 2, 1)]}


def test_a_queue_without_jobs_records_zeros(broker):
    broker.record_history(["idle"], now_ms=T0)
    assert broker.history(["idle"], 0) == {"idle": [(T0, 0, 0)]}


def test_writing_an_interval_again_keeps_one_point_with_the_latest_totals(broker):
    # Given a point written by one node
    finish(broker, done=1)
    broker.record_history([Q], now_ms=T0 + 5_000)
    # When more jobs end and another node writes the same interval
    finish(broker, done=2, failed=1)
    broker.record_history([Q], now_ms=T0 + 40_000)
    broker.record_history([Q], now_ms=T0 + 40_000)
    # Then there is one point, with the later totals
    assert broker.history([Q], 0) == {Q: [(T0, 3, 1)]}


def test_points_are_oldest_first_and_read_from_since(broker):
    for i, done in enumerate([1, 1, 2]):
        finish(broker, done=done)
        broker.record_history([Q], now_ms=T0 + i * MIN + 1)
    assert broker.history([Q], 0)[Q] == [(T0, 1, 0), (T0 + MIN, 2, 0), (T0 + 2 * MIN, 4, 0)]
    assert broker.history([Q], T0 + MIN)[Q] == [(T0 + MIN, 2, 0), (T0 + 2 * MIN, 4, 0)]


def test_points_older_than_a_day_go_with_the_next_write(broker):
    # Given a point a day and a minute old, and one from an hour ago
    broker.record_history([Q], now_ms=T0)
    broker.record_history([Q], now_ms=T0 + HISTORY_KEEP_MS - 60 * MIN)
    # When the next point is written
    broker.record_history([Q], now_ms=T0 + HISTORY_KEEP_MS + MIN)
    # Then the day-old point is gone and the others stay
    assert [at for at, _, _ in broker.history([Q], 0)[Q]] == [T0 + HISTORY_KEEP_MS - 60 * MIN,
                                                             T0 + HISTORY_KEEP_MS + MIN]


def test_the_interval_is_the_callers(broker):
    broker.record_history([Q], every_ms=1000, now_ms=T0 + 1500)
    broker.record_history([Q], every_ms=1000, now_ms=T0 + 2999)
    assert [at for at, _, _ in broker.history([Q], 0)[Q]] == [T0 + 1000, T0 + 2000]


def test_many_queues_in_one_call_each_with_its_own_totals(broker):
    # Given queues on (on a Cluster) different nodes
    names = [f"hist{i}" for i in range(6)]
    finish(broker, done=3)
    # When they are recorded together, the broker's clock deciding the interval
    now = broker.record_history([Q, *names])
    # Then each has its point of the interval holding the broker's now
    found = broker.history([*names, Q, "never"], 0)
    assert list(found) == [*names, Q, "never"]
    at = now - now % MIN
    assert found[Q] == [(at, 3, 0)] and all(found[n] == [(at, 0, 0)] for n in names) and found["never"] == []


def test_recording_no_queues_is_no_call(broker):
    assert broker.record_history([]) is None
    assert broker.history([], 0) == {}


def test_an_sqlite_database_of_the_previous_release_gains_the_history_table(tmp_path):
    # Given a database without the table (as 0.1.0 left it)
    url = f"sqlite://{tmp_path}/old.db"
    b = open_broker(url)
    b.conn.execute("DROP TABLE history")
    b.close()
    # When it is opened again
    b = open_broker(url)
    # Then the history works, and the data format is unchanged
    try:
        b.record_history([Q], now_ms=T0)
        assert b.history([Q], 0) == {Q: [(T0, 0, 0)]}
        assert b.check_format() == 1
    finally:
        b.close()
