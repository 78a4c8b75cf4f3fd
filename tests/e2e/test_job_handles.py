"""Job handles end to end: a real `mpqueue run` runs the jobs a producer waits
for, cancels while they wait, asks to stop, or kills; and `mpqctl cancel`."""
import json

import pytest

from mpqueue import Client, JobCancelled, JobFailed
from tests.e2e.test_ctl import ctl, one_line_error
from tests.support import TASKS, wait_for

HANDLE_TASKS = TASKS + '''
@mpqueue.task(queue="default")
def add(a, b):
    return a + b

@mpqueue.task(queue="default", retries=0)
def refuse(msg):
    raise ValueError(msg)

@mpqueue.task(queue="default", retries=2, retry_delay=0.05, on_failure=task_hook)
def cooperative(tag):
    """Works until asked to stop, then raises (a cancelled job runs no hook either)."""
    r().rpush("test:starts", f"{tag} {os.getpid()}")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if mpqueue.current_job().cancelled:
            r().rpush("test:stopped", tag)
            raise RuntimeError("stopped on request")
        time.sleep(0.05)  # ok: a task doing its work in small steps
    return "never asked"

@mpqueue.task(queue="default", retries=2, retry_delay=0.05, on_failure=task_hook)
async def sleeper(tag):
    """An async task that never looks: cancelling the job cancels its asyncio task."""
    import asyncio
    r().rpush("test:starts", f"{tag} {os.getpid()}")
    try:
        await asyncio.sleep(30)
    except asyncio.CancelledError:
        r().rpush("test:stopped", tag)
        raise
    return "slept"

@mpqueue.task(queue="default", retries=2, retry_delay=0.05, on_failure=task_hook, timeout=60)
def stuck(tag):
    """Never looks at current_job().cancelled: only a kill stops it."""
    r().rpush("test:starts", f"{tag} {os.getpid()}")
    time.sleep(3600)  # ok: a job stuck for good
'''


pytestmark = pytest.mark.each_broker


def started(rdb, n=1):
    return wait_for(lambda: len(rdb.lrange("test:starts", 0, -1)) >= n and rdb.lrange("test:starts", 0, -1), 15,
                    what=f"{n} job(s) started")


def test_result_returns_what_the_service_ran(service, broker_url):
    service(tasks=HANDLE_TASKS).start()
    client = Client(broker_url)
    handles = [client.push("default", "testtasks:add", [i, 100]) for i in range(5)]
    assert [h.result(timeout=15) for h in handles] == [100, 101, 102, 103, 104]
    assert client.status(handles[0]) == "done"
    failing = client.push("default", "testtasks:refuse", ["no stock"])
    with pytest.raises(JobFailed) as caught:
        client.result(failing.id, timeout=15)
    assert "no stock" in caught.value.message and failing.status() == "failed"


def test_a_waiting_job_cancelled_never_runs(service, broker_url, rdb):
    # Given jobs waiting while no worker runs
    client = Client(broker_url)
    doomed = client.push("default", "testtasks:record", ["doomed"])
    later = client.push("default", "testtasks:record", ["later"], delay=0.5)
    kept = client.push("default", "testtasks:record", ["kept"])
    assert doomed.cancel() and later.cancel()
    # When the service starts, only the one left runs
    service(tasks=HANDLE_TASKS).start()
    assert kept.result(timeout=15) == "kept"
    assert [r.split()[0] for r in rdb.lrange("test:runs", 0, -1)] == ["kept"]
    assert doomed.status() == "cancelled" and later.status() == "cancelled"


def test_a_running_cooperative_job_stops_when_asked_and_ends_cancelled(service, broker_url, rdb):
    service(tasks=HANDLE_TASKS).start()
    client = Client(broker_url)
    h = client.push("default", "testtasks:cooperative", ["coop"])
    started(rdb)
    assert h.status() == "running"
    # When it is cancelled, it sees current_job().cancelled, stops, and the result says so
    assert h.cancel() is True
    with pytest.raises(JobCancelled):
        h.result(timeout=15)
    assert rdb.lrange("test:stopped", 0, -1) == ["coop"]
    # Then it ran once, was not retried, and its failure hook did not run
    assert h.status() == "cancelled" and len(rdb.lrange("test:starts", 0, -1)) == 1
    assert rdb.lrange("test:hooked", 0, -1) == []
    assert h.cancel() is False


