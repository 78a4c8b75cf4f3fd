"""The metrics endpoint's HTTP server: one thread and one selector for every
connection, so a slow or silent client holds one slot, never the others.

Why not http.server: it answers one connection at a time and its timeout is
per read, so one client sending a byte every few seconds, or a handful that
send nothing, made every scrape wait. Here:

* every connection is read without blocking, side by side; a scrape that
  arrives among hundreds of silent ones is answered at once;
* each connection has a deadline for the whole request (REQUEST_DEADLINE from
  accept to the last byte of the answer), however slowly its bytes trickle;
* at most MAX_CONNECTIONS are open: the next one closes the oldest still
  open (the one nearest its deadline anyway), so a flood can't lock the
  scraper out, and the supervisor's descriptors stay bounded;
* the Host header must name this host (see `host_allowed`): a web page
  rebinding its own name to this address gets 403, not queue and task names;
* `Server: mpqueue`, no Python version.

The thread owns nothing of the supervisor's: it calls `scrape()` (metrics.py)
for the body, never logs, and takes no lock a forked worker could inherit held.
A closed connection is shut down first, so a worker forked while it was open
(and holding a copy of its descriptor) can't keep it open.
"""
from __future__ import annotations

import ipaddress
import os
import selectors
import socket
import threading
import time

from ..core.address import host_of, is_loopback

REQUEST_DEADLINE = 5.0    # from accept to the answer sent, however slowly the request comes
MAX_CONNECTIONS = 64      # open at once; the next closes the oldest
MAX_REQUEST = 8192        # bytes of request line and headers
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_TEXT = "text/plain; charset=utf-8"


def host_allowed(header: str | None, listen_host: str, own_names: frozenset) -> bool:
    """The Host header, port stripped, is an IP address (Prometheus scrapes IP:port;
    rebinding needs a name), a loopback name, the listen address's host, or one of
    this machine's own names. An absent Host (HTTP/1.0 tools) is allowed: every
    browser sends one."""
    if header is None:
        return True
    host = host_of(header.strip().lower()).rstrip(".")
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return is_loopback(host) or host == listen_host.lower() or host in own_names


def own_names() -> frozenset:
    """This machine's host name and its first label (no DNS lookup)."""
    name = socket.gethostname().lower().rstrip(".")
    return frozenset({name, name.partition(".")[0]} - {""})


class _Conn:
    __slots__ = ("sock", "deadline", "inbuf", "outbuf")

    def __init__(self, sock, deadline: float):
        self.sock, self.deadline, self.inbuf, self.outbuf = sock, deadline, b"", None


