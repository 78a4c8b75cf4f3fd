"""Receipts held back (brokers/resp.py Sender.held): a hand-off's confirm sent inside
is committed to the kernel at once, so it reaches Redis even if we die right after,
but Redis is woken only when the block ends (the dispatcher writes the worker's pipe
meanwhile). Real Redis on loopback TCP."""
import os
import socket

import pytest

from mpqueue.brokers import PushItem, open_broker
from mpqueue.brokers.resp import TCP_CORK, socket_of
from mpqueue.core import envelope as jobmod
from tests.support import wait_for

Q = "receipts"
LEASE = 600.0


@pytest.fixture
def broker(redis_url):
    b = open_broker(redis_url)
    yield b
    b.close()


def _reserved(broker):
    broker.push(Q, [PushItem(jobmod.encode("t:f")[1])])
    (job,), _ = broker.reserve(Q, "w", 1, 30)
    return jobmod.job_id(job.envelope), job.token


def _lease_ms(rdb, job_id):
    return rdb.zscore(f"mpq:{{{Q}}}:leases", job_id)


def test_a_receipt_held_back_is_corked_inside_and_reaches_redis_at_the_end(broker, rdb):
    job_id, token = _reserved(broker)
    before = _lease_ms(rdb, job_id)
    sender = broker.servers.for_queue(Q).receipts
    with broker.receipts_held(Q):
        broker.extend_soon(Q, job_id, token, LEASE)
        # held in the kernel, not sent: the socket is corked
        assert socket_of(sender.conn).getsockopt(socket.IPPROTO_TCP, TCP_CORK) == 1
    assert socket_of(sender.conn).getsockopt(socket.IPPROTO_TCP, TCP_CORK) == 0
    wait_for(lambda: _lease_ms(rdb, job_id) > before + 100_000, what="the held receipt to reach Redis")


def test_a_receipt_held_back_reaches_redis_though_its_sender_dies_inside(redis_url, rdb):
    # Given a job reserved, and a process that sends its receipt inside held() and dies there
    b = open_broker(redis_url)
    job_id, token = _reserved(b)
    before = _lease_ms(rdb, job_id)
    pid = os.fork()
    if pid == 0:                              # child: no cleanup of any kind, as a SIGKILL
        with b.receipts_held(Q):
            b.extend_soon(Q, job_id, token, LEASE)
            os._exit(0)
    os.waitpid(pid, 0)
    b.close()
    # Then the kernel sent what it held when the process's socket closed
    wait_for(lambda: _lease_ms(rdb, job_id) > before + 100_000, what="the receipt of the dead sender")
