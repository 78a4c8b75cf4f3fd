"""`mpqctl metrics` over the service's unix socket while its listen backlog is full
(a flood of idle clients the server is shedding): a unix socket refuses such a
connect with EAGAIN at once, where TCP would wait; the fetch tries again until its
deadline instead of failing."""
import contextlib
import socket
import threading

from mpqueue.ops import ctl_metrics


def test_a_fetch_waits_for_room_in_a_full_backlog(tmp_path, monkeypatch):
    run = tmp_path / "run"
    monkeypatch.setenv("MPQUEUE_RUNTIME_DIR", str(run))
    path = ctl_metrics.runtime_dir("svc") / "metrics.sock"
    path.parent.mkdir(parents=True, exist_ok=True)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)
    server.settimeout(10)              # the serving thread never outlives the test
    # Given a backlog filled by clients nobody accepts yet
    idle = []
    while True:
        c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        c.setblocking(False)
        try:
            c.connect(str(path))
        except BlockingIOError:
            c.close()
            break
        idle.append(c)
    assert idle, "the backlog took no connection at all"

    def serve():
        with contextlib.suppress(OSError):
            _serve()

    def _serve():
        # the server gets round to the flood, sheds it, then answers the real client
        conns = [server.accept()[0] for _ in idle]
        for c in conns:
            c.close()
        conn, _ = server.accept()
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 20\r\nConnection: close\r\n\r\nmpqueue_service_up 1")
        conn.close()
    timer = threading.Timer(0.3, serve)
    timer.daemon = True
    timer.start()
    try:
        # When mpqctl fetches meanwhile, Then it gets the answer once there is room
        assert ctl_metrics.fetch("unix", "svc") == b"mpqueue_service_up 1"
    finally:
        timer.join(10)
        for c in idle:
            c.close()
        server.close()