class Server:
    """Serves GET/HEAD /metrics on a bound, listening socket until `shutdown()`."""

    def __init__(self, sock: socket.socket, scrape, listen_host: str = "localhost",
                 clock=time.monotonic):
        self.sock, self.scrape, self.clock = sock, scrape, clock
        self.listen_host, self.names = listen_host, own_names()
        sock.setblocking(False)
        self._stop_r, self._stop_w = os.pipe()
        self._conns: dict[int, _Conn] = {}          # in accept order: the first is the oldest
        self._thread = None

    def fileno(self) -> int:
        return self.sock.fileno()

    def fds(self) -> list[int]:
        return [self.sock.fileno(), self._stop_r, self._stop_w]

    def start(self) -> None:
        self._thread = threading.Thread(target=self.serve_forever, name="mpqueue-metrics", daemon=True)
        self._thread.start()

    def serve_forever(self) -> None:
        with selectors.DefaultSelector() as sel:
            sel.register(self.sock, selectors.EVENT_READ, "accept")
            sel.register(self._stop_r, selectors.EVENT_READ, "stop")
            while True:
                for key, _ in sel.select(self._timeout()):
                    if key.data == "stop":
                        for fd in list(self._conns):
                            self._close(sel, fd)
                        return
                    if key.data == "accept":
                        self._accept(sel)
                    elif key.fd in self._conns:
                        try:
                            self._serve(sel, key.fd)
                        except Exception:           # noqa: BLE001 - one bad request must not end the endpoint
                            if key.fd in self._conns:
                                self._close(sel, key.fd)
                now = self.clock()
                for fd in [fd for fd, c in self._conns.items() if c.deadline <= now]:
                    self._close(sel, fd)

    def shutdown(self) -> None:
        os.write(self._stop_w, b"!")
        if self._thread is not None:
            self._thread.join(REQUEST_DEADLINE)

    def server_close(self) -> None:
        self.sock.close()
        for fd in (self._stop_r, self._stop_w):
            os.close(fd)

    # -- the thread's side
    def _timeout(self):
        if not self._conns:
            return None
        return max(0.0, min(c.deadline for c in self._conns.values()) - self.clock())

    def _accept(self, sel) -> None:
        for _ in range(MAX_CONNECTIONS):
            try:
                sock, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                if self._conns:              # out of descriptors: free the oldest, so the next try succeeds
                    self._close(sel, next(iter(self._conns)))
                return
            if len(self._conns) >= MAX_CONNECTIONS:
                self._close(sel, next(iter(self._conns)))
            sock.setblocking(False)
            self._conns[sock.fileno()] = _Conn(sock, self.clock() + REQUEST_DEADLINE)
            sel.register(sock, selectors.EVENT_READ)

    def _serve(self, sel, fd: int) -> None:
        c = self._conns[fd]
        try:
            if c.outbuf is None:
                data = c.sock.recv(4096)
                if not data:
                    return self._close(sel, fd)
                c.inbuf += data
                if b"\r\n\r\n" not in c.inbuf and b"\n\n" not in c.inbuf:
                    if len(c.inbuf) > MAX_REQUEST:
                        self._close(sel, fd)
                    return
                c.outbuf = memoryview(self._answer(c.inbuf))
                sel.modify(c.sock, selectors.EVENT_WRITE)
            sent = c.sock.send(c.outbuf)
            c.outbuf = c.outbuf[sent:]
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return self._close(sel, fd)
        if not len(c.outbuf):
            self._close(sel, fd)

    def _close(self, sel, fd: int) -> None:
        c = self._conns.pop(fd)
        sel.unregister(c.sock)
        try:
            c.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        c.sock.close()

    def _answer(self, request: bytes) -> bytes:
        head = request.replace(b"\r\n", b"\n").split(b"\n\n", 1)[0].decode("latin-1")
        line, *fields = head.split("\n")
        parts = line.split()
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            return _reply(400, "Bad Request", b"bad request\n")
        method, target, _ = parts
        host = next((v.strip() for k, _, v in (f.partition(":") for f in fields) if k.strip().lower() == "host"),
                    None)
        if method not in ("GET", "HEAD"):
            return _reply(405, "Method Not Allowed", b"only GET and HEAD\n", extra="Allow: GET, HEAD\r\n")
        if not host_allowed(host, self.listen_host, self.names):
            return _reply(403, "Forbidden", b"this Host is not served: scrape by IP address or this host's "
                          b"name\n", head_only=method == "HEAD")
        if target.split("?", 1)[0] != "/metrics":
            return _reply(404, "Not Found", b"not found: the metrics are at /metrics\n", head_only=method == "HEAD")
        return _reply(200, "OK", self.scrape(), CONTENT_TYPE, head_only=method == "HEAD")


def _reply(code: int, reason: str, body: bytes, ctype: str = _TEXT, head_only: bool = False, extra: str = "") -> bytes:
    head = (f"HTTP/1.1 {code} {reason}\r\nServer: mpqueue\r\nContent-Type: {ctype}\r\n"
            f"Content-Length: {len(body)}\r\n{extra}Connection: close\r\n\r\n")
    return head.encode("latin-1") + (b"" if head_only else body)
