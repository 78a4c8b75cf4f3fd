"""End-to-end: a real `mpqueue run`, real worker processes, a real redis-server."""
import json
import signal
import time

import pytest

from mpqueue import Client
from mpqueue.brokers import PushItem
from tests.support import wait_for


# Every test here runs on each broker: the same scenarios are the contract.
pytestmark = pytest.mark.each_broker


def runs(rdb, key="test:runs"):
    return rdb.lrange(key, 0, -1)


def test_pushed_jobs_run_and_their_results_are_kept(service, broker_url, rdb):
    # Given a running service
    svc = service().start()
    client = Client(broker_url)
    # When jobs are pushed
    ids = [client.push("default", "testtasks:record", args=[i]) for i in range(20)]
    # Then each runs once and its result stays visible
    wait_for(lambda: len(runs(rdb)) == 20, 10, what="20 runs")
    assert sorted(int(r.split()[0]) for r in runs(rdb)) == list(range(20))
    state = wait_for(lambda: client.broker.find("default", ids[3]), 5, what="done record")
    assert state["state"] == "done" and state["result"] == 3
    assert svc.stop() == 0


@pytest.mark.parametrize("mode", ["grab", "dispatch"])
def test_priority_is_strict_and_fifo_within_a_priority(service, broker_url, rdb, mode):
    svc = service({"queues": {"default": {"workers": 1, "mode": mode}}})
    client = Client(broker_url)
    # Given jobs of mixed priority queued before any worker runs
    order = [(0, "a"), (5, "b"), (0, "c"), (9, "d"), (5, "e")]
    for prio, tag in order:
        client.push("default", "testtasks:record", args=[tag], priority=prio)
    svc.start()
    wait_for(lambda: len(runs(rdb)) == 5, 10, what="5 runs")
    assert [r.split()[0] for r in runs(rdb)] == ["d", "b", "e", "a", "c"]


def test_failing_job_is_retried_then_lands_in_failed_store_and_hook_runs(service, broker_url, rdb):
    service({"defaults": {"retries": 2, "retry_delay": 0.05, "on_failure": "testtasks:on_failure"}}).start()
    client = Client(broker_url)
    job_id = client.push("default", "testtasks:fail")
    wait_for(lambda: rdb.llen("test:failures") == 1, 10, what="failure hook")
    assert runs(rdb, "test:attempts") == ["1", "2", "3"]
    assert rdb.lrange("test:failures", 0, -1) == [f"{job_id} testtasks:fail error"]
    failed = client.broker.find("default", job_id)
    assert failed["state"] == "failed" and failed["error"]["type"] == "error"
    assert "ValueError: boom" in failed["error"]["traceback"]


def test_task_retry_options_override_the_queue(service, broker_url, rdb):
    service({"defaults": {"retries": 0}}).start()
    job_id = Client(broker_url).push("default", "testtasks:fail_then_ok", args=[3])
    wait_for(lambda: (Client(broker_url).broker.find("default", job_id) or {}).get("state") == "done", 10,
             what="job done after retries")
    assert runs(rdb, "test:attempts") == ["1", "2", "3", "4"]


def test_retry_exception_requeues_after_its_delay(service, broker_url, rdb):
    service().start()
    Client(broker_url).push("default", "testtasks:ask_retry", args=[0.3])
    wait_for(lambda: rdb.llen("test:attempts") == 2, 10, what="second attempt")
    (a1, t1), (a2, t2) = [x.split() for x in runs(rdb, "test:attempts")]
    assert (a1, a2) == ("1", "2")
    assert float(t2) - float(t1) >= 0.29


def test_delayed_job_starts_at_its_due_time(service, broker_url, rdb):
    service().start()
    client = Client(broker_url)
    pushed = time.time()
    client.push("default", "testtasks:ask_retry", args=[0], delay=0.5)
    wait_for(lambda: rdb.llen("test:attempts") >= 1, 10, what="delayed job")
    started = float(runs(rdb, "test:attempts")[0].split()[1])
    assert 0.49 <= started - pushed < 0.9


