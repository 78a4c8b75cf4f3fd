"""on_worker_stop (issue #28, item 7): the counterpart of on_worker_start, run in
each worker once its last job has ended, so a worker closes what it opened."""
import pytest

from tests.support import wait_for


@pytest.mark.parametrize("concurrency", [1, 3])
def test_each_worker_runs_its_stop_hooks_queue_first_when_the_service_stops(service, rdb, concurrency):
    # Given a service with a sync service-level and an async queue-level stop hook
    svc = service({"on_worker_stop": "testtasks:on_stop", "queues": {"default": {
        "workers": 2, "concurrency": concurrency, "on_worker_stop": "testtasks:aon_stop"}}}).start()
    pids = sorted(svc.worker_pids())
    assert rdb.lrange("test:stopped", 0, -1) == []
    # When the service stops
    assert svc.stop() == 0
    # Then every worker ran both, the queue's first, in its own process
    lines = rdb.lrange("test:stopped", 0, -1)
    by_pid = {}
    for line in lines:
        by, queue, index, pid = line.split()
        by_pid.setdefault(int(pid), []).append(by)
    assert sorted(by_pid) == pids
    assert all(order == ["queue", "service"] for order in by_pid.values()), lines


def test_a_failing_stop_hook_is_logged_and_the_service_still_stops_cleanly(service, rdb):
    svc = service({"on_worker_stop": "testtasks:on_stop_fails", "queues": {"default": {"workers": 1}}}).start()
    assert svc.stop() == 0
    wait_for(lambda: "stop hook broke" in svc.log(), 5, what="the hook's error logged")
