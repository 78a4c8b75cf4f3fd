"""The async producer (Client.apush, apush_many, task.apush) against real brokers:
our own redis-server and an SQLite file. What apush stores is what push stores,
it refuses what push refuses with the same error, and it never blocks the loop."""
from __future__ import annotations

import asyncio
import fcntl
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import mpqueue
from mpqueue import Client
from mpqueue.brokers import BrokerError
from mpqueue.core import envelope as jobmod
from tests.support import RedisServer, free_port, until, wait_for

ROOT = Path(__file__).resolve().parents[2]
Q = "mail"


@mpqueue.task(name="tests.apush:send", queue=Q)
def send(to, delay=None, queue=None):
    return to


class Report(mpqueue.Task):
    name = "tests.apush:Report"
    queue = "reports"

    def run(self, day, queue=None):
        return day


pytestmark = pytest.mark.each_broker


@pytest.fixture
def own_redis():
    """A redis-server for one test, which it may stop or count the connections of."""
    server = RedisServer()
    yield server
    server.stop()


def stored(client, queue, job_id):
    """(state, decoded job, raw find() record) as the sync broker reads it back."""
    found = client.broker.find(queue, job_id)
    return found["state"], jobmod.decode(found["envelope"]), found


class Ticker:
    """A coroutine that counts its turns: if the loop blocks, it stops counting."""

    def __init__(self):
        self.ticks = 0

    async def run(self):
        while True:
            self.ticks += 1
            await asyncio.sleep(0.002)  # ok: the ticker's beat


# -- what lands in the queue
def test_apush_stores_what_push_stores(client):
    spec = dict(args=["a@b"], kwargs={"cc": "c@d"}, priority=7)
    ids = [client.push(Q, "tests.apush:send", **spec), asyncio.run(client.apush(Q, "tests.apush:send", **spec))]
    seen = [(state, job.task, job.args, job.kwargs, job.priority, job.attempts)
            for state, job, _ in (stored(client, Q, i) for i in ids)]
    assert seen == [("ready", "tests.apush:send", ["a@b"], {"cc": "c@d"}, 7, 0)] * 2
    assert client.broker.queues() == [Q]


def test_mpqctl_shows_an_apushed_job(client, broker_url):
    job_id = asyncio.run(client.apush(Q, "tests.apush:send", args=["x"], priority=3))
    env = {k: v for k, v in os.environ.items() if k != "MPQUEUE_BROKER"}
    out = subprocess.run([sys.executable, "-m", "mpqueue.ops.ctl", "--broker", broker_url, "--json", "job", job_id],
                         capture_output=True, text=True, cwd=ROOT, timeout=30, env=env)
    assert out.returncode == 0, out.stderr
    shown = json.loads(out.stdout)
    assert (shown["queue"], shown["state"], shown["task"], shown["args"], shown["priority"]) == \
        (Q, "ready", "tests.apush:send", ["x"], 3)


def test_apush_many_returns_the_ids_in_order_and_stores_each_once(client):
    jobs = [{"task": "tests.apush:send", "args": [i], "priority": i % 10} for i in range(25)]
    ids = asyncio.run(client.apush_many(Q, jobs, chunk=4))
    assert len(set(ids)) == 25
    assert [stored(client, Q, i)[1].args for i in ids] == [[i] for i in range(25)]
    assert client.broker.counts(Q)["ready"] == 25


def test_task_apush_takes_push_options_and_apush_with_passes_every_keyword(client):
    async def main():
        a = await send.apush("a@b", delay=60, priority=5, client=client)
        b = await send.apush_with(args=["c@d"], kwargs={"delay": 5, "queue": "x"}, queue="urgent", client=client)
        c = await Report.apush("monday", queue="weekly", client=client)
        d = await Report.apush_with(kwargs={"day": "tue", "queue": "q"}, client=client)
        return a, b, c, d
    a, b, c, d = asyncio.run(main())
    state, job, _ = stored(client, Q, a)
    assert (state, job.args, job.kwargs, job.priority) == ("scheduled", ["a@b"], {}, 5)
    state, job, _ = stored(client, "urgent", b)
    assert (state, job.args, job.kwargs) == ("ready", ["c@d"], {"delay": 5, "queue": "x"})
    assert stored(client, "weekly", c)[1].task == "tests.apush:Report"
    assert stored(client, "reports", d)[1].kwargs == {"day": "tue", "queue": "q"}