def test_unknown_task_and_junk_go_to_failed_store_and_worker_survives(service, broker_url, rdb):
    service().start()
    client = Client(broker_url)
    bad = client.push("default", "os:system", args=["true"])
    client.broker.push("default", [PushItem("this is not a job", 0, 0.0)])   # junk, as a foreign writer might
    client.push("default", "testtasks:record", args=["after"])
    wait_for(lambda: len(runs(rdb)) == 1, 10, what="good job after junk")
    # (the good job's ack travels with its worker's next reserve: wait for it too)
    counts = wait_for(lambda: (c := client.broker.counts("default"))["failed"] == 2 and c["running"] == 0 and c,
                      5, what="2 failed, none left running")
    types = sorted(json.loads(err)["type"] for _, _, err in client.broker.failed("default"))
    assert types == ["bad_payload", "unknown_task"]
    assert client.broker.find("default", bad)["error"]["type"] == "unknown_task"
    assert (counts["ready"], counts["done_total"]) == (0, 1)


@pytest.mark.parametrize("task", ["exit_hard", "segfault"])
def test_a_job_that_kills_its_worker_is_retried_at_once_then_failed_as_crashed(service, broker_url, rdb, task):
    service({"defaults": {"retries": 1, "retry_delay": 0}}).start()
    client = Client(broker_url)
    t0 = time.monotonic()
    job_id = client.push("default", f"testtasks:{task}")
    state = wait_for(lambda: (s := client.broker.find("default", job_id)) and s["state"] == "failed" and s,
                     10, what="poison pill failed")
    # recovered by the supervisor within a second per crash, not after the lease
    assert time.monotonic() - t0 < 5
    assert state["error"]["type"] == "crashed"
    assert runs(rdb, "test:attempts") == ["1", "2"]
    # the pool is intact: a normal job still runs
    client.push("default", "testtasks:record", args=["ok"])
    wait_for(lambda: len(runs(rdb)) == 1, 10, what="job after crashes")


def test_timeout_kills_the_job_and_records_timeout_without_retry(service, broker_url, rdb):
    service({"defaults": {"retries": 3}}).start()
    client = Client(broker_url)
    job_id = client.push("default", "testtasks:hang")
    state = wait_for(lambda: (s := client.broker.find("default", job_id)) and s["state"] == "failed" and s,
                     10, what="timed-out job failed")
    assert state["error"]["type"] == "timeout"
    assert runs(rdb, "test:attempts") == ["1"]
    client.push("default", "testtasks:record", args=["ok"])
    wait_for(lambda: len(runs(rdb)) == 1, 10, what="job after timeout")


def test_max_jobs_recycles_workers(service, broker_url, rdb):
    service({"queues": {"default": {"workers": 1, "max_jobs": 3}}}).start()
    client = Client(broker_url)
    for _ in range(7):
        client.push("default", "testtasks:pid")
    wait_for(lambda: len(runs(rdb)) == 7, 10, what="7 runs")
    pids = runs(rdb)
    assert len(set(pids[0:3])) == 1 and len(set(pids[3:6])) == 1 and pids[0] != pids[3] != pids[6]


def test_memory_limit_recycles_a_leaking_worker(service, broker_url, rdb):
    service({"queues": {"default": {"workers": 1, "memory_limit": 60}}}).start()
    client = Client(broker_url)
    client.push("default", "testtasks:leak", args=[100])
    client.push("default", "testtasks:pid")
    wait_for(lambda: len(runs(rdb)) == 2, 10, what="2 runs")
    leaked_in, next_in = runs(rdb)
    assert leaked_in != next_in


def test_worker_index_and_start_hook(service, broker_url, rdb):
    service({"on_worker_start": "testtasks:on_start", "queues": {"default": {"workers": 3}}}).start()
    booted = sorted(b.split()[1] for b in rdb.lrange("test:booted", 0, -1))
    assert booted == ["0", "1", "2"]


