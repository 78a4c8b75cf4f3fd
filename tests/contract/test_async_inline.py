"""sync:// from async code: `await apush()` runs the job inline, like push(), with
the same retry, failed-store and hook rules, without blocking the caller's loop:
an async task is awaited on that loop, a plain task runs on a thread."""
import asyncio
import json
import sys
import textwrap
import threading

import pytest

import mpqueue
from tests.support import until

TASKS = '''
import asyncio, threading
import mpqueue

RUNS = []
GATE = threading.Event()

@mpqueue.task(queue="default")
async def arecord(tag):
    j = mpqueue.current_job()
    RUNS.append((tag, j.attempt, asyncio.get_running_loop()))
    await asyncio.sleep(0)
    return tag

@mpqueue.task(queue="default")
def record(tag):
    RUNS.append((tag, mpqueue.current_job().attempt, threading.current_thread()))
    return tag

@mpqueue.task(queue="default")
def gated():
    """Runs until the test opens the gate (or 10 s pass)."""
    RUNS.append(("gated", threading.current_thread()))
    GATE.wait(10)

@mpqueue.task(queue="default", retries=2, retry_delay=30)
async def afails():
    RUNS.append(("fail", mpqueue.current_job().attempt))
    raise ValueError("boom")

@mpqueue.task(queue="default")
async def achain(n):
    RUNS.append(("chain", n))
    if n:
        await achain.apush(n - 1)
    RUNS.append(("chain-end", n))

@mpqueue.task(queue="default", timeout=0.2)
async def ahang():
    await asyncio.sleep(3600)

@mpqueue.task(queue="default", timeout=3600, retries=0)
async def await_forever():
    RUNS.append(("started",))
    await asyncio.Event().wait()

class AReport(mpqueue.Task):
    queue = "default"

    async def run(self, tag):
        RUNS.append(("class", tag, asyncio.get_running_loop()))
        return tag

def report(job, error):
    RUNS.append(("hook", job["task"], error["type"], job["attempts"]))
'''


@pytest.fixture
def tasks(tmp_path, monkeypatch):
    (tmp_path / "asynctasks.py").write_text(textwrap.dedent(TASKS))
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("asynctasks", None)
    import asynctasks
    yield asynctasks
    sys.modules.pop("asynctasks", None)


@pytest.fixture
def client(tmp_path):
    cfg = tmp_path / "dev.yaml"
    cfg.write_text("broker: sync://\nimports: [asynctasks]\n"
                   "queues: {default: {workers: 1, on_failure: 'asynctasks:report'}}\n")
    c = mpqueue.connect(str(cfg))
    yield c
    mpqueue.producer.default.set_default_client(None)
    c.close()


def test_apush_awaits_an_async_task_on_the_callers_loop_before_returning(tasks, client):
    async def main():
        job_id = await client.apush("default", "asynctasks:arecord", args=["a"])
        return job_id, asyncio.get_running_loop(), list(tasks.RUNS)
    job_id, loop, runs = asyncio.run(main())
    assert runs == [("a", 1, loop)]
    assert client.broker.find("default", job_id)["result"] == "a"


def test_a_class_task_with_async_run_is_awaited_on_the_callers_loop(tasks, client):
    async def main():
        await tasks.AReport.apush("r")
        return asyncio.get_running_loop()
    loop = asyncio.run(main())
    assert tasks.RUNS == [("class", "r", loop)]


def test_a_plain_task_runs_on_a_thread_while_the_loop_keeps_turning(tasks, client):
    async def main():
        push = asyncio.create_task(tasks.gated.apush())
        await until(lambda: tasks.RUNS, what="the job to start")
        # While the plain task runs (blocked), the loop still runs this coroutine
        assert not push.done()
        tasks.GATE.set()
        return await asyncio.wait_for(push, 10)
    job_id = asyncio.run(main())
    assert tasks.RUNS[0][1] is not threading.main_thread()
    assert client.broker.find("default", job_id)["state"] == "done"


def test_a_failing_async_job_is_retried_then_failed_and_its_hook_runs(tasks, client):
    job_id = asyncio.run(tasks.afails.apush())
    assert tasks.RUNS == [("fail", 1), ("fail", 2), ("fail", 3), ("hook", "asynctasks:afails", "error", 3)]
    (failed_id, _, error), = client.broker.failed("default")
    assert failed_id == job_id and json.loads(error)["message"] == "ValueError: boom"


def test_a_job_apushed_by_a_running_job_runs_after_it_not_inside_it(tasks, client):
    asyncio.run(tasks.achain.apush(2))
    assert tasks.RUNS == [("chain", 2), ("chain-end", 2), ("chain", 1), ("chain-end", 1),
                          ("chain", 0), ("chain-end", 0)]


def test_concurrent_apush_calls_each_return_after_their_own_job_ran(tasks, client):
    async def one(i):
        await client.apush("default", "asynctasks:arecord", args=[i])
        return any(run[0] == i for run in tasks.RUNS)
    async def main():
        return await asyncio.gather(*(one(i) for i in range(50)))
    assert asyncio.run(main()) == [True] * 50
    assert sorted(run[0] for run in tasks.RUNS) == list(range(50))


def test_an_async_jobs_timeout_cancels_the_job_not_the_caller(tasks, client):
    async def main():
        job_id = await tasks.ahang.apush()
        await asyncio.sleep(0)         # the caller was not cancelled: it goes on
        return job_id
    job_id = asyncio.run(main())
    assert client.broker.find("default", job_id)["error"]["type"] == "timeout"


def test_a_cancelled_caller_cancels_its_async_job_which_counts_as_an_error(tasks, client):
    async def main():
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(tasks.await_forever.apush(), 0.2)
        # Then the job is not left running: it failed (retries=0; else it is retried), and
        # the next apush works
        failed = await until(lambda: client.broker.failed("default"), what="the job failed")
        await client.apush("default", "asynctasks:arecord", args=["next"])
        return failed
    (_, _, error), = asyncio.run(main())
    assert json.loads(error)["message"].startswith("CancelledError")
    assert tasks.RUNS[0] == ("started",) and tasks.RUNS[-1][0] == "next"
    assert client.broker.counts("default")["running"] == 0


def test_one_sync_client_works_across_two_event_loops(tasks, client):
    first = asyncio.run(client.apush("default", "asynctasks:arecord", args=[1]))
    second = asyncio.run(client.apush("default", "asynctasks:arecord", args=[2]))
    assert [client.broker.find("default", i)["result"] for i in (first, second)] == [1, 2]


def test_apush_refuses_what_push_refuses_inline_too(tasks, client):
    with pytest.raises(mpqueue.PayloadError) as sync:
        client.push("default", "asynctasks:record", delay=float("nan"))
    with pytest.raises(mpqueue.PayloadError) as aio:
        asyncio.run(client.apush("default", "asynctasks:record", delay=float("nan")))
    assert str(aio.value) == str(sync.value)
    assert tasks.RUNS == []
