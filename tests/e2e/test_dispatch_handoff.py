"""Dispatch mode's hand-off path with real processes on our own Redis: while a
worker waits, the supervisor's dispatcher is on the queue's idle list and a
push hands it the job directly. The delivery invariants hold on that path: a
handed job runs once, a crash under it spends an attempt and the job runs
again, and a supervisor killed while on the idle list loses nothing."""
import os
import signal

from mpqueue import Client
from tests.support import wait_for

IDLE = "mpq:{default}:idle"
DISPATCH = {"queues": {"default": {"workers": 2, "mode": "dispatch"}}}


def dispatcher_waits(rdb) -> bool:
    return any(e.split(" ")[0].endswith("/dispatch") for e in rdb.lrange(IDLE, 0, -1))


def test_jobs_pushed_to_an_idle_dispatch_service_are_handed_over_and_run_once_each(service, broker_url, rdb):
    # Given an idle dispatch service, its dispatcher on the idle list
    svc = service(DISPATCH).start()
    client = Client(broker_url)
    for i in range(20):
        wait_for(lambda: dispatcher_waits(rdb), 10, what="dispatcher on the idle list")
        # When a job is pushed, one at a time, each to the waiting dispatcher
        client.push("default", "testtasks:record", args=[f"j{i}"])
        wait_for(lambda: rdb.llen("test:runs") == i + 1, 10, what=f"job {i} run")
    # Then each ran exactly once, and nothing is left held or queued
    assert [r.split()[0] for r in rdb.lrange("test:runs", 0, -1)] == [f"j{i}" for i in range(20)]
    assert {r.split()[2] for r in rdb.lrange("test:runs", 0, -1)} == {"1"}       # first attempts all
    wait_for(lambda: client.broker.counts("default")["running"] == 0, 10, what="every job acked")
    # and a stopped service leaves no entry on the idle list for a push to bounce off
    assert svc.stop() == 0
    assert not dispatcher_waits(rdb)


def test_a_worker_killed_under_a_handed_job_spends_its_attempt_and_the_job_runs_again(service, broker_url, rdb):
    # Given an idle dispatch service, and a job handed to it that hangs on its first attempt
    svc = service(DISPATCH).start()
    client = Client(broker_url)
    wait_for(lambda: dispatcher_waits(rdb), 10, what="dispatcher on the idle list")
    client.push("default", "testtasks:slow_first", args=["j"])
    wait_for(lambda: rdb.llen("test:starts") == 1, 10, what="job started")
    tag, attempt, pid = rdb.lindex("test:starts", 0).split()
    assert attempt == "1"
    # When its worker is SIGKILLed
    os.kill(int(pid), signal.SIGKILL)
    # Then the supervisor (which confirmed the hand-off) retries it: the second attempt runs to the end
    wait_for(lambda: rdb.lrange("test:runs", 0, -1) == ["j"], 20, what="job run again")
    assert [s.split()[1] for s in rdb.lrange("test:starts", 0, -1)] == ["1", "2"]


def test_a_push_after_the_supervisor_died_on_the_idle_list_waits_for_the_restart(service, broker_url, rdb):
    # Given an idle dispatch service whose supervisor is SIGKILLed while on the idle list
    svc = service(DISPATCH).start()
    client = Client(broker_url)
    wait_for(lambda: dispatcher_waits(rdb), 10, what="dispatcher on the idle list")
    workers = svc.worker_pids()
    os.kill(svc.proc.pid, signal.SIGKILL)
    svc.proc.wait()
    wait_for(lambda: not any(os.path.exists(f"/proc/{p}") for p in workers), 10, what="workers gone")
    # When a job is pushed (its hand-off finds nobody listening)
    client.push("default", "testtasks:record", args=["j"])
    # Then it waits in the queue, not held in a dead consumer's name, and the restarted service runs it once
    assert client.broker.counts("default")["running"] == 0
    svc.start()
    wait_for(lambda: rdb.llen("test:runs") == 1, 10, what="job run after restart")
    assert rdb.lindex("test:runs", 0).split()[:1] == ["j"]
