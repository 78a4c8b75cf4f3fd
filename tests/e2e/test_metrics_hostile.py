"""The metrics endpoint under attack, against a real `mpqueue run` with real
sockets: up to 1,000 silent or half-sent connections don't delay a scrape over
TCP or `mpqctl metrics` over the runtime socket; a client trickling its request
is cut at the deadline; a Host that is not this host's gets 403 (DNS
rebinding); the Server header names no Python version."""
from __future__ import annotations

import os
import resource
import select
import socket
import subprocess
import sys
import time

import pytest

from mpqueue.supervisor.metrics_http import MAX_CONNECTIONS, REQUEST_DEADLINE
from tests.support import free_port, wait_for



def _hostile_count(target=1000) -> int:
    """The issue's 1,000 slow connections, as far as this process's descriptor limit allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < target + 256 and (hard == resource.RLIM_INFINITY or hard > soft):
        soft = target + 256 if hard == resource.RLIM_INFINITY else min(hard, target + 256)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return target if soft == resource.RLIM_INFINITY else min(target, soft - 256)


HOSTILE = _hostile_count()   # more than MAX_CONNECTIONS: the endpoint closes the oldest to make room


def raw(connect, request: bytes, timeout=10.0) -> bytes:
    """Send `request` on a new connection and read the answer to its end."""
    with connect() as s:
        s.settimeout(timeout)
        s.sendall(request)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
        return out


def tcp(port):
    return lambda: socket.create_connection(("127.0.0.1", port), timeout=10)


def unix(path):
    def connect():
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(str(path))
        return s
    return connect


def scrape_request(host="127.0.0.1") -> bytes:
    return f"GET /metrics HTTP/1.1\r\nHost: {host}\r\nAccept: */*\r\n\r\n".encode()


@pytest.fixture
def hostile():
    """Open connections that send nothing, or half a request and stop."""
    opened = []

    def open_many(connect, n=HOSTILE):
        for i in range(n):
            s = connect()
            if i % 2:
                s.sendall(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n")     # never finished
            opened.append(s)
    yield open_many
    for s in opened:
        s.close()


def timed(fn):
    started = time.monotonic()
    result = fn()
    return result, time.monotonic() - started


def test_a_scrape_is_answered_at_once_among_hundreds_of_silent_connections(service, hostile):
    port = free_port()
    svc = service({"metrics": {"listen": f"127.0.0.1:{port}"}, "queues": {"default": {"workers": 1}}}).start()
    assert HOSTILE > MAX_CONNECTIONS
    hostile(tcp(port))
    for _ in range(3):
        answer, took = timed(lambda: raw(tcp(port), scrape_request()))
        assert answer.startswith(b"HTTP/1.1 200") and b"mpqueue_broker_up" in answer, answer[:200]
        assert took < 1.0, f"a scrape took {took:.1f} s among {HOSTILE} silent connections"
    assert svc.stop() == 0


def test_mpqctl_metrics_over_the_socket_answers_among_hundreds_of_silent_connections(service, hostile,
                                                                                       monkeypatch):
    svc = service({"metrics": {"listen": "unix"}, "queues": {"default": {"workers": 1}}}).start()
    monkeypatch.setenv("MPQUEUE_RUNTIME_DIR", str(svc.tmp / "run"))
    hostile(unix(svc.tmp / "run" / "metrics.sock"))
    from mpqueue.ops.ctl_metrics import fetch               # what `mpqctl metrics` calls
    body, took = timed(lambda: fetch("unix", "svc"))
    assert b"mpqueue_workers" in body and took < 1.0, f"took {took:.1f} s"
    done = subprocess.run([sys.executable, "-m", "mpqueue.ops.ctl", "--config", str(svc.config_path), "metrics"],
                          capture_output=True, text=True, timeout=30, env=dict(os.environ))
    assert done.returncode == 0 and not done.stdout.startswith("# mpqueue:"), done.stdout[:300] + done.stderr
    assert svc.stop() == 0


def test_a_trickling_client_is_cut_at_the_deadline(service):
    port = free_port()
    svc = service({"metrics": {"listen": f"127.0.0.1:{port}"}, "queues": {"default": {"workers": 1}}}).start()
    request = scrape_request()
    with socket.create_connection(("127.0.0.1", port)) as s:
        started, sent, closed_after = time.monotonic(), 0, None
        while time.monotonic() - started < REQUEST_DEADLINE + 5:
            readable, _, _ = select.select([s], [], [], 0.3)      # a byte every 0.3 s, never the whole request
            if readable:
                assert s.recv(1) == b""                           # closed, no answer
                closed_after = time.monotonic() - started
                break
            try:
                s.send(request[sent:sent + 1])
            except OSError:
                closed_after = time.monotonic() - started
                break
            sent = min(sent + 1, len(request) - 3)
    assert closed_after is not None, "a trickling client was never cut"
    assert REQUEST_DEADLINE - 0.5 < closed_after < REQUEST_DEADLINE + 2, closed_after
    answer = raw(tcp(port), scrape_request())
    assert answer.startswith(b"HTTP/1.1 200")
    assert svc.stop() == 0


def test_a_foreign_host_is_refused_and_the_server_names_no_python(service):
    port = free_port()
    svc = service({"metrics": {"listen": f"127.0.0.1:{port}"}, "queues": {"default": {"workers": 1}}}).start()
    for host in ("rebound.attacker.example", f"rebound.attacker.example:{port}"):
        answer = raw(tcp(port), scrape_request(host))
        assert answer.startswith(b"HTTP/1.1 403") and b"mpqueue_" not in answer, answer
    for host in (f"127.0.0.1:{port}", "localhost", f"localhost:{port}", socket.gethostname()):
        answer = raw(tcp(port), scrape_request(host))
        assert answer.startswith(b"HTTP/1.1 200"), (host, answer[:200])
    head = answer.split(b"\r\n\r\n", 1)[0].decode()
    server = [line for line in head.split("\r\n") if line.lower().startswith("server:")]
    assert server == ["Server: mpqueue"], head
    wait_for(lambda: svc.proc.poll() is None, 1, what="the service still running")
    assert svc.stop() == 0
