"""Prometheus metrics from a real `mpqueue run`: scraped over HTTP with a real
client, parsed with prometheus_client's own parser, on both brokers; counters
that survive worker recycling and SIGKILL; `mpqctl metrics` over the runtime
socket; `promtool check metrics` when Debian's prometheus package is present."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support import free_port, wait_for


pytestmark = pytest.mark.each_broker


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        assert reply.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return reply.read().decode()


def samples(text: str) -> dict:
    """{(sample name, frozenset of labels): value}."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(text, name, **labels) -> float:
    return samples(text).get((name, frozenset(labels.items())), 0.0)


def jobs(text, outcome, reason="", task="testtasks:record", queue="default") -> float:
    return value(text, "mpqueue_jobs_total", queue=queue, task=task, outcome=outcome, reason=reason)


def live_worker(svc):
    """The one worker that is not a zombie waiting to be reaped."""
    for pid in svc.worker_pids():
        with open(f"/proc/{pid}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] != "Z":
                return pid
    return None


def metrics_service(service, port, **queue):
    return service({"metrics": {"listen": f"127.0.0.1:{port}"},
                    "queues": {"default": {"workers": 1, **queue}}}).start()


def test_counters_move_as_jobs_run_fail_and_retry(service, client, rdb):
    port = free_port()
    svc = metrics_service(service, port)
    for i in range(3):
        client.push("default", "testtasks:record", args=[f"r{i}"])
    client.push("default", "testtasks:fail_then_ok", args=[2])       # two retries, then done
    client.push("default", "testtasks:fail", args=["no"])            # retries: 3 by default, then failed
    wait_for(lambda: jobs(scrape(port), "failed", "error", task="testtasks:fail") == 1, 30,
             what="the failing job to fail for good")
    # the queue gauges are read from the broker at most every 1.5 s: poll them too
    wait_for(lambda: value(scrape(port), "mpqueue_queue_jobs", queue="default", state="failed") == 1, 10,
             what="the failed store's gauge")
    text = scrape(port)
    assert jobs(text, "done") == 3
    assert jobs(text, "retried", "error", task="testtasks:fail_then_ok") == 2
    assert jobs(text, "done", task="testtasks:fail_then_ok") == 1
    assert jobs(text, "retried", "error", task="testtasks:fail") == 3
    assert value(text, "mpqueue_job_duration_seconds_count", queue="default", task="testtasks:record") == 3
    assert value(text, "mpqueue_job_wait_seconds_count", queue="default") == 5       # first attempts only
    assert value(text, "mpqueue_queue_jobs", queue="default", state="ready") == 0
    assert value(text, "mpqueue_workers", queue="default", state="idle") == 1
    assert value(text, "mpqueue_broker_up") == 1
    assert value(text, "mpqueue_build_info", version=__import__("mpqueue").__version__) == 1
    assert svc.stop() == 0


def test_counts_survive_recycling_and_sigkill(service, client, rdb):
    port = free_port()
    svc = metrics_service(service, port, max_jobs=2)
    for i in range(6):
        client.push("default", "testtasks:record", args=[f"m{i}"])
    wait_for(lambda: rdb.llen("test:runs") == 6, 30, what="six jobs")
    wait_for(lambda: jobs(scrape(port), "done") == 6, 10, what="six done in the counters")
    # each worker recycles after its second job: three of them, then a fourth waits
    wait_for(lambda: value(scrape(port), "mpqueue_worker_restarts_total", queue="default", reason="max_jobs") == 3,
             20, what="three workers recycled")
    wait_for(lambda: value(scrape(port), "mpqueue_workers", queue="default", state="idle") == 1, 10,
             what="the fourth worker ready")
    os.kill(wait_for(lambda: live_worker(svc), 10, what="the live worker"), signal.SIGKILL)
    wait_for(lambda: value(scrape(port), "mpqueue_worker_restarts_total", queue="default", reason="crashed") == 1,
             10, what="the crash counted")
    assert jobs(scrape(port), "done") == 6          # the three recycled workers' counts are all kept
    assert svc.stop() == 0


def test_a_job_killed_at_its_timeout_is_counted_by_the_supervisor(service, client, rdb):
    port = free_port()
    svc = metrics_service(service, port, timeout=1, retries=0)
    client.push("default", "testtasks:hang")
    wait_for(lambda: jobs(scrape(port), "failed", "timeout", task="testtasks:hang") == 1, 20,
             what="the timeout counted")
    # the job is settled as it is killed; the worker is reaped (and counted) a moment later
    wait_for(lambda: value(scrape(port), "mpqueue_worker_restarts_total", queue="default", reason="timeout") == 1,
             10, what="the restart counted")
    assert svc.stop() == 0


def test_a_taken_port_fails_start_up_with_one_line(service, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        svc = service({"metrics": {"listen": f"127.0.0.1:{port}"}})
        svc.start(wait_ready=False)
        assert svc.proc.wait(30) == 1
    errors = [line for line in svc.log().splitlines() if "metrics" in line]
    assert len(errors) == 1 and f"cannot listen on 127.0.0.1:{port}" in errors[0], svc.log()
    assert "Traceback" not in svc.log()


def test_mpqctl_metrics_reads_the_runtime_socket_and_falls_back_to_the_broker(service, client, rdb):
    svc = service({"metrics": {"listen": "unix"}}).start()
    client.push("default", "testtasks:record", args=["u"])
    wait_for(lambda: rdb.llen("test:runs") == 1, 10, what="the job")
    env = dict(os.environ, MPQUEUE_RUNTIME_DIR=str(svc.tmp / "run"))

    def ctl():
        done = subprocess.run([sys.executable, "-m", "mpqueue.ops.ctl", "--config", str(svc.config_path), "metrics"],
                              capture_output=True, text=True, timeout=30, env=env)
        assert done.returncode == 0, done.stderr
        return done.stdout
    sock = svc.tmp / "run" / "metrics.sock"
    assert oct(os.stat(sock).st_mode & 0o777) == "0o660"
    wait_for(lambda: jobs(ctl(), "done") == 1, 10, what="the service's counters through mpqctl")
    assert svc.stop() == 0
    down = ctl()
    assert down.startswith("# mpqueue: the service does not answer")
    assert value(down, "mpqueue_queue_jobs", queue="default", state="ready") == 0 and "mpqueue_jobs_total" not in \
        [f.name for f in text_string_to_metric_families(down) if f.samples]


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian's prometheus package) not installed")
def test_promtool_accepts_the_output(service, client, rdb, tmp_path):
    port = free_port()
    svc = metrics_service(service, port)
    client.push("default", "testtasks:record", args=["p"])
    client.push("default", "testtasks:fail", args=["p"])
    wait_for(lambda: jobs(scrape(port), "retried", "error", task="testtasks:fail") >= 1, 20, what="a retry")
    text = scrape(port)
    done = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr
    assert svc.stop() == 0


def test_a_reload_counts_its_replaced_workers_and_keeps_every_count(service, client, rdb):
    port = free_port()
    svc = metrics_service(service, port)
    client.push("default", "testtasks:record", args=["before"])
    wait_for(lambda: jobs(scrape(port), "done") == 1, 10, what="a job done")
    svc.signal(signal.SIGHUP)
    wait_for(lambda: value(scrape(port), "mpqueue_worker_restarts_total", queue="default", reason="reload") == 1,
             30, what="the replaced worker counted")
    client.push("default", "testtasks:record", args=["after"])
    wait_for(lambda: jobs(scrape(port), "done") == 2, 10, what="the old generation's count kept")
    assert svc.stop() == 0


def test_a_silent_scraper_holds_neither_the_loop_nor_the_jobs(service, client, rdb):
    port = free_port()
    svc = metrics_service(service, port)
    with socket.create_connection(("127.0.0.1", port)) as silent:     # connects, never sends a request
        seen = len(svc.read_messages())
        client.push("default", "testtasks:record", args=["while-silent"])
        wait_for(lambda: rdb.llen("test:runs") == 1, 10, what="the job to run")
        wait_for(lambda: any(m.startswith("STATUS=") for m in svc.read_messages()[seen:]), 10,
                 what="the loop to go on reporting")
        # the endpoint drops the silent connection after its timeout and answers again
        wait_for(lambda: jobs(scrape(port), "done") == 1, 15, what="a scrape after the silent one")
        assert silent.recv(1) == b""                                    # it was closed on us
    assert svc.stop() == 0


def test_a_queue_no_service_serves_is_flagged(service, client):
    # Given a service serving "default" with metrics on
    port = free_port()
    metrics_service(service, port)
    # When a job is pushed to a queue no service declares
    client.push("nowhere", "testtasks:record", args=["lost"])
    # Then its waiting job is counted and the queue flagged as served by no one
    wait_for(lambda: value(scrape(port), "mpqueue_queue_jobs", queue="nowhere", state="ready") == 1, 10,
             what="the undeclared queue's gauge")
    text = scrape(port)
    assert samples(text)[("mpqueue_queue_served", frozenset({("queue", "nowhere")}))] == 0
    assert value(text, "mpqueue_queue_served", queue="default") == 1


def test_every_series_exists_from_start_with_zero(service, tmp_path):
    """A rate() or an alert on a series that appears only at its first event misses that
    event: every label value known at start is there before any job."""
    port = free_port()
    metrics_service(service, port)
    record = ("mpqueue_jobs_total", frozenset(dict(queue="default", task="testtasks:record", outcome="done",
                                                   reason="").items()))

    def registered():
        text = scrape(port)
        return text if record in samples(text) else None
    text = wait_for(registered, 10, what="the workers' tasks registered")
    have = samples(text)
    for reason in ("crashed", "timeout", "memory", "max_jobs", "reload", "stale", "boot_failed"):
        assert have[("mpqueue_worker_restarts_total", frozenset(dict(queue="default", reason=reason).items()))] == 0
    for outcome in ("retried", "failed"):
        for reason in ("error", "timeout", "crashed", "lost"):
            key = frozenset(dict(queue="default", task="testtasks:fail", outcome=outcome, reason=reason).items())
            assert have[("mpqueue_jobs_total", key)] == 0
    assert have[("mpqueue_job_wait_seconds_count", frozenset({("queue", "default")}))] == 0
    assert have[("mpqueue_job_duration_seconds_count",
                 frozenset(dict(queue="default", task="testtasks:record").items()))] == 0
    assert have[("mpqueue_service_up", frozenset())] == 1
    if shutil.which("promtool"):
        done = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True,
                              timeout=30)
        assert done.returncode == 0, done.stdout + done.stderr


def test_mpqctl_metrics_says_what_is_true_when_service_and_broker_are_both_down(service, tmp_path):
    """node_exporter's textfile keeps the last file written: with nothing printed, it
    went on showing the last counts and broker_up 1."""
    svc = service({"metrics": {"listen": "unix"}}, broker=f"redis://127.0.0.1:{free_port()}/0")   # nobody there
    done = subprocess.run([sys.executable, "-m", "mpqueue.ops.ctl", "--config", str(svc.config_path), "metrics"],
                          capture_output=True, text=True, timeout=30,
                          env=dict(os.environ, MPQUEUE_RUNTIME_DIR=str(tmp_path / "run")))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("# mpqueue: the service does not answer")
    assert value(done.stdout, "mpqueue_broker_up") == 0 and ("mpqueue_broker_up", frozenset()) in samples(done.stdout)
    assert ("mpqueue_service_up", frozenset()) in samples(done.stdout) and value(done.stdout, "mpqueue_service_up") == 0
    assert not [f.name for f in text_string_to_metric_families(done.stdout)
                if f.samples and f.name not in ("mpqueue_broker_up", "mpqueue_service_up", "mpqueue_build_info")]
    if shutil.which("promtool"):
        check = subprocess.run(["promtool", "check", "metrics"], input=done.stdout, capture_output=True, text=True,
                               timeout=30)
        assert check.returncode == 0, check.stdout + check.stderr
