"""At-least-once under fire: SIGKILL random workers during a 5,000-job run."""
import os
import random
import signal
import time

import pytest

from mpqueue import Client
from tests.support import wait_for


# Every test here runs on each broker: the same scenarios are the contract.
pytestmark = pytest.mark.each_broker

N = 5000


def test_sigkill_of_random_workers_loses_no_job(service, broker_url, rdb):
    # Given a service whose jobs record their tag, and 5,000 of them queued
    svc = service({"defaults": {"retries": 20, "retry_delay": 0},
                   "queues": {"default": {"workers": 2}, "other": {"workers": 1, "mode": "dispatch"}}}).start()
    client = Client(broker_url)
    client.push_many("default", ({"task": "testtasks:record", "args": [i]} for i in range(N)))
    # When workers are SIGKILLed at random while they work (a worker that has just
    # recorded a job: killing workers still booting would test boot back-off instead)
    rng, kills = random.Random(7), 0
    deadline = time.monotonic() + 120
    while client.broker.counts("default")["done_total"] < N and time.monotonic() < deadline:
        working = {int(r.split()[4]) for r in rdb.lrange("test:runs", -20, -1)}
        pids = sorted(working & set(svc.worker_pids()))
        if pids and kills < 60:
            try:
                os.kill(rng.choice(pids), signal.SIGKILL)
                kills += 1
            except ProcessLookupError:
                pass
        time.sleep(0.01)  # ok: pacing of the kills, not a wait for an event
    # Then every job ran at least once and was settled exactly once
    counts = wait_for(lambda: (c := client.broker.counts("default"))["done_total"] + c["failed"] >= N and c,
                      60, what="all jobs settled")
    tags = {int(r.split()[0]) for r in rdb.lrange("test:runs", 0, -1)}
    assert kills >= 20
    assert tags == set(range(N)), f"lost {sorted(set(range(N)) - tags)[:10]}"
    assert counts["done_total"] + counts["failed"] == N
    assert (counts["ready"], counts["scheduled"], counts["running"]) == (0, 0, 0)
    assert svc.stop() == 0


def test_a_job_of_a_dead_node_is_recovered_by_another_node_when_its_lease_ends(service, broker_url, rdb):
    # Given node A running a job with a 3 s lease (timeout 2 + grace 1)...
    cfg = {"lease_grace": 1, "defaults": {"timeout": 2}}
    a = service(cfg, name="node-a").start()
    b = service(cfg, name="node-b")
    client = Client(broker_url)
    job_id = client.push("default", "testtasks:slow_first", args=["j"])
    wait_for(lambda: rdb.llen("test:starts") == 1, 10, what="job started on node A")
    # When the whole of node A dies at once (supervisor and workers)
    os.killpg(a.proc.pid, signal.SIGKILL)
    a.proc.wait()
    b.start()
    # Then node B recovers the job when the lease ends, spending an attempt, and runs it
    t0 = time.monotonic()
    wait_for(lambda: rdb.lrange("test:runs", 0, -1) == ["j"], 20, what="job run again on node B")
    assert time.monotonic() - t0 < 10
    starts = [s.split() for s in rdb.lrange("test:starts", 0, -1)]
    assert [s[1] for s in starts] == ["1", "2"] and starts[0][2] != starts[1][2]
    # (the job records its run just before it returns; the ack follows)
    wait_for(lambda: client.broker.find("default", job_id)["state"] == "done", 5, what="the job's ack")


def test_workers_exit_when_their_supervisor_is_sigkilled_and_a_restart_recovers_the_job(service, broker_url, rdb):
    # Given a service whose worker runs a job that hangs on its first attempt
    svc = service({"lease_grace": 1, "defaults": {"timeout": 2}}).start()
    client = Client(broker_url)
    client.push("default", "testtasks:slow_first", args=["j"])
    wait_for(lambda: rdb.llen("test:starts") == 1, 10, what="job started")
    workers = svc.worker_pids()
    # When the supervisor alone is SIGKILLed
    os.kill(svc.proc.pid, signal.SIGKILL)
    svc.proc.wait()
    # Then its workers do not live on as orphans
    wait_for(lambda: not any(os.path.exists(f"/proc/{p}") and _alive(p) for p in workers), 5, what="orphans gone")
    # and the restarted service (no second copy was running) runs the job again
    svc.start()
    wait_for(lambda: rdb.lrange("test:runs", 0, -1) == ["j"], 20, what="job recovered after restart")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _produce(url: str, producer: int, n: int) -> None:
    """One producer process: half one at a time (some delayed, some urgent), half in bulk."""
    client = Client(url)
    for k in range(n // 2):
        client.push("default", "testtasks:record", args=[f"{producer}-{k}"], priority=k % 3,
                    delay=0.05 if k % 10 == 0 else None)
    client.push_many("default", ({"task": "testtasks:record", "args": [f"{producer}-{k}"]}
                                 for k in range(n // 2, n)))
    os._exit(0)


def test_concurrent_producers_while_workers_drain_lose_and_duplicate_nothing(service, broker_url, rdb):
    # Given a running service
    svc = service().start()
    # When four producer processes push 500 jobs each at the same time
    producers, n = 4, 500
    pids = []
    for p in range(producers):
        pid = os.fork()
        if pid == 0:
            _produce(broker_url, p, n)
        pids.append(pid)
    assert all(os.waitpid(pid, 0)[1] == 0 for pid in pids)
    # Then every job runs exactly once (nothing crashed, so nothing runs twice)
    wait_for(lambda: rdb.llen("test:runs") >= producers * n, 60, what="every pushed job run")
    tags = [r.split()[0] for r in rdb.lrange("test:runs", 0, -1)]
    assert sorted(tags) == sorted(f"{p}-{k}" for p in range(producers) for k in range(n))
    counts = wait_for(lambda: (c := Client(broker_url).broker.counts("default"))["done_total"] == producers * n
                      and c, 10, what="every ack recorded")
    assert (counts["ready"], counts["scheduled"], counts["running"], counts["failed"]) == (0, 0, 0, 0)
    assert svc.stop() == 0