def test_delay_eta_and_priority_are_honoured(client):
    async def main():
        now = time.time()
        later = await client.apush(Q, "m:f", delay=30)
        at = await client.apush(Q, "m:f", eta=now + 120)
        past = await client.apush(Q, "m:f", eta=now - 5)
        low = await client.apush(Q, "m:f", args=["low"], priority=1)
        high = await client.apush(Q, "m:f", args=["high"], priority=9)
        return now, later, at, past, low, high
    now, later, at, past, low, high = asyncio.run(main())
    state, _, found = stored(client, Q, later)
    assert state == "scheduled" and abs(found["due_ms"] / 1000 - (now + 30)) < 5
    state, _, found = stored(client, Q, at)
    assert state == "scheduled" and abs(found["due_ms"] / 1000 - (now + 120)) < 5
    assert stored(client, Q, past)[0] == "ready"
    # Then the higher priority comes out first (the eta in the past next: 0 < 1)
    reserved, _ = client.broker.reserve(Q, "test", 3, 30)
    assert [jobmod.decode(r.envelope).id for r in reserved] == [high, low, past]


# -- refused exactly as push refuses
BAD = [
    pytest.param(dict(queue=Q, delay=float("nan")), id="nan-delay"),
    pytest.param(dict(queue=Q, delay=-1), id="negative-delay"),
    pytest.param(dict(queue=Q, eta=float("inf")), id="infinite-eta"),
    pytest.param(dict(queue=Q, delay=1, eta=time.time()), id="delay-and-eta"),
    pytest.param(dict(queue="bad queue!"), id="bad-queue-name"),
    pytest.param(dict(queue=Q, args=[object()]), id="args-not-json"),
    pytest.param(dict(queue=Q, kwargs={"x": float("nan")}), id="nan-kwarg"),
    pytest.param(dict(queue=Q, args=["caf\udce9"]), id="not-utf8"),
    pytest.param(dict(queue=Q, priority=10), id="priority-out-of-range"),
]


def refusal(call):
    with pytest.raises(Exception) as info:
        call()
    return type(info.value), str(info.value)


@pytest.mark.parametrize("bad", BAD)
def test_apush_refuses_what_push_refuses_with_the_same_error(client, bad):
    spec = dict(bad)
    queue = spec.pop("queue")
    sync = refusal(lambda: client.push(queue, "m:f", **spec))
    aio = refusal(lambda: asyncio.run(client.apush(queue, "m:f", **spec)))
    many = refusal(lambda: asyncio.run(client.apush_many(queue, [{"task": "m:f", **spec}])))
    assert sync[0] is mpqueue.PayloadError
    assert aio == sync and many == sync
    counts = client.broker.counts(Q)
    assert counts["ready"] + counts["scheduled"] == 0


def test_task_apush_refuses_what_task_push_refuses(client):
    sync = refusal(lambda: send.push("a@b", delay=float("nan"), client=client))
    aio = refusal(lambda: asyncio.run(send.apush("a@b", delay=float("nan"), client=client)))
    assert aio == sync and sync[0] is mpqueue.PayloadError


# -- concurrency and the event loop
def test_two_hundred_concurrent_apush_calls_each_land_exactly_once(client):
    async def main():
        return await asyncio.gather(*(client.apush(Q, "m:f", args=[i]) for i in range(200)))
    ids = asyncio.run(main())
    assert len(set(ids)) == 200
    reserved, _ = client.broker.reserve(Q, "test", 1000, 30)
    jobs = [jobmod.decode(r.envelope) for r in reserved]
    assert sorted(j.id for j in jobs) == sorted(ids)
    assert sorted(j.args[0] for j in jobs) == list(range(200))


def test_the_loop_keeps_turning_while_redis_does_not_answer(own_redis):
    server, client = own_redis, Client(own_redis.url)
    try:
        async def main():
            ticker = Ticker()
            beat = asyncio.create_task(ticker.run())
            await client.apush(Q, "m:f")                  # connected, script loaded
            # Given a Redis that hangs (keeps its connections, answers nothing), for
            # at most 5 s: a push that blocked the loop would fail the test, not hang it
            server.proc.send_signal(signal.SIGSTOP)
            safety = threading.Timer(5, server.proc.send_signal, [signal.SIGCONT])
            safety.start()
            try:
                # When pushes are waiting for it
                pushes = [asyncio.create_task(client.apush(Q, "m:f", args=[i])) for i in range(20)]
                start = ticker.ticks
                # Then the loop still runs other coroutines
                await until(lambda: ticker.ticks - start >= 50, what="50 ticks while Redis hangs")
                assert not any(p.done() for p in pushes)
            finally:
                safety.cancel()
                server.proc.send_signal(signal.SIGCONT)
            # And when Redis answers again, every push completes
            ids = await asyncio.wait_for(asyncio.gather(*pushes), 10)
            beat.cancel()
            return ids
        ids = asyncio.run(main())
        assert client.broker.counts(Q)["ready"] == 21 and len(set(ids)) == 20
    finally:
        client.close()


