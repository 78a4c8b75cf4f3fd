"""The dashboard's sparklines (web/history.py): the broker's minute points, this
process's 5 s samples after them, and the rule choosing between the two; pure
data, explicit times."""
from __future__ import annotations

from mpqueue.brokers.base import HISTORY_KEEP_MS
from mpqueue.web.history import REFRESH, History

MIN = 60_000
T0 = 1_765_000_020_000          # a minute's start, epoch ms
Q = "emails"


def history(points=None, samples=()):
    """A History whose broker holds `points` of Q, refreshed at the first sample time."""
    reads = []

    def read_points(queues, since_ms):
        reads.append((list(queues), since_ms))
        return {q: list(points or []) if q == Q else [] for q in queues}
    h = History(read_points=read_points)
    for at, done, failed in samples:
        h.record({Q: {"done_total": done, "failed_total": failed}}, at)
    h.refresh([Q], samples[0][0] if samples else T0 / 1000 + 3600)
    h.reads = reads
    return h


def test_without_broker_points_the_series_is_the_5_second_samples():
    h = history(samples=[(1000.0, 0, 0), (1005.0, 4, 1), (1010.0, 3, 1), (1015.0, 5, 1)])
    assert h.series(Q) == {"every": 5.0, "done": [4, 0, 2], "failed": [1, 0, 0],
                           "done_per_min": 24.0, "failed_per_min": 4.0}


def test_broker_points_give_jobs_per_minute_and_the_recent_average_rate():
    # Given a day's points of one minute each, and no samples yet
    h = history(points=[(T0, 10, 1), (T0 + MIN, 16, 1), (T0 + 2 * MIN, 20, 3)])
    # Then each minute shows its difference, and the rate is their average
    assert h.series(Q) == {"every": 60.0, "done": [6, 4], "failed": [0, 2],
                           "done_per_min": 5.0, "failed_per_min": 1.0}


def test_a_gap_between_points_shares_its_jobs_over_its_minutes_and_a_flush_counts_zero():
    # Given no point for two minutes (no supervisor wrote), then a flushed broker
    h = history(points=[(T0, 0, 0), (T0 + 3 * MIN, 7, 0), (T0 + 4 * MIN, 2, 0)])
    assert h.series(Q)["done"] == [2, 2, 3, 0]


def test_samples_after_the_newest_point_extend_it_to_now_and_give_the_rate():
    # Given points up to T0+1min, and samples taken during and after it
    t = T0 / 1000
    samples = [(t + 70, 11, 0), (t + 130, 12, 0), (t + 170, 15, 0), (t + 185, 20, 1)]
    h = history(points=[(T0, 0, 0), (T0 + MIN, 10, 0)], samples=samples)
    # Then the minutes after the newest point come from the latest sample of each
    series = h.series(Q)
    assert (series["every"], series["done"], series["failed"]) == (60.0, [10, 5, 5], [0, 0, 1])
    # and the rate is the samples' (9 done in 115 s)
    assert series["done_per_min"] == round(9 * 60 / 115, 1)


def test_the_series_covering_the_longer_span_is_shown():
    # Given a service whose first point is a minute old, and a dashboard sampling for five minutes
    t = T0 / 1000
    h = history(points=[(T0, 0, 0)], samples=[(t - 240 + 5 * i, i, 0) for i in range(61)])
    # Then the 5 s samples are shown until the broker's minutes cover more
    assert h.series(Q)["every"] == 5.0
    # Given two hours of points
    h = history(points=[(T0 + i * MIN, i, 0) for i in range(121)], samples=[(t + 7200 + 5 * i, 120, 0)
                                                                            for i in range(61)])
    assert h.series(Q)["every"] == 60.0 and len(h.series(Q)["done"]) == 120 + 5


def test_the_broker_is_read_for_the_last_day_at_most_every_refresh_interval():
    h = history(points=[(T0, 0, 0)])
    now = T0 / 1000 + 3600
    assert h.reads == [([Q], int(now * 1000) - HISTORY_KEEP_MS)]
    h.refresh([Q], now + REFRESH - 1)
    assert len(h.reads) == 1
    h.refresh([Q, "other"], now + REFRESH)
    assert len(h.reads) == 2 and h.reads[-1][0] == [Q, "other"]


def test_a_queue_the_broker_has_no_points_of_keeps_the_5_second_series():
    h = history(points=[(T0, 0, 0), (T0 + MIN, 3, 0)])
    h.record({"other": {"done_total": 1, "failed_total": 0}}, 100.0)
    h.record({"other": {"done_total": 2, "failed_total": 0}}, 105.0)
    assert h.series("other")["every"] == 5.0 and h.series("other")["done"] == [1]


def test_points_closer_than_a_minute_count_as_their_minutes_latest():
    # Given points a few seconds apart (a broker written at another interval)
    h = history(points=[(T0 + 1000, 1, 0), (T0 + 30_000, 4, 0), (T0 + MIN + 2000, 9, 1), (T0 + MIN + 9000, 10, 1)])
    # Then each minute holds its latest point, and nothing divides by a zero step
    assert h.series(Q)["done"] == [6] and h.series(Q)["failed"] == [1]


def test_a_day_of_minutes_is_sent_as_at_most_144_bars_with_every_job_counted():
    from mpqueue.web.history import MAX_BARS, _coarsen
    day = {"every": 60.0, "done": list(range(1440)), "failed": [1] * 1440, "done_per_min": 3.0}
    bars = _coarsen(day, MAX_BARS)
    assert (bars["every"], len(bars["done"]), len(bars["failed"])) == (600.0, 144, 144)
    assert sum(bars["done"]) == sum(day["done"]) and sum(bars["failed"]) == 1440
    # an uneven count: the oldest bar is the partial one, the newest are whole
    odd = _coarsen({"every": 60.0, "done": [1] * 150, "failed": [0] * 150}, MAX_BARS)
    assert odd["every"] == 120.0 and odd["done"][0] == 2 and sum(odd["done"]) == 150
    assert _coarsen({"every": 60.0, "done": [1] * 10, "failed": [0] * 10}, MAX_BARS)["every"] == 60.0
