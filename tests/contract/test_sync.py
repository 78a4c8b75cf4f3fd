"""sync://: a push runs the job inline, with the same retry, failed-store and
failure-hook rules as a service (the parts of the contract that apply inline)."""
import json
import sys
import textwrap

import pytest

import mpqueue
from mpqueue import Client

TASKS = '''
import mpqueue

RUNS = []

@mpqueue.task(queue="default")
def record(tag):
    j = mpqueue.current_job()
    RUNS.append((tag, j.attempt))
    return tag

@mpqueue.task(queue="default", retries=2, retry_delay=30)
def always_fails():
    RUNS.append(("fail", mpqueue.current_job().attempt))
    raise ValueError("boom")

@mpqueue.task(queue="default", retries=3)
def fails_twice():
    j = mpqueue.current_job()
    RUNS.append(("twice", j.attempt))
    if j.attempt <= 2:
        raise mpqueue.Retry(delay=60)

@mpqueue.task(queue="default")
def chain(n):
    RUNS.append(("chain", n))
    if n:
        chain.push(n - 1)
    RUNS.append(("chain-end", n))

def report(job, error):
    RUNS.append(("hook", job["task"], error["type"], job["attempts"]))
'''


@pytest.fixture
def tasks(tmp_path, monkeypatch):
    (tmp_path / "synctasks.py").write_text(textwrap.dedent(TASKS))
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("synctasks", None)
    import synctasks
    yield synctasks
    sys.modules.pop("synctasks", None)


@pytest.fixture
def client(tmp_path):
    cfg = tmp_path / "dev.yaml"
    cfg.write_text("broker: sync://\nimports: [synctasks]\n"
                   "queues: {default: {workers: 1, on_failure: 'synctasks:report'}}\n")
    c = mpqueue.connect(str(cfg))
    yield c
    mpqueue.producer.default.set_default_client(None)


def test_push_runs_the_job_before_returning_and_keeps_its_result(tasks, client):
    job_id = client.push("default", "synctasks:record", args=["a"])
    assert tasks.RUNS == [("a", 1)]
    assert client.broker.find("default", job_id)["result"] == "a"
    assert client.broker.counts("default")["done_total"] == 1


def test_a_failing_job_is_retried_then_failed_and_its_hook_runs(tasks, client):
    job_id = tasks.always_fails.push()
    # retries=2: three attempts, the back-off not waited for, then the queue's hook
    assert tasks.RUNS == [("fail", 1), ("fail", 2), ("fail", 3),
                          ("hook", "synctasks:always_fails", "error", 3)]
    (failed_id, _, error), = client.broker.failed("default")
    assert failed_id == job_id and json.loads(error)["message"] == "ValueError: boom"


def test_retry_asked_by_the_job_runs_again_with_the_attempt_count(tasks, client):
    tasks.fails_twice.push()
    assert tasks.RUNS == [("twice", 1), ("twice", 2), ("twice", 3)]
    assert client.broker.counts("default")["failed"] == 0


def test_a_job_pushed_by_a_job_runs_after_it_not_inside_it(tasks, client):
    tasks.chain.push(2)
    assert tasks.RUNS == [("chain", 2), ("chain-end", 2), ("chain", 1), ("chain-end", 1),
                          ("chain", 0), ("chain-end", 0)]


def test_delay_and_priority_are_accepted_and_the_job_runs_at_once(tasks, client):
    client.push("default", "synctasks:record", args=["later"], delay=3600, priority=9)
    assert tasks.RUNS == [("later", 1)]


def test_an_unknown_task_lands_in_the_failed_store(tasks, client):
    job_id = client.push("default", "synctasks:nothing_here")
    assert client.broker.find("default", job_id)["error"]["type"] == "unknown_task"


def test_a_sync_broker_from_a_url_needs_no_config(tasks):
    c = Client("sync://")
    c.push("default", "synctasks:record", args=["x"])
    assert tasks.RUNS == [("x", 1)]
