"""The producer API against a real (SQLite) broker: `task.push()` takes push
options by keyword, and `push_with()` passes any keyword arguments to the task,
those names included (RQ's issue 98)."""
import json

import pytest

import mpqueue
from mpqueue import Client
from mpqueue.core import envelope as jobmod


@mpqueue.task(name="tests.producer:send", queue="mail")
def send(to, delay=None, queue=None, priority=None, eta=None, client=None):
    return to


class Report(mpqueue.Task):
    name = "tests.producer:Report"
    queue = "reports"

    def run(self, delay=None, queue=None):
        return delay


@pytest.fixture
def client(tmp_path):
    c = Client(f"sqlite://{tmp_path}/producer.db")
    yield c
    c.close()


def stored(client, queue, job_id):
    found = client.broker.find(queue, job_id)
    return found["state"], jobmod.decode(found["envelope"])


def test_push_takes_its_options_by_keyword(client):
    job_id = send.push("a@b", delay=60, priority=5, client=client)
    state, job = stored(client, "mail", job_id)
    assert (state, job.args, job.kwargs, job.priority) == ("scheduled", ["a@b"], {}, 5)


def test_push_with_passes_every_keyword_to_the_task(client):
    kwargs = {"delay": 5, "queue": "elsewhere", "priority": 9, "eta": "tomorrow", "client": "x"}
    job_id = send.push_with(args=["a@b"], kwargs=kwargs, client=client)
    state, job = stored(client, "mail", job_id)
    assert (state, job.args, job.kwargs, job.priority) == ("ready", ["a@b"], kwargs, 0)


def test_push_with_takes_options_too(client):
    job_id = send.push_with(kwargs={"to": "a@example.com", "delay": 1}, delay=60, queue="urgent", client=client)
    state, job = stored(client, "urgent", job_id)
    assert (state, job.kwargs) == ("scheduled", {"to": "a@example.com", "delay": 1})


def test_class_tasks_have_push_with(client):
    job_id = Report.push_with(kwargs={"delay": 3, "queue": "q"}, client=client)
    assert stored(client, "reports", job_id)[1].kwargs == {"delay": 3, "queue": "q"}


def test_push_with_refuses_arguments_that_are_not_json(client):
    with pytest.raises(mpqueue.PayloadError, match="not JSON-serialisable"):
        send.push_with(kwargs={"to": object()}, client=client)
    assert json.dumps(client.broker.counts("mail")) == json.dumps(
        {"ready": 0, "scheduled": 0, "running": 0, "failed": 0, "done_total": 0, "failed_total": 0,
         "throttled_total": 0})


# -- hostile input at push time: one clear PayloadError each, nothing stored
@pytest.mark.parametrize("delay, why", [
    (float("inf"), "delay: expected a finite number"), (float("nan"), "delay: expected a finite number"),
    (-1, "delay: expected a finite number"), ("5", "delay: expected a finite number"),
    (True, "delay: expected a finite number"), (1e12, "delay: expected a finite number of seconds from 0 to"),
])
def test_a_bad_delay_is_one_clear_error(client, delay, why):
    with pytest.raises(mpqueue.PayloadError, match=why):
        client.push("mail", "tests.producer:send", delay=delay)
    assert client.broker.counts("mail")["scheduled"] == 0


@pytest.mark.parametrize("eta, why", [
    (float("inf"), "eta: expected a datetime or finite epoch seconds"),
    (float("nan"), "eta: expected a datetime or finite epoch seconds"),
    ("2030-01-01", "eta: expected a datetime or finite epoch seconds"),
    (4e10, "is more than"),
])
def test_a_bad_eta_is_one_clear_error(client, eta, why):
    with pytest.raises(mpqueue.PayloadError, match=why):
        client.push("mail", "tests.producer:send", eta=eta)


def test_an_eta_in_the_past_runs_now(client):
    job_id = client.push("mail", "tests.producer:send", eta=0)
    assert client.broker.find("mail", job_id)["state"] == "ready"


@pytest.mark.parametrize("args, why", [
    (["caf\udce9"], "not valid UTF-8"), ([float("nan")], "not JSON-serialisable"),
    ([float("inf")], "not JSON-serialisable"),
])
def test_arguments_that_would_not_decode_everywhere_are_refused(client, args, why):
    with pytest.raises(mpqueue.PayloadError, match=why):
        client.push("mail", "tests.producer:send", args=args)
