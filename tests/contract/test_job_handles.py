"""Job handles on every broker: a job's status through its life, result() waiting
for its end, and cancel (waiting jobs removed atomically, running ones asked)."""
import asyncio
import json
import os
import threading
import time

import pytest

from mpqueue import AmbiguousJob, JobCancelled, JobFailed, JobHandle, JobUnknown, ResultTimeout
from mpqueue.brokers import Ack
from mpqueue.core import envelope as jobmod
from mpqueue.producer.client import Client

Q = "handles"


@pytest.fixture
def client(broker):
    return Client(broker.url, broker=broker)


def take(broker, count=1, consumer="c1", lease=30.0):
    reserved, _ = broker.reserve(Q, consumer, count, lease)
    return [jobmod.decode(r.envelope, Q, r.token) for r in reserved]


def ack(broker, job, result=None, ttl=60):
    record = json.dumps({"task": job.task, "attempts": job.attempts, "result": result})
    return broker.ack(Q, [Ack(job.id, job.token, record, ttl, job.attempts <= 1)])


def error_of(message="boom"):
    return json.dumps({"type": "error", "message": message, "traceback": "", "attempts": 1})


def test_push_returns_a_str_id_that_is_also_a_handle(client):
    h = client.push(Q, "t:f", [1])
    assert isinstance(h, str) and isinstance(h, JobHandle)
    assert h == h.id and len(h) == 16 and h.queue == Q and not h.duplicate
    assert json.dumps({"id": h}) == json.dumps({"id": h.id})


def test_status_follows_a_job_through_its_life(client, broker):
    # Given a job waiting now and one waiting for later
    now, later = client.push(Q, "t:f"), client.push(Q, "t:f", delay=3600)
    assert client.status(now) == "ready" and later.status() == "scheduled"
    # When a worker takes it it runs; when acked it is done
    (job,) = take(broker)
    assert client.status(now.id) == "running"        # a bare id: found by searching the queues
    ack(broker, job, 42)
    assert client.status(now) == "done"
    # A failed job is failed; a job nobody pushed is unknown
    failing = client.push(Q, "t:f")
    (job,) = take(broker)
    broker.fail(Q, job.id, job.token, error_of())
    assert failing.status() == "failed"
    assert client.status("nosuchjob") == "unknown" and client.status("nosuchjob", queue=Q) == "unknown"


def test_result_waits_for_the_end_of_the_job(client, broker):
    h = client.push(Q, "t:f")
    (job,) = take(broker)
    waiting = threading.Event()
    acked_at = []

    def worker():
        waiting.wait(5)
        time.sleep(0.2)             # ok: lets result() block first, which is the point
        acked_at.append(time.monotonic())
        ack(broker, job, {"total": 7})

    t = threading.Thread(target=worker)
    t.start()
    waiting.set()
    value = h.result(timeout=10)
    returned = time.monotonic()
    t.join()
    assert value == {"total": 7}
    assert returned - acked_at[0] < 0.5       # told, not found by a re-check seconds later


def test_result_of_an_ended_job_returns_at_once(client, broker):
    h = client.push(Q, "t:f")
    (job,) = take(broker)
    ack(broker, job, "ok")
    assert client.result(h, timeout=0) == "ok"


def test_result_of_a_failed_job_raises_its_error(client, broker):
    h = client.push(Q, "t:f")
    (job,) = take(broker)

    def fail_soon():
        time.sleep(0.2)             # ok: result() waits meanwhile
        broker.fail(Q, job.id, job.token, error_of("card declined"))

    t = threading.Thread(target=fail_soon)
    t.start()
    with pytest.raises(JobFailed) as caught:
        h.result(timeout=10)
    t.join()
    assert caught.value.message == "card declined" and caught.value.type == "error"
    assert caught.value.job_id == h.id


def test_result_times_out_with_a_timeout_error(client):
    h = client.push(Q, "t:f")
    started = time.monotonic()
    with pytest.raises(ResultTimeout) as caught:
        h.result(timeout=0.3)
    assert isinstance(caught.value, TimeoutError) and caught.value.state == "ready"
    assert 0.3 <= time.monotonic() - started < 3


@pytest.mark.parametrize("bad, error", [(float("nan"), ValueError), (-1, ValueError), ("5", TypeError),
                                        (True, TypeError), ([1], TypeError)])
def test_a_result_timeout_that_is_no_number_of_seconds_is_refused_in_one_line(client, bad, error):
    h = client.push(Q, "t:f")
    with pytest.raises(error, match=r"^timeout: expected None or a number of seconds"):
        h.result(timeout=bad)


