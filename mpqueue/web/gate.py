"""The dashboard's connections, in front of werkzeug's request handler: one thread
reads every request whole, a fixed pool of threads answers the complete ones.

werkzeug's threaded server gives each connection a thread that waits for the
request as long as the client likes: 1,030 connections sending only a request
line held 1,030 threads, and at systemd's fd limit (1,024) `accept` failed with
EMFILE and the page stopped answering. Here:

- one thread (`serve_forever`) accepts and reads with a selector: a request
  must arrive whole (head and body, by Content-Length or to the last chunk of a
  chunked body) within HEAD_DEADLINE of its connection, or the connection is
  closed; a body over the limit either way is a 413 as soon as that is known;
- at most `max_open` connections are read at once (below the fd limit); one
  more closes the oldest, which is the one most likely to be a slow client,
  so a new one (a page load) still gets in;
- a complete request goes to a bounded queue served by `workers` threads; a
  full queue is a 503 at once. A worker never waits to read (the request is in
  memory) and waits at most WRITE_TIMEOUT to write;
- one request per connection (werkzeug sends `Connection: close` anyway).
"""
from __future__ import annotations

import errno
import json
import logging
import queue
import resource
import selectors
import socket
import threading
import time
from dataclasses import dataclass, field
from http import HTTPStatus

log = logging.getLogger("mpqueue.web")
HEAD_DEADLINE = 5.0         # seconds from accept to a whole request
WRITE_TIMEOUT = 10.0        # seconds a worker waits on a client that doesn't read its answer
MAX_HEAD = 64 * 1024
WORKERS = 8
BACKLOG = 32                # complete requests waiting for a worker
MAX_OPEN = 4096
RESERVE = 64                # fds kept for the broker, logs, and requests being answered
REPORT_EVERY = 60.0         # at most one log line a minute about closed connections
CHUNKED = -1                # body_length's answer for Transfer-Encoding: chunked


@dataclass(eq=False)
class _Conn:
    sock: socket.socket
    addr: tuple
    deadline: float
    buf: bytearray = field(default_factory=bytearray)
    need: int | None = None             # bytes of head + body, once the head is in
    chunked_at: int | None = None       # where a chunked body starts (its end is read from the chunks)
    answered: bool = False              # refused by the gate: reading only to let the client see why


def open_limit() -> int:
    """How many connections may be read at once: below the process's fd limit."""
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft == resource.RLIM_INFINITY:
        return MAX_OPEN
    return max(8, min(MAX_OPEN, soft - RESERVE - WORKERS - BACKLOG))


