"""Queue latency and process metrics from a real `mpqueue run`, on both brokers:
the oldest waiting job's age on a stuck queue (and 0 on an empty one), in the
service's scrape and in `mpqctl metrics` once the service is down; `process_*`
series for the supervisor and each worker; and `promtool check metrics` on a
scrape taken right after start, before any job was pushed."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import pytest

from tests.e2e.test_metrics import samples, scrape, value
from tests.support import free_port, wait_for

AGE = "mpqueue_queue_oldest_job_age_seconds"


pytestmark = pytest.mark.each_broker


def two_queues(service, port, workers=1):
    """`default` (its worker may be kept busy) and `idle`, which nothing is pushed to."""
    return service({"metrics": {"listen": f"127.0.0.1:{port}"},
                    "queues": {"default": {"workers": workers}, "idle": {"workers": 1}}}).start()


def test_promtool_accepts_a_scrape_taken_right_after_start(service, tmp_path):
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool (Debian's prometheus package) not installed")
    # Given: a service just started, no job pushed
    port = free_port()
    two_queues(service, port)
    # When: it is scraped at once
    text = scrape(port)
    # Then: the new series are there, at 0 where nothing happened, and promtool accepts it all
    have = samples(text)
    assert have[(AGE, frozenset({("queue", "default")}))] == 0
    assert have[(AGE, frozenset({("queue", "idle")}))] == 0
    supervisor = frozenset(dict(role="supervisor", queue="", index="").items())
    for name in ("process_resident_memory_bytes", "process_cpu_seconds_total", "process_open_fds",
                 "process_start_time_seconds", "process_virtual_memory_bytes"):
        assert (name, supervisor) in have, name
    done = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_oldest_job_age_reports_a_stuck_queue_and_zero_for_an_empty_one(service, client, rdb):
    # Given: the only worker of `default` held by a long job, and two jobs waiting behind it
    port = free_port()
    svc = two_queues(service, port)
    client.push("default", "testtasks:hold", args=["blocker", 60])
    wait_for(lambda: rdb.llen("test:starts") == 1, 15, what="the blocking job to start")
    client.push("default", "testtasks:record", args=["waits-1"])
    client.push("default", "testtasks:record", args=["waits-2"])
    # When / Then: the age passes 1 s and goes on growing while nothing starts
    def age_from(least):
        age = value(scrape(port), AGE, queue="default")
        return age if age >= least else None
    first = wait_for(lambda: age_from(1.0), 20, interval=0.2, what="an age of 1 s")
    wait_for(lambda: age_from(first + 1.0), 20, interval=0.2, what="the age to grow")
    assert value(scrape(port), AGE, queue="idle") == 0
    assert value(scrape(port), "mpqueue_queue_jobs", queue="default", state="ready") == 2
    # And: once the worker is free the queue drains and the age is 0 again
    rdb.rpush("test:release:blocker", 1)
    wait_for(lambda: rdb.llen("test:runs") == 2, 15, what="the waiting jobs to run")
    wait_for(lambda: value(scrape(port), AGE, queue="default") == 0, 10, interval=0.2, what="age 0 again")
    # And: with the service down, mpqctl's broker-only view still shows a job waiting
    assert svc.stop() == 0
    client.push("default", "testtasks:record", args=["nobody-serves"])
    env = dict(os.environ, MPQUEUE_RUNTIME_DIR=str(svc.tmp / "run"))

    def ctl_age():
        done = subprocess.run([sys.executable, "-m", "mpqueue.ops.ctl", "--config", str(svc.config_path), "metrics"],
                              capture_output=True, text=True, timeout=30, env=env)
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("# mpqueue: the service does not answer")
        return value(done.stdout, AGE, queue="default")
    wait_for(lambda: ctl_age() > 0, 15, interval=0.2, what="the age in mpqctl's broker view")


def test_process_metrics_name_the_supervisor_and_each_worker(service):
    # Given: a service with two workers on one queue and one on another
    port = free_port()
    svc = two_queues(service, port, workers=2)
    labels = [dict(role="supervisor", queue="", index=""), dict(role="worker", queue="default", index="0"),
              dict(role="worker", queue="default", index="1"), dict(role="worker", queue="idle", index="0")]

    def all_there():
        text = scrape(port)
        return text if all(("process_resident_memory_bytes", frozenset(lb.items())) in samples(text)
                           for lb in labels) else None
    # When: it is scraped
    text = wait_for(all_there, 15, interval=0.2, what="a process series per worker")
    # Then: each process has plausible numbers, and no other process is shown
    now = time.time()
    for lb in labels:
        assert value(text, "process_resident_memory_bytes", **lb) > 1 << 20
        assert value(text, "process_open_fds", **lb) > 2
        assert now - 120 < value(text, "process_start_time_seconds", **lb) <= now + 1
        assert value(text, "process_cpu_seconds_total", **lb) >= 0
    shown = {s for (name, s) in samples(text) if name == "process_resident_memory_bytes"}
    assert shown == {frozenset(lb.items()) for lb in labels}
    # the supervisor's own resident size, as /proc tells it
    with open(f"/proc/{svc.proc.pid}/statm") as f:
        rss = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    assert abs(value(text, "process_resident_memory_bytes", role="supervisor", queue="", index="") - rss) < 64 << 20