def test_result_waits_with_descriptors_numbered_past_1024(client, broker):
    # Given a process holding over a thousand descriptors (select() refuses fd >= 1024)
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1200:
        pytest.skip(f"the hard limit on open files here is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1200), hard))
    held = []
    try:
        while not held or held[-1] < 1100:
            held.append(os.open(os.devnull, os.O_RDONLY))
        # When result() waits for a job that ends meanwhile, its watch on a high descriptor
        h = client.push(Q, "t:f")
        (job,) = take(broker)
        t = threading.Timer(0.2, lambda: ack(broker, job, "fine"))
        t.start()
        # Then it is told, as with few descriptors
        assert h.result(timeout=10) == "fine"
        t.join()
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_bare_caller_id_in_two_queues_is_refused_and_the_queue_says_which(client, broker):
    client.push(Q, "t:f", job_id="order-77")
    client.push(Q + "-2", "t:f", job_id="order-77")
    for ask in (client.status, client.cancel, lambda i: client.result(i, timeout=0)):
        with pytest.raises(AmbiguousJob, match=f"job order-77 is in queues (handles, handles-2|handles-2, handles)"):
            ask("order-77")
    assert client.status("order-77", queue=Q + "-2") == "ready"
    assert client.cancel("order-77", queue=Q) and client.status("order-77", queue=Q) == "cancelled"


def test_result_of_an_unknown_job_raises_at_once(client):
    with pytest.raises(JobUnknown):
        client.result("nosuchjob", timeout=5)


def test_cancel_removes_a_waiting_job_for_good(client, broker):
    ready, scheduled = client.push(Q, "t:f", ["a"]), client.push(Q, "t:f", ["b"], delay=3600)
    kept = client.push(Q, "t:f", ["c"])
    assert ready.cancel() and client.cancel(scheduled.id)
    assert ready.status() == "cancelled" and scheduled.status() == "cancelled"
    assert broker.counts(Q)["ready"] == 1 and broker.counts(Q)["scheduled"] == 0
    assert [j.id for j in take(broker, 10)] == [kept.id]
    with pytest.raises(JobCancelled):
        ready.result(timeout=1)
    # a second cancel, or one of a finished or unknown job, says it did nothing
    assert ready.cancel() is False and client.cancel("nosuchjob") is False


def test_cancel_of_a_finished_job_does_nothing(client, broker):
    h = client.push(Q, "t:f")
    (job,) = take(broker)
    ack(broker, job, 1)
    assert h.cancel() is False and h.status() == "done" and h.result() == 1


def test_a_running_job_asked_to_stop_ends_as_cancelled_whatever_it_returns(client, broker):
    h = client.push(Q, "t:f")
    (job,) = take(broker)
    assert broker.cancel_requested(Q, job.id) is None
    assert h.cancel() is True
    assert h.status() == "running"                         # asked, still running
    assert broker.cancel_requested(Q, job.id) == "ask"
    assert broker.cancel_requests(Q) == {job.id: "ask"}
    assert h.cancel(kill=True) and broker.cancel_requested(Q, job.id) == "kill"
    assert h.cancel() and broker.cancel_requested(Q, job.id) == "kill"    # kill is never downgraded
    ack(broker, job, "returned anyway")
    assert h.status() == "cancelled" and broker.cancel_requests(Q) == {}
    assert broker.counts(Q)["done_total"] == 0


@pytest.mark.parametrize("kill", [False, True])
@pytest.mark.parametrize("how", ["fail", "retry", "release"])
def test_a_running_job_asked_to_stop_is_neither_retried_nor_failed_nor_hooked(client, broker, how, kill):
    h = client.push(Q, "t:f")
    (job,) = take(broker)
    h.cancel(kill=kill)
    hook_id, hook = jobmod.encode("mpqueue:failure_hook", ["queue", "t:f", {}, {}])
    # settling it says it ended as cancelled, and what was asked (the worker logs and counts that)
    if how == "fail":
        settled = broker.fail(Q, job.id, job.token, error_of(), hook)
    elif how == "retry":
        settled = broker.retry(Q, job.id, job.token, 0, error_of())
    else:
        settled = broker.release(Q, job.id, job.token)
    assert settled == ("kill" if kill else "ask")
    assert h.status() == "cancelled"
    c = broker.counts(Q)
    assert (c["ready"], c["scheduled"], c["failed"], c["running"]) == (0, 0, 0, 0)     # no hook job either
    with pytest.raises(JobCancelled):
        h.result(timeout=1)


def test_cancel_tells_a_waiting_result(client, broker):
    h = client.push(Q, "t:f")
    (job,) = take(broker)

    def cancel_and_stop():
        time.sleep(0.2)             # ok: result() waits meanwhile
        client.cancel(h)
        broker.fail(Q, job.id, job.token, error_of("stopped"))

    t = threading.Thread(target=cancel_and_stop)
    t.start()
    with pytest.raises(JobCancelled):
        h.result(timeout=10)
    t.join()


def test_cancel_and_reserve_of_one_job_at_once_have_exactly_one_winner_every_time(client, broker):
    # Thousands of rounds of one waiting job, cancelled by the producer at the very
    # moment a worker reserves: each round exactly one of them has it.
    rounds, start, done = 2000, threading.Barrier(2), threading.Barrier(2)
    taken = []

    def worker():
        try:
            for _ in range(rounds):
                start.wait()
                taken.append([j.id for j in take(broker, 1, consumer="racer")])
                done.wait()
        except threading.BrokenBarrierError:
            pass                # the test failed and let go of the barriers

    t = threading.Thread(target=worker)
    t.start()
    wins = {"cancelled": 0, "reserved": 0}
    try:
        for i in range(rounds):
            handle = client.push(Q, "t:f", [i])
            envelope = client.broker.find(Q, handle.id)["envelope"]
            start.wait()
            answer = client.broker.cancel(Q, handle.id, envelope, 60)
            done.wait()
            got = taken[-1] == [handle.id]
            assert (answer == "cancelled") != got, (i, answer, taken[-1])
            assert got or taken[-1] == []
            wins["reserved" if got else "cancelled"] += 1
    except BaseException:
        start.abort()           # only on failure: after the last round the worker may still be
        done.abort()            # leaving its last wait, and an abort then breaks it
        raise
    finally:
        t.join()
    assert broker.counts(Q)["ready"] == 0
    assert sum(wins.values()) == rounds, wins


# -- caller-chosen ids
def test_a_caller_id_is_the_job_id_and_a_second_push_while_live_creates_nothing(client, broker):
    first = client.push(Q, "t:f", ["a"], job_id="order-1234")
    assert first == "order-1234" and not first.duplicate and first.status() == "ready"
    again = client.push(Q, "t:f", ["b"], job_id="order-1234")
    assert again == "order-1234" and again.duplicate
    assert broker.counts(Q)["ready"] == 1
    # still a duplicate while it is scheduled... (a second id, pushed for later)
    later = client.push(Q, "t:f", delay=3600, job_id="nightly:2026-12-03")
    assert client.push(Q, "t:f", job_id="nightly:2026-12-03").duplicate and later.status() == "scheduled"
    # ...and while it runs
    (job,) = take(broker)
    assert job.id == "order-1234" and job.args == ["a"]
    assert client.push(Q, "t:f", job_id="order-1234").duplicate
    # Once it ended, the id makes a new job, whose status is its own
    ack(broker, job, "first run")
    assert first.status() == "done"
    renewed = client.push(Q, "t:f", ["c"], job_id="order-1234")
    assert not renewed.duplicate and renewed.status() == "ready"
    (job,) = take(broker)
    assert job.args == ["c"]
    broker.fail(Q, job.id, job.token, error_of())
    assert renewed.status() == "failed"
    assert not client.push(Q, "t:f", ["d"], job_id="order-1234").duplicate       # after a failure too
    assert client.status("order-1234") == "ready" and broker.counts(Q)["failed"] == 0


def test_a_cancelled_caller_id_is_free_again(client, broker):
    h = client.push(Q, "t:f", job_id="once")
    assert h.cancel()
    assert not client.push(Q, "t:f", job_id="once").duplicate


def test_duplicates_in_one_batch_and_from_concurrent_producers_make_one_job(client, broker):
    out = client.push_many(Q, [{"task": "t:f", "job_id": "dup"}, {"task": "t:f", "job_id": "dup"},
                               {"task": "t:f"}])
    assert [h.duplicate for h in out] == [False, True, False]
    results = []

    def producer():
        c = Client(broker.url)
        try:
            results.extend(c.push(Q, "t:f", job_id=f"race-{n}").duplicate for n in range(20))
        finally:
            c.close()

    threads = [threading.Thread(target=producer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(False) == 20 and results.count(True) == 60
    assert broker.counts(Q)["ready"] == 2 + 20


@pytest.mark.parametrize("bad", ["0123456789abcdef", "bad-1", "", "x" * 129, "has space", "a/b", 12])
def test_caller_ids_are_validated_and_never_look_generated(client, broker, bad):
    with pytest.raises(jobmod.PayloadError):
        client.push(Q, "t:f", job_id=bad)
    assert broker.counts(Q)["ready"] == 0


def test_caller_ids_that_are_fine(client):
    for ok in ["0123456789ABCDEF", "0123456789abcdef0", "a", "x" * 128, "user_1.order:2-3"]:
        assert client.push(Q, "t:f", job_id=ok) == ok


def test_apush_deduplicates_caller_ids_too(client, broker):
    async def pushes():
        try:
            return [await client.apush(Q, "t:f", job_id="async-1") for _ in range(2)]
        finally:
            await client._pusher().aclose()

    first, second = asyncio.run(pushes())
    assert (first.duplicate, second.duplicate) == (False, True) and first.status() == "ready"
    assert broker.counts(Q)["ready"] == 1


def test_many_waits_in_a_row_hold_no_connection_each(client, broker):
    # Given a producer that waits for hundreds of results over its life, each
    # wait's subscription goes back to the pool: none piles up until a limit.
    for i in range(300):
        h = client.push(Q, "t:f", [i])
        (job,) = take(broker)
        watch = broker.watch(Q, h.id)
        watch.close()
        ack(broker, job, i)
        assert h.result(timeout=5) == i


def test_a_task_pushes_with_a_caller_id_through_push_with(client, broker):
    import mpqueue

    @mpqueue.task(name="handles:unique", queue=Q)
    def unique():
        pass

    assert unique.push_with(job_id="u-1", client=client) == "u-1"
    assert unique.push_with(job_id="u-1", client=client).duplicate
    assert broker.counts(Q)["ready"] == 1
