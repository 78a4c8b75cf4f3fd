"""The one place we read redis-py's private connection socket (brokers/resp.py
socket_of): the socket a connection talks to Redis on, None once it is closed, and a
plain error naming redis-py's version if a release ever drops the attribute. Real Redis;
the Debian 12 job runs this suite on redis-py 4.3.4 (tests/debian12-constraints.txt)."""
import pytest
import redis

from mpqueue.brokers.resp import Sender, socket_of


@pytest.fixture
def conn(redis_url):
    c = redis.Redis.from_url(redis_url).connection_pool.make_connection()
    yield c
    c.disconnect()


def test_a_connected_connections_socket_is_the_one_it_talks_to_redis_on(conn, redis_server):
    conn.connect()
    sock = socket_of(conn)
    assert sock.getpeername()[1] == redis.Redis.from_url(redis_server.url).connection_pool.connection_kwargs["port"]
    conn.send_command("PING")
    assert conn.read_response() in (b"PONG", "PONG")


def test_a_connection_not_connected_or_closed_has_no_socket(conn):
    assert socket_of(conn) is None
    conn.connect()
    conn.disconnect()
    assert socket_of(conn) is None


def test_a_redis_py_without_the_attribute_is_told_by_name():
    class Renamed:
        pass
    with pytest.raises(RuntimeError, match=rf"redis-py {redis.__version__}: Renamed has no _sock"):
        socket_of(Renamed())


def test_corking_a_sender_whose_connection_is_gone_is_a_no(redis_url):
    sender = Sender(redis.Redis.from_url(redis_url))
    sender.conn = sender.client.connection_pool.make_connection()      # never connected
    assert sender._cork(1) is False
