"""`mpqctl` end to end: the real CLI in a subprocess against our private
redis-server, and the same commands against an SQLite broker."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from mpqueue.brokers import Ack, open_broker
from mpqueue.producer.client import Client
from tests.support import free_port

ROOT = Path(__file__).resolve().parents[2]
Q = "default"


def ctl(*args, url=None, stdin="", env=None):
    """Run `mpqctl [--broker url] args...`; stdin is empty unless given."""
    cmd = [sys.executable, "-m", "mpqueue.ops.ctl"] + (["--broker", url] if url else []) + list(args)
    base = {k: v for k, v in os.environ.items() if k != "MPQUEUE_BROKER"}
    base["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p])
    return subprocess.run(cmd, input=stdin, capture_output=True, text=True, cwd=ROOT, timeout=30,
                          env={**base, **(env or {})})


def one_line_error(result, code: int) -> str:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mpqctl: "), result.stderr
    return lines[0]


# Every mpqctl command runs against each broker: they speak only the broker interface.
pytestmark = pytest.mark.each_broker


@pytest.fixture
def broker(broker_url):
    b = open_broker(broker_url)
    yield b
    b.close()


def push(broker, broker_url, task="m:f", args=(), queue=Q, **kw) -> str:
    return Client(broker_url, broker=broker).push(queue, task, args, **kw)


def fail_job(broker, broker_url, message="boom", at=None) -> str:
    """Push a job and move it to the failed store (priority 9: it is reserved first)."""
    job_id = push(broker, broker_url, "m:flaky", [message], priority=9)
    [res], _ = broker.reserve(Q, "node:1", 1, 30)
    error = {"type": "error", "message": f"ValueError: {message}", "attempts": 1,
             "traceback": f"Traceback (most recent call last):\nValueError: {message}", "at": at or time.time()}
    assert broker.fail(Q, job_id, res.token, json.dumps(error))
    return job_id


# -- push
def test_push_prints_an_id_and_the_job_is_ready(broker_url, broker):
    # When a job is pushed with arguments
    r = ctl("push", Q, "m:f", "--args", '[1, "a"]', "--kwargs", '{"k": 2}', url=broker_url)
    # Then its id is printed and the broker holds it ready
    assert r.returncode == 0, r.stderr
    found = broker.find(Q, r.stdout.strip())
    assert found["state"] == "ready"
    assert json.loads(found["envelope"].split(" ", 3)[3])["a"] == [1, "a"]


def test_push_json_after_the_command_with_delay_or_eta_schedules(broker_url, broker):
    r = ctl("push", Q, "m:f", "--delay", "60", "--priority", "7", "--json", url=broker_url)
    assert r.returncode == 0, r.stderr
    assert broker.find(Q, json.loads(r.stdout)["id"])["state"] == "scheduled"
    # A timezone-naive --eta is local time: an hour from now is not due yet
    eta = (time.time() + 3600)
    naive = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(eta))
    r = ctl("--json", "push", Q, "m:f", "--eta", naive, url=broker_url)
    found = broker.find(Q, json.loads(r.stdout)["id"])
    assert found["state"] == "scheduled" and abs(found["due_ms"] / 1000 - eta) < 5


@pytest.mark.parametrize("option,value", [
    ("--args", "{not json"), ("--args", '{"a": 1}'), ("--kwargs", "[1]"),
    ("--priority", "12"), ("--eta", "next tuesday")])
def test_a_bad_push_option_is_a_one_line_error_naming_it(broker_url, broker, option, value):
    r = ctl("push", Q, "m:f", option, value, url=broker_url)
    assert option in one_line_error(r, 2)
    assert broker.counts(Q)["ready"] == 0


def test_an_unreachable_broker_is_one_line_naming_the_url_without_password():
    url = f"redis://:hunter2@127.0.0.1:{free_port()}/0"
    line = one_line_error(ctl("status", url=url), 1)
    assert url.replace("hunter2", "***") in line and "hunter2" not in line


def test_the_broker_comes_from_the_environment_else_it_is_an_error(broker_url):
    assert ctl("push", Q, "m:f", env={"MPQUEUE_BROKER": broker_url}).returncode == 0
    assert "MPQUEUE_BROKER" in one_line_error(ctl("push", Q, "m:f"), 2)


def test_a_config_gives_broker_queues_and_max_payload(tmp_path, broker_url, broker):
    pytest.importorskip("mpqueue.core.config")
    # Given a service config with a small max_payload
    path = tmp_path / "svc.yaml"
    path.write_text(yaml.safe_dump({"name": "svc", "broker": broker_url, "max_payload": 1024, "imports": ["x"],
                                    "queues": {"emails": {"workers": 1}}}))
    # Then status lists its queue although the broker never saw it
    r = ctl("--config", str(path), "status", "--json")
    assert r.returncode == 0, r.stderr
    assert list(json.loads(r.stdout)["queues"]) == ["emails"]
    # And a payload over max_payload is refused with exit 1
    line = one_line_error(ctl("-c", str(path), "push", "emails", "m:f", "--args", json.dumps(["x" * 2000])), 1)
    assert "max_payload" in line


# -- status
def test_status_shows_counts_and_live_nodes(broker_url, broker):
    # Given two ready jobs, a scheduled one, a failed one and a live node
    push(broker, broker_url)
    push(broker, broker_url)
    push(broker, broker_url, delay=60)
    fail_job(broker, broker_url)
    broker.heartbeat("n1", {"node": "n1", "service": "svc", "host": "box", "pid": 42, "heartbeat_at": time.time(),
                            "queues": {Q: {"workers": 3, "busy": 1, "idle": 2}}}, ttl=30)
    # When status is asked for in JSON, before or after the command
    for args in (["--json", "status"], ["status", "--json"]):
        r = ctl(*args, url=broker_url)
        assert r.returncode == 0, r.stderr
        data = json.loads(r.stdout)
        # Then the counts and the node are there
        assert data["queues"] == {Q: {"ready": 2, "scheduled": 1, "running": 0, "failed": 1,
                                      "done_total": 0, "failed_total": 1, "throttled_total": 0, "paused": False,
                                      "served": True}}
        [node] = data["nodes"]
        assert node["host"] == "box" and node["queues"][Q]["busy"] == 1 and 0 <= node["heartbeat_age"] < 10
    # And the human form is an aligned table
    out = ctl("status", url=broker_url).stdout.splitlines()
    assert out[0].split() == ["QUEUE", "READY", "SCHEDULED", "RUNNING", "FAILED", "DONE_TOTAL", "FAILED_TOTAL",
                              "THROTTLED_TOTAL"]
    assert out[1].split() == [Q, "2", "1", "0", "1", "0", "1", "0"] and len(out[0]) == len(out[1])
    assert out[4].split()[:7] == ["box", "42", "svc", Q, "3", "1", "2"]


def test_status_flags_a_queue_with_jobs_that_no_live_node_serves(tmp_path, broker_url, broker):
    # Given a service config declaring "emails", a live node serving it, and a push
    # to "default" (what @mpqueue.task() without a queue uses), which nobody serves
    path = tmp_path / "svc.yaml"
    path.write_text(yaml.safe_dump({"name": "svc", "broker": broker_url, "imports": ["x"],
                                    "queues": {"emails": {"workers": 1}}}))
    broker.heartbeat("n1", {"node": "n1", "service": "svc", "host": "box", "pid": 42, "heartbeat_at": time.time(),
                            "queues": {"emails": {"workers": 1, "busy": 0, "idle": 1}}}, ttl=30)
    push(broker, broker_url, queue="default")
    # When status is asked for with the config
    data = json.loads(ctl("--config", str(path), "status", "--json").stdout)
    # Then the undeclared queue is listed, with its job, as served by no one
    assert data["queues"]["default"]["ready"] == 1 and data["queues"]["default"]["served"] is False
    assert data["queues"]["emails"]["served"] is True
    # And the table says so
    rows = {line.split()[0]: line for line in ctl("--config", str(path), "status").stdout.splitlines()[1:3]}
    assert "(no workers)" in rows["default"] and "(no workers)" not in rows["emails"]


@pytest.mark.parametrize("args", [["status", "nosuch"], ["failed", "nosuch"], ["retry", "nosuch", "--all"],
                                  ["clean", "nosuch", "--yes"], ["purge-failed", "nosuch", "--yes"]])
def test_an_unknown_queue_is_an_error(broker_url, broker, args):
    push(broker, broker_url)
    assert "unknown queue 'nosuch'" in one_line_error(ctl(*args, url=broker_url), 1)


# -- failed and retry
def test_failed_lists_jobs_and_retry_moves_them_back(broker_url, broker):
    # Given two failed jobs
    first = fail_job(broker, broker_url, "one", at=time.time() - 10)
    second = fail_job(broker, broker_url, "two")
    # When they are listed in JSON
    r = ctl("failed", Q, "--json", url=broker_url)
    assert r.returncode == 0, r.stderr
    jobs = json.loads(r.stdout)
    # Then oldest failure first, with the job and its error
    assert [j["id"] for j in jobs] == [first, second]
    assert jobs[0]["task"] == "m:flaky" and jobs[0]["args"] == ["one"] and jobs[0]["kwargs"] == {}
    assert jobs[0]["attempts"] == 1
    assert jobs[0]["error"]["type"] == "error" and jobs[0]["error"]["message"] == "ValueError: one"
    assert "Traceback" in jobs[0]["error"]["traceback"]
    # And the human form shows the tracebacks on demand
    human = ctl("failed", Q, "--traceback", url=broker_url).stdout
    assert first in human and "ValueError: two" in human and "Traceback (most recent" in human
    assert "Traceback" not in ctl("failed", Q, url=broker_url).stdout
    # When one is retried together with an unknown id
    r = ctl("retry", Q, first, "nope", "--json", url=broker_url)
    assert r.returncode == 0 and json.loads(r.stdout) == {"queue": Q, "requeued": 1, "not_found": ["nope"]}
    assert "nope" in r.stderr and broker.find(Q, first)["state"] == "ready"
    # Then retrying only unknown ids fails; --all takes the rest
    assert "nope" in one_line_error(ctl("retry", Q, "nope", url=broker_url), 1)
    assert ctl("retry", Q, "--all", url=broker_url).stdout.strip() == f"requeued 1 job(s) of {Q}"
    assert broker.counts(Q)["failed"] == 0 and broker.counts(Q)["ready"] == 2


def test_retry_needs_ids_or_all(broker_url, broker):
    fail_job(broker, broker_url)
    one_line_error(ctl("retry", Q, url=broker_url), 2)


# -- job
def job_json(broker_url, job_id, *args):
    r = ctl("job", job_id, "--json", *args, url=broker_url)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_job_shows_ready_scheduled_failed_and_done_jobs(broker_url, broker):
    # Given a done job, a failed one, a scheduled one and a ready one, in that order
    done = push(broker, broker_url, "m:add", [1, 2])
    [res], _ = broker.reserve(Q, "node:1", 1, 30)
    record = json.dumps({"task": "m:add", "attempts": 1, "result": 3, "finished_at": time.time(), "duration_ms": 1.5})
    broker.ack(Q, [Ack(done, res.token, record, 60)])
    failed = fail_job(broker, broker_url)
    scheduled = push(broker, broker_url, delay=60, kwargs={"x": 1})
    ready = push(broker, broker_url, priority=4)
    # Then each is found in its state, with what the broker knows of it
    assert job_json(broker_url, done) | {"finished_at": 0} == {
        "id": done, "queue": Q, "state": "done", "task": "m:add", "args": None, "kwargs": None, "attempts": 1,
        "priority": None, "result": 3, "finished_at": 0, "duration_ms": 1.5}
    info = job_json(broker_url, failed, "--queue", Q)
    assert info["state"] == "failed" and info["error"]["message"] == "ValueError: boom" and info["attempts"] == 1
    info = job_json(broker_url, scheduled)
    assert info["state"] == "scheduled" and info["kwargs"] == {"x": 1} and info["due_at"] > time.time() + 50
    assert info["last_error"] is None
    info = job_json(broker_url, ready)
    assert (info["state"], info["task"], info["priority"], info["attempts"]) == ("ready", "m:f", 4, 0)
    # And the human form names the state
    assert "state: failed" in ctl("job", failed, url=broker_url).stdout


def test_an_absent_job_is_not_found(broker_url, broker):
    push(broker, broker_url)
    assert "job feedbeef not found" in one_line_error(ctl("job", "feedbeef", url=broker_url), 1)


def test_a_caller_id_in_two_queues_needs_the_queue_for_job_and_cancel(broker_url, broker):
    push(broker, broker_url, job_id="order-77")
    push(broker, broker_url, queue="other", job_id="order-77")
    for command in ("job", "cancel"):
        assert "job order-77 is in queues" in one_line_error(ctl(command, "order-77", url=broker_url), 1)
    done = ctl("cancel", "order-77", "--queue", "other", url=broker_url)
    assert done.returncode == 0, done.stderr
    assert json.loads(ctl("job", "order-77", "--queue", Q, "--json", url=broker_url).stdout)["state"] == "ready"


# -- clean and purge-failed
def test_clean_asks_and_aborts_without_an_answer_then_yes_drops(broker_url, broker):
    # Given a ready and a scheduled job
    push(broker, broker_url)
    push(broker, broker_url, delay=60)
    # When clean runs without --yes and no answer can come
    line = one_line_error(ctl("clean", Q, stdin="", url=broker_url), 1)
    # Then it aborts, saying so, and drops nothing
    assert "--yes" in line and broker.counts(Q)["ready"] == 1
    # When --yes is given, both go
    r = ctl("clean", Q, "--yes", "--json", url=broker_url)
    assert json.loads(r.stdout) == {"queue": Q, "dropped": 2}
    assert broker.counts(Q)["ready"] == broker.counts(Q)["scheduled"] == 0


def test_purge_failed_asks_and_aborts_without_an_answer_then_yes_drops(broker_url, broker):
    fail_job(broker, broker_url)
    fail_job(broker, broker_url)
    assert "--yes" in one_line_error(ctl("purge-failed", Q, url=broker_url), 1)
    assert broker.counts(Q)["failed"] == 2
    r = ctl("purge-failed", Q, "-y", url=broker_url)
    assert r.returncode == 0 and r.stdout.strip() == f"dropped 2 failed job(s) of {Q}"
    assert broker.counts(Q)["failed"] == 0