def connections_to(port: int) -> int:
    """Established TCP connections to 127.0.0.1:port on this host (the kernel's
    table: it answers while the server is stopped)."""
    with open("/proc/net/tcp") as f:
        rows = [line.split() for line in f.readlines()[1:]]
    return sum(1 for r in rows if r[2] == f"0100007F:{port:04X}" and r[3] == "01")


def test_a_cancelled_apush_leaves_no_connection_out_of_step(own_redis):
    server, client = own_redis, Client(own_redis.url)
    try:
        async def main():
            await client.apush(Q, "m:f")
            # Given pushes cancelled (a request timeout) while Redis does not answer
            server.proc.send_signal(signal.SIGSTOP)
            safety = threading.Timer(5, server.proc.send_signal, [signal.SIGCONT])
            safety.start()
            try:
                before = connections_to(server.port)
                cancelled = [asyncio.create_task(client.apush(Q, "m:f", args=["cancelled"])) for _ in range(5)]
                # (one reuses the idle connection, four open new ones and talk on them)
                await until(lambda: connections_to(server.port) >= before + 4, what="the pushes connected")
                for task in cancelled:
                    task.cancel()
                await asyncio.gather(*cancelled, return_exceptions=True)
            finally:
                safety.cancel()
                server.proc.send_signal(signal.SIGCONT)
            # When the connections are used again, every reply is the right one: ids come
            # back, the new queue is registered, and the commands already sent land too
            ids = await asyncio.gather(*(client.apush(Q, "m:f", args=[i]) for i in range(50)),
                                       client.apush("other", "m:f"))
            await until(lambda: client.broker.counts(Q)["ready"] == 56, what="the cancelled pushes to land")
            return ids
        ids = asyncio.run(main())
        assert len(set(ids)) == 51 and client.broker.queues() == ["mail", "other"]
    finally:
        client.close()


def test_the_loop_keeps_turning_while_sqlite_waits_for_its_write_lock(tmp_path):
    client = Client(f"sqlite://{tmp_path}/broker.db")
    try:
        async def main():
            ticker = Ticker()
            beat = asyncio.create_task(ticker.run())
            await client.apush(Q, "m:f")
            # Given another writer holding the database's write lock (for at most 5 s)
            fd = os.open(f"{tmp_path}/broker.db-lock", os.O_RDONLY)
            fcntl.flock(fd, fcntl.LOCK_EX)
            safety = threading.Timer(5, fcntl.flock, [fd, fcntl.LOCK_UN])
            safety.start()
            try:
                push = asyncio.create_task(client.apush(Q, "m:f", args=["waiting"]))
                start = ticker.ticks
                # Then the push waits on a thread, and the loop keeps running
                await until(lambda: ticker.ticks - start >= 50, what="50 ticks while the lock is held")
                assert not push.done()
            finally:
                safety.cancel()
                safety.join()
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)
            job_id = await asyncio.wait_for(push, 10)
            beat.cancel()
            return job_id
        job_id = asyncio.run(main())
        assert stored(client, Q, job_id)[1].args == ["waiting"]
    finally:
        client.close()


def test_apush_works_over_a_unix_socket():
    server = RedisServer(unixsocket=True)
    client = None
    try:
        client = Client(f"unix://{server.socket}?db=0")      # inside: a failure here must stop the server too
        job_id = asyncio.run(client.apush(Q, "m:f", args=["unix"]))
        assert stored(client, Q, job_id)[1].args == ["unix"]
    finally:
        if client is not None:
            client.close()
        server.stop()


# -- errors, loops, closing
def test_a_redis_that_is_down_gives_broker_error():
    client = Client(f"redis://127.0.0.1:{free_port()}/0")
    try:
        with pytest.raises(BrokerError, match="^redis: ConnectionError"):
            asyncio.run(client.apush(Q, "m:f"))
        with pytest.raises(BrokerError, match="^redis: ConnectionError"):
            asyncio.run(send.apush("a@b", client=client))
    finally:
        client.close()


