"""Redis result() waits share one subscriber connection per server
(brokers/redis_watches.py): many waits, one connection; a connection killed
or gone silent is replaced and its waiters still get their results; a forked
child waits on its own connection."""
import json
import os
import socket
import threading

import pytest

from mpqueue.brokers import Ack, open_broker
from mpqueue.brokers import redis_watches
from mpqueue.core import envelope as jobmod
from mpqueue.producer.client import Client
from tests.support import wait_for

Q = "watched"


@pytest.fixture
def client(redis_url):
    c = Client(redis_url, broker=open_broker(redis_url))
    yield c
    c.close()


def end(broker, count, result=lambda j: j.id):
    reserved, _ = broker.reserve(Q, "c1", count, 60.0)
    jobs = [jobmod.decode(r.envelope, Q, r.token) for r in reserved]
    broker.ack(Q, [Ack(j.id, j.token, json.dumps({"result": result(j)}), 60, True) for j in jobs])
    return jobs


def subscribers(rdb) -> list[str]:
    return [c for c in rdb.execute_command("CLIENT LIST TYPE pubsub").splitlines() if c.strip()]


def waiting(client, handles):
    """A thread per handle in result(); returns (threads, results, errors)."""
    results, errors = {}, []

    def wait(h):
        try:
            results[h.id] = h.result(timeout=60)
        except Exception as exc:       # noqa: BLE001 - asserted by the caller
            errors.append(exc)
    threads = [threading.Thread(target=wait, args=(h,)) for h in handles]
    for t in threads:
        t.start()
    return threads, results, errors


def subscribed(rdb, channels: int) -> bool:
    return sum(int(c.split(" sub=")[1].split()[0]) for c in subscribers(rdb)) >= channels


def test_two_hundred_waits_share_one_subscriber_connection(client, rdb):
    # Given 200 threads waiting on result() in one process
    handles = [client.push(Q, "t:f") for _ in range(200)]
    threads, results, errors = waiting(client, handles)
    wait_for(lambda: subscribed(rdb, 200) or errors, 30, what="every wait subscribed")
    # Then one connection carries all their subscriptions
    assert len(subscribers(rdb)) == 1
    end(client.broker, 200)
    for t in threads:
        t.join(60)
    assert not errors and results == {h.id: h.id for h in handles}
    # And once they are done it is subscribed to nothing
    wait_for(lambda: all("sub=0 " in c for c in subscribers(rdb)), 10, what="every channel unsubscribed")


def test_a_killed_subscriber_connection_is_replaced_and_its_waiters_get_their_results(client, rdb):
    # Given ten threads waiting
    handles = [client.push(Q, "t:f") for _ in range(10)]
    threads, results, errors = waiting(client, handles)
    wait_for(lambda: subscribed(rdb, 10) or errors, 30, what="every wait subscribed")
    # When their connection is killed, and the jobs end meanwhile
    rdb.execute_command("CLIENT KILL TYPE pubsub")
    end(client.broker, 10)
    for t in threads:
        t.join(60)
    # Then every waiter got its result, through a new connection
    assert not errors and results == {h.id: h.id for h in handles}


def test_a_connection_that_goes_silent_is_given_up_and_its_waiters_told(monkeypatch):
    # Given a subscriber whose server stops answering (a half-open TCP connection)
    monkeypatch.setattr(redis_watches, "LIVENESS", 0.2)
    ours, theirs = socket.socketpair()

    class Silent:
        def __init__(self, **_):
            self._sock = ours

        def connect(self):
            pass

        def disconnect(self):
            ours.close()

    class Pool:
        connection_class, connection_kwargs = Silent, {}
    sub = redis_watches.Subscriber(Pool(), sharded=False)
    watch = redis_watches.SharedJobWatch("mpq:{q}:watch:1", refresh=lambda: None, resubscribe=lambda w: None)
    sub._channels[watch.channel] = entry = redis_watches._Channel()
    entry.watches.add(watch)
    # When nothing answers its ping
    assert watch.wait(5)
    # Then it is given up, and the watch resubscribes at its next refresh
    assert "silent" in sub.dead
    assert theirs.recv(100).startswith(b"*1\r\n$4\r\nPING")
    assert watch.drain() == []
    resubscribed = []
    watch._resubscribe = resubscribed.append
    watch.refresh()
    assert resubscribed == [watch]
    theirs.close()


def test_a_forked_child_waits_on_a_connection_of_its_own(client, rdb):
    # Given a parent with a subscriber connection in use
    parent_job, child_job = client.push(Q, "t:f"), client.push(Q, "t:f")
    threads, results, errors = waiting(client, [parent_job])
    wait_for(lambda: subscribed(rdb, 1) or errors, 30, what="the parent's wait subscribed")
    # When a forked child waits for another job with the same client
    pid = os.fork()
    if pid == 0:                                   # the child
        code = 1
        try:
            code = 0 if child_job.result(timeout=30) == "child" else 1
        finally:
            os._exit(code)
    wait_for(lambda: len(subscribers(rdb)) == 2, 30, what="the child's own subscriber connection")
    end(client.broker, 2, result=lambda j: "child" if j.id == child_job.id else "parent")
    # Then both get their results, each on its own connection
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    for t in threads:
        t.join(30)
    assert not errors and results == {parent_job.id: "parent"}
