"""The script caller's spare connection (brokers/resp.py ScriptCaller): kept aside
between calls to skip redis-py's checkout, it must be as safe as a pooled one: made
anew when Redis closed it, never shared with a forked child, one at most."""
import os
import threading
from types import SimpleNamespace

import pytest
import redis
import redis.sentinel

from mpqueue.brokers import PushItem, open_broker
from mpqueue.brokers.resp import ScriptCaller
from mpqueue.core import envelope as jobmod
from tests.support import wait_for

Q = "spare"


@pytest.fixture
def broker(redis_url):
    b = open_broker(redis_url)
    yield b
    b.close()


def _push(broker, tag):
    broker.push(Q, [PushItem(jobmod.encode("t:f", [tag])[1])])


def _caller(broker):
    return broker.servers.for_queue(Q).caller


def test_a_spare_connection_redis_closed_is_made_anew_before_the_next_push(broker, rdb):
    # Given a broker whose script caller kept its connection after a push
    _push(broker, 1)
    [(conn, _, (sock, poller))] = _caller(broker)._spare
    # When Redis closes that connection (a restart, a timeout, CLIENT KILL) while it waits
    rdb.client_kill_filter(_id=_client_id(rdb, sock))
    wait_for(lambda: poller.poll(0), what="the close to reach the spare's socket")
    # Then the next push finds it closed and goes out on a new one, as the pool's own check would
    _push(broker, 2)
    assert broker.ready_count(Q) == 2
    [(again, _, (new_sock, _))] = _caller(broker)._spare
    assert again is conn and new_sock is not sock


def _client_id(rdb, sock):
    port = sock.getsockname()[1]
    [client] = [c for c in rdb.client_list() if c["addr"].endswith(f":{port}")]
    return client["id"]


def test_a_forked_child_never_sends_on_its_parents_spare(broker):
    # Given a parent whose script caller keeps a connection
    _push(broker, "parent")
    [(parent_conn, _, _)] = _caller(broker)._spare
    # When a forked child pushes with the same broker
    pid = os.fork()
    if pid == 0:                                     # the child: report by exit code only
        try:
            _push(broker, "child")
            [(conn, _, _)] = _caller(broker)._spare
            os._exit(0 if conn is not parent_conn else 3)
        except BaseException:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    # Then it pushed on a connection of its own, and the parent's still answers in step
    assert os.waitstatus_to_exitcode(status) == 0
    _push(broker, "parent again")
    assert broker.ready_count(Q) == 3


def test_threads_pushing_at_once_leave_one_spare_and_every_other_connection_in_the_pool(broker):
    # Given threads that push at the same time on one broker
    def pusher(i):
        for n in range(100):
            _push(broker, f"{i}-{n}")
    threads = [threading.Thread(target=pusher, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    _push(broker, "after")          # (two threads giving back at once may both let theirs go)
    # Then every push arrived, one connection is kept aside and the pool has the rest back
    assert broker.ready_count(Q) == 601
    caller = _caller(broker)
    assert len(caller._spare) == 1
    assert len(caller.client.connection_pool._in_use_connections) == 1


def test_no_spare_is_kept_behind_sentinel_or_on_a_pool_of_one():
    # Sentinel's pool must see each connection come back (it drops those to a master
    # it no longer names), and a pool of one would have none left for other commands
    sentinel = redis.sentinel.Sentinel([("127.0.0.1", 1)])
    behind_sentinel = redis.sentinel.SentinelConnectionPool("m", sentinel, max_connections=8)
    assert not ScriptCaller(SimpleNamespace(connection_pool=behind_sentinel))._keep
    assert not ScriptCaller(SimpleNamespace(connection_pool=redis.ConnectionPool(max_connections=1)))._keep
    assert ScriptCaller(SimpleNamespace(connection_pool=redis.ConnectionPool(max_connections=2)))._keep
