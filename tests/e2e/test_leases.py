"""A lease ends only when its holder is really gone: the supervisor renews the
leases of the jobs its live workers hold, so neither a long job nor a
prefetched batch that holds more work than one lease covers is reaped as lost
while it is still being worked on. Real `mpqueue run`, both brokers."""
from __future__ import annotations

import pytest

from mpqueue import Client
from tests.support import wait_for


pytestmark = pytest.mark.each_broker


def test_a_batch_holding_more_work_than_its_leases_cover_loses_nothing(service, broker_url, rdb):
    # Given a lease of 3 s (timeout 2 + grace 1), no retries, and a worker that has
    # just run short jobs, so that it reserves the next six 1.8 s jobs in one batch
    svc = service({"lease_grace": 1, "queues": {"default": {"workers": 1, "timeout": 2, "retries": 0}}}).start()
    client = Client(broker_url)
    jobs = [{"task": "testtasks:noop"} for _ in range(40)]
    jobs += [{"task": "testtasks:sleep_record", "args": [f"slow{i}", 1.8]} for i in range(6)]
    client.push_many("default", jobs)
    # When it works through them (10.8 s, over three times one lease)
    wait_for(lambda: rdb.llen("test:runs") == 6, 40, what="six slow jobs run")
    counts = wait_for(lambda: (c := client.broker.counts("default"))["running"] == 0 and c, 10, what="all acked")
    # Then each ran once and none was reaped as lost
    runs = sorted(r.split()[0] for r in rdb.lrange("test:runs", 0, -1))
    assert runs == [f"slow{i}" for i in range(6)]
    assert (counts["failed"], counts["done_total"]) == (0, 46)
    assert "lease expired" not in svc.log()


def test_a_finished_jobs_ack_does_not_wait_behind_a_slow_job_of_its_batch(service, broker_url, rdb):
    # Given a worker that reserves a short job and a slow one (a task it has not seen) in one batch
    service({"queues": {"default": {"workers": 1}}}).start()
    client = Client(broker_url)
    jobs = [{"task": "testtasks:noop"} for _ in range(40)]
    client.push_many("default", jobs + [{"task": "testtasks:record", "args": ["quick"]},
                                         {"task": "testtasks:hold", "args": ["slow"]}])
    # When the slow one is running
    wait_for(lambda: rdb.lrange("test:starts", 0, -1) and True, 20, what="the slow job to start")
    try:
        # Then the short one before it is already acknowledged: a crash now would not run it again
        c = client.broker.counts("default")
        assert (c["running"], c["done_total"]) == (1, 41)
    finally:
        rdb.rpush("test:release:slow", "go")
    wait_for(lambda: client.broker.counts("default")["running"] == 0, 20, what="the slow job to finish")
