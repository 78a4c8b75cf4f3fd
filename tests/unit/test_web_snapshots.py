"""The dashboard's shared snapshot, gzip negotiation and job-view paging, without
a server or a broker: a fake clock, a fake broker."""
import json
import threading

from mpqueue.core import envelope as jobmod
from mpqueue.web import views
from mpqueue.web.cache import SnapshotCache
from mpqueue.web.compress import accepts_gzip


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_a_snapshot_is_computed_once_per_interval_and_again_after_it_or_a_clear():
    clock, made = Clock(), []
    cache = SnapshotCache(2.5, clock=clock)
    compute = lambda: made.append(1) or len(made)  # noqa: E731
    assert [cache.get("a", compute) for _ in range(5)] == [1] * 5
    clock.now += 2.4
    assert cache.get("a", compute) == 1
    clock.now += 0.2
    assert cache.get("a", compute) == 2
    cache.clear()
    assert cache.get("a", compute) == 3 and cache.get("b", compute) == 4


def test_tabs_asking_at_once_wait_for_one_computation():
    cache, started, release, made = SnapshotCache(60), threading.Event(), threading.Event(), []

    def slow():
        made.append(1)
        started.set()
        release.wait(5)
        return "state"
    results = []
    tabs = [threading.Thread(target=lambda: results.append(cache.get("k", slow))) for _ in range(8)]
    for t in tabs:
        t.start()
    started.wait(5)
    release.set()
    for t in tabs:
        t.join(5)
    assert results == ["state"] * 8 and made == [1]


def test_the_cache_keeps_a_bounded_number_of_pages():
    cache = SnapshotCache(60, max_keys=3)
    for k in range(10):
        cache.get(k, lambda k=k: k)
    assert list(cache._entries) == [7, 8, 9]


def test_gzip_is_sent_only_to_clients_that_accept_it():
    assert accepts_gzip("gzip, deflate, br") and accepts_gzip("br;q=1.0, gzip;q=0.8") and accepts_gzip("*")
    assert not accepts_gzip("") and not accepts_gzip("identity") and not accepts_gzip("gzip;q=0")


class FakeBroker:
    """failed() newest first over per-queue lists of (id, envelope, error)."""

    def __init__(self, failed: dict):
        self.store, self.reads = failed, 0

    def failed(self, queue, limit=100, offset=0, newest_first=False):
        self.reads += 1
        rows = self.store[queue] if newest_first else self.store[queue][::-1]
        return rows[offset:offset + limit]


def failures(queue, n, at0, task="m:t"):
    rows = []
    for i in reversed(range(n)):          # newest first
        job_id, env = jobmod.encode(task, [i])
        rows.append((job_id, env, json.dumps({"type": "error", "message": f"{queue} {i}", "at": at0 + i})))
    return rows


def test_one_queue_pages_by_rank_and_all_queues_merge_newest_first():
    broker = FakeBroker({"a": failures("a", 30, 1000.0), "b": failures("b", 30, 1000.5)})
    counts = {q: {"failed": 30, "scheduled": 0} for q in "ab"}
    page = views.read(broker, views.ViewQuery(queue="a", offset=20, limit=5), ["a", "b"], counts)
    assert [r["message"] for r in page["rows"]] == [f"a {i}" for i in (9, 8, 7, 6, 5)]
    assert (page["total"], page["exact"]) == (30, True)
    merged = views.read(broker, views.ViewQuery(limit=4), ["a", "b"], counts)
    assert [r["message"] for r in merged["rows"]] == ["b 29", "a 29", "b 28", "a 28"]
    deep = views.read(broker, views.ViewQuery(offset=1990, limit=50), ["a", "b"], counts)
    assert deep["rows"] == [] and "choose a queue" in deep["note"]


def test_a_filter_reads_at_most_the_scan_limit_and_says_how_much_it_searched(monkeypatch):
    monkeypatch.setattr(views, "SCAN_LIMIT", 40)
    monkeypatch.setattr(views, "SCAN_CHUNK", 10)
    broker = FakeBroker({"a": failures("a", 25, 0.0, task="m:report") + failures("a", 75, 100.0)})
    broker.store["a"].sort(key=lambda r: -json.loads(r[2])["at"])
    page = views.read(broker, views.ViewQuery(task="report", limit=10), ["a"], {"a": {"failed": 100}})
    assert (page["searched"], page["of"], page["exact"], page["total"], page["rows"]) == (40, 100, False, 0, [])
    assert broker.reads == 4
    everything = views.read(broker, views.ViewQuery(task="m:t", limit=10), ["a"], {"a": {"failed": 30}})
    assert everything["total"] == 30 and everything["exact"] and len(everything["rows"]) == 10
