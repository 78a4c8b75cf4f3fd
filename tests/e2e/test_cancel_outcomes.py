"""A cancelled job is logged and counted as cancelled, with what was asked (ask
or kill) and what the job did, never as retried or crashed: a job that raises
when asked, one that returns, an async one whose task is cancelled, one whose
worker is killed on request. Real `mpqueue run` with its metrics endpoint, both
brokers, one job per worker and several."""
from __future__ import annotations

import pytest

from tests.e2e.test_job_handles import HANDLE_TASKS
from tests.e2e.test_metrics import jobs, scrape
from tests.support import free_port, wait_for

CANCEL_TASKS = HANDLE_TASKS + '''
@mpqueue.task(queue="default", retries=2, retry_delay=0.05)
def gives_up(tag):
    """Returns early when asked to stop: its return value is dropped."""
    r().rpush("test:starts", f"{tag} {os.getpid()}")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not mpqueue.current_job().cancelled:
        time.sleep(0.05)  # ok: a task doing its work in small steps
    return "stopped early"
'''


pytestmark = pytest.mark.each_broker


def start(service, concurrency, mode="grab"):
    port = free_port()
    svc = service({"metrics": {"listen": f"127.0.0.1:{port}"},
                   "queues": {"default": {"workers": 1, "concurrency": concurrency, "mode": mode}}},
                  tasks=CANCEL_TASKS).start()
    return svc, port


def lines_of(svc, job_id):
    return [line for line in svc.log().splitlines() if job_id in line]


def counted(port, task, outcome, reason):
    return wait_for(lambda: jobs(scrape(port), outcome, reason, task=task) or None, 10,
                    what=f"{task} counted {outcome} ({reason})")


def no_retry_counted(port, task):
    text = scrape(port)
    return [(o, r) for o in ("retried", "failed") for r in ("error", "timeout", "crashed", "lost")
            if jobs(text, o, r, task=task)]


@pytest.mark.parametrize("concurrency, mode", [(1, "grab"), (4, "grab"), (4, "dispatch")])
@pytest.mark.parametrize("task, did", [("cooperative", "raised RuntimeError: stopped on request"),
                                       ("gives_up", "returned"),
                                       ("sleeper", "raised CancelledError")])
def test_a_job_asked_to_stop_is_logged_and_counted_as_cancelled(service, client, rdb, concurrency, mode, task,
                                                                 did):
    # Given a running job
    svc, port = start(service, concurrency, mode)
    h = client.push("default", f"testtasks:{task}", ["c"])
    wait_for(lambda: rdb.llen("test:starts") == 1, 15, what="the job started")
    # When it is asked to stop, and stops
    assert h.cancel()
    wait_for(lambda: h.status() == "cancelled", 15, what="cancelled")
    # Then one line says cancelled, what was asked and what it did; none says retried
    line = wait_for(lambda: [ln for ln in lines_of(svc, h.id) if "job cancelled" in ln], 10, what="the line")
    assert len(line) == 1 and "(ask)" in line[0] and did in line[0], svc.log()
    assert not [ln for ln in lines_of(svc, h.id) if "retried" in ln or "failed" in ln], svc.log()
    # and the metrics count it cancelled (ask), not retried or failed
    assert counted(port, f"testtasks:{task}", "cancelled", "ask") == 1
    assert no_retry_counted(port, f"testtasks:{task}") == []
    assert jobs(scrape(port), "done", task=f"testtasks:{task}") == 0
    assert rdb.llen("test:starts") == 1


@pytest.mark.parametrize("mode", ["grab", "dispatch"])
@pytest.mark.parametrize("concurrency", [1, 4])
def test_a_job_whose_worker_is_killed_on_request_is_logged_and_counted_as_cancelled(service, client, rdb,
                                                                                    concurrency, mode):
    svc, port = start(service, concurrency, mode)
    h = client.push("default", "testtasks:stuck", ["k"])
    wait_for(lambda: rdb.llen("test:starts") == 1, 15, what="the job started")
    assert h.cancel(kill=True)
    wait_for(lambda: h.status() == "cancelled", 15, what="cancelled")
    # The supervisor settles it: cancelled (kill), not "retried: the worker running it died"
    line = wait_for(lambda: [ln for ln in lines_of(svc, h.id) if "job cancelled" in ln], 10, what="the line")
    assert len(line) == 1 and "(kill)" in line[0] and "killed" in line[0], svc.log()
    assert not [ln for ln in lines_of(svc, h.id) if "retried" in ln or "died" in ln], svc.log()
    assert counted(port, "testtasks:stuck", "cancelled", "kill") == 1
    assert no_retry_counted(port, "testtasks:stuck") == []
    assert rdb.llen("test:starts") == 1
