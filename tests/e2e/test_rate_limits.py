"""A queue's rate limit with real processes: three services of one name on one
broker share the limit (20 a second between them, not 60), in grab and dispatch
mode, on Redis and SQLite; a reload that changes it applies it. Each job stamps
its own start, and the stamps are what is checked."""
from __future__ import annotations

import time

import yaml

import mpqueue
from tests.e2e.test_reload import reload_cmd
from tests.support import TASKS, Service, wait_for

STAMPING = TASKS + '''

@mpqueue.task(queue="sms")
def send_sms(i):
    r().rpush("test:sms:" + os.environ["MPQ_TEST_BROKER_KIND"], f"{time.time()} {os.getpid()} {i}")
'''


def most_in_a_window(stamps: list[float], width: float = 1.0) -> int:
    """The most stamps in any window [t, t + width) (t: each stamp: the fullest window starts at one)."""
    stamps, most, j = sorted(stamps), 0, 0
    for i, t in enumerate(stamps):
        while j < len(stamps) and stamps[j] < t + width:
            j += 1
        most = max(most, j - i)
    return most


def services(tmp_path, redis_url, broker: str, kind: str, n: int, queue: dict) -> list[Service]:
    out = []
    for k in range(n):
        svc = Service(tmp_path / f"{kind}{k}", redis_url, {"queues": {"sms": queue}}, tasks=STAMPING,
                      name="sms", broker=broker)
        out.append(svc.start(extra_env={"MPQ_TEST_BROKER_KIND": kind}))
    return out


def starts(rdb, kind: str) -> list[tuple[float, int]]:
    return [(float(t), int(pid)) for t, pid, _ in (row.split() for row in rdb.lrange(f"test:sms:{kind}", 0, -1))]


def test_three_nodes_share_a_rate_of_20_a_second_for_a_minute_on_redis_and_sqlite(tmp_path, redis_url, rdb):
    # Given, on each broker, three services of one name with 2 workers each, `rate: 20/s`,
    # and more jobs waiting than a minute at that rate can start
    brokers = {"redis": redis_url, "sqlite": f"sqlite://{tmp_path}/broker.db"}
    for url in brokers.values():
        mpqueue.Client(url).push_many("sms", ({"task": "testtasks:send_sms", "args": [i]} for i in range(1500)))
    running = {kind: services(tmp_path, redis_url, url, kind, 3, {"workers": 2, "rate": "20/s"})
               for kind, url in brokers.items()}
    try:
        # When they run for a minute (both brokers at once: one minute of the suite, not two)
        wait_for(lambda: all(starts(rdb, kind) for kind in brokers), 30, what="the first jobs")
        first = min(t for kind in brokers for t, _ in starts(rdb, kind))
        wait_for(lambda: time.time() > first + 62, 70, 0.5, what="a minute of jobs")
        for kind in brokers:
            got = [(t, pid) for t, pid in starts(rdb, kind) if t < first + 60]
            times = [t for t, _ in got]
            # Then no second holds more than 20 starts, plus the one burst job; and the limit
            # is not much stricter than asked: a minute starts about 1,200 (the rate ± 5%)
            assert most_in_a_window(times) <= 21, (kind, most_in_a_window(times))
            assert 1140 <= len(times) <= 1221, (kind, len(times))
            # and every node took part
            pids = {pid for _, pid in got}
            nodes = [{pid for pid in svc.worker_pids()} for svc in running[kind]]
            assert all(pids & node for node in nodes), (kind, pids, nodes)
    finally:
        for group in running.values():
            for svc in group:
                svc.stop()


def test_in_dispatch_mode_two_nodes_share_the_limit(tmp_path, redis_url, rdb):
    brokers = {"redis": redis_url, "sqlite": f"sqlite://{tmp_path}/broker.db"}
    for url in brokers.values():
        mpqueue.Client(url).push_many("sms", ({"task": "testtasks:send_sms", "args": [i]} for i in range(400)))
    running = [svc for kind, url in brokers.items()
               for svc in services(tmp_path, redis_url, url, kind, 2,
                                   {"workers": 2, "mode": "dispatch", "rate": "10/s", "rate_burst": 2})]
    try:
        wait_for(lambda: all(starts(rdb, kind) for kind in brokers), 30, what="the first jobs")
        first = min(t for kind in brokers for t, _ in starts(rdb, kind))
        wait_for(lambda: time.time() > first + 11, 20, 0.5, what="10 s of jobs")
        for kind in brokers:
            times = [t for t, _ in starts(rdb, kind) if t < first + 10]
            assert most_in_a_window(times) <= 12, (kind, most_in_a_window(times))
            assert 90 <= len(times) <= 102, (kind, len(times))
    finally:
        for svc in running:
            svc.stop()


def test_a_reload_applies_a_changed_rate(tmp_path, redis_url, rdb):
    # Given a service at 5 jobs a second with plenty waiting
    mpqueue.Client(redis_url).push_many("sms", ({"task": "testtasks:send_sms", "args": [i]} for i in range(500)))
    (svc,) = services(tmp_path, redis_url, redis_url, "redis", 1, {"workers": 2, "rate": "5/s"})
    try:
        wait_for(lambda: starts(rdb, "redis"), 30, what="the first job")
        t0 = starts(rdb, "redis")[0][0]
        wait_for(lambda: time.time() > t0 + 3.2, 10, 0.1, what="3 s at the first rate")
        slow = [t for t, _ in starts(rdb, "redis") if t0 <= t < t0 + 3]
        # When its YAML says 20 a second and it is reloaded
        cfg = yaml.safe_load(svc.config_path.read_text())
        cfg["queues"]["sms"]["rate"] = "20/s"
        svc.config_path.write_text(yaml.safe_dump(cfg))
        assert reload_cmd(svc).returncode == 0        # `mpqueue reload` returns once it is done
        t1 = time.time()
        wait_for(lambda: time.time() > t1 + 3.2, 10, 0.1, what="3 s at the new rate")
        fast = [t for t, _ in starts(rdb, "redis") if t1 <= t < t1 + 3]
        # Then the new rate applies: about 15 then, about 60 now
        assert 14 <= len(slow) <= 17, len(slow)
        assert 54 <= len(fast) <= 62, len(fast)
    finally:
        svc.stop()
