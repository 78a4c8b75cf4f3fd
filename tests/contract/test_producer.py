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
    job_id = send.push_with(kwargs={"delay": 1}, delay=60, queue="urgent", client=client)
    state, job = stored(client, "urgent", job_id)
    assert (state, job.kwargs) == ("scheduled", {"delay": 1})


def test_class_tasks_have_push_with(client):
    job_id = Report.push_with(kwargs={"delay": 3, "queue": "q"}, client=client)
    assert stored(client, "reports", job_id)[1].kwargs == {"delay": 3, "queue": "q"}


def test_push_with_refuses_arguments_that_are_not_json(client):
    with pytest.raises(mpqueue.PayloadError, match="not JSON-serialisable"):
        send.push_with(kwargs={"to": object()}, client=client)
    assert json.dumps(client.broker.counts("mail")) == json.dumps(
        {"ready": 0, "scheduled": 0, "running": 0, "failed": 0, "done_total": 0, "failed_total": 0})
