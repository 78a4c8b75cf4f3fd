"""A worker's event loop outlives what its jobs do to it: an async job, or a task
it left running, that raises SystemExit or KeyboardInterrupt, or a job that
calls loop.stop(). The loop runs on, the job that did it is named in one log
line, and no other job is charged (no timeout, no crash, no attempt spent).
Real `mpqueue run`, both brokers, the loop in the main thread (concurrency 1)
and on its own thread (concurrency 4)."""
from __future__ import annotations

import pytest

from tests.support import TASKS, wait_for

LOOP_TASKS = TASKS + '''
import asyncio, sys

_kept = []      # the tasks jobs left running (asyncio keeps only weak references)

def _exception(what):
    return {"exit": SystemExit(3), "interrupt": KeyboardInterrupt("from a task")}[what]

async def _raise_later(what):
    await asyncio.sleep(0.3)
    raise _exception(what)

@mpqueue.task(queue="default", retries=0)
async def leaves(what):
    """Returns at once, leaving a task that raises `what` a moment later."""
    _kept.append(asyncio.get_running_loop().create_task(_raise_later(what), name="left-behind"))
    return "left"

@mpqueue.task(queue="default", retries=0)
async def awaits_child(what):
    """Awaits a task of its own that raises `what`: this job fails, nothing else."""
    await asyncio.get_running_loop().create_task(_raise_later(what))

@mpqueue.task(queue="default", retries=0)
async def raises(what):
    await asyncio.sleep(0)
    raise _exception(what)

@mpqueue.task(queue="default", retries=0)
async def stops_loop():
    asyncio.get_running_loop().stop()
    await asyncio.sleep(0.2)
    return "after stop"

@mpqueue.task(queue="default", retries=0)
async def callback_exits():
    asyncio.get_running_loop().call_later(0.3, sys.exit, 4)
    return "scheduled"

@mpqueue.task(queue="default")
async def innocent(tag, seconds):
    j = mpqueue.current_job()
    r().rpush("test:starts", f"{tag} {j.attempt} {os.getpid()}")
    await asyncio.sleep(seconds)
    r().rpush("test:runs", f"{tag} {j.attempt} {os.getpid()}")
    return tag
'''


pytestmark = pytest.mark.each_broker


def run_service(service, concurrency):
    # A short timeout: a dead loop would fail an innocent job as `timeout` within seconds.
    return service({"queues": {"default": {"workers": 1, "concurrency": concurrency, "timeout": 3,
                                           "retry_delay": 0}}}, tasks=LOOP_TASKS).start()


def final(client, job_id, timeout=20.0):
    return wait_for(lambda: (s := client.broker.find("default", job_id)) and s["state"] in ("done", "failed") and s,
                    timeout, what=f"job {job_id} done or failed")


def lines_naming(svc, job_id, needle):
    return [line for line in svc.log().splitlines() if job_id in line and needle in line]


def innocents_ran_once_on(client, rdb, svc, pid, ids):
    """Every innocent job is done on its first attempt, in the same worker, which still lives."""
    for job_id in ids:
        found = final(client, job_id)
        assert found["state"] == "done", found
    assert sorted(rdb.lrange("test:runs", 0, -1)) == sorted(f"i{n} 1 {pid}" for n in range(len(ids)))
    assert svc.worker_pids() == [pid]


@pytest.mark.parametrize("concurrency", [1, 4])
@pytest.mark.parametrize("what, name", [("exit", "SystemExit"), ("interrupt", "KeyboardInterrupt")])
def test_a_task_left_behind_that_raises_an_exit_is_logged_against_its_job_and_charges_no_other(
        service, client, rdb, concurrency, what, name):
    # Given a worker, and a job that leaves a task behind which raises `what` 0.3 s later
    svc = run_service(service, concurrency)
    (pid,) = svc.worker_pids()
    culprit = client.push("default", "testtasks:leaves", args=[what])
    # When innocent jobs run while that task raises (with one slot, the next job runs the loop)
    ids = [client.push("default", "testtasks:innocent", args=[f"i{n}", 1.0]) for n in range(2)]
    # Then the culprit is done (it returned), each innocent job is done once, the worker lives
    assert final(client, culprit)["state"] == "done"
    innocents_ran_once_on(client, rdb, svc, pid, ids)
    # and one line names the culprit and what its task raised
    line = wait_for(lambda: lines_naming(svc, culprit, name), 10, what="the line naming the culprit")
    assert len(line) == 1 and "left-behind" in line[0], svc.log()
    assert "blocked the event loop" not in svc.log() and "died" not in svc.log()


@pytest.mark.parametrize("concurrency", [1, 4])
def test_a_job_whose_own_code_or_awaited_task_raises_an_exit_fails_alone(service, client, rdb, concurrency):
    svc = run_service(service, concurrency)
    (pid,) = svc.worker_pids()
    own = client.push("default", "testtasks:raises", args=["exit"])
    child = client.push("default", "testtasks:awaits_child", args=["interrupt"])
    ids = [client.push("default", "testtasks:innocent", args=[f"i{n}", 0.5]) for n in range(2)]
    for job_id, name in ((own, "SystemExit"), (child, "KeyboardInterrupt")):
        found = final(client, job_id)
        assert (found["state"], found["error"]["type"]) == ("failed", "error")
        assert name in found["error"]["message"]
    innocents_ran_once_on(client, rdb, svc, pid, ids)


@pytest.mark.parametrize("concurrency", [1, 4])
def test_a_job_that_stops_the_loop_finds_it_running_again_and_charges_no_other(service, client, rdb, concurrency):
    svc = run_service(service, concurrency)
    (pid,) = svc.worker_pids()
    ids = [client.push("default", "testtasks:innocent", args=[f"i{n}", 1.0]) for n in range(2)]
    culprit = client.push("default", "testtasks:stops_loop")
    found = final(client, culprit)
    assert (found["state"], found["result"]) == ("done", "after stop")
    innocents_ran_once_on(client, rdb, svc, pid, ids)
    assert len(lines_naming(svc, culprit, "stopped the event loop")) == 1, svc.log()


@pytest.mark.parametrize("concurrency", [1, 4])
def test_a_callback_left_behind_that_raises_an_exit_is_logged_and_charges_no_job(service, client, rdb, concurrency):
    svc = run_service(service, concurrency)
    (pid,) = svc.worker_pids()
    culprit = client.push("default", "testtasks:callback_exits")
    ids = [client.push("default", "testtasks:innocent", args=[f"i{n}", 1.0]) for n in range(2)]
    assert final(client, culprit)["state"] == "done"
    innocents_ran_once_on(client, rdb, svc, pid, ids)
    wait_for(lambda: "a callback on the event loop raised SystemExit: 4" in svc.log(), 10, what="the line")