def test_a_running_async_job_is_cancelled_when_asked(service, broker_url, rdb):
    service(tasks=HANDLE_TASKS).start()
    client = Client(broker_url)
    h = client.push("default", "testtasks:sleeper", ["zz"])
    started(rdb)
    assert h.cancel()
    with pytest.raises(JobCancelled):
        h.result(timeout=15)
    assert rdb.lrange("test:stopped", 0, -1) == ["zz"] and rdb.lrange("test:hooked", 0, -1) == []
    assert len(rdb.lrange("test:starts", 0, -1)) == 1


def test_cancel_with_kill_stops_a_stuck_job_and_replaces_its_worker(service, broker_url, rdb):
    svc = service({"queues": {"default": {"workers": 1}}}, tasks=HANDLE_TASKS).start()
    client = Client(broker_url)
    h = client.push("default", "testtasks:stuck", ["stuck"])
    (start,) = started(rdb)
    pid = int(start.split()[1])
    # When it is cancelled with kill, its worker is killed and it ends as cancelled
    assert h.cancel(kill=True)
    with pytest.raises(JobCancelled):
        h.result(timeout=15)
    wait_for(lambda: svc.worker_pids() and pid not in svc.worker_pids(), 15, what="the worker replaced")
    # Then it is not run again, no hook ran, and the new worker takes new jobs
    assert client.push("default", "testtasks:add", [1, 2]).result(timeout=15) == 3
    assert len(rdb.lrange("test:starts", 0, -1)) == 1 and rdb.lrange("test:hooked", 0, -1) == []
    assert h.status() == "cancelled"
    c = client.broker.counts("default")
    assert (c["failed"], c["running"], c["ready"], c["scheduled"]) == (0, 0, 0, 0)
    assert svc.stop() == 0


def test_mpqctl_cancel(service, broker_url, rdb):
    client = Client(broker_url)
    client.broker.add_queues(["default"])
    h = client.push("default", "testtasks:record", ["x"])
    out = ctl("--json", "cancel", h.id, url=broker_url)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"id": h.id, "queue": "default", "outcome": "cancelled"}
    assert "already" in one_line_error(ctl("cancel", h.id, url=broker_url), 1)
    assert "not found" in one_line_error(ctl("cancel", "nosuchjob", url=broker_url), 1)
    one_line_error(ctl("cancel", "bad id!", url=broker_url), 2)
    # a running job: asked to stop
    service(tasks=HANDLE_TASKS).start()
    running = client.push("default", "testtasks:cooperative", ["c"])
    started(rdb)
    out = ctl("cancel", running.id, "-q", "default", url=broker_url)
    assert out.returncode == 0 and "asked to stop" in out.stdout, out.stderr
    wait_for(lambda: running.status() == "cancelled", 15, what="cancelled")


def test_mpqctl_push_with_an_id_pushes_once_while_the_job_lives(broker_url):
    client = Client(broker_url)
    client.broker.add_queues(["default"])
    first = ctl("--json", "push", "default", "testtasks:record", "--id", "order-7", url=broker_url)
    assert first.returncode == 0 and json.loads(first.stdout) == {"id": "order-7", "duplicate": False}, first.stderr
    again = ctl("push", "default", "testtasks:record", "--id", "order-7", url=broker_url)
    assert again.returncode == 0 and again.stdout.strip() == "order-7"
    assert again.stderr.strip() == "mpqctl: job order-7 is waiting or running already: nothing pushed"
    assert client.broker.counts("default")["ready"] == 1
    assert "job_id" in one_line_error(ctl("push", "default", "m:f", "--id", "0123456789abcdef", url=broker_url), 1)
    one_line_error(ctl("push", "default", "m:f", "--id", "no spaces", url=broker_url), 2)
