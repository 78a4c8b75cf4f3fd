"""A task's arguments are checked when it is pushed, against its signature (as a
call would be): a wrong call is one TypeError in the caller, and nothing is
pushed, instead of a job that fails in a worker."""
import asyncio
import inspect

import pytest

import mpqueue
from mpqueue import Client


@mpqueue.task(name="tests.unit.args:ship", queue="args")
def ship(order_id, carrier="post", *, express=False):
    return order_id


class Refund(mpqueue.Task):
    name = "tests.unit.args:Refund"
    queue = "args"

    def run(self, order_id, amount):
        return amount


@pytest.fixture
def client():
    client = Client("sync://")
    yield client
    client.close()


def nothing_pushed(client):
    return client.broker.counts("args")["done_total"] == 0 if "args" in client._known_queues else True


@pytest.mark.parametrize("call, message", [
    (lambda c: ship.push(client=c), "task tests.unit.args:ship: wrong arguments: missing a required argument: "
                                    "'order_id'"),
    (lambda c: ship.push(1, "dhl", "extra", client=c), "too many positional arguments"),
    (lambda c: ship.push(1, colour="red", client=c), "got an unexpected keyword argument 'colour'"),
    (lambda c: ship.push_with(args=[], kwargs={"express": True}, client=c), "missing a required argument"),
    (lambda c: Refund.push(1, client=c), "task tests.unit.args:Refund: wrong arguments: missing a required "
                                         "argument: 'amount'"),
    (lambda c: Refund.push_with(args=[1, 2, 3], client=c), "too many positional arguments"),
])
def test_a_wrong_call_is_a_type_error_in_the_caller_and_pushes_nothing(client, call, message):
    with pytest.raises(TypeError) as info:
        call(client)
    assert message in str(info.value) and "\n" not in str(info.value)
    assert nothing_pushed(client)


def test_job_id_given_to_push_says_push_with_takes_it(client):
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'job_id'; job_id is not an option of "
                                        r"push\(\): push_with\(args=\[\.\.\.\], job_id=\.\.\.\) takes it"):
        ship.push(1, job_id="order-1", client=client)
    handle = ship.push_with(args=[1], job_id="order-1", client=client)
    assert handle.id == "order-1" and handle.result(1) == 1


def test_apush_checks_too(client):
    with pytest.raises(TypeError, match="missing a required argument: 'order_id'"):
        asyncio.run(ship.apush(client=client))
    with pytest.raises(TypeError, match="missing a required argument: 'amount'"):
        asyncio.run(Refund.apush_with(args=[1], client=client))


def test_right_calls_run(client):
    assert ship.push(7, "dhl", express=True, client=client).result(1) == 7
    assert ship.push_with(kwargs={"order_id": 8}, client=client).result(1) == 8
    assert Refund.push(1, amount=5, client=client).result(1) == 5



def test_a_task_signature_is_read_once_and_every_push_is_still_checked(client, monkeypatch):
    # Given a task pushed before (its signature read then), and inspect.signature watched
    @mpqueue.task(name="tests.unit.args:label", queue="args")
    def label(order_id):
        return order_id
    label.push(1, client=client)
    reads = []
    real = inspect.signature
    monkeypatch.setattr(inspect, "signature", lambda f, *a, **k: reads.append(f) or real(f, *a, **k))
    # When it is pushed again, rightly and wrongly
    label.push(2, client=client)
    with pytest.raises(TypeError, match="missing a required argument: 'order_id'"):
        label.push(client=client)
    # Then nothing read the signature again, and the wrong call was refused all the same
    assert reads == []


def test_a_callable_that_cannot_be_hashed_is_checked_too(client):
    class Unhashable:
        __hash__ = None

        def __call__(self, order_id):
            return order_id
    task = mpqueue.task(Unhashable(), name="tests.unit.args:unhashable", queue="args")
    with pytest.raises(TypeError, match="missing a required argument: 'order_id'"):
        task.push(client=client)