def test_an_unwritable_sqlite_database_gives_broker_error(tmp_path):
    client = Client(f"sqlite://{tmp_path}/broker.db")
    client.broker.conn.execute("PRAGMA query_only = ON")      # every write now fails inside SQLite
    try:
        with pytest.raises(BrokerError, match="^sqlite: "):
            asyncio.run(client.apush(Q, "m:f"))
    finally:
        client.close()


def test_one_client_works_across_two_event_loops(client):
    first = asyncio.run(client.apush(Q, "m:f", args=[1]))
    second = asyncio.run(client.apush(Q, "m:f", args=[2]))
    assert [stored(client, Q, i)[1].args for i in (first, second)] == [[1], [2]]


def connections(server) -> int:
    return len(server.client.client_list())


def test_no_async_connection_outlives_its_loop_or_the_client(own_redis):
    baseline = connections(own_redis)                  # the test's own
    client = Client(own_redis.url)

    async def burst():
        await asyncio.gather(*(client.apush(Q, "m:f") for i in range(50)))
        return connections(own_redis)
    # When a loop pushes concurrently, then ends (asyncio.run closes it)
    assert asyncio.run(burst()) > baseline
    # Then its connections are closed with it, and a second loop works
    asyncio.run(burst())
    wait_for(lambda: connections(own_redis) == baseline, what="the loops' connections closed")

    # And aclose() closes them too, on their loop, before it ends
    async def closed_by_aclose():
        await client.apush(Q, "m:f")
        await client.aclose()
        await until(lambda: connections(own_redis) == baseline, what="connections closed by aclose()")
    asyncio.run(closed_by_aclose())
    assert client.broker.counts(Q)["ready"] == 101
    client.close()


def test_close_in_async_code_closes_that_loops_connections_soon_after(own_redis):
    client = Client(own_redis.url)

    async def main():
        await asyncio.gather(*(client.apush(Q, "m:f") for i in range(10)))
        client.close()                     # the blocking close, called on the loop
        await until(lambda: connections(own_redis) <= 1, what="the async connections closed")
    asyncio.run(main())


# -- fork: a child never touches its parent's async connections or loops
FORKED = """
import asyncio, os, sys, time
from mpqueue import Client

client = Client(sys.argv[1])
loop = asyncio.new_event_loop()          # the parent's long-lived loop (a web server's, say)
loop.run_until_complete(client.apush("mail", "m:f", args=["parent-before"]))
child = os.fork()
if child == 0:                           # the child pushes on a loop of its own, then closes the client
    try:
        asyncio.run(client.apush("mail", "m:f", args=["child"]))
        client.close()
        os._exit(0)
    except BaseException as exc:
        print("child:", repr(exc), flush=True)
        os._exit(1)
_, status = os.waitpid(child, 0)
started = time.monotonic()
try:
    loop.run_until_complete(asyncio.wait_for(client.apush("mail", "m:f", args=["parent-after"]), 5))
    print("parent pushed in", round(time.monotonic() - started, 3), "child exit", os.waitstatus_to_exitcode(status))
except BaseException as exc:
    print("parent:", repr(exc), "after", round(time.monotonic() - started, 3))
client.close()
loop.close()
"""


def test_a_forked_child_closing_the_client_leaves_the_parents_async_pushes_working(broker_url, client, tmp_path):
    # Given a parent that apushed on its loop, and a forked child that apushes on a
    # loop of its own and closes the client
    script = tmp_path / "forked.py"
    script.write_text(FORKED)
    done = subprocess.run([sys.executable, str(script), broker_url], capture_output=True, text=True, timeout=60,
                          cwd=ROOT)
    # Then the parent's next apush on its loop goes through at once
    assert done.stdout.startswith("parent pushed in") and done.stdout.split()[-1] == "0", done.stdout + done.stderr
    assert float(done.stdout.split()[3]) < 2.0, done.stdout
    assert client.broker.counts(Q)["ready"] == 3       # parent-before, child, parent-after


# -- a real service runs what apush pushed
def test_a_service_runs_an_apushed_job(service, broker_url, rdb):
    svc = service().start()
    client = Client(broker_url)
    try:
        job_id = asyncio.run(client.apush("default", "testtasks:record", args=["from-apush"]))
        run = wait_for(lambda: rdb.lrange("test:runs", 0, -1), 30, what="the job to run")
        assert run[0].split()[:2] == ["from-apush", job_id]
    finally:
        client.close()
        svc.stop()
