"""Many waits at once on every broker: result() from a thousand threads and
aresult() from a thousand tasks of one loop all return, and the awaitable
handles answer as the blocking ones do (issue #27, items 2 and 10)."""
import asyncio
import json
import resource
import threading

import pytest

from mpqueue import JobCancelled, JobFailed, JobUnknown, ResultTimeout
from mpqueue.brokers import Ack
from mpqueue.core import envelope as jobmod
from mpqueue.producer.client import Client
from tests.support import wait_for

Q = "waits"


@pytest.fixture
def client(broker):
    c = Client(broker.url, broker=broker)
    yield c
    c._calls.close()


@pytest.fixture
def open_files():
    """Room for a descriptor per waiter where they need one (SQLite's FIFOs): the
    soft limit raised as far as the hard one allows, and put back after."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 8192 if hard == resource.RLIM_INFINITY else min(hard, 8192)
    if want < 3000:
        pytest.skip(f"the hard limit on open files here is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def counting_waits(broker):
    """A list that gets a job's id once its waiter is watching it and has looked it
    up once more (what result() does before it sleeps). Jobs are ended only after
    that: today's find() is not atomic, and can miss a job that moves from ready
    to done while it reads (branch `exact` makes it so)."""
    made, watching = [], set()
    original_watch, original_find = broker.watch, broker.find

    def watch(queue, job_id):
        w = original_watch(queue, job_id)
        watching.add(job_id)
        return w

    def find(queue, job_id):
        found = original_find(queue, job_id)
        if job_id in watching:
            watching.discard(job_id)
            made.append(job_id)
        return found
    broker.watch, broker.find = watch, find
    return made


def end_all(broker, count):
    """Reserve and ack `count` jobs of Q, each with its own id as its result."""
    left = count
    while left:
        reserved, _ = broker.reserve(Q, "c1", min(left, 200), 60.0)
        jobs = [jobmod.decode(r.envelope, Q, r.token) for r in reserved]
        broker.ack(Q, [Ack(j.id, j.token, json.dumps({"task": j.task, "attempts": 1, "result": j.id}), 60, True)
                       for j in jobs])
        left -= len(jobs)


def test_1200_threads_each_waiting_on_result_all_get_it(client, broker, open_files):
    # Given 1,200 jobs and a thread waiting on result() for each, all waiting at once
    n = 1200
    handles = [client.push(Q, "t:f") for _ in range(n)]
    made = counting_waits(broker)
    results, errors = {}, []

    def wait(h):
        try:
            results[h.id] = h.result(timeout=120)
        except Exception as exc:        # noqa: BLE001 - collected, asserted below
            errors.append(exc)
    threads = [threading.Thread(target=wait, args=(h,)) for h in handles]
    for t in threads:
        t.start()
    try:
        wait_for(lambda: errors or len(made) == n, timeout=120, what="every thread waiting")
        assert not errors, f"{len(errors)} waits failed, the first: {errors[0]!r}"
        # When every job ends
        end_all(broker, n)
    finally:
        for t in threads:
            t.join(timeout=120)
    # Then every thread has its job's result, and none failed
    assert not errors, f"{len(errors)} waits failed, the first: {errors[0]!r}"
    assert results == {h.id: h.id for h in handles}


def test_1000_concurrent_aresult_awaits_in_one_loop_all_get_it(client, broker, open_files):
    # Given 1,000 jobs and a task of one event loop awaiting aresult() for each
    n = 1000
    handles = [client.push(Q, "t:f") for _ in range(n)]
    made = counting_waits(broker)

    async def main():
        waits = [asyncio.ensure_future(h.aresult(timeout=120)) for h in handles]
        # When every await is waiting, and then every job ends
        while len(made) < n and not any(w.done() for w in waits):
            await asyncio.sleep(0.01)
        await asyncio.to_thread(end_all, broker, n)
        return await asyncio.gather(*waits)
    # Then each await returns its job's result
    assert asyncio.run(main()) == [h.id for h in handles]


def test_aresult_astatus_and_acancel_answer_as_the_blocking_handles_do(client, broker):
    ok, bad, gone, slow = (client.push(Q, "t:f") for _ in range(4))
    made = counting_waits(broker)

    async def waiting_for(handle):
        """handle.aresult() in a task, once it is watching (so the job may move)."""
        task = asyncio.ensure_future(handle.aresult(timeout=30))
        while handle.id not in made and not task.done():
            await asyncio.sleep(0.005)
        return task

    async def main():
        assert await ok.astatus() == "ready"
        # A job that ends while awaited: its result
        reserved, _ = await asyncio.to_thread(broker.reserve, Q, "c1", 1, 60.0)
        job = jobmod.decode(reserved[0].envelope, Q, reserved[0].token)
        assert await client.astatus(ok.id) == "running"
        waiting = await waiting_for(ok)
        await asyncio.to_thread(broker.ack, Q, [Ack(job.id, job.token, json.dumps({"result": [1, 2]}), 60, True)])
        assert await waiting == [1, 2]
        assert await ok.astatus() == "done"
        # A failed one raises its error
        reserved, _ = await asyncio.to_thread(broker.reserve, Q, "c1", 1, 60.0)
        job = jobmod.decode(reserved[0].envelope, Q, reserved[0].token)
        error = json.dumps({"type": "ValueError", "message": "no", "traceback": "", "attempts": 1})
        await asyncio.to_thread(broker.fail, Q, job.id, job.token, error)
        with pytest.raises(JobFailed) as failed:
            await client.aresult(job.id, timeout=30)
        assert failed.value.type == "ValueError"
        # A cancelled one raises JobCancelled, to an await that was waiting for it too
        waiting = await waiting_for(gone)
        assert await gone.acancel() is True
        with pytest.raises(JobCancelled):
            await waiting
        assert await client.acancel(gone.id) is False
        # A timeout is a ResultTimeout that names the state; an unknown id, JobUnknown
        with pytest.raises(ResultTimeout, match="ready"):
            await slow.aresult(timeout=0.05)
        with pytest.raises(JobUnknown):
            await client.aresult("0" * 16, timeout=1, queue=Q)
        with pytest.raises(ValueError):
            await slow.aresult(timeout=-1)
        assert await client.astatus("0" * 16, queue=Q) == "unknown"
    asyncio.run(main())
    assert bad.status() == "failed"


def test_aresult_awaits_hold_no_thread_each(client, broker):
    # Given 200 awaits of one loop waiting at once
    handles = [client.push(Q, "t:f") for _ in range(200)]
    made = counting_waits(broker)
    before = threading.active_count()

    async def main():
        waits = [asyncio.ensure_future(h.aresult(timeout=60)) for h in handles]
        while len(made) < len(handles):
            await asyncio.sleep(0.01)
        # Then the process runs a few threads more, not one per await
        during = threading.active_count()
        await asyncio.to_thread(end_all, broker, len(handles))
        await asyncio.gather(*waits)
        return during
    assert asyncio.run(main()) - before <= 16


def test_a_cancelled_aresult_leaves_no_watch_behind(client, broker):
    # Given awaits of jobs that never end, cancelled as a request timeout would
    handles = [client.push(Q, "t:f") for _ in range(20)]
    opened, closed = [], []
    original = broker.watch

    def watch(queue, job_id):
        w = original(queue, job_id)
        opened.append(job_id)
        close = w.close
        w.close = lambda: (closed.append(job_id), close())
        return w
    broker.watch = watch

    async def main():
        waits = [asyncio.ensure_future(h.aresult()) for h in handles]
        for delay in range(len(waits)):          # cancelled at different points of their start
            await asyncio.sleep(0.001 * delay)
            waits[delay].cancel()
        await asyncio.gather(*waits, return_exceptions=True)
    asyncio.run(main())
    # Then every watch opened is closed, now or once its call returns
    wait_for(lambda: sorted(closed) == sorted(opened), 10, what="every watch closed")
