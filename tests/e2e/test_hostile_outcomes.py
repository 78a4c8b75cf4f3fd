"""Whatever a task does or returns, its job ends in exactly one of done, retried
(attempt spent) or failed with a type that says why, and runs no more often
than its attempts allow: real `mpqueue run`, real workers, both brokers.
(Before, each of these crashed the worker after its scoreboard said idle, and
the job went back unspent to run again hundreds of times a second.)"""
from __future__ import annotations

import json

import pytest

from mpqueue import Client
from mpqueue.brokers import PushItem
from mpqueue.core import envelope as jobmod
from tests.support import TASKS, wait_for

HOSTILE = TASKS + '''

class BadStr(Exception):
    def __str__(self):
        raise RuntimeError("no text for you")

class BadRepr:
    def __repr__(self):
        raise RuntimeError("no repr either")

def _ran(tag):
    r().rpush("test:ran", tag)

@mpqueue.task(queue="default", retries=2)
def retry_with(tag, delay):
    _ran(tag)
    raise mpqueue.Retry(delay={"inf": float("inf"), "nan": float("nan"), "neg": -1}.get(delay, delay))

@mpqueue.task(queue="default", retries=0)
def returns(tag, what):
    _ran(tag)
    return {"surrogate": "caf\\udce9", "badrepr": BadRepr(), "nan": float("nan"), "set": {1}}[what]

@mpqueue.task(queue="default", retries=1)
def raises_bad_str(tag):
    _ran(tag)
    raise BadStr()
'''


pytestmark = pytest.mark.each_broker


@pytest.fixture
def running(service, broker_url):
    service({"queues": {"default": {"workers": 1, "retry_delay": 0}}}, tasks=HOSTILE).start()
    client = Client(broker_url)
    yield client
    client.close()


def final(client, job_id, timeout=15.0):
    return wait_for(lambda: (s := client.broker.find("default", job_id)) and s["state"] in ("done", "failed") and s,
                    timeout, what=f"job {job_id} done or failed")


def runs(rdb, tag):
    return rdb.lrange("test:ran", 0, -1).count(tag)


@pytest.mark.parametrize("delay", ["inf", "nan", "neg", "soon"])
def test_a_retry_with_a_delay_that_cannot_be_honoured_fails_as_bad_result_once(running, rdb, delay):
    job_id = running.push("default", "testtasks:retry_with", args=[delay, delay])
    found = final(running, job_id)
    assert (found["state"], found["error"]["type"]) == ("failed", "bad_result")
    assert "Retry(delay=" in found["error"]["message"]
    assert runs(rdb, delay) == 1


@pytest.mark.parametrize("what", ["surrogate", "badrepr", "nan", "set"])
def test_a_result_that_is_not_json_is_kept_as_its_repr_and_the_job_is_done_once(running, rdb, what):
    job_id = running.push("default", "testtasks:returns", args=[what, what])
    found = final(running, job_id)
    assert found["state"] == "done" and isinstance(found["result"], str)
    json.dumps(found, ensure_ascii=False).encode("utf-8")          # what mpqctl prints is valid UTF-8
    assert runs(rdb, what) == 1


def test_an_exception_whose_str_raises_is_an_error_that_spends_its_attempts(running, rdb):
    job_id = running.push("default", "testtasks:raises_bad_str", args=["bad"])
    found = final(running, job_id)
    assert (found["state"], found["error"]["type"]) == ("failed", "error")
    assert found["error"]["message"].startswith("BadStr: <str() raised RuntimeError>")
    assert runs(rdb, "bad") == 2                                   # retries: 1


def test_a_payload_nested_too_deep_for_any_decoder_is_refused_at_push(running):
    deep = []
    for _ in range(1000):
        deep = [deep]
    with pytest.raises(jobmod.PayloadError, match="nested more than 100 levels"):
        running.push("default", "testtasks:record", args=[deep])


def test_a_foreign_writers_too_deep_payload_fails_as_bad_payload_and_the_worker_lives(running, rdb):
    # Given an envelope no decoder can read, written past the producer's checks
    body = '{"t":"testtasks:record","a":[' + "[" * 5000 + "]" * 5000 + "]}"
    running.broker.push("default", [PushItem(f"deepjob 0 0 {body}", 0, 0)])
    found = final(running, "deepjob")
    assert (found["state"], found["error"]["type"]) == ("failed", "bad_payload")
    # And the same worker serves the next job
    job_id = running.push("default", "testtasks:record", args=["after"])
    assert final(running, job_id)["state"] == "done"