def test_second_instance_of_the_same_service_refuses(service, broker_url):
    first = service().start()
    second = service()
    second.config_path.write_text(first.config_path.read_text())
    second.start(wait_ready=False, extra_env={"MPQUEUE_RUNTIME_DIR": str(first.tmp / "run")})
    assert second.proc.wait(20) == 1
    assert "already running" in second.log()
    # and systemctl status would say why
    assert any("STATUS=failed: " in m and "already running" in m and "ERRNO=16" in m
               for m in second.read_messages())


def test_graceful_stop_lets_running_jobs_finish(service, broker_url, rdb):
    svc = service().start()
    client = Client(broker_url)
    client.push("default", "testtasks:sleep_record", args=["long", 1.0])
    wait_for(lambda: rdb.llen("test:starts") == 1, 10, what="job start")
    svc.signal(signal.SIGTERM)
    assert svc.proc.wait(20) == 0
    assert runs(rdb) == ["long"]
    assert client.broker.counts("default")["running"] == 0


def test_stop_past_shutdown_timeout_hands_jobs_back_without_spending_an_attempt(service, broker_url, rdb):
    svc = service({"shutdown_timeout": 0.5}).start()
    client = Client(broker_url)
    job_id = client.push("default", "testtasks:sleep_record", args=["long", 30])
    wait_for(lambda: rdb.llen("test:starts") == 1, 10, what="job start")
    svc.signal(signal.SIGTERM)
    assert svc.proc.wait(20) == 0
    state = client.broker.find("default", job_id)
    assert state["state"] == "ready" and state["envelope"].split()[1] == "0"


def test_sigquit_stops_at_once_and_returns_jobs(service, broker_url, rdb):
    svc = service().start()
    client = Client(broker_url)
    job_id = client.push("default", "testtasks:sleep_record", args=["long", 30])
    wait_for(lambda: rdb.llen("test:starts") == 1, 10, what="job start")
    svc.signal(signal.SIGQUIT)
    assert svc.proc.wait(5) == 0
    assert client.broker.find("default", job_id)["state"] == "ready"


def test_import_error_at_start_fails_the_service_with_the_error(service, broker_url):
    svc = service({"imports": ["no_such_module_here"]})
    svc.start(wait_ready=False)
    assert svc.proc.wait(30) == 70     # EX_SOFTWARE: the task code failed to load
    assert "No module named 'no_such_module_here'" in svc.log()
    # and systemctl status would show the error itself
    assert any("STATUS=failed: queue default: ModuleNotFoundError: No module named 'no_such_module_here'" in m
               and "ERRNO=8" in m for m in svc.read_messages()), svc.read_messages()


def test_a_broker_that_cannot_be_opened_fails_the_service_with_the_reason(service, tmp_path):
    # Given an SQLite broker in a directory that can't exist
    svc = service(broker="sqlite:///proc/no-such-dir/queue.db")
    svc.start(wait_ready=False)
    # Then the service exits at once with the reason in its log and in STATUS, no traceback
    assert svc.proc.wait(30) == 1
    assert "cannot open /proc/no-such-dir/queue.db" in svc.log() and "Traceback" not in svc.log()
    assert any("STATUS=failed: sqlite: cannot open" in m and "ERRNO=5" in m for m in svc.read_messages())


def test_an_idle_service_without_systemd_does_not_spin(service, broker_url, rdb):
    # Given a service started outside systemd (no NOTIFY_SOCKET), idle
    svc = service().start(wait_ready=False, extra_env={"NOTIFY_SOCKET": ""})
    wait_for(lambda: len(svc.worker_pids()) == 2 and "started" in svc.log(), 20, what="service up")
    # When it idles, Then its whole process tree uses a sliver of a CPU (a spinning loop uses 100%)
    before, t0 = svc.cpu_seconds(), time.monotonic()
    wait_for(lambda: time.monotonic() - t0 >= 2.0, 5, what="2 s of idling")
    assert (svc.cpu_seconds() - before) / (time.monotonic() - t0) < 0.2