class Gate:
    """Accept on `listener`, call `handle(sock, addr, request_bytes)` on a worker
    thread for each whole request (the gate closes the socket afterwards)."""

    def __init__(self, listener: socket.socket, handle, max_body: int, workers: int = WORKERS,
                 max_open: int | None = None, clock=time.monotonic):
        self.listener, self.handle, self.max_body, self.clock = listener, handle, max_body, clock
        self.max_open = max_open or open_limit()
        self.listener.setblocking(False)
        self._open: dict[socket.socket, _Conn] = {}        # accept order: oldest first
        self._ready: queue.Queue = queue.Queue(BACKLOG)
        self._selector = selectors.DefaultSelector()
        self._stop = threading.Event()
        self._workers = [threading.Thread(target=self._work, name=f"mpqueue-web-{n}", daemon=True)
                         for n in range(workers)]
        self._closed = {"slow": 0, "crowded": 0, "busy": 0, "unaccepted": 0}
        self._problem = ""
        self._reported = clock()

    # -- the reading thread
    def serve_forever(self) -> None:
        for worker in self._workers:
            worker.start()
        self._selector.register(self.listener, selectors.EVENT_READ)
        try:
            while not self._stop.is_set():
                for key, _ in self._selector.select(self._wait()):
                    if key.fileobj is self.listener:
                        self._accept()
                    else:
                        self._read(key.data)
                self._expire()
        finally:
            for conn in list(self._open.values()):
                self._close(conn)
            self._selector.close()

    def shutdown(self) -> None:
        self._stop.set()
        for _ in self._workers:
            self._ready.put(None)

    def _wait(self) -> float:
        oldest = next(iter(self._open.values()), None)
        return 0.5 if oldest is None else min(0.5, max(0.0, oldest.deadline - self.clock()))

    def _accept(self) -> None:
        while True:
            try:
                sock, addr = self.listener.accept()
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE) and self._open:
                    self._drop_oldest("crowded")
                    continue
                # The fds are held elsewhere (requests being answered): let them go rather
                # than spin, and count it for the minute's line rather than log each.
                self._closed["unaccepted"] += 1
                self._problem = exc.strerror or str(exc)
                self._stop.wait(0.05)
                return
            if len(self._open) >= self.max_open:
                self._drop_oldest("crowded")
            sock.setblocking(False)
            conn = _Conn(sock, addr, self.clock() + HEAD_DEADLINE)
            self._open[sock] = conn
            self._selector.register(sock, selectors.EVENT_READ, conn)

    def _read(self, conn: _Conn) -> None:
        try:
            data = conn.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._close(conn)
        elif not conn.answered:
            conn.buf += data
            self._parse(conn)

    def _parse(self, conn: _Conn) -> None:
        if conn.need is None:
            end = conn.buf.find(b"\r\n\r\n")
            if end < 0:
                if len(conn.buf) > MAX_HEAD:
                    self._answer(conn, 431, "request head over 64 KiB")
                return
            length, problem = body_length(bytes(conn.buf[:end]), self.max_body)
            if problem:
                self._answer(conn, *problem)
                return
            if length == CHUNKED:
                conn.chunked_at, conn.need = end + 4, -1
            else:
                conn.need = end + 4 + length
        if conn.chunked_at is not None:
            body_end, problem = chunked_end(conn.buf, conn.chunked_at, self.max_body)
            if problem:
                self._answer(conn, *problem)
                return
            if body_end is None:
                return
            conn.need = body_end
        if len(conn.buf) >= conn.need:
            self._hand_over(conn, bytes(conn.buf[:conn.need]))

    def _hand_over(self, conn: _Conn, request: bytes) -> None:
        self._selector.unregister(conn.sock)
        del self._open[conn.sock]
        try:
            self._ready.put_nowait((conn.sock, conn.addr, request))
        except queue.Full:
            self._closed["busy"] += 1
            conn.deadline = self.clock() + HEAD_DEADLINE        # last in line, so the latest deadline
            self._open[conn.sock] = conn
            self._selector.register(conn.sock, selectors.EVENT_READ, conn)
            self._answer(conn, 503, "the dashboard is busy: try again", {"Retry-After": "1"})

    def _answer(self, conn: _Conn, status: int, message: str, headers: dict | None = None) -> None:
        """A refusal from the gate itself, sent at once. The connection stays open,
        read and discarded, until the client closes it or the deadline: closing
        with unread data would reset it before the client read the answer."""
        conn.answered = True
        try:
            conn.sock.send(reply(status, message, headers))
            conn.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self._close(conn)

    def _expire(self) -> None:
        now = self.clock()
        while self._open:
            conn = next(iter(self._open.values()))
            if conn.deadline > now:
                break
            if not conn.answered:
                self._closed["slow"] += 1
            self._close(conn)
        self._report(now)

    def _drop_oldest(self, why: str) -> None:
        self._closed[why] += 1
        self._close(next(iter(self._open.values())))

    def _close(self, conn: _Conn) -> None:
        if self._open.pop(conn.sock, None) is not None:
            self._selector.unregister(conn.sock)
        conn.sock.close()

    def _report(self, now: float) -> None:
        if now - self._reported < REPORT_EVERY or not any(self._closed.values()):
            return
        c = self._closed
        log.warning("dashboard: in the last %.0f s, closed %d connection(s) with no whole request within %.0f s "
                    "and %d oldest ones for room (%d open at most), answered %d with 503 (all workers busy), "
                    "could not accept %d times%s", now - self._reported, c["slow"], HEAD_DEADLINE, c["crowded"],
                    self.max_open, c["busy"], c["unaccepted"], f" ({self._problem})" if c["unaccepted"] else "")
        self._closed = dict.fromkeys(self._closed, 0)
        self._reported = now

    # -- the workers
    def _work(self) -> None:
        while True:
            item = self._ready.get()
            if item is None:
                return
            sock, addr, request = item
            try:
                sock.settimeout(WRITE_TIMEOUT)
                self.handle(sock, addr, request)
            except Exception:
                log.exception("dashboard: answering %s failed", addr[0])
            finally:
                sock.close()


def body_length(head: bytes, max_body: int) -> tuple[int, tuple | None]:
    """(Content-Length or CHUNKED, None), or (0, (status, message)) for a body the
    gate refuses. Both headers at once is refused (how request smuggling starts)."""
    length, chunked = None, False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name, value = name.strip().lower(), value.strip()
        if name == b"transfer-encoding":
            if value.lower() != b"chunked":
                return 0, (501, "only Transfer-Encoding: chunked is understood")
            chunked = True
        if name == b"content-length":
            if not value.isdigit():
                return 0, (400, "bad Content-Length")
            length = int(value)
    if chunked and length is not None:
        return 0, (400, "Content-Length and Transfer-Encoding together")
    if (length or 0) > max_body:
        return 0, (413, f"request body over {max_body} bytes")
    return (CHUNKED if chunked else length or 0), None


def chunked_end(buf: bytearray, start: int, max_body: int) -> tuple[int | None, tuple | None]:
    """Where a chunked body that starts at `start` ends (after its last chunk and
    trailers), None while more is to come, or a refusal: (None, (status, message))."""
    pos, size = start, 0
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return None, (400, "bad chunk size") if len(buf) - pos > 64 else None
        line = bytes(buf[pos:eol]).partition(b";")[0].strip()
        try:
            n = int(line, 16)
        except ValueError:
            return None, (400, "bad chunk size")
        if n < 0 or line.startswith((b"-", b"+", b"0x", b"0X")):
            return None, (400, "bad chunk size")
        size += n
        if size > max_body:
            return None, (413, f"request body over {max_body} bytes")
        if n == 0:
            end = buf.find(b"\r\n\r\n", eol)        # the trailers, most often none
            if end == eol:
                return end + 4, None
            if end < 0:
                return None, (431, "chunk trailers over 64 KiB") if len(buf) - eol > MAX_HEAD else None
            return end + 4, None
        pos = eol + 2 + n + 2
        if pos > len(buf):
            return None, None


def reply(status: int, message: str, headers: dict | None = None) -> bytes:
    body = json.dumps({"error": message}).encode()
    lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}", "Content-Type: application/json",
             f"Content-Length: {len(body)}", "Connection: close",
             *(f"{k}: {v}" for k, v in (headers or {}).items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body
