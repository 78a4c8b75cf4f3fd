"""The dashboard's gate on real loopback sockets, without Flask: whole requests go to
a worker, the oldest idle connection makes room, a refused body is answered."""
import socket
import threading

import pytest

from mpqueue.web.gate import HEAD_DEADLINE, REPORT_EVERY, Gate, body_length
from tests.support import wait_for


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def gate(clock):
    listener = socket.create_server(("127.0.0.1", 0))
    seen = []

    def handle(sock, addr, request):
        seen.append(request)
        sock.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")
    g = Gate(listener, handle, max_body=100, workers=2, max_open=4, clock=clock)
    thread = threading.Thread(target=g.serve_forever, daemon=True)
    thread.start()
    g.port, g.seen = listener.getsockname()[1], seen
    yield g
    g.shutdown()
    thread.join(5)
    listener.close()


def connect(gate, data=b""):
    sock = socket.create_connection(("127.0.0.1", gate.port), timeout=5)
    sock.sendall(data)
    return sock


def read_all(sock) -> bytes:
    """What the gate sent before it closed (a close with our data unread is a reset)."""
    chunks = []
    try:
        while chunk := sock.recv(4096):
            chunks.append(chunk)
    except ConnectionResetError:
        pass
    return b"".join(chunks)


def test_a_request_arriving_in_pieces_reaches_the_worker_whole_with_its_body(gate):
    sock = connect(gate, b"POST /api/x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n")
    sock.sendall(b"\r\nhel")
    sock.sendall(b"lo")
    assert read_all(sock).endswith(b"ok")
    assert gate.seen == [b"POST /api/x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"]


def test_when_max_open_connections_idle_the_oldest_is_closed_to_let_a_new_one_in(gate):
    # Given: as many idle connections as the gate reads at once, and two more
    idle = [connect(gate, b"GET / HTTP/1.1\r\n") for _ in range(6)]
    # When: a whole request comes
    sock = connect(gate, b"GET / HTTP/1.1\r\n\r\n")
    # Then: it is answered, and the oldest idle ones were closed for room
    assert read_all(sock).endswith(b"ok")
    assert read_all(idle[0]) == b"" and read_all(idle[1]) == b""
    for s in idle + [sock]:
        s.close()


@pytest.mark.parametrize("head, status", [(b"Content-Length: 101", b"413"), (b"Content-Length: -1", b"400"),
                                          (b"Transfer-Encoding: gzip", b"501"),
                                          (b"Transfer-Encoding: chunked\r\nContent-Length: 5", b"400")])
def test_a_body_the_gate_refuses_is_answered_while_the_client_still_sends(gate, head, status):
    sock = connect(gate, b"POST / HTTP/1.1\r\n" + head + b"\r\n\r\n" + b"x" * 50)
    answer = read_all(sock)
    assert answer.startswith(b"HTTP/1.1 " + status) and b'{"error": ' in answer
    assert gate.seen == []


def test_a_chunked_body_reaches_the_worker_whole_when_it_ends(gate):
    # Given: a chunked body sent in pieces, under the limit
    sock = connect(gate, b"POST /api/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel")
    sock.sendall(b"lo\r\n3;ext=1\r\nabc\r\n")
    wait_for(lambda: len(gate._open) == 1, 5, what="the gate still reading it")
    assert gate.seen == []
    # When: the last chunk comes
    sock.sendall(b"0\r\n\r\n")
    # Then: the request goes to a worker as sent (werkzeug undoes the chunking)
    assert read_all(sock).endswith(b"ok")
    assert gate.seen[0].endswith(b"\r\n\r\n5\r\nhello\r\n3;ext=1\r\nabc\r\n0\r\n\r\n")


@pytest.mark.parametrize("chunks", [[b"40\r\n" + b"x" * 64 + b"\r\n", b"40\r\n" + b"x" * 64 + b"\r\n"],
                                    [b"FFFFFFFF\r\n"], [b"zz\r\n"]])
def test_a_chunked_body_over_the_limit_is_a_413_as_soon_as_it_is_known(gate, chunks):
    sock = connect(gate, b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")
    for chunk in chunks:
        sock.sendall(chunk)
    answer = read_all(sock)
    assert answer.startswith(b"HTTP/1.1 " + (b"400" if chunks == [b"zz\r\n"] else b"413"))
    assert gate.seen == []


def test_body_length_reads_content_length_case_blind():
    assert body_length(b"POST / HTTP/1.1\r\ncontent-LENGTH: 7", 10) == (7, None)
    assert body_length(b"GET / HTTP/1.1\r\nHost: x", 10) == (0, None)


def test_shutdown_ends_serve_forever(gate):
    gate.shutdown()
    wait_for(lambda: gate._selector.get_map() is None, 5, what="the gate closed")


def test_a_connection_without_a_whole_request_is_closed_at_the_deadline_and_counted_in_the_log(
        gate, clock, caplog):
    # Given: a connection that sent half a request
    sock = connect(gate, b"GET / HTTP/1.1\r\n")
    wait_for(lambda: len(gate._open) == 1, 5, what="the gate reading it")
    # When: the deadline is not yet reached, it stays; once it is, it is closed
    clock.now += HEAD_DEADLINE - 0.5
    sock.settimeout(0.6)
    with pytest.raises(socket.timeout):
        sock.recv(1)
    clock.now += 0.5
    sock.settimeout(5)
    assert read_all(sock) == b""
    # Then: within a minute, one line counts it
    clock.now += REPORT_EVERY
    wait_for(lambda: "closed 1 connection(s) with no whole request within 5 s" in caplog.text, 5,
             what="the line in the log")
